//! What a sync costs ERPNext in calls on a realistic sample: thousands of operations over about as
//! many customers as orders. (A sample of 25 customers hid a receivable-account lookup per
//! customer behind a cache: 312 extra calls on 2,000 operations in an independent run.)

use jiff::civil::date;
use paysync_sim::sample::{SampleSpec, populate, to_book};

use crate::helpers::{TestEnv, assert_exactly_expected};

const COMPANY: &str = "Mi Empresa SA";

/// Every tenth customer has a receivable account of its own (a Party Account row).
fn own_account(customer_no: usize) -> Option<String> {
    (customer_no % 10 == 1).then(|| format!("Deudores {customer_no} - MESA"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_customers_cost_no_call_per_customer() {
    let env = TestEnv::start().await;
    let customers = 1000;
    let spec = SampleSpec {
        operations: 2000,
        customers,
        seed: 13,
        ..SampleSpec::default()
    };
    let expected = populate(&env.sim, &spec);
    for no in 1..=customers {
        if let Some(account) = own_account(no) {
            env.sim
                .set_customer_receivable(&format!("Cliente {no:03}"), COMPANY, &account);
        }
    }
    let before = env.sim.entry_names();
    env.sim.reset_stats();

    let summary = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(summary.unresolved(), 0, "{summary}");
    assert_exactly_expected(&env.sim, &expected, &before);
    let booked = to_book(&expected);
    let stats = env.sim.stats();
    let calls = stats.erp_reads + stats.erp_writes;
    eprintln!(
        "{} operations, {booked} booked over {customers} customers: ERPNext {calls} calls ({} writes, {} reads)",
        expected.len(),
        stats.erp_writes,
        stats.erp_reads
    );
    assert_eq!(stats.erp_writes, booked, "one write per entry");
    assert!(
        calls * 100 <= booked * 102,
        "at most 1.02 ERPNext calls per booked entry: {calls} for {booked}: {:?}",
        stats.by_endpoint
    );
    assert!(
        !stats
            .by_endpoint
            .keys()
            .any(|k| k.contains("get_party_account")),
        "no lookup per customer: {:?}",
        stats.by_endpoint
    );

    // Additional payments are on each customer's own receivable account, as ERPNext fills it in.
    let mut additional = 0;
    for e in env.sim.payment_entries() {
        if !e.references.is_empty() || before.contains(&e.name) {
            continue;
        }
        additional += 1;
        let no: usize = e.party.trim_start_matches("Cliente ").parse().unwrap();
        let want = own_account(no).unwrap_or_else(|| "Deudores - MESA".into());
        assert_eq!(e.paid_from, want, "{} of {}", e.name, e.party);
    }
    assert!(additional > 100, "a sample worth the name: {additional}");

    // A rerun: no writes, at most one call per 100 operations.
    env.sim.reset_stats();
    let again = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(again.unresolved(), 0, "{again}");
    let stats = env.sim.stats();
    assert_eq!(stats.erp_writes, 0);
    assert!(
        stats.erp_reads * 100 <= expected.len() as u64,
        "rerun: {} reads for {} operations",
        stats.erp_reads,
        expected.len()
    );
}
