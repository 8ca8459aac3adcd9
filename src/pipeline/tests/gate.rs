//! One booking at a time per order (invariant 2): the in-process lock, the cross-process claim,
//! a claim that lapses before a create, a takeover that waits out the previous holder's creates.
//!
//! The lock is tested on tokio's paused time. Claims live in the ledger, and sqlx's pool cannot
//! run on paused time (it waits on tokio timers while SQLite works on its own threads, so the
//! clock would jump past them): those tests run on real time, with waits of a second or less.

use std::time::Duration;

use jiff::Timestamp;
use tokio::time::{Instant, timeout};

use crate::claims::{ClaimTiming, order_key};
use crate::domain::DecisionKind as K;
use crate::pipeline::RunOptions;
use crate::pipeline::fakes::{Harness, entry_for, op, paid};
use crate::pipeline::write::Booking;

const A: &str = "SAL-ORD-2026-00001";
const B: &str = "SAL-ORD-2026-00002";

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn timing(ttl: Duration, wait: Duration) -> ClaimTiming {
    ClaimTiming {
        ttl,
        wait,
        commit_horizon: Duration::ZERO,
    }
}

/// A second group of an order waits until the first leaves the order's gate; another order's
/// group does not wait.
#[tokio::test]
async fn one_group_at_a_time_per_order_in_a_process() {
    let h = Harness::paused(|e| e).await;
    let first = h.engine.enter_gate(Some(A), 0).await;
    let second = h.engine.enter_gate(Some(A), 0);
    tokio::pin!(second);
    let second_waits = timeout(Duration::from_secs(60), &mut second).await;
    assert!(
        second_waits.is_err(),
        "entered while the first group held it"
    );
    let other = timeout(Duration::from_secs(1), h.engine.enter_gate(Some(B), 0)).await;
    assert!(other.is_ok(), "another order's gate is free");
    first.leave(None).await;
    let entered = timeout(Duration::from_secs(1), second).await;
    assert!(entered.is_ok(), "the first group left");
}

/// Another live process holds the order's claim: the group waits for it up to `wait`, books
/// nothing, and leaves the operation unresolved with why.
#[tokio::test]
async fn a_claim_another_live_process_holds_is_waited_for_then_given_up() {
    let t = timing(Duration::from_secs(120), ms(500));
    let h = Harness::with(|e| e.with_claim_timing(t)).await;
    h.erp.add_order(A, "1000");
    let other = h.second_process(|e| e.with_claim_timing(t));
    other.claims.take(&order_key(A)).await.unwrap();

    let started = Instant::now();
    let s = h.run(vec![op("p1", A, paid(), "100", 10)]).await;
    assert!(started.elapsed() >= ms(500), "waited for the claim");
    assert_eq!(s.get(K::Error), 1, "{s}");
    let row = h.row("p1").await;
    assert!(
        row.reason
            .contains("is being booked by another paysync process"),
        "{}",
        row.reason
    );
    assert!(h.erp.created_uids().is_empty());
}

/// The other process lets go within the wait: the group takes the claim and books.
#[tokio::test]
async fn a_claim_let_go_within_the_wait_is_taken_and_the_order_booked() {
    let t = timing(Duration::from_secs(120), Duration::from_secs(30));
    let h = Harness::with(|e| e.with_claim_timing(t)).await;
    h.erp.add_order(A, "1000");
    let other = h.second_process(|e| e.with_claim_timing(t));
    let key = order_key(A);
    other.claims.take(&key).await.unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(ms(300)).await;
        other.claims.release(&[key]).await;
    });

    let started = Instant::now();
    let s = h.run(vec![op("p1", A, paid(), "100", 10)]).await;
    release.await.unwrap();
    assert!(started.elapsed() >= ms(300));
    assert_eq!(s.get(K::BookedInitial), 1, "{s}");
    assert_eq!(h.erp.created_uids(), ["p1"]);
}

/// The order's claim lapsed while the group waited (for a write slot, say) and another process
/// took it: the create is not sent.
#[tokio::test]
async fn a_claim_that_lapsed_before_the_create_aborts_it() {
    let ttl = ms(400);
    let h = Harness::with(|e| e.with_claim_timing(timing(ttl, ms(100)))).await;
    let ctx = h.ctx(&RunOptions::default()).await;
    let mut gate = h.engine.enter_gate(Some(A), 0).await;
    gate.claim(&ctx, None).await.unwrap();
    let p1 = op("p1", A, paid(), "100", 10);

    // Held, and renewed by the heartbeat, past the claim's ttl.
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(gate.lapsed().await, None);

    // Another process finds it expired (as if this one had stalled) and takes it; this one's
    // memory of the last renewal goes stale.
    let key = order_key(A);
    let far = Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let taken = h.ledger.try_claim("erp", &key, "elsewhere:1:1", far, ttl);
    assert!(taken.await.unwrap().is_some());
    tokio::time::sleep(ttl).await;

    let booking = Booking::new(K::BookedInitial, entry_for(&p1, A));
    let v = h.engine.write(&ctx, &gate, &p1, booking).await;
    assert_eq!(v.kind, K::Error);
    assert!(v.reason.contains("the claim lapsed"), "{}", v.reason);
    assert!(h.erp.created_uids().is_empty(), "nothing was sent");
}

