//! Sample data for the simulator, with the expected outcome of every operation.
//!
//! [`populate`] builds a realistic mix of every case in `shared/spec/rules.md` and computes what a
//! correct sync must do with each operation **by construction** (it never calls paysync's rules),
//! so tests can use it as an independent oracle. [`demo_month`] is the dataset `paysync demo` shows.
//!
//! References are the plain order name (the default client configuration uses the whole reference)
//! unless `suffixed_references` is set, which appends `-retryN` and needs
//! `order_pattern = '^(?P<order>SAL-ORD-\d{4}-\d+)'` on the client.
//!
//! [`load_mercadopago`] turns a populated sample into Mercado Pago payments with the same expected
//! outcomes (`sample/mercadopago.rs`).

use std::collections::HashMap;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;

use super::{SimOperation, SimPaymentEntry, SimSalesOrder, Simulator};

mod mercadopago;
pub use mercadopago::{MpExpected, demo_mercadopago, load_mercadopago};

pub struct SampleSpec {
    /// At least this many operations are generated.
    pub operations: usize,
    /// Creation times are spread over `[start, start + span)`.
    pub start: Timestamp,
    pub span: SignedDuration,
    /// The company of the orders (the client's account company).
    pub company: String,
    pub seed: u64,
    pub suffixed_references: bool,
    /// Share of scenarios that are paid orders (the rest spread over every other case), in
    /// twentieths: 9 = 45% (the default mix).
    pub paid_weight: u64,
    /// Payments per paid order: 1 to this many.
    pub max_payments_per_order: u64,
    /// Distinct customers the orders are spread over (a real shop has about one per order; a
    /// small number hides per-customer costs behind caches).
    pub customers: usize,
}

