//! Several instances on one ledger, on every backend: the poll lease and its fencing of the
//! watermark, and trigger leases that only their current holder settles (run by
//! `on_every_backend!` in `conformance.rs`). Instances are holder names; "now" is passed in, so
//! a lapse is a later instant, not a sleep.

use std::sync::Arc;
use std::time::Duration;

use super::at;
use crate::store::Ledger;

const TTL: Duration = Duration::from_secs(30);

pub(super) async fn a_poll_lease_has_one_holder_and_fences_the_watermark(l: Arc<dyn Ledger>) {
    let a = l
        .take_poll_lease("main", "a", at(1_000), TTL)
        .await
        .unwrap()
        .expect("free");
    // One poll at a time, even for the same holder; another account is another lease.
    assert_eq!(
        l.take_poll_lease("main", "a", at(1_001), TTL)
            .await
            .unwrap(),
        None
    );
    assert!(
        l.take_poll_lease("other", "b", at(1_001), TTL)
            .await
            .unwrap()
            .is_some()
    );
    // Renewed at 1010: live until 1040 for everyone else.
    assert!(l.renew_poll_lease(&a, at(1_010), TTL).await.unwrap());
    assert_eq!(
        l.take_poll_lease("main", "b", at(1_039), TTL)
            .await
            .unwrap(),
        None
    );
    let b = l
        .take_poll_lease("main", "b", at(1_041), TTL)
        .await
        .unwrap()
        .expect("lapsed: taken over");
    assert!(b.token > a.token, "{b:?} after {a:?}");
    // The lapsed holder wakes up: it can neither move the watermark nor renew nor release.
    assert!(!l.set_watermark(&a, at(500)).await.unwrap());
    assert_eq!(l.watermark("main").await.unwrap(), None);
    assert!(!l.renew_poll_lease(&a, at(1_042), TTL).await.unwrap());
    l.release_poll_lease(&a).await.unwrap();
    assert_eq!(
        l.take_poll_lease("main", "c", at(1_042), TTL)
            .await
            .unwrap(),
        None,
        "b still holds it"
    );
    assert!(l.set_watermark(&b, at(400)).await.unwrap());
    assert_eq!(l.watermark("main").await.unwrap(), Some(at(400)));
    // Released: the next take needs no wait, and fences the releaser out.
    l.release_poll_lease(&b).await.unwrap();
    let c = l
        .take_poll_lease("main", "c", at(1_043), TTL)
        .await
        .unwrap()
        .expect("released");
    assert!(c.token > b.token);
    assert!(!l.set_watermark(&b, at(900)).await.unwrap());
    assert!(l.set_watermark(&c, at(300)).await.unwrap());
    assert_eq!(
        l.watermark("main").await.unwrap(),
        Some(at(400)),
        "never backwards"
    );
}

