//! The daemon's state on every backend: watermarks and polls, the inbox, claims (run by
//! `on_every_backend!` in `conformance.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::at;
use crate::store::{Ledger, PollRecord};

/// The holder name the single-worker tests claim under.
const W: &str = "w";

pub(super) async fn a_watermark_never_moves_backwards_and_polls_come_newest_first(
    l: Arc<dyn Ledger>,
) {
    assert_eq!(l.watermark("main").await.unwrap(), None);
    let lease = l
        .take_poll_lease("main", W, at(1), Duration::from_secs(3_600))
        .await
        .unwrap()
        .unwrap();
    assert!(l.set_watermark(&lease, at(200)).await.unwrap());
    assert!(l.set_watermark(&lease, at(100)).await.unwrap());
    assert_eq!(l.watermark("main").await.unwrap(), Some(at(200)));
    assert!(l.set_watermark(&lease, at(300)).await.unwrap());
    assert_eq!(l.watermark("main").await.unwrap(), Some(at(300)));
    assert_eq!(l.watermark("other").await.unwrap(), None);

    let poll = |n: i64, ok: bool| PollRecord {
        account: "main".into(),
        started: at(n),
        finished: at(n + 1),
        window_from: at(n - 10),
        window_to: at(n),
        ok,
        summary: format!("poll {n}"),
        error: (!ok).then(|| "boom".to_string()),
    };
    assert_eq!(l.last_good_poll("main").await.unwrap(), None);
    for (n, ok) in [(10, true), (20, true), (30, false)] {
        l.record_poll(&poll(n, ok)).await.unwrap();
    }
    let got = l.polls("main", 2).await.unwrap();
    assert_eq!(got, vec![poll(30, false), poll(20, true)]);
    assert_eq!(
        l.last_good_poll("main").await.unwrap(),
        Some(poll(20, true))
    );
    assert!(l.polls("other", 5).await.unwrap().is_empty());
}

pub(super) async fn duplicate_pending_triggers_collapse(l: Arc<dyn Ledger>) {
    let now = at(1_000);
    assert!(l.inbox_push("main", "u1", now, Some("SO-1")).await.unwrap());
    assert!(!l.inbox_push("main", "u1", now, None).await.unwrap());
    assert!(l.inbox_push("other", "u1", now, None).await.unwrap());
    // Running collapses too: the worker re-reads the operation anyway.
    let claimed = l
        .inbox_claim(W, now, Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].hint.as_deref(), Some("SO-1"));
    assert!(!l.inbox_push("main", "u1", now, None).await.unwrap());
    // Once done, a new trigger of the same operation is queued.
    assert!(l.inbox_done(&claimed[0], W, now).await.unwrap());
    assert!(l.inbox_push("main", "u1", now, None).await.unwrap());
    // Ignored triggers are kept but never pending.
    l.inbox_ignore("main", "u2", now, "expired checkout")
        .await
        .unwrap();
    l.inbox_ignore("main", "u2", now, "again").await.unwrap();
    assert_eq!(
        l.inbox_depth().await.unwrap(),
        HashMap::from([("main".to_string(), 1), ("other".to_string(), 1)])
    );
}

