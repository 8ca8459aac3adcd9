//! `POST /webhooks/mercadopago/{account}` on a running daemon: signed Mercado Pago webhooks,
//! MercadoLibre `orders_v2` and `payments` notifications, what is refused, how fast it answers,
//! and `/healthz` for a stopped account.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use paysync_sim::fixtures::MP_WEBHOOK_SECRET;
use paysync_sim::{DEFAULT_MP_SELLER_ID, Faults, SimMlOrder, SimMpPayment, SimOptions};

use super::d;
use crate::daemon::{Daemon, NEVER, entries_for};
use crate::helpers::{TestEnv, order};

/// A payment of `order` made a minute ago.
fn live_payment(id: u64, order: &str, amount: &str) -> SimMpPayment {
    let mut p = SimMpPayment::approved(
        id,
        d(amount),
        Timestamp::now() - jiff::SignedDuration::from_mins(1),
    );
    p.external_reference = Some(order.into());
    p
}

async fn post(
    d: &Daemon,
    query: &str,
    headers: &[(String, String)],
    body: String,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(d.url(&format!("/webhooks/mercadopago/mp?{query}")));
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    req.header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_books_and_a_forged_one_is_refused() {
    let env = TestEnv::start_mercadopago(SimOptions::default(), false, "", None).await;
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00001", "Cliente Uno", "1000"));
    env.sim
        .add_mp_payment(live_payment(5001, "SAL-ORD-2026-00001", "1000"));
    env.sim
        .add_mp_payment(live_payment(5002, "SAL-ORD-2026-00001", "250"));
    let daemon = Daemon::start(&env, NEVER).await;

    // Forged: signed with another secret, or for another payment, or not at all.
    let forged = env
        .sim
        .mp_webhook(5002, "payment.updated", "not-the-secret");
    let r = post(&daemon, &forged.query, &forged.headers, forged.body.clone()).await;
    assert_eq!(r.status(), 401);
    let genuine = env
        .sim
        .mp_webhook(5001, "payment.created", MP_WEBHOOK_SECRET);
    let retargeted = genuine.query.replace("5001", "5002");
    let r = post(&daemon, &retargeted, &genuine.headers, genuine.body.clone()).await;
    assert_eq!(r.status(), 401, "the signature covers data.id");
    let r = post(&daemon, &forged.query, &[], forged.body.clone()).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        daemon
            .ctx
            .ledger
            .inbox_depth()
            .await
            .unwrap()
            .get("mp")
            .copied()
            .unwrap_or(0),
        0
    );

    // Genuine: queued, re-read from the API, booked once; a redelivery books nothing more.
    let r = post(
        &daemon,
        &genuine.query,
        &genuine.headers,
        genuine.body.clone(),
    )
    .await;
    assert_eq!(r.status(), 200);
    daemon
        .wait_for("the trigger", |p| p.triggers_done >= 1)
        .await;
    assert_eq!(entries_for(&env, "5001"), 1);
    assert_eq!(
        entries_for(&env, "5002"),
        0,
        "forged webhooks queued nothing"
    );
    let again = env
        .sim
        .mp_webhook(5001, "payment.updated", MP_WEBHOOK_SECRET);
    assert_eq!(
        post(&daemon, &again.query, &again.headers, again.body)
            .await
            .status(),
        200
    );
    daemon
        .wait_for("the redelivery", |p| p.triggers_done >= 2)
        .await;
    assert_eq!(entries_for(&env, "5001"), 1);
    daemon.stop().await;
}

