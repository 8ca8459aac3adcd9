//! Bad input gets a clear decision or error and never stops the others.

use std::time::Duration;

use jiff::civil::date;
use paysync::domain::DecisionKind;
use paysync_sim::{Faults, SimOptions};
use serde_json::json;

use crate::helpers::{TestEnv, sync_with};

const PATTERN: &str = r"order_pattern = '^(?P<order>SAL-ORD-\d{4}-\d+)'";

fn order(env: &TestEnv, name: &str) {
    env.sim.add_customer("Cliente Demo");
    env.sim
        .add_sales_order(crate::helpers::order(name, "Cliente Demo", "1000000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_operation_gets_a_clear_decision_and_the_good_ones_book() {
    let env = TestEnv::start_with(SimOptions::default(), PATTERN).await;
    for i in 1..=20 {
        order(&env, &format!("SAL-ORD-2026-{i:05}"));
    }
    let created = "2026-10-05T12:00:00Z".parse().unwrap();
    let doc = |uid: &str, order: u32| {
        json!({"uid": uid, "status": "200", "total": 10.5, "currency": "ARS",
               "reference": format!("SAL-ORD-2026-{order:05}"), "created": "2026-10-05T12:00:00.000Z"})
    };
    let long_uid = "u".repeat(300);
    // (uid to look up in the ledger or None when the document has no usable id, the document, the
    // expected decision, a word the reason must contain)
    let mut cases: Vec<(Option<String>, serde_json::Value, DecisionKind, &str)> = Vec::new();
    let mut add = |uid: Option<&str>, v: serde_json::Value, k: DecisionKind, word: &'static str| {
        cases.push((uid.map(String::from), v, k, word));
    };
    let mut v = doc("no-status", 1);
    v.as_object_mut().unwrap().remove("status");
    add(Some("no-status"), v, DecisionKind::Error, "missing status");
    let mut v = doc("no-total", 2);
    v.as_object_mut().unwrap().remove("total");
    add(Some("no-total"), v, DecisionKind::Error, "missing total");
    let mut v = doc("status-abc", 3);
    v["status"] = json!("abc");
    add(Some("status-abc"), v, DecisionKind::Error, "abc");
    let mut v = doc("comma-total", 4);
    v["total"] = json!("1.234,56");
    add(Some("comma-total"), v, DecisionKind::Error, "comma");
    let mut v = doc("negative", 5);
    v["total"] = json!(-5);
    add(
        Some("negative"),
        v,
        DecisionKind::Error,
        "not a positive amount",
    );
    let mut v = doc("zero", 6);
    v["total"] = json!(0);
    add(
        Some("zero"),
        v,
        DecisionKind::Error,
        "not a positive amount",
    );
    let mut v = doc("precision", 7);
    v["total"] = serde_json::from_str("10.123456789012345678").unwrap();
    add(Some("precision"), v, DecisionKind::Error, "decimal places");
    let mut v = doc("xyz-currency", 8);
    v["currency"] = json!("XYZ");
    add(
        Some("xyz-currency"),
        v,
        DecisionKind::CurrencyMismatch,
        "XYZ",
    );
    let mut v = doc("bad-currency", 9);
    v["currency"] = json!("€€€");
    add(Some("bad-currency"), v, DecisionKind::Error, "currency");
    let mut v = doc("no-pattern", 10);
    v["reference"] = json!("woocommerce_id:1234");
    add(
        Some("no-pattern"),
        v,
        DecisionKind::OrderMissing,
        "order_pattern",
    );
    let mut v = doc("long-ref", 11);
    v["reference"] = json!("x".repeat(10_000));
    add(
        Some("long-ref"),
        v,
        DecisionKind::OrderMissing,
        "order_pattern",
    );
    let v = doc(&long_uid, 12);
    add(None, v, DecisionKind::Error, "");
    let mut v = doc("total-object", 13);
    v["total"] = json!({"amount": 1});
    add(Some("total-object"), v, DecisionKind::Error, "not a number");
    let mut v = doc("unicode-ñandú-💸", 14);
    v["reference"] = json!("SAL-ORD-2026-00014-pedido-ñandú-💸");
    add(Some("unicode-ñandú-💸"), v, DecisionKind::BookedInitial, "");
    let mut v = doc("bad-date", 15);
    v["created"] = json!("ayer");
    add(Some("bad-date"), v, DecisionKind::Error, "ISO-8601");
    add(
        Some("good-1"),
        doc("good-1", 16),
        DecisionKind::BookedInitial,
        "",
    );
    add(
        Some("good-2"),
        doc("good-2", 17),
        DecisionKind::BookedInitial,
        "",
    );

    for (_, v, _, _) in &cases {
        env.sim.add_raw_operation(v.clone(), created);
    }
    let app = env.app().await;
    let s = sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 3, "{s}");
    let uids: Vec<String> = cases.iter().filter_map(|c| c.0.clone()).collect();
    let rows = app.ledger.rows("main", &uids).await.unwrap();
    for (uid, _, kind, word) in &cases {
        let Some(uid) = uid else { continue };
        let row = rows
            .get(uid)
            .unwrap_or_else(|| panic!("no ledger row for {uid}"));
        assert_eq!(row.decision, *kind, "{uid}: {}", row.reason);
        assert!(
            row.reason.contains(word),
            "{uid}: reason {:?} should say {word:?}",
            row.reason
        );
    }
    assert_eq!(env.sim.payment_entries().len(), 3);
    // The over-long id is an error too (counted), and nothing was booked for it.
    assert!(s.errors() >= 11, "{s}");
}