pub(super) async fn a_claim_hands_out_due_triggers_once_until_the_lease_runs_out(
    l: Arc<dyn Ledger>,
) {
    let now = at(1_000);
    let lease = Duration::from_secs(60);
    assert_eq!(l.inbox_next_due().await.unwrap(), None);
    for uid in ["u1", "u2", "u3"] {
        l.inbox_push("main", uid, now, None).await.unwrap();
    }
    // Not due before it was received.
    assert!(
        l.inbox_claim(W, at(999), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(l.inbox_next_due().await.unwrap(), Some(now));
    let first = l.inbox_claim(W, now, lease, 2).await.unwrap();
    let uids: Vec<&str> = first.iter().map(|i| i.uid.as_str()).collect();
    assert_eq!(uids, ["u1", "u2"], "oldest first");
    assert!(first.iter().all(|i| i.attempts == 1 && i.received == now));
    let rest = l.inbox_claim(W, now, lease, 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|i| i.uid.as_str()).collect::<Vec<_>>(),
        ["u3"]
    );
    // All running: nothing to claim until the leases end.
    assert!(
        l.inbox_claim(W, at(1_060), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(l.inbox_next_due().await.unwrap(), Some(at(1_060)));
    assert!(l.inbox_done(&rest[0], W, at(1_001)).await.unwrap());
    let again = l.inbox_claim(W, at(1_061), lease, 10).await.unwrap();
    assert_eq!(
        again
            .iter()
            .map(|i| (i.uid.as_str(), i.attempts))
            .collect::<Vec<_>>(),
        [("u1", 2), ("u2", 2)]
    );
}

pub(super) async fn retried_dead_and_lapsed_triggers(l: Arc<dyn Ledger>) {
    let now = at(1_000);
    let lease = Duration::from_secs(60);
    for uid in ["u1", "u2", "u3"] {
        l.inbox_push("main", uid, now, None).await.unwrap();
    }
    let c = l.inbox_claim(W, now, lease, 10).await.unwrap();
    assert!(
        l.inbox_retry(&c[0], W, at(2_000), "source down")
            .await
            .unwrap()
    );
    assert!(
        l.inbox_dead(&c[1], W, now, "too many attempts")
            .await
            .unwrap()
    );
    // Settled once: the same claim settles nothing more.
    assert!(!l.inbox_done(&c[0], W, now).await.unwrap());
    assert!(!l.inbox_retry(&c[1], W, now, "again").await.unwrap());
    assert_eq!(l.inbox_next_due().await.unwrap(), Some(at(1_060)));
    // u3 left running by a process that stopped: not before its lease lapses, then taken over.
    assert!(
        l.inbox_claim("x", at(1_059), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let taken = l
        .inbox_claim("x", at(1_061), Duration::from_secs(3_600), 10)
        .await
        .unwrap();
    assert_eq!(
        taken
            .iter()
            .map(|i| (i.uid.as_str(), i.attempts))
            .collect::<Vec<_>>(),
        [("u3", 2)]
    );
    let later = l.inbox_claim(W, at(2_000), lease, 10).await.unwrap();
    assert_eq!(
        later.iter().map(|i| i.uid.as_str()).collect::<Vec<_>>(),
        ["u1"]
    );
    // The dead one is neither pending nor collapsing: a new trigger of u2 queues.
    assert!(l.inbox_push("main", "u2", at(2_000), None).await.unwrap());
    assert_eq!(l.inbox_depth().await.unwrap()["main"], 3);
}

/// Several workers claiming at once each get different triggers, and together all of them.
pub(super) async fn concurrent_claims_never_hand_out_a_trigger_twice(l: Arc<dyn Ledger>) {
    let now = at(1_000);
    for i in 0..60 {
        l.inbox_push("main", &format!("u{i:02}"), now, None)
            .await
            .unwrap();
    }
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let c = l
                        .inbox_claim(W, now, Duration::from_secs(60), 3)
                        .await
                        .unwrap();
                    if c.is_empty() {
                        return got;
                    }
                    got.extend(c.into_iter().map(|i| i.uid));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!((n, all.len()), (60, 60));
}

pub(super) async fn claims_are_taken_only_when_free_expired_or_already_held(l: Arc<dyn Ledger>) {
    let ttl = Duration::from_secs(30);
    let t = at(1_000);
    let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    assert_eq!(
        l.try_claim("orders", "SO-1", "a", t, ttl).await.unwrap(),
        Some(None)
    );
    // Re-entrant for its holder; another waits while it lives.
    assert_eq!(
        l.try_claim("orders", "SO-1", "a", t, ttl).await.unwrap(),
        Some(None)
    );
    assert_eq!(
        l.try_claim("orders", "SO-1", "b", at(1_029), ttl)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        l.claim_holder("orders", "SO-1").await.unwrap().as_deref(),
        Some("a")
    );
    // Only the holder renews.
    assert!(
        l.renew_claims("orders", &keys(&["SO-1"]), "b", t, ttl)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        l.renew_claims("orders", &keys(&["SO-1", "SO-2"]), "a", at(1_010), ttl)
            .await
            .unwrap(),
        ["SO-1"]
    );
    // Expired (renewed until 1040): taken over, with the previous holder's expiry.
    assert_eq!(
        l.try_claim("orders", "SO-1", "b", at(1_040), ttl)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        l.try_claim("orders", "SO-1", "b", at(1_041), ttl)
            .await
            .unwrap(),
        Some(Some(at(1_040)))
    );
    // Many at once, a key repeated: the free and the holder's are taken, the live other's not.
    let got = l
        .try_claim_many(
            "orders",
            &keys(&["SO-1", "SO-3", "SO-3"]),
            "a",
            at(1_042),
            ttl,
        )
        .await
        .unwrap();
    assert_eq!(got, HashMap::from([("SO-3".to_string(), None)]));
    // Releases only the caller's own; another account's key is another claim.
    l.release_claims("orders", &keys(&["SO-1", "SO-3"]), "a")
        .await
        .unwrap();
    assert_eq!(
        l.claim_holder("orders", "SO-1").await.unwrap().as_deref(),
        Some("b")
    );
    assert_eq!(l.claim_holder("orders", "SO-3").await.unwrap(), None);
    assert_eq!(l.claim_holder("other", "SO-1").await.unwrap(), None);
    assert!(
        l.try_claim_many("orders", &[], "a", t, ttl)
            .await
            .unwrap()
            .is_empty()
    );
}
