//! Cross-process order claims: one booking at a time per ERP order across every paysync process
//! sharing the ledger (the daemon and a manual `sync`).
//!
//! A claim is a ledger row `(erp, order:<name>)` naming its holder, with an expiry. This module
//! owns the rules that make a claim trustworthy:
//!
//! - **It cannot lapse under its holder.** One heartbeat per process renews every claim the process
//!   holds while any of its work is queued or running; before each create the group checks that
//!   it still holds the claim ([`Claims::still_held`]): renewed recently in memory, else renewed
//!   in the ledger right then — a claim another process took meanwhile aborts the create.
//! - **A takeover waits out the previous holder's writes.** A claim taken from an expired holder
//!   may still have a create in flight inside the ERP (ERPNext commits a request its client gave
//!   up on). The successor creates nothing for that
//!   order until `erp.commit_horizon` has passed since the previous holder could last have sent
//!   one ([`Claims::takeover_wait`]), then looks the operations up again.
//!
//! - **Only leases, on any host.** A holder that died, hangs (SIGSTOP, a long GC-like stall) or was
//!   cut off from the database loses its claims by not renewing them within `ttl` (`[daemon]
//!   lease`); nothing reads process liveness, which means nothing on another host. A clean stop
//!   releases what it holds.
//!
//! Claims are re-entrant within a process: several batches of one run may hold the same order's
//! claim; the row goes only when the last of them lets go.
//!
//! Time: the instants written to and compared with the ledger (a claim's start and expiry) come
//! from the [`Clock`] given to [`Claims::with_clock`] (the wall clock by default), the one clock
//! of the process; how long ago something happened in memory (a renewal, a takeover's wait) is
//! measured on tokio's timer, which sleeps use too. The wait for another holder is
//! [`TAKE_RETRY`]. This module must not decide or book anything: the pipeline asks it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;
use tracing::warn;

use crate::clock::{Clock, SystemClock};
use crate::retry::Backoff;
use crate::store::{Leases, StoreError};

/// The claims table's namespace for orders. Orders live in the one ERP, so their claims are not
/// per account: two accounts paying one order take turns.
const ORDER_CLAIMS: &str = "erp";

/// While another live process holds a claim, [`Claims::take`] asks again this often.
const TAKE_RETRY: Backoff = Backoff::constant(Duration::from_millis(50));

/// The claim key of an ERP order.
pub fn order_key(order: &str) -> String {
    format!("order:{order}")
}

/// Timing of claims. The defaults suit production; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct ClaimTiming {
    /// How long a claim lives without being renewed (a crashed holder's claim expires after it):
    /// `[daemon] lease`.
    pub ttl: Duration,
    /// How long a group waits for another live holder to let go.
    pub wait: Duration,
    /// How long after sending a create the ERP may still commit it (`erp.commit_horizon`).
    pub commit_horizon: Duration,
}

impl Default for ClaimTiming {
    fn default() -> Self {
        ClaimTiming {
            ttl: crate::config::DEFAULT_LEASE,
            wait: Duration::from_secs(30),
            commit_horizon: Duration::from_secs(120),
        }
    }
}

#[derive(Debug)]
struct Held {
    /// Groups of this process holding it.
    refs: usize,
    /// When the question the ledger last answered "it is ours" to was asked (the row's expiry
    /// was computed then: an answer that came back late is no later a confirmation).
    renewed: Instant,
    /// The current unbroken holding (see [`Holding`]).
    holding: Holding,
    /// Taken over from another holder: nothing is created for the order before this.
    safe_at: Option<Instant>,
}

/// One unbroken holding of an order's claim by this process. A group books under the holding
/// it claimed in; a create is sent only while that holding is still the current one. A new
/// holding starts whenever the ledger confirms the claim at a moment when it may have lapsed
/// since the last confirmation: another process may then have taken it, booked and released it,
/// and this process taken it afresh — its row names this process again, but what a group read
/// under the earlier holding is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holding(u64);

