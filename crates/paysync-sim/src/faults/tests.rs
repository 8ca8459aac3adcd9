//! Each fault, seen from a real HTTP client: status, headers, body shape, what was committed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::super::{Faults, SimOptions, Simulator};
use super::{CreateFault, ErrorBody, SERVER_ERRORS};

/// A simulator and one HTTP client (building a client per request is slow).
struct Env {
    sim: Simulator,
    http: reqwest::Client,
}

impl std::ops::Deref for Env {
    type Target = Simulator;
    fn deref(&self) -> &Simulator {
        &self.sim
    }
}

async fn start(faults: Faults) -> Env {
    let sim = Simulator::start(SimOptions {
        faults,
        seed: 7,
        ..Default::default()
    })
    .await
    .expect("simulator starts");
    sim.add_customer("Cliente Demo");
    Env {
        sim,
        http: reqwest::Client::new(),
    }
}

fn mobbex_get(sim: &Env) -> reqwest::RequestBuilder {
    sim.http
        .get(format!("{}/p/operations/op-1", sim.mobbex_url))
        .header("x-api-key", "sim-mbx-key")
        .header("x-access-token", "sim-mbx-token")
}

fn erp(sim: &Env, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    sim.http
        .request(method, format!("{}{path}", sim.erpnext_url))
        .header("Authorization", "token sim-erp-key:sim-erp-secret")
}

fn erp_read(sim: &Env) -> reqwest::RequestBuilder {
    erp(sim, reqwest::Method::GET, "/api/resource/Sales Order")
}

/// A valid submitted, unallocated Payment Entry for `reference_no`.
fn create(sim: &Env, reference_no: &str) -> reqwest::RequestBuilder {
    erp(sim, reqwest::Method::POST, "/api/resource/Payment Entry").json(&json!({
        "docstatus": 1,
        "payment_type": "Receive",
        "party_type": "Customer",
        "party": "Cliente Demo",
        "company": "Mi Empresa SA",
        "paid_amount": 10.5,
        "received_amount": 10.5,
        "paid_to": "Mobbex - MESA",
        "reference_no": reference_no,
        "reference_date": "2026-10-01",
    }))
}

/// The status and body shape of an error answer, after checking the body matches its shape.
async fn shape(resp: reqwest::Response, mobbex: bool) -> (u16, ErrorBody) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.expect("a complete body");
    let shape = if text.is_empty() {
        ErrorBody::Empty
    } else if ct.starts_with("application/json") {
        let v: Value = serde_json::from_str(&text).expect("JSON");
        if mobbex {
            assert_eq!(v["result"], json!(false), "{text}");
            let code = match status {
                502 => "BAD_GATEWAY",
                503 => "SERVICE_UNAVAILABLE",
                504 => "GATEWAY_TIMEOUT",
                _ => "INTERNAL_ERROR",
            };
            assert_eq!(v["code"], json!(code), "{text}");
            assert!(v["error"].is_string(), "{text}");
        } else {
            let exc_type = v["exc_type"].as_str().expect("exc_type");
            let exception = v["exception"].as_str().expect("exception");
            assert!(exception.starts_with("frappe.exceptions."), "{text}");
            if status == 500 {
                assert_eq!(exc_type, "OperationalError");
                assert!(exception.contains("Deadlock"), "{text}");
            }
            assert!(v["exc"].is_string(), "{text}");
        }
        ErrorBody::Json
    } else if ct.starts_with("text/html") {
        assert!(text.contains(&format!("<title>{status} ")), "{text}");
        assert!(text.contains("<center>nginx</center>"), "{text}");
        ErrorBody::Html
    } else if ct.starts_with("text/plain") {
        assert!(!text.contains('<'), "{text}");
        ErrorBody::PlainText
    } else {
        panic!("unexpected content-type {ct:?}: {text}");
    };
    (status, shape)
}

fn total(sim: &Env, prefix: &str) -> u64 {
    sim.stats()
        .faults_injected
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test]
async fn mobbex_5xx_any_draws_every_status_and_body_shape() {
    let sim = start(Faults {
        mobbex_5xx_any_rate: 1.0,
        ..Default::default()
    })
    .await;
    let (mut statuses, mut shapes) = (BTreeSet::new(), BTreeSet::new());
    for _ in 0..60 {
        let (status, body) = shape(mobbex_get(&sim).send().await.unwrap(), true).await;
        statuses.insert(status);
        shapes.insert(body.label());
    }
    assert_eq!(statuses, SERVER_ERRORS.into_iter().collect());
    assert_eq!(shapes.len(), 4, "{shapes:?}");
    assert_eq!(total(&sim, "mobbex 5"), 60);
    assert_eq!(
        sim.stats().mobbex_get_calls,
        0,
        "answered before doing anything"
    );
}

