//! The SQLite ledger under storage trouble: a full disk (`PRAGMA max_page_count`), a ledger file
//! deleted or replaced under the process, and the modes of the files it creates.

use jiff::Timestamp;
use std::os::unix::fs::PermissionsExt;

use rust_decimal::Decimal;

use super::*;
use crate::domain::DecisionKind;
use crate::store::{Decisions, Inbox, Leases, Record};

fn rec(uid: &str, reason: &str) -> Record {
    Record {
        account: "main".into(),
        uid: uid.into(),
        reference: "SAL-ORD-2026-00001".into(),
        sales_order: Some("SAL-ORD-2026-00001".into()),
        status_code: Some(2),
        amount: Some(Decimal::from(10)),
        currency: Some("ARS".into()),
        decision: DecisionKind::Pending,
        reason: reason.into(),
        erp_entry: None,
        op_created: None,
        seen_at: Timestamp::now(),
        trigger: crate::store::RunTrigger::Sync,
    }
}

async fn ledger() -> (tempfile::TempDir, String, SqliteLedger) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("l.db").display());
    let l = SqliteLedger::open(&url).await.unwrap();
    (dir, url, l)
}

/// `PRAGMA max_page_count` on every connection of the pool (the limit belongs to a connection,
/// not to the file): `Some(1)` caps the file at its current size (SQLite never caps it below),
/// so any write that needs a new page fails with SQLITE_FULL; `None` lifts the cap.
async fn cap_pages(l: &SqliteLedger, cap: Option<u32>) {
    let n = cap.unwrap_or(u32::MAX - 1);
    let mut conns = Vec::new();
    for _ in 0..l.pool().options().get_max_connections() {
        conns.push(l.pool().acquire().await.unwrap());
    }
    for c in &mut conns {
        sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA max_page_count = {n}")))
            .execute(&mut **c)
            .await
            .unwrap();
    }
}

fn assert_full(what: &str, r: Result<impl std::fmt::Debug, StoreError>) {
    let e = r.expect_err(what);
    assert!(
        e.to_string().contains("database or disk is full"),
        "{what}: {e}"
    );
}

/// Every method that opens a transaction fails cleanly under SQLITE_FULL (an error, nothing half
/// written) and works again on the same pool once there is room: no connection goes back to the
/// pool with a transaction that SQLite already rolled back but sqlx still counts as open.
#[tokio::test]
async fn transactions_fail_cleanly_when_the_disk_is_full_and_work_again_after() {
    let (_d, _url, l) = ledger().await;
    // Rows large enough that writing them needs new pages (overflow pages): a claim rewrites the
    // trigger's row (its lease grows it), an upsert of a long reason adds pages.
    let big = "x".repeat(64 * 1024);
    for i in 0..3 {
        assert!(
            l.inbox_push("main", &format!("t{i}"), Timestamp::now(), Some(&big))
                .await
                .unwrap()
        );
    }
    for round in 0..3 {
        cap_pages(&l, Some(1)).await;
        assert_full(
            "record_many",
            l.record_many(&[
                rec(&format!("small{round}"), "r"),
                rec(&format!("big{round}"), &big),
            ])
            .await,
        );
        assert_full(
            "inbox_claim",
            l.inbox_claim("w", Timestamp::now(), Duration::from_secs(60), 1)
                .await,
        );
        cap_pages(&l, None).await;
        // Nothing of the failed transaction is left: not the small row written before the big one.
        let ids = [format!("small{round}"), format!("big{round}")];
        assert!(
            l.rows("main", &ids).await.unwrap().is_empty(),
            "round {round}"
        );
    }
    // Room again: both work, on every connection of the pool (each call takes whichever is idle,
    // so a few calls of each reach both).
    for round in 0..4 {
        l.record_many(&[
            rec(&format!("ok{round}"), "r"),
            rec(&format!("ok-big{round}"), &big),
        ])
        .await
        .unwrap_or_else(|e| {
            panic!("record_many after the disk had room again (call {round}): {e}")
        });
    }
    let mut claimed = Vec::new();
    for round in 0..4 {
        let got = l
            .inbox_claim("w", Timestamp::now(), Duration::from_secs(60), 1)
            .await
            .unwrap_or_else(|e| {
                panic!("inbox_claim after the disk had room again (call {round}): {e}")
            });
        claimed.extend(got.into_iter().map(|i| (i.uid, i.attempts)));
    }
    // The failed claims counted no attempt.
    assert_eq!(
        claimed,
        vec![("t0".to_string(), 1), ("t1".into(), 1), ("t2".into(), 1)]
    );
    assert_eq!(l.rows("main", &["ok3".into()]).await.unwrap().len(), 1);
}

