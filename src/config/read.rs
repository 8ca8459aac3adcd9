//! Reading `sync.toml` and the `PAYSYNC__...` environment into [`RawSettings`].
//!
//! Every message here names the key (or the environment variable) and never shows a secret:
//! a TOML syntax error gives the line, the column and the key, never the line's text (it may be a
//! secret's line, or a secret pasted on a line of its own); a type error on a secret key says
//! what kind of value was found, not the value.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::Path;

use super::raw::{ACCOUNT_KEYS, DAEMON_KEYS, ERP_KEYS, RawSettings, SECRET_KEYS, STORE_KEYS};
use super::{ConfigError, ENV_PREFIX};

/// A configuration file is a few KiB; anything past this is not one (`--config /dev/zero`).
const FILE_LIMIT: u64 = 1024 * 1024;
const ACCOUNTS_PREFIX: &str = "PAYSYNC__ACCOUNTS";

pub(super) struct Read {
    pub raw: RawSettings,
    /// Secrets written in the file itself, by key (`erp.api_secret`, `accounts[0].api_key`).
    pub secrets_in_file: Vec<String>,
    pub origins: Origins,
}

/// Which environment variable set which key, so that a message about the key names it.
pub(super) struct Origins(Vec<(String, String)>);

impl Origins {
    /// `e` with the variables that set its key (or a key below it) named.
    pub fn explain(&self, e: ConfigError) -> ConfigError {
        let ConfigError::Key {
            file,
            key,
            mut message,
        } = e
        else {
            return e;
        };
        let vars: Vec<&str> = self
            .0
            .iter()
            .filter(|(path, _)| *path == key || path.starts_with(&format!("{key}.")))
            .map(|(_, var)| var.as_str())
            .collect();
        if !vars.is_empty() {
            message.push_str(&format!(
                " (set by environment variable {})",
                vars.join(", ")
            ));
        }
        ConfigError::Key { file, key, message }
    }
}

pub(super) fn read(path: &Path, env: &HashMap<String, String>) -> Result<Read, ConfigError> {
    let file = path.display().to_string();
    let file_err = |message: String| ConfigError::File {
        file: file.clone(),
        message,
    };
    let text = read_text(path).map_err(file_err)?;
    // Parsed here (not by config-rs) to word syntax errors without the file's text.
    let table: toml::Table = text
        .parse()
        .map_err(|e| file_err(syntax_error(&text, &e)))?;
    let secrets_in_file = secrets_in(&table);

    // Section overrides go through config-rs's Environment source; account overrides are keyed by
    // account name, which config-rs cannot map onto an array, so they are applied by hand below.
    let sorted: BTreeMap<&String, &String> = env.iter().collect();
    let mut origins = Vec::new();
    let mut section_env = HashMap::new();
    for (k, v) in &sorted {
        let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if k.starts_with(ACCOUNTS_PREFIX) {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        origins.push((path.join("."), k.to_string()));
        section_env.insert(k.to_string(), v.to_string());
    }
    let built = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("PAYSYNC")
                .prefix_separator("__")
                .separator("__")
                .source(Some(section_env)),
        )
        .build()
        .map_err(|e| file_err(without_values(&e.to_string())))?;
    let mut value: serde_json::Value = built
        .try_deserialize()
        .map_err(|e| file_err(without_values(&e.to_string())))?;
    apply_account_env(&mut value, &sorted, &mut origins).map_err(|(var, message)| {
        ConfigError::Env {
            file: file.clone(),
            var,
            message,
        }
    })?;
    let origins = Origins(origins);

    let raw: RawSettings = serde_path_to_error::deserialize(&value)
        .map_err(|e| origins.explain(type_error(&file, &value, e)))?;
    Ok(Read {
        raw,
        secrets_in_file,
        origins,
    })
}

fn read_text(path: &Path) -> Result<String, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut buf = Vec::new();
    f.take(FILE_LIMIT + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > FILE_LIMIT {
        return Err(format!(
            "larger than {} MiB: not a paysync configuration",
            FILE_LIMIT / (1024 * 1024)
        ));
    }
    String::from_utf8(buf).map_err(|_| "not UTF-8 text".into())
}