#[tokio::test]
async fn a_429_may_come_without_retry_after() {
    let sim = start(Faults {
        mobbex_429_rate: 1.0,
        mobbex_429_no_retry_after_rate: 1.0,
        erp_429_rate: 1.0,
        erp_429_no_retry_after_rate: 1.0,
        erp_retry_after_secs: 4,
        ..Default::default()
    })
    .await;
    for resp in [
        mobbex_get(&sim).send().await.unwrap(),
        erp_read(&sim).send().await.unwrap(),
        create(&sim, "op-429").send().await.unwrap(),
    ] {
        assert_eq!(resp.status(), 429);
        assert!(resp.headers().get("retry-after").is_none());
    }
    assert_eq!(sim.stats().faults_injected["mobbex 429 no retry-after"], 1);
    assert_eq!(sim.stats().faults_injected["erp 429 no retry-after"], 2);
    assert!(sim.payment_entries().is_empty());

    // The older rates alone keep their header.
    sim.set_faults(Faults {
        mobbex_429_rate: 1.0,
        erp_429_rate: 1.0,
        erp_retry_after_secs: 4,
        ..Default::default()
    });
    let m = mobbex_get(&sim).send().await.unwrap();
    assert_eq!(m.headers()["retry-after"], "1");
    let e = erp_read(&sim).send().await.unwrap();
    assert_eq!(e.headers()["retry-after"], "4");
    assert_eq!(sim.stats().faults_injected["mobbex 429"], 1);
    assert_eq!(sim.stats().faults_injected["erp 429"], 1);
}

