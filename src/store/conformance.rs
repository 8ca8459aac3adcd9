//! The store's semantics, tested once and run on every backend: each test below is a plain
//! function of a fresh [`Ledger`], and `on_every_backend!` runs it on SQLite (always) and on
//! PostgreSQL (a fresh database per test, when `PAYSYNC_TEST_POSTGRES_URL` names a server;
//! otherwise it says it skipped and passes).
//!
//! What a backend must agree on is here; what only one backend has (SQLite's file checks and full
//! disk, its query plans) stays in that backend's tests.

use std::str::FromStr;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;

use super::postgres::scratch::ScratchDb;
use super::{Ledger, Record, ViewQuery};
use crate::domain::DecisionKind;

mod coordination;
mod daemon_state;
mod history;
mod reversals;
mod tokens;
use coordination::*;
use daemon_state::*;
use history::*;
use reversals::*;
use tokens::*;

/// A ledger under test and what keeps its storage alive.
struct Fresh {
    ledger: Arc<dyn Ledger>,
    _dir: Option<tempfile::TempDir>,
    // Declared after the ledger: dropped after its pool.
    _db: Option<ScratchDb>,
}

async fn sqlite() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("l.db").display());
    Fresh {
        ledger: super::open(&url).await.unwrap(),
        _dir: Some(dir),
        _db: None,
    }
}

async fn postgres(test: &str) -> Option<Fresh> {
    let db = ScratchDb::create(test).await?;
    let ledger = super::open(&db.url).await.unwrap();
    Some(Fresh {
        ledger,
        _dir: None,
        _db: Some(db),
    })
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test]
                async fn $name() {
                    let f = super::sqlite().await;
                    super::$name(f.ledger.clone()).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(f) = super::postgres(stringify!($name)).await else { return };
                    super::$name(f.ledger.clone()).await;
                    // The pool closed before its database is dropped.
                    drop(f.ledger);
                }
            )*
        }
    };
}

on_every_backend!(
    booked_rows_are_never_downgraded,
    skips_are_updated_and_counted,
    a_rebooking_reopens_a_booked_row_and_keeps_its_guard_value,
    amounts_stay_exact,
    a_batch_of_records_lands_as_the_records_one_by_one,
    a_short_batch_after_a_longer_one_writes_only_its_own_rows,
    the_booking_check_sees_the_row_a_recent_booking_and_the_oldest_earlier_unresolved,
    unresolved_payments_of_orders_come_oldest_first,
    retries_back_off_with_how_often_an_operation_was_seen,
    latest_rows_come_newest_first,
    a_watermark_never_moves_backwards_and_polls_come_newest_first,
    duplicate_pending_triggers_collapse,
    a_claim_hands_out_due_triggers_once_until_the_lease_runs_out,
    retried_dead_and_lapsed_triggers,
    concurrent_claims_never_hand_out_a_trigger_twice,
    claims_are_taken_only_when_free_expired_or_already_held,
    a_poll_lease_has_one_holder_and_fences_the_watermark,
    concurrent_poll_lease_takes_give_one_holder,
    a_fenced_watermark_write_never_lands_after_a_takeover,
    only_the_current_claim_of_a_trigger_settles_it,
    renewed_trigger_leases_are_not_taken_over,
    a_clean_stop_hands_back_only_its_own_triggers,
    a_first_token_is_stored_once,
    a_token_is_replaced_only_over_the_version_it_was_read_at,
    concurrent_replaces_from_one_version_land_once,
    accounts_keep_their_own_tokens,
    odd_tokens_round_trip_exactly,
    the_history_keeps_every_decision_and_counts_repeats,
    reversals_are_kept_once_per_refund_exactly,
);

fn rec(uid: &str, decision: DecisionKind, entry: Option<&str>) -> Record {
    Record {
        account: "main".into(),
        uid: uid.into(),
        reference: "SAL-ORD-2026-00001".into(),
        sales_order: Some("SAL-ORD-2026-00001".into()),
        status_code: Some(200),
        amount: Some(Decimal::from_str("2871.74").unwrap()),
        currency: Some("ARS".into()),
        decision,
        reason: "r".into(),
        erp_entry: entry.map(String::from),
        op_created: None,
        seen_at: Timestamp::now(),
        trigger: crate::store::RunTrigger::Sync,
    }
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).unwrap()
}