/// Many instances taking one account's lease at once: one gets it; once it lapses, one again,
/// with a greater token.
pub(super) async fn concurrent_poll_lease_takes_give_one_holder(l: Arc<dyn Ledger>) {
    let mut last_token = 0;
    for round in 0..3i64 {
        let now = at(1_000 + round * 100);
        let takers: Vec<_> = (0..8)
            .map(|i| {
                let l = l.clone();
                tokio::spawn(async move {
                    l.take_poll_lease("main", &format!("i{i}"), now, TTL)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut won = Vec::new();
        for t in takers {
            won.extend(t.await.unwrap());
        }
        assert_eq!(won.len(), 1, "round {round}: {won:?}");
        assert!(won[0].token > last_token);
        last_token = won[0].token;
    }
}

/// A lapsed holder's watermark write racing a takeover: whichever commits first, once the new
/// holder has its lease, the watermark it reads is the one that stays (a late write from the
/// old holder never lands after the takeover).
pub(super) async fn a_fenced_watermark_write_never_lands_after_a_takeover(l: Arc<dyn Ledger>) {
    let mut landed = 0;
    for round in 0..60i64 {
        let now = at(10_000 + round * 100);
        let old = l
            .take_poll_lease("main", "old", now, TTL)
            .await
            .unwrap()
            .expect("free");
        let lapsed = now + jiff::SignedDuration::from_secs(31);
        let writer = {
            let l = l.clone();
            let old = old.clone();
            tokio::spawn(async move { l.set_watermark(&old, at(round * 10 + 5)).await.unwrap() })
        };
        let taker = {
            let l = l.clone();
            tokio::spawn(async move {
                let new = l
                    .take_poll_lease("main", "new", lapsed, TTL)
                    .await
                    .unwrap()
                    .expect("lapsed");
                let seen = l.watermark("main").await.unwrap();
                (new, seen)
            })
        };
        let wrote = writer.await.unwrap();
        let (new, seen) = taker.await.unwrap();
        landed += usize::from(wrote);
        assert_eq!(
            l.watermark("main").await.unwrap(),
            seen,
            "round {round}: the old holder's write (returned {wrote}) landed after the takeover"
        );
        l.release_poll_lease(&new).await.unwrap();
    }
    eprintln!("fenced race: the old holder's write came first in {landed} of 60 rounds");
}

pub(super) async fn only_the_current_claim_of_a_trigger_settles_it(l: Arc<dyn Ledger>) {
    let lease = Duration::from_secs(60);
    l.inbox_push("main", "u1", at(1_000), None).await.unwrap();
    let a = l.inbox_claim("a", at(1_000), lease, 10).await.unwrap();
    assert_eq!(a.len(), 1);
    // a's lease lapses at 1060; b takes the trigger over.
    let b = l.inbox_claim("b", at(1_061), lease, 10).await.unwrap();
    assert_eq!((b.len(), b[0].id, b[0].attempts), (1, a[0].id, 2));
    assert!(!l.inbox_done(&a[0], "a", at(1_062)).await.unwrap());
    assert!(!l.inbox_retry(&a[0], "a", at(1_062), "late").await.unwrap());
    assert!(!l.inbox_dead(&a[0], "a", at(1_062), "late").await.unwrap());
    assert!(
        l.inbox_renew(&[a[0].id], "a", at(1_062), lease)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(l.inbox_depth().await.unwrap()["main"], 1, "still b's");
    assert_eq!(
        l.inbox_renew(&[b[0].id], "b", at(1_062), lease)
            .await
            .unwrap(),
        [b[0].id]
    );
    assert!(l.inbox_done(&b[0], "b", at(1_063)).await.unwrap());
    assert!(l.inbox_depth().await.unwrap().is_empty());

    // The same holder's stale claim (an older attempt) settles nothing either.
    l.inbox_push("main", "u2", at(2_000), None).await.unwrap();
    let first = l.inbox_claim("a", at(2_000), lease, 10).await.unwrap();
    let second = l.inbox_claim("a", at(2_061), lease, 10).await.unwrap();
    assert_eq!(second[0].attempts, 2);
    assert!(!l.inbox_done(&first[0], "a", at(2_062)).await.unwrap());
    assert!(l.inbox_done(&second[0], "a", at(2_062)).await.unwrap());
}

pub(super) async fn renewed_trigger_leases_are_not_taken_over(l: Arc<dyn Ledger>) {
    let lease = Duration::from_secs(60);
    l.inbox_push("main", "u1", at(1_000), None).await.unwrap();
    let a = l.inbox_claim("a", at(1_000), lease, 10).await.unwrap();
    assert_eq!(
        l.inbox_renew(&[a[0].id, 999_999], "a", at(1_050), lease)
            .await
            .unwrap(),
        [a[0].id]
    );
    assert!(
        l.inbox_claim("b", at(1_100), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(l.inbox_next_due().await.unwrap(), Some(at(1_110)));
    assert_eq!(
        l.inbox_claim("b", at(1_111), lease, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A clean stop hands its running triggers back, due at once; another holder's stay its own.
pub(super) async fn a_clean_stop_hands_back_only_its_own_triggers(l: Arc<dyn Ledger>) {
    let lease = Duration::from_secs(60);
    for uid in ["u1", "u2"] {
        l.inbox_push("main", uid, at(1_000), None).await.unwrap();
    }
    let a = l.inbox_claim("a", at(1_000), lease, 1).await.unwrap();
    let b = l.inbox_claim("b", at(1_000), lease, 1).await.unwrap();
    assert_eq!((a[0].uid.as_str(), b[0].uid.as_str()), ("u1", "u2"));
    assert_eq!(l.inbox_release("a").await.unwrap(), 1);
    assert_eq!(l.inbox_release("a").await.unwrap(), 0);
    let c = l.inbox_claim("c", at(1_001), lease, 10).await.unwrap();
    assert_eq!(
        c.iter()
            .map(|i| (i.uid.as_str(), i.attempts))
            .collect::<Vec<_>>(),
        [("u1", 2)],
        "u1 at once; u2 is still b's"
    );
    assert!(!l.inbox_done(&a[0], "a", at(1_002)).await.unwrap());
    assert!(l.inbox_done(&b[0], "b", at(1_002)).await.unwrap());
}
