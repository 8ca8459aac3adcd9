//! The OAuth wire of Mercado Pago / MercadoLibre: one refresh-token grant, nothing stored.
//!
//! Owns: `POST {token_url}` with `grant_type=refresh_token` (form-encoded, built by hand:
//! reqwest's `form` feature is off) and what its answers mean (`docs/mercadopago-contract.md`,
//! "POST /oauth/token"). Every refresh ROTATES: the refresh token sent is dead once the server
//! has processed the request, and the new one is only in the answer. So an answer lost on the way
//! (a timeout, a dropped connection, a gateway's 502/504) leaves the outcome unknown, and says
//! so ([`OAuthError::OutcomeUnknown`]): the caller logs that the account may need to be
//! authorized again if the next refresh is refused.
//!
//! Must not: store tokens, retry on its own (a blind retry of a grant whose outcome is unknown
//! is the caller's decision), or put a token or a secret into any error text or log.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::API;
use crate::http_client::describe_reqwest;
use crate::source::SourceError;

/// What a successful grant gives. `expires_in` is the access token's life from now.
#[derive(Debug)]
pub struct TokenGrant {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    pub expires_in: Duration,
    pub user_id: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The refresh token is expired, revoked or already used: the seller must authorize again.
    #[error("refresh token refused (invalid_grant): {0}; the account must be authorized again")]
    InvalidGrant(String),
    /// `client_id` / `client_secret` refused: a configuration matter.
    #[error("client refused (invalid_client): {0}; check client_id and client_secret")]
    InvalidClient(String),
    /// Another refusal (`invalid_scope`, an unexpected 4xx): `code` is the server's.
    #[error("token request refused (HTTP {status}, {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// Rate limited, a 5xx the server answered itself, or no connection at all: the request was
    /// not processed (or the server says it failed), the refresh token still holds; try later.
    #[error("token refresh failed, try later: {0}")]
    Transient(SourceError),
    /// Sent, but its answer was lost (a timeout, a dropped connection, a gateway's 502/504): the
    /// server may have rotated the refresh token. Retrying with the same refresh token is the
    /// only way to know; if that is refused with `invalid_grant`, the account must be
    /// authorized again.
    #[error(
        "token refresh outcome unknown ({0}): the server may have rotated the refresh token; \
         if the next refresh is refused the account must be authorized again"
    )]
    OutcomeUnknown(String),
    /// A 200 that is not a grant (never quoting the body: it would hold tokens).
    #[error("malformed token answer: {0}")]
    Malformed(String),
}

impl OAuthError {
    /// Worth trying again soon (an unknown outcome included: trying is how it becomes known).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OAuthError::Transient(_) | OAuthError::OutcomeUnknown(_)
        )
    }
}

/// A client for the token endpoint: TLS as `client_builder_for` decides, no redirects (a
/// redirect would send the secrets elsewhere), a bound on the whole exchange.
pub fn token_client(token_url: &Url, timeout: Duration) -> Result<reqwest::Client, SourceError> {
    crate::http_client::client_builder_for(token_url)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("paysync/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SourceError::Transport {
            api: API,
            message: describe_reqwest(&e),
        })
}

/// One refresh-token grant: the new access and refresh tokens, or why not.
pub async fn refresh_grant(
    http: &reqwest::Client,
    token_url: &Url,
    client_id: &str,
    client_secret: &SecretString,
    refresh_token: &SecretString,
) -> Result<TokenGrant, OAuthError> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("client_id", client_id)
        .append_pair("client_secret", client_secret.expose_secret())
        .append_pair("refresh_token", refresh_token.expose_secret())
        .finish();
    let started = std::time::Instant::now();
    let sent = http
        .post(token_url.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body)
        .send()
        .await;
    let label = match &sent {
        Ok(r) => r.status().as_u16().to_string(),
        Err(_) => "error".to_string(),
    };
    crate::metrics::api_request("mercadopago", "oauth_token", &label, started.elapsed());
    let resp = sent.map_err(lost)?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::retry::parse_retry_after);
    let body = resp.bytes().await.map_err(lost)?;
    let secrets = [client_secret.expose_secret(), refresh_token.expose_secret()];
    read_grant(status, retry_after, &body, &secrets)
}

