//! Fees as deductions (issue 14, item 6) end to end: a Mobbex account with `fees_account` books
//! the merchant's charges (`totals.entity_charges`) as one deductions row each, the bank at the
//! net and the customer at the gross, and the simulated ERPNext (which applies the recorded
//! server's unallocated/difference rule, section 29) accepts every entry; without the keys the
//! same operations book the gross amount as before.

use std::str::FromStr;

use jiff::civil::date;
use paysync::domain::DecisionKind;
use paysync_sim::fixtures::paid_op;
use paysync_sim::{SimOptions, SimPaymentEntry};
use rust_decimal::Decimal;

use crate::helpers::{TestEnv, order};

const SO: &str = "SAL-ORD-2026-00001";
const FEES: &str = "fees_account = \"Comisiones - MESA\"\nfees_cost_center = \"Main - MESA\"";

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// An order of 1000 paid in full by `op-1` (charges 41.30 + 8.705), then `op-2` of 300 more
/// (charge 12.10) a day later.
async fn two_payments(extra_account_toml: &str) -> TestEnv {
    let env = TestEnv::start_with(SimOptions::default(), extra_account_toml).await;
    env.sim.add_customer("Cliente Demo");
    env.sim.add_sales_order(order(SO, "Cliente Demo", "1000"));
    let mut first = paid_op("op-1", SO, 1000, "2026-10-02T12:00:00Z".parse().unwrap());
    first.entity_charges = vec![
        ("source".into(), d("41.30")),
        ("service".into(), d("8.705")),
    ];
    let mut second = paid_op("op-2", SO, 300, "2026-10-03T12:00:00Z".parse().unwrap());
    second.entity_charges = vec![("service".into(), d("12.10"))];
    env.sim.add_operation(first);
    env.sim.add_operation(second);
    env
}

fn entry(env: &TestEnv, uid: &str) -> SimPaymentEntry {
    env.sim
        .payment_entries()
        .into_iter()
        .find(|e| e.reference_no.as_deref() == Some(uid))
        .unwrap_or_else(|| panic!("no entry for {uid}"))
}

fn rows(e: &SimPaymentEntry) -> Vec<(&str, &str, Decimal, Option<&str>)> {
    e.deductions
        .iter()
        .map(|r| {
            (
                r.account.as_str(),
                r.cost_center.as_str(),
                r.amount,
                r.description.as_deref(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_account_with_fees_books_the_net_to_the_bank_and_the_gross_to_the_customer() {
    let env = two_payments(FEES).await;
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    assert_eq!(s.get(DecisionKind::BookedAdditional), 1, "{s}");

    // Initial: 1000 allocated, 1000 − 41.30 − 8.71 to the bank (8.705 rounded half away).
    let first = entry(&env, "op-1");
    assert_eq!(first.paid_amount, d("949.99"));
    assert_eq!(first.received_amount, d("949.99"));
    assert_eq!(first.references.len(), 1);
    assert_eq!(first.references[0].allocated_amount, d("1000"));
    assert_eq!(
        rows(&first),
        [
            (
                "Comisiones - MESA",
                "Main - MESA",
                d("41.30"),
                Some("source")
            ),
            (
                "Comisiones - MESA",
                "Main - MESA",
                d("8.71"),
                Some("service")
            ),
        ]
    );
    assert_eq!(first.unallocated_amount, Decimal::ZERO);

    // Additional: unallocated, and ERPNext credits the customer the gross 300.
    let second = entry(&env, "op-2");
    assert!(second.references.is_empty());
    assert_eq!(second.paid_amount, d("287.90"));
    assert_eq!(second.received_amount, d("287.90"));
    assert_eq!(
        rows(&second),
        [(
            "Comisiones - MESA",
            "Main - MESA",
            d("12.10"),
            Some("service")
        )]
    );
    assert_eq!(second.unallocated_amount, d("300"));

    // The order is paid at the gross amount (29o).
    assert_eq!(env.sim.sales_order(SO).unwrap().advance_paid, d("1000"));
    // A rerun books nothing more.
    let again = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(again.get(DecisionKind::AlreadyLoaded), 2, "{again}");
}

#[tokio::test]
async fn the_same_account_without_the_keys_books_the_gross_amount() {
    let env = two_payments("").await;
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    assert_eq!(s.get(DecisionKind::BookedAdditional), 1, "{s}");
    let first = entry(&env, "op-1");
    assert_eq!(first.paid_amount, d("1000"));
    assert_eq!(first.received_amount, d("1000"));
    assert!(first.deductions.is_empty());
    assert_eq!(first.references[0].allocated_amount, d("1000"));
    let second = entry(&env, "op-2");
    assert_eq!(second.paid_amount, d("300"));
    assert!(second.deductions.is_empty());
    assert_eq!(second.unallocated_amount, d("300"));
    assert_eq!(env.sim.sales_order(SO).unwrap().advance_paid, d("1000"));
}

#[tokio::test]
async fn charges_that_take_the_whole_total_are_an_error_not_an_entry() {
    let env = TestEnv::start_with(SimOptions::default(), FEES).await;
    env.sim.add_customer("Cliente Demo");
    env.sim.add_sales_order(order(SO, "Cliente Demo", "1000"));
    let mut op = paid_op("op-1", SO, 100, "2026-10-02T12:00:00Z".parse().unwrap());
    op.entity_charges = vec![("service".into(), d("60")), ("source".into(), d("40"))];
    env.sim.add_operation(op);
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::Error), 1, "{s}");
    assert!(env.sim.payment_entries().is_empty());
    let ledger = env.ledger_contents().await;
    assert!(
        ledger.contains("fees 100 are not less than the total 100"),
        "{ledger}"
    );
}

/// A webhook's or a re-read's operation comes from `GET /p/operations/{uid}`, which carries no
/// charges: a client that books fees takes them from the listing by the operation's reference.
#[tokio::test]
async fn an_operation_read_alone_gets_its_charges_from_the_listing() {
    use paysync::source::PaymentSource;
    use paysync::source::mobbex::MobbexClient;
    let env = two_payments(FEES).await;
    let opts = SimOptions::default();
    let client = |charges: bool| {
        MobbexClient::new(
            env.sim.mobbex_url.parse().unwrap(),
            &opts.mobbex_api_key.clone().into(),
            &opts.mobbex_access_token.clone().into(),
            std::time::Duration::from_secs(5),
        )
        .unwrap()
        .with_charges(charges)
    };
    let with = client(true).get_operation("op-1").await.unwrap();
    let fees: Vec<(&str, Decimal)> = with
        .fees
        .iter()
        .map(|f| (f.kind.as_str(), f.amount))
        .collect();
    assert_eq!(fees, [("source", d("41.30")), ("service", d("8.705"))]);
    let lists_before = env.sim.stats().mobbex_list_calls;
    let without = client(false).get_operation("op-1").await.unwrap();
    assert!(without.fees.is_empty());
    assert_eq!(
        env.sim.stats().mobbex_list_calls,
        lists_before,
        "no listing read without fees"
    );
}
