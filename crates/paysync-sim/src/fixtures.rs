//! Fixtures shared by paysync's tests, `paysync demo` and the benchmark: a `sync.toml` for a running
//! simulator, and the order and operation most tests start from.
//!
//! [`ConfigBuilder`] renders paysync's configuration file as **text** (the format README.md
//! documents). It does not import paysync, so the simulator stays independent of the code it
//! judges; a key paysync stopped understanding shows up as paysync refusing the file at start, in
//! every test that writes one (`tests/it/fixtures.rs` checks the whole builder once).
//!
//! Lines are rendered `key = "value"`, one per line, each table header on its own line
//! (`[daemon]\n`), so tests that edit the written file with a text replacement keep working.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rust_decimal::Decimal;

use crate::{SimOperation, SimSalesOrder, Simulator};

/// The time zone every fixture configuration uses (the one of the sample data).
pub const TIMEZONE: &str = "America/Argentina/Buenos_Aires";
/// The simulator's default company ([`Simulator::start`]).
pub const COMPANY: &str = "Mi Empresa SA";
/// The simulator's default Mode of Payment.
pub const MODE_OF_PAYMENT: &str = "Mobbex";

/// How the configuration gives ERPNext's API key and secret.
#[derive(Debug, Clone)]
pub enum ErpAuth {
    /// `api_key` / `api_secret` in the file.
    Inline { key: String, secret: String },
    /// `api_key_file` / `api_secret_file`: paths of files holding them.
    Files {
        key_file: PathBuf,
        secret_file: PathBuf,
    },
}

/// One `[[accounts]]` table (a Mobbex entity).
#[derive(Debug, Clone)]
pub struct AccountConfig {
    name: String,
    api_url: String,
    api_key: String,
    access_token: String,
    company: String,
    mode_of_payment: String,
    lines: Vec<String>,
}

impl AccountConfig {
    /// A Mobbex account paying into [`COMPANY`] with [`MODE_OF_PAYMENT`].
    pub fn new(name: &str, api_url: &str, api_key: &str, access_token: &str) -> AccountConfig {
        AccountConfig {
            name: name.into(),
            api_url: api_url.into(),
            api_key: api_key.into(),
            access_token: access_token.into(),
            company: COMPANY.into(),
            mode_of_payment: MODE_OF_PAYMENT.into(),
            lines: Vec::new(),
        }
    }

    /// An account reading `sim`'s Mobbex with the credentials it accepts.
    pub fn for_simulator(name: &str, sim: &Simulator) -> AccountConfig {
        let opts = sim.options();
        AccountConfig::new(
            name,
            &sim.mobbex_url,
            &opts.mobbex_api_key,
            &opts.mobbex_access_token,
        )
    }

    pub fn company(mut self, company: &str) -> AccountConfig {
        self.company = company.into();
        self
    }

    pub fn mode_of_payment(mut self, mode: &str) -> AccountConfig {
        self.mode_of_payment = mode.into();
        self
    }

    /// A raw TOML line added to the table, e.g. `webhook_token = "..."`.
    pub fn line(mut self, toml: &str) -> AccountConfig {
        self.lines.push(toml.into());
        self
    }
}

/// A paysync `sync.toml`, rendered as text. Extra lines are raw TOML added to their table.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    comment: Option<String>,
    timezone: String,
    db: PathBuf,
    erp_url: String,
    erp_auth: ErpAuth,
    daemon: Vec<String>,
    store: Vec<String>,
    /// Another ledger than the SQLite file at `db` (e.g. `postgres://...`).
    store_url: Option<String>,
    erp: Vec<String>,
    accounts: Vec<AccountConfig>,
}

impl ConfigBuilder {
    /// A SQLite ledger at `db` and ERPNext at `erp_url`; no accounts yet.
    pub fn new(db: impl Into<PathBuf>, erp_url: &str, erp_auth: ErpAuth) -> ConfigBuilder {
        ConfigBuilder {
            comment: None,
            timezone: TIMEZONE.into(),
            db: db.into(),
            erp_url: erp_url.into(),
            erp_auth,
            daemon: Vec::new(),
            store: Vec::new(),
            store_url: None,
            erp: Vec::new(),
            accounts: Vec::new(),
        }
    }

