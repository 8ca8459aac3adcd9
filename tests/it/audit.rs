//! `paysync audit`: a period with a discrepancy of every kind planted lists exactly those (and
//! the clean operations as `ok`), through the binary, as text and as JSON lines; a clean period
//! exits 0; the audit changes nothing.

use std::collections::BTreeMap;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp, ToSpan};
use paysync_sim::SimOptions;
use rust_decimal::Decimal;

use crate::daemon::{live_op, seed_order};
use crate::helpers::{TestEnv, order, paysync_cmd};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn today() -> jiff::civil::Date {
    Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("America/Argentina/Buenos_Aires").unwrap())
        .date()
}

/// An entry typed by hand in ERPNext.
fn by_hand(env: &TestEnv, reference_no: &str, party: &str, amount: &str) -> String {
    crate::helpers::entry_by_hand(env, reference_no, "Receive", party, d(amount))
}

fn op(env: &TestEnv, uid: &str, order: &str, status: u16, total: i64, mins: i64) {
    env.sim.add_operation(live_op(
        uid,
        order,
        status,
        total,
        SignedDuration::from_mins(mins),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_lists_exactly_the_planted_discrepancies() {
    let env = TestEnv::start_with(SimOptions::default(), "").await;
    seed_order(&env, "SAL-ORD-2026-00001");
    for (n, customer) in [
        (2, "Cliente Demo"),
        (3, "Cliente Demo"),
        (4, "Cliente Demo"),
    ] {
        env.sim
            .add_sales_order(order(&format!("SAL-ORD-2026-0000{n}"), customer, "1000"));
    }
    env.sim.add_customer("Otro Cliente");
    op(&env, "p-ok", "SAL-ORD-2026-00001", 200, 100, 60);
    op(&env, "p-dup", "SAL-ORD-2026-00001", 200, 110, 55);
    op(&env, "p-amount", "SAL-ORD-2026-00002", 200, 120, 50);
    op(&env, "p-party", "SAL-ORD-2026-00003", 200, 130, 45);
    op(&env, "p-cancel", "SAL-ORD-2026-00004", 200, 140, 40);
    op(&env, "p-refund", "SAL-ORD-2026-00004", 200, 150, 35);
    op(&env, "p-pending", "SAL-ORD-2026-00004", 1, 160, 30);
    op(&env, "p-rejected", "SAL-ORD-2026-00004", 400, 170, 25);
    // Typed by hand before paysync ran, wrongly: another amount, another customer.
    by_hand(&env, "p-amount", "Cliente Demo", "119");
    by_hand(&env, "p-party", "Otro Cliente", "130");
    let s = env.sync(today(), today(), false).await;
    assert_eq!(s.errors(), 0, "{s}");

    // After the booking: a second entry for p-dup, p-cancel's entry cancelled, p-refund refunded
    // (no reversal: `reverse_refunds` is off), an entry of the mode of payment naming no
    // operation, and a paid operation nobody booked.
    by_hand(&env, "p-dup", "Cliente Demo", "110");
    let cancel = env
        .sim
        .payment_entries()
        .into_iter()
        .find(|e| e.reference_no.as_deref() == Some("p-cancel"))
        .unwrap()
        .name;
    env.sim.cancel_payment_entry(&cancel);
    env.sim.set_mobbex_status("p-refund", 602, Timestamp::now());
    let unknown = by_hand(&env, "typed-by-hand-77", "Cliente Demo", "55");
    op(&env, "p-missing", "SAL-ORD-2026-00001", 200, 180, 20);
    let entries_before = env.sim.payment_entries();

    let since = (today() - 3.days()).to_string();
    let until = today().to_string();
    let out = paysync_cmd(
        &env,
        &["audit", "--since", &since, "--until", &until, "--json"],
    );
    assert_eq!(out.status.code(), Some(1), "discrepancies: exit 1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let findings: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let by: BTreeMap<String, String> = findings
        .iter()
        .map(|f| {
            let key = f["operation"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| f["entry"].as_str().unwrap().to_string());
            (key, f["verdict"].as_str().unwrap().to_string())
        })
        .collect();
    let want: BTreeMap<String, String> = [
        ("p-ok", "ok"),
        ("p-dup", "duplicate"),
        ("p-amount", "amount_mismatch"),
        ("p-party", "party_mismatch"),
        ("p-cancel", "cancelled_in_erp"),
        ("p-refund", "not_reversed"),
        ("p-pending", "pending_in_source"),
        ("p-rejected", "ok"),
        ("p-missing", "missing"),
        (unknown.as_str(), "unknown_entry"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(by, want, "{stdout}");
    assert_eq!(findings.len(), want.len(), "one finding each");
    let amount = findings
        .iter()
        .find(|f| f["operation"] == "p-amount")
        .unwrap();
    assert_eq!(amount["source_amount"], "120");
    assert_eq!(amount["erp_amount"], "119");
    assert!(amount["entry"].as_str().unwrap().starts_with("ACC-PAY-"));
    assert_eq!(env.sim.payment_entries(), entries_before, "read-only");

    let text = paysync_cmd(&env, &["audit", "--since", &since, "--until", &until]);
    assert_eq!(text.status.code(), Some(1));
    let text = String::from_utf8_lossy(&text.stdout);
    eprintln!("{text}");
    assert!(text.contains("totals: ok=2 missing=1 duplicate=1 amount_mismatch=1 party_mismatch=1 cancelled_in_erp=1 not_reversed=1 unknown_entry=1 pending_in_source=1"), "{text}");
    assert!(text.contains("per day:"), "{text}");
    assert!(
        !text.contains("p-ok "),
        "clean findings are only counted: {text}"
    );

    // A period with nothing wrong in it.
    let before = (today() - 20.days()).to_string();
    let earlier = (today() - 10.days()).to_string();
    let clean = paysync_cmd(&env, &["audit", "--since", &before, "--until", &earlier]);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
}
