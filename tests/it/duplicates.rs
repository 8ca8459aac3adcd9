//! No duplicate, whatever the timing (issue 9's reproductions): a cancelled initial entry, two
//! accounts paying one order, one entity configured twice.

use jiff::civil::date;
use paysync::domain::DecisionKind;
use paysync_sim::{SimOptions, Simulator};
use rust_decimal::Decimal;

use crate::helpers::{TestEnv, order, paid_op, paysync_cmd, until_a_create_arrives};

const SO: &str = "SAL-ORD-2026-00001";

/// A simulator whose Payment Entry writes take `ms` milliseconds.
fn slow_writes(ms: u64) -> SimOptions {
    SimOptions {
        faults: paysync_sim::Faults {
            erp_write_latency: std::time::Duration::from_millis(ms),
            ..Default::default()
        },
        ..SimOptions::default()
    }
}

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn entries_of(env: &TestEnv, uid: &str) -> Vec<paysync_sim::SimPaymentEntry> {
    env.sim
        .payment_entries()
        .into_iter()
        .filter(|e| e.reference_no.as_deref() == Some(uid) && e.docstatus < 2)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_initial_entry_is_cancelled_the_next_payment_is_initial_again() {
    after_the_initial_entry_is_cancelled_the_next_payment_is_initial_again_case(false).await;
}

/// The same with ERPNext's duplicate guard installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_initial_entry_is_cancelled_the_next_payment_is_initial_again_with_the_guard() {
    after_the_initial_entry_is_cancelled_the_next_payment_is_initial_again_case(true).await;
}

async fn after_the_initial_entry_is_cancelled_the_next_payment_is_initial_again_case(guard: bool) {
    let env = TestEnv::start().await;
    if guard {
        assert_eq!(paysync_cmd(&env, &["erp-setup"]).status.code(), Some(0));
    }
    env.sim.add_customer("Cliente Demo");
    env.sim.add_sales_order(order(SO, "Cliente Demo", "1000"));
    env.sim
        .add_operation(paid_op("p1", SO, 400, at("2026-10-05T15:00:00Z")));
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    let first = entries_of(&env, "p1").remove(0);
    // An accountant cancels it in ERPNext; then the customer pays again.
    env.sim.cancel_payment_entry(&first.name);
    assert_eq!(env.sim.sales_order(SO).unwrap().advance_paid, Decimal::ZERO);
    env.sim
        .add_operation(paid_op("p2", SO, 300, at("2026-10-06T15:00:00Z")));
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.unresolved(), 0, "{s}");
    let p2 = entries_of(&env, "p2");
    assert_eq!(p2.len(), 1);
    assert_eq!(
        p2[0].references.len(),
        1,
        "no submitted entry references the order now: p2 is initial: {:?}",
        p2[0]
    );
    assert_eq!(p2[0].references[0].allocated_amount, Decimal::from(300));
    // The cancelled payment itself is not re-booked on its own.
    assert!(entries_of(&env, "p1").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_paying_one_order_make_exactly_one_initial_entry() {
    two_accounts_paying_one_order_make_exactly_one_initial_entry_case(false).await;
}

/// The same with ERPNext's duplicate guard installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_paying_one_order_make_exactly_one_initial_entry_with_the_guard() {
    two_accounts_paying_one_order_make_exactly_one_initial_entry_case(true).await;
}

