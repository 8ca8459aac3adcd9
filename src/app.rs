//! Wiring: from validated [`Settings`] to a ready [`Engine`] and its accounts.
//!
//! The only place that picks concrete implementations (Mobbex or Mercado Pago per account, with a
//! fixed token or OAuth rotation; ERPNext; the ledger backend named by `[store] url`) for the traits the pipeline works with, and the process's one [`Clock`]
//! ([`App::clock`]: the wall clock unless a test gives another), which the engine, its claims and
//! the daemon all read.
//! Must not book, decide or print anything.

use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Date;
use jiff::{Timestamp, ToSpan};

use crate::clock::{Clock, SystemClock};
use crate::config::{MercadoPagoToken, Settings, SourceCredentials};
use crate::erp::Erp;
use crate::erp::erpnext::ErpNextClient;
use crate::pipeline::{AccountCtx, Engine};
use crate::retry::RetryPolicy;
use crate::source::mercadopago::rotation::{OAuthApp, OAuthTokens};
use crate::source::mercadopago::{AccessTokens, MercadoPagoClient, MercadoPagoConfig, StaticToken};
use crate::source::mobbex::MobbexClient;
use crate::source::{PaymentSource, Window, WindowField};
use crate::store;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Erp(#[from] crate::erp::ErpError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
}

pub struct App {
    pub settings: Settings,
    pub engine: Arc<Engine>,
    pub erp: Arc<dyn Erp>,
    pub ledger: Arc<dyn store::Ledger>,
    pub accounts: Vec<AccountCtx>,
    /// Where "now" comes from, for everything built from this app (the daemon, its claims).
    pub clock: Arc<dyn Clock>,
}

impl App {
    /// Open the ledger (applying migrations) and build the API clients.
    pub async fn build(settings: Settings) -> Result<App, AppError> {
        let ledger = store::open(&settings.store.url).await?;
        Self::build_with_ledger(settings, ledger)
    }

    pub fn build_with_ledger(
        settings: Settings,
        ledger: Arc<dyn store::Ledger>,
    ) -> Result<App, AppError> {
        let retry = retry_policy(&settings);
        let erp: Arc<dyn Erp> = Arc::new(
            ErpNextClient::new(
                settings.erp.url.clone(),
                &settings.erp.api_key,
                &settings.erp.api_secret,
                settings.erp.timeout,
            )?
            .with_retry(retry),
        );
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let engine = engine(&settings, &erp, &ledger, None, &clock);
        let accounts = accounts(&settings, &ledger, &clock, retry)?;
        Ok(App {
            settings,
            engine,
            erp,
            ledger,
            accounts,
            clock,
        })
    }

    /// Read time from `clock` instead of the wall clock (tests on tokio's paused time): the
    /// engine, its claims and the daemon all read this one.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> App {
        self.clock = clock;
        let retry = retry_policy(&self.settings);
        self.accounts = accounts(&self.settings, &self.ledger, &self.clock, retry)
            .expect("the same settings built these accounts already");
        self.engine = engine(
            &self.settings,
            &self.erp,
            &self.ledger,
            self.engine.fixed_today(),
            &self.clock,
        );
        self
    }

    /// Use a fixed "today" for posting and reference dates (tests, the demo).
    pub fn with_today(mut self, today: Date) -> App {
        self.engine = engine(
            &self.settings,
            &self.erp,
            &self.ledger,
            Some(today),
            &self.clock,
        );
        self
    }
}

/// The days a manual sync covers: `since ..= until` (`until` defaults to `today`). Refused: a
/// window past today (nothing is created there, yet every day of a window costs listing requests:
/// `--until 9999-12-31` made 21,643 of them in 10 s) and one starting further back than
/// `max_days` (`[daemon] max_sync_days`; `--since 1900-01-01` made 46,356).
pub fn sync_days(
    since: Date,
    until: Option<Date>,
    today: Date,
    max_days: u32,
) -> Result<(Date, Date), String> {
    let until = until.unwrap_or(today);
    if until > today {
        return Err(format!(
            "--until {until} is after today ({today} in the configured time zone): give a day up to today"
        ));
    }
    if since > until {
        return Err(format!("--since {since} is after --until {until}"));
    }
    let earliest = today
        .checked_sub(i64::from(max_days).days())
        .unwrap_or(Date::MIN);
    if since < earliest {
        return Err(format!(
            "--since {since} is more than {max_days} days back (the earliest day allowed is {earliest}); to sync further back, raise [daemon] max_sync_days"
        ));
    }
    Ok((since, until))
}

/// The window of a manual sync: operations created from `since` 00:00 to the end of `until`,
/// both days in the configured time zone.
pub fn created_window(tz: &jiff::tz::TimeZone, since: Date, until: Date) -> Window {
    let from = since
        .to_zoned(tz.clone())
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::MIN);
    let to = until
        .checked_add(1.day())
        .ok()
        .and_then(|d| d.to_zoned(tz.clone()).ok())
        .map(|z| z.timestamp() - jiff::SignedDuration::from_millis(1))
        .unwrap_or(Timestamp::MAX);
    Window {
        field: WindowField::Created,
        from,
        to,
    }
}

