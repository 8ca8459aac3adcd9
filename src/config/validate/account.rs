//! One `[[accounts]]` table checked into [`AccountSettings`]: its source, the credentials that
//! source takes (and only those), how its payments find their sales order, and its fee account.
//!
//! Keys of the other source are refused by name rather than ignored: a `client_secret` on a
//! Mobbex account, or an `api_key` on a Mercado Pago one, is a configuration the operator did not
//! mean, and silently dropping it would leave them wondering why it has no effect.

use std::path::Path;

use regex::Regex;
use secrecy::ExposeSecret;
use url::Url;

use super::super::raw::RawAccount;
use super::super::secrets::{SecretKey, SentAs};
use super::super::{
    AccountSettings, ConfigError, FeeDeduction, MercadoPagoCredentials, MercadoPagoToken,
    OAuthKeys, OrderSource, SourceCredentials,
};
use super::{Check, check_cron, header_secret, parse_http_url};
use crate::source::SourceKind;

/// `[[accounts]]`: at least one; each checked in order, against the ones before it.
pub(super) fn validate_accounts(
    c: &Check<'_>,
    raw: Vec<RawAccount>,
    creds_dir: Option<&Path>,
) -> Result<Vec<AccountSettings>, ConfigError> {
    if raw.is_empty() {
        return Err(c.bad(
            "accounts",
            "expected at least one [[accounts]] table".into(),
        ));
    }
    let mut accounts: Vec<AccountSettings> = Vec::new();
    for (i, a) in raw.into_iter().enumerate() {
        let account = validate_account(c, i, a, &accounts, creds_dir)?;
        accounts.push(account);
    }
    Ok(accounts)
}

/// `accounts[i].key`, the name every message of an account's key carries.
fn account_key(i: usize, key: &str) -> String {
    format!("accounts[{i}].{key}")
}

/// One `[[accounts]]` table; `earlier` are the accounts before it (for the twin checks).
fn validate_account(
    c: &Check<'_>,
    i: usize,
    mut a: RawAccount,
    earlier: &[AccountSettings],
    creds_dir: Option<&Path>,
) -> Result<AccountSettings, ConfigError> {
    let k = |key: &str| account_key(i, key);
    check_account_name(c, i, &a.name, earlier)?;
    let Some(source) = SourceKind::parse(a.source.trim()) else {
        let known: Vec<String> = SourceKind::ALL
            .iter()
            .map(|s| format!("{:?}", s.as_str()))
            .collect();
        return Err(c.bad(
            &k("source"),
            format!("expected one of {} (got {:?})", known.join(", "), a.source),
        ));
    };
    refuse_other_sources_keys(c, i, source, &a)?;
    let api_url = parse_http_url(
        a.api_url.as_deref().unwrap_or(source.default_api_url()),
        "the gateway is reached with the account's own credentials",
    )
    .map_err(|m| c.bad(&k("api_url"), m))?;
    for (key, v) in [
        ("company", &a.company),
        ("mode_of_payment", &a.mode_of_payment),
    ] {
        if v.trim().is_empty() {
            return Err(c.bad(&k(key), "expected a non-empty name".into()));
        }
    }
    let order_pattern = parse_order_pattern(c, i, a.order_pattern.as_deref())?;
    let order_source = parse_order_source(c, i, source, a.order_source.as_deref())?;
    let order_field = parse_order_field(c, i, a.order_field.as_deref())?;
    let naming_series = check_naming_series(a.naming_series.take().unwrap_or_default())
        .map_err(|m| c.bad(&k("naming_series"), m))?;
    if let Some(s) = &a.schedule {
        check_cron(&k("schedule"), s).map_err(|m| c.bad(&k("schedule"), m))?;
    }
    let fees = parse_fees(c, i, a.fees_account.take(), a.fees_cost_center.take())?;
    let credentials = match source {
        SourceKind::Mobbex => mobbex_credentials(c, i, &mut a, creds_dir)?,
        SourceKind::MercadoPago => SourceCredentials::MercadoPago(Box::new(
            mercadopago_credentials(c, i, &mut a, &api_url, creds_dir)?,
        )),
    };
    check_credentials_twin(c, i, &a.name, (&api_url, &credentials), earlier)?;
    let webhook_token = c.secret(
        SecretKey {
            key: &k("webhook_token"),
            inline: a.webhook_token.take(),
            file: a.webhook_token_file.take(),
            required: false,
            sent_as: SentAs::UrlToken,
        },
        creds_dir,
    )?;
    Ok(AccountSettings {
        source,
        credentials,
        webhook_token,
        name: a.name,
        api_url,
        company: a.company,
        mode_of_payment: a.mode_of_payment,
        paid_to: a.paid_to.filter(|p| !p.trim().is_empty()),
        order_pattern,
        order_source,
        order_field,
        include_test: a.include_test.unwrap_or(false),
        reverse_refunds: a.reverse_refunds.unwrap_or(false),
        schedule: a.schedule,
        naming_series,
        fees,
    })
}

