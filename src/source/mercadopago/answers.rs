//! The one table of Mercado Pago (and MercadoLibre) answers: what an HTTP status and a body
//! mean, as a [`SourceError`] or the body to read (`classify`), and how an error body is read for
//! its words (either of the two shapes the contract names).
//!
//! Must not: read a successful body's shape (its reader does: `payment.rs`, `mod.rs`).

use std::time::Duration;

use serde_json::value::RawValue;

use crate::source::SourceError;
/// What an answer means, decided by the HTTP status first and by the body only for the message
/// and the code: the one table of Mercado Pago (and MercadoLibre) answers.
///
/// | answer | error | retried |
/// |---|---|---|
/// | 2xx, JSON | — (the body's text; its reader checks the shape, `Malformed` if not) | — |
/// | 2xx, anything else (HTML, text, empty) | `Malformed` | no |
/// | 429, with or without `Retry-After` | `RateLimited` | yes, after `Retry-After` (else backoff) |
/// | any 5xx, and 408, whatever the body | `Http` | yes |
/// | 401 | `Unauthorized` (the call asks `AccessTokens` once for another token) | once, new token |
/// | 403 (another seller's resource) | `Unauthorized` | no |
/// | 404 | `Http` (`NotFound` for one payment or order) | no |
/// | other 4xx, JSON error body | `Api`: the first `cause[].code` (`"1000"`), else `error` | no |
/// | other 4xx, anything else | `Http` | no |
///
/// (Transport failures — refused, reset, timed out, a body cut short — never reach this
/// function: they are `Transport`, retried.)
pub fn classify<'b>(
    api: &'static str,
    status: u16,
    retry_after: Option<Duration>,
    body: &'b [u8],
) -> Result<&'b str, SourceError> {
    let text = std::str::from_utf8(body).ok();
    let error_body = || text.and_then(ErrorBody::read);
    let message = |default: &str| {
        error_body()
            .and_then(|e| e.message.or(e.error))
            .unwrap_or_else(|| match text {
                Some(t) if !t.trim().is_empty() => snippet(t),
                _ if body.is_empty() => default.to_string(),
                _ => format!("({} bytes, not text)", body.len()),
            })
    };
    match status {
        200..=299 => match text {
            Some(t) if serde_json::from_str::<&RawValue>(t).is_ok() => Ok(t),
            _ => Err(SourceError::Malformed {
                api,
                message: format!(
                    "expected JSON, got {}",
                    text.map(snippet)
                        .unwrap_or_else(|| "a body that is not text".into())
                ),
            }),
        },
        429 => Err(SourceError::RateLimited { api, retry_after }),
        500..=599 | 408 => Err(SourceError::Http {
            api,
            status,
            message: message("(empty body)"),
        }),
        401 | 403 => Err(SourceError::Unauthorized {
            api,
            status,
            message: message(if status == 401 {
                "access token refused"
            } else {
                "access to this resource refused"
            }),
        }),
        404 => Err(SourceError::Http {
            api,
            status,
            message: message("(empty body)"),
        }),
        _ => match error_body() {
            Some(ErrorBody {
                message,
                error,
                cause_code,
                cause_description,
            }) if cause_code.is_some() || error.is_some() => Err(SourceError::Api {
                api,
                code: cause_code.or(error).unwrap_or_default(),
                message: cause_description
                    .or(message)
                    .unwrap_or_else(|| "no message".into()),
            }),
            _ => Err(SourceError::Http {
                api,
                status,
                message: message("(empty body)"),
            }),
        },
    }
}

/// An error body, either shape (`{message, error, status, cause: [{code, description}]}` or
/// `{code, message}`); read leniently, for its words only.
struct ErrorBody {
    message: Option<String>,
    error: Option<String>,
    cause_code: Option<String>,
    cause_description: Option<String>,
}

impl ErrorBody {
    fn read(text: &str) -> Option<ErrorBody> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let obj = v.as_object()?;
        let text_of = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        // `cause` is a list of causes; an object is taken as one.
        let cause = match obj.get("cause") {
            Some(serde_json::Value::Array(a)) => a.first().cloned(),
            Some(o @ serde_json::Value::Object(_)) => Some(o.clone()),
            _ => None,
        };
        let cause_field = |k: &str| cause.as_ref().and_then(|c| c.get(k)).and_then(text_of);
        Some(ErrorBody {
            message: obj.get("message").and_then(text_of),
            error: obj
                .get("error")
                .or_else(|| obj.get("code"))
                .and_then(text_of),
            cause_code: cause_field("code"),
            cause_description: cause_field("description"),
        })
    }
}

fn snippet(body: &str) -> String {
    let t: String = body.chars().take(200).collect();
    if t.trim().is_empty() {
        "(empty body)".into()
    } else {
        t
    }
}
