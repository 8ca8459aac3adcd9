//! Turning a Frappe error answer into one readable [`ErpError`].
//!
//! Frappe's v1 error body (recordings `shared/spec/erpnext-real/08`, `09`, `11`, `11c`, `24a`):
//! `exc_type` (class name), `exception` (last traceback line), `exc` (a JSON string of a traceback
//! list — never shown, it is noise), and `_server_messages`: a JSON **string** holding a list of
//! JSON **strings**, each an object with `message` — it has to be decoded twice. A 401 carries no
//! `_server_messages`; a 429 from the rate limiter is plain text with `Retry-After`; a proxy may
//! answer with HTML. Messages may hold HTML tags (`<strong>Guest</strong>`), which are stripped.

use std::time::Duration;

use serde::Deserialize;

use super::ErpError;

#[derive(Deserialize, Default)]
struct FrappeErrorBody {
    exc_type: Option<String>,
    exception: Option<String>,
    _server_messages: Option<String>,
    _error_message: Option<String>,
    message: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ServerMessage {
    message: Option<serde_json::Value>,
}

/// Build the error for a non-2xx answer.
pub fn from_response(status: u16, retry_after: Option<Duration>, body: &str) -> ErpError {
    if status == 429 {
        return ErpError::RateLimited { retry_after };
    }
    let parsed: Option<FrappeErrorBody> = serde_json::from_str(body).ok();
    let exc_type = parsed.as_ref().and_then(|b| b.exc_type.clone());
    let message = parsed
        .as_ref()
        .map(readable_message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            if parsed.is_some() {
                exc_type.clone().unwrap_or_else(|| "no message".into())
            } else {
                plain_snippet(body)
            }
        });
    // The duplicate guard's refusal is told by the database key it names (not by the translated
    // message): README "What a client should recognise".
    if status == 417
        && exc_type.as_deref() == Some("UniqueValidationError")
        && parsed
            .as_ref()
            .and_then(|b| b.exception.as_deref())
            .is_some_and(|e| e.contains("for key 'paysync_operation'"))
    {
        return ErpError::Duplicate(message);
    }
    match status {
        401 => ErpError::Unauthorized {
            status,
            message: format!(
                "{} (check erp.api_key and erp.api_secret)",
                exc_type.as_deref().unwrap_or("AuthenticationError")
            ),
        },
        // The server gave up waiting for the request: it was never handled.
        408 => ErpError::Server {
            status,
            exc_type,
            message,
        },
        400..=499 => ErpError::Rejected {
            status,
            exc_type: exc_type.unwrap_or_else(|| format!("HTTP {status}")),
            about_order: about_order(&message),
            message,
        },
        _ => ErpError::Server {
            status,
            exc_type,
            message,
        },
    }
}

/// Whether ERPNext's refusal of an entry is about the sales order it pays: ERPNext names the
/// order ("Sales Order SAL-ORD-... is cancelled", "... against Sales Order ...") or the row of the
/// entry's references table that allocates to it ("Row #1: Allocated Amount cannot be greater
/// than outstanding amount", recording 08; "Cannot link cancelled document: Row #1: ...", 22b).
fn about_order(message: &str) -> bool {
    message.contains("Sales Order") || message.contains("Row #")
}

