//! A simulator of the HTTP APIs paysync talks to: Mobbex, ERPNext (Frappe REST v1) and Mercado Pago
//! (with the MercadoLibre endpoints paysync reads: orders, `users/me`; `mercadopago.rs`), and the
//! test oracle of paysync: sample data with the expected outcome of every operation
//! ([`sample`], also as Mercado Pago payments), and the fixtures tests, `paysync demo` and the
//! benchmark share ([`fixtures`]).
//!
//! **This crate must never depend on `paysync`.** It judges paysync's code, so it knows only the
//! facts: the specs in `shared/spec/` and what a real ERPNext 15 answered (the recordings, copied
//! into `tests/fixtures/erpnext-real/`). It speaks paysync's vocabulary only as text: decision
//! names of `rules.md` ([`sample::ExpectedOutcome::decision`]), configuration files rendered
//! as TOML ([`fixtures::ConfigBuilder`]), the guard's field name as ERPNext records it
//! ([`guard::FIELD`]).
//!
//! Real HTTP on loopback (axum), in-process, so tests, benchmarks and `paysync demo` exercise the
//! real clients. It follows `shared/spec/mobbex-api.md`, `docs/mercadopago-contract.md` (Mercado Pago's
//! search, payments, OAuth with rotating refresh tokens, signed webhooks built for tests) and
//! answers like the recorded ERPNext 15 server (status codes, `exc_type`, message texts, JSON shapes; `tests/it/sim.rs` replays them).
//! Faults can be injected: latency, 5xx with the body shapes of apps and proxies, 429 with or
//! without `Retry-After`, hangs, dropped connections, answers lost after commit, faults aimed
//! at the create of one payment (`Simulator::fail_creates`, in `faults.rs`), and the server's own
//! contention: gunicorn's workers, the naming series' row lock a create holds until it commits,
//! the dearer allocated write, deadlocks between two series (`faults/contention.rs`).
//!
//! The state is one `Mutex<State>`; handlers sleep (latency) *before* taking the lock and never
//! hold it across an await, so concurrent writes really run concurrently (only the simulated
//! server's own locks, workers and series rows, make them wait for each other).

mod erpnext;
mod faults;
pub mod fixtures;
pub mod guard;
mod mercadopago;
mod mobbex;
mod options;
mod records;
pub mod sample;
#[cfg(test)]
mod testing;

pub use erpnext::DEFAULT_NAMING_SERIES;
pub use faults::{CreateFault, ErrorBody, NextAnswer, SimApi};
pub use mercadopago::{
    DEFAULT_MP_SELLER_ID, MpWebhook, SimMlOrder, SimMpFee, SimMpPayment, SimMpRefund,
    ml_notification, mp_signature,
};
pub use options::{Faults, SimOptions};
pub use records::{
    SimDeduction, SimOperation, SimPaymentEntry, SimReference, SimSalesOrder, SimStats,
};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use rust_decimal::Decimal;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Called at every listing call (with its number, from 1) before the page is cut: the operations it
/// returns are inserted, or replace the stored one with the same uid. Lets a test change the data
/// between two page reads.
pub type ListHook = Arc<dyn Fn(u64) -> Vec<SimOperation> + Send + Sync>;

/// A listing item: a well-formed operation or a raw document served verbatim.
#[derive(Debug, Clone)]
pub(crate) enum StoredOp {
    Typed(SimOperation),
    Raw {
        doc: serde_json::Value,
        created: Timestamp,
    },
}

