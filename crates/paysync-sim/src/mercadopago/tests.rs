//! The Mercado Pago side seen from a real HTTP client: search (paging, sorts, bounds, filters,
//! errors), get, the payment JSON's exact text, MercadoLibre orders and `users/me`,
//! auth. Faults are in `tests/faults.rs`, OAuth in `tests/oauth.rs`.

use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::super::{SimOptions, Simulator};
use super::{SimMlOrder, SimMpFee, SimMpPayment};

mod faults;
mod oauth;
mod refunds;

/// A simulator and one HTTP client (building a client per request is slow).
pub(super) struct Mp {
    pub sim: Simulator,
    pub http: reqwest::Client,
}

impl std::ops::Deref for Mp {
    type Target = Simulator;
    fn deref(&self) -> &Simulator {
        &self.sim
    }
}

pub(super) const TOKEN: &str = "APP_USR-sim-mp-token";

pub(super) async fn start(opts: SimOptions) -> Mp {
    let sim = Simulator::start(SimOptions { seed: 11, ..opts })
        .await
        .expect("simulator starts");
    Mp {
        sim,
        http: reqwest::Client::new(),
    }
}

pub(super) fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal")
}

impl Mp {
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.sim.mercadopago_url))
            .bearer_auth(TOKEN)
    }

    /// (status, body) of a search.
    async fn search(&self, query: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .get("/v1/payments/search")
            .query(query)
            .send()
            .await
            .expect("an answer");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON"))
    }

    /// The ids of a successful search's results.
    async fn ids(&self, query: &[(&str, &str)]) -> Vec<u64> {
        let (status, body) = self.search(query).await;
        assert_eq!(status, 200, "{body}");
        ids(&body)
    }
}

fn ids(body: &Value) -> Vec<u64> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|p| p["id"].as_u64().expect("a numeric id"))
        .collect()
}

/// Payments 1..=7 created one minute apart from 10:00Z, except 4 and 5 at the same instant
/// (ties broken by id); updated in reverse order; 6 pending (no approval date).
fn seven(sim: &Simulator) {
    let base = at("2026-11-05T10:00:00Z");
    let mins = [0, 1, 2, 3, 3, 5, 6];
    // Added out of order: the store's order must not leak into the answer.
    for id in [4u64, 1, 7, 2, 6, 3, 5] {
        let i = (id - 1) as usize;
        let created = base + SignedDuration::from_mins(mins[i]);
        let mut p = SimMpPayment::approved(id, d("100"), created);
        p.updated = base + SignedDuration::from_hours(10 - i as i64);
        p.external_reference = Some(format!("SAL-ORD-2026-{id:05}"));
        if id == 6 {
            p.status = "pending".into();
            p.status_detail = "pending_waiting_payment".into();
            p.approved = None;
        }
        sim.add_mp_payment(p);
    }
}

#[tokio::test]
async fn search_pages_in_sort_order_with_id_as_tie_break() {
    let mp = start(SimOptions::default()).await;
    seven(&mp);
    let mut all = Vec::new();
    for offset in ["0", "3", "6"] {
        let (status, body) = mp
            .search(&[
                ("sort", "date_created"),
                ("criteria", "asc"),
                ("offset", offset),
                ("limit", "3"),
            ])
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["paging"],
            json!({"total": 7, "limit": 3, "offset": offset.parse::<u64>().unwrap()})
        );
        all.extend(ids(&body));
    }
    assert_eq!(all, [1, 2, 3, 4, 5, 6, 7]);
    // desc reverses the field, not the tie-break.
    let desc = mp
        .ids(&[("sort", "date_created"), ("criteria", "desc")])
        .await;
    assert_eq!(desc, [7, 6, 4, 5, 3, 2, 1]);
    // Defaults: date_created desc, 30 a page.
    let (_, body) = mp.search(&[]).await;
    assert_eq!(ids(&body), desc);
    assert_eq!(
        body["paging"],
        json!({"total": 7, "limit": 30, "offset": 0})
    );
    let by_update = mp
        .ids(&[("sort", "date_last_updated"), ("criteria", "asc")])
        .await;
    assert_eq!(by_update, [7, 6, 5, 4, 3, 2, 1]);
    let by_id = mp.ids(&[("sort", "id"), ("criteria", "desc")]).await;
    assert_eq!(by_id, [7, 6, 5, 4, 3, 2, 1]);
    // Not approved sorts first ascending.
    let approved = mp
        .ids(&[("sort", "date_approved"), ("criteria", "asc")])
        .await;
    assert_eq!(approved[0], 6);
    assert_eq!(mp.stats().mp_search_calls, 8);
    assert_eq!(mp.stats().by_endpoint["GET /v1/payments/search"], 8);
}

