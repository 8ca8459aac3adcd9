//! Fixtures shared by paysync's tests, `paysync demo` and the benchmark: a `sync.toml` for a running
//! simulator (Mobbex and Mercado Pago accounts), and the order and operation most tests start from.
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
/// The simulator's Mode of Payment for Mercado Pago, and its account ([`Simulator::start`]).
pub const MP_MODE_OF_PAYMENT: &str = "Mercado Pago";
pub const MP_PAID_TO: &str = "Mercado Pago - MESA";
/// The webhook secret Mercado Pago accounts are rendered with (sign with it:
/// [`Simulator::mp_webhook`]).
pub const MP_WEBHOOK_SECRET: &str = "sim-mp-webhook-secret";

/// How a Mercado Pago account authenticates.
#[derive(Debug, Clone, PartialEq)]
pub enum MpAuth {
    /// `access_token`: a static token.
    AccessToken(String),
    /// `client_id`, `client_secret`, `refresh_token`: OAuth, the refresh token rotating.
    OAuth {
        client_id: String,
        client_secret: String,
        refresh_token: String,
    },
}

impl MpAuth {
    /// The static token `sim` accepts.
    pub fn static_for(sim: &Simulator) -> MpAuth {
        MpAuth::AccessToken(sim.options().mp_access_token)
    }

    /// `sim`'s OAuth client and the refresh token valid now.
    pub fn oauth_for(sim: &Simulator) -> MpAuth {
        let opts = sim.options();
        MpAuth::OAuth {
            client_id: opts.mp_client_id,
            client_secret: opts.mp_client_secret,
            refresh_token: sim.mp_refresh_token(),
        }
    }
}

/// What an account reads, and the keys only that source has.
#[derive(Debug, Clone)]
enum Source {
    Mobbex {
        api_key: String,
        access_token: String,
    },
    MercadoPago(Box<MpKeys>),
}

#[derive(Debug, Clone)]
struct MpKeys {
    meli_api_url: String,
    auth: MpAuth,
    webhook_secret: String,
    paid_to: String,
    /// `order_source`, `order_field`, `fees_account`, `fees_cost_center`, in that order, when set.
    optional: [(&'static str, Option<String>); 4],
    include_test: Option<bool>,
}

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

/// One `[[accounts]]` table (a Mobbex entity, or a Mercado Pago seller).
#[derive(Debug, Clone)]
pub struct AccountConfig {
    name: String,
    api_url: String,
    source: Source,
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
            source: Source::Mobbex {
                api_key: api_key.into(),
                access_token: access_token.into(),
            },
            company: COMPANY.into(),
            mode_of_payment: MODE_OF_PAYMENT.into(),
            lines: Vec::new(),
        }
    }

    /// A Mercado Pago account paying into [`COMPANY`] with [`MP_MODE_OF_PAYMENT`] to
    /// [`MP_PAID_TO`], webhooks signed with [`MP_WEBHOOK_SECRET`].
    pub fn mercadopago(
        name: &str,
        api_url: &str,
        meli_api_url: &str,
        auth: MpAuth,
    ) -> AccountConfig {
        AccountConfig {
            name: name.into(),
            api_url: api_url.into(),
            source: Source::MercadoPago(Box::new(MpKeys {
                meli_api_url: meli_api_url.into(),
                auth,
                webhook_secret: MP_WEBHOOK_SECRET.into(),
                paid_to: MP_PAID_TO.into(),
                optional: [
                    ("order_source", None),
                    ("order_field", None),
                    ("fees_account", None),
                    ("fees_cost_center", None),
                ],
                include_test: None,
            })),
            company: COMPANY.into(),
            mode_of_payment: MP_MODE_OF_PAYMENT.into(),
            lines: Vec::new(),
        }
    }

    /// An account reading `sim`'s Mercado Pago (both bases on its one server) with `auth`
    /// ([`MpAuth::static_for`], [`MpAuth::oauth_for`]).
    pub fn mercadopago_for_simulator(name: &str, sim: &Simulator, auth: MpAuth) -> AccountConfig {
        AccountConfig::mercadopago(name, &sim.mercadopago_url, &sim.mercadopago_url, auth)
    }

    fn mp(&mut self, method: &str) -> &mut MpKeys {
        match &mut self.source {
            Source::MercadoPago(k) => k,
            Source::Mobbex { .. } => {
                panic!("AccountConfig::{method} is for Mercado Pago accounts (this one is Mobbex)")
            }
        }
    }

