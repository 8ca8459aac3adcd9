//! The client against the table of answers, and against a real HTTP server (a tiny axum app
//! answering canned bodies in order) for what only the wire shows: the query, the token, the
//! one retry after a 401.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::extract::{Request, State};
use axum::response::Response;

use super::*;
use crate::source::Fetched;

/// Every body shape a server, or a proxy in front of it, sends with a status.
const BODIES: [(&str, &str); 6] = [
    (
        "json error",
        r#"{"message":"Internal server error","error":"internal_error","status":500,"cause":[]}"#,
    ),
    (
        "json code",
        r#"{"code":"unauthorized","message":"invalid access token"}"#,
    ),
    (
        "html",
        "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>",
    ),
    (
        "text",
        "upstream connect error or disconnect/reset before headers",
    ),
    ("empty", ""),
    ("json other", r#"{"ok": false}"#),
];

fn classified(status: u16, body: &str) -> Result<&str, SourceError> {
    classify(API, status, None, body.as_bytes())
}

#[test]
fn every_5xx_and_408_is_transient_whatever_the_body() {
    for status in [500u16, 501, 502, 503, 504, 520, 599, 408] {
        for (shape, body) in BODIES {
            let e = classified(status, body).unwrap_err();
            assert!(
                matches!(e, SourceError::Http { status: s, .. } if s == status),
                "{status} {shape}: {e:?}"
            );
            assert!(e.is_transient(), "{status} {shape}");
        }
    }
    let e = classified(500, BODIES[0].1).unwrap_err();
    assert!(e.to_string().contains("Internal server error"), "{e}");
}

#[test]
fn a_429_waits_for_retry_after_when_given() {
    for (shape, body) in BODIES {
        for ra in [Some(Duration::from_secs(3)), None] {
            let e = classify(API, 429, ra, body.as_bytes()).unwrap_err();
            assert!(e.is_transient(), "{shape}");
            assert_eq!(e.retry_after(), ra, "{shape}");
        }
    }
}

#[test]
fn credentials_and_not_found_are_decided_by_the_status() {
    for (shape, body) in BODIES {
        for status in [401u16, 403] {
            let e = classified(status, body).unwrap_err();
            assert!(
                matches!(e, SourceError::Unauthorized { status: s, .. } if s == status),
                "{status} {shape}: {e:?}"
            );
            assert!(!e.is_transient());
        }
        let e = classified(404, body).unwrap_err();
        assert!(
            matches!(e, SourceError::Http { status: 404, .. }),
            "{shape}: {e:?}"
        );
        assert!(!e.is_transient());
    }
    let e = classified(
        404,
        r#"{"message":"Payment not found","error":"not_found","status":404,"cause":[{"code":2000,"description":"Payment not found","data":null}]}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("Payment not found"), "{e}");
}

#[test]
fn a_4xx_with_causes_is_a_business_answer_with_its_code() {
    for (code, text) in [
        ("1000", "Number of rows exceeded the limits"),
        ("1001", "Date format must be yyyy-MM-dd'T'HH:mm:ss.SSSZ"),
        ("1003", "Invalid sort"),
        ("1004", "Invalid criteria"),
    ] {
        let body = format!(
            r#"{{"message":"bad request","error":"bad_request","status":400,"cause":[{{"code":{code},"description":"{text}","data":null}}]}}"#
        );
        let e = classified(400, &body).unwrap_err();
        assert!(
            matches!(&e, SourceError::Api { code: c, message, .. } if c == code && message == text),
            "{e:?}"
        );
        assert!(!e.is_transient());
    }
    let string_code = r#"{"message":"m","error":"bad_request","cause":[{"code":"invalid_id","description":"d"}]}"#;
    assert!(
        matches!(classified(400, string_code), Err(SourceError::Api { code, .. }) if code == "invalid_id")
    );
    let no_cause = r#"{"message":"nope","error":"bad_request","status":400,"cause":[]}"#;
    assert!(matches!(
        classified(400, no_cause),
        Err(SourceError::Api { code, message, .. }) if code == "bad_request" && message == "nope"
    ));
    for (shape, body) in &BODIES[2..] {
        for status in [400u16, 409, 422] {
            let e = classified(status, body).unwrap_err();
            assert!(
                matches!(e, SourceError::Http { status: s, .. } if s == status),
                "{status} {shape}: {e:?}"
            );
            assert!(!e.is_transient());
        }
    }
}

#[test]
fn a_2xx_is_json_or_malformed() {
    assert_eq!(
        classified(200, r#"{"results":[]}"#).unwrap(),
        r#"{"results":[]}"#
    );
    for (shape, body) in &BODIES[2..5] {
        let e = classified(200, body).unwrap_err();
        assert!(matches!(e, SourceError::Malformed { .. }), "{shape}: {e:?}");
        assert!(!e.is_transient());
    }
    assert!(matches!(
        classify(API, 200, None, &[0xff, 0xfe]),
        Err(SourceError::Malformed { .. })
    ));
}

#[test]
fn window_bounds_are_utc_milliseconds() {
    let t: jiff::Timestamp = "2026-11-01T00:00:00.123456-03:00".parse().unwrap();
    assert_eq!(search_date(t), "2026-11-01T03:00:00.123-00:00");
    let t: jiff::Timestamp = "2026-11-01T23:59:59.999999999Z".parse().unwrap();
    assert_eq!(search_date(t), "2026-11-01T23:59:59.999-00:00");
}

#[test]
fn ids_are_digits() {
    assert_eq!(id_digits("123"), Some("123".into()));
    assert_eq!(id_digits("0042"), Some("42".into()));
    for bad in ["", "-1", "1.0", "12a", " 1", "99999999999999999999999"] {
        assert_eq!(id_digits(bad), None, "{bad:?}");
    }
    assert_eq!(MercadoPagoClient::page_ceiling(), Some(200));
}

// ---- against a real server ----

/// The canned answers, in order, and what each request carried.
#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<(u16, &'static str, String)>>,
    seen: Mutex<Vec<Seen>>,
}

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: Vec<(String, String)>,
    auth: Option<String>,
}

async fn answer(State(s): State<Arc<Script>>, req: Request) -> Response {
    let query = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    s.seen.lock().unwrap().push(Seen {
        path: req.uri().path().to_string(),
        query,
        auth,
    });
    let (status, retry_after, body) =
        s.answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((500, "", "script exhausted".into()));
    let mut r = Response::builder().status(status);
    if !retry_after.is_empty() {
        r = r.header("retry-after", retry_after);
    }
    r.body(axum::body::Body::from(body)).unwrap()
}

/// A server answering `answers` in order, and a client of it (no retries unless given).
async fn serve(
    answers: Vec<(u16, &'static str, String)>,
    tokens: Arc<dyn AccessTokens>,
    retry: RetryPolicy,
) -> (MercadoPagoClient, Arc<Script>) {
    let script = Arc::new(Script {
        answers: Mutex::new(answers.into()),
        ..Script::default()
    });
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let base: Url = format!("http://{addr}").parse().unwrap();
    let config = MercadoPagoConfig {
        api_url: base.clone(),
        meli_api_url: base.join("/meli").unwrap(),
        timeout: Duration::from_secs(5),
    };
    let client = MercadoPagoClient::new(config, tokens)
        .unwrap()
        .with_retry(retry);
    (client, script)
}

fn fixed(token: &str) -> Arc<dyn AccessTokens> {
    Arc::new(StaticToken(SecretString::from(token.to_string())))
}

/// Gives `old` until a 401, then `new` (as an OAuth refresh would), counting the refreshes.
struct Rotating {
    now: Mutex<String>,
    refreshed: AtomicU32,
}

#[async_trait]
impl AccessTokens for Rotating {
    async fn current(&self) -> Result<SecretString, SourceError> {
        Ok(SecretString::from(self.now.lock().unwrap().clone()))
    }
    async fn after_unauthorized(
        &self,
        rejected: &SecretString,
    ) -> Result<SecretString, SourceError> {
        assert_eq!(rejected.expose_secret(), "old");
        self.refreshed.fetch_add(1, Ordering::SeqCst);
        *self.now.lock().unwrap() = "new".into();
        Ok(SecretString::from("new"))
    }
}

fn ok(body: impl Into<String>) -> (u16, &'static str, String) {
    (200, "", body.into())
}

const UNAUTHORIZED: &str =
    r#"{"message":"invalid access token","error":"unauthorized","status":401,"cause":[]}"#;

fn payment_json(id: u64) -> String {
    format!(
        r#"{{"id":{id},"status":"approved","currency_id":"ARS","transaction_amount":10.10,"date_created":"2026-11-05T10:01:50.000-04:00","date_last_updated":"2026-11-05T10:01:52.000-04:00","live_mode":true}}"#
    )
}

#[tokio::test]
async fn a_page_is_asked_as_the_contract_says() {
    let body = format!(
        r#"{{"paging":{{"total":2,"limit":50,"offset":50}},"results":[{},{}]}}"#,
        payment_json(1),
        payment_json(2)
    );
    let (c, script) = serve(vec![ok(body)], fixed("APP_USR-1"), RetryPolicy::none()).await;
    let window = Window {
        field: WindowField::Updated,
        from: "2026-11-05T00:00:00-03:00".parse().unwrap(),
        to: "2026-11-06T00:00:00.5Z".parse().unwrap(),
    };
    let page = c.list_page(&window, 1).await.unwrap();
    assert!(page.is_last);
    assert!(
        matches!(&page.items[..], [Fetched::Op(a), Fetched::Op(b)] if a.uid == "1" && b.total.to_string() == "10.10")
    );
    let seen = script.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/v1/payments/search");
    assert_eq!(seen.auth.as_deref(), Some("Bearer APP_USR-1"));
    let q: Vec<(&str, &str)> = seen
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        q,
        [
            ("sort", "date_last_updated"),
            ("criteria", "asc"),
            ("range", "date_last_updated"),
            // A second wider each side: the search's bounds are not documented.
            ("begin_date", "2026-11-05T02:59:59.000-00:00"),
            ("end_date", "2026-11-06T00:00:01.500-00:00"),
            ("offset", "50"),
            ("limit", "50"),
        ]
    );
}

/// The search is asked a second wider than the window; what comes back is cut to the window by
/// its own field, to the millisecond, so two slices that tile never both keep a payment.
#[tokio::test]
async fn what_the_wider_search_brings_is_cut_to_the_window() {
    let at = |id: u64, updated: &str| {
        format!(
            r#"{{"id":{id},"status":"approved","currency_id":"ARS","transaction_amount":1,"date_created":"2026-11-01T00:00:00.000Z","date_last_updated":"{updated}","live_mode":true}}"#
        )
    };
    let body = format!(
        r#"{{"paging":{{"total":5}},"results":[{},{},{},{},{}]}}"#,
        at(1, "2026-11-05T02:59:59.999Z"),
        at(2, "2026-11-05T03:00:00.000Z"),
        at(3, "2026-11-06T00:00:00.500Z"),
        at(4, "2026-11-06T00:00:00.501Z"),
        r#"{"id":5,"status":"approved"}"#
    );
    let (c, _) = serve(vec![ok(body)], fixed("t"), RetryPolicy::none()).await;
    let window = Window {
        field: WindowField::Updated,
        from: "2026-11-05T03:00:00Z".parse().unwrap(),
        to: "2026-11-06T00:00:00.5Z".parse().unwrap(),
    };
    let page = c.list_page(&window, 0).await.unwrap();
    let kept: Vec<String> = page
        .items
        .iter()
        .map(|i| match i {
            Fetched::Op(o) => o.uid.clone(),
            Fetched::Bad { uid, .. } => format!("bad {}", uid.clone().unwrap_or_default()),
        })
        .collect();
    assert_eq!(kept, ["2", "3", "bad 5"]);
}

/// A 400 "Number of rows exceeded the limits" (a ceiling lower than ours) says the same as a
/// page past ours: split the window.
#[tokio::test]
async fn error_1000_is_a_page_ceiling() {
    let body = r#"{"message":"Number of rows exceeded the limits","error":"bad_request","status":400,"cause":[{"code":1000,"description":"Number of rows exceeded the limits"}]}"#;
    let (c, _) = serve(
        vec![(400, "", body.to_string())],
        fixed("t"),
        RetryPolicy::none(),
    )
    .await;
    let window = Window {
        field: WindowField::Created,
        from: jiff::Timestamp::UNIX_EPOCH,
        to: jiff::Timestamp::UNIX_EPOCH,
    };
    let e = c.list_page(&window, 3).await.unwrap_err();
    assert!(
        matches!(&e, SourceError::Api { code, .. } if code == crate::source::PAST_PAGE_CEILING),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_page_past_the_ceiling_is_never_asked() {
    let (c, script) = serve(vec![], fixed("t"), RetryPolicy::none()).await;
    let window = Window {
        field: WindowField::Created,
        from: jiff::Timestamp::UNIX_EPOCH,
        to: jiff::Timestamp::UNIX_EPOCH,
    };
    for page in [MAX_PAGES, MAX_PAGES + 1, u32::MAX] {
        let e = c.list_page(&window, page).await.unwrap_err();
        assert!(
            matches!(&e, SourceError::Api { code, .. } if code == "offset_ceiling"),
            "{e:?}"
        );
    }
    assert!(script.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_401_renews_the_token_once() {
    let tokens = Arc::new(Rotating {
        now: Mutex::new("old".into()),
        refreshed: AtomicU32::new(0),
    });
    let (c, script) = serve(
        vec![(401, "", UNAUTHORIZED.into()), ok(payment_json(5))],
        tokens.clone(),
        RetryPolicy::none(),
    )
    .await;
    let op = c.get_operation("5").await.unwrap();
    assert_eq!(op.uid, "5");
    assert_eq!(tokens.refreshed.load(Ordering::SeqCst), 1);
    let auths: Vec<Option<String>> = script
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.auth.clone())
        .collect();
    assert_eq!(
        auths,
        [Some("Bearer old".into()), Some("Bearer new".into())]
    );

    // A second 401 is final, after one renewal.
    let tokens = Arc::new(Rotating {
        now: Mutex::new("old".into()),
        refreshed: AtomicU32::new(0),
    });
    let (c, script) = serve(
        vec![
            (401, "", UNAUTHORIZED.into()),
            (
                401,
                "",
                r#"{"code":"unauthorized","message":"invalid access token"}"#.into(),
            ),
        ],
        tokens.clone(),
        RetryPolicy::default(),
    )
    .await;
    let e = c.get_operation("5").await.unwrap_err();
    assert!(
        matches!(e, SourceError::Unauthorized { status: 401, .. }),
        "{e:?}"
    );
    assert_eq!(tokens.refreshed.load(Ordering::SeqCst), 1);
    assert_eq!(script.seen.lock().unwrap().len(), 2);
    assert!(
        !e.to_string().contains("old") && !e.to_string().contains("new"),
        "{e}"
    );

    // A fixed token cannot be renewed: the first 401 is final.
    let (c, script) = serve(
        vec![(401, "", UNAUTHORIZED.into())],
        fixed("APP_USR-secret"),
        RetryPolicy::none(),
    )
    .await;
    let e = c.check().await.unwrap_err();
    assert!(matches!(e, SourceError::Unauthorized { .. }), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("APP_USR-secret"));
    assert_eq!(script.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn passing_failures_are_retried_and_the_rest_are_not() {
    let fast = RetryPolicy {
        backoff: crate::retry::Backoff::constant(Duration::from_millis(1)),
        max_times: 3,
        max_total: Duration::from_secs(5),
    };
    let (c, script) = serve(
        vec![
            (429, "0", r#"{"message":"Too many requests","error":"local_rate_limited","status":429,"cause":[]}"#.into()),
            (502, "", "<html>Bad Gateway</html>".into()),
            (503, "", String::new()),
            ok(payment_json(9)),
        ],
        fixed("t"),
        fast,
    )
    .await;
    assert_eq!(c.get_operation("9").await.unwrap().uid, "9");
    assert_eq!(script.seen.lock().unwrap().len(), 4);

    let (c, _) = serve(
        vec![(500, "", "oops".into())],
        fixed("t"),
        RetryPolicy::none(),
    )
    .await;
    let e = c.get_operation("9").await.unwrap_err();
    assert!(
        matches!(e, SourceError::Http { status: 500, .. }) && e.is_transient(),
        "{e:?}"
    );

    let not_found = r#"{"message":"Payment not found","error":"not_found","status":404,"cause":[{"code":2000,"description":"Payment not found","data":null}]}"#;
    let (c, script) = serve(
        vec![(404, "", not_found.into()), ok("<html>hi</html>")],
        fixed("t"),
        fast,
    )
    .await;
    assert!(
        matches!(c.get_operation("9").await, Err(SourceError::NotFound { uid, .. }) if uid == "9")
    );
    assert!(matches!(
        c.get_operation("10").await,
        Err(SourceError::Malformed { .. })
    ));
    // Not digits: no payment, and nothing is sent.
    for uid in ["abc", "", "1/2", "../users/me"] {
        assert!(
            matches!(
                c.get_operation(uid).await,
                Err(SourceError::NotFound { .. })
            ),
            "{uid}"
        );
    }
    assert_eq!(script.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn the_seller_is_read_once_and_orders_name_their_payments() {
    let order = r#"{"id":2000000123,"status":"paid","seller":{"id":123456789},"payments":[{"id":1234567890,"order_id":2000000123,"status":"approved"},{"id":"1234567891","status":"rejected"}]}"#;
    let (c, script) = serve(
        vec![
            ok(r#"{"id":123456789,"nickname":"SELLER","site_id":"MLA"}"#),
            ok(order),
            (
                404,
                "",
                r#"{"message":"Order not found","error":"not_found","status":404,"cause":[]}"#
                    .into(),
            ),
        ],
        fixed("t"),
        RetryPolicy::none(),
    )
    .await;
    c.check().await.unwrap();
    assert_eq!(c.seller_id().await.unwrap(), 123456789);
    assert_eq!(
        c.order_payments("2000000123").await.unwrap(),
        ["1234567890", "1234567891"]
    );
    assert!(matches!(
        c.order_payments("2000000124").await,
        Err(SourceError::NotFound { api: MELI_API, .. })
    ));
    assert!(matches!(
        c.order_payments("x").await,
        Err(SourceError::NotFound { .. })
    ));
    let paths: Vec<String> = script
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(
        paths,
        [
            "/users/me",
            "/meli/orders/2000000123",
            "/meli/orders/2000000124"
        ]
    );

    let (c, _) = serve(
        vec![ok(r#"{"nickname":"X"}"#)],
        fixed("t"),
        RetryPolicy::none(),
    )
    .await;
    assert!(matches!(
        c.seller_id().await,
        Err(SourceError::Malformed { .. })
    ));
}
