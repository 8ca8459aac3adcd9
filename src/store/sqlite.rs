//! The SQLite ledger: one file, WAL mode, created on first use (mode 0600, see `file.rs`).
//!
//! This module owns opening (the URL check, the file created private, the pool's settings),
//! migrations (`migrations/sqlite/`), the file-identity check and the helpers every concern
//! shares (times as epoch ms, id lists as JSON arrays). The statements live with their concern,
//! one module each — `decisions.rs` (`operations`), `polls.rs` (`watermarks`, `polls`),
//! `inbox.rs` (`inbox`), `leases.rs` (`claims`), `tokens.rs` (`oauth_tokens`) — and touch no
//! other concern's tables; `ping` is here.
//!
//! WAL lets `paysync sync` and the daemon share the file (readers never block the writer);
//! `busy_timeout` makes a second writer wait instead of failing. Amounts are stored as canonical
//! decimal text because sqlx's decimal support does not cover SQLite.
//!
//! Storage trouble — rules every concern module follows: every method first checks that the path
//! still names the file opened (`same_file`, `file.rs`: a deleted or replaced
//! ledger fails closed), and write transactions go through `write_tx.rs`, which never pools a
//! connection with a transaction open (a full disk once left sqlx's transaction depth stuck, and
//! every later claim failed).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{Liveness, StoreError};
use super::{from_ms, ms};

mod decisions;
mod file;
mod history;
mod inbox;
mod leases;
mod polls;
mod reversals;
mod tokens;
mod write_tx;

use file::LedgerFile;

#[derive(Clone)]
pub struct SqliteLedger {
    pool: SqlitePool,
    /// The file opened (`None` in memory): checked before every use, see `file.rs`.
    file: Option<Arc<LedgerFile>>,
}

impl SqliteLedger {
    /// Open the ledger, creating it (mode 0600) if missing.
    pub async fn open(url: &str) -> Result<SqliteLedger, StoreError> {
        Self::open_with(url, true).await
    }

    /// Open an existing ledger; [`StoreError::Missing`] if there is none.
    pub async fn open_existing(url: &str) -> Result<SqliteLedger, StoreError> {
        Self::open_with(url, false).await
    }

    async fn open_with(url: &str, create: bool) -> Result<SqliteLedger, StoreError> {
        let bad = |message: String| StoreError::Open {
            url: super::redact_url(url),
            message,
        };
        let opts = SqliteConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
        let path = opts.get_filename().to_path_buf();
        let in_memory = path.as_os_str() == ":memory:" || url.contains("mode=memory");
        if !in_memory {
            if create {
                // Before SQLite creates it with the umask's mode (0644 under the usual 022).
                file::create_private(&path)
                    .map_err(|e| bad(format!("cannot create {}: {e}", path.display())))?;
            } else if !path.exists() {
                return Err(StoreError::Missing {
                    path: path.display().to_string(),
                });
            }
        }
        let opts = opts
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            // One connection: SQLite takes one writer at a time anyway, and a second connection
            // finds its page cache stale after every write of the first and reads the pages
            // again (measured: 15 % of the CPU per operation, 2026-12-02, BENCHMARKS.md).
            .max_connections(1)
            // A local file cannot drop a connection: skip sqlx's ping before every acquire
            // (it is an extra round trip to the connection's worker thread).
            .test_before_acquire(false)
            .connect_with(opts)
            .await
            .map_err(|e| bad(e.to_string()))?;
        // The file SQLite just opened: what the path must keep naming.
        let opened = if in_memory {
            None
        } else {
            let f = LedgerFile::of(&path)
                .map_err(|e| bad(format!("cannot stat {}: {e}", path.display())))?;
            Some(Arc::new(f))
        };
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(SqliteLedger { pool, file: opened })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The path still names the file that was opened (fail closed otherwise).
    fn same_file(&self) -> Result<(), StoreError> {
        match &self.file {
            Some(f) => f.check(),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Liveness for SqliteLedger {
    async fn ping(&self) -> Result<(), StoreError> {
        self.same_file()?;
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Whether `url` names a ledger that remembers: a SQLite file, opened for writing. The ledger is
/// what keeps a payment from being booked twice, so one that forgets on exit (`:memory:`,
/// `mode=memory`, the `memdb` VFS, an empty path, which SQLite turns into a temporary file) or
/// that cannot be written (`mode=ro`, `immutable`) is refused before anything is booked.
pub fn check_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err(super::EXPECTED.into());
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let forgets =
        "a ledger in memory forgets what was booked when paysync stops; expected sqlite://FILE";
    if path.trim().is_empty() {
        return Err(
            "no file named (SQLite would use a temporary one, deleted on exit); expected sqlite://FILE"
                .into(),
        );
    }
    if path.contains(":memory:") {
        return Err(forgets.into());
    }
    if path.starts_with("file:") {
        return Err("expected a plain file path after sqlite:// (not a SQLite file: URI)".into());
    }
    for (k, v) in url::form_urlencoded::parse(params.as_bytes()) {
        match (&*k, &*v) {
            ("mode", "memory") | ("vfs", "memdb") => return Err(forgets.into()),
            ("mode", "ro") | ("immutable", "1" | "true") => {
                return Err(format!(
                    "`{k}={v}` opens the ledger read-only; paysync records every decision in it"
                ));
            }
            _ => {}
        }
    }
    // What sqlx itself refuses (an unknown parameter), refused here too: at start, with the key.
    <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
        .map_err(|e| format!("not a SQLite URL sqlx can open: {e}"))?;
    Ok(())
}

/// A list of ids as one JSON array parameter (read back with `json_each`): a whole batch in one
/// statement, whatever its size.
fn json_array(items: &[String]) -> String {
    serde_json::to_string(items).expect("strings serialize")
}
#[cfg(test)]
mod trouble_tests;