    fn set_optional(mut self, key: &str, value: &str) -> AccountConfig {
        let keys = self.mp(key);
        if let Some(slot) = keys.optional.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = Some(value.into());
        }
        self
    }

    /// Mercado Pago: another way to authenticate.
    ///
    /// # Panics
    /// On a Mobbex account, as every Mercado Pago setter: the key would mean nothing there.
    pub fn mp_auth(mut self, auth: MpAuth) -> AccountConfig {
        self.mp("mp_auth").auth = auth;
        self
    }

    /// Mercado Pago: `webhook_secret`.
    pub fn webhook_secret(mut self, secret: &str) -> AccountConfig {
        self.mp("webhook_secret").webhook_secret = secret.into();
        self
    }

    /// Mercado Pago: `paid_to`.
    pub fn paid_to(mut self, account: &str) -> AccountConfig {
        self.mp("paid_to").paid_to = account.into();
        self
    }

    /// Mercado Pago: `order_source` (where the order name comes from).
    pub fn order_source(self, source: &str) -> AccountConfig {
        self.set_optional("order_source", source)
    }

    /// Mercado Pago: `order_field`.
    pub fn order_field(self, field: &str) -> AccountConfig {
        self.set_optional("order_field", field)
    }

    /// Mercado Pago: `fees_account` (where the fees the gateway kept are booked).
    pub fn fees_account(self, account: &str) -> AccountConfig {
        self.set_optional("fees_account", account)
    }

    /// Mercado Pago: `fees_cost_center`.
    pub fn fees_cost_center(self, cost_center: &str) -> AccountConfig {
        self.set_optional("fees_cost_center", cost_center)
    }

    /// Mercado Pago: `include_test = true|false` (left out unless set).
    pub fn include_test(mut self, include: bool) -> AccountConfig {
        self.mp("include_test").include_test = Some(include);
        self
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
    /// The simulator's Mercado Pago URL, static token and OAuth client, when built by
    /// [`ConfigBuilder::for_simulator`] (what [`ConfigBuilder::mercadopago_account`] uses).
    sim_mp: Option<(String, MpAuth, MpAuth)>,
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
            sim_mp: None,
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
        .with_sim_mp(sim)
    }

    fn with_sim_mp(mut self, sim: &Simulator) -> ConfigBuilder {
        self.sim_mp = Some((
            sim.mercadopago_url.clone(),
            MpAuth::static_for(sim),
            MpAuth::oauth_for(sim),
        ));
        self
    }

    /// Another `[[accounts]]` table: a Mercado Pago account `name` reading the simulator's Mercado
    /// Pago with its static access token, or with `oauth` its client and refresh token (the one
    /// valid when the builder was made). Customize it with [`ConfigBuilder::account_line`], or
    /// build an [`AccountConfig::mercadopago_for_simulator`] for the other keys.
    ///
    /// # Panics
    /// If the builder was not made by [`ConfigBuilder::for_simulator`] (no simulator to read).
    pub fn mercadopago_account(self, name: &str, oauth: bool) -> ConfigBuilder {
        let (url, static_auth, oauth_auth) = self
            .sim_mp
            .clone()
            .expect("ConfigBuilder::mercadopago_account needs ConfigBuilder::for_simulator");
        let auth = if oauth { oauth_auth } else { static_auth };
        self.account(AccountConfig::mercadopago(name, &url, &url, auth))
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
            match &a.source {
                Source::Mobbex {
                    api_key,
                    access_token,
                } => {
                    push(&kv("source", "mobbex"));
                    push(&kv("api_url", &a.api_url));
                    push(&kv("api_key", api_key));
                    push(&kv("access_token", access_token));
                    push(&kv("company", &a.company));
                    push(&kv("mode_of_payment", &a.mode_of_payment));
                }
                Source::MercadoPago(k) => {
                    push(&kv("source", "mercadopago"));
                    push(&kv("api_url", &a.api_url));
                    push(&kv("meli_api_url", &k.meli_api_url));
                    match &k.auth {
                        MpAuth::AccessToken(t) => push(&kv("access_token", t)),
                        MpAuth::OAuth {
                            client_id,
                            client_secret,
                            refresh_token,
                        } => {
                            push(&kv("client_id", client_id));
                            push(&kv("client_secret", client_secret));
                            push(&kv("refresh_token", refresh_token));
                        }
                    }
                    push(&kv("webhook_secret", &k.webhook_secret));
                    push(&kv("company", &a.company));
                    push(&kv("mode_of_payment", &a.mode_of_payment));
                    push(&kv("paid_to", &k.paid_to));
                    for (key, value) in &k.optional {
                        if let Some(v) = value {
                            push(&kv(key, v));
                        }
                    }
                    if let Some(include) = k.include_test {
                        push(&format!("include_test = {include}"));
                    }
                }
            }
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
mod tests;