/// The keys only the other source reads, given on this one.
fn refuse_other_sources_keys(
    c: &Check<'_>,
    i: usize,
    source: SourceKind,
    a: &RawAccount,
) -> Result<(), ConfigError> {
    let mobbex_only = [
        ("api_key", a.api_key.is_some()),
        ("api_key_file", a.api_key_file.is_some()),
    ];
    let mercadopago_only = [
        ("client_id", a.client_id.is_some()),
        ("client_secret", a.client_secret.is_some()),
        ("client_secret_file", a.client_secret_file.is_some()),
        ("refresh_token", a.refresh_token.is_some()),
        ("refresh_token_file", a.refresh_token_file.is_some()),
        ("token_url", a.token_url.is_some()),
        ("webhook_secret", a.webhook_secret.is_some()),
        ("webhook_secret_file", a.webhook_secret_file.is_some()),
        ("meli_api_url", a.meli_api_url.is_some()),
    ];
    let (foreign, owner): (&[(&str, bool)], &str) = match source {
        SourceKind::Mobbex => (&mercadopago_only, "mercadopago"),
        SourceKind::MercadoPago => (&mobbex_only, "mobbex"),
    };
    match foreign.iter().find(|(_, given)| *given) {
        Some((key, _)) => Err(c.bad(
            &account_key(i, key),
            format!(
                "is a key of source = \"{owner}\" accounts; this account has source = \"{}\"",
                source.as_str()
            ),
        )),
        None => Ok(()),
    }
}

fn mobbex_credentials(
    c: &Check<'_>,
    i: usize,
    a: &mut RawAccount,
    creds_dir: Option<&Path>,
) -> Result<SourceCredentials, ConfigError> {
    let k = |key: &str| account_key(i, key);
    let api_key = c
        .secret(
            header_secret(&k("api_key"), a.api_key.take(), a.api_key_file.take()),
            creds_dir,
        )?
        .expect("required");
    let access_token = c
        .secret(
            header_secret(
                &k("access_token"),
                a.access_token.take(),
                a.access_token_file.take(),
            ),
            creds_dir,
        )?
        .expect("required");
    Ok(SourceCredentials::Mobbex {
        api_key,
        access_token,
    })
}

/// `access_token`, or `client_id` + `client_secret` + `refresh_token` (never both ways: which
/// token would be used would depend on an order the operator cannot see).
fn mercadopago_credentials(
    c: &Check<'_>,
    i: usize,
    a: &mut RawAccount,
    api_url: &Url,
    creds_dir: Option<&Path>,
) -> Result<MercadoPagoCredentials, ConfigError> {
    let k = |key: &str| account_key(i, key);
    let optional = |key: &str, inline: Option<String>, file: Option<String>, sent_as| {
        c.secret(
            SecretKey {
                key: &k(key),
                inline,
                file,
                required: false,
                sent_as,
            },
            creds_dir,
        )
    };
    let access_token = optional(
        "access_token",
        a.access_token.take(),
        a.access_token_file.take(),
        SentAs::Header,
    )?;
    let client_secret = optional(
        "client_secret",
        a.client_secret.take(),
        a.client_secret_file.take(),
        SentAs::Header,
    )?;
    let refresh_token = optional(
        "refresh_token",
        a.refresh_token.take(),
        a.refresh_token_file.take(),
        SentAs::Header,
    )?;
    let client_id = a.client_id.take().filter(|s| !s.trim().is_empty());
    let oauth_given = client_id.is_some() || client_secret.is_some() || refresh_token.is_some();
    let token = match (access_token, oauth_given) {
        (Some(_), true) => {
            return Err(c.bad(
                &k("access_token"),
                "give either access_token (the seller's own token) or client_id, client_secret and refresh_token (OAuth), not both".into(),
            ));
        }
        (Some(t), false) => {
            if a.token_url.is_some() {
                return Err(c.bad(
                    &k("token_url"),
                    "is used only with OAuth keys (client_id, client_secret, refresh_token)".into(),
                ));
            }
            MercadoPagoToken::Static(t)
        }
        (None, true) => {
            let missing = [
                ("client_id", client_id.is_none()),
                ("client_secret", client_secret.is_none()),
                ("refresh_token", refresh_token.is_none()),
            ];
            if let Some((key, _)) = missing.iter().find(|(_, m)| *m) {
                return Err(c.bad(
                    &k(key),
                    "missing: OAuth needs client_id, client_secret and refresh_token together"
                        .into(),
                ));
            }
            let client_id = client_id.expect("checked");
            if !client_id.chars().all(|ch| ch.is_ascii_alphanumeric()) {
                return Err(c.bad(
                    &k("client_id"),
                    format!(
                        "expected the application's id, letters and digits (got {client_id:?})"
                    ),
                ));
            }
            let default_token_url =
                format!("{}/oauth/token", api_url.as_str().trim_end_matches('/'));
            let token_url = parse_http_url(
                a.token_url.as_deref().unwrap_or(&default_token_url),
                "the client id and secret go in the request body",
            )
            .map_err(|m| c.bad(&k("token_url"), m))?;
            MercadoPagoToken::OAuth(OAuthKeys {
                client_id,
                client_secret: client_secret.expect("checked"),
                refresh_token: refresh_token.expect("checked"),
                token_url,
            })
        }
        (None, false) => {
            return Err(c.bad(
                &k("access_token"),
                "missing: a Mercado Pago account needs access_token (the seller's own token) or client_id, client_secret and refresh_token (OAuth)".into(),
            ));
        }
    };
    let webhook_secret = optional(
        "webhook_secret",
        a.webhook_secret.take(),
        a.webhook_secret_file.take(),
        SentAs::Header,
    )?;
    let meli_api_url = parse_http_url(
        a.meli_api_url
            .as_deref()
            .unwrap_or("https://api.mercadolibre.com"),
        "MercadoLibre is reached with the account's access token",
    )
    .map_err(|m| c.bad(&k("meli_api_url"), m))?;
    Ok(MercadoPagoCredentials {
        token,
        webhook_secret,
        meli_api_url,
    })
}