/// The query of a MercadoLibre notification URL with the account's `webhook_token`.
const ML_TOKEN: &str = "token=ml-hook-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_v2_notification_books_each_payment_of_the_order() {
    let env = TestEnv::start_mercadopago(
        SimOptions::default(),
        true,
        "order_source = \"order_id\"\norder_field = \"po_no\"\nwebhook_token = \"ml-hook-token\"",
        None,
    )
    .await;
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00077", "Cliente ML", "3000"));
    env.sim
        .set_sales_order_field("SAL-ORD-2026-00077", "po_no", "2000000777");
    for (id, amount, minutes) in [(6001, "2000", 3), (6002, "1000", 2)] {
        let mut p = live_payment(id, "", amount);
        p.external_reference = None;
        p.ml_order_id = Some(2_000_000_777);
        p.created = Timestamp::now() - jiff::SignedDuration::from_mins(minutes);
        p.updated = p.created;
        env.sim.add_mp_payment(p);
    }
    env.sim.add_ml_order(SimMlOrder {
        id: 2_000_000_777,
        seller_id: DEFAULT_MP_SELLER_ID,
        status: "paid".into(),
        payment_ids: vec![6002, 6001],
        ..SimMlOrder::default()
    });
    let daemon = Daemon::start(&env, NEVER).await;
    let app_id: u64 = env.sim.options().mp_client_id.parse().unwrap();
    let other_app = paysync_sim::ml_notification(
        "orders_v2",
        "/orders/2000000777",
        DEFAULT_MP_SELLER_ID,
        app_id + 1,
    );
    assert_eq!(
        post(&daemon, ML_TOKEN, &[], other_app).await.status(),
        401,
        "another application"
    );
    let body = paysync_sim::ml_notification(
        "orders_v2",
        "/orders/2000000777",
        DEFAULT_MP_SELLER_ID,
        app_id,
    );
    // Unsigned: an application id is no secret, the URL token is.
    assert_eq!(
        post(&daemon, "", &[], body.clone()).await.status(),
        401,
        "no token"
    );
    assert_eq!(
        post(&daemon, "token=wrong", &[], body.clone())
            .await
            .status(),
        401,
        "a wrong token"
    );
    assert_eq!(post(&daemon, ML_TOKEN, &[], body).await.status(), 200);
    // One trigger: the order, its payments read and decided together, oldest first.
    daemon
        .wait_for("the order and its payments", |p| p.triggers_done >= 1)
        .await;
    let entries = env.sim.payment_entries();
    let by = |r: &str| {
        entries
            .iter()
            .find(|e| e.reference_no.as_deref() == Some(r))
            .unwrap()
    };
    assert_eq!(
        by("6001").references[0].reference_name,
        "SAL-ORD-2026-00077",
        "oldest first: initial"
    );
    assert!(
        by("6002").references.is_empty(),
        "the later one is additional"
    );
    assert_eq!(by("6002").party, "Cliente ML");

    // A `payments` notification names one payment.
    let mut late = live_payment(6003, "", "5");
    late.external_reference = None;
    late.ml_order_id = Some(2_000_000_777);
    env.sim.add_mp_payment(late);
    let body = paysync_sim::ml_notification(
        "payments",
        "/collections/6003",
        DEFAULT_MP_SELLER_ID,
        app_id,
    );
    assert_eq!(post(&daemon, ML_TOKEN, &[], body).await.status(), 200);
    daemon
        .wait_for("the payment", |p| p.triggers_done >= 2)
        .await;
    assert_eq!(entries_for(&env, "6003"), 1);
    daemon.stop().await;
}

/// MercadoLibre disables a topic whose endpoint takes over 500 ms: a webhook is only queued,
/// so it is answered at once however slow ERPNext is and however long the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_answered_at_once_whatever_the_backlog() {
    let env = TestEnv::start_mercadopago(SimOptions::default(), false, "", None).await;
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00001", "Cliente Uno", "100000"));
    env.sim.set_faults(Faults {
        erp_write_latency: Duration::from_secs(2),
        ..Faults::default()
    });
    for id in 7000..7060 {
        env.sim
            .add_mp_payment(live_payment(id, "SAL-ORD-2026-00001", "10"));
    }
    let daemon = Daemon::start(&env, NEVER).await;
    let mut slowest = Duration::ZERO;
    for id in 7000..7060 {
        let w = env.sim.mp_webhook(id, "payment.created", MP_WEBHOOK_SECRET);
        let started = Instant::now();
        let r = post(&daemon, &w.query, &w.headers, w.body).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(r.status(), 200);
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a webhook took {slowest:?} with 60 queued behind 2 s creates"
    );
    assert!(
        entries_for(&env, "7059") == 0,
        "answered before booking, not after"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_names_an_account_whose_authorization_is_gone() {
    let env = TestEnv::start_mercadopago(SimOptions::default(), true, "", None).await;
    // Spend the configured refresh token elsewhere: paysync's refresh is refused.
    let opts = env.sim.options();
    let r = reqwest::Client::new()
        .post(format!("{}/oauth/token", env.sim.mercadopago_url))
        .header("content-type", "application/json")
        .body(
            serde_json::json!({"grant_type": "refresh_token", "client_id": opts.mp_client_id,
                "client_secret": opts.mp_client_secret, "refresh_token": opts.mp_refresh_token})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    env.sim
        .add_mp_payment(live_payment(8001, "SAL-ORD-2026-00001", "10"));
    let daemon = Daemon::start(&env, NEVER).await;
    let w = env
        .sim
        .mp_webhook(8001, "payment.created", MP_WEBHOOK_SECRET);
    assert_eq!(
        post(&daemon, &w.query, &w.headers, w.body).await.status(),
        200
    );
    daemon
        .wait_for("the trigger to fail", |p| {
            p.triggers_retried + p.triggers_given_up >= 1
        })
        .await;
    let health = reqwest::get(daemon.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 503);
    let body: serde_json::Value = health.json().await.unwrap();
    let stopped = body["accounts"]["mp"]["stopped"]
        .as_str()
        .unwrap_or_default();
    assert!(stopped.contains("invalid_grant"), "{body}");
    assert_eq!(body["accounts"]["main"]["stopped"], serde_json::Value::Null);
    assert!(
        !body.to_string().contains(&opts.mp_refresh_token),
        "no token in /healthz"
    );
    daemon.stop().await;
}
