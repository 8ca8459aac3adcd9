//! Write transactions that never go back to the pool open.
//!
//! Not sqlx's `Transaction`: on some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM) SQLite
//! rolls the transaction back by itself. sqlx's own ROLLBACK then fails ("no transaction is
//! active"), its transaction depth for the connection stays at 1, the connection goes back to the
//! pool, and every later `begin_with` on it fails with "attempted to call begin_with at non-zero
//! transaction depth" — for ever, long after the disk has room again. Here the transaction is
//! plain SQL on a connection this guard owns: after an error it is rolled back (or found already
//! rolled back), and a connection whose state cannot be known is closed instead of pooled.

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};
use tracing::warn;

use crate::store::StoreError;

/// A `BEGIN IMMEDIATE` transaction (the write lock taken up front, so two processes never race
/// for it half way). End it with [`WriteTx::finish`]; dropped unfinished (a cancelled future),
/// its connection is closed, which rolls the transaction back.
pub(super) struct WriteTx {
    conn: PoolConnection<Sqlite>,
    /// A transaction may be open on `conn`: it must not be pooled again as it is.
    open: bool,
}

impl WriteTx {
    pub(super) async fn begin(pool: &SqlitePool) -> Result<WriteTx, StoreError> {
        let conn = pool.acquire().await?;
        let mut tx = WriteTx { conn, open: true };
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *tx.conn).await {
            tx.abort().await;
            return Err(e.into());
        }
        Ok(tx)
    }

    pub(super) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// Commit when `work` succeeded, else roll back; `work`'s result (or the commit's error).
    pub(super) async fn finish<T>(mut self, work: Result<T, StoreError>) -> Result<T, StoreError> {
        let value = match work {
            Ok(v) => v,
            Err(e) => {
                self.abort().await;
                return Err(e);
            }
        };
        match sqlx::query("COMMIT").execute(&mut *self.conn).await {
            Ok(_) => {
                self.open = false;
                Ok(value)
            }
            Err(e) => {
                self.abort().await;
                Err(e.into())
            }
        }
    }

    /// Roll back after an error. `open` stays set (the connection is closed on drop) unless the
    /// connection is known to be outside any transaction now.
    async fn abort(&mut self) {
        match sqlx::query("ROLLBACK").execute(&mut *self.conn).await {
            Ok(_) => self.open = false,
            // SQLite rolled it back by itself already (or BEGIN never started one).
            Err(e) if no_transaction_active(&e) => self.open = false,
            Err(e) => warn!(error = %e, "ledger: rollback failed; closing that connection"),
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if self.open {
            // Closing a SQLite connection rolls back what it left open; the pool opens another.
            self.conn.close_on_drop();
        }
    }
}

fn no_transaction_active(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.message().contains("no transaction is active"))
}