/// The human part of a Frappe error: the decoded `_server_messages`, else `exception`'s text.
fn readable_message(b: &FrappeErrorBody) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(sm) = &b._server_messages
        && let Ok(list) = serde_json::from_str::<Vec<String>>(sm)
    {
        for item in list {
            let text = match serde_json::from_str::<ServerMessage>(&item) {
                Ok(ServerMessage {
                    message: Some(serde_json::Value::String(s)),
                }) => s,
                Ok(ServerMessage { message: Some(v) }) => v.to_string(),
                _ => item,
            };
            let text = strip_tags(&text);
            if !text.is_empty() && !parts.contains(&text) {
                parts.push(text);
            }
        }
    }
    if parts.is_empty()
        && let Some(e) = &b._error_message
    {
        parts.push(strip_tags(e));
    }
    if parts.is_empty()
        && let Some(exc) = &b.exception
    {
        // "frappe.exceptions.ValidationError: Row #1: ..." -> "Row #1: ..."
        let text = exc.split_once(": ").map(|(_, m)| m).unwrap_or(exc);
        if !text.contains("frappe.exceptions.") {
            parts.push(strip_tags(text));
        }
    }
    if parts.is_empty()
        && let Some(serde_json::Value::String(m)) = &b.message
    {
        parts.push(strip_tags(m));
    }
    parts.join("; ")
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn plain_snippet(body: &str) -> String {
    let text = strip_tags(body);
    let t: String = text.chars().take(200).collect();
    if t.is_empty() {
        "(empty body)".into()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every body shape Frappe or a proxy in front of it sends with an error status.
    const FRAPPE_500: &str = r#"{"exception": "pymysql.err.OperationalError: (1213, 'Deadlock found')", "exc_type": "OperationalError", "exc": "[]"}"#;
    const BODIES: [(&str, &str); 4] = [
        ("frappe json", FRAPPE_500),
        (
            "html",
            "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        ),
        ("text", "upstream request timeout"),
        ("empty", ""),
    ];

    #[test]
    fn every_5xx_and_408_is_transient_whatever_the_body() {
        for status in [500u16, 501, 502, 503, 504, 507, 520, 524, 599, 408] {
            for (shape, body) in BODIES {
                let e = from_response(status, None, body);
                assert!(
                    matches!(e, ErpError::Server { status: s, .. } if s == status),
                    "{status} {shape}: {e:?}"
                );
                assert!(e.is_transient(), "{status} {shape} must be retried");
            }
        }
    }

    #[test]
    fn a_create_is_resent_only_when_it_certainly_did_not_commit() {
        // (status, body, outcome unknown?)
        let table: &[(u16, &str, bool)] = &[
            (500, FRAPPE_500, false), // Frappe raised and rolled back
            (500, "<html>Internal Server Error</html>", true), // a proxy's 500
            (500, "", true),
            (503, "", false),
            (503, "<html>Service Unavailable</html>", false),
            (408, "", false),
            (502, "", true),
            (502, "<html>502 Bad Gateway</html>", true),
            (502, FRAPPE_500, false), // Frappe's own answer, whatever the status
            (504, "", true),
            (504, FRAPPE_500, false),
            (504, "upstream request timeout", true),
            (520, "", true),
            (524, "", true),
            (417, "{}", false),
            (429, "Too Many Requests", false),
        ];
        for (status, body, unknown) in table {
            let e = from_response(*status, None, body);
            assert_eq!(e.outcome_unknown(), *unknown, "{status} {body:?}: {e:?}");
        }
        assert!(ErpError::Timeout("t".into()).outcome_unknown());
        assert!(ErpError::Transport("reset".into()).outcome_unknown());
        assert!(!ErpError::Connect("refused".into()).outcome_unknown());
        assert!(ErpError::Connect("refused".into()).is_transient());
    }

    #[test]
    fn a_429_waits_for_retry_after_when_given_and_4xx_are_final() {
        for (shape, body) in BODIES {
            for ra in [Some(Duration::from_secs(2)), None] {
                let e = from_response(429, ra, body);
                assert!(e.is_transient(), "{shape}");
                assert_eq!(e.retry_after(), ra);
            }
            let e = from_response(401, None, body);
            assert!(matches!(e, ErpError::Unauthorized { .. }), "{shape}");
            assert!(!e.is_transient());
            for status in [400u16, 403, 404, 409, 417] {
                let e = from_response(status, None, body);
                assert!(matches!(e, ErpError::Rejected { .. }), "{status} {shape}");
                assert!(!e.is_transient(), "{status} {shape}");
                assert!(!e.outcome_unknown());
            }
        }
    }

    fn recording(name: &str) -> (u16, String) {
        let path = format!(
            "{}/tests/fixtures/erpnext-real/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).unwrap();
        (
            v["status"].as_u64().unwrap() as u16,
            v["response_body"].to_string(),
        )
    }

    #[test]
    fn validation_error_is_decoded_twice() {
        let (status, body) = recording("08-post-over-allocation.json");
        match from_response(status, None, &body) {
            ErpError::Rejected {
                status: 417,
                exc_type,
                message,
                about_order,
            } => {
                assert_eq!(exc_type, "ValidationError");
                assert_eq!(
                    message,
                    "Row #1: Allocated Amount cannot be greater than outstanding amount."
                );
                assert!(about_order, "an over-allocation is about the order");
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn link_errors_keep_their_type() {
        let (status, body) = recording("22b-post-payment-cancelled-so.json");
        let e = from_response(status, None, &body);
        assert!(!e.is_transient());
        let text = e.to_string();
        assert!(text.contains("CancelledLinkError"), "{text}");
        assert!(
            text.contains("Cannot link cancelled document: Row #1: Name: SAL-ORD-2026-00008"),
            "{text}"
        );
    }

    /// The engine records a refused create as `order_not_payable` only when the refusal is about
    /// the order; the adapter says which, from how ERPNext words it.
    #[test]
    fn refusals_about_the_order_are_told_from_other_refusals() {
        let about = |name: &str| {
            let (status, body) = recording(name);
            match from_response(status, None, &body) {
                ErpError::Rejected { about_order, .. } => about_order,
                e => panic!("{name}: {e:?}"),
            }
        };
        assert!(about("08-post-over-allocation.json"));
        assert!(about("22b-post-payment-cancelled-so.json"));
        assert!(about("09-post-nonexistent-sales-order.json"));
        assert!(about("18b-post-payment-closed-so.json"));
        assert!(about("20b-post-payment-party-mismatch.json"));
        // About the entry's own amounts, or about who asks: the same body gets the same answer.
        assert!(!about("21-post-allocated-gt-paid.json"));
        assert!(!about("11c-get-no-auth-header.json"));
    }

    #[test]
    fn bad_token_is_unauthorized() {
        let (status, body) = recording("11-post-wrong-token.json");
        assert!(matches!(
            from_response(status, None, &body),
            ErpError::Unauthorized { status: 401, .. }
        ));
    }

    #[test]
    fn guest_permission_error_has_no_html() {
        let (status, body) = recording("11c-get-no-auth-header.json");
        let e = from_response(status, None, &body);
        let text = e.to_string();
        assert!(
            text.contains("User Guest does not have doctype access"),
            "{text}"
        );
        assert!(!text.contains("<strong>"), "{text}");
    }

    #[test]
    fn type_error_500_is_a_server_error() {
        let (status, body) = recording("24a-post-payment-string-decimals.json");
        let e = from_response(status, None, &body);
        assert!(matches!(e, ErpError::Server { status: 500, .. }), "{e:?}");
        assert!(e.to_string().contains("bad operand type"), "{e}");
    }

    #[test]
    fn rate_limit_and_html() {
        let e = from_response(429, Some(Duration::from_secs(7)), "Too Many Requests");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.is_transient());
        let e = from_response(
            502,
            None,
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        );
        assert!(e.to_string().contains("502 Bad Gateway"), "{e}");
        assert!(e.outcome_unknown());
    }
}