async fn booked_rows_are_never_downgraded(l: Arc<dyn Ledger>) {
    l.record(&rec("u1", DecisionKind::BookedInitial, Some("ACC-PAY-1")))
        .await
        .unwrap();
    l.record(&rec("u1", DecisionKind::Error, None))
        .await
        .unwrap();
    l.record(&rec("u1", DecisionKind::AlreadyLoaded, Some("ACC-PAY-9")))
        .await
        .unwrap();
    let rows = l.rows("main", &["u1".into(), "nope".into()]).await.unwrap();
    let r = &rows["u1"];
    assert_eq!(r.decision, DecisionKind::BookedInitial);
    assert_eq!(r.erp_entry.as_deref(), Some("ACC-PAY-1"));
    assert_eq!(r.times_seen, 3);
    assert_eq!(r.amount.unwrap().to_string(), "2871.74");
    assert_eq!(rows.len(), 1);
    // A refund replaces only the reason of a booked row.
    let mut refund = rec("u1", DecisionKind::Refunded, None);
    refund.reason = "refunded after booking".into();
    l.record_many(&[refund]).await.unwrap();
    let r = &l.rows("main", &["u1".into()]).await.unwrap()["u1"];
    assert_eq!(r.decision, DecisionKind::BookedInitial);
    assert_eq!(r.reason, "refunded after booking");
    // The booking check still sees it as the order's booking.
    let view = l
        .op_and_order(
            "main",
            "u2",
            Timestamp::now(),
            Some("SAL-ORD-2026-00001"),
            Timestamp::UNIX_EPOCH,
        )
        .await
        .unwrap();
    assert_eq!(view.booked_entry.as_deref(), Some("ACC-PAY-1"));
}

async fn skips_are_updated_and_counted(l: Arc<dyn Ledger>) {
    l.record(&rec("u1", DecisionKind::OrderMissing, None))
        .await
        .unwrap();
    l.record(&rec("u2", DecisionKind::Pending, None))
        .await
        .unwrap();
    l.record(&rec("u1", DecisionKind::BookedInitial, Some("E1")))
        .await
        .unwrap();
    let c = l.counts("main").await.unwrap();
    assert_eq!(c.get(&DecisionKind::BookedInitial), Some(&1));
    assert_eq!(c.get(&DecisionKind::Pending), Some(&1));
    assert_eq!(c.get(&DecisionKind::OrderMissing), None);
    assert!(l.counts("other").await.unwrap().is_empty());
}

