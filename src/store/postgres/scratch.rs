//! Throw-away PostgreSQL databases for tests (the store's unit tests and the integration tests):
//! one fresh database per test, created through the admin URL in `PAYSYNC_TEST_POSTGRES_URL` and
//! dropped when the guard goes, a failed test's included.
//!
//! Not part of paysync's behaviour; public (hidden) only so that `tests/` can use it too.

use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// The environment variable naming the server tests may create databases on.
pub const ENV: &str = "PAYSYNC_TEST_POSTGRES_URL";

/// A database created for one test; dropped (`WITH (FORCE)`: its pools' connections too) when
/// this goes out of scope.
pub struct ScratchDb {
    admin: String,
    name: String,
    /// The URL of the new database (the admin URL with its database name replaced).
    pub url: String,
}

impl ScratchDb {
    /// A fresh, empty database, or `None` (after printing that the test is skipped) when
    /// [`ENV`] is not set.
    pub async fn create(test: &str) -> Option<ScratchDb> {
        let Ok(admin) = std::env::var(ENV) else {
            skipped(test);
            return None;
        };
        let db = ScratchDb::create_on(&admin, "paysync_t")
            .await
            .unwrap_or_else(|e| panic!("{ENV}: {e}"));
        Some(db)
    }

    /// A fresh, empty database `<prefix>_<random>` on the server of `admin` (the benchmark's
    /// rows use this with a URL of their own).
    pub async fn create_on(admin: &str, prefix: &str) -> Result<ScratchDb, String> {
        let name = format!("{prefix}_{:016x}", fastrand::u64(..));
        let mut conn = PgConnection::connect(admin)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        conn.close().await.ok();
        let url = with_database(admin, &name);
        Ok(ScratchDb {
            admin: admin.to_string(),
            name,
            url,
        })
    }
}

/// Say, once per test binary and past the test harness's capture (which shows a passing test's
/// output to no one), that the PostgreSQL tests did not run.
fn skipped(test: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "PostgreSQL tests skipped: {ENV} not set (first: {test})"
        );
    });
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

impl Drop for ScratchDb {
    fn drop(&mut self) {
        // Drop runs outside any async context it could block on: a thread with its own runtime.
        // FORCE: a pool still open (or a child process killed mid-test) may hold sessions.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let opts = PgConnectOptions::from_str(&admin)?;
                let mut conn = PgConnection::connect_with(&opts).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("scratch database {}: not dropped: {e}", self.name);
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
