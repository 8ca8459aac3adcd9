//! `paysync explain`: the whole story of an operation — two failed syncs (ERPNext refusing the
//! create: the account's `paid_to` does not exist yet), then the webhook that booked it once the
//! account was there — read back through the binary, as JSON and as text; an operation nothing
//! knows exits 1.

use jiff::SignedDuration;
use paysync_sim::SimOptions;

use crate::daemon::{Daemon, NEVER, TOKEN, hook, live_op, seed_order};
use crate::helpers::{TestEnv, paysync_cmd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_two_failed_syncs_then_the_webhook_that_booked() {
    let env = TestEnv::start_with(SimOptions::default(), "paid_to = \"Caja Nueva - MESA\"").await;
    seed_order(&env, "SAL-ORD-2026-00001");
    env.sim.add_operation(live_op(
        "op-x",
        "SAL-ORD-2026-00001",
        200,
        300,
        SignedDuration::from_mins(5),
    ));
    let today = jiff::Zoned::now().date();
    for _ in 0..2 {
        let s = env.sync(today, today, false).await;
        assert_eq!(s.errors(), 1, "{s}");
    }
    assert!(env.sim.payment_entries().is_empty());
    // The accountant creates the account.
    env.sim.add_account("Caja Nueva - MESA", false);
    let daemon = Daemon::start(&env, NEVER).await;
    let r = daemon
        .webhook("main", Some(TOKEN), hook("op-x", "200", 300.0))
        .await;
    assert_eq!(r.status().as_u16(), 200);
    daemon
        .wait_for("the webhook's booking", |p| p.triggers_done >= 1)
        .await;
    daemon.stop().await;
    let entry = env
        .sim
        .payment_entries()
        .into_iter()
        .find(|e| e.reference_no.as_deref() == Some("op-x"))
        .expect("booked")
        .name;

    let out = paysync_cmd(&env, &["explain", "op-x", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["operation"], "op-x");
    assert_eq!(v["source"]["status"], "paid", "read live: {v}");
    assert_eq!(v["source"]["amount"], "300");
    let history = v["history"].as_array().unwrap();
    // The two failed syncs (one entry counted twice when their reasons agree), then the booking.
    let failed: u64 = history
        .iter()
        .filter(|h| h["trigger"] == "sync" && h["decision"] == "error")
        .map(|h| h["repeats"].as_u64().unwrap())
        .sum();
    assert_eq!(failed, 2, "two failed attempts: {history:#?}");
    let last = history.last().unwrap();
    assert_eq!(last["trigger"], "webhook", "{history:#?}");
    assert_eq!(last["decision"], "booked_initial");
    assert_eq!(last["erp_entry"], entry.as_str());
    assert!(
        history
            .iter()
            .all(|h| h["decision"] != "booked_initial" || h == last),
        "booked once"
    );
    assert_eq!(v["ledger"]["decision"], "booked_initial");
    let entries = v["erp_entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["name"], entry.as_str());
    assert_eq!(entries[0]["state"], "submitted");
    assert_eq!(entries[0]["paid_amount"], "300");
    let triggers = v["triggers"].as_array().unwrap();
    assert_eq!(triggers.len(), 1, "{triggers:?}");
    assert_eq!(triggers[0]["state"], "done");

    let text = paysync_cmd(&env, &["explain", "op-x"]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    eprintln!("{text}");
    for needle in [
        "operation op-x",
        "paid",
        "webhook",
        "booked_initial",
        &entry,
        "error",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }

    let unknown = paysync_cmd(&env, &["explain", "never-seen"]);
    assert_eq!(unknown.status.code(), Some(1), "nothing knows it");
    let unknown_account = paysync_cmd(&env, &["explain", "op-x", "--account", "nope"]);
    assert_eq!(
        unknown_account.status.code(),
        Some(2),
        "a configuration error"
    );
}