/// Only a re-booking turns a booked row back into an unresolved one, and it forgets the
/// cancelled entry; the booking that follows is recorded as usual and keeps the guard value.
async fn a_rebooking_reopens_a_booked_row_and_keeps_its_guard_value(l: Arc<dyn Ledger>) {
    l.record(&rec("u1", DecisionKind::BookedInitial, Some("ACC-PAY-1")))
        .await
        .unwrap();
    let mut reopened = rec("u1", DecisionKind::Error, None);
    reopened.op_created = Some(at(1_000));
    // Not while the row names an entry that was not cancelled (booked meanwhile).
    assert!(
        !l.reopen_for_rebook(&reopened, Some("u1#2"), &["ACC-PAY-0".into()])
            .await
            .unwrap()
    );
    assert_eq!(
        l.rows("main", &["u1".into()]).await.unwrap()["u1"].decision,
        DecisionKind::BookedInitial
    );
    assert!(
        l.reopen_for_rebook(&reopened, Some("u1#2"), &["ACC-PAY-1".into()])
            .await
            .unwrap()
    );
    let r = &l.rows("main", &["u1".into()]).await.unwrap()["u1"];
    assert_eq!(r.decision, DecisionKind::Error);
    assert_eq!(r.erp_entry, None);
    assert_eq!(r.guard_value.as_deref(), Some("u1#2"));
    // Unresolved now: a later payment of the order waits for it.
    let view = l
        .op_and_order(
            "main",
            "u9",
            Timestamp::now(),
            Some("SAL-ORD-2026-00001"),
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert_eq!(
        view.earlier_unresolved.map(|e| e.uid).as_deref(),
        Some("u1")
    );
    l.record(&rec(
        "u1",
        DecisionKind::BookedAdditional,
        Some("ACC-PAY-2"),
    ))
    .await
    .unwrap();
    let r = &l.rows("main", &["u1".into()]).await.unwrap()["u1"];
    assert_eq!(r.decision, DecisionKind::BookedAdditional);
    assert_eq!(r.erp_entry.as_deref(), Some("ACC-PAY-2"));
    assert_eq!(r.guard_value.as_deref(), Some("u1#2"));
    // A row never seen is created by a re-booking.
    assert!(
        l.reopen_for_rebook(&rec("u2", DecisionKind::Error, None), None, &[])
            .await
            .unwrap()
    );
    let rows = l.rows("main", &["u2".into()]).await.unwrap();
    assert_eq!(rows["u2"].decision, DecisionKind::Error);
    assert_eq!(rows["u2"].guard_value, None);
}

/// `record_many` (statements of up to 128 rows on SQLite) leaves exactly the rows `record` one
/// at a time leaves: across a statement boundary (600 rows), and for an operation named three
/// times in one batch — booked, then seen again as already loaded in the same statement and in
/// the next one — which stays booked, seen three times.
async fn a_batch_of_records_lands_as_the_records_one_by_one(l: Arc<dyn Ledger>) {
    const N: i64 = 600;
    let batch = |account: &str| -> Vec<Record> {
        let mut recs: Vec<Record> = (0..N)
            .map(|i| {
                let kind = match i % 3 {
                    0 => DecisionKind::Pending,
                    1 => DecisionKind::BookedInitial,
                    _ => DecisionKind::OrderMissing,
                };
                let entry = (i % 3 == 1).then(|| format!("ACC-PAY-2026-{i:05}"));
                let mut r = rec(&format!("b{i}"), kind, entry.as_deref());
                r.account = account.into();
                r.amount = Some(Decimal::new(i * 101, 2));
                r.reason = format!("reason {i}");
                r
            })
            .collect();
        let mut again = recs[1].clone();
        again.decision = DecisionKind::AlreadyLoaded;
        again.erp_entry = None;
        again.reason = "seen again".into();
        recs.insert(2, again.clone());
        recs.push(again);
        recs
    };
    for r in batch("one") {
        l.record(&r).await.unwrap();
    }
    l.record_many(&batch("many")).await.unwrap();
    let ids: Vec<String> = (0..N).map(|i| format!("b{i}")).collect();
    let one = l.rows("one", &ids).await.unwrap();
    let many = l.rows("many", &ids).await.unwrap();
    assert_eq!(many.len(), N as usize);
    for id in &ids {
        let (a, b) = (&one[id], &many[id]);
        assert_eq!(
            (a.decision, &a.reason, &a.erp_entry, a.amount, a.times_seen),
            (b.decision, &b.reason, &b.erp_entry, b.amount, b.times_seen),
            "{id}"
        );
    }
    let twice = &many["b1"];
    assert_eq!(twice.decision, DecisionKind::BookedInitial);
    assert_eq!(twice.erp_entry.as_deref(), Some("ACC-PAY-2026-00001"));
    assert_eq!(twice.times_seen, 3);
}

/// A batch shorter than the one before it writes its own rows and nothing of the earlier one's
/// (on SQLite both go through the same prepared statement, the shorter one leaving rows spare).
async fn a_short_batch_after_a_longer_one_writes_only_its_own_rows(l: Arc<dyn Ledger>) {
    let long: Vec<Record> = (0..7)
        .map(|i| rec(&format!("long{i}"), DecisionKind::Pending, None))
        .collect();
    l.record_many(&long).await.unwrap();
    l.record_many(&[rec("short", DecisionKind::OrderMissing, None)])
        .await
        .unwrap();
    let mut ids: Vec<String> = (0..7).map(|i| format!("long{i}")).collect();
    ids.push("short".into());
    let rows = l.rows("main", &ids).await.unwrap();
    assert_eq!(rows.len(), 8);
    for id in &ids[..7] {
        assert_eq!(
            (rows[id].decision, rows[id].times_seen),
            (DecisionKind::Pending, 1),
            "{id}"
        );
    }
    assert_eq!(rows["short"].decision, DecisionKind::OrderMissing);
    assert_eq!(rows["short"].times_seen, 1);
}

/// Amounts come back as the exact decimals written, scale included; a row recorded without an
/// amount keeps the one it had.
async fn amounts_stay_exact(l: Arc<dyn Ledger>) {
    let amounts = ["0.10", "2871.740", "12345678901234567.8901", "-3.5", "7"];
    let recs: Vec<Record> = amounts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut r = rec(&format!("a{i}"), DecisionKind::Pending, None);
            r.amount = Some(Decimal::from_str(a).unwrap());
            r
        })
        .collect();
    l.record_many(&recs).await.unwrap();
    let mut none = rec("a0", DecisionKind::Pending, None);
    none.amount = None;
    l.record(&none).await.unwrap();
    let ids: Vec<String> = (0..amounts.len()).map(|i| format!("a{i}")).collect();
    let rows = l.rows("main", &ids).await.unwrap();
    for (i, a) in amounts.iter().enumerate() {
        assert_eq!(rows[&ids[i]].amount.unwrap().to_string(), *a);
    }
}

