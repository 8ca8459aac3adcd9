//! Workers, series locks, the allocated write's latency and deadlocks, seen from a real HTTP
//! client. Concurrency is read off the simulator's counters, never inferred from timings.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{Value, json};

use crate::Faults;
use crate::testing::{Site, assert_error_like, recorded_site, recording};

/// A submitted entry of 100 for `reference_no` in `series` (`None`: the default), allocated in
/// full to `order` when one is given.
fn entry(reference_no: &str, series: Option<&str>, order: Option<&str>) -> Value {
    let mut b = json!({
        "docstatus": 1, "payment_type": "Receive", "party_type": "Customer",
        "party": "Cliente Demo", "company": "Test Co AR", "mode_of_payment": "Mobbex",
        "posting_date": "2026-12-01", "paid_from": "Debtors - TCA",
        "paid_to": "Bank Account - TCA", "reference_date": "2026-12-01",
        "paid_amount": 100.0, "received_amount": 100.0, "reference_no": reference_no,
        "references": [],
    });
    if let Some(s) = series {
        b["naming_series"] = json!(s);
    }
    if let Some(o) = order {
        b["references"] = json!([{"reference_doctype": "Sales Order", "reference_name": o,
            "allocated_amount": 100.0}]);
    }
    b
}

/// Sends all `bodies` at once; their statuses in the same order.
async fn post_all(site: &Site, bodies: &[Value]) -> Vec<(u16, String, Value)> {
    join_all(bodies.iter().map(|b| site.post(b))).await
}

fn statuses(answers: &[(u16, String, Value)]) -> Vec<u16> {
    answers.iter().map(|a| a.0).collect()
}