#[tokio::test]
async fn bounds_are_inclusive_in_every_offset_format() {
    let mp = start(SimOptions::default()).await;
    seven(&mp);
    // 10:01Z..10:03Z, written three ways.
    for (begin, end) in [
        ("2026-11-05T10:01:00.000Z", "2026-11-05T10:03:00.000Z"),
        (
            "2026-11-05T07:01:00.000-03:00",
            "2026-11-05T07:03:00.000-0300",
        ),
        (
            "2026-11-05T10:01:00.000-00:00",
            "2026-11-05T11:03:00.000+01:00",
        ),
    ] {
        let got = mp
            .ids(&[
                ("range", "date_created"),
                ("begin_date", begin),
                ("end_date", end),
                ("sort", "date_created"),
                ("criteria", "asc"),
            ])
            .await;
        assert_eq!(got, [2, 3, 4, 5], "{begin}..{end}");
    }
    // A `+` sent unencoded arrives as a space and is read back.
    let url = format!(
        "{}/v1/payments/search?begin_date=2026-11-05T11:01:00.000+01:00&sort=id&criteria=asc",
        mp.mercadopago_url
    );
    let body: Value = mp
        .http
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&body), [2, 3, 4, 5, 6, 7]);
    // The other ranges; a payment without the date is outside any bound on it.
    let got = mp
        .ids(&[
            ("range", "date_last_updated"),
            ("begin_date", "2026-11-05T15:00:00.000Z"),
            ("end_date", "2026-11-05T17:00:00.000Z"),
            ("sort", "id"),
            ("criteria", "asc"),
        ])
        .await;
    assert_eq!(got, [4, 5, 6]);
    let got = mp
        .ids(&[
            ("range", "date_approved"),
            ("begin_date", "2026-11-01T00:00:00.000Z"),
            ("sort", "id"),
            ("criteria", "asc"),
        ])
        .await;
    assert_eq!(got, [1, 2, 3, 4, 5, 7]);
    // Relative dates.
    let now = Timestamp::now();
    mp.add_mp_payment(SimMpPayment::approved(
        100,
        d("1"),
        now - SignedDuration::from_hours(2),
    ));
    mp.add_mp_payment(SimMpPayment::approved(
        101,
        d("1"),
        now - SignedDuration::from_hours(24 * 3),
    ));
    let got = mp
        .ids(&[("begin_date", "NOW-1DAYS"), ("end_date", "NOW")])
        .await;
    assert_eq!(got, [100]);
    let got = mp
        .ids(&[
            ("begin_date", "NOW-1MONTHS"),
            ("end_date", "NOW-1HOURS"),
            ("sort", "id"),
        ])
        .await;
    // (Payments 1–7 may fall in the last month too, depending on today's date.)
    let got: Vec<u64> = got.into_iter().filter(|id| *id >= 100).collect();
    assert_eq!(got, [101, 100]);
}

#[tokio::test]
async fn filters_and_the_sellers_own_payments() {
    let mp = start(SimOptions::default()).await;
    seven(&mp);
    let mut other = SimMpPayment::approved(50, d("9"), at("2026-11-05T10:00:00Z"));
    other.collector_id = 42;
    mp.add_mp_payment(other);
    assert_eq!(
        mp.ids(&[("external_reference", "SAL-ORD-2026-00003")])
            .await,
        [3]
    );
    assert_eq!(mp.ids(&[("status", "pending")]).await, [6]);
    assert_eq!(mp.ids(&[("status", "rejected")]).await, Vec::<u64>::new());
    let (_, body) = mp.search(&[("limit", "100")]).await;
    assert_eq!(
        body["paging"]["total"], 7,
        "another seller's payment is not listed"
    );
    let r = mp.get("/v1/payments/50").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
}