/// `op_and_order`'s three parts: the operation's own row; an entry of the order booked at or
/// after `booked_since` (any account); the oldest earlier operation of the order (any account,
/// ties on the creation time broken by uid) whose decision holds later payments back.
async fn the_booking_check_sees_the_row_a_recent_booking_and_the_oldest_earlier_unresolved(
    l: Arc<dyn Ledger>,
) {
    let so = "SO-1";
    let mut put = Vec::new();
    for (account, uid, decision, created, seen, entry) in [
        // Earlier unresolved: "b" and "c" tie on time; "b" < "c"; "z1" is later than the asked one.
        ("other", "c", DecisionKind::Waiting, 100, 100, None),
        ("main", "b", DecisionKind::Error, 100, 100, None),
        ("main", "z1", DecisionKind::OrderMissing, 300, 300, None),
        // Not holding back: pending and skipped payments.
        ("main", "a", DecisionKind::Pending, 50, 50, None),
        // Booked at 150.
        (
            "other",
            "k",
            DecisionKind::BookedInitial,
            90,
            150,
            Some("E-K"),
        ),
        // The asked one itself (unresolved, not its own predecessor).
        ("main", "me", DecisionKind::Error, 200, 200, None),
    ] {
        let mut r = rec(uid, decision, entry);
        r.account = account.into();
        r.sales_order = Some(so.into());
        r.op_created = Some(at(created));
        r.seen_at = at(seen);
        put.push(r);
    }
    l.record_many(&put).await.unwrap();
    let v = l
        .op_and_order("main", "me", at(200), Some(so), at(150))
        .await
        .unwrap();
    assert_eq!(v.row.as_ref().map(|r| r.uid.as_str()), Some("me"));
    assert_eq!(v.booked_entry.as_deref(), Some("E-K"));
    let e = v.earlier_unresolved.unwrap();
    assert_eq!((e.uid.as_str(), e.decision), ("b", DecisionKind::Error));
    // A booking before `booked_since` is what the ERP already said: not reported.
    let v = l
        .op_and_order("main", "me", at(200), Some(so), at(151))
        .await
        .unwrap();
    assert_eq!(v.booked_entry, None);
    // Ties on the creation time: only smaller uids are earlier ("b" is not earlier than "b").
    let v = l
        .op_and_order("main", "b", at(100), Some(so), at(0))
        .await
        .unwrap();
    assert_eq!(
        v.earlier_unresolved.map(|e| e.uid).as_deref(),
        None,
        "c (other account, same time) sorts after b"
    );
    let v = l
        .op_and_order("other", "c", at(100), Some(so), at(0))
        .await
        .unwrap();
    assert_eq!(v.earlier_unresolved.map(|e| e.uid).as_deref(), Some("b"));
    // No order: only the row.
    let v = l
        .op_and_order("main", "nobody", at(200), None, at(0))
        .await
        .unwrap();
    assert_eq!(v, Default::default());

    // All the questions at once (a batch's re-read): the same answers, in the same order,
    // repeated questions included.
    let q = |uid: &str, created: i64, order: Option<&str>, since: i64| ViewQuery {
        uid: uid.into(),
        created: at(created),
        sales_order: order.map(str::to_string),
        booked_since: at(since),
    };
    for (account, queries) in [
        (
            "main",
            vec![
                q("me", 200, Some(so), 150),
                q("me", 200, Some(so), 151),
                q("b", 100, Some(so), 0),
                q("nobody", 200, None, 0),
                q("nobody", 200, Some(so), 0),
                q("z1", 300, Some(so), 0),
                q("me", 200, Some(so), 150),
            ],
        ),
        (
            "other",
            vec![q("c", 100, Some(so), 0), q("k", 90, Some(so), 0)],
        ),
        ("main", vec![]),
    ] {
        let mut one_by_one = Vec::new();
        for x in &queries {
            let v = l
                .op_and_order(
                    account,
                    &x.uid,
                    x.created,
                    x.sales_order.as_deref(),
                    x.booked_since,
                )
                .await
                .unwrap();
            one_by_one.push(v);
        }
        let all = l.views(account, &queries).await.unwrap();
        assert_eq!(all, one_by_one, "{account}: {queries:?}");
    }
}