async fn two_accounts_paying_one_order_make_exactly_one_initial_entry_case(guard: bool) {
    // Account "b" is a second Mobbex entity (its own simulator and credentials) whose payments
    // name the same Sales Orders as account "main".
    let other = Simulator::start(SimOptions {
        mobbex_api_key: "other-key".into(),
        mobbex_access_token: "other-token".into(),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let extra = format!(
        "\n[[accounts]]\nname = \"b\"\nsource = \"mobbex\"\napi_url = \"{}\"\napi_key = \"other-key\"\naccess_token = \"other-token\"\ncompany = \"Mi Empresa SA\"\nmode_of_payment = \"Mobbex\"\n",
        other.mobbex_url
    );
    // Slow writes: each account's batch reads the orders before the other's entries exist.
    let env = TestEnv::start_with(slow_writes(150), "").await;
    if guard {
        assert_eq!(paysync_cmd(&env, &["erp-setup"]).status.code(), Some(0));
    }
    let mut text = std::fs::read_to_string(&env.config_path).unwrap();
    text.push_str(&extra);
    std::fs::write(&env.config_path, text).unwrap();
    env.sim.add_customer("Cliente Demo");
    let orders = 20;
    for i in 0..orders {
        let name = format!("SAL-ORD-2026-{:05}", i + 1);
        env.sim
            .add_sales_order(order(&name, "Cliente Demo", "1000"));
        // Same instant on both sides: neither is "earlier".
        let t = at("2026-10-05T15:00:00Z") + jiff::SignedDuration::from_mins(i);
        env.sim
            .add_operation(paid_op(&format!("a-{i}"), &name, 300, t));
        other.add_operation(paid_op(&format!("b-{i}"), &name, 200, t));
    }
    let app = env.app().await;
    let window = paysync::app::created_window(
        &app.settings.daemon.timezone,
        date(2026, 10, 1),
        date(2026, 10, 31),
    );
    let opts = paysync::pipeline::RunOptions::default();
    let (a, b) = tokio::join!(
        app.engine.sync_window(&app.accounts[0], window, &opts),
        app.engine.sync_window(&app.accounts[1], window, &opts)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.unresolved() + b.unresolved(), 0, "{a} / {b}");
    assert_eq!(
        a.get(DecisionKind::BookedInitial) + b.get(DecisionKind::BookedInitial),
        orders as u64,
        "one initial entry per order: {a} / {b}"
    );
    for i in 0..orders {
        let name = format!("SAL-ORD-2026-{:05}", i + 1);
        let allocated: Vec<_> = env
            .sim
            .payment_entries()
            .into_iter()
            .filter(|e| e.references.iter().any(|r| r.reference_name == name))
            .collect();
        assert_eq!(allocated.len(), 1, "{name}: {allocated:?}");
    }
    assert_eq!(env.sim.payment_entries().len(), 2 * orders as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mobbex_entity_configured_twice_is_refused_at_start() {
    let env = TestEnv::start().await;
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    // The account table again under another name: the same entity.
    let account = &text[text.find("[[accounts]]").unwrap()..];
    let copy = account.replace("name = \"main\"", "name = \"main-copy\"");
    std::fs::write(&env.config_path, format!("{text}\n{copy}")).unwrap();
    for args in [
        &["check"][..],
        &["sync", "--since", "2026-10-01"][..],
        &["run"][..],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_paysync"))
            .arg("--config")
            .arg(&env.config_path)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("\"main\"") && stderr.contains("\"main-copy\""),
            "{args:?}: {stderr}"
        );
    }
    assert!(env.sim.payment_entries().is_empty());
}

/// Slow writes, one at a time: a batch's groups wait far longer than a claim's TTL for their write
/// slot. A second process starting past the TTL must not find the claims lapsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_do_not_lapse_while_their_work_waits_for_a_write_slot() {
    claims_do_not_lapse_while_their_work_waits_for_a_write_slot_case(false).await;
}

/// The same with ERPNext's duplicate guard installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_do_not_lapse_while_their_work_waits_for_a_write_slot_with_the_guard() {
    claims_do_not_lapse_while_their_work_waits_for_a_write_slot_case(true).await;
}

async fn claims_do_not_lapse_while_their_work_waits_for_a_write_slot_case(guard: bool) {
    use paysync::claims::ClaimTiming;
    use paysync::pipeline::Engine;
    use std::sync::Arc;
    use std::time::Duration;
    let env = TestEnv::start_with(slow_writes(700), "").await;
    if guard {
        assert_eq!(paysync_cmd(&env, &["erp-setup"]).status.code(), Some(0));
    }
    env.sim.add_customer("Cliente Demo");
    let orders = 6;
    for i in 0..orders {
        let name = format!("SAL-ORD-2026-{:05}", i + 1);
        env.sim
            .add_sales_order(order(&name, "Cliente Demo", "1000"));
        env.sim.add_operation(paid_op(
            &format!("op-{i}"),
            &name,
            100,
            at("2026-10-05T15:00:00Z") + jiff::SignedDuration::from_mins(i),
        ));
    }
    // Two "processes" (own ledger pool, ERP client, holder name), claims living 1 s; no wait
    // after a takeover, so only the claims' renewal can keep the second process out.
    let timing = ClaimTiming {
        ttl: Duration::from_secs(1),
        wait: Duration::from_secs(30),
        commit_horizon: Duration::ZERO,
    };
    let engine = |app: &paysync::app::App| {
        Arc::new(
            Engine::new(
                app.erp.clone(),
                app.ledger.clone(),
                app.settings.daemon.timezone.clone(),
                1,
            )
            .with_today(crate::helpers::TODAY)
            .with_claim_timing(timing),
        )
    };
    let (first, second) = (env.app().await, env.app().await);
    let (e1, e2) = (engine(&first), engine(&second));
    let window = paysync::app::created_window(
        &first.settings.daemon.timezone,
        date(2026, 10, 1),
        date(2026, 10, 31),
    );
    let opts = paysync::pipeline::RunOptions::default();
    let (a, b) = tokio::join!(e1.sync_window(&first.accounts[0], window, &opts), async {
        // Past the TTL: the first process's later groups are still queued for the write slot.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        e2.sync_window(&second.accounts[0], window, &opts).await
    });
    let (a, b) = (a.unwrap(), b.unwrap());
    let entries = env.sim.payment_entries();
    let mut refs: Vec<_> = entries
        .iter()
        .filter_map(|e| e.reference_no.clone())
        .collect();
    refs.sort();
    let n = refs.len();
    refs.dedup();
    assert_eq!(n, refs.len(), "no reference_no twice: {a} / {b}");
    assert_eq!(n, orders as usize, "{a} / {b}");
    assert!(
        entries.iter().all(|e| e.references.len() == 1),
        "each one initial"
    );
}

/// SIGKILL a sync while ERPNext is still working on its create (which then commits), restart at
/// once: the successor waits out the dead holder's create and finds it, instead of booking again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_after_sigkill_mid_create_books_nothing_twice() {
    sigkill_mid_create(false).await;
}