    /// Both APIs of `sim` with the credentials it accepts: its ERPNext, and one account `main`
    /// reading its Mobbex ([`AccountConfig::for_simulator`]).
    pub fn for_simulator(sim: &Simulator, db: impl Into<PathBuf>) -> ConfigBuilder {
        let opts = sim.options();
        ConfigBuilder::new(
            db,
            &sim.erpnext_url,
            ErpAuth::Inline {
                key: opts.erp_api_key,
                secret: opts.erp_api_secret,
            },
        )
        .account(AccountConfig::for_simulator("main", sim))
    }

    /// A `#` comment as the file's first line.
    pub fn comment(mut self, text: &str) -> ConfigBuilder {
        self.comment = Some(text.into());
        self
    }

    /// ERPNext at another address (e.g. a proxy in front of it), same credentials.
    pub fn erp_url(mut self, url: &str) -> ConfigBuilder {
        self.erp_url = url.into();
        self
    }

    pub fn erp_auth(mut self, auth: ErpAuth) -> ConfigBuilder {
        self.erp_auth = auth;
        self
    }

    /// A raw TOML line in `[daemon]`, e.g. `retry_budget = "2s"`.
    pub fn daemon(mut self, toml: &str) -> ConfigBuilder {
        self.daemon.push(toml.into());
        self
    }

    /// The ledger at `url` instead of the SQLite file given to [`ConfigBuilder::new`].
    pub fn store_url(mut self, url: &str) -> ConfigBuilder {
        self.store_url = Some(url.into());
        self
    }

    /// A raw TOML line in `[store]`.
    pub fn store(mut self, toml: &str) -> ConfigBuilder {
        self.store.push(toml.into());
        self
    }

    /// A raw TOML line in `[erp]`, e.g. `max_in_flight = 4`.
    pub fn erp(mut self, toml: &str) -> ConfigBuilder {
        self.erp.push(toml.into());
        self
    }

    /// Another `[[accounts]]` table, after the ones already there.
    pub fn account(mut self, account: AccountConfig) -> ConfigBuilder {
        self.accounts.push(account);
        self
    }

    /// A raw TOML line in the last `[[accounts]]` table.
    ///
    /// # Panics
    /// With no account yet: the line would land in `[erp]` and silently mean something else.
    pub fn account_line(mut self, toml: &str) -> ConfigBuilder {
        let last = self
            .accounts
            .pop()
            .expect("ConfigBuilder::account_line needs an account first");
        self.accounts.push(last.line(toml));
        self
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut push = |line: &str| {
            // Blank extras (a test passing "" for "nothing to add") are left out.
            if !line.trim().is_empty() {
                out.push_str(line);
                out.push('\n');
            }
        };
        if let Some(c) = &self.comment {
            push(&format!("# {c}"));
        }
        push("[daemon]");
        push(&kv("timezone", &self.timezone));
        self.daemon.iter().for_each(|l| push(l));
        push("[store]");
        let url = match &self.store_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.db.display()),
        };
        push(&kv("url", &url));
        self.store.iter().for_each(|l| push(l));
        push("[erp]");
        push(&kv("kind", "erpnext"));
        push(&kv("url", &self.erp_url));
        match &self.erp_auth {
            ErpAuth::Inline { key, secret } => {
                push(&kv("api_key", key));
                push(&kv("api_secret", secret));
            }
            ErpAuth::Files {
                key_file,
                secret_file,
            } => {
                push(&kv("api_key_file", &key_file.display().to_string()));
                push(&kv("api_secret_file", &secret_file.display().to_string()));
            }
        }
        self.erp.iter().for_each(|l| push(l));
        for a in &self.accounts {
            push("[[accounts]]");
            push(&kv("name", &a.name));
            push(&kv("source", "mobbex"));
            push(&kv("api_url", &a.api_url));
            push(&kv("api_key", &a.api_key));
            push(&kv("access_token", &a.access_token));
            push(&kv("company", &a.company));
            push(&kv("mode_of_payment", &a.mode_of_payment));
            a.lines.iter().for_each(|l| push(l));
        }
        out
    }

    /// Write the text to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.render())
    }
}

/// `key = "value"` with the value as a TOML basic string.
fn kv(key: &str, value: &str) -> String {
    format!("{key} = {}", toml_string(value))
}

/// A TOML basic string: quotes, backslashes and control characters escaped, so a path or a
/// credential can never end the string early and inject keys.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A submitted, unpaid sales order of [`COMPANY`] in ARS.
pub fn order(name: &str, customer: &str, total: &str) -> SimSalesOrder {
    let total: Decimal = total.parse().expect("decimal");
    SimSalesOrder {
        name: name.into(),
        customer: customer.into(),
        company: COMPANY.into(),
        currency: "ARS".into(),
        grand_total: total,
        rounded_total: Some(total),
        advance_paid: Decimal::ZERO,
        docstatus: 1,
        status: "To Deliver and Bill".into(),
        per_billed: Decimal::ZERO,
        transaction_date: jiff::civil::date(2026, 10, 1),
    }
}