async fn unresolved_payments_of_orders_come_oldest_first(l: Arc<dyn Ledger>) {
    let mut put = Vec::new();
    for (uid, so, decision, created) in [
        ("u3", "SO-A", DecisionKind::Waiting, Some(300)),
        ("u1", "SO-B", DecisionKind::Error, Some(100)),
        ("u2", "SO-A", DecisionKind::OrderNotPayable, Some(200)),
        ("u0", "SO-A", DecisionKind::OrderMissing, None),
        ("ok", "SO-A", DecisionKind::BookedInitial, Some(50)),
        ("far", "SO-C", DecisionKind::Error, Some(10)),
    ] {
        let mut r = rec(uid, decision, None);
        r.sales_order = Some(so.into());
        r.op_created = created.map(at);
        put.push(r);
    }
    let mut elsewhere = rec("x", DecisionKind::Error, None);
    elsewhere.account = "other".into();
    elsewhere.sales_order = Some("SO-A".into());
    put.push(elsewhere);
    l.record_many(&put).await.unwrap();
    let orders = ["SO-A".to_string(), "SO-B".to_string()];
    let got = l.unresolved_in_orders("main", &orders, 10).await.unwrap();
    let pair = |u: &str, s: &str| (u.to_string(), s.to_string());
    assert_eq!(
        got,
        vec![
            pair("u0", "SO-A"),
            pair("u1", "SO-B"),
            pair("u2", "SO-A"),
            pair("u3", "SO-A")
        ]
    );
    assert_eq!(
        l.unresolved_in_orders("main", &orders, 2)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        l.unresolved_in_orders("main", &[], 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Due again one minute after the first sighting, two after the second, ... at most a day;
/// resolved rows never.
async fn retries_back_off_with_how_often_an_operation_was_seen(l: Arc<dyn Ledger>) {
    let t0 = at(1_000_000);
    let seen = |uid: &str, decision, times: usize| {
        let l = l.clone();
        let uid = uid.to_string();
        async move {
            for _ in 0..times {
                let mut r = rec(&uid, decision, None);
                r.seen_at = t0;
                l.record(&r).await.unwrap();
            }
        }
    };
    seen("once", DecisionKind::Waiting, 1).await;
    seen("twice", DecisionKind::OrderMissing, 2).await;
    seen("often", DecisionKind::Error, 30).await;
    seen("booked", DecisionKind::BookedInitial, 1).await;
    seen("pending", DecisionKind::Pending, 1).await;
    let due = |after: SignedDuration| {
        let l = l.clone();
        async move { l.retryable("main", t0 + after, 10).await.unwrap() }
    };
    assert!(due(SignedDuration::from_secs(59)).await.is_empty());
    assert_eq!(due(SignedDuration::from_secs(60)).await, ["once"]);
    let mut two = due(SignedDuration::from_secs(120)).await;
    two.sort();
    assert_eq!(two, ["once", "twice"]);
    assert_eq!(due(SignedDuration::from_hours(23)).await.len(), 2);
    assert_eq!(due(SignedDuration::from_hours(24)).await.len(), 3);
    assert_eq!(
        l.retryable("main", t0 + SignedDuration::from_hours(24), 1)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn latest_rows_come_newest_first(l: Arc<dyn Ledger>) {
    for (uid, second) in [("old", 10), ("new", 30), ("mid", 20)] {
        let mut r = rec(uid, DecisionKind::Pending, None);
        r.seen_at = at(second);
        l.record(&r).await.unwrap();
    }
    let got: Vec<String> = l
        .latest("main", DecisionKind::Pending, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uid)
        .collect();
    assert_eq!(got, ["new", "mid"]);
    let r = &l.latest("main", DecisionKind::Pending, 1).await.unwrap()[0];
    assert_eq!((r.first_seen, r.last_seen), (at(30), at(30)));
}