#[tokio::test]
async fn a_listing_that_is_not_json_fails_the_window_with_a_clear_error() {
    let opts = SimOptions {
        faults: Faults {
            mobbex_garbage_rate: 1.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let env = TestEnv::start_with(opts, "").await;
    let app = env.app().await;
    let w = paysync::app::created_window(
        &app.settings.daemon.timezone,
        date(2026, 10, 1),
        date(2026, 10, 2),
    );
    let (summary, err) = app
        .engine
        .sync_window(&app.accounts[0], w, &Default::default())
        .await
        .expect_err("a broken listing must fail the window");
    assert!(err.to_string().contains("malformed answer"), "{err}");
    assert_eq!(summary.examined, 0);
}

/// A webhook flood cannot grow the inbox without bound: past `inbox_limit` the daemon answers 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_flood_is_bounded_with_429() {
    let opts = SimOptions {
        faults: Faults {
            mobbex_5xx_rate: 1.0, // nothing gets processed: the triggers stay queued
            ..Default::default()
        },
        ..Default::default()
    };
    let env = TestEnv::start_with(opts, "").await;
    let mut settings = env.settings();
    settings.daemon.schedule = "0 0 1 1 *".into();
    settings.daemon.inbox_limit = 5;
    let app = paysync::app::App::build(settings).await.unwrap();
    let ctx = paysync::daemon::DaemonCtx::new(
        app,
        std::sync::Arc::new(paysync::clock::SystemClock),
        None,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(paysync::daemon::run(
        ctx.clone(),
        listener,
        std::future::pending(),
    ));
    let client = reqwest::Client::new();
    let mut codes = Vec::new();
    for i in 0..12 {
        let r = client
            .post(format!(
                "http://{addr}/webhooks/mobbex/main?token=hook-secret-token"
            ))
            .json(&json!({"type": "checkout", "data": {"payment": {"id": format!("flood-{i}")}}}))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 429 {
            assert!(r.headers().get("retry-after").is_some());
        }
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 5, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 7, "{codes:?}");
    let depth = ctx.ledger.inbox_depth().await.unwrap();
    assert_eq!(depth.get("main"), Some(&5));
    ctx.cancel.cancel();
    handle.await.unwrap().unwrap();
}

/// Run the real binary and give up after `limit` (a daemon that should have refused to start
/// would otherwise keep the test waiting).
fn run_binary_within(args: &[&str], env: &[(&str, &str)], limit: Duration) -> std::process::Output {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_paysync"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .env_remove("PAYSYNC_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: `pid` is our own child, still running (it has not been waited for).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("paysync {args:?} was still running after {limit:?}");
        }
    }
}