impl Held {
    /// The ledger confirmed the claim to a question asked at `asked`, answered at `answered`:
    /// the holding goes on if the claim cannot have lapsed since the last confirmation, else a
    /// new one starts.
    ///
    /// The row ran until the last confirmation's question plus `ttl`: an answer back within
    /// that cannot have found it lapsed in between. An eighth of `ttl` covers the wall clock
    /// the expiry was computed on and tokio's drifting apart.
    fn confirm(&mut self, ttl: Duration, asked: Instant, answered: Instant) {
        let unbroken_within = ttl.saturating_sub(ttl / 8);
        if answered.saturating_duration_since(self.renewed) >= unbroken_within {
            self.holding = Holding::next();
        }
        self.renewed = self.renewed.max(asked);
    }
}

impl Holding {
    /// Process-wide, so that a holding is never reused (an entry dropped and taken again).
    fn next() -> Holding {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Holding(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// A take the ledger granted: when it was asked and answered, and (taken over from another
/// holder) when creating becomes safe.
struct Took {
    asked: Instant,
    answered: Instant,
    safe_at: Option<Instant>,
    /// The same moment on the wall clock (when `safe_at` is some).
    safe_wall: Option<Timestamp>,
}

type HeldMap = Arc<Mutex<HashMap<String, Held>>>;

/// The claims of one process.
pub struct Claims {
    ledger: Arc<dyn Leases>,
    clock: Arc<dyn Clock>,
    holder: String,
    timing: ClaimTiming,
    held: HeldMap,
    /// By key, when the creates of the holder each takeover took a claim from could last
    /// commit (wall clock): facts read before then may miss them ([`Claims::facts_predate_takeover`]).
    takeovers: Mutex<HashMap<String, Timestamp>>,
    heartbeat: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Claims {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.lock().expect("poisoned").take() {
            h.abort();
        }
    }
}

impl Claims {
    /// Claims on the wall clock ([`SystemClock`]).
    pub fn new(ledger: Arc<dyn Leases>, holder: String, timing: ClaimTiming) -> Claims {
        Claims {
            ledger,
            clock: Arc::new(SystemClock),
            holder,
            timing,
            held: Arc::new(Mutex::new(HashMap::new())),
            takeovers: Mutex::new(HashMap::new()),
            heartbeat: Mutex::new(None),
        }
    }

    /// Read "now" from `clock` (the process's one clock, `App::clock`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Claims {
        self.clock = clock;
        self
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn timing(&self) -> ClaimTiming {
        self.timing
    }

    /// A claim counts as confirmed for `ttl` minus this margin after its last renewal.
    fn fresh_for(&self) -> Duration {
        self.timing.ttl.saturating_sub(self.timing.ttl / 4)
    }

    /// Take the claims of `keys` that nobody else holds, in one statement. Returns those taken,
    /// each with the holding it is now in.
    pub async fn take_many(&self, keys: &[String]) -> Result<HashMap<String, Holding>, StoreError> {
        let asked = Instant::now();
        let now = self.clock.now();
        let taken = self
            .ledger
            .try_claim_many(ORDER_CLAIMS, keys, &self.holder, now, self.timing.ttl)
            .await?;
        let answered = Instant::now();
        Ok(taken
            .into_iter()
            .map(|(key, prev_expires)| {
                let took = Took {
                    asked,
                    answered,
                    safe_at: prev_expires.map(|p| self.safe_after(p, now)),
                    safe_wall: prev_expires.map(|p| p.min(now) + self.timing.commit_horizon),
                };
                let holding = self.hold(&key, took);
                (key, holding)
            })
            .collect())
    }

    /// Take the claim of `key`, waiting up to `wait` for another live holder (or for its claim
    /// to lapse).
    pub async fn take(&self, key: &str) -> Result<Holding, String> {
        let deadline = Instant::now() + self.timing.wait;
        let mut pauses = TAKE_RETRY.iter();
        loop {
            let asked = Instant::now();
            let now = self.clock.now();
            match self
                .ledger
                .try_claim(ORDER_CLAIMS, key, &self.holder, now, self.timing.ttl)
                .await
            {
                Ok(Some(prev_expires)) => {
                    let took = Took {
                        asked,
                        answered: Instant::now(),
                        safe_at: prev_expires.map(|p| self.safe_after(p, now)),
                        safe_wall: prev_expires.map(|p| p.min(now) + self.timing.commit_horizon),
                    };
                    return Ok(self.hold(key, took));
                }
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(pauses.next_delay()).await;
                }
                Ok(None) => {
                    return Err(format!(
                        "{key} is being booked by another paysync process; re-examined later"
                    ));
                }
                Err(e) => return Err(format!("ledger unavailable for the {key} claim: {e}")),
            }
        }
    }

    /// The previous holder's claim ran until `prev_expires`: a create it sent before then (it
    /// sends none after, see [`Claims::still_held`]) may commit up to `commit_horizon` later.
    fn safe_after(&self, prev_expires: Timestamp, now: Timestamp) -> Instant {
        let last_send = prev_expires.min(now);
        let until = last_send + self.timing.commit_horizon;
        {
            let mut t = self.takeovers.lock().expect("poisoned");
            // An hour on, no fact still in use can predate a takeover's creates.
            let hour_ago = now - jiff::SignedDuration::from_hours(1);
            t.retain(|_, safe| *safe > hour_ago);
        }
        let wait = Duration::try_from(until.duration_since(now)).unwrap_or(Duration::ZERO);
        Instant::now() + wait
    }

    /// Facts about the order of `key` read at `read_at` may miss creates of a holder this
    /// process took the claim over from (they could commit until after `read_at`), though the
    /// claim was let go since: read them again.
    pub fn facts_predate_takeover(&self, key: &str, read_at: Timestamp) -> bool {
        let t = self.takeovers.lock().expect("poisoned");
        t.get(key).is_some_and(|safe| read_at < *safe)
    }

    /// One more group holds `key`, just taken in the ledger; the holding it is in.
    fn hold(&self, key: &str, took: Took) -> Holding {
        if let Some(safe) = took.safe_wall {
            let mut t = self.takeovers.lock().expect("poisoned");
            let e = t.entry(key.to_string()).or_insert(safe);
            *e = (*e).max(safe);
        }
        let holding = {
            let mut held = self.held.lock().expect("poisoned");
            let h = held.entry(key.to_string()).or_insert_with(|| Held {
                refs: 0,
                renewed: took.asked,
                holding: Holding::next(),
                safe_at: None,
            });
            h.refs += 1;
            if took.safe_at.is_some() {
                // Taken from another holder: whatever this process held before is gone.
                h.holding = Holding::next();
            }
            h.confirm(self.timing.ttl, took.asked, took.answered);
            if let Some(at) = took.safe_at {
                h.safe_at = Some(h.safe_at.map_or(at, |old| old.max(at)));
            }
            h.holding
        };
        self.start_heartbeat();
        holding
    }

    /// Let go of claims; the rows of those no longer held by any group of this process go.
    pub async fn release(&self, keys: &[String]) {
        let free = self.drop_refs(keys);
        if let Err(e) = self
            .ledger
            .release_claims(ORDER_CLAIMS, &free, &self.holder)
            .await
        {
            warn!(error = %e, "could not release claims; they expire by themselves");
        }
    }

    /// Let go of claims without freeing their rows: they lapse after `ttl`, and whoever takes
    /// one then waits out the commit horizon and asks the ERP again. For a booking the ledger
    /// could not record: released, the next holder would trust the ledger's silence.
    pub fn abandon(&self, keys: &[String]) {
        let gone = self.drop_refs(keys);
        if !gone.is_empty() {
            warn!(
                claims = gone.len(),
                "claims left to lapse: a booking under them is not in the ledger"
            );
        }
    }

    /// One group fewer holds each of `keys`; those no group of this process holds any more.
    fn drop_refs(&self, keys: &[String]) -> Vec<String> {
        {
            let mut held = self.held.lock().expect("poisoned");
            keys.iter()
                .filter(|k| match held.get_mut(k.as_str()) {
                    Some(h) if h.refs > 1 => {
                        h.refs -= 1;
                        false
                    }
                    Some(_) => {
                        held.remove(k.as_str());
                        true
                    }
                    None => false,
                })
                .cloned()
                .collect()
        }
    }

    /// Let go of every claim this process holds (a clean stop: others need not wait them out).
    pub async fn release_all(&self) {
        let keys: Vec<String> = self
            .held
            .lock()
            .expect("poisoned")
            .drain()
            .map(|(k, _)| k)
            .collect();
        if let Err(e) = self
            .ledger
            .release_claims(ORDER_CLAIMS, &keys, &self.holder)
            .await
        {
            warn!(error = %e, "could not release claims; they expire by themselves");
        }
    }

    /// True when the claim of `key` is still ours in `holding`, right before a create:
    /// confirmed by the heartbeat recently, or renewed in the ledger now. False when another
    /// process took it, or it may have lapsed since (a new holding).
    pub async fn still_held(&self, key: &str, holding: Holding) -> bool {
        let recent = match self.held.lock().expect("poisoned").get(key) {
            Some(h) if h.holding == holding => h.renewed.elapsed() < self.fresh_for(),
            _ => return false,
        };
        if recent {
            return true;
        }
        // Renewed only if the row still names this process: a claim that lapsed and was taken
        // over — or taken over, booked and *released* again — is not ours any more even though
        // it could be taken afresh (taking it here would book on facts from before the other
        // holder's booking).
        //
        // And the ledger's answer is only as fresh as the question: a process paused (or
        // starved) while the answer waited in its socket would act on a confirmation that lapsed
        // meanwhile, while the successor, after its commit-horizon wait, books too. So a
        // confirmation counts only if it came back within `fresh_for` of being asked; a late
        // one is asked again.
        for _ in 0..3 {
            let asked = Instant::now();
            let renewed = self
                .ledger
                .renew_claims(
                    ORDER_CLAIMS,
                    std::slice::from_ref(&key.to_string()),
                    &self.holder,
                    self.clock.now(),
                    self.timing.ttl,
                )
                .await;
            match renewed {
                Ok(keys) if keys.iter().any(|k| k == key) => {
                    let answered = Instant::now();
                    let same = match self.held.lock().expect("poisoned").get_mut(key) {
                        Some(h) => {
                            h.confirm(self.timing.ttl, asked, answered);
                            h.holding == holding
                        }
                        None => false,
                    };
                    if !same {
                        return false;
                    }
                    if answered.duration_since(asked) < self.fresh_for() {
                        return true;
                    }
                    warn!(
                        key,
                        late_ms = asked.elapsed().as_millis() as u64,
                        "the claim's confirmation came back too late to trust (a pause?); asking again"
                    );
                }
                _ => return false,
            }
        }
        false
    }

    /// The claim of `key` was taken over from another holder (whether or not its wait is over).
    pub fn taken_over(&self, key: &str) -> bool {
        let held = self.held.lock().expect("poisoned");
        held.get(key).is_some_and(|h| h.safe_at.is_some())
    }

    /// How long to wait before creating anything for the order of `key` (a takeover).
    pub fn takeover_wait(&self, key: &str) -> Option<Duration> {
        let held = self.held.lock().expect("poisoned");
        let at = held.get(key)?.safe_at?;
        let now = Instant::now();
        (at > now).then(|| at - now)
    }

    /// One renewal loop per process, for as long as the process holds claims.
    fn start_heartbeat(&self) {
        let mut hb = self.heartbeat.lock().expect("poisoned");
        if hb.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let held: Weak<Mutex<HashMap<String, Held>>> = Arc::downgrade(&self.held);
        let ledger = self.ledger.clone();
        let clock = self.clock.clone();
        let holder = self.holder.clone();
        let ttl = self.timing.ttl;
        *hb = Some(rt.spawn(async move {
            let every = ttl / 4;
            loop {
                tokio::time::sleep(every).await;
                let Some(held) = held.upgrade() else { return };
                let keys: Vec<String> = held.lock().expect("poisoned").keys().cloned().collect();
                if keys.is_empty() {
                    continue;
                }
                let started = Instant::now();
                match ledger
                    .renew_claims(ORDER_CLAIMS, &keys, &holder, clock.now(), ttl)
                    .await
                {
                    Ok(renewed) => {
                        let answered = Instant::now();
                        let mut map = held.lock().expect("poisoned");
                        for k in renewed {
                            if let Some(h) = map.get_mut(&k) {
                                h.confirm(ttl, started, answered);
                            }
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "could not renew claims; creates re-check them first")
                    }
                }
            }
        }));
    }
}

/// `host:pid:nonce`: who holds a claim. The nonce tells apart two engines of one process (tests
/// run two "processes" in one); it is random, not a reading of the clock.
pub fn holder_name() -> String {
    format!(
        "{}:{}:{:x}",
        this_host(),
        std::process::id(),
        fastrand::u64(..)
    )
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

#[cfg(test)]
mod tests;