#[tokio::test]
async fn erp_5xx_comes_before_anything_is_committed() {
    let sim = start(Faults {
        erp_5xx_rate: 1.0,
        ..Default::default()
    })
    .await;
    let (mut statuses, mut shapes) = (BTreeSet::new(), BTreeSet::new());
    for i in 0..40 {
        let (status, body) = shape(
            create(&sim, &format!("op-{i}")).send().await.unwrap(),
            false,
        )
        .await;
        statuses.insert(status);
        shapes.insert(body.label());
    }
    assert_eq!(statuses, SERVER_ERRORS.into_iter().collect());
    assert_eq!(shapes.len(), 4, "{shapes:?}");
    let stats = sim.stats();
    assert!(sim.payment_entries().is_empty());
    assert_eq!((stats.erp_writes, stats.erp_writes_ok), (40, 0));
    let before_commit: u64 = stats
        .faults_injected
        .iter()
        .filter(|(k, _)| k.starts_with("erp 5") && k.ends_with(" before commit"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(before_commit, 40);

    // Reads too.
    let (status, _) = shape(erp_read(&sim).send().await.unwrap(), false).await;
    assert!(SERVER_ERRORS.contains(&status));
    assert_eq!(sim.stats().erp_reads, 0);
}

#[tokio::test]
async fn erp_lost_after_commit_commits_then_answers_502_or_504() {
    let sim = start(Faults {
        erp_lost_after_commit_rate: 1.0,
        ..Default::default()
    })
    .await;
    let (mut statuses, mut shapes) = (BTreeSet::new(), BTreeSet::new());
    for i in 0..40 {
        let (status, body) = shape(
            create(&sim, &format!("op-{i}")).send().await.unwrap(),
            false,
        )
        .await;
        statuses.insert(status);
        shapes.insert(body.label());
    }
    assert_eq!(statuses, [502, 504].into_iter().collect());
    // A proxy's answers only: Frappe writes its exception body only when it rolled back.
    assert_eq!(
        shapes,
        ["empty", "html", "text"].into_iter().collect(),
        "{shapes:?}"
    );
    assert_eq!(sim.payment_entries().len(), 40);
    assert_eq!(sim.stats().erp_writes_ok, 40);
    assert_eq!(total(&sim, "erp lost after commit 50"), 40);
    // Reads are not affected.
    assert_eq!(erp_read(&sim).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn dropped_connections_never_look_like_a_complete_answer() {
    let sim = start(Faults {
        mobbex_drop_connection_rate: 1.0,
        erp_drop_connection_rate: 1.0,
        ..Default::default()
    })
    .await;
    // Reads: a 200 head, then the body breaks off.
    for req in [mobbex_get(&sim), erp_read(&sim)] {
        let resp = req.send().await.expect("the head arrives");
        assert_eq!(resp.status(), 200);
        assert!(resp.bytes().await.is_err(), "the body is incomplete");
    }
    assert_eq!(sim.stats().faults_injected["mobbex drop mid-answer"], 1);
    assert_eq!(sim.stats().faults_injected["erp drop mid-answer"], 1);

    // Creates: before the commit the request fails outright; after it the body breaks off.
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for i in 0..30 {
        let r = format!("op-{i}");
        match create(&sim, &r).send().await {
            Err(_) => before.push(r),
            Ok(resp) => {
                assert_eq!(resp.status(), 200);
                assert!(resp.bytes().await.is_err(), "the body is incomplete");
                after.push(r);
            }
        }
    }
    assert!(!before.is_empty() && !after.is_empty());
    let committed: BTreeSet<String> = sim
        .payment_entries()
        .into_iter()
        .filter_map(|e| e.reference_no)
        .collect();
    assert_eq!(committed, after.iter().cloned().collect());
    let stats = sim.stats();
    assert_eq!(stats.erp_writes, 30);
    assert_eq!(
        stats.faults_injected["erp drop before commit"],
        before.len() as u64
    );
    assert_eq!(
        stats.faults_injected["erp drop after commit"],
        after.len() as u64
    );

    // Other writes: closed before the status line.
    let put = erp(
        &sim,
        reqwest::Method::PUT,
        "/api/resource/Payment Entry/ACC-PAY-2026-00001",
    )
    .json(&json!({"docstatus": 2}))
    .send()
    .await;
    assert!(put.is_err());
    assert_eq!(stats.faults_injected.get("erp drop before answer"), None);
    assert_eq!(sim.stats().faults_injected["erp drop before answer"], 1);
}

#[tokio::test]
async fn targeted_faults_are_consumed_in_order_then_creates_are_normal() {
    let sim = start(Faults::default()).await;
    sim.fail_creates(
        "op-1",
        vec![
            CreateFault::TooManyRequests {
                retry_after: Some(3),
            },
            CreateFault::TooManyRequests { retry_after: None },
            CreateFault::ServerError {
                status: 503,
                body: ErrorBody::Html,
            },
            CreateFault::LostAfterCommit {
                status: 504,
                body: ErrorBody::Empty,
            },
        ],
    );
    // Another reference is not affected.
    assert_eq!(create(&sim, "op-2").send().await.unwrap().status(), 200);

    let r = create(&sim, "op-1").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    let r = create(&sim, "op-1").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_none());
    let r = create(&sim, "op-1").send().await.unwrap();
    assert_eq!(shape(r, false).await, (503, ErrorBody::Html));
    assert_eq!(sim.payment_entries().len(), 1, "nothing committed yet");
    let r = create(&sim, "op-1").send().await.unwrap();
    assert_eq!(shape(r, false).await, (504, ErrorBody::Empty));
    assert_eq!(sim.payment_entries().len(), 2, "committed, answer lost");
    let r = create(&sim, "op-1").send().await.unwrap();
    assert_eq!(r.status(), 200, "faults used up");

    let stats = sim.stats();
    assert_eq!((stats.erp_writes, stats.erp_writes_ok), (6, 3));
    let f = &stats.faults_injected;
    assert_eq!(f["targeted 429"], 1);
    assert_eq!(f["targeted 429 no retry-after"], 1);
    assert_eq!(f["targeted 503 html before commit"], 1);
    assert_eq!(f["targeted lost after commit 504 empty"], 1);
}

#[tokio::test]
async fn commit_later_answers_504_at_once_and_commits_after_the_delay() {
    let sim = start(Faults::default()).await;
    let delay = Duration::from_millis(300);
    // Refused when its turn comes (unknown customer): never created.
    sim.fail_creates(
        "op-bad",
        vec![CreateFault::CommitLater {
            after: Duration::from_millis(50),
        }],
    );
    sim.fail_creates("op-1", vec![CreateFault::CommitLater { after: delay }]);
    let mut writes = sim.subscribe_writes();

    let bad = create(&sim, "op-bad")
        .json(&json!({"party": "Nadie", "reference_no": "op-bad"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 504);
    let sent = Instant::now();
    let r = create(&sim, "op-1").send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(r.text().await.unwrap(), "");
    assert!(sim.payment_entries().is_empty(), "not committed yet");
    assert_eq!(sim.stats().erp_writes_ok, 0);

    tokio::time::timeout(Duration::from_secs(5), writes.changed())
        .await
        .expect("committed in time")
        .unwrap();
    assert!(sent.elapsed() >= delay, "committed only after the delay");
    let entries = sim.payment_entries();
    assert_eq!(entries.len(), 1, "the refused one was not created");
    assert_eq!(entries[0].reference_no.as_deref(), Some("op-1"));
    let stats = sim.stats();
    assert_eq!((stats.erp_writes, stats.erp_writes_ok), (2, 1));
    assert_eq!(stats.faults_injected["targeted commit later"], 2);
    assert!(sim.commit_instant("op-1").unwrap() >= sent + delay);
}

#[tokio::test]
async fn the_same_seed_injects_the_same_faults() {
    let faults = Faults {
        mobbex_5xx_any_rate: 0.3,
        mobbex_drop_connection_rate: 0.2,
        erp_5xx_rate: 0.2,
        erp_drop_connection_rate: 0.2,
        erp_lost_after_commit_rate: 0.3,
        ..Default::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let sim = start(faults.clone()).await;
        let mut seen = Vec::new();
        for i in 0..20 {
            for req in [mobbex_get(&sim), create(&sim, &format!("op-{i}"))] {
                seen.push(match req.send().await {
                    Ok(r) => (r.status().as_u16(), r.bytes().await.is_ok()),
                    Err(_) => (0, false),
                });
            }
        }
        runs.push((seen, sim.stats().faults_injected));
    }
    assert_eq!(runs[0], runs[1]);
    assert!(!runs[0].1.is_empty());
}