/// A claim taken over from an expired holder: its create may still commit until the commit
/// horizon after it could last have sent one. The group waits that out, asks the ERP again and
/// finds the entry, instead of booking the payment a second time.
#[tokio::test]
async fn a_takeover_waits_out_the_previous_holders_creates_then_asks_again() {
    let h = Harness::with(|e| e.with_commit_horizon(ms(1500))).await;
    h.erp.add_order(A, "1000");
    let p1 = op("p1", A, paid(), "100", 10);
    // A holder on another host whose claim ran out 0.5 s ago: its creates may commit until 1 s
    // from now; one does, 0.5 s from now.
    let ttl = Duration::from_secs(120);
    let ran_out = jiff::SignedDuration::try_from(ttl + ms(500)).unwrap();
    let key = order_key(A);
    let held = (h.ledger).try_claim(
        "erp",
        &key,
        "elsewhere:1:1",
        Timestamp::now() - ran_out,
        ttl,
    );
    assert!(held.await.unwrap().is_some());
    h.erp.commit_later(entry_for(&p1, A), ms(500));

    let started = Instant::now();
    let s = h.run(vec![p1]).await;
    let waited = started.elapsed();
    assert!(waited >= ms(900), "waited {waited:?}");
    assert_eq!(s.get(K::AlreadyLoaded), 1, "{s}");
    assert!(h.erp.created_uids().is_empty(), "not booked a second time");
    assert_eq!(h.erp.entry_count(), 1);
}

/// A batch's records wait for its end, and until then each order whose record waits stays
/// locked in this process (parked with the batch): a second trigger of the same payment — whose
/// look at the ERP predates the create — gets the order only once the batch wrote its rows, on
/// the second trigger's demand, without waiting for the batch's other orders, and finds the
/// payment booked. One create.
#[tokio::test]
async fn a_batchs_records_are_written_before_anyone_else_gets_their_order() {
    let h = Harness::new().await;
    h.erp.add_order(A, "1000");
    h.erp.add_order(B, "1000");
    let (pa, pb) = (
        op("pa", A, paid(), "100", 10),
        op("pb", B, paid(), "100", 11),
    );
    let (a_reached, a_release) = h.erp.hold("pa");
    let (b_reached, b_release) = h.erp.hold("pb");

    let first = h.run(vec![pa.clone(), pb.clone()]);
    let second = async {
        a_reached.notified().await;
        b_reached.notified().await;
        let again = h.run(vec![pa.clone()]);
        tokio::pin!(again);
        tokio::select! {
            _ = h.erp.lookups_reach(2) => {}
            s = &mut again => panic!("the second trigger ended before asking the ERP: {s}"),
        }
        // pa commits and its group ends; pb's create holds the batch open.
        a_release.notify_one();
        let second = timeout(Duration::from_secs(10), &mut again)
            .await
            .expect("the second trigger waited for the whole batch");
        let rows = h.ledger.rows("main", &["pb".to_string()]).await.unwrap();
        assert!(rows.is_empty(), "pb is still being booked: {rows:?}");
        b_release.notify_one();
        second
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.get(K::BookedInitial), 2, "{first}");
    assert_eq!(second.get(K::AlreadyLoaded), 1, "{second}");
    let mut created = h.erp.created_uids();
    created.sort();
    assert_eq!(created, ["pa", "pb"], "pa created once");
    assert_eq!(h.row("pa").await.decision, K::BookedInitial);
    assert_eq!(h.row("pb").await.decision, K::BookedInitial);
}