/// A paid (200) ARS operation of `total` for `order`, created (and updated) at `created`.
pub fn paid_op(uid: &str, order: &str, total: i64, created: Timestamp) -> SimOperation {
    SimOperation {
        uid: uid.into(),
        reference: order.into(),
        status: 200,
        total: Decimal::from(total),
        currency: "ARS".into(),
        created,
        updated: created,
        description: "Compra".into(),
        payer_name: "Juan".into(),
        parent_uid: None,
        operation_type: "payment.v2".into(),
        entity_charges: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> ConfigBuilder {
        ConfigBuilder::new(
            "/tmp/x/ledger.db",
            "http://127.0.0.1:1",
            ErpAuth::Inline {
                key: "k".into(),
                secret: "s".into(),
            },
        )
    }

    #[test]
    fn each_extra_line_lands_in_its_own_table() {
        let text = builder()
            .daemon("retry_budget = \"2s\"")
            .store("")
            .erp("max_in_flight = 4")
            .account(AccountConfig::new("a", "http://127.0.0.1:2", "ak", "at"))
            .account(AccountConfig::new("b", "http://127.0.0.1:3", "bk", "bt").company("Otra SA"))
            .account_line("order_pattern = '^(?P<order>SAL-ORD-\\d{4}-\\d+)'")
            .render();
        let tables: Vec<&str> = text.split_inclusive('\n').collect();
        let section = |header: &str, n: usize| -> Vec<&str> {
            let start = tables
                .iter()
                .enumerate()
                .filter(|(_, l)| l.trim_end() == header)
                .nth(n)
                .unwrap_or_else(|| panic!("no {header} #{n} in\n{text}"))
                .0;
            tables[start + 1..]
                .iter()
                .take_while(|l| !l.starts_with('['))
                .map(|l| l.trim_end())
                .collect()
        };
        assert!(section("[daemon]", 0).contains(&"retry_budget = \"2s\""));
        assert!(section("[erp]", 0).contains(&"max_in_flight = 4"));
        assert_eq!(
            section("[store]", 0),
            ["url = \"sqlite:///tmp/x/ledger.db\""]
        );
        assert!(
            !section("[[accounts]]", 0)
                .iter()
                .any(|l| l.starts_with("order_pattern"))
        );
        let b = section("[[accounts]]", 1);
        assert!(
            b.contains(&"order_pattern = '^(?P<order>SAL-ORD-\\d{4}-\\d+)'"),
            "{b:?}"
        );
        assert!(b.contains(&"company = \"Otra SA\""), "{b:?}");
        assert!(text.starts_with("[daemon]\ntimezone = \"America/Argentina/Buenos_Aires\"\n"));
    }

    #[test]
    fn a_value_cannot_end_its_string_and_add_keys() {
        let text = builder().erp_url("http://x/\"\nkind = \"other\\").render();
        assert!(
            text.contains("url = \"http://x/\\\"\\nkind = \\\"other\\\\\"\n"),
            "{text}"
        );
        assert_eq!(text.matches("\nkind = ").count(), 1, "{text}");
    }

    #[test]
    #[should_panic(expected = "needs an account first")]
    fn an_account_line_without_an_account_is_refused() {
        let _ = builder().account_line("webhook_token = \"t\"");
    }

    #[tokio::test]
    async fn for_simulator_names_its_addresses_and_the_credentials_it_accepts() {
        let sim = Simulator::start(crate::SimOptions {
            erp_api_secret: "sec-e".into(),
            mobbex_access_token: "tok-m".into(),
            ..crate::SimOptions::default()
        })
        .await
        .unwrap();
        let text = ConfigBuilder::for_simulator(&sim, "/l.db").render();
        assert!(
            text.contains(&format!("url = \"{}\"\n", sim.erpnext_url)),
            "{text}"
        );
        assert!(
            text.contains(&format!("api_url = \"{}\"\n", sim.mobbex_url)),
            "{text}"
        );
        assert!(text.contains("api_secret = \"sec-e\"\n"), "{text}");
        assert!(text.contains("access_token = \"tok-m\"\n"), "{text}");
        assert!(text.contains("name = \"main\"\n"), "{text}");
    }
}