/// `order_source`: `"external_reference"` (default) or `"order_id"` (Mercado Pago only: Mobbex
/// operations name no marketplace order).
fn parse_order_source(
    c: &Check<'_>,
    i: usize,
    source: SourceKind,
    raw: Option<&str>,
) -> Result<OrderSource, ConfigError> {
    let key = account_key(i, "order_source");
    match raw.map(str::trim) {
        None | Some("external_reference") => Ok(OrderSource::ExternalReference),
        Some("order_id") if source == SourceKind::MercadoPago => Ok(OrderSource::OrderId),
        Some("order_id") => Err(c.bad(
            &key,
            format!(
                "\"order_id\" is the MercadoLibre order of a Mercado Pago payment; {} operations have none: use \"external_reference\"",
                source.api_name()
            ),
        )),
        Some(other) => Err(c.bad(
            &key,
            format!("expected \"external_reference\" or \"order_id\" (got {other:?})"),
        )),
    }
}

/// `order_field`: a Sales Order field name as Frappe writes them (lower case, digits, `_`;
/// custom fields start with `custom_` in v15 or with any letter before it). Default `name`.
fn parse_order_field(c: &Check<'_>, i: usize, raw: Option<&str>) -> Result<String, ConfigError> {
    let Some(f) = raw.map(str::trim) else {
        return Ok("name".into());
    };
    let ok = !f.is_empty()
        && f.len() <= 140
        && f.starts_with(|ch: char| ch.is_ascii_lowercase())
        && f.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
    if ok {
        Ok(f.to_string())
    } else {
        Err(c.bad(
            &account_key(i, "order_field"),
            format!(
                "expected a Sales Order field name of lower-case letters, digits and _, like \"name\", \"po_no\" or \"custom_ml_order\" (got {f:?})"
            ),
        ))
    }
}

/// `fees_account` with `fees_cost_center` (ERPNext refuses a deduction row without one:
/// recording 29n), or neither.
fn parse_fees(
    c: &Check<'_>,
    i: usize,
    account: Option<String>,
    cost_center: Option<String>,
) -> Result<Option<FeeDeduction>, ConfigError> {
    let account = account.filter(|s| !s.trim().is_empty());
    let cost_center = cost_center.filter(|s| !s.trim().is_empty());
    match (account, cost_center) {
        (None, None) => Ok(None),
        (Some(account), Some(cost_center)) => Ok(Some(FeeDeduction {
            account: account.trim().to_string(),
            cost_center: cost_center.trim().to_string(),
        })),
        (Some(_), None) => Err(c.bad(
            &account_key(i, "fees_cost_center"),
            "missing: ERPNext books a deduction only with a cost center (the company's main one is usually \"Main - <abbr>\")".into(),
        )),
        (None, Some(_)) => Err(c.bad(
            &account_key(i, "fees_account"),
            "missing: fees_cost_center is given, but not the account the fees are booked to".into(),
        )),
    }
}