impl StoredOp {
    fn created(&self) -> Timestamp {
        match self {
            StoredOp::Typed(o) => o.created,
            StoredOp::Raw { created, .. } => *created,
        }
    }
    fn updated(&self) -> Timestamp {
        match self {
            StoredOp::Typed(o) => o.updated,
            StoredOp::Raw { doc, created } => doc
                .get("updated")
                .and_then(|u| u.as_str())
                .and_then(|u| u.parse().ok())
                .unwrap_or(*created),
        }
    }
    fn uid(&self) -> String {
        match self {
            StoredOp::Typed(o) => o.uid.clone(),
            StoredOp::Raw { doc, .. } => doc
                .get("uid")
                .and_then(|u| u.as_str())
                .unwrap_or("")
                .to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ModeOfPayment {
    pub bank: bool,
    pub accounts: Vec<(String, String)>,
}

/// An account's `account_type`, as far as the simulated checks read it: Bank (entries to it need a
/// reference no and date), Cash, Receivable, or none set (an expense account like the fees' one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccountType {
    Bank,
    Cash,
    Receivable,
    Unset,
}

impl AccountType {
    /// As a Payment Entry's `paid_from_account_type` / `paid_to_account_type` shows it.
    pub fn label(self) -> &'static str {
        match self {
            AccountType::Bank => "Bank",
            AccountType::Cash => "Cash",
            AccountType::Receivable => "Receivable",
            AccountType::Unset => "",
        }
    }
}

pub(crate) struct State {
    pub opts: SimOptions,
    pub rng: u64,
    pub ops: Vec<StoredOp>,
    pub company: String,
    pub abbr: String,
    pub companies: Vec<String>,
    pub accounts: HashMap<String, AccountType>,
    /// Cost centers, by name (`Main - MESA`).
    pub cost_centers: Vec<String>,
    pub customers: Vec<String>,
    /// Customers' own receivable accounts (the Customer's `accounts` child table, Party Account):
    /// (customer, company) → account.
    pub customer_receivables: BTreeMap<(String, String), String>,
    /// The company's `default_receivable_account` when set (`Simulator::set_default_receivable`),
    /// else `Deudores - <abbr>`.
    pub default_receivable: Option<String>,
    pub modes: HashMap<String, ModeOfPayment>,
    pub orders: BTreeMap<String, SimSalesOrder>,
    /// Other fields of the orders (`po_no`, custom fields), by order name then field.
    pub order_fields: HashMap<String, BTreeMap<String, String>>,
    pub entries: Vec<SimPaymentEntry>,
    /// `tabSeries`: the last number given per naming-series prefix (`ACC-PAY-2026-` → 7).
    pub series_counters: HashMap<String, u64>,
    /// Workers, series locks and write phases (`faults::contention`).
    pub contention: faults::Contention,
    pub stats: SimStats,
    pub writes_in_flight: u64,
    pub list_hook: Option<ListHook>,
    pub writes_ok_tx: tokio::sync::watch::Sender<u64>,
    /// When each `reference_no` was first committed (benchmarks measure webhook-to-entry latency).
    pub commit_times: HashMap<String, std::time::Instant>,
    /// Faults aimed at the creates of one `reference_no` (`Simulator::fail_creates`), in order.
    pub targeted: HashMap<String, VecDeque<CreateFault>>,
    /// Answers for the next requests of each API (`Simulator::fail_next`), in order.
    pub next_answers: HashMap<SimApi, VecDeque<NextAnswer>>,
    /// The Custom Field `paysync_operation` (unique) exists on Payment Entry.
    pub guard_installed: bool,
    /// Mercado Pago's payments, MercadoLibre's orders, the tokens.
    pub mp: mercadopago::MpState,
    /// What Frappe's `get_url()` answers, in links inside messages (28q): the site config's
    /// `host_name` (`Simulator::set_site_url`), by default the server's own URL (as the request's
    /// host).
    pub site_url: String,
}

impl State {
    /// Deterministic xorshift64*: a fault draw in `[0, 1)`.
    pub fn draw(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn hit(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.draw() < rate
    }

    pub fn count(&mut self, endpoint: &str) {
        self.stats.total_requests += 1;
        *self
            .stats
            .by_endpoint
            .entry(endpoint.to_string())
            .or_default() += 1;
    }

    pub fn receivable(&self) -> String {
        self.default_receivable
            .clone()
            .unwrap_or_else(|| format!("Deudores - {}", self.abbr))
    }

    /// ERPNext's `get_party_account("Customer", party, company)`: the customer's own account for
    /// the company when its `accounts` table has one, else the default receivable.
    pub fn party_account(&self, party: &str, company: &str) -> String {
        self.customer_receivables
            .get(&(party.to_string(), company.to_string()))
            .cloned()
            .unwrap_or_else(|| self.receivable())
    }

    fn set_company(&mut self, company: &str, abbr: &str) {
        self.company = company.to_string();
        self.abbr = abbr.to_string();
        if !self.companies.iter().any(|c| c == company) {
            self.companies.push(company.to_string());
        }
        self.accounts
            .insert(format!("Deudores - {abbr}"), AccountType::Receivable);
        self.accounts
            .insert(format!("Mobbex - {abbr}"), AccountType::Bank);
        self.accounts
            .insert(format!("Caja - {abbr}"), AccountType::Cash);
        // An expense account for the gateway's fees, and the company's main cost center
        // (`Company.cost_center`, "Main - TCA" on the recorded site, 29a).
        self.accounts
            .insert(format!("Comisiones - {abbr}"), AccountType::Unset);
        let main = format!("Main - {abbr}");
        if !self.cost_centers.contains(&main) {
            self.cost_centers.push(main);
        }
    }
}

pub(crate) type Shared = Arc<Mutex<State>>;

/// A running simulator. Dropping it stops the servers.
pub struct Simulator {
    pub mobbex_url: String,
    pub erpnext_url: String,
    /// Mercado Pago and the MercadoLibre paths (`/orders/{id}`, `/users/me`) on one server: the
    /// account's `api_url` and `meli_api_url` both.
    pub mercadopago_url: String,
    state: Shared,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Simulator {
    /// Start the three servers on `127.0.0.1:0`. The ERPNext side starts with company "Mi Empresa
    /// SA" (abbr MESA), accounts "Deudores - MESA" (receivable), "Mobbex - MESA" (bank), "Caja -
    /// MESA" (cash), "Mercado Pago - MESA" (bank), "Comisiones - MESA" (an expense account for
    /// fees), cost center "Main - MESA", and Modes of Payment "Mobbex" → "Mobbex - MESA" and
    /// "Mercado Pago" → "Mercado Pago - MESA".
    pub async fn start(opts: SimOptions) -> std::io::Result<Simulator> {
        let mut st = State {
            rng: opts.seed.max(1),
            opts,
            ops: Vec::new(),
            company: String::new(),
            abbr: String::new(),
            companies: Vec::new(),
            accounts: HashMap::new(),
            cost_centers: Vec::new(),
            customers: Vec::new(),
            customer_receivables: BTreeMap::new(),
            default_receivable: None,
            modes: HashMap::new(),
            orders: BTreeMap::new(),
            order_fields: HashMap::new(),
            entries: Vec::new(),
            series_counters: HashMap::new(),
            contention: faults::Contention::default(),
            stats: SimStats::default(),
            writes_in_flight: 0,
            list_hook: None,
            writes_ok_tx: tokio::sync::watch::channel(0).0,
            commit_times: HashMap::new(),
            targeted: HashMap::new(),
            next_answers: HashMap::new(),
            guard_installed: false,
            mp: mercadopago::MpState::default(),
            site_url: String::new(),
        };
        st.mp.tokens.refresh = st.opts.mp_refresh_token.clone();
        st.set_company("Mi Empresa SA", "MESA");
        st.modes.insert(
            "Mobbex".into(),
            ModeOfPayment {
                bank: true,
                accounts: vec![("Mi Empresa SA".into(), "Mobbex - MESA".into())],
            },
        );
        st.accounts
            .insert("Mercado Pago - MESA".into(), AccountType::Bank);
        st.modes.insert(
            "Mercado Pago".into(),
            ModeOfPayment {
                bank: true,
                accounts: vec![("Mi Empresa SA".into(), "Mercado Pago - MESA".into())],
            },
        );
        let state: Shared = Arc::new(Mutex::new(st));
        let cancel = CancellationToken::new();

        let mbx = TcpListener::bind("127.0.0.1:0").await?;
        let erp = TcpListener::bind("127.0.0.1:0").await?;
        let mp = TcpListener::bind("127.0.0.1:0").await?;
        let mobbex_url = format!("http://{}", mbx.local_addr()?);
        let erpnext_url = format!("http://{}", erp.local_addr()?);
        let mercadopago_url = format!("http://{}", mp.local_addr()?);
        state.lock().expect("fresh").site_url = erpnext_url.clone();
        let mut tasks = Vec::new();
        for (listener, router) in [
            (mbx, mobbex::router(state.clone())),
            (erp, erpnext::router(state.clone())),
            (mp, mercadopago::router(state.clone())),
        ] {
            let c = cancel.clone();
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async move { c.cancelled().await })
                    .await;
            }));
        }
        Ok(Simulator {
            mobbex_url,
            erpnext_url,
            mercadopago_url,
            state,
            cancel,
            tasks,
        })
    }

    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("sim state poisoned"))
    }

    // ---- ERPNext side

    /// The URL ERPNext puts in links inside its messages (Frappe's `host_name` site config; by
    /// default the simulator's own `erpnext_url`). The recorded site's is `http://127.0.0.1:8000`.
    pub fn set_site_url(&self, url: &str) {
        self.with(|s| s.site_url = url.to_string());
    }

    /// Add a company (the first one set stays the default for receivables).
    pub fn set_company(&self, company: &str, abbr: &str) {
        self.with(|s| s.set_company(company, abbr));
    }

    pub fn add_company(&self, company: &str) {
        self.with(|s| {
            if !s.companies.iter().any(|c| c == company) {
                s.companies.push(company.to_string());
            }
        });
    }

    pub fn add_mode_of_payment(&self, name: &str, bank: bool, accounts: &[(&str, &str)]) {
        self.with(|s| {
            let kind = if bank {
                AccountType::Bank
            } else {
                AccountType::Cash
            };
            for (_, a) in accounts {
                s.accounts.entry(a.to_string()).or_insert(kind);
            }
            s.modes.insert(
                name.to_string(),
                ModeOfPayment {
                    bank,
                    accounts: accounts
                        .iter()
                        .map(|(c, a)| (c.to_string(), a.to_string()))
                        .collect(),
                },
            );
        });
    }

    /// An account of the chart (`bank` = account type Bank: entries to it need reference no/date;
    /// else no account type, which may carry a party like a receivable). A mode of payment's
    /// non-bank accounts are Cash; receivables are set with [`Simulator::set_default_receivable`]
    /// and [`Simulator::set_customer_receivable`].
    pub fn add_account(&self, name: &str, bank: bool) {
        self.with(|s| {
            let kind = if bank {
                AccountType::Bank
            } else {
                AccountType::Unset
            };
            s.accounts.insert(name.to_string(), kind);
        });
    }

    /// A cost center (deductions rows must name an existing one).
    pub fn add_cost_center(&self, name: &str) {
        self.with(|s| {
            if !s.cost_centers.iter().any(|c| c == name) {
                s.cost_centers.push(name.to_string());
            }
        });
    }

    pub fn add_customer(&self, name: &str) {
        self.with(|s| {
            if !s.customers.iter().any(|c| c == name) {
                s.customers.push(name.to_string());
            }
        });
    }

    /// Set the company's default receivable account (`Company.default_receivable_account`,
    /// `Debtors - TCA` on the recorded site: 14, 29p), added to the chart as a Receivable account:
    /// `get_party_account` answers it for customers without their own account, and a Receive
    /// entry created without `paid_from` (a Pay without `paid_to`) books to it.
    pub fn set_default_receivable(&self, account: &str) {
        self.with(|s| {
            s.accounts
                .insert(account.to_string(), AccountType::Receivable);
            s.default_receivable = Some(account.to_string());
        });
    }

    /// Give `customer` its own receivable account for `company` (a row of the Customer's
    /// `accounts` table, replacing one for the same company): `get_party_account` answers it and
    /// a Receive entry created without `paid_from` (a Pay without `paid_to`) books to it. The
    /// account is added to the chart
    /// as a Receivable account.
    pub fn set_customer_receivable(&self, customer: &str, company: &str, account: &str) {
        self.with(|s| {
            s.accounts
                .insert(account.to_string(), AccountType::Receivable);
            s.customer_receivables.insert(
                (customer.to_string(), company.to_string()),
                account.to_string(),
            );
        });
    }

    /// Add an order, and its customer if it is not there yet: ERPNext saves no order whose
    /// customer does not exist (a link field), nor deletes a customer an order links to.
    pub fn add_sales_order(&self, so: SimSalesOrder) {
        self.with(|s| {
            if !s.customers.contains(&so.customer) {
                s.customers.push(so.customer.clone());
            }
            s.orders.insert(so.name.clone(), so);
        });
    }

    /// Set another field of an order (`po_no`, or a custom field such as one holding a
    /// MercadoLibre order id): served in its document and its listings, and filtered on.
    pub fn set_sales_order_field(&self, name: &str, field: &str, value: &str) {
        self.with(|s| {
            s.order_fields
                .entry(name.to_string())
                .or_default()
                .insert(field.to_string(), value.to_string());
        });
    }

    pub fn set_sales_order_status(&self, name: &str, status: &str) {
        self.with(|s| {
            if let Some(o) = s.orders.get_mut(name) {
                o.status = status.to_string();
            }
        });
    }

    pub fn cancel_sales_order(&self, name: &str) {
        self.with(|s| {
            if let Some(o) = s.orders.get_mut(name) {
                o.docstatus = 2;
                o.status = "Cancelled".into();
            }
        });
    }

    pub fn sales_order(&self, name: &str) -> Option<SimSalesOrder> {
        self.with(|s| s.orders.get(name).cloned())
    }

    /// The names of the entries there are now: what a test compares the entries it expects
    /// against, leaving out those that were there before.
    pub fn entry_names(&self) -> Vec<String> {
        self.with(|s| s.entries.iter().map(|e| e.name.clone()).collect())
    }

    pub fn payment_entries(&self) -> Vec<SimPaymentEntry> {
        self.with(|s| s.entries.clone())
    }

    /// As if a person had booked it in ERPNext (advance_paid updated when submitted).
    pub fn insert_payment_entry_directly(&self, pe: SimPaymentEntry) {
        self.with(|s| {
            if pe.docstatus == 1 {
                for r in &pe.references {
                    if let Some(o) = s.orders.get_mut(&r.reference_name) {
                        o.advance_paid += r.allocated_amount;
                    }
                }
            }
            s.entries.push(pe);
        });
    }

    /// As if a person cancelled the entry in ERPNext (docstatus 2; its allocations leave the
    /// orders' `advance_paid`).
    pub fn cancel_payment_entry(&self, name: &str) {
        self.with(|s| {
            let Some(i) = s.entries.iter().position(|e| e.name == name) else {
                return;
            };
            if s.entries[i].docstatus == 1 {
                for r in s.entries[i].references.clone() {
                    if let Some(o) = s.orders.get_mut(&r.reference_name) {
                        o.advance_paid -= r.allocated_amount;
                    }
                }
            }
            s.entries[i].docstatus = 2;
        });
    }

    pub fn stats(&self) -> SimStats {
        self.with(|s| s.stats.clone())
    }

    pub fn reset_stats(&self) {
        self.with(|s| s.stats = SimStats::default());
    }

    /// The options it runs with: the credentials it accepts, and its current faults.
    pub fn options(&self) -> SimOptions {
        self.with(|s| s.opts.clone())
    }

    pub fn set_faults(&self, f: Faults) {
        self.with(|s| s.opts.faults = f);
    }

    pub fn set_list_hook(&self, hook: Option<ListHook>) {
        self.with(|s| s.list_hook = hook);
    }

    /// When the entry with this `reference_no` was committed.
    pub fn commit_instant(&self, reference_no: &str) -> Option<std::time::Instant> {
        self.with(|s| s.commit_times.get(reference_no).copied())
    }

    /// The number of entries created so far, as a signal tests can wait on.
    pub fn subscribe_writes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.with(|s| s.writes_ok_tx.subscribe())
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Decimal as a JSON number with Frappe's float look (`600.0`).
pub(crate) fn frappe_number(d: Decimal) -> serde_json::Value {
    use std::str::FromStr;
    let f = f64::from_str(&d.normalize().to_string()).unwrap_or(0.0);
    serde_json::Value::from(f)
}
