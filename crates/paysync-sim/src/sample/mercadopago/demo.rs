//! `paysync demo`'s Mercado Pago side: a MercadoLibre seller's October, written out case by case
//! with the outcome each payment must get — its own small oracle, beside the Mobbex sample's.
//!
//! The seller's ERPNext integration keeps the MercadoLibre order id in the Sales Order's `po_no`;
//! the account reads it with `order_source = "order_id"`, `order_field = "po_no"`. Orders are
//! named `SAL-ORD-2026-09xxx`, apart from the Mobbex sample's.

use jiff::Timestamp;
use rust_decimal::Decimal;

use super::MpExpected;
use crate::fixtures::order;
use crate::sample::ExpectedOutcome;
use crate::{DEFAULT_MP_SELLER_ID, SimMlOrder, SimMpFee, SimMpPayment, Simulator};

/// One payment of the demo: id, ML order, amount, status, created, what must become of it.
struct Case {
    id: u64,
    ml_order: u64,
    amount: &'static str,
    status: &'static str,
    created: &'static str,
    live: bool,
}

/// Load the demo seller's orders and payments into `sim`; returns each payment's outcome.
pub fn demo_mercadopago(sim: &Simulator) -> Vec<MpExpected> {
    let d = |s: &str| s.parse::<Decimal>().expect("decimal");
    let orders = [
        (
            "SAL-ORD-2026-09001",
            "Comprador MELI 1",
            "45990",
            2_000_009_001u64,
        ),
        (
            "SAL-ORD-2026-09002",
            "Comprador MELI 2",
            "18500",
            2_000_009_002,
        ),
        (
            "SAL-ORD-2026-09003",
            "Comprador MELI 3",
            "7200.5",
            2_000_009_003,
        ),
    ];
    for (name, customer, total, ml) in orders {
        sim.add_customer(customer);
        sim.add_sales_order(order(name, customer, total));
        sim.set_sales_order_field(name, "po_no", &ml.to_string());
    }
    let cases = [
        // Order 1: paid in two parts (card, then account money): initial, then additional.
        Case {
            id: 91_000_001,
            ml_order: 2_000_009_001,
            amount: "30000",
            status: "approved",
            created: "2026-10-03T14:10:00Z",
            live: true,
        },
        Case {
            id: 91_000_002,
            ml_order: 2_000_009_001,
            amount: "15990",
            status: "approved",
            created: "2026-10-03T14:12:00Z",
            live: true,
        },
        // Order 2: a rejected card, then the approved retry.
        Case {
            id: 91_000_003,
            ml_order: 2_000_009_002,
            amount: "18500",
            status: "rejected",
            created: "2026-10-09T10:00:00Z",
            live: true,
        },
        Case {
            id: 91_000_004,
            ml_order: 2_000_009_002,
            amount: "18500",
            status: "approved",
            created: "2026-10-09T10:03:00Z",
            live: true,
        },
        // Order 3: a cash ticket not paid yet.
        Case {
            id: 91_000_005,
            ml_order: 2_000_009_003,
            amount: "7200.5",
            status: "pending",
            created: "2026-10-15T18:30:00Z",
            live: true,
        },
        // A sale refunded before anyone booked it.
        Case {
            id: 91_000_006,
            ml_order: 2_000_009_003,
            amount: "1200",
            status: "refunded",
            created: "2026-10-16T09:00:00Z",
            live: true,
        },
        // A sale whose order has not reached ERPNext yet.
        Case {
            id: 91_000_007,
            ml_order: 2_000_009_099,
            amount: "9999",
            status: "approved",
            created: "2026-10-21T12:00:00Z",
            live: true,
        },
        // A test-user payment.
        Case {
            id: 91_000_008,
            ml_order: 2_000_009_001,
            amount: "10",
            status: "approved",
            created: "2026-10-22T12:00:00Z",
            live: false,
        },
    ];
    let mut out = Vec::new();
    for c in &cases {
        let created: Timestamp = c.created.parse().expect("timestamp");
        let mut p = SimMpPayment::approved(c.id, d(c.amount), created);
        p.ml_order_id = Some(c.ml_order);
        p.live_mode = c.live;
        p.status = c.status.into();
        p.status_detail = match c.status {
            "approved" => "accredited",
            "rejected" => "cc_rejected_insufficient_amount",
            "pending" => "pending_waiting_payment",
            _ => "refunded",
        }
        .into();
        if c.status != "approved" && c.status != "refunded" {
            p.approved = None;
        }
        if c.status == "refunded" {
            p.transaction_amount_refunded = p.transaction_amount;
        }
        // MercadoLibre's sale fee, paid by the seller.
        p.fees = vec![SimMpFee {
            kind: "mercadopago_fee".into(),
            amount: (p.transaction_amount * d("0.1399")).round_dp(2),
            payer: "collector".into(),
        }];
        p.collector_id = DEFAULT_MP_SELLER_ID;
        sim.add_mp_payment(p);
        let order_name = orders
            .iter()
            .find(|o| o.3 == c.ml_order)
            .map(|o| (o.0.to_string(), o.1.to_string()));
        let outcome = match (c.id, order_name) {
            (91_000_001, Some((order, party))) => ExpectedOutcome::BookedInitial {
                order,
                allocated: d("30000"),
                party,
            },
            (91_000_004, Some((order, party))) => ExpectedOutcome::BookedInitial {
                order,
                allocated: d("18500"),
                party,
            },
            (91_000_002, Some((order, party))) => {
                ExpectedOutcome::BookedAdditional { order, party }
            }
            (91_000_003, _) => ExpectedOutcome::Rejected,
            (91_000_005, _) => ExpectedOutcome::Pending,
            (91_000_006, _) => ExpectedOutcome::Refunded,
            (91_000_007, _) => ExpectedOutcome::OrderMissing,
            (91_000_008, _) => ExpectedOutcome::IgnoredTest,
            _ => unreachable!("every case has its outcome"),
        };
        out.push(MpExpected {
            id: c.id,
            uid: c.id.to_string(),
            outcome,
        });
    }
    for (_, customer, _, ml) in orders {
        let payment_ids = cases
            .iter()
            .filter(|c| c.ml_order == ml)
            .map(|c| c.id)
            .collect();
        sim.add_ml_order(SimMlOrder {
            id: ml,
            seller_id: DEFAULT_MP_SELLER_ID,
            status: "paid".into(),
            payment_ids,
            buyer_nickname: customer.to_uppercase().replace(' ', ""),
            ..SimMlOrder::default()
        });
    }
    out
}
