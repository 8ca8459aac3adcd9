//! Property-based fuzzing (proptest) of the three parsers that read what others wrote: the webhook
//! body parser (anyone on the internet), the Mobbex operation decoder (the gateway), and the
//! configuration loader (an operator). A coverage-guided fuzzer needs a nightly toolchain that CI
//! does not have; proptest runs on stable inside `cargo test`, for a bounded number of cases
//! (`PROPTEST_CASES`, default below; `.ci/run` runs a longer pass).
//!
//! Properties: never a panic, whatever the bytes; what is accepted is exactly what was sent (an
//! operation id, an amount to the last digit); a configuration error never shows a secret.

use std::str::FromStr;

use paysync::source::Fetched;
use paysync::source::Trigger;
use paysync::source::mobbex::parse_list;
use paysync::source::mobbex::webhook::parse as parse_webhook;
use proptest::prelude::*;
use proptest::test_runner::Config;
use rust_decimal::Decimal;
use serde_json::{Value, json};

fn config() -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(512),
        // Nothing written into the source tree; a failure prints its minimal input.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Any JSON value, a few levels deep, strings including control characters and non-ASCII.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        "[0-9]{1,30}(\\.[0-9]{0,12})?(e[+-]?[0-9]{1,4})?"
            .prop_map(|s| { serde_json::from_str(&s).unwrap_or(Value::String(s)) }),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::hash_map("[a-z_]{1,10}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON field that is usually plausible and sometimes anything at all.
fn sometimes(plausible: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        3 => plausible.prop_map(Some),
        1 => any_json().prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("application/json".to_string())),
        Just(Some("application/json; charset=utf-8".to_string())),
        Just(Some("application/x-www-form-urlencoded".to_string())),
        Just(Some("text/plain".to_string())),
        ".{0,30}".prop_map(Some),
    ]
}

