//! Wiring: from validated [`Settings`] to a ready [`Engine`] and its accounts.
//!
//! The only place that picks concrete implementations (Mobbex, ERPNext, SQLite) for the traits the
//! pipeline works with.

use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Date;
use jiff::{Timestamp, ToSpan};

use crate::config::Settings;
use crate::erp::Erp;
use crate::erp::erpnext::ErpNextClient;
use crate::pipeline::{AccountCtx, Engine};
use crate::retry::RetryPolicy;
use crate::source::mobbex::MobbexClient;
use crate::source::{Window, WindowField};
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
        let retry = RetryPolicy {
            max_total: settings.daemon.retry_budget,
            ..RetryPolicy::default()
        };
        let erp: Arc<dyn Erp> = Arc::new(
            ErpNextClient::new(
                settings.erp.url.clone(),
                &settings.erp.api_key,
                &settings.erp.api_secret,
                settings.erp.timeout,
            )?
            .with_retry(retry),
        );
        let engine = Arc::new(
            Engine::new(
                erp.clone(),
                ledger.clone(),
                settings.daemon.timezone.clone(),
                settings.erp.max_in_flight,
            )
            .with_retry(retry)
            .with_commit_horizon(settings.erp.commit_horizon),
        );
        let mut accounts = Vec::new();
        for a in &settings.accounts {
            let source = MobbexClient::new(
                a.api_url.clone(),
                &a.api_key,
                &a.access_token,
                Duration::from_secs(30),
            )?
            .with_retry(retry);
            accounts.push(AccountCtx {
                settings: a.clone(),
                source: Arc::new(source),
            });
        }
        Ok(App {
            settings,
            engine,
            erp,
            ledger,
            accounts,
        })
    }

    /// Use a fixed "today" for posting and reference dates (tests, the demo).
    pub fn with_today(mut self, today: Date) -> App {
        self.engine = Arc::new(
            Engine::new(
                self.erp.clone(),
                self.ledger.clone(),
                self.settings.daemon.timezone.clone(),
                self.settings.erp.max_in_flight,
            )
            .with_today(today)
            .with_retry(RetryPolicy {
                max_total: self.settings.daemon.retry_budget,
                ..RetryPolicy::default()
            })
            .with_commit_horizon(self.settings.erp.commit_horizon),
        );
        self
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