/// "TOML syntax error at line 7, column 27 (in `erp.api_secret`): invalid basic string".
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    // toml's own Display quotes the offending line; its message alone does not.
    let what: Vec<&str> = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let what = if what.is_empty() {
        "invalid TOML".to_string()
    } else {
        without_quoted_words(&what.join(", "))
    };
    let Some(span) = e.span() else {
        return format!("TOML syntax error: {what}");
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    let place = key_at(text, line)
        .map(|k| format!(" (in `{k}`)"))
        .unwrap_or_default();
    format!(
        "TOML syntax error at line {line}, column {column}{place}: {what} (the line is not shown: it may hold a secret)"
    )
}

/// `text` without quoted words: toml quotes expected punctuation (`=`, `"`), which helps, but
/// also values from the file (an over-long integer: a secret written without quotes).
fn without_quoted_words(text: &str) -> String {
    static QUOTED: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r#"`[^`]*`|"[^"]*""#).expect("valid regex"));
    QUOTED
        .replace_all(text, |c: &regex::Captures<'_>| {
            let q = &c[0];
            if q.chars().any(char::is_alphanumeric) {
                "(not shown)".to_string()
            } else {
                q.to_string()
            }
        })
        .into_owned()
}

/// The key being written on line `line` (1-based), as far as it can be told without showing
/// anything that is not a known section or key name: the text of a line may be a secret.
fn key_at(text: &str, line: usize) -> Option<String> {
    let mut section: Option<(String, &[&str])> = None;
    let mut accounts = 0;
    for l in text.lines().take(line.saturating_sub(1)) {
        let t = l.trim();
        if let Some(h) = t.strip_prefix("[[").and_then(|r| r.split_once("]]")) {
            section = (h.0.trim() == "accounts").then(|| {
                accounts += 1;
                (format!("accounts[{}]", accounts - 1), ACCOUNT_KEYS)
            });
        } else if let Some(h) = t.strip_prefix('[').and_then(|r| r.split_once(']')) {
            section = match h.0.trim() {
                "daemon" => Some(("daemon".into(), DAEMON_KEYS)),
                "store" => Some(("store".into(), STORE_KEYS)),
                "erp" => Some(("erp".into(), ERP_KEYS)),
                _ => None,
            };
        }
    }
    let (name, keys) = section?;
    let here = text.lines().nth(line.checked_sub(1)?).unwrap_or("");
    match here.split_once('=') {
        Some((k, _)) if keys.contains(&k.trim()) => Some(format!("{name}.{}", k.trim())),
        _ => Some(name),
    }
}

/// The secret keys given inline in the file (not as `*_file`).
fn secrets_in(table: &toml::Table) -> Vec<String> {
    let mut found = Vec::new();
    let mut scan = |prefix: String, t: &toml::Table| {
        for k in SECRET_KEYS {
            if t.contains_key(*k) {
                found.push(format!("{prefix}.{k}"));
            }
        }
    };
    if let Some(erp) = table.get("erp").and_then(|v| v.as_table()) {
        scan("erp".into(), erp);
    }
    if let Some(accounts) = table.get("accounts").and_then(|v| v.as_array()) {
        for (i, a) in accounts.iter().enumerate() {
            if let Some(a) = a.as_table() {
                scan(format!("accounts[{i}]"), a);
            }
        }
    }
    found
}

