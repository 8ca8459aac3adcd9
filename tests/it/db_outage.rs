//! The ledger's PostgreSQL taken away under a running daemon and given back, through a TCP proxy
//! (`tcp_proxy`): partitioned (nothing gets through, nothing closes) and cut (every connection
//! closed). While it is away a webhook is answered 503 within seconds (Mobbex sends it again)
//! and `/healthz` names the store; once it is back everything resumes without a restart, and a
//! create that committed in ERPNext while the ledger was away is found, not booked again.
//! Skipped (with a message) unless `PAYSYNC_TEST_POSTGRES_URL` names a server.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use jiff::SignedDuration;
use paysync::domain::DecisionKind;
use paysync::store::postgres::scratch::ScratchDb;
use paysync_sim::{Faults, SimOptions};

use crate::daemon::{Daemon, NEVER, TOKEN, entries_for, hook, live_op, seed_order};
use crate::helpers::{TestEnv, creates_received, until_a_create_arrives};
use crate::tcp_proxy::TcpProxy;

const SO: &str = "SAL-ORD-2026-00001";

/// The server `url` names, resolved.
async fn server_of(url: &str) -> SocketAddr {
    let opts = sqlx::postgres::PgConnectOptions::from_str(url).unwrap();
    tokio::net::lookup_host((opts.get_host(), opts.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap()
}

/// `url` with its host and port replaced by `addr` (user, database and parameters kept).
fn through(url: &str, addr: SocketAddr) -> String {
    let start = url.find("://").unwrap() + 3;
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let host_at = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    format!("{}{addr}{}", &url[..host_at], &url[end..])
}

/// `/healthz`: its status and body. The client waits longer than the daemon's own limit, so a
/// hang shows as a failure here rather than as a slow 503.
async fn health(d: &Daemon) -> (u16, serde_json::Value) {
    let r = client().get(d.url("/healthz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn send_hook(d: &Daemon, uid: &str) -> (u16, String) {
    let r = client()
        .post(d.url(&format!("/webhooks/mobbex/main?token={TOKEN}")))
        .json(&hook(uid, "200", 100.0))
        .send()
        .await
        .expect("the webhook is answered, not left hanging");
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Until `/healthz` says 200 again (as a load balancer probes), at most a minute.
async fn until_healthy(d: &Daemon, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = health(d).await;
        if code == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still unhealthy a minute after the {after} ended: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_unreachable_webhooks_get_503_healthz_names_the_store_and_all_resumes() {
    let Some(db) = ScratchDb::create("with_postgres_unreachable_webhooks_get_503").await else {
        return;
    };
    let proxy = TcpProxy::start(server_of(&db.url).await).await;
    let env = TestEnv::start_on(
        SimOptions::default(),
        "",
        Some(&through(&db.url, proxy.addr)),
    )
    .await;
    seed_order(&env, SO);
    for i in 1..=4 {
        let age = SignedDuration::from_mins(10 - i);
        env.sim
            .add_operation(live_op(&format!("op-{i}"), SO, 200, 100, age));
    }
    let d = Daemon::start(&env, NEVER).await;
    assert_eq!(health(&d).await.0, 200);
    assert_eq!(send_hook(&d, "op-1").await.0, 200);
    d.wait_for("op-1", |p| p.triggers_done >= 1).await;

    for (n, (outage, uid)) in [("partition", "op-2"), ("cut", "op-3")]
        .into_iter()
        .enumerate()
    {
        match outage {
            "partition" => proxy.partition(),
            _ => proxy.cut(),
        }
        let (code, body) = send_hook(&d, uid).await;
        assert_eq!(code, 503, "{outage}: {body}");
        assert!(body.contains("ledger"), "{outage}: says why: {body}");
        let (code, body) = health(&d).await;
        assert_eq!(code, 503, "{outage}: {body}");
        let problems = body["problems"].as_array().unwrap();
        assert!(
            problems
                .iter()
                .any(|p| p.as_str().unwrap().starts_with("store: ")),
            "{outage}: names the store: {body}"
        );
        proxy.restore();
        until_healthy(&d, outage).await;
        // Mobbex sends the refused webhook again.
        assert_eq!(send_hook(&d, uid).await.0, 200, "{outage}");
        d.wait_for(uid, |p| p.triggers_done >= 2 + n as u64).await;
        assert_eq!(entries_for(&env, uid), 1, "{outage}");
    }

    // The ledger goes away while ERPNext is committing op-4's entry: the create succeeds, its
    // record in the ledger fails. Once the ledger is back the trigger is taken up again (its
    // lease lapsed) and finds the entry in ERPNext instead of booking a second one.
    env.sim.set_faults(Faults {
        erp_write_latency: Duration::from_millis(1500),
        ..Default::default()
    });
    let sent_before = creates_received(&env.sim);
    let mut committed = env.sim.subscribe_writes();
    let before = *committed.borrow_and_update();
    let failed_before = d.ctx.progress.borrow().outcome_writes_failed;
    assert_eq!(send_hook(&d, "op-4").await.0, 200);
    // ERPNext has the create (it commits 1.5 s later).
    until_a_create_arrives(&env.sim, sent_before).await;
    proxy.cut();
    tokio::time::timeout(Duration::from_secs(20), committed.wait_for(|n| *n > before))
        .await
        .expect("the create commits")
        .unwrap();
    // Back only once the trigger's outcome met the missing ledger (the booking's record came
    // first, and failed too).
    d.wait_for("the outcome to fail", move |p| {
        p.outcome_writes_failed > failed_before
    })
    .await;
    proxy.restore();
    d.wait_for("op-4 after the cut", |p| p.triggers_done >= 4)
        .await;
    until_healthy(&d, "cut mid-create").await;

    let entries = env.sim.payment_entries();
    assert_eq!(entries.len(), 4, "one entry per payment: {entries:?}");
    let uids: Vec<String> = (1..=4).map(|i| format!("op-{i}")).collect();
    for uid in &uids {
        assert_eq!(entries_for(&env, uid), 1, "{uid}");
    }
    let first = entries
        .iter()
        .find(|e| e.reference_no.as_deref() == Some("op-1"));
    assert_eq!(
        first.unwrap().references.len(),
        1,
        "op-1 is the initial payment"
    );
    assert!(
        entries
            .iter()
            .filter(|e| e.reference_no.as_deref() != Some("op-1"))
            .all(|e| e.references.is_empty()),
        "the others are additional: {entries:?}"
    );
    // op-4's booking could not be recorded: its trigger was tried again, and that examination
    // found the entry and recorded it.
    let rows = d.ctx.ledger.rows("main", &uids).await.unwrap();
    for uid in &uids {
        let want = match uid.as_str() {
            "op-1" => DecisionKind::BookedInitial,
            "op-4" => DecisionKind::AlreadyLoaded,
            _ => DecisionKind::BookedAdditional,
        };
        let row = rows
            .get(uid)
            .unwrap_or_else(|| panic!("{uid} is in the ledger: {rows:?}"));
        assert_eq!(row.decision, want, "{uid}: {row:?}");
        let entry = entries
            .iter()
            .find(|e| e.reference_no.as_deref() == Some(uid));
        assert_eq!(row.erp_entry, entry.map(|e| e.name.clone()), "{uid}");
    }
    assert!(
        d.ctx.progress.borrow().triggers_retried >= 1,
        "op-4's trigger was tried again"
    );
    tokio::time::timeout(Duration::from_secs(20), d.stop())
        .await
        .expect("a clean stop");
    drop(env);
    drop(db);
}