impl Default for SampleSpec {
    fn default() -> Self {
        SampleSpec {
            operations: 300,
            start: "2026-10-01T12:00:00Z".parse().expect("timestamp"),
            span: SignedDuration::from_hours(24 * 28),
            company: "Mi Empresa SA".into(),
            seed: 1,
            suffixed_references: false,
            paid_weight: 9,
            max_payments_per_order: 3,
            customers: 25,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub uid: String,
    pub outcome: ExpectedOutcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExpectedOutcome {
    BookedInitial {
        order: String,
        allocated: Decimal,
        party: String,
    },
    BookedAdditional {
        order: String,
        party: String,
    },
    AlreadyLoaded,
    Rejected,
    Pending,
    Refunded,
    OrderMissing,
    OrderNotPayable,
    CurrencyMismatch,
    IgnoredChild,
    IgnoredTest,
}

impl ExpectedOutcome {
    /// Whether a correct sync creates an entry for the operation.
    pub fn is_booked(&self) -> bool {
        matches!(
            self,
            ExpectedOutcome::BookedInitial { .. } | ExpectedOutcome::BookedAdditional { .. }
        )
    }

    /// The decision a correct sync records for an operation with this outcome, by its name in
    /// `shared/spec/rules.md` ("Every decision is explained"), which is also the text of the
    /// ledger's `decision` column. A name, not paysync's type: the oracle does not depend on the
    /// code it judges; users map it (`DecisionKind::parse`).
    pub fn decision(&self) -> &'static str {
        match self {
            ExpectedOutcome::BookedInitial { .. } => "booked_initial",
            ExpectedOutcome::BookedAdditional { .. } => "booked_additional",
            ExpectedOutcome::AlreadyLoaded => "already_loaded",
            ExpectedOutcome::Rejected => "rejected",
            ExpectedOutcome::Pending => "pending",
            ExpectedOutcome::Refunded => "refunded",
            ExpectedOutcome::OrderMissing => "order_missing",
            ExpectedOutcome::OrderNotPayable => "order_not_payable",
            ExpectedOutcome::CurrencyMismatch => "currency_mismatch",
            ExpectedOutcome::IgnoredChild => "ignored_child",
            ExpectedOutcome::IgnoredTest => "ignored_test",
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const PAID: &[u16] = &[200, 200, 200, 200, 210, 299, 300, 301, 302, 303];
const REJECTED: &[u16] = &[400, 401, 402, 403, 410, 411, 412, 413, 414, 415, 500, 604];
const REFUNDED: &[u16] = &[601, 602, 603, 605, 610];
const PENDING: &[u16] = &[0, 1, 2, 3, 100, 201, 600, 777];
const SPECIAL_TOTALS: &[&str] = &[
    "2871.74",
    "0.10",
    "0.20",
    "1000000000.00",
    "100.5",
    "58007.91",
    "0.30",
];

const DEMO_CUSTOMERS: &[&str] = &[
    "Ferretería Don José",
    "Librería El Ateneo Sur",
    "Panadería La Espiga",
    "Kiosco Los Andes",
    "Estudio Contable Ríos",
    "Vivero Las Tipas",
    "Taller Mecánico Ruta 3",
    "Almacén Doña Rosa",
];

struct Gen<'a> {
    sim: &'a Simulator,
    spec: &'a SampleSpec,
    rng: Rng,
    customers: Vec<String>,
    next_order: u32,
    next_op: u32,
    out: Vec<Expected>,
    ops: usize,
}

impl Gen<'_> {
    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal literal")
    }

    fn amount(&mut self) -> Decimal {
        if self.rng.below(6) == 0 {
            let text: &&str = self.rng.pick(SPECIAL_TOTALS);
            Self::d(text)
        } else {
            Decimal::new((self.rng.below(500_000) + 100) as i64, 2)
        }
    }

    fn time(&mut self) -> Timestamp {
        let span_ms = self.spec.span.as_millis().max(1) as u64;
        self.spec.start + SignedDuration::from_millis(self.rng.below(span_ms) as i64)
    }

    fn customer(&mut self) -> String {
        let c = self.rng.pick(&self.customers).clone();
        self.sim.add_customer(&c);
        c
    }

    fn uid(&mut self, prefix: &str) -> String {
        self.next_op += 1;
        format!(
            "{prefix}{:06x}{:06x}",
            self.next_op,
            self.rng.below(1 << 24)
        )
    }

    fn order(
        &mut self,
        customer: &str,
        total: Decimal,
        f: impl FnOnce(&mut SimSalesOrder),
    ) -> String {
        self.next_order += 1;
        let name = format!("SAL-ORD-2026-{:05}", self.next_order);
        let mut so = SimSalesOrder {
            name: name.clone(),
            customer: customer.to_string(),
            company: self.spec.company.clone(),
            currency: "ARS".into(),
            grand_total: total,
            rounded_total: None,
            advance_paid: Decimal::ZERO,
            docstatus: 1,
            status: "To Deliver and Bill".into(),
            per_billed: Decimal::ZERO,
            transaction_date: self.spec.start.to_zoned(jiff::tz::TimeZone::UTC).date(),
        };
        f(&mut so);
        self.sim.add_sales_order(so);
        name
    }

    fn reference(&mut self, order: &str) -> String {
        if self.spec.suffixed_references && self.rng.below(3) == 0 {
            format!("{order}-retry{}", self.rng.below(5) + 1)
        } else {
            order.to_string()
        }
    }

    fn op(
        &mut self,
        uid: String,
        reference: String,
        status: u16,
        total: Decimal,
        created: Timestamp,
    ) -> SimOperation {
        let op = SimOperation {
            uid,
            reference,
            status,
            total,
            currency: "ARS".into(),
            created,
            updated: created + SignedDuration::from_secs(self.rng.below(3600) as i64),
            description: "Compra online".into(),
            payer_name: "Comprador".into(),
            parent_uid: None,
            operation_type: "payment.v2".into(),
            entity_charges: Vec::new(),
        };
        self.ops += 1;
        op
    }

    fn push(&mut self, op: SimOperation, outcome: ExpectedOutcome) {
        self.out.push(Expected {
            uid: op.uid.clone(),
            outcome,
        });
        self.sim.add_operation(op);
    }

    /// One order with 1–3 paid payments (the oldest is the initial one) and maybe a failed attempt.
    fn paid_order(&mut self) {
        let customer = self.customer();
        let total = self.amount();
        let name = self.order(&customer, total, |_| {});
        let so = self.sim.sales_order(&name).expect("just added");
        let mut outstanding = so.outstanding();
        let payments = 1 + self.rng.below(self.spec.max_payments_per_order.max(1)) as usize;
        let mut times: Vec<Timestamp> = (0..payments).map(|_| self.time()).collect();
        times.sort();
        times.dedup();
        for (i, t) in times.iter().enumerate() {
            let amount = if i == 0 && payments > 1 {
                // A first partial payment.
                (total * Self::d("0.4")).round_dp(2).max(Self::d("0.01"))
            } else if i == 0 {
                total
            } else {
                self.amount()
            };
            let uid = self.uid("");
            let reference = self.reference(&name);
            let status = *self.rng.pick(PAID);
            let op = self.op(uid, reference, status, amount, *t);
            let outcome = if i == 0 {
                let allocated = amount.min(outstanding);
                outstanding -= allocated;
                ExpectedOutcome::BookedInitial {
                    order: name.clone(),
                    allocated,
                    party: customer.clone(),
                }
            } else {
                ExpectedOutcome::BookedAdditional {
                    order: name.clone(),
                    party: customer.clone(),
                }
            };
            self.push(op, outcome);
        }
        if self.rng.below(3) == 0 {
            // A failed attempt under the same reference, before the payment.
            let t = times[0] - SignedDuration::from_mins(5);
            let uid = self.uid("");
            let reference = self.reference(&name);
            let status = *self.rng.pick(REJECTED);
            let op = self.op(uid, reference, status, total, t);
            self.push(op, ExpectedOutcome::Rejected);
        }
    }

    fn unpaid(&mut self, statuses: &[u16], outcome: ExpectedOutcome) {
        let customer = self.customer();
        let total = self.amount();
        let name = self.order(&customer, total, |_| {});
        let uid = self.uid("");
        let t = self.time();
        let reference = self.reference(&name);
        let status = *self.rng.pick(statuses);
        let op = self.op(uid, reference, status, total, t);
        self.push(op, outcome);
    }

    fn missing_order(&mut self) {
        self.next_order += 1;
        let name = format!("SAL-ORD-2026-{:05}", self.next_order);
        let uid = self.uid("");
        let t = self.time();
        let total = self.amount();
        let op = self.op(uid, name, 200, total, t);
        self.push(op, ExpectedOutcome::OrderMissing);
    }

    fn not_payable(&mut self) {
        let customer = self.customer();
        let total = self.amount();
        let kind = self.rng.below(4);
        let name = self.order(&customer, total, |so| match kind {
            0 => {
                so.docstatus = 0;
                so.status = "Draft".into();
            }
            1 => so.status = "Closed".into(),
            2 => {
                so.docstatus = 2;
                so.status = "Cancelled".into();
            }
            _ => so.company = "Otra Empresa SRL".into(),
        });
        self.sim.add_company("Otra Empresa SRL");
        let uid = self.uid("");
        let t = self.time();
        let op = self.op(uid, name, 200, total, t);
        self.push(op, ExpectedOutcome::OrderNotPayable);
    }

    fn currency_mismatch(&mut self) {
        let customer = self.customer();
        let total = self.amount();
        let name = self.order(&customer, total, |so| so.currency = "USD".into());
        let uid = self.uid("");
        let t = self.time();
        let op = self.op(uid, name, 200, total, t);
        self.push(op, ExpectedOutcome::CurrencyMismatch);
    }

    fn multicard(&mut self) {
        let customer = self.customer();
        let a = self.amount();
        let b = self.amount();
        let total = a + b;
        let name = self.order(&customer, total, |_| {});
        let outstanding = self.sim.sales_order(&name).expect("added").outstanding();
        let parent_uid = self.uid("");
        let t = self.time();
        let mut parent = self.op(parent_uid.clone(), name.clone(), 200, total, t);
        parent.operation_type = "payment.multiple-sources".into();
        for part in [a, b] {
            let uid = self.uid("CHD-");
            let reference = format!("chd-ref-{}", self.rng.below(1 << 30));
            let mut child = self.op(uid, reference, 200, part, t);
            child.parent_uid = Some(parent_uid.clone());
            self.push(child, ExpectedOutcome::IgnoredChild);
        }
        self.push(
            parent,
            ExpectedOutcome::BookedInitial {
                order: name,
                allocated: total.min(outstanding),
                party: customer,
            },
        );
    }

    fn test_mode(&mut self) {
        let customer = self.customer();
        let total = self.amount();
        let name = self.order(&customer, total, |_| {});
        let uid = self.uid("");
        let t = self.time();
        let mut op = self.op(uid, name, 200, total, t);
        op.currency = "TEST".into();
        self.push(op, ExpectedOutcome::IgnoredTest);
    }

    fn already_loaded(&mut self) {
        let customer = self.customer();
        let total = self.amount();
        let name = self.order(&customer, total, |_| {});
        let uid = self.uid("");
        let t = self.time();
        let op = self.op(uid.clone(), name, 200, total, t);
        // Booked by hand in ERPNext earlier, unallocated, with the operation id as reference_no.
        let date = t.to_zoned(jiff::tz::TimeZone::UTC).date();
        let n = self.sim.payment_entries().len() + 90_000;
        self.sim.insert_payment_entry_directly(SimPaymentEntry {
            name: format!("ACC-PAY-2026-{n:05}"),
            naming_series: crate::DEFAULT_NAMING_SERIES.into(),
            docstatus: 1,
            payment_type: "Receive".into(),
            company: self.spec.company.clone(),
            party_type: "Customer".into(),
            party: customer,
            paid_from: "Deudores - MESA".into(),
            paid_to: "Mobbex - MESA".into(),
            mode_of_payment: Some("Mobbex".into()),
            paid_amount: total,
            received_amount: total,
            reference_no: Some(uid),
            reference_date: Some(date),
            posting_date: date,
            references: Vec::new(),
            deductions: Vec::new(),
            unallocated_amount: total,
            paysync_operation: None,
            amended_from: None,
        });
        self.push(op, ExpectedOutcome::AlreadyLoaded);
    }

    fn run(&mut self) {
        // A fixed opening so every case appears even in small samples.
        let opening: [fn(&mut Self); 11] = [
            Self::paid_order,
            |g| g.unpaid(REJECTED, ExpectedOutcome::Rejected),
            |g| g.unpaid(PENDING, ExpectedOutcome::Pending),
            |g| g.unpaid(REFUNDED, ExpectedOutcome::Refunded),
            Self::missing_order,
            Self::not_payable,
            Self::currency_mismatch,
            Self::multicard,
            Self::test_mode,
            Self::already_loaded,
            Self::paid_order,
        ];
        for f in opening {
            f(self);
        }
        let paid = self.spec.paid_weight.min(19);
        let others = 20 - paid;
        while self.ops < self.spec.operations {
            let r = self.rng.below(20);
            if r < paid {
                self.paid_order();
                continue;
            }
            // The other cases share the rest in the default proportions (11 slots).
            match (r - paid) * 11 / others {
                0..=1 => self.unpaid(REJECTED, ExpectedOutcome::Rejected),
                2..=3 => self.unpaid(PENDING, ExpectedOutcome::Pending),
                4 => self.unpaid(REFUNDED, ExpectedOutcome::Refunded),
                5 => self.missing_order(),
                6 => self.not_payable(),
                7 => self.currency_mismatch(),
                8 => self.multicard(),
                9 => self.test_mode(),
                _ => self.already_loaded(),
            }
        }
    }
}

/// Fill the simulator with `spec.operations` (or a few more) operations and their orders.
pub fn populate(sim: &Simulator, spec: &SampleSpec) -> Vec<Expected> {
    let customers = (1..=spec.customers.max(1))
        .map(|i| format!("Cliente {i:03}"))
        .collect();
    generate(sim, spec, customers)
}

fn generate(sim: &Simulator, spec: &SampleSpec, customers: Vec<String>) -> Vec<Expected> {
    let mut g = Gen {
        sim,
        spec,
        rng: Rng(spec.seed.wrapping_mul(0x9E3779B97F4A7C15).max(1)),
        customers,
        next_order: 0,
        next_op: 0,
        out: Vec::new(),
        ops: 0,
    };
    g.run();
    g.out
}

/// The sample month of `paysync demo`: about 50 operations in October 2026 covering every case.
pub fn demo_month(sim: &Simulator) -> Vec<Expected> {
    let spec = SampleSpec {
        operations: 48,
        start: "2026-10-01T13:00:00Z".parse().expect("timestamp"),
        span: SignedDuration::from_hours(24 * 29),
        company: "Mi Empresa SA".into(),
        seed: 2026,
        ..SampleSpec::default()
    };
    generate(
        sim,
        &spec,
        DEMO_CUSTOMERS.iter().map(|c| c.to_string()).collect(),
    )
}

/// How many operations of each expected outcome (for reports).
pub fn tally(expected: &[Expected]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for e in expected {
        let k = format!("{:?}", e.outcome)
            .split([' ', '{'])
            .next()
            .unwrap_or("")
            .to_string();
        *m.entry(k).or_default() += 1;
    }
    m
}

/// How many of `expected` a correct sync books.
pub fn to_book(expected: &[Expected]) -> u64 {
    expected.iter().filter(|e| e.outcome.is_booked()).count() as u64
}