/// A batch's read of the ledger is not trusted once another run held the order since: run 2
/// reads the ERP and the ledger while run 1 has booked the order's first payment but not yet
/// written it (its batch is still open); once run 1 writes it and lets go (asked for the order),
/// run 2 reads its payment's view again under the lock, sees the first payment booked, and books
/// the second as additional.
#[tokio::test]
async fn a_batchs_read_is_not_trusted_after_another_run_held_the_order() {
    let h = Harness::new().await;
    h.erp.add_order(A, "1000");
    h.erp.add_order(B, "1000");
    let (p1, pb) = (
        op("p1", A, paid(), "100", 10),
        op("pb", B, paid(), "100", 11),
    );
    let p2 = op("p2", A, paid(), "100", 20);
    let (a_reached, a_release) = h.erp.hold("p1");
    let (b_reached, b_release) = h.erp.hold("pb");

    let first = h.run(vec![p1, pb]);
    let second = async {
        a_reached.notified().await;
        b_reached.notified().await;
        let again = h.run(vec![p2]);
        tokio::pin!(again);
        tokio::select! {
            _ = h.erp.lookups_reach(2) => {}
            s = &mut again => panic!("run 2 ended before asking the ERP: {s}"),
        }
        // p1 commits; run 1's batch stays open (pb), keeping p1's row and A's lock until run 2
        // asks for A.
        a_release.notify_one();
        let second = timeout(Duration::from_secs(10), &mut again)
            .await
            .expect("run 2 waited for run 1's whole batch");
        b_release.notify_one();
        second
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.get(K::BookedInitial), 2, "{first}");
    assert_eq!(second.get(K::BookedAdditional), 1, "{second}");
    assert_eq!(h.row("p2").await.decision, K::BookedAdditional);
    let initial_of_a = h.erp.with(|s| {
        (s.entries.iter())
            .filter(|e| {
                e.entry
                    .allocation
                    .as_ref()
                    .is_some_and(|a| a.sales_order == A)
            })
            .count()
    });
    assert_eq!(initial_of_a, 1, "one entry allocated to {A}");
}

/// A booking the ledger could not record leaves the order's claim to lapse instead of letting
/// go of it: the next holder must not trust the ledger's silence (its ERP facts may predate the
/// entry), so it takes the claim over and waits out the commit horizon first. Both ways a group
/// holds a claim: the batch's, and its own (another process held the order when the batch
/// claimed).
#[tokio::test]
async fn a_booking_the_ledger_could_not_record_leaves_its_claim_to_lapse() {
    let t = ClaimTiming {
        ttl: ms(300),
        wait: Duration::from_secs(5),
        commit_horizon: Duration::from_secs(60),
    };
    for own_claim in [false, true] {
        let h = Harness::with(|e| e.with_claim_timing(t)).await;
        h.erp.add_order(A, "1000");
        h.refuse_records().await;
        let key = order_key(A);
        let release = if own_claim {
            let other = h.second_process(|e| e.with_claim_timing(t));
            other.claims.take(&key).await.unwrap();
            Some(tokio::spawn(async move {
                tokio::time::sleep(ms(200)).await;
                other.claims.release(&[key]).await;
            }))
        } else {
            None
        };
        let s = h.run(vec![op("p1", A, paid(), "100", 10)]).await;
        if let Some(r) = release {
            r.await.unwrap();
        }
        assert_eq!(
            h.erp.created_uids(),
            ["p1"],
            "booked (own claim: {own_claim})"
        );
        assert!(
            s.failures.iter().any(|f| f.contains("p1")),
            "the lost record is reported: {:?}",
            s.failures
        );
        let key = order_key(A);
        assert!(
            h.ledger.claim_holder("erp", &key).await.unwrap().is_some(),
            "the claim is left in place (own claim: {own_claim})"
        );
        tokio::time::sleep(t.ttl * 2).await;
        let next = h.second_process(|e| e.with_claim_timing(t));
        next.claims.take(&key).await.unwrap();
        assert!(
            next.claims.takeover_wait(&key).is_some(),
            "the next holder waits out the horizon (own claim: {own_claim})"
        );
    }
}

/// A booking the ledger refused to record (a lost deadlock, a full disk), then another run of
/// the same process for the same payment whose ERP facts predate that create (here: the fake
/// ERP forgets the entry, as a lookup sent before the commit would): the process remembers its
/// own unrecorded booking and records it as already loaded instead of booking it again.
#[tokio::test]
async fn a_booking_the_ledger_refused_is_not_booked_again_by_the_same_process() {
    let h = Harness::new().await;
    h.erp.add_order(A, "1000");
    h.refuse_records().await;
    let p1 = op("p1", A, paid(), "100", 10);
    let s = h.run(vec![p1.clone()]).await;
    assert_eq!(s.get(K::BookedInitial), 1, "{s}");
    let entry = h.erp.with(|s| s.entries[0].name.clone());
    h.allow_records().await;
    // The second run's lookups predate the first create's commit.
    let held = h.erp.with(|s| std::mem::take(&mut s.entries));
    let s = h.run(vec![p1]).await;
    h.erp.with(|s| s.entries = held);
    assert_eq!(h.erp.created_uids(), ["p1"], "created once: {s}");
    assert_eq!(s.get(K::AlreadyLoaded), 1, "{s}");
    let row = h.row("p1").await;
    assert_eq!(
        row.erp_entry.as_deref(),
        Some(entry.as_str()),
        "{}",
        row.reason
    );
}
