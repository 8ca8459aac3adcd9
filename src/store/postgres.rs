//! The PostgreSQL ledger: the same concerns as the SQLite one, for a database server (the first
//! step of running several instances on one database; their coordination comes later — this
//! backend keeps the SQLite ledger's semantics exactly).
//!
//! This module owns opening (the URL check, the pool, "does this database hold a ledger?" for
//! `open_existing`), migrations (`migrations/postgres/`, applied at open: sqlx's migrator holds
//! `pg_advisory_lock` on the database while it lists and applies them, so several instances
//! starting at once apply each migration once) and `ping`. The statements live with their concern,
//! one module each — `decisions.rs`, `polls.rs`, `inbox.rs`, `leases.rs`, `tokens.rs` — like the
//! SQLite ones.
//!
//! Types: amounts are NUMERIC, bound and read as their canonical text (`$n::numeric`,
//! `amount::text`) so they stay exact `Decimal`s without sqlx's decimal feature; times are BIGINT
//! epoch milliseconds, as on SQLite, so every statement's arithmetic is the same and a time reads
//! back exactly (jiff has no sqlx mapping; TIMESTAMPTZ would need conversions in every
//! statement). Id lists travel as one `text[]` parameter (`= ANY($n)`, `unnest`).
//!
//! The URL's password never appears in a message: errors name the URL through
//! [`crate::redact::url`], and sqlx's own errors do not quote it.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, PgPool};

use super::{Liveness, StoreError};
use super::{from_ms, ms};

mod decisions;
mod history;
mod inbox;
mod leases;
mod polls;
mod reversals;
#[doc(hidden)]
pub mod scratch;
mod tokens;

/// The URL schemes this backend answers to.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

#[derive(Clone)]
pub struct PgLedger {
    pool: PgPool,
}

impl PgLedger {
    /// Connect and apply migrations (creating paysync's tables in a database that has none). The
    /// database itself must exist: creating databases is the operator's (or their DBA's) call.
    pub async fn open(url: &str) -> Result<PgLedger, StoreError> {
        let pool = connect(url).await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PgLedger { pool })
    }

    /// Connect to a database that already holds paysync's ledger (and apply newer migrations);
    /// never creates its tables: [`StoreError::Missing`] when the database or its ledger is not
    /// there. For commands that only look (`paysync status`).
    pub async fn open_existing(url: &str) -> Result<PgLedger, StoreError> {
        let missing = || StoreError::Missing {
            path: super::redact_url(url),
        };
        let pool = match connect(url).await {
            Err(StoreError::Open { message, .. }) if message.contains("(3D000)") => {
                return Err(missing());
            }
            other => other?,
        };
        // `to_regclass` follows the connection's search_path, as every statement here does.
        let has_ledger: bool = sqlx::query_scalar("SELECT to_regclass('operations') IS NOT NULL")
            .fetch_one(&pool)
            .await?;
        if !has_ledger {
            pool.close().await;
            return Err(missing());
        }
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PgLedger { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// How long a ledger call waits for a connection (a new one included: connecting to a
/// partitioned server hangs) before it fails. A healthy pool of 8 hands one out in microseconds;
/// the poll or trigger that fails so is retried later, and a webhook answers 503 sooner than this
/// (`daemon::http`).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

async fn connect(url: &str) -> Result<PgPool, StoreError> {
    let bad = |message: String| StoreError::Open {
        url: super::redact_url(url),
        message,
    };
    let opts = PgConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
    // One plain connection first: a server that is down or refuses us fails the start at once
    // with its own reason (the pool would retry until its acquire timeout, then say "timed out").
    let first = PgConnection::connect_with(&opts)
        .await
        .map_err(|e| bad(describe(&e)))?;
    first.close().await.ok();
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(opts))
}

/// sqlx's error with the server's SQLSTATE when there is one (`open_existing` tells a missing
/// database, 3D000, from other failures by it).
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => match d.code() {
            Some(code) => format!("{} ({code})", d.message()),
            None => d.message().to_string(),
        },
        other => other.to_string(),
    }
}

#[async_trait]
impl Liveness for PgLedger {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Whether `url` names a PostgreSQL database paysync can use, before anything is opened: a URL
/// sqlx can parse, naming its database.
pub fn check_url(url: &str) -> Result<(), String> {
    if !is_postgres_url(url) {
        return Err("expected postgres://USER@HOST[:PORT]/DATABASE".into());
    }
    let opts = PgConnectOptions::from_str(url)
        .map_err(|e| format!("not a PostgreSQL URL sqlx can open: {e}"))?;
    let (before_query, _) = url.split_once('?').unwrap_or((url, ""));
    let rest = &before_query[before_query.find("://").map_or(0, |i| i + 3)..];
    let db_in_path = rest.split_once('/').is_some_and(|(_, db)| !db.is_empty());
    if !db_in_path && opts.get_database().is_none() {
        return Err("no database named; expected postgres://USER@HOST[:PORT]/DATABASE".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