/// A webhook body shaped like Mobbex's, with any field replaced by anything.
fn webhook_json() -> impl Strategy<Value = Value> {
    (
        sometimes(prop_oneof![
            Just(json!("checkout")),
            Just(json!("checkout:expired")),
            "[a-z:]{0,20}".prop_map(Value::String),
        ]),
        sometimes("[A-Za-z0-9-]{1,40}".prop_map(Value::String)),
        sometimes("[A-Z0-9-]{0,30}".prop_map(Value::String)),
        any_json(),
    )
        .prop_map(|(kind, id, reference, extra)| {
            let mut payment = serde_json::Map::new();
            if let Some(id) = id {
                payment.insert("id".into(), id);
            }
            if let Some(r) = reference {
                payment.insert("reference".into(), r);
            }
            payment.insert("extra".into(), extra);
            let mut hook = json!({"data": {"payment": Value::Object(payment)}});
            if let Some(k) = kind {
                hook["type"] = k;
            }
            hook
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_webhook_parser_never_panics_on_any_bytes(
        ct in content_type(),
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let _ = parse_webhook(ct.as_deref(), &body);
    }

    /// Whatever it accepts as an operation is the id that was sent, a plausible one.
    #[test]
    fn the_webhook_parser_accepts_only_the_id_it_was_given(
        ct in content_type(),
        hook in webhook_json(),
        as_form in any::<bool>(),
    ) {
        let body = if as_form {
            format!("data={}", urlencoding(&hook.to_string())).into_bytes()
        } else {
            hook.to_string().into_bytes()
        };
        if let Ok(Trigger::Operation { uid, .. }) = parse_webhook(ct.as_deref(), &body) {
            let sent = &hook["data"]["payment"]["id"];
            let sent = match sent {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => panic!("accepted id {uid:?} from {other}"),
            };
            prop_assert_eq!(uid.clone(), sent);
            prop_assert!(!uid.trim().is_empty() && uid.len() <= 200);
            prop_assert!(!uid.chars().any(char::is_control));
        }
    }

    #[test]
    fn the_mobbex_listing_decoder_never_panics_on_any_text(data in ".{0,512}") {
        let _ = parse_list(&data);
        let _ = parse_list(&format!(r#"{{"docs":[{data}]}}"#));
    }

    /// A listing document with any field replaced by anything: one item per document, never a
    /// panic; an accepted total is exactly the decimal that was written.
    #[test]
    fn the_mobbex_decoder_reads_totals_exactly_or_refuses_them(
        docs in prop::collection::vec(mobbex_doc(), 0..8),
    ) {
        let text = json!({"docs": docs}).to_string();
        let page = parse_list(&text).expect("a docs array is a page");
        prop_assert_eq!(page.items.len(), docs.len());
        for (item, doc) in page.items.iter().zip(&docs) {
            if let Fetched::Op(op) = item {
                let written = doc["total"].to_string();
                let written = written.trim_matches('"');
                let exact = Decimal::from_str(written)
                    .or_else(|_| Decimal::from_scientific(written))
                    .expect("accepted totals parse");
                prop_assert_eq!(op.total, exact);
                prop_assert_eq!(Some(op.uid.as_str()), doc["uid"].as_str());
            }
        }
    }

    /// A configuration mutated anywhere: loading it never panics, and whatever it says never
    /// shows a secret (the secrets are long random tokens, easy to spot).
    #[test]
    fn a_broken_configuration_never_shows_a_secret(
        mutation in config_mutation(),
        secrets in ("[a-zA-Z0-9]{24}", "[a-zA-Z0-9]{24}", "[0-9]{12}"),
    ) {
        let (key, secret, token) = secrets;
        let text = mutation.apply(&valid_config(&key, &secret, &token));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.toml");
        std::fs::write(&path, &text).unwrap();
        if let Err(e) = paysync::config::load_with_env(&path, &Default::default()) {
            let shown = format!("{e} {e:?}");
            for s in [&key, &secret, &token] {
                prop_assert!(!shown.contains(s.as_str()), "secret shown in {shown:?} for\n{text}");
            }
        }
    }
}

fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn mobbex_doc() -> impl Strategy<Value = Value> {
    (
        sometimes("[a-z0-9-]{1,30}".prop_map(Value::String)),
        sometimes(prop_oneof![
            (0u16..1000).prop_map(|c| json!(c.to_string())),
            (0u16..1000).prop_map(|c| json!({"code": c.to_string(), "text": "x"})),
        ]),
        sometimes(prop_oneof![
            "[1-9][0-9]{0,11}(\\.[0-9]{1,4})?"
                .prop_map(|s| serde_json::from_str::<Value>(&s).unwrap()),
            "[0-9]{1,8}[.,][0-9]{2}".prop_map(Value::String),
            "-?[0-9]{1,3}e[+-]?[0-9]{1,3}"
                .prop_map(|s| { serde_json::from_str::<Value>(&s).unwrap_or(Value::String(s)) }),
        ]),
        sometimes(prop_oneof![
            Just(json!("ARS")),
            Just(json!("TEST")),
            Just(json!({"code": "ARS"}))
        ]),
        sometimes(Just(json!("2026-10-05T15:00:00.000Z"))),
        any_json(),
    )
        .prop_map(|(uid, status, total, currency, created, extra)| {
            let mut doc = serde_json::Map::new();
            for (k, v) in [
                ("uid", uid),
                ("status", status),
                ("total", total),
                ("currency", currency),
                ("created", created),
            ] {
                if let Some(v) = v {
                    doc.insert(k.into(), v);
                }
            }
            doc.insert("reference".into(), json!("SAL-ORD-2026-00001"));
            doc.insert("extra".into(), extra);
            Value::Object(doc)
        })
}

fn valid_config(key: &str, secret: &str, token: &str) -> String {
    format!(
        r#"[daemon]
timezone = "America/Argentina/Buenos_Aires"
[store]
url = "sqlite:///tmp/paysync-fuzz-never-opened.db"
[erp]
kind = "erpnext"
url = "https://erp.example.com"
api_key = "{key}"
api_secret = "{secret}"
[[accounts]]
name = "main"
source = "mobbex"
api_key = "{key}"
access_token = "{secret}"
webhook_token = "{token}"
company = "Mi Empresa SA"
mode_of_payment = "Mobbex"
"#
    )
}

/// One edit to a configuration's text.
#[derive(Debug, Clone)]
enum ConfigMutation {
    /// Replace the quoted value on line `n` (mod lines) with this token (unquoted: a type error).
    Unquote(usize),
    /// Cut the line after this many characters (a syntax error, often on a secret's line).
    Truncate(usize, usize),
    /// Replace a value with this text.
    Replace(usize, String),
    /// Insert a line.
    Insert(usize, String),
    /// Delete a line.
    Delete(usize),
}

impl ConfigMutation {
    fn apply(&self, text: &str) -> String {
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let n = lines.len();
        match self {
            ConfigMutation::Unquote(i) => {
                let l = &mut lines[i % n];
                *l = l.replace('"', "");
            }
            ConfigMutation::Truncate(i, at) => {
                let l = &mut lines[i % n];
                let cut = l.char_indices().nth(*at).map(|(b, _)| b).unwrap_or(l.len());
                l.truncate(cut);
            }
            ConfigMutation::Replace(i, v) => {
                let l = &mut lines[i % n];
                if let Some(eq) = l.find('=') {
                    l.truncate(eq + 1);
                    l.push(' ');
                    l.push_str(v);
                }
            }
            ConfigMutation::Insert(i, v) => lines.insert(i % n, v.clone()),
            ConfigMutation::Delete(i) => {
                lines.remove(i % n);
            }
        }
        lines.join("\n")
    }
}

fn config_mutation() -> impl Strategy<Value = ConfigMutation> {
    let value = prop_oneof![
        "-?[0-9]{1,25}(\\.[0-9]+)?".boxed(),
        "\"[0-9]{1,12}(ms|s|h|d|x)?\"".boxed(),
        Just("true".to_string()).boxed(),
        Just("[1, 2]".to_string()).boxed(),
        Just("{ a = 1 }".to_string()).boxed(),
        "\"[^\"\\\\]{0,20}\"".boxed(),
        ".{0,20}".boxed(),
    ];
    prop_oneof![
        (0usize..40).prop_map(ConfigMutation::Unquote),
        (0usize..40, 0usize..60).prop_map(|(i, at)| ConfigMutation::Truncate(i, at)),
        (0usize..40, value.clone()).prop_map(|(i, v)| ConfigMutation::Replace(i, v)),
        (0usize..40, "[a-z_]{1,12} = .{0,20}").prop_map(|(i, v)| ConfigMutation::Insert(i, v)),
        (0usize..40).prop_map(ConfigMutation::Delete),
    ]
}
