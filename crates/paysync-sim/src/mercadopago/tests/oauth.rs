//! `POST /oauth/token`: rotation, its refusals, overlapping refreshes, answers lost after the
//! rotation, queued answers, and access tokens that expire.

use std::time::Duration;

use serde_json::{Value, json};

use super::super::super::{ErrorBody, Faults, NextAnswer, SimApi, SimOptions};
use super::{Mp, start};

/// (status, body; `Null` when empty or not JSON) of a refresh sent as a form.
async fn refresh(mp: &Mp, refresh_token: &str) -> (u16, Value) {
    let opts = mp.options();
    let r = mp
        .http
        .post(format!("{}/oauth/token", mp.mercadopago_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
            opts.mp_client_id, opts.mp_client_secret, refresh_token
        ))
        .send()
        .await
        .expect("an answer");
    let status = r.status().as_u16();
    let text = r.text().await.expect("a complete body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn json_grant(mp: &Mp, body: Value) -> (u16, Value) {
    let r = mp
        .http
        .post(format!("{}/oauth/token", mp.mercadopago_url))
        .json(&body)
        .send()
        .await
        .expect("an answer");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn me(mp: &Mp, token: &str) -> u16 {
    mp.http
        .get(format!("{}/users/me", mp.mercadopago_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn each_refresh_rotates_and_a_used_token_is_dead() {
    let mp = start(SimOptions::default()).await;
    assert_eq!(mp.mp_refresh_token(), "TG-sim-initial");
    let (status, body) = refresh(&mp, "TG-sim-initial").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "access_token": "APP_USR-sim-1", "token_type": "Bearer", "expires_in": 21600,
            "scope": "offline_access read write", "user_id": 123456789,
            "refresh_token": "TG-sim-1", "public_key": "APP_USR-sim-pk-1",
        })
    );
    assert_eq!(me(&mp, "APP_USR-sim-1").await, 200);

    let (status, body) = refresh(&mp, "TG-sim-initial").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        body["message"],
        "Your authorization code or refresh token may be expired or it was already used"
    );
    assert_eq!(refresh(&mp, "TG-unknown").await.1["error"], "invalid_grant");

    // A JSON body works too; numbers are accepted where the form has text.
    let opts = mp.options();
    let (status, body) = json_grant(
        &mp,
        json!({
            "grant_type": "refresh_token",
            "client_id": opts.mp_client_id.parse::<u64>().unwrap(),
            "client_secret": opts.mp_client_secret,
            "refresh_token": "TG-sim-1",
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refresh_token"], "TG-sim-2");
    // The older access token keeps working until its own expiry.
    assert_eq!(me(&mp, "APP_USR-sim-1").await, 200);
    assert_eq!(me(&mp, "APP_USR-sim-2").await, 200);
    assert_eq!(mp.mp_refresh_token(), "TG-sim-2");
    assert_eq!(
        mp.mp_valid_access_tokens(),
        ["APP_USR-sim-1", "APP_USR-sim-2"]
    );
    assert_eq!((mp.mp_token_grants(), mp.mp_token_requests()), (2, 4));
    assert_eq!(mp.stats().mp_token_calls, 4);
}

#[tokio::test]
async fn wrong_clients_and_grants_are_refused() {
    let mp = start(SimOptions::default()).await;
    let (status, body) = json_grant(
        &mp,
        json!({"grant_type": "refresh_token", "client_id": "1", "client_secret": "x",
               "refresh_token": "TG-sim-initial"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": "invalid_client", "message": "invalid client_id or client_secret",
               "status": 400, "cause": []})
    );
    let opts = mp.options();
    let grant = |grant_type: &str, code: &str| {
        json!({"grant_type": grant_type, "client_id": opts.mp_client_id,
               "client_secret": opts.mp_client_secret, "code": code,
               "redirect_uri": "https://example.com/cb"})
    };
    let (status, body) = json_grant(&mp, grant("password", "")).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("unsupported_grant_type"))
    );
    assert_eq!(
        json_grant(&mp, grant("authorization_code", "TG-code"))
            .await
            .1["error"],
        "invalid_grant",
        "no code set"
    );
    mp.set_mp_auth_code("TG-code");
    let (status, body) = json_grant(&mp, grant("authorization_code", "TG-code")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refresh_token"], "TG-sim-1");
    assert_eq!(
        json_grant(&mp, grant("authorization_code", "TG-code"))
            .await
            .1["error"],
        "invalid_grant",
        "a code is used once"
    );
    // The code's grant rotated the refresh token too.
    assert_eq!(refresh(&mp, "TG-sim-initial").await.0, 400);
    assert_eq!(refresh(&mp, "TG-sim-1").await.0, 200);
    let r = mp
        .http
        .post(format!("{}/oauth/token", mp.mercadopago_url))
        .header("content-type", "application/json")
        .body("[1, 2]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(mp.mp_token_grants(), 2);
}

#[tokio::test]
async fn of_two_overlapping_refreshes_with_one_token_exactly_one_wins() {
    let mp = start(SimOptions {
        faults: Faults {
            mp_token_latency: Duration::from_millis(200),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let started = std::time::Instant::now();
    let (a, b) = tokio::join!(
        refresh(&mp, "TG-sim-initial"),
        refresh(&mp, "TG-sim-initial")
    );
    assert!(
        started.elapsed() < Duration::from_millis(390),
        "the two were in flight at once"
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "{a:?} {b:?}");
    let loser = if a.0 == 400 { a.1 } else { b.1 };
    assert_eq!(loser["error"], "invalid_grant");
    assert_eq!(mp.mp_token_grants(), 1);
    assert_eq!(mp.mp_refresh_token(), "TG-sim-1");
}

#[tokio::test]
async fn a_lost_answer_still_rotated_the_tokens() {
    let mp = start(SimOptions {
        faults: Faults {
            mp_token_lost_after_commit_rate: 1.0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let r = mp
        .http
        .post(format!("{}/oauth/token", mp.mercadopago_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            "grant_type=refresh_token&client_id=6245733745812345\
             &client_secret=sim-mp-client-secret&refresh_token=TG%2Dsim%2Dinitial",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.text().await.unwrap(), "");
    assert_eq!(mp.mp_refresh_token(), "TG-sim-1", "rotated all the same");
    assert_eq!(mp.mp_token_grants(), 1);
    assert_eq!(mp.stats().faults_injected["mp token lost after commit"], 1);
    mp.set_faults(Faults::default());
    assert_eq!(
        refresh(&mp, "TG-sim-initial").await.1["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn queued_token_answers_replace_the_request() {
    let mp = start(SimOptions::default()).await;
    mp.fail_next(
        SimApi::MercadoPagoToken,
        vec![
            NextAnswer::TooManyRequests(Some(3)),
            NextAnswer::Status(503, ErrorBody::Html),
        ],
    );
    assert_eq!(
        refresh(&mp, "TG-sim-initial").await.1["error"],
        "local_rate_limited"
    );
    let (status, body) = refresh(&mp, "TG-sim-initial").await;
    assert_eq!((status, body), (503, Value::Null));
    assert_eq!(mp.mp_refresh_token(), "TG-sim-initial", "nothing rotated");
    assert_eq!(refresh(&mp, "TG-sim-initial").await.0, 200);
    let f = mp.stats().faults_injected;
    assert_eq!(
        (f["next mp token 429"], f["next mp token 503 html"]),
        (1, 1)
    );
    // The API calls' queue is another one.
    assert_eq!(me(&mp, "APP_USR-sim-1").await, 200);
}

#[tokio::test(start_paused = true)]
async fn granted_tokens_expire_by_the_clock_or_on_demand() {
    let mp = start(SimOptions {
        mp_access_ttl: Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    let (_, body) = refresh(&mp, "TG-sim-initial").await;
    assert_eq!(body["expires_in"], 60);
    assert_eq!(me(&mp, "APP_USR-sim-1").await, 200);
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(me(&mp, "APP_USR-sim-1").await, 200);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(me(&mp, "APP_USR-sim-1").await, 401);
    assert!(mp.mp_valid_access_tokens().is_empty());

    let (_, body) = refresh(&mp, "TG-sim-1").await;
    assert_eq!(body["access_token"], "APP_USR-sim-2");
    assert_eq!(me(&mp, "APP_USR-sim-2").await, 200);
    mp.expire_mp_access_tokens();
    assert_eq!(me(&mp, "APP_USR-sim-2").await, 401);
    assert_eq!(
        me(&mp, super::TOKEN).await,
        200,
        "the static token stays valid"
    );
}