/// A transport failure: before the request could reach the server (no connection) nothing
/// happened; after, the outcome is unknown.
fn lost(e: reqwest::Error) -> OAuthError {
    if e.is_connect() {
        OAuthError::Transient(SourceError::Transport {
            api: API,
            message: describe_reqwest(&e),
        })
    } else {
        OAuthError::OutcomeUnknown(describe_reqwest(&e))
    }
}

/// The table of token answers. `secrets` are masked out of any text kept from the body (a
/// server that echoes its request would otherwise put them in a log).
///
/// | answer | result |
/// |---|---|
/// | 200 with `access_token`, `refresh_token`, `expires_in` | the grant |
/// | 200 anything else | `Malformed` (the body is never quoted) |
/// | 4xx `error: invalid_grant` | `InvalidGrant` |
/// | 4xx `error: invalid_client` (or a 401 without a code) | `InvalidClient` |
/// | other 4xx with an `error` code (`invalid_scope`) | `Refused` |
/// | any other answer (a code-less 4xx: a firewall's page; a 3xx) | `Transient(Http)` |
/// | 429 | `Transient(RateLimited)` |
/// | 408, 502, 504 (timed out, a gateway: it may have been processed) | `OutcomeUnknown` |
/// | other 5xx | `Transient(Http)` |
fn read_grant(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    secrets: &[&str],
) -> Result<TokenGrant, OAuthError> {
    if (200..300).contains(&status) {
        return parse_grant(body);
    }
    #[derive(Deserialize, Default)]
    struct ErrorAnswer {
        error: Option<String>,
        message: Option<String>,
        error_description: Option<String>,
    }
    let e: ErrorAnswer = serde_json::from_slice(body).unwrap_or_default();
    let message = e
        .message
        .or(e.error_description)
        .map(|m| mask(&m, secrets))
        .unwrap_or_else(|| describe_body(body));
    match (status, e.error.as_deref()) {
        (429, _) => Err(OAuthError::Transient(SourceError::RateLimited {
            api: API,
            retry_after,
        })),
        // A gateway that gave up, or a server that timed the request out: it may have been
        // processed.
        (408 | 502 | 504, _) => Err(OAuthError::OutcomeUnknown(format!(
            "HTTP {status}: {message}"
        ))),
        (500..=599, _) => Err(OAuthError::Transient(SourceError::Http {
            api: API,
            status,
            message,
        })),
        (_, Some("invalid_grant")) => Err(OAuthError::InvalidGrant(message)),
        (_, Some("invalid_client")) | (401, None) => Err(OAuthError::InvalidClient(message)),
        // The server's own refusal, with its word for why: final for this configuration.
        (400..=499, Some(code)) => Err(OAuthError::Refused {
            status,
            code: mask(code, secrets),
            message,
        }),
        // Without a code (a firewall's 403 page, a redirect, a proxy's 404): not the token
        // endpoint's answer, the refresh token not spent; tried again later.
        _ => Err(OAuthError::Transient(SourceError::Http {
            api: API,
            status,
            message,
        })),
    }
}

/// What an access token lives when a grant does not say (MercadoLibre's 6 hours, the shorter of
/// the two: refreshing early is harmless, late is not).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// A 200's grant. Only the two tokens are required: the server rotated on this answer, so a
/// refresh token that is present must reach the caller whatever else is odd about the body
/// (`expires_in` as a float or a string, `user_id` as a string, neither at all).
fn parse_grant(body: &[u8]) -> Result<TokenGrant, OAuthError> {
    #[derive(Deserialize)]
    struct Grant {
        access_token: Option<String>,
        refresh_token: Option<String>,
        #[serde(default)]
        expires_in: Option<serde_json::Value>,
        #[serde(default)]
        user_id: Option<serde_json::Value>,
    }
    // serde's own error text can quote the value it choked on: it is not kept.
    let g: Grant = serde_json::from_slice(body)
        .map_err(|_| OAuthError::OutcomeUnknown("a 200 that is not a JSON grant".into()))?;
    let present = |t: Option<String>, what: &str| {
        t.filter(|t| !t.trim().is_empty())
            .map(SecretString::from)
            .ok_or_else(|| OAuthError::Malformed(format!("no {what}")))
    };
    let access_token = present(g.access_token, "access_token")?;
    let refresh_token = present(
        g.refresh_token,
        "refresh_token (is the offline_access scope granted?)",
    )?;
    let number = |v: &serde_json::Value| match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let expires_in = g
        .expires_in
        .as_ref()
        .and_then(number)
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_LIFETIME);
    let user_id = g.user_id.as_ref().and_then(|v| match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    Ok(TokenGrant {
        access_token,
        refresh_token,
        expires_in,
        user_id,
    })
}

