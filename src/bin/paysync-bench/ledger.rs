//! Each row's own, empty ledger: a SQLite file in the row's temporary directory, or a fresh
//! PostgreSQL database `paysync_bench_<random>` created through the admin URL and dropped when
//! the row is done (a failed row's too), so no row sees another's rows or indexes' bloat.
//! (The store's scratch databases, `paysync::store::postgres::scratch`, on `--postgres-url`.)

use std::path::Path;

use paysync::store::postgres::scratch::ScratchDb;

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
    _pg: Option<ScratchDb>,
}

impl Scratch {
    /// A new ledger of `kind`: SQLite in `dir`, PostgreSQL on the server of `admin`.
    pub async fn create(kind: LedgerKind, dir: &Path, admin: &str) -> anyhow::Result<Scratch> {
        match kind {
            LedgerKind::Sqlite => Ok(Scratch {
                url: format!("sqlite://{}", dir.join("ledger.db").display()),
                _pg: None,
            }),
            LedgerKind::Postgres => {
                let db = ScratchDb::create_on(admin, "paysync_bench")
                    .await
                    .map_err(|e| anyhow::anyhow!("--postgres-url: {e}"))?;
                Ok(Scratch {
                    url: db.url.clone(),
                    _pg: Some(db),
                })
            }
        }
    }
}
