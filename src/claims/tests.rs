//! Claims: the clock they read, and when a claim is no confirmation any more — an answer that
//! came back after a pause, a claim that lapsed and was taken again.
//!
//! On real time: sqlx's pool cannot run on tokio's paused time (see `pipeline/tests/gate.rs`).
//! The waits are a few lease lengths of 300 ms.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::*;
use crate::clock::TokioClock;

/// Claims read "now" from the clock they are given: a claim taken on a clock 26 years behind
/// the wall clock expired long ago for a process on the wall clock, which takes it at once;
/// one taken on the wall clock is live for the clock behind.
#[tokio::test]
async fn claims_read_now_from_the_given_clock() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let ledger = crate::store::open(&url).await.unwrap();
    let timing = ClaimTiming::default();
    let past = TokioClock::starting_at("2000-01-01T00:00:00Z".parse().unwrap());
    let behind = Claims::new(ledger.clone(), "a:1:1".into(), timing).with_clock(past.clone());
    let key = order_key("SAL-ORD-1");
    let taken = behind.take_many(std::slice::from_ref(&key)).await.unwrap();
    assert!(taken.contains_key(&key));

    let now = Claims::new(ledger.clone(), "b:2:2".into(), timing);
    let taken = now.take_many(std::slice::from_ref(&key)).await.unwrap();
    assert!(
        taken.contains_key(&key),
        "a claim that expired in 2000 is free now"
    );
    assert_eq!(
        now.takeover_wait(&key),
        None,
        "its creates settled long ago"
    );

    // And the other way round: on the wall clock the claim is live for the clock behind.
    let key2 = order_key("SAL-ORD-2");
    assert!(
        now.take_many(std::slice::from_ref(&key2))
            .await
            .unwrap()
            .contains_key(&key2)
    );
    assert!(
        behind
            .take_many(std::slice::from_ref(&key2))
            .await
            .unwrap()
            .is_empty()
    );
}

const TTL: Duration = Duration::from_millis(300);

fn timing() -> ClaimTiming {
    ClaimTiming {
        ttl: TTL,
        wait: Duration::ZERO,
        commit_horizon: Duration::ZERO,
    }
}

async fn sqlite_ledger(dir: &tempfile::TempDir) -> Arc<dyn crate::store::Ledger> {
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    crate::store::open(&url).await.unwrap()
}

/// The ledger as one process sees it: its answers to a take held back for `answer_delay` after
/// the statement ran (the process was paused, or starved, while the answer waited in its
/// socket), or every call refused while `cut_off` (the process was cut off from the database).
struct AsSeenBy {
    inner: Arc<dyn crate::store::Ledger>,
    answer_delay: Duration,
    cut_off: AtomicBool,
}

impl AsSeenBy {
    fn new(inner: Arc<dyn crate::store::Ledger>, answer_delay: Duration) -> Arc<AsSeenBy> {
        Arc::new(AsSeenBy {
            inner,
            answer_delay,
            cut_off: AtomicBool::new(false),
        })
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.cut_off.load(Ordering::SeqCst) {
            return Err(StoreError::Unanswered(Duration::from_secs(5)));
        }
        Ok(())
    }
}