/// One configuration of [`a_careless_operators_configuration_stops_the_binary_at_start_naming_the_key`].
struct Case {
    config: String,
    env: Vec<(&'static str, &'static str)>,
    /// Words the message must hold.
    says: Vec<&'static str>,
}

/// What a careless operator wrote, found by running the real binary: each was accepted (and then
/// panicked every poll, timed out every request, grew memory, or kept a ledger in memory). Now
/// each stops the binary at start with exit 2 and `key: problem (got VALUE)`.
#[test]
fn a_careless_operators_configuration_stops_the_binary_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sync.toml");
    let base = format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://{}\"\n[erp]\nkind = \"erpnext\"\nurl = \"http://127.0.0.1:9\"\napi_key = \"k\"\napi_secret = \"s\"\n[[accounts]]\nname = \"main\"\nsource = \"mobbex\"\napi_url = \"http://127.0.0.1:9\"\napi_key = \"k\"\naccess_token = \"t\"\ncompany = \"C\"\nmode_of_payment = \"M\"\n",
        dir.path().join("ledger.db").display()
    );
    let in_daemon = |line: &str| base.replace("[daemon]\n", &format!("[daemon]\n{line}\n"));
    let in_erp = |line: &str| base.replace("[erp]\n", &format!("[erp]\n{line}\n"));
    let cases = [
        Case {
            config: in_daemon("lookback = \"200000000h\""),
            env: vec![],
            says: vec!["daemon.lookback", "(got \"200000000h\")"],
        },
        Case {
            config: in_erp("timeout = \"0s\""),
            env: vec![],
            says: vec!["erp.timeout", "(got \"0s\")"],
        },
        Case {
            config: in_erp("max_in_flight = 1e20"),
            env: vec![],
            says: vec!["erp.max_in_flight", "(got 1e+20)"],
        },
        Case {
            config: base.replace("api_secret = \"s\"", "api_secret_file = \"/dev/zero\""),
            env: vec![],
            says: vec!["erp.api_secret_file", "/dev/zero"],
        },
        Case {
            config: base.replace(
                &format!("sqlite://{}", dir.path().join("ledger.db").display()),
                "sqlite::memory:",
            ),
            env: vec![],
            says: vec!["store.url", "(got \"sqlite::memory:\")"],
        },
        Case {
            config: base.clone(),
            env: vec![("PAYSYNC__ACCOUNTS__MIAN__ACCESS_TOKEN", "t2")],
            says: vec!["PAYSYNC__ACCOUNTS__MIAN__ACCESS_TOKEN", "\"main\""],
        },
        Case {
            config: format!(
                "{base}[[accounts]]\nname = \"MAIN\"\nsource = \"mobbex\"\napi_url = \"http://127.0.0.1:9\"\napi_key = \"k2\"\naccess_token = \"t2\"\ncompany = \"C\"\nmode_of_payment = \"M\"\n"
            ),
            env: vec![],
            says: vec!["accounts[1].name", "\"MAIN\"", "\"main\""],
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        std::fs::write(&path, &case.config).unwrap();
        for cmd in ["check", "run"] {
            let out = run_binary_within(
                &["--config", path.to_str().unwrap(), cmd],
                &case.env,
                Duration::from_secs(30),
            );
            let t = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.status.code(), Some(2), "case {i} {cmd}: {t}");
            for w in &case.says {
                assert!(
                    t.contains(w),
                    "case {i} {cmd}: the message must say {w:?}: {t}"
                );
            }
        }
    }
}