/// `PAYSYNC__ACCOUNTS__MAIN__API_KEY=...` sets `api_key` of the account named `main` (names
/// compared ignoring case, `-` and `_` alike). A variable that names no account or no account key
/// is refused: silently ignoring it would run with the file's value.
fn apply_account_env(
    value: &mut serde_json::Value,
    env: &BTreeMap<&String, &String>,
    origins: &mut Vec<(String, String)>,
) -> Result<(), (String, String)> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let form =
        "expected PAYSYNC__ACCOUNTS__<NAME>__<KEY>, e.g. PAYSYNC__ACCOUNTS__MAIN__ACCESS_TOKEN";
    for (var, v) in env {
        let Some(rest) = var.strip_prefix(ACCOUNTS_PREFIX) else {
            continue;
        };
        let Some((name, key)) = rest.strip_prefix("__").and_then(|r| r.rsplit_once("__")) else {
            return Err((var.to_string(), form.into()));
        };
        let key = key.to_ascii_lowercase();
        if name.is_empty() || !ACCOUNT_KEYS.contains(&key.as_str()) {
            return Err((
                var.to_string(),
                format!(
                    "{key:?} is not a key of an [[accounts]] table (keys: {}); {form}",
                    ACCOUNT_KEYS.join(", ")
                ),
            ));
        }
        let accounts = value
            .get_mut("accounts")
            .and_then(|a| a.as_array_mut())
            .map(|a| a.as_mut_slice())
            .unwrap_or_default();
        let names: Vec<String> = accounts
            .iter()
            .filter_map(|a| a.get("name").and_then(|n| n.as_str()))
            .map(|n| format!("{n:?}"))
            .collect();
        let mut matched = false;
        for (i, acc) in accounts.iter_mut().enumerate() {
            let matches = acc
                .get("name")
                .and_then(|n| n.as_str())
                .is_some_and(|n| norm(n) == norm(name));
            if matches && let Some(obj) = acc.as_object_mut() {
                obj.insert(key.clone(), serde_json::Value::String(v.to_string()));
                origins.push((format!("accounts[{i}].{key}"), var.to_string()));
                matched = true;
            }
        }
        if !matched {
            return Err((
                var.to_string(),
                format!(
                    "no account is named {:?} (accounts: {}; names are compared ignoring case, with - and _ alike)",
                    name.to_ascii_lowercase(),
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A deserialization error at a key, worded without the value when the key holds a secret.
fn type_error(
    file: &str,
    value: &serde_json::Value,
    e: serde_path_to_error::Error<serde_json::Error>,
) -> ConfigError {
    use serde_path_to_error::Segment;
    let key = e.path().to_string();
    let last = e.path().iter().next_back().and_then(|s| match s {
        Segment::Map { key } => Some(key.as_str()),
        _ => None,
    });
    let message = if last.is_some_and(|k| SECRET_KEYS.contains(&k)) {
        let mut v = Some(value);
        for s in e.path().iter() {
            v = match s {
                Segment::Map { key } => v.and_then(|v| v.get(key)),
                Segment::Seq { index } => v.and_then(|v| v.get(index)),
                _ => None,
            };
        }
        let kind = match v {
            Some(serde_json::Value::Number(_)) => "a number",
            Some(serde_json::Value::Bool(_)) => "true or false",
            Some(serde_json::Value::Array(_)) => "a list",
            Some(serde_json::Value::Object(_)) => "a table",
            _ => "something else",
        };
        format!("expected the secret as text in quotes (got {kind}; the value is not shown)")
    } else {
        e.inner().to_string()
    };
    ConfigError::Key {
        file: file.to_string(),
        key: if key == "." {
            "(top level)".into()
        } else {
            key
        },
        message,
    }
}

/// serde's "invalid type: string \"x\", expected ..." without the `"x"` (a merge error of
/// config-rs may quote an environment variable's value, which may be a secret).
fn without_values(message: &str) -> String {
    static VALUE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(invalid (?:type|value|length): [a-z ]+?) (?:`[^`]*`|"(?:[^"\\]|\\.)*")"#,
        )
        .expect("valid regex")
    });
    VALUE.replace_all(message, "$1").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_values_are_dropped_from_merge_errors() {
        assert_eq!(
            without_values(r#"invalid type: string "S3cr3t", expected a map for key `erp`"#),
            "invalid type: string, expected a map for key `erp`"
        );
        assert_eq!(
            without_values("invalid type: integer `4739201847`, expected a string"),
            "invalid type: integer, expected a string"
        );
    }

    #[test]
    fn a_syntax_message_keeps_punctuation_but_not_values() {
        assert_eq!(
            without_quoted_words("invalid basic string, expected `\"`"),
            "invalid basic string, expected `\"`"
        );
        assert_eq!(
            without_quoted_words("invalid type: integer `99999999999999999999999` as i128"),
            "invalid type: integer (not shown) as i128"
        );
    }

    #[test]
    fn the_key_of_a_line_is_told_only_from_known_names() {
        let text = "[erp]\nurl = \"x\"\napi_secret = \"abc\n[[accounts]]\nname = \"a\"\nZq8v=\n[[accounts]]\naccess_token = 1\n[other]\nk = 1\n";
        assert_eq!(key_at(text, 3).as_deref(), Some("erp.api_secret"));
        assert_eq!(key_at(text, 6).as_deref(), Some("accounts[0]"));
        assert_eq!(key_at(text, 8).as_deref(), Some("accounts[1].access_token"));
        assert_eq!(key_at(text, 10), None);
    }
}