#[async_trait]
impl Leases for AsSeenBy {
    async fn try_claim_many(
        &self,
        account: &str,
        keys: &[String],
        holder: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<HashMap<String, Option<Timestamp>>, StoreError> {
        self.check()?;
        let taken = self
            .inner
            .try_claim_many(account, keys, holder, now, ttl)
            .await;
        tokio::time::sleep(self.answer_delay).await;
        taken
    }
    async fn renew_claims(
        &self,
        account: &str,
        keys: &[String],
        holder: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Vec<String>, StoreError> {
        self.check()?;
        self.inner
            .renew_claims(account, keys, holder, now, ttl)
            .await
    }
    async fn release_claims(
        &self,
        account: &str,
        keys: &[String],
        holder: &str,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.release_claims(account, keys, holder).await
    }
    async fn claim_holder(&self, account: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.check()?;
        self.inner.claim_holder(account, key).await
    }
}

/// A take whose answer reached its process only after the claim had lapsed and another process
/// had taken it (and, the second time, booked and let go of it): it confirms nothing — the
/// claim counts from when the take was asked, so the create asks the ledger, which says no.
#[tokio::test]
async fn a_take_answered_after_a_pause_confirms_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sqlite_ledger(&dir).await;
    for let_go in [false, true] {
        let key = order_key(if let_go { "SAL-ORD-2" } else { "SAL-ORD-1" });
        let paused = Claims::new(
            AsSeenBy::new(ledger.clone(), TTL * 3),
            "b:1:1".into(),
            timing(),
        );
        let other = Claims::new(ledger.clone(), "a:2:2".into(), timing());
        let late = {
            let key = key.clone();
            tokio::spawn(async move {
                let taken = paused.take_many(std::slice::from_ref(&key)).await.unwrap();
                (paused, taken)
            })
        };
        // The row is the paused process's from the statement on: the other one gets it once
        // it lapsed.
        tokio::time::sleep(TTL + TTL / 2).await;
        let holding = other.take(&key).await.unwrap();
        assert!(other.taken_over(&key), "taken from the lapsed holder");
        if let_go {
            other.release(std::slice::from_ref(&key)).await;
        } else {
            assert!(other.still_held(&key, holding).await);
        }
        let (paused, taken) = late.await.unwrap();
        let Some(&late_holding) = taken.get(&key) else {
            panic!("the take succeeded when it ran");
        };
        assert!(
            !paused.still_held(&key, late_holding).await,
            "a confirmation that arrived after the claim lapsed (let go by the other: {let_go})"
        );
    }
}

/// A process cut off from the database past its lease: another takes the claim, books and lets
/// go; back, the first process takes the claim afresh for a new batch. The row names it again,
/// but a group that claimed before the cut books nothing on what it read then (a new holding);
/// the new batch's group does. Without anyone in between, a renewal after a possible lapse
/// starts a new holding as well: whether it lapsed cannot be told.
#[tokio::test]
async fn a_claim_taken_again_after_a_lapse_is_a_new_holding() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sqlite_ledger(&dir).await;
    let seen = AsSeenBy::new(ledger.clone(), Duration::ZERO);
    let cut = Claims::new(seen.clone(), "b:1:1".into(), timing());
    let other = Claims::new(ledger.clone(), "a:2:2".into(), timing());
    let key = order_key("SAL-ORD-1");

    let before = cut.take(&key).await.unwrap();
    // Renewed by the heartbeat past the ttl: one holding.
    tokio::time::sleep(TTL * 2).await;
    assert!(cut.still_held(&key, before).await, "held all along");

    seen.cut_off.store(true, Ordering::SeqCst);
    tokio::time::sleep(TTL * 2).await;
    let theirs = other.take(&key).await.unwrap();
    assert!(other.still_held(&key, theirs).await);
    other.release(std::slice::from_ref(&key)).await;
    seen.cut_off.store(false, Ordering::SeqCst);

    let taken = cut.take_many(std::slice::from_ref(&key)).await.unwrap();
    let again = taken[&key];
    assert_ne!(again, before, "a new holding");
    assert!(
        !cut.still_held(&key, before).await,
        "the group from before the lapse must not create"
    );
    assert!(
        cut.still_held(&key, again).await,
        "the new batch's group may"
    );

    // Cut off again, nobody in between: the heartbeat's renewal afterwards cannot tell.
    seen.cut_off.store(true, Ordering::SeqCst);
    tokio::time::sleep(TTL * 2).await;
    seen.cut_off.store(false, Ordering::SeqCst);
    assert!(
        !cut.still_held(&key, again).await,
        "may have lapsed: not trusted"
    );
}

/// A claim taken over from an expired holder: facts read before that holder's creates could
/// last commit (its expiry plus the commit horizon) are stale — also after this process let the
/// claim go again, for a run that read them ahead and takes the claim afresh; facts read after
/// that moment are not, nor are any about an order never taken over.
#[tokio::test]
async fn facts_read_before_a_takeover_stay_stale_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sqlite_ledger(&dir).await;
    let t = ClaimTiming {
        ttl: TTL,
        wait: Duration::ZERO,
        commit_horizon: Duration::from_millis(200),
    };
    let key = order_key("SAL-ORD-1");
    let gone = Claims::new(ledger.clone(), "dead:1:1".into(), t);
    gone.take(&key).await.unwrap();
    // It dies: no heartbeat renews its claim any more.
    drop(gone);
    let before = Timestamp::now();
    tokio::time::sleep(TTL + TTL / 2).await;
    let us = Claims::new(ledger.clone(), "b:2:2".into(), t);
    us.take(&key).await.unwrap();
    assert!(us.taken_over(&key));
    assert!(
        us.facts_predate_takeover(&key, before),
        "read while its creates could commit"
    );
    us.release(std::slice::from_ref(&key)).await;
    assert!(
        us.facts_predate_takeover(&key, before),
        "let go since: still stale"
    );
    tokio::time::sleep(t.commit_horizon).await;
    assert!(
        !us.facts_predate_takeover(&key, Timestamp::now()),
        "read after the horizon"
    );
    assert!(!us.facts_predate_takeover(&order_key("SAL-ORD-2"), before));
}