/// A write transaction abandoned half way (its future dropped: a timeout, a shutdown) leaves no
/// transaction open: its writes are gone and the next writer gets the lock at once.
#[tokio::test]
async fn an_abandoned_write_transaction_is_rolled_back() {
    let (_d, url, l) = ledger().await;
    // Another process's view of the file, with a short busy timeout: it would wait 30 s (the
    // ledger's own) for a lock left held.
    let other = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::from_str(&url)
                .unwrap()
                .busy_timeout(Duration::from_millis(500)),
        )
        .await
        .unwrap();
    // Each write waits for a lock `other` holds (the busy timeout) and is given up after a
    // moment, as many times as the pool has connections: every one of them had a BEGIN in flight.
    let mut blocker = other.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("INSERT INTO watermarks VALUES ('x', 1, 1)")
        .execute(&mut *blocker)
        .await
        .unwrap();
    for i in 0..l.pool().options().get_max_connections() {
        let recs = [rec(&format!("gone{i}"), "r")];
        let write = l.record_many(&recs);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), write)
                .await
                .is_err()
        );
    }
    blocker.rollback().await.unwrap();
    l.record(&rec("later", "r")).await.unwrap();
    let mut tx = other
        .begin_with("BEGIN IMMEDIATE")
        .await
        .expect("the lock is free");
    sqlx::query("INSERT INTO watermarks VALUES ('y', 1, 1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let rows = l
        .rows("main", &["gone0".into(), "gone1".into(), "later".into()])
        .await
        .unwrap();
    assert_eq!(rows.keys().collect::<Vec<_>>(), vec!["later"]);
}

/// A ledger file deleted or replaced under the process is noticed by `ping` (so /healthz says 503)
/// and by every booking path, which then writes nothing; the error names the file.
#[tokio::test]
async fn a_ledger_deleted_or_replaced_under_the_process_fails_closed() {
    let (dir, _url, l) = ledger().await;
    let path = dir.path().join("l.db");
    l.ping().await.unwrap();
    l.record(&rec("before", "r")).await.unwrap();

    // Deleted (moved away: the same file can be put back later).
    let aside = dir.path().join("aside.db");
    std::fs::rename(&path, &aside).unwrap();
    let check = |what: &str, r: Result<(), StoreError>| {
        let e = r.expect_err(what).to_string();
        assert!(e.contains(&path.display().to_string()), "{what}: {e}");
        assert!(e.contains("deleted or replaced"), "{what}: {e}");
    };
    check("ping after delete", l.ping().await);
    let now = Timestamp::now();
    check(
        "op_and_order",
        l.op_and_order("main", "x", now, Some("SAL-ORD-2026-00001"), now)
            .await
            .map(drop),
    );
    check("rows", l.rows("main", &["before".into()]).await.map(drop));
    check("record", l.record(&rec("while-gone", "r")).await);
    check(
        "record_many",
        l.record_many(&[rec("while-gone", "r")]).await,
    );
    check(
        "try_claim_many",
        l.try_claim_many(
            "orders",
            &["SO-1".into()],
            "me",
            now,
            Duration::from_secs(60),
        )
        .await
        .map(drop),
    );
    check(
        "inbox_push",
        l.inbox_push("main", "while-gone", now, None)
            .await
            .map(drop),
    );
    check(
        "inbox_claim",
        l.inbox_claim("w", now, Duration::from_secs(60), 1)
            .await
            .map(drop),
    );

    // Replaced: another file at the path (a restored backup moved there, an empty file). Not
    // opened with SQLite here: it would take over the original's `-wal` beside it.
    std::fs::write(&path, b"").unwrap();
    check("ping after replace", l.ping().await);
    check(
        "record after replace",
        l.record(&rec("while-replaced", "r")).await,
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        0,
        "written to the replacement"
    );

    // The original file is back: in use again, and nothing was written to it meanwhile.
    std::fs::rename(&aside, &path).unwrap();
    l.ping().await.expect("the original file is back");
    let rows = l
        .rows(
            "main",
            &[
                "before".into(),
                "while-gone".into(),
                "while-replaced".into(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(rows.keys().collect::<Vec<_>>(), vec!["before"]);
    assert!(l.inbox_depth().await.unwrap().is_empty());
}

/// The ledger and the `-wal` and `-shm` files SQLite creates beside it are readable by their owner
/// only, whatever the umask (022 here, the usual default: group and others could read them).
#[tokio::test]
async fn ledger_files_are_created_private() {
    // The umask is per process: 022 is what most shells give, and only makes files *more* open
    // than the 077 a careful environment has; the other tests of this binary do not depend on it.
    // SAFETY: umask(2) cannot fail and touches no memory.
    unsafe { libc::umask(0o022) };
    let (dir, _url, l) = ledger().await;
    l.record(&rec("u", "r")).await.unwrap();
    for name in ["l.db", "l.db-wal", "l.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
    }
}