/// The most naming series one account spreads over: beyond the server's cores more series only
/// add deadlocks (recording 33).
pub const MAX_NAMING_SERIES: usize = 8;

/// `naming_series`: up to [`MAX_NAMING_SERIES`] distinct series in the characters Frappe takes
/// (recording 32c; `frappe/model/naming.py` allows word characters, `-`, `.`, `#`, `/`, `{`, `}`
/// and spaces — spaces are refused here, a trailing one would silently make another series).
fn check_naming_series(list: Vec<String>) -> Result<Vec<String>, String> {
    if list.len() > MAX_NAMING_SERIES {
        return Err(format!(
            "expected at most {MAX_NAMING_SERIES} series (got {})",
            list.len()
        ));
    }
    let mut seen = Vec::new();
    for s in list {
        let allowed = |ch: char| ch.is_ascii_alphanumeric() || "-_.#/{}".contains(ch);
        if s.is_empty() || !s.chars().all(allowed) {
            return Err(format!(
                "expected series of letters, digits and - _ . # / {{ }}, like \"ACC-PAY-MBX-.YYYY.-\" (got {s:?})"
            ));
        }
        if seen.contains(&s) {
            return Err(format!("{s:?} is listed twice"));
        }
        seen.push(s);
    }
    Ok(seen)
}

/// An account's name: letters, digits, - and _, and not the name of an earlier account.
fn check_account_name(
    c: &Check<'_>,
    i: usize,
    name: &str,
    earlier: &[AccountSettings],
) -> Result<(), ConfigError> {
    let key = account_key(i, "name");
    if name.trim().is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(c.bad(
            &key,
            format!("expected a name of letters, digits, - and _ (got {name:?})"),
        ));
    }
    // Environment overrides (PAYSYNC__ACCOUNTS__MAIN__...) compare names ignoring case, with
    // - and _ alike; `main` and `MAIN` would be one account there.
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    if let Some(twin) = earlier.iter().find(|x| norm(&x.name) == norm(name)) {
        let problem = if twin.name == name {
            format!("duplicate account name {name:?}")
        } else {
            format!(
                "account name {:?} collides with {:?}: names are compared ignoring case, with - and _ alike (in PAYSYNC__ACCOUNTS__<NAME>__ variables); rename one",
                name, twin.name
            )
        };
        return Err(c.bad(&key, problem));
    }
    Ok(())
}

/// `order_pattern`, when given: a valid regex with a named group `order`.
fn parse_order_pattern(
    c: &Check<'_>,
    i: usize,
    pattern: Option<&str>,
) -> Result<Option<Regex>, ConfigError> {
    let Some(p) = pattern else {
        return Ok(None);
    };
    let key = account_key(i, "order_pattern");
    let re = Regex::new(p).map_err(|e| c.bad(&key, format!("invalid regex: {e}")))?;
    if !re.capture_names().any(|n| n == Some("order")) {
        return Err(c.bad(
            &key,
            "expected a named group (?P<order>...) that captures the order name".into(),
        ));
    }
    Ok(Some(re))
}

/// What names the merchant account behind the credentials: the same entity configured twice (a
/// copy-paste, or two names for one entity) would book every payment twice.
fn identity(credentials: &SourceCredentials) -> Vec<&str> {
    match credentials {
        SourceCredentials::Mobbex {
            api_key,
            access_token,
        } => vec![api_key.expose_secret(), access_token.expose_secret()],
        SourceCredentials::MercadoPago(mp) => match &mp.token {
            MercadoPagoToken::Static(t) => vec![t.expose_secret()],
            // One refresh token is one seller's authorization of one application.
            MercadoPagoToken::OAuth(o) => vec![&o.client_id, o.refresh_token.expose_secret()],
        },
    }
}

fn check_credentials_twin(
    c: &Check<'_>,
    i: usize,
    name: &str,
    (api_url, credentials): (&Url, &SourceCredentials),
    earlier: &[AccountSettings],
) -> Result<(), ConfigError> {
    let mine = identity(credentials);
    let same = |x: &AccountSettings| x.api_url == *api_url && identity(&x.credentials) == mine;
    if let Some(twin) = earlier.iter().find(|x| same(x)) {
        let key = match credentials {
            SourceCredentials::MercadoPago(mp)
                if matches!(mp.token, MercadoPagoToken::OAuth(_)) =>
            {
                "refresh_token"
            }
            _ => "access_token",
        };
        return Err(c.bad(
            &account_key(i, key),
            format!(
                "accounts {:?} and {:?} have the same {} credentials: they are one merchant account; keep one of them",
                twin.name,
                name,
                twin.source.api_name()
            ),
        ));
    }
    Ok(())
}
