//! `paysync run`: the daemon on an ephemeral port against the simulator, driven like a real client.
//!
//! Synchronisation uses the daemon's progress counters (a `watch` channel), never sleeps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use paysync::app::App;
use paysync::daemon::{self, DaemonCtx, Progress};
use paysync::domain::DecisionKind;
use paysync_sim::{Faults, SimOperation, SimOptions};
use rust_decimal::Decimal;
use serde_json::json;

use crate::helpers::{TODAY, TestEnv, order};

pub(crate) const NEVER: &str = "0 0 1 1 *"; // once a year: no poll during a test
const EVERY_SECOND: &str = "* * * * * *";

pub(crate) struct Daemon {
    pub(crate) ctx: Arc<DaemonCtx>,
    addr: SocketAddr,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    pub(crate) async fn start(env: &TestEnv, schedule: &str) -> Daemon {
        let mut settings = env.settings();
        settings.daemon.schedule = schedule.to_string();
        let app = App::build(settings).await.unwrap().with_today(TODAY);
        let ctx = DaemonCtx::new(
            app,
            Arc::new(paysync::clock::SystemClock),
            Some(paysync::metrics::install()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = tokio::spawn(daemon::run(ctx.clone(), listener, std::future::pending()));
        Daemon { ctx, addr, handle }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Wait (on the progress signal) until `pred` holds; fail after 20 s.
    pub(crate) async fn wait_for(&self, what: &str, pred: impl Fn(&Progress) -> bool) -> Progress {
        let mut rx = self.ctx.progress.subscribe();
        let got = tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|p| pred(p)))
            .await
            .ok()
            .and_then(|r| r.ok().map(|p| *p));
        match got {
            Some(p) => p,
            None => panic!(
                "timed out waiting for {what}: {:?}",
                *self.ctx.progress.borrow()
            ),
        }
    }

    pub(crate) async fn stop(self) {
        self.ctx.cancel.cancel();
        self.handle.await.unwrap().unwrap();
    }

    pub(crate) async fn webhook(
        &self,
        account: &str,
        token: Option<&str>,
        body: serde_json::Value,
    ) -> reqwest::Response {
        let mut url = self.url(&format!("/webhooks/mobbex/{account}"));
        if let Some(t) = token {
            url.push_str(&format!("?token={t}"));
        }
        reqwest::Client::new()
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

pub(crate) const TOKEN: &str = "hook-secret-token";

pub(crate) fn hook(uid: &str, status: &str, total: f64) -> serde_json::Value {
    json!({"type": "checkout", "data": {"payment": {"id": uid, "status": {"code": status}, "total": total, "reference": "SAL-ORD-2026-00001"}}})
}

pub(crate) fn seed_order(env: &TestEnv, name: &str) {
    env.sim.add_customer("Cliente Demo");
    env.sim.add_sales_order(order(name, "Cliente Demo", "1000"));
}

pub(crate) fn live_op(
    uid: &str,
    order: &str,
    status: u16,
    total: i64,
    age: SignedDuration,
) -> SimOperation {
    let t = Timestamp::now() - age;
    SimOperation {
        uid: uid.into(),
        reference: order.into(),
        status,
        total: Decimal::from(total),
        currency: "ARS".into(),
        created: t,
        updated: t,
        description: "Compra".into(),
        payer_name: "Juan".into(),
        parent_uid: None,
        operation_type: "payment.v2".into(),
        entity_charges: Vec::new(),
    }
}

pub(crate) fn entries_for(env: &TestEnv, uid: &str) -> usize {
    env.sim
        .payment_entries()
        .iter()
        .filter(|e| e.reference_no.as_deref() == Some(uid))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_books_an_entry() {
    let env = TestEnv::start().await;
    seed_order(&env, "SAL-ORD-2026-00001");
    env.sim.add_operation(live_op(
        "op-1",
        "SAL-ORD-2026-00001",
        200,
        600,
        SignedDuration::from_mins(1),
    ));
    let d = Daemon::start(&env, NEVER).await;
    let r = d
        .webhook("main", Some(TOKEN), hook("op-1", "200", 600.0))
        .await;
    assert_eq!(r.status().as_u16(), 200);
    d.wait_for("the trigger to be done", |p| p.triggers_done >= 1)
        .await;
    assert_eq!(entries_for(&env, "op-1"), 1);
    let rows = d.ctx.ledger.rows("main", &["op-1".into()]).await.unwrap();
    assert_eq!(rows["op-1"].decision, DecisionKind::BookedInitial);

    // The same webhook again (Mobbex re-sends) books nothing more.
    let r = d
        .webhook("main", Some(TOKEN), hook("op-1", "200", 600.0))
        .await;
    assert_eq!(r.status().as_u16(), 200);
    d.wait_for("the repeat to be done", |p| p.triggers_done >= 2)
        .await;
    assert_eq!(entries_for(&env, "op-1"), 1);

    // Metrics show the decision and the API calls.
    let m = reqwest::get(d.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("paysync_decisions_total"), "{m:.500}");
    assert!(
        m.contains("paysync_api_request_duration_seconds"),
        "{m:.500}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_webhooks_are_refused_and_nothing_is_stored() {
    let env = TestEnv::start().await;
    seed_order(&env, "SAL-ORD-2026-00001");
    env.sim.add_operation(live_op(
        "op-1",
        "SAL-ORD-2026-00001",
        200,
        600,
        SignedDuration::from_mins(1),
    ));
    let d = Daemon::start(&env, NEVER).await;
    for (account, token, want) in [
        ("main", Some("wrong-token"), 401),
        ("main", None, 401),
        ("main", Some("hook-secret-toke"), 401),
        ("other", Some(TOKEN), 404),
    ] {
        let r = d.webhook(account, token, hook("op-1", "200", 600.0)).await;
        assert_eq!(r.status().as_u16(), want, "{account} {token:?}");
    }
    // The URL names the source: a Mobbex account is not reached under another source's name.
    for source in ["mercadopago", "MOBBEX", "x"] {
        let r = reqwest::Client::new()
            .post(d.url(&format!("/webhooks/{source}/main?token={TOKEN}")))
            .json(&hook("op-1", "200", 600.0))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{source}");
    }
    let depth = d.ctx.ledger.inbox_depth().await.unwrap();
    assert!(depth.is_empty(), "{depth:?}");
    assert!(
        d.ctx
            .ledger
            .rows("main", &["op-1".into()])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(env.sim.payment_entries().is_empty());

    // Bad bodies: 400, too large: 413; expired checkouts: recorded and ignored.
    let client = reqwest::Client::new();
    let url = d.url(&format!("/webhooks/mobbex/main?token={TOKEN}"));
    let r = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let big = format!(
        "{{\"type\":\"checkout\",\"pad\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let r = client
        .post(&url)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let r = d
        .webhook(
            "main",
            Some(TOKEN),
            json!({"type": "checkout:expired", "data": {"checkout": {"uid": "chk-1"}}}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(d.ctx.ledger.inbox_depth().await.unwrap().is_empty());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_form_webhook_is_accepted() {
    let env = TestEnv::start().await;
    seed_order(&env, "SAL-ORD-2026-00001");
    env.sim.add_operation(live_op(
        "op-f",
        "SAL-ORD-2026-00001",
        200,
        100,
        SignedDuration::from_mins(1),
    ));
    let d = Daemon::start(&env, NEVER).await;
    let r = reqwest::Client::new()
        .post(d.url(&format!("/webhooks/mobbex/main?token={TOKEN}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("type=checkout&data[payment][id]=op-f&data[payment][status][code]=200")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    d.wait_for("the trigger", |p| p.triggers_done >= 1).await;
    assert_eq!(entries_for(&env, "op-f"), 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_lies_books_nothing() {
    let env = TestEnv::start().await;
    seed_order(&env, "SAL-ORD-2026-00001");
    // The API says rejected; the webhook claims paid.
    env.sim.add_operation(live_op(
        "op-x",
        "SAL-ORD-2026-00001",
        400,
        600,
        SignedDuration::from_mins(1),
    ));
    let d = Daemon::start(&env, NEVER).await;
    let r = d
        .webhook("main", Some(TOKEN), hook("op-x", "200", 600.0))
        .await;
    assert_eq!(r.status().as_u16(), 200);
    d.wait_for("the trigger", |p| p.triggers_done >= 1).await;
    assert!(env.sim.payment_entries().is_empty());
    let rows = d.ctx.ledger.rows("main", &["op-x".into()]).await.unwrap();
    assert_eq!(rows["op-x"].decision, DecisionKind::Rejected);

    // An id Mobbex does not know is given up at once, nothing booked.
    let r = d
        .webhook("main", Some(TOKEN), hook("op-made-up", "200", 1.0))
        .await;
    assert_eq!(r.status().as_u16(), 200);
    d.wait_for("the give-up", |p| p.triggers_given_up >= 1)
        .await;
    assert!(env.sim.payment_entries().is_empty());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_that_turns_paid_later_is_booked_by_the_next_poll() {
    let env = TestEnv::start().await;
    seed_order(&env, "SAL-ORD-2026-00001");
    // A cash coupon: waiting (2), created 10 minutes ago.
    env.sim.add_operation(live_op(
        "cupon",
        "SAL-ORD-2026-00001",
        2,
        500,
        SignedDuration::from_mins(10),
    ));
    let d = Daemon::start(&env, EVERY_SECOND).await;
    let p = d.wait_for("a poll", |p| p.polls_ok >= 1).await;
    let rows = d.ctx.ledger.rows("main", &["cupon".into()]).await.unwrap();
    assert_eq!(rows["cupon"].decision, DecisionKind::Pending);
    assert!(env.sim.payment_entries().is_empty());
    assert!(d.ctx.ledger.watermark("main").await.unwrap().is_some());

    // Paid at the counter; no webhook arrives.
    env.sim.update_operation("cupon", |o| {
        o.status = 200;
        o.updated = Timestamp::now();
    });
    let polls = p.polls_ok;
    d.wait_for("two more polls", |p| p.polls_ok >= polls + 2)
        .await;
    assert_eq!(entries_for(&env, "cupon"), 1);

    // /healthz is green: the store answers and the account polled recently.
    let h = reqwest::get(d.url("/healthz")).await.unwrap();
    assert_eq!(h.status().as_u16(), 200);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_pending_triggers() {
    let opts = SimOptions {
        faults: Faults {
            mobbex_5xx_rate: 1.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let env = TestEnv::start_with(opts, "").await;
    seed_order(&env, "SAL-ORD-2026-00001");
    env.sim.add_operation(live_op(
        "op-r",
        "SAL-ORD-2026-00001",
        200,
        300,
        SignedDuration::from_mins(1),
    ));
    let first = Daemon::start(&env, NEVER).await;
    let r = first
        .webhook("main", Some(TOKEN), hook("op-r", "200", 300.0))
        .await;
    assert_eq!(r.status().as_u16(), 200);
    first
        .wait_for("a failed attempt", |p| p.triggers_retried >= 1)
        .await;
    first.stop().await;
    assert!(env.sim.payment_entries().is_empty());
    assert_eq!(
        paysync::store::open(&env.settings().store.url)
            .await
            .unwrap()
            .inbox_depth()
            .await
            .unwrap()
            .get("main"),
        Some(&1),
        "the trigger is still queued after the stop"
    );

    env.sim.set_faults(Faults::default());
    let second = Daemon::start(&env, NEVER).await;
    second
        .wait_for("the resumed trigger", |p| p.triggers_done >= 1)
        .await;
    assert_eq!(entries_for(&env, "op-r"), 1);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_and_poll_racing_on_one_order_give_one_initial_entry() {
    let env = TestEnv::start().await;
    seed_order(&env, "SAL-ORD-2026-00001");
    env.sim.add_operation(live_op(
        "pay-a",
        "SAL-ORD-2026-00001",
        200,
        400,
        SignedDuration::from_mins(3),
    ));
    env.sim.add_operation(live_op(
        "pay-b",
        "SAL-ORD-2026-00001",
        200,
        300,
        SignedDuration::from_mins(2),
    ));
    let d = Daemon::start(&env, NEVER).await;
    let (r1, r2, ()) = tokio::join!(
        d.webhook("main", Some(TOKEN), hook("pay-b", "200", 300.0)),
        d.webhook("main", Some(TOKEN), hook("pay-a", "200", 400.0)),
        daemon::poll_account(&d.ctx, "main"),
    );
    assert_eq!((r1.status().as_u16(), r2.status().as_u16()), (200, 200));
    d.wait_for("both triggers", |p| p.triggers_done >= 2).await;
    let entries = env.sim.payment_entries();
    assert_eq!(entries.len(), 2, "one entry per payment: {entries:?}");
    let initial: Vec<_> = entries
        .iter()
        .filter(|e| !e.references.is_empty())
        .collect();
    assert_eq!(initial.len(), 1, "exactly one initial entry: {entries:?}");
    let so = env.sim.sales_order("SAL-ORD-2026-00001").unwrap();
    assert_eq!(so.advance_paid, initial[0].references[0].allocated_amount);
    d.stop().await;
}

/// The real binary under a fake systemd: READY=1 once listening, STOPPING=1 and exit 0 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_service_cleanly_and_it_speaks_sd_notify() {
    use std::os::unix::net::UnixDatagram;
    let env = TestEnv::start().await;
    let text = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace("[daemon]\n", "[daemon]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&env.config_path, text).unwrap();
    let sock_path = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_paysync"))
        .args(["--config", env.config_path.to_str().unwrap(), "run"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let recv = |sock: &UnixDatagram| {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let sock = tokio::task::spawn_blocking(move || {
        let first = recv(&sock);
        assert!(first.contains("READY=1"), "{first}");
        sock
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped promptly"
    );
    let mut seen = Vec::new();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(seen.iter().any(|m| m.contains("STOPPING=1")), "{seen:?}");
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(
        stderr.contains("paysync running") && stderr.contains("stopped"),
        "{stderr}"
    );
}

/// After days of downtime the first poll starts at the stored watermark: an operation paid while
/// the daemon was down (and whose webhook was lost) is booked at once, without waiting for cron.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_downtime_the_first_poll_starts_at_the_watermark() {
    let env = TestEnv::start().await;
    seed_order(&env, "SAL-ORD-2026-00001");
    env.sim.add_operation(live_op(
        "while-down",
        "SAL-ORD-2026-00001",
        200,
        250,
        SignedDuration::from_hours(48),
    ));
    let ledger = paysync::store::open(&env.settings().store.url)
        .await
        .unwrap();
    let three_days_ago = Timestamp::now() - SignedDuration::from_hours(72);
    assert!(
        paysync::store::set_watermark_once(&*ledger, "main", three_days_ago)
            .await
            .unwrap()
    );
    // Hourly: many fires were missed while down; the first poll must not wait for the next one.
    let d = Daemon::start(&env, "0 * * * *").await;
    d.wait_for("the catch-up poll", |p| p.polls_ok >= 1).await;
    assert_eq!(entries_for(&env, "while-down"), 1);
    let w = d.ctx.ledger.watermark("main").await.unwrap().unwrap();
    assert!(
        w > Timestamp::now() - SignedDuration::from_mins(1),
        "watermark advanced to the poll's end: {w}"
    );
    let polls = d.ctx.ledger.polls("main", 1).await.unwrap();
    assert!(
        polls[0].window_from <= three_days_ago,
        "no gap: the window starts at the old watermark"
    );
    d.stop().await;
}

/// A manual `sync --since` running while the daemon polls the same ledger books nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_sync_while_the_daemon_runs_books_nothing_twice() {
    let opts = SimOptions {
        faults: Faults {
            erp_write_latency: Duration::from_millis(15),
            ..Default::default()
        },
        ..Default::default()
    };
    let env = TestEnv::start_with(opts, "").await;
    env.sim.add_customer("Cliente Demo");
    for i in 1..=20 {
        let name = format!("SAL-ORD-2026-{i:05}");
        env.sim.add_sales_order(order(&name, "Cliente Demo", "100"));
        for j in 0..2 {
            env.sim.add_operation(live_op(
                &format!("op-{i}-{j}"),
                &name,
                200,
                60,
                SignedDuration::from_mins(30 - j),
            ));
        }
    }
    let d = Daemon::start(&env, EVERY_SECOND).await;
    // The manual sync is a second engine on the same ledger file (as a second process would be).
    let app = env.app().await;
    let today = jiff::Zoned::now().date();
    let manual = crate::helpers::sync_with(
        &app,
        today.yesterday().unwrap(),
        today.tomorrow().unwrap(),
        false,
    );
    let (s, _) = tokio::join!(manual, d.wait_for("a poll", |p| p.polls_ok >= 2));
    assert_eq!(s.errors(), 0, "{s}");
    d.wait_for("one more poll", |p| p.polls_ok >= 3).await;
    let entries = env.sim.payment_entries();
    assert_eq!(entries.len(), 40, "one entry per paid operation");
    let mut refs: Vec<_> = entries
        .iter()
        .filter_map(|e| e.reference_no.clone())
        .collect();
    refs.sort();
    refs.dedup();
    assert_eq!(refs.len(), 40, "no reference_no twice");
    let initial = entries.iter().filter(|e| !e.references.is_empty()).count();
    assert_eq!(initial, 20, "one initial entry per order");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_watermark_counts_inbox_and_errors() {
    let env = TestEnv::start().await;
    seed_order(&env, "SAL-ORD-2026-00001");
    env.sim.add_operation(live_op(
        "ok-1",
        "SAL-ORD-2026-00001",
        200,
        100,
        SignedDuration::from_mins(5),
    ));
    env.sim.add_operation(live_op(
        "no-order",
        "SAL-ORD-2026-00404",
        200,
        100,
        SignedDuration::from_mins(5),
    ));
    let d = Daemon::start(&env, EVERY_SECOND).await;
    d.wait_for("a poll", |p| p.polls_ok >= 1).await;
    d.stop().await;
    let cfg = env.config_path.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_paysync"))
            .args(["--config", &cfg, "status", "--json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &v["accounts"][0];
    assert_eq!(a["account"], "main");
    assert!(a["watermark"].is_string(), "{v}");
    assert_eq!(a["last_poll"]["ok"], true);
    assert_eq!(a["decisions"]["booked_initial"], 1);
    assert_eq!(a["decisions"]["order_missing"], 1);
    assert_eq!(a["inbox_depth"], 0);
}
