//! Each row's own, empty ledger: a SQLite file in the row's temporary directory, or a fresh
//! PostgreSQL database `paysync_bench_<random>` created through the admin URL and dropped when
//! the row is done (a failed row's too), so no row sees another's rows or indexes' bloat.
//!
//! Like the store's test scratch databases (`paysync::store::postgres::scratch`), which cannot be
//! reused here: they read their URL only from the environment and name databases as tests.

use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// Where a row keeps its ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LedgerKind {
    Sqlite,
    Postgres,
}

impl LedgerKind {
    pub fn name(self) -> &'static str {
        match self {
            LedgerKind::Sqlite => "sqlite",
            LedgerKind::Postgres => "postgres",
        }
    }
}

/// A row's ledger; a PostgreSQL one is dropped with this value.
pub struct Scratch {
    /// The `[store] url` paysync is given.
    pub url: String,
    pg: Option<PgDrop>,
}

struct PgDrop {
    admin: String,
    name: String,
}

impl Scratch {
    /// A new ledger of `kind`: SQLite in `dir`, PostgreSQL on the server of `admin`.
    pub async fn create(kind: LedgerKind, dir: &Path, admin: &str) -> anyhow::Result<Scratch> {
        match kind {
            LedgerKind::Sqlite => Ok(Scratch {
                url: format!("sqlite://{}", dir.join("ledger.db").display()),
                pg: None,
            }),
            LedgerKind::Postgres => {
                let name = format!("paysync_bench_{:016x}", fastrand::u64(..));
                let mut conn = PgConnection::connect(admin)
                    .await
                    .context("--postgres-url: cannot connect")?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .with_context(|| format!("CREATE DATABASE {name}"))?;
                conn.close().await.ok();
                Ok(Scratch {
                    url: with_database(admin, &name),
                    pg: Some(PgDrop {
                        admin: admin.to_string(),
                        name,
                    }),
                })
            }
        }
    }
}

/// `admin` naming database `name` instead (its query parameters kept).
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(j) => &base[..authority_end + j],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(pg) = self.pg.take() else {
            return;
        };
        // Drop cannot await: a thread with its own runtime (the caller's may have one worker,
        // which this blocks only for the DROP's round trip).
        let name = pg.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let opts = PgConnectOptions::from_str(&pg.admin)?;
                let mut conn = PgConnection::connect_with(&opts).await?;
                // FORCE: a child killed mid-row may leave sessions behind.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    pg.name
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("paysync-bench: scratch database {name} not dropped: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_is_replaced_and_parameters_kept() {
        assert_eq!(
            super::with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            super::with_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(super::with_database("postgres://h", "x"), "postgres://h/x");
    }
}