#[tokio::test]
async fn every_search_error_of_the_contract() {
    let mp = start(SimOptions::default()).await;
    seven(&mp);
    let cases: [(&[(&str, &str)], u64); 8] = [
        (&[("limit", "1001")], 1000),
        (&[("offset", "9990"), ("limit", "20")], 1000),
        (&[("begin_date", "2026-11-05T10:00:00Z")], 1001),
        (&[("end_date", "2026-11-05")], 1001),
        (&[("begin_date", "NOW-3WEEKS")], 1001),
        (&[("end_date", "2026-11-05T10:00:00.000-3")], 1001),
        (&[("sort", "amount")], 1003),
        (&[("criteria", "up")], 1004),
    ];
    for (query, code) in cases {
        let (status, body) = mp.search(query).await;
        assert_eq!(status, 400, "{query:?}: {body}");
        assert_eq!(body["status"], 400);
        assert_eq!(body["cause"][0]["code"], code, "{query:?}: {body}");
        assert!(body["message"].is_string());
    }
    // The deepest page the adapter asks for is fine.
    let (status, body) = mp.search(&[("offset", "9950"), ("limit", "50")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"], json!([]));
    assert_eq!(body["paging"]["total"], 7);
    let (status, _) = mp.search(&[("limit", "1000")]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_payment_is_served_with_exact_amounts_and_local_times() {
    let mp = start(SimOptions::default()).await;
    let mut p = SimMpPayment::approved(1234567890, d("1500.10"), at("2026-11-05T14:01:50Z"));
    p.updated = at("2026-11-05T14:01:52.5Z");
    p.approved = Some(at("2026-11-05T14:01:52Z"));
    p.transaction_amount_refunded = d("0.00");
    p.external_reference = Some("SAL-ORD-2026-00001".into());
    p.ml_order_id = Some(2000000123);
    p.fees = vec![
        SimMpFee {
            kind: "mercadopago_fee".into(),
            amount: d("75.02"),
            payer: "collector".into(),
        },
        SimMpFee {
            kind: "financing_fee".into(),
            amount: d("0.1"),
            payer: "payer".into(),
        },
    ];
    mp.add_mp_payment(p.clone());
    let mut pending = SimMpPayment::approved(1234567891, d("0.1"), at("2026-11-05T14:00:00Z"));
    pending.status = "pending".into();
    pending.approved = Some(at("2026-11-05T14:00:00Z"));
    pending.ml_order_id = Some(2000000124);
    mp.add_mp_payment(pending);

    let text = mp
        .get("/v1/payments/1234567890")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for piece in [
        r#""transaction_amount":1500.1,"#,
        r#""transaction_amount_refunded":0,"#,
        r#""net_received_amount":1425.08"#,
        r#""total_paid_amount":1500.2"#,
        r#""amount":0.1,"#,
        r#""date_created":"2026-11-05T10:01:50.000-04:00""#,
        r#""date_last_updated":"2026-11-05T10:01:52.500-04:00""#,
        r#""date_approved":"2026-11-05T10:01:52.000-04:00""#,
        r#""money_release_date":"2026-11-19T10:01:52.000-04:00""#,
        r#""order":{"id":2000000123,"type":"mercadolibre"}"#,
        r#""collector_id":123456789"#,
    ] {
        assert!(text.contains(piece), "{piece} in {text}");
    }
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["fee_details"][0]["fee_payer"], "collector");
    assert_eq!(v["live_mode"], true);
    assert_eq!(v["status_detail"], "accredited");

    let v: Value = mp
        .get("/v1/payments/1234567891")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["date_approved"], Value::Null, "pending: no approval date");
    assert_eq!(v["money_release_date"], Value::Null);
    assert_eq!(
        v["order"]["id"], "2000000124",
        "odd ids serve the order id as text"
    );
    assert_eq!(v["transaction_amount"].to_string(), "0.1");

    let mut plain = SimMpPayment::approved(8, d("1000000000.00"), at("2026-11-05T14:00:00Z"));
    plain.external_reference = None;
    mp.add_mp_payment(plain);
    let text = mp
        .get("/v1/payments/8")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#""transaction_amount":1000000000,"#),
        "{text}"
    );
    assert!(!text.contains(r#""order""#), "no order key: {text}");
    assert!(text.contains(r#""external_reference":null"#), "{text}");

    for path in ["/v1/payments/77", "/v1/payments/abc"] {
        let r = mp.get(path).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["cause"][0]["code"], 2000, "{v}");
        assert_eq!(v["error"], "not_found");
    }
    assert_eq!(
        mp.stats().mp_get_calls,
        4,
        "the non-numeric id never looked up"
    );
}

#[tokio::test]
async fn raw_payments_are_served_verbatim() {
    let mp = start(SimOptions::default()).await;
    let raw = json!({"id": "77", "status": 200, "transaction_amount": "ten"});
    mp.add_raw_mp_payment(
        raw.clone(),
        at("2026-11-05T10:00:00Z"),
        at("2026-11-05T11:00:00Z"),
    );
    mp.add_mp_payment(SimMpPayment::approved(
        1,
        d("5"),
        at("2026-11-05T09:00:00Z"),
    ));
    let (_, body) = mp
        .search(&[
            ("range", "date_last_updated"),
            ("begin_date", "2026-11-05T10:30:00.000Z"),
        ])
        .await;
    assert_eq!(body["results"], json!([raw]));
    let v: Value = mp
        .get("/v1/payments/77")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, raw);
    assert!(mp.mp_payments().iter().all(|p| p.id == 1));
}

#[tokio::test]
async fn ml_orders_list_their_payments_and_users_me_names_the_seller() {
    let mp = start(SimOptions::default()).await;
    mp.add_mp_payment(SimMpPayment::approved(
        10,
        d("600.5"),
        at("2026-11-05T10:00:00Z"),
    ));
    let mut rejected = SimMpPayment::approved(11, d("600.5"), at("2026-11-05T09:58:00Z"));
    rejected.status = "rejected".into();
    rejected.status_detail = "cc_rejected_other_reason".into();
    mp.add_mp_payment(rejected);
    let order = SimMlOrder {
        id: 2000000123,
        seller_id: 123456789,
        status: "paid".into(),
        payment_ids: vec![11, 10, 999],
        total_amount: d("600.50"),
        currency_id: "ARS".into(),
        buyer_id: 987,
        buyer_nickname: "COMPRADOR".into(),
        ..SimMlOrder::default()
    };
    mp.add_ml_order(order.clone());
    mp.add_ml_order(SimMlOrder {
        id: 2000000200,
        seller_id: 5,
        ..order
    });
    let r = mp.get("/orders/2000000123").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains(r#""total_amount":600.5}"#), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["seller"]["id"], 123456789);
    let pays = v["payments"].as_array().unwrap();
    let listed: Vec<_> = pays
        .iter()
        .map(|p| (p["id"].clone(), p["status"].clone()))
        .collect();
    assert_eq!(
        listed,
        [
            (json!(11), json!("rejected")),
            (json!(10), json!("approved"))
        ],
        "unknown ids left out"
    );
    assert_eq!(pays[1]["order_id"], 2000000123);
    assert_eq!(pays[0]["date_approved"], Value::Null);
    assert_eq!(
        mp.get("/orders/2000000200").send().await.unwrap().status(),
        403
    );
    let r = mp.get("/orders/1").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "Order not found"
    );
    assert_eq!(mp.stats().ml_order_calls, 3);

    let me: Value = mp
        .get("/users/me")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        me,
        json!({"id": 123456789, "nickname": "SELLER", "site_id": "MLA"})
    );
}

#[tokio::test]
async fn bad_tokens_get_401_in_both_shapes() {
    let mp = start(SimOptions::default()).await;
    let url = format!("{}/v1/payments/search", mp.mercadopago_url);
    let mut bodies = Vec::new();
    for req in [
        mp.http.get(&url),
        mp.http.get(&url).bearer_auth("APP_USR-nope"),
        mp.http.get(&url).header("Authorization", TOKEN),
        mp.http.get(&url).bearer_auth(""),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
        bodies.push(r.json::<Value>().await.unwrap());
    }
    assert_eq!(
        bodies[0],
        json!({"message": "invalid access token", "error": "unauthorized", "status": 401, "cause": []})
    );
    assert_eq!(
        bodies[1],
        json!({"code": "unauthorized", "message": "invalid access token"})
    );
    assert_eq!(bodies[2], bodies[0]);
    assert_eq!(mp.stats().mp_search_calls, 0);
    assert!(
        mp.stats().faults_injected.is_empty(),
        "a 401 is not a fault"
    );

    assert_eq!(mp.get("/users/me").send().await.unwrap().status(), 200);
    mp.revoke_mp_static_token();
    assert_eq!(mp.get("/users/me").send().await.unwrap().status(), 401);
}
