//! What only the PostgreSQL backend has: its URL check, opening an existing ledger, migrations
//! applied by several instances at once, and its password kept out of messages.

use super::*;
use crate::store::postgres::scratch::ScratchDb;
use jiff::Timestamp;

#[test]
fn urls_are_checked_before_anything_is_opened() {
    for good in [
        "postgres://postgres@127.0.0.1:5432/test",
        "postgresql://u:p@db.example/paysync?sslmode=require",
        "postgres://db/paysync",
    ] {
        assert_eq!(check_url(good), Ok(()), "{good}");
        assert_eq!(crate::store::check_url(good), Ok(()), "{good}");
    }
    for bad in [
        "postgres://db",
        "postgres://db/",
        "postgres://db/x?sslmode=sometimes",
        "mysql://db/x",
    ] {
        assert!(crate::store::check_url(bad).is_err(), "{bad}");
    }
}

/// A server that does not answer, a wrong password: the error names the URL without its
/// password, and sqlx's own text does not quote it either.
#[tokio::test]
async fn the_password_never_appears_in_errors() {
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut urls = vec![format!(
        "postgres://paysync:S3cr3tPw@127.0.0.1:{port}/paysync?connect_timeout=2"
    )];
    if let Ok(admin) = std::env::var(scratch::ENV) {
        // The real server, a user that does not exist (trust auth still checks the role).
        let host = admin.split('@').nth(1).unwrap_or("127.0.0.1:5432/test");
        urls.push(format!("postgres://nobody_here:S3cr3tPw@{host}"));
    }
    for url in urls {
        for e in [
            crate::store::open(&url)
                .await
                .err()
                .expect("no ledger there"),
            crate::store::open_existing(&url)
                .await
                .err()
                .expect("no ledger there"),
        ] {
            let text = format!("{e} {e:?}");
            assert!(!text.contains("S3cr3tPw"), "{text}");
            assert!(text.contains("***@127.0.0.1"), "{text}");
        }
    }
}

#[tokio::test]
async fn open_existing_needs_a_database_that_holds_a_ledger() {
    let Some(db) = ScratchDb::create("open_existing_needs_a_database_that_holds_a_ledger").await
    else {
        return;
    };
    // An empty database: Missing, and nothing created in it.
    let e = crate::store::open_existing(&db.url).await.err().unwrap();
    assert!(matches!(e, StoreError::Missing { .. }), "{e}");
    let probe = PgPool::connect(&db.url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&probe)
    .await
    .unwrap();
    assert_eq!(tables, 0);
    // A database that does not exist: Missing too.
    let gone = db.url.replace("paysync_t_", "paysync_gone_");
    let e = crate::store::open_existing(&gone).await.err().unwrap();
    assert!(matches!(e, StoreError::Missing { .. }), "{e}");
    // Once `open` made the ledger, `open_existing` uses it.
    let l = crate::store::open(&db.url).await.unwrap();
    assert!(
        crate::store::set_watermark_once(&*l, "main", Timestamp::from_second(5).unwrap())
            .await
            .unwrap()
    );
    let again = crate::store::open_existing(&db.url).await.unwrap();
    assert_eq!(
        again.watermark("main").await.unwrap(),
        Some(Timestamp::from_second(5).unwrap())
    );
    probe.close().await;
}

/// Several instances starting at once on a new database: each applies the migrations or finds
/// them applied (sqlx's migrator holds an advisory lock meanwhile); none fails.
#[tokio::test]
async fn instances_starting_at_once_migrate_once() {
    let Some(db) = ScratchDb::create("instances_starting_at_once_migrate_once").await else {
        return;
    };
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PgLedger::open(&url).await.map(|l| l.pool.clone()) })
        })
        .collect();
    let mut pools = Vec::new();
    for o in opens {
        pools.push(o.await.unwrap().expect("every instance opens"));
    }
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&pools[0])
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(applied as usize, files, "each migration once");
    for p in pools {
        p.close().await;
    }
}
