//! How the simulated ERPNext names a Payment Entry, as Frappe does (`frappe/model/naming.py`,
//! recordings 32b–32d, 32l, 32m).
//!
//! The create's `naming_series` (the DocType's default [`DEFAULT_NAMING_SERIES`] when it sends
//! none) gets `.#####` appended, is checked for its characters (32c), and is split on dots: `YYYY`,
//! `YY`, `MM` and `DD` become the date, the first part made of `#` becomes the counter of the
//! prefix built so far (zero-padded to their count), every other part stays as it is (`ACC-PAY-MBX`
//! → `ACC-PAY-MBX00001`, 32d). Each prefix (`ACC-PAY-2026-`, `ACC-PAY-MBX-2026-`) is one row of
//! `tabSeries`: its own counter from 1, listed among the DocType's options or not (32b), and its
//! own row lock (`faults::contention`). Frappe's date is the server's today; the simulator's is
//! the entry's posting date, so tests name entries in the year they post them.
//!
//! Not simulated: parts naming a document field (`{field}`, or a bare fieldname), `FY`, `JJJ`,
//! `WW`, `timestamp`.

// Returns `Result<_, Response>` to short-circuit with an HTTP answer, as the handlers do.
#![allow(clippy::result_large_err)]

use axum::http::StatusCode;
use axum::response::Response;
use jiff::civil::Date;
use serde_json::Value;

use super::{frappe_error_in, python_error};
use crate::State;

/// The Payment Entry DocType's default series (recording 32a).
pub const DEFAULT_NAMING_SERIES: &str = "ACC-PAY-.YYYY.-";

/// Where a create will be named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Naming {
    /// The series as the create sent it (or the default): what the entry's `naming_series` says.
    pub series: String,
    /// The counter's key: the name's text before the number (`ACC-PAY-2026-`).
    pub prefix: String,
    digits: usize,
    /// Parts after the number (a series with its own `#`s followed by more parts).
    suffix: String,
}

impl Naming {
    /// The naming of a create with body `b` posted on `date`, or the answer Frappe gives when it
    /// cannot name it (32c).
    pub fn of(b: &Value, date: Date) -> Result<Naming, Response> {
        let series = match b.get("naming_series") {
            // `if not doc.naming_series`: the DocType's default (32l).
            None | Some(Value::Null) => DEFAULT_NAMING_SERIES.to_string(),
            Some(Value::String(s)) if s.is_empty() => DEFAULT_NAMING_SERIES.to_string(),
            Some(Value::Bool(false)) => DEFAULT_NAMING_SERIES.to_string(),
            Some(Value::Array(a)) if a.is_empty() => DEFAULT_NAMING_SERIES.to_string(),
            Some(Value::Object(o)) if o.is_empty() => DEFAULT_NAMING_SERIES.to_string(),
            Some(Value::Number(n)) if n.as_f64() == Some(0.0) => DEFAULT_NAMING_SERIES.to_string(),
            Some(Value::String(s)) => s.clone(),
            // `doc.naming_series + ".#####"` on what is not a string (Python's own error).
            Some(other) => return Err(not_a_string(other)),
        };
        let full = format!("{series}.#####");
        if !full.chars().all(allowed) {
            return Err(frappe_error_in(
                StatusCode::EXPECTATION_FAILED,
                "frappe.model.naming",
                "InvalidNamingSeriesError",
                Some(&format!(
                    "Special Characters except '-', '#', '.', '/', '{{' and '}}' not allowed in naming series <strong>{full}</strong>"
                )),
                false,
            ));
        }
        let mut prefix = String::new();
        let mut suffix = String::new();
        let mut digits = None;
        for part in full.split('.').filter(|p| !p.is_empty()) {
            let text = match part {
                p if p.starts_with('#') => {
                    if digits.is_none() {
                        digits = Some(p.len());
                    }
                    continue;
                }
                "YYYY" => format!("{:04}", date.year()),
                "YY" => format!("{:02}", date.year() % 100),
                "MM" => format!("{:02}", date.month()),
                "DD" => format!("{:02}", date.day()),
                p => p.to_string(),
            };
            match digits {
                None => prefix.push_str(&text),
                Some(_) => suffix.push_str(&text),
            }
        }
        Ok(Naming {
            series,
            prefix,
            // `.#####` was appended: there is always a number part.
            digits: digits.unwrap_or(5),
            suffix,
        })
    }

    /// The name the next entry of this series gets, and the number it uses up once committed
    /// (a refused or rolled-back create uses up none: recordings 29n, 31g, U2b).
    pub fn next(&self, s: &State) -> (String, u64) {
        let n = s.series_counters.get(&self.prefix).copied().unwrap_or(0) + 1;
        let name = format!(
            "{}{:0width$}{}",
            self.prefix,
            n,
            self.suffix,
            width = self.digits
        );
        (name, n)
    }
}

/// Frappe's `NAMING_SERIES_PATTERN`, `^[\w\- \/.#{}]+$`.
fn allowed(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || "- /.#{}".contains(c)
}

/// Python's `TypeError` for `value + ".#####"` (a 500 without `_server_messages`).
fn not_a_string(value: &Value) -> Response {
    let exception = match value {
        Value::Array(_) => "TypeError: can only concatenate list (not \"str\") to list".to_string(),
        other => {
            let ty = match other {
                Value::Bool(_) => "bool",
                Value::Number(n) if n.is_f64() => "float",
                Value::Number(_) => "int",
                _ => "dict",
            };
            format!("TypeError: unsupported operand type(s) for +: '{ty}' and 'str'")
        }
    };
    python_error(
        &exception,
        "File \"apps/frappe/frappe/model/naming.py\", line 246, in set_name_by_naming_series",
    )
}

#[cfg(test)]
mod tests;