fn read(site: &Site) -> reqwest::RequestBuilder {
    site.http
        .get(format!("{}/api/resource/Sales%20Order", site.erpnext_url))
        .header("Authorization", "token sim-erp-key:sim-erp-secret")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_bound_the_requests_served_at_once() {
    let faults = Faults {
        erp_read_latency: Duration::from_millis(40),
        ..Default::default()
    };
    // No limit: eight reads at once are served together.
    let site = recorded_site(faults.clone()).await;
    let answers = join_all((0..8).map(|_| read(&site).send())).await;
    assert!(answers.iter().all(|r| r.as_ref().unwrap().status() == 200));
    let unlimited = site.stats().max_concurrent_erp_requests;
    assert!(unlimited > 2, "served together: {unlimited}");

    // Two workers: never more than two at once, every request still answered.
    let site = recorded_site(Faults {
        erp_workers: 2,
        ..faults
    })
    .await;
    let answers = join_all((0..8).map(|_| read(&site).send())).await;
    assert!(answers.iter().all(|r| r.as_ref().unwrap().status() == 200));
    assert_eq!(site.stats().max_concurrent_erp_requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_a_create_to_the_end_though_its_client_left() {
    let site = recorded_site(Faults {
        erp_workers: 1,
        erp_write_latency: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let gave_up = site
        .http
        .post(format!("{}/api/resource/Payment%20Entry", site.erpnext_url))
        .header("Authorization", "token sim-erp-key:sim-erp-secret")
        .timeout(Duration::from_millis(50))
        .json(&entry("mbx-left", None, None))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client gave up first");
    // The one worker is still writing it: a read is served only once the create committed.
    let r = read(&site).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(site.payment_entries().len(), 1, "committed before the read");
    assert_eq!(site.stats().max_concurrent_erp_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_series_is_written_one_at_a_time_under_its_lock() {
    let faults = Faults {
        erp_write_latency: Duration::from_millis(40),
        ..Default::default()
    };
    let six: Vec<Value> = (0..6)
        .map(|i| entry(&format!("mbx-{i}"), None, None))
        .collect();
    // Without the lock, creates of one series are written together.
    let site = recorded_site(faults.clone()).await;
    assert_eq!(statuses(&post_all(&site, &six).await), [200; 6]);
    let unlocked = site.stats().max_series_writes["ACC-PAY-2026-"];
    assert!(unlocked > 1, "written together: {unlocked}");

    // With it, one at a time per series, every one named in turn.
    let site = recorded_site(Faults {
        erp_series_lock: true,
        ..faults
    })
    .await;
    let mut bodies = six.clone();
    bodies.extend((0..4).map(|i| entry(&format!("mbx-b{i}"), Some("B-.YYYY.-"), None)));
    // Refused at its link checks, before naming: it takes no lock and writes nothing.
    let mut unknown = entry("mbx-unknown", Some("C-.YYYY.-"), None);
    unknown["party"] = json!("Nadie");
    bodies.push(unknown);
    let answers = post_all(&site, &bodies).await;
    assert_eq!(statuses(&answers)[..10], [200; 10]);
    assert_eq!(answers[10].0, 417, "{}", answers[10].2);
    let stats = site.stats();
    assert_eq!(
        stats.max_series_writes,
        [("ACC-PAY-2026-", 1), ("B-2026-", 1)]
            .map(|(k, n)| (k.to_string(), n))
            .into()
    );
    assert!(
        stats.max_concurrent_writes > 2,
        "they were all in the server at once, queued on the lock: {stats:?}"
    );
    let mut names: Vec<String> = site.entry_names();
    names.sort();
    let mut want: Vec<String> = (1..=6).map(|n| format!("ACC-PAY-2026-{n:05}")).collect();
    want.extend((1..=4).map(|n| format!("B-2026-{n:05}")));
    assert_eq!(names, want);
}

#[tokio::test]
async fn an_allocated_create_takes_its_own_latency() {
    let site = recorded_site(Faults {
        erp_allocated_write_latency: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    site.add_order("SAL-ORD-2026-00001", 100);
    let started = Instant::now();
    assert_eq!(site.post(&entry("mbx-plain", None, None)).await.0, 200);
    let plain = started.elapsed();
    let started = Instant::now();
    let allocated = entry("mbx-alloc", None, Some("SAL-ORD-2026-00001"));
    assert_eq!(site.post(&allocated).await.0, 200);
    let dear = started.elapsed();
    assert!(dear >= Duration::from_millis(300), "{dear:?}");
    assert!(plain < Duration::from_millis(300), "{plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocated_creates_of_two_series_deadlock_and_nothing_is_created() {
    let site = recorded_site(Faults {
        erp_series_lock: true,
        erp_allocated_write_latency: Duration::from_millis(300),
        erp_series_deadlock_rate: 1.0,
        ..Default::default()
    })
    .await;
    for o in ["SO-1", "SO-2", "SO-3", "SO-4"] {
        site.add_order(o, 100);
    }
    // 33a: two allocated creates written at once in two series: both lose (rate 1).
    let pair = [
        entry("mbx-dl-1", None, Some("SO-1")),
        entry("mbx-dl-2", Some("ACC-PAY-MBX-.YYYY.-"), Some("SO-2")),
    ];
    let answers = post_all(&site, &pair).await;
    let rec = recording("33a-post-payment-deadlock-two-series.json");
    for a in &answers {
        assert_error_like(&rec, a);
    }
    // 33b: rolled back, nothing created, nothing allocated, no series number used.
    assert!(site.payment_entries().is_empty());
    assert!(site.by_reference("mbx-dl-1").await.is_empty());
    assert_eq!(site.sales_order("SO-1").unwrap().advance_paid, 0.into());
    let stats = site.stats();
    assert_eq!(
        stats.deadlocks,
        [("mbx-dl-1", 1), ("mbx-dl-2", 1)]
            .map(|(k, n)| (k.to_string(), n))
            .into()
    );
    assert_eq!(stats.faults_injected["erp deadlock"], 2);
    // 33c: each sent again on its own goes through; 33d: counted once.
    for b in &pair {
        assert_eq!(site.post(b).await.0, 200);
    }
    assert_eq!(
        site.entry_names(),
        ["ACC-PAY-2026-00001", "ACC-PAY-MBX-2026-00001"]
    );
    assert_eq!(site.sales_order("SO-1").unwrap().advance_paid, 100.into());

    // No deadlock without reference rows, nor within one series (its lock orders the writes).
    site.reset_stats();
    let unallocated = [
        entry("mbx-u-1", None, None),
        entry("mbx-u-2", Some("ACC-PAY-MBX-.YYYY.-"), None),
    ];
    assert_eq!(statuses(&post_all(&site, &unallocated).await), [200, 200]);
    let same_series = [
        entry("mbx-s-1", None, Some("SO-3")),
        entry("mbx-s-2", None, Some("SO-4")),
    ];
    assert_eq!(statuses(&post_all(&site, &same_series).await), [200, 200]);
    assert!(site.stats().deadlocks.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_series_lock_deadlocks_are_drawn_over_the_whole_request() {
    let site = recorded_site(Faults {
        erp_allocated_write_latency: Duration::from_millis(300),
        erp_series_deadlock_rate: 1.0,
        ..Default::default()
    })
    .await;
    site.add_order("SO-1", 100);
    site.add_order("SO-2", 100);
    let pair = [
        entry("mbx-1", Some("A-.YYYY.-"), Some("SO-1")),
        entry("mbx-2", Some("B-.YYYY.-"), Some("SO-2")),
    ];
    assert_eq!(statuses(&post_all(&site, &pair).await), [500, 500]);
    assert!(site.payment_entries().is_empty());
    // Rate 0: the same pair goes through.
    site.set_faults(Faults {
        erp_allocated_write_latency: Duration::from_millis(300),
        ..Default::default()
    });
    assert_eq!(statuses(&post_all(&site, &pair).await), [200, 200]);
}
