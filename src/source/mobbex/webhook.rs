//! Reading a Mobbex webhook body: only what is needed to queue a trigger.
//!
//! Mobbex posts JSON (`{"type": "...", "data": {"payment": {"id": ...}}}`); older deliveries were
//! form-encoded with nested keys (`data[payment][id]=...`). Both are accepted. Nothing in the body is
//! trusted for status, amount or reference: the worker re-reads the operation from the API by id
//! (webhooks are unsigned, mobbex-api.md §5). So the only things read here are the event type and the
//! operation id.

use serde::Deserialize;

use crate::source::{Trigger, WebhookError};

#[derive(Deserialize)]
struct Hook {
    #[serde(rename = "type")]
    kind: Option<String>,
    data: Option<HookData>,
}

#[derive(Deserialize)]
struct HookData {
    payment: Option<HookPayment>,
    /// `checkout:expired` may carry the checkout instead of a payment.
    checkout: Option<HookId>,
    id: Option<IdValue>,
}

#[derive(Deserialize)]
struct HookPayment {
    id: Option<IdValue>,
    reference: Option<String>,
}

#[derive(Deserialize)]
struct HookId {
    uid: Option<IdValue>,
    id: Option<IdValue>,
}

/// Ids are strings; accept numbers too.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdValue {
    S(String),
    N(u64),
}

impl IdValue {
    fn into_string(self) -> String {
        match self {
            IdValue::S(s) => s,
            IdValue::N(n) => n.to_string(),
        }
    }
}

/// Parse a webhook body given its content type.
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Trigger, WebhookError> {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let hook: Hook = if ct.starts_with("application/x-www-form-urlencoded") {
        parse_form(body)?
    } else if ct.starts_with("application/json") {
        serde_json::from_slice(body).map_err(|e| WebhookError::Unparseable(e.to_string()))?
    } else {
        // No (or an odd) content type: JSON if it looks like JSON, else form.
        match serde_json::from_slice(body) {
            Ok(h) => h,
            Err(_) => parse_form(body)?,
        }
    };
    let kind = hook.kind.unwrap_or_else(|| "checkout".into());
    let data = hook.data;
    let uid = data
        .as_ref()
        .and_then(|d| d.payment.as_ref())
        .and_then(|p| p.id.as_ref())
        .map(|id| match id {
            IdValue::S(s) => s.clone(),
            IdValue::N(n) => n.to_string(),
        })
        .filter(|s| !s.trim().is_empty());

    if kind == "checkout:expired" {
        let id = uid
            .or_else(|| {
                data.and_then(|d| {
                    d.checkout
                        .and_then(|c| c.uid.or(c.id))
                        .or(d.id)
                        .map(IdValue::into_string)
                })
            })
            .unwrap_or_else(|| "(no id)".into());
        return Ok(Trigger::Ignored {
            uid: id,
            reason: "checkout:expired never creates anything".into(),
        });
    }
    let uid = uid.ok_or(WebhookError::NoOperationId)?;
    let reference = data
        .as_ref()
        .and_then(|d| d.payment.as_ref())
        .and_then(|p| p.reference.clone())
        .filter(|r| r.len() <= 200);
    if uid.len() > 200 || uid.chars().any(|c| c.is_control()) {
        return Err(WebhookError::Unparseable(
            "operation id is not a plausible id".into(),
        ));
    }
    if uid.starts_with("CHD-") {
        return Ok(Trigger::Ignored {
            uid,
            reason: "child operation: its parent is booked".into(),
        });
    }
    Ok(Trigger::Operation {
        uid,
        kind,
        reference,
    })
}

fn parse_form(body: &[u8]) -> Result<Hook, WebhookError> {
    let text = std::str::from_utf8(body).map_err(|e| WebhookError::Unparseable(e.to_string()))?;
    // Non-strict mode accepts both `data[payment][id]` and its percent-encoded brackets.
    serde_qs::Config::new(8, false)
        .deserialize_str(text)
        .map_err(|e| WebhookError::Unparseable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body() {
        let body = br#"{"type":"checkout","data":{"payment":{"id":"op-1","status":{"code":"200"},"total":10.5}}}"#;
        assert_eq!(
            parse(Some("application/json"), body),
            Ok(Trigger::Operation {
                uid: "op-1".into(),
                kind: "checkout".into(),
                reference: None,
            })
        );
    }

    #[test]
    fn legacy_form_body() {
        let body = b"type=checkout&data%5Bpayment%5D%5Bid%5D=op-2&data%5Bpayment%5D%5Bstatus%5D%5Bcode%5D=200";
        assert_eq!(
            parse(Some("application/x-www-form-urlencoded"), body),
            Ok(Trigger::Operation {
                uid: "op-2".into(),
                kind: "checkout".into(),
                reference: None,
            })
        );
        let raw = b"type=checkout&data[payment][id]=op-3&data[payment][status][code]=200";
        assert!(matches!(parse(None, raw), Ok(Trigger::Operation { uid, .. }) if uid == "op-3"));
    }

    #[test]
    fn expired_and_children_are_ignored() {
        let body = br#"{"type":"checkout:expired","data":{"checkout":{"uid":"chk-1"}}}"#;
        assert!(
            matches!(parse(Some("application/json"), body), Ok(Trigger::Ignored { uid, .. }) if uid == "chk-1")
        );
        let body = br#"{"type":"checkout","data":{"payment":{"id":"CHD-9"}}}"#;
        assert!(
            matches!(parse(Some("application/json"), body), Ok(Trigger::Ignored { uid, .. }) if uid == "CHD-9")
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            parse(Some("application/json"), b"{not json"),
            Err(WebhookError::Unparseable(_))
        ));
        assert_eq!(
            parse(
                Some("application/json"),
                br#"{"type":"checkout","data":{}}"#
            ),
            Err(WebhookError::NoOperationId)
        );
    }
}