/// The same with ERPNext's duplicate guard: the successor need not wait out the dead holder's
/// creates (it sends its own once the dead holder's order claim lapses, and ERPNext refuses it).
/// The create takes longer here than the claim's lease plus the successor's start, so the dead
/// holder's create is surely still in ERPNext's hands when the successor looks and sends: with a
/// shorter create the successor may find it committed and rightly send nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_guard_a_takeover_after_sigkill_needs_no_wait_and_books_nothing_twice() {
    sigkill_mid_create(true).await;
}

async fn sigkill_mid_create(guard: bool) {
    use std::time::Duration;
    // With the guard: the create takes longer than the claim's lease (2 s) plus the successor's
    // start, yet less than paysync's ERP timeout (5 s).
    let (create_ms, kill_after_ms) = if guard { (4500, 200) } else { (2000, 600) };
    let env = TestEnv::start().await;
    if guard {
        assert_eq!(paysync_cmd(&env, &["erp-setup"]).status.code(), Some(0));
    }
    env.sim.set_faults(slow_writes(create_ms).faults);
    env.sim.add_customer("Cliente Demo");
    env.sim.add_sales_order(order(SO, "Cliente Demo", "1000"));
    env.sim
        .add_operation(paid_op("p1", SO, 400, at("2026-10-05T15:00:00Z")));
    let cfg = env.config_path.clone();
    let sync = move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_paysync"))
            .arg("--config")
            .arg(&cfg)
            .args(["sync", "--since", "2026-10-01", "--until", "2026-10-31"])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = sync();
    // Kill it once its create is in ERPNext's hands (in progress, not committed yet).
    until_a_create_arrives(&env.sim, 0).await;
    tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(env.sim.payment_entries().is_empty(), "not committed yet");
    let mut committed = env.sim.subscribe_writes();
    let again = sync.clone();
    let started = std::time::Instant::now();
    let second = tokio::task::spawn_blocking(move || again().wait().unwrap());
    let status = second.await.unwrap();
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0));
    committed.wait_for(|n| *n >= 1).await.unwrap();
    let entries: Vec<_> = env
        .sim
        .payment_entries()
        .into_iter()
        .filter(|e| e.reference_no.as_deref() == Some("p1"))
        .collect();
    assert_eq!(entries.len(), 1, "booked once: {entries:?}");
    if guard {
        // Sent again without waiting (a wait would have found the entry and sent nothing), and
        // refused by ERPNext.
        let stats = env.sim.stats();
        assert_eq!(
            (stats.erp_writes, stats.erp_writes_ok),
            (2, 1),
            "the successor sent its create, and ERPNext refused it"
        );
    } else {
        assert_eq!(env.sim.stats().erp_writes, 1, "the successor sent nothing");
        assert!(
            took >= Duration::from_secs(4),
            "waited out the horizon: {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erp_setup_installs_the_guard_once_and_check_tells_whether_it_is_there() {
    let env = TestEnv::start().await;
    let check = paysync_cmd(&env, &["check"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(text.contains("duplicate guard: not installed"), "{text}");
    let first = paysync_cmd(&env, &["erp-setup"]);
    assert_eq!(first.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&first.stdout).contains("guard installed"));
    let again = paysync_cmd(&env, &["erp-setup"]);
    assert_eq!(again.status.code(), Some(0), "idempotent");
    assert!(String::from_utf8_lossy(&again.stdout).contains("already installed"));
    let check = paysync_cmd(&env, &["check"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(text.contains("duplicate guard: installed"), "{text}");
}

/// With the guard, ERPNext itself refuses a second entry: one the check-then-insert could not see
/// (here an entry holding the operation under another reference_no) is recognised, not doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_guard_a_second_entry_is_refused_by_erpnext_and_recorded_as_loaded() {
    let env = TestEnv::start().await;
    assert_eq!(paysync_cmd(&env, &["erp-setup"]).status.code(), Some(0));
    env.sim.add_customer("Cliente Demo");
    env.sim.add_sales_order(order(SO, "Cliente Demo", "1000"));
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00002", "Cliente Demo", "1000"));
    // Entries typed elsewhere holding p1's and p2's guard values (reference_no differs).
    let http = reqwest::Client::new();
    let opts = SimOptions::default();
    let mut holders = Vec::new();
    for (uid, so) in [("p1", SO), ("p2", "SAL-ORD-2026-00002")] {
        let r = http
            .post(format!("{}/api/resource/Payment%20Entry", env.sim.erpnext_url))
            .header("Authorization", format!("token {}:{}", opts.erp_api_key, opts.erp_api_secret))
            .json(&serde_json::json!({
                "docstatus": 1, "payment_type": "Receive", "party_type": "Customer",
                "party": "Cliente Demo", "company": "Mi Empresa SA", "mode_of_payment": "Mobbex",
                "posting_date": "2026-11-22", "paid_from": "Deudores - MESA", "paid_to": "Mobbex - MESA",
                "paid_amount": 400, "received_amount": 400, "reference_no": format!("typed-{uid}"),
                "reference_date": "2026-11-22", "paysync_operation": uid,
                "references": [{"reference_doctype": "Sales Order", "reference_name": so, "allocated_amount": 400}],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        holders.push(v["data"]["name"].as_str().unwrap().to_string());
    }
    env.sim.cancel_payment_entry(&holders[1]);
    env.sim
        .add_operation(paid_op("p1", SO, 400, at("2026-10-05T15:00:00Z")));
    env.sim.add_operation(paid_op(
        "p2",
        "SAL-ORD-2026-00002",
        400,
        at("2026-10-06T15:00:00Z"),
    ));
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.unresolved(), 0, "{s}");
    assert_eq!(s.get(DecisionKind::AlreadyLoaded), 2, "{s}");
    assert_eq!(
        env.sim.payment_entries().len(),
        2,
        "nothing new: ERPNext refused both"
    );
    let ledger = paysync::store::open(&env.settings().store.url)
        .await
        .unwrap();
    let rows = ledger
        .rows("main", &["p1".into(), "p2".into()])
        .await
        .unwrap();
    assert_eq!(rows["p1"].erp_entry.as_deref(), Some(holders[0].as_str()));
    assert!(
        rows["p1"].reason.contains("duplicate guard"),
        "{}",
        rows["p1"].reason
    );
    assert!(
        rows["p2"].reason.contains("cancelled"),
        "{}",
        rows["p2"].reason
    );
}

/// Found against a real ERPNext: with the guard, a first payment whose answer was lost after the
/// commit is sent again and refused (already loaded); the order's next payment must still see
/// the order paid, and be additional.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_guard_a_lost_first_answer_still_makes_the_next_payment_additional() {
    use paysync_sim::{CreateFault, ErrorBody};
    let env = TestEnv::start().await;
    assert_eq!(paysync_cmd(&env, &["erp-setup"]).status.code(), Some(0));
    env.sim.add_customer("Cliente Demo");
    env.sim.add_sales_order(order(SO, "Cliente Demo", "1000"));
    env.sim
        .add_operation(paid_op("p1", SO, 400, at("2026-10-05T15:00:00Z")));
    env.sim
        .add_operation(paid_op("p2", SO, 300, at("2026-10-06T15:00:00Z")));
    env.sim.fail_creates(
        "p1",
        vec![CreateFault::LostAfterCommit {
            status: 504,
            body: ErrorBody::Empty,
        }],
    );
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.unresolved(), 0, "{s}");
    let p1 = entries_of(&env, "p1");
    let p2 = entries_of(&env, "p2");
    assert_eq!((p1.len(), p2.len()), (1, 1));
    assert_eq!(p1[0].references.len(), 1, "p1 initial");
    assert!(p2[0].references.is_empty(), "p2 additional: {:?}", p2[0]);
    assert_eq!(
        env.sim.sales_order(SO).unwrap().advance_paid,
        Decimal::from(400)
    );
}

/// Found against a real ERPNext: with the guard, the resend of a create whose answer was lost
/// after the commit can be refused by validation before the guard (the order is paid now by that
/// very entry): it is booked, never `order_not_payable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_guard_a_resend_refused_by_validation_is_found_booked() {
    use paysync_sim::{CreateFault, ErrorBody};
    let env = TestEnv::start().await;
    assert_eq!(paysync_cmd(&env, &["erp-setup"]).status.code(), Some(0));
    env.sim.add_customer("Cliente Demo");
    env.sim.add_sales_order(order(SO, "Cliente Demo", "1000"));
    env.sim
        .add_operation(paid_op("p1", SO, 1000, at("2026-10-05T15:00:00Z")));
    env.sim.fail_creates(
        "p1",
        vec![CreateFault::LostAfterCommit {
            status: 502,
            body: ErrorBody::Html,
        }],
    );
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.unresolved(), 0, "{s}");
    assert_eq!(s.get(DecisionKind::OrderNotPayable), 0, "{s}");
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    assert_eq!(entries_of(&env, "p1").len(), 1);
}