/// `text` with every non-empty secret replaced by `***`.
fn mask(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |t, s| t.replace(s, "***"))
}

/// A body that is not a JSON error, described without quoting it (it may echo the request).
fn describe_body(body: &[u8]) -> String {
    let t = String::from_utf8_lossy(body);
    let t = t.trim_start();
    if t.is_empty() {
        "(empty body)".into()
    } else if t.starts_with('<') {
        format!("(an HTML page, {} bytes)", body.len())
    } else {
        format!("(a {} byte body that is not a JSON error)", body.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: &[&str] = &["s3cret", "TG-old"];

    fn grant(status: u16, body: &str) -> Result<TokenGrant, OAuthError> {
        read_grant(status, None, body.as_bytes(), SECRETS)
    }

    #[test]
    fn a_good_grant_is_read() {
        let g = grant(
            200,
            r#"{"access_token":"APP_USR-new","token_type":"Bearer","expires_in":21600,"scope":"offline_access read write","user_id":123456789,"refresh_token":"TG-new","public_key":"APP_USR-pk"}"#,
        )
        .unwrap();
        assert_eq!(g.access_token.expose_secret(), "APP_USR-new");
        assert_eq!(g.refresh_token.expose_secret(), "TG-new");
        assert_eq!(g.expires_in, Duration::from_secs(21600));
        assert_eq!(g.user_id, Some(123456789));
        // The grant's Debug output shows no token.
        let dbg = format!("{g:?}");
        assert!(
            !dbg.contains("APP_USR-new") && !dbg.contains("TG-new"),
            "{dbg}"
        );
    }

    /// The server rotated on a 200: its refresh token must come through whatever else is odd.
    #[test]
    fn a_grant_with_odd_fields_still_gives_its_tokens() {
        for (body, lifetime, user) in [
            (
                r#"{"access_token":"APP_USR-x","refresh_token":"TG-x","user_id":"123"}"#,
                DEFAULT_LIFETIME,
                Some(123),
            ),
            (
                r#"{"access_token":"APP_USR-x","refresh_token":"TG-x","expires_in":"soon"}"#,
                DEFAULT_LIFETIME,
                None,
            ),
            (
                r#"{"access_token":"APP_USR-x","refresh_token":"TG-x","expires_in":21600.0,"user_id":[1]}"#,
                Duration::from_secs(21600),
                None,
            ),
            (
                r#"{"access_token":"APP_USR-x","refresh_token":"TG-x","expires_in":"15552000"}"#,
                Duration::from_secs(15_552_000),
                None,
            ),
        ] {
            let g = grant(200, body).unwrap();
            assert_eq!(g.refresh_token.expose_secret(), "TG-x", "{body}");
            assert_eq!(g.expires_in, lifetime, "{body}");
            assert_eq!(g.user_id, user, "{body}");
        }
    }

    #[test]
    fn a_200_that_is_no_grant_is_refused_and_quotes_nothing() {
        for (body, unknown) in [
            (r#"{"access_token":"APP_USR-x","expires_in":21600}"#, false),
            (r#"{"refresh_token":"TG-x","expires_in":21600}"#, false),
            // Not JSON at all: whether the server rotated is not known.
            ("<html>ok</html>", true),
            ("", true),
        ] {
            let e = grant(200, body).unwrap_err();
            match unknown {
                true => assert!(matches!(e, OAuthError::OutcomeUnknown(_)), "{body}: {e:?}"),
                false => assert!(matches!(e, OAuthError::Malformed(_)), "{body}: {e:?}"),
            }
            let text = e.to_string();
            assert!(
                !text.contains("APP_USR-x") && !text.contains("TG-x"),
                "{text}"
            );
        }
    }

    #[test]
    fn refusals_say_which() {
        let e = grant(
            400,
            r#"{"error":"invalid_grant","message":"Your authorization code or refresh token may be expired or it was already used","status":400,"cause":[]}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&e, OAuthError::InvalidGrant(m) if m.contains("already used")),
            "{e:?}"
        );
        assert!(!e.is_transient());
        let e = grant(
            400,
            r#"{"error":"invalid_client","message":"invalid client_id or client_secret","status":400,"cause":[]}"#,
        )
        .unwrap_err();
        assert!(matches!(e, OAuthError::InvalidClient(_)), "{e:?}");
        assert!(matches!(grant(401, ""), Err(OAuthError::InvalidClient(_))));
        let e = grant(400, r#"{"error":"invalid_scope","message":"no"}"#).unwrap_err();
        assert!(
            matches!(&e, OAuthError::Refused { status: 400, code, .. } if code == "invalid_scope"),
            "{e:?}"
        );
        // A code-less refusal (a firewall's page) is not the token endpoint's word: tried later.
        let e = grant(403, "<html>no</html>").unwrap_err();
        assert!(matches!(e, OAuthError::Transient(_)), "{e:?}");
    }

    #[test]
    fn passing_failures_and_lost_answers_are_told_apart() {
        let e = read_grant(
            429,
            Some(Duration::from_secs(5)),
            br#"{"message":"Too many requests","error":"local_rate_limited","status":429,"cause":[]}"#,
            SECRETS,
        )
        .unwrap_err();
        assert!(
            matches!(&e, OAuthError::Transient(s) if s.retry_after() == Some(Duration::from_secs(5))),
            "{e:?}"
        );
        for status in [500u16, 503] {
            for body in [
                "",
                "<html>busy</html>",
                r#"{"message":"Internal server error"}"#,
            ] {
                let e = grant(status, body).unwrap_err();
                assert!(
                    matches!(e, OAuthError::Transient(_)),
                    "{status} {body}: {e:?}"
                );
                assert!(e.is_transient());
            }
        }
        for status in [408u16, 502, 504] {
            let e = grant(status, "<html>Bad Gateway</html>").unwrap_err();
            assert!(
                matches!(e, OAuthError::OutcomeUnknown(_)),
                "{status}: {e:?}"
            );
            assert!(e.to_string().contains("authorized again"), "{e}");
        }
    }

    /// A server that echoes the request into its error text does not put a secret in ours.
    #[test]
    fn secrets_are_masked_out_of_error_texts() {
        let e = grant(
            400,
            r#"{"error":"invalid_grant","message":"refresh_token=TG-old client_secret=s3cret refused"}"#,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            !text.contains("TG-old") && !text.contains("s3cret"),
            "{text}"
        );
        let e = grant(500, "grant_type=refresh_token&client_secret=s3cret").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    /// Against a real server: the request is form-encoded with every field, and a refused
    /// connection (nothing sent) is transient, not an unknown outcome.
    #[tokio::test]
    async fn the_grant_is_posted_form_encoded() {
        use axum::routing::post;
        let app = axum::Router::new().route(
            "/oauth/token",
            post(|headers: axum::http::HeaderMap, body: String| async move {
                let ct = headers.get("content-type").and_then(|v| v.to_str().ok());
                let fields: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
                    .into_owned()
                    .collect();
                let want = [
                    ("grant_type", "refresh_token"),
                    ("client_id", "123"),
                    ("client_secret", "s3c&ret"),
                    ("refresh_token", "TG-old"),
                ];
                let ok = ct == Some("application/x-www-form-urlencoded")
                    && want
                        .iter()
                        .all(|(k, v)| fields.iter().any(|(a, b)| a == k && b == v));
                if ok {
                    r#"{"access_token":"APP_USR-new","expires_in":21600,"user_id":7,"refresh_token":"TG-new"}"#
                        .to_string()
                } else {
                    format!("unexpected request: {ct:?} {fields:?}")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url: Url = format!("http://{addr}/oauth/token").parse().unwrap();
        let http = token_client(&url, Duration::from_secs(5)).unwrap();
        let secret = SecretString::from("s3c&ret");
        let refresh = SecretString::from("TG-old");
        let g = refresh_grant(&http, &url, "123", &secret, &refresh)
            .await
            .unwrap();
        assert_eq!(g.refresh_token.expose_secret(), "TG-new");
        assert_eq!(g.user_id, Some(7));

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let closed: Url = format!("http://127.0.0.1:{port}/oauth/token")
            .parse()
            .unwrap();
        let e = refresh_grant(&http, &closed, "123", &secret, &refresh)
            .await
            .unwrap_err();
        assert!(matches!(e, OAuthError::Transient(_)), "{e:?}");
    }
}