/// Every API call's retries, within `[daemon] retry_budget`.
fn retry_policy(settings: &Settings) -> RetryPolicy {
    RetryPolicy {
        max_total: settings.daemon.retry_budget,
        ..RetryPolicy::default()
    }
}

/// How long one gateway request may take, answer included.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Each account with its source's client: the only place a gateway's implementation is chosen.
fn accounts(
    settings: &Settings,
    ledger: &Arc<dyn store::Ledger>,
    clock: &Arc<dyn Clock>,
    retry: RetryPolicy,
) -> Result<Vec<AccountCtx>, AppError> {
    let mut accounts = Vec::new();
    for a in &settings.accounts {
        let source: Arc<dyn PaymentSource> = match &a.credentials {
            SourceCredentials::Mobbex {
                api_key,
                access_token,
            } => Arc::new(
                MobbexClient::new(a.api_url.clone(), api_key, access_token, SOURCE_TIMEOUT)?
                    .with_retry(retry)
                    .with_charges(a.fees.is_some()),
            ),
            SourceCredentials::MercadoPago(mp) => {
                let tokens: Arc<dyn AccessTokens> = match &mp.token {
                    MercadoPagoToken::Static(t) => Arc::new(StaticToken(t.clone())),
                    MercadoPagoToken::OAuth(keys) => Arc::new(OAuthTokens::new(
                        &a.name,
                        OAuthApp {
                            client_id: keys.client_id.clone(),
                            client_secret: keys.client_secret.clone(),
                            configured_refresh_token: keys.refresh_token.clone(),
                            token_url: keys.token_url.clone(),
                        },
                        ledger.clone(),
                        clock.clone(),
                        SOURCE_TIMEOUT,
                    )?),
                };
                let config = MercadoPagoConfig {
                    api_url: a.api_url.clone(),
                    meli_api_url: mp.meli_api_url.clone(),
                    timeout: SOURCE_TIMEOUT,
                };
                Arc::new(MercadoPagoClient::new(config, tokens)?.with_retry(retry))
            }
        };
        accounts.push(AccountCtx {
            settings: a.clone(),
            source,
        });
    }
    Ok(accounts)
}

/// The one engine of a process, from the settings (the only place its knobs are set).
fn engine(
    settings: &Settings,
    erp: &Arc<dyn Erp>,
    ledger: &Arc<dyn store::Ledger>,
    today: Option<Date>,
    clock: &Arc<dyn Clock>,
) -> Arc<Engine> {
    let mut engine = Engine::new(
        erp.clone(),
        ledger.clone(),
        settings.daemon.timezone.clone(),
        1,
    )
    .with_write_limit(settings.erp.max_in_flight)
    .with_retry(retry_policy(settings))
    .with_commit_horizon(settings.erp.commit_horizon)
    .with_lease(settings.daemon.lease)
    .with_clock(clock.clone());
    if let Some(d) = today {
        engine = engine.with_today(d);
    }
    Arc::new(engine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_covers_at_most_max_days_back_and_never_past_today() {
        let today = jiff::civil::date(2026, 11, 22);
        let d = |s: &str| s.parse::<Date>().unwrap();
        assert_eq!(
            sync_days(d("2026-11-12"), None, today, 10),
            Ok((d("2026-11-12"), today))
        );
        assert_eq!(sync_days(today, Some(today), today, 1), Ok((today, today)));
        for (since, until, words) in [
            (
                "2026-11-22",
                Some("2026-11-23"),
                "--until 2026-11-23 is after today (2026-11-22",
            ),
            ("2026-11-01", Some("9999-12-31"), "--until 9999-12-31"),
            (
                "2026-11-11",
                None,
                "--since 2026-11-11 is more than 10 days back",
            ),
            ("1900-01-01", None, "the earliest day allowed is 2026-11-12"),
            (
                "2026-11-20",
                Some("2026-11-19"),
                "--since 2026-11-20 is after --until 2026-11-19",
            ),
        ] {
            let e = sync_days(d(since), until.map(d), today, 10).unwrap_err();
            assert!(e.contains(words), "{e}");
        }
    }

    #[test]
    fn window_is_whole_local_days() {
        let tz = jiff::tz::TimeZone::get("America/Argentina/Buenos_Aires").unwrap();
        let w = created_window(
            &tz,
            jiff::civil::date(2026, 10, 1),
            jiff::civil::date(2026, 10, 31),
        );
        assert_eq!(w.from.to_string(), "2026-10-01T03:00:00Z");
        assert_eq!(w.to.to_string(), "2026-11-01T02:59:59.999Z");
    }
}
