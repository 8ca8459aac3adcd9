//! The Mercado Pago faults: drawn 429s with and without `Retry-After`, 5xx in every body shape,
//! garbage, dropped connections, queued answers; each counted under its label.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::super::super::{ErrorBody, Faults, NextAnswer, SimApi, SimOptions};
use super::start;

#[tokio::test]
async fn faults_are_drawn_counted_and_queued() {
    let mp = start(SimOptions {
        faults: Faults {
            mp_429_rate: 1.0,
            mp_429_no_retry_after_rate: 0.5,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (mut with, mut without) = (0, 0);
    for _ in 0..20 {
        let r = mp.get("/v1/payments/1").send().await.unwrap();
        assert_eq!(r.status(), 429);
        match r.headers().get("retry-after") {
            Some(v) => {
                assert_eq!(v, "1");
                with += 1;
            }
            None => without += 1,
        }
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "local_rate_limited");
    }
    let f = mp.stats().faults_injected;
    assert!(with > 0 && without > 0);
    assert_eq!((f["mp 429"], f["mp 429 no retry-after"]), (with, without));

    mp.set_faults(Faults {
        mp_5xx_rate: 1.0,
        ..Default::default()
    });
    let (mut statuses, mut shapes) = (BTreeSet::new(), BTreeSet::new());
    for _ in 0..60 {
        let r = mp.get("/v1/payments/search").send().await.unwrap();
        statuses.insert(r.status().as_u16());
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        let shape = if text.is_empty() {
            "empty"
        } else if ct.starts_with("application/json") {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert!(v["error"].is_string() && v["cause"] == json!([]), "{text}");
            "json"
        } else if ct.starts_with("text/html") {
            "html"
        } else {
            "text"
        };
        shapes.insert(shape);
    }
    assert_eq!(statuses, [500, 502, 503, 504].into_iter().collect());
    assert_eq!(shapes.len(), 4, "{shapes:?}");
    assert_eq!(
        mp.stats().mp_search_calls,
        0,
        "answered before doing anything"
    );

    mp.set_faults(Faults {
        mp_garbage_rate: 1.0,
        ..Default::default()
    });
    let r = mp.get("/users/me").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.is_err());
    mp.set_faults(Faults {
        mp_drop_connection_rate: 1.0,
        ..Default::default()
    });
    let r = mp.get("/orders/1").send().await.expect("the head arrives");
    assert!(r.bytes().await.is_err(), "the body is incomplete");

    mp.set_faults(Faults::default());
    mp.fail_next(
        SimApi::MercadoPago,
        vec![
            NextAnswer::Status(503, ErrorBody::Json),
            NextAnswer::TooManyRequests(None),
            NextAnswer::Drop,
        ],
    );
    let r = mp.get("/users/me").send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], 503);
    let r = mp.get("/users/me").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_none());
    let r = mp.get("/users/me").send().await.unwrap();
    assert!(r.bytes().await.is_err());
    assert_eq!(mp.get("/users/me").send().await.unwrap().status(), 200);
    let f = mp.stats().faults_injected;
    assert_eq!(f["mp 200 garbage"], 1);
    assert_eq!(f["mp drop mid-answer"], 1);
    assert_eq!(f["next mp 503 json"], 1);
    assert_eq!(f["next mp 429"], 1);
    assert_eq!(f["next mp drop"], 1);
}
