//! How many creates go to the ERP at once: a fixed number (`max_in_flight = N`), or a limit that
//! follows what the server sustains (`max_in_flight = "auto"`).
//!
//! Why adapt: a real ERPNext names every Payment Entry under a row lock on its naming series'
//! counter, held until the request commits, so one series takes one write at a time whatever
//! the client sends; more writes in flight only lengthen the server's queue (and the time a
//! create's outcome is unknown when a client times out). With several naming series, or a
//! server that scales, more in flight does pay. Nobody can know which without measuring.
//!
//! The rule is TCP Vegas's (as in Netflix's concurrency-limits `VegasLimit`): what a server
//! adds to a request's latency beyond its unloaded latency is queueing, and
//! `limit × (1 − base ÷ latency)` estimates how many requests wait in that queue. The limit
//! grows by one while fewer than [`Vegas::ALPHA`] wait (the server has idle capacity: the rate
//! still grows with it), shrinks by one when more than [`Vegas::BETA`] wait (latency rises
//! without the rate), and stays in between. One estimate per *round* (as many completed writes
//! as the limit), on the round's mean latency: a mix of cheap and dear writes (an unallocated
//! entry costs the server about half an allocated one) then averages out instead of reading as
//! queueing. `base` comes from a probe at one write at a time, repeated now and then, so a
//! server that slows down for good moves it (see [`Vegas`]). A write refused for load (429,
//! 5xx, a timeout) halves the limit at once.
//!
//! The arithmetic ([`Vegas`]) is pure and tested on model servers; [`WriteLimit`] applies it
//! to a semaphore.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::{AUTO_MAX_IN_FLIGHT, InFlight};

/// The write slots of one engine.
pub(super) struct WriteLimit {
    slots: Arc<Semaphore>,
    /// `None`: a fixed limit.
    adaptive: Option<Mutex<Adaptive>>,
}

struct Adaptive {
    vegas: Vegas,
    /// Permits the semaphore should lose, taken back as writes finish (a semaphore cannot shrink
    /// under permits that are out).
    owed: usize,
}

/// One create's slot; [`Slot::done`] reports how it went.
pub(super) struct Slot<'a> {
    limit: &'a WriteLimit,
    permit: Option<OwnedSemaphorePermit>,
    started: Instant,
    /// The adaptive limit's epoch when it started (see [`Vegas::epoch`]).
    epoch: u64,
}

/// What a create's answer says about the server's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Load {
    /// An answer (created or refused for a business reason): its latency is a sample.
    Answered,
    /// Refused for load or lost (429, 5xx, timeout): back off.
    Overloaded,
    /// Says nothing about load (the connection was refused, a deadlock): no sample.
    Neutral,
}

impl WriteLimit {
    pub fn new(in_flight: InFlight) -> WriteLimit {
        match in_flight {
            InFlight::Fixed(n) => WriteLimit {
                slots: Arc::new(Semaphore::new(n.max(1))),
                adaptive: None,
            },
            InFlight::Auto => {
                let vegas = Vegas::new(AUTO_MAX_IN_FLIGHT);
                WriteLimit {
                    slots: Arc::new(Semaphore::new(vegas.limit())),
                    adaptive: Some(Mutex::new(Adaptive { vegas, owed: 0 })),
                }
            }
        }
    }

    /// Wait for a slot.
    pub async fn acquire(&self) -> Slot<'_> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let epoch = self
            .adaptive
            .as_ref()
            .map_or(0, |a| a.lock().expect("poisoned").vegas.epoch());
        Slot {
            limit: self,
            permit: Some(permit),
            started: Instant::now(),
            epoch,
        }
    }

    /// The current limit (the fixed one, or where "auto" stands).
    #[cfg(test)]
    pub fn current(&self) -> usize {
        match &self.adaptive {
            None => self.slots.available_permits().max(1),
            Some(a) => a.lock().expect("poisoned").vegas.limit(),
        }
    }
}

impl Slot<'_> {
    /// The create is over: feed its latency to an adaptive limit and give the slot back (or
    /// keep it, when the limit shrank).
    pub fn done(mut self, load: Load) {
        let permit = self.permit.take();
        let Some(adaptive) = &self.limit.adaptive else {
            return;
        };
        let mut a = adaptive.lock().expect("poisoned");
        let before = a.vegas.limit();
        match load {
            Load::Answered => a.vegas.sample(self.started.elapsed(), self.epoch),
            Load::Overloaded => a.vegas.overloaded(),
            Load::Neutral => {}
        }
        let after = a.vegas.limit();
        if after > before {
            let grow = after - before;
            let repaid = grow.min(a.owed);
            a.owed -= repaid;
            self.limit.slots.add_permits(grow - repaid);
        } else {
            a.owed += before - after;
        }
        if after != before {
            tracing::debug!(limit = after, "ERPNext write limit");
            metrics::gauge!(crate::metrics::WRITE_LIMIT).set(after as f64);
        }
        if a.owed > 0
            && let Some(p) = permit
        {
            a.owed -= 1;
            p.forget();
        }
    }
}

/// A slot dropped without [`Slot::done`] (its create was cancelled) is given back as it is.
impl Drop for Slot<'_> {
    fn drop(&mut self) {
        drop(self.permit.take());
    }
}

/// The Vegas arithmetic: a limit from latencies, one round at a time.
///
/// The unloaded latency cannot be read off a loaded server: with writes queued every latency
/// includes the queue, and a minimum over recent rounds creeps up with it (the limit would
/// then grow for ever). So, as BBR's ProbeRTT, every [`Vegas::PROBE_EVERY`] rounds (and first
/// of all) the limit drops to one for [`Vegas::PROBE_WRITES`] writes started in that probe; their
/// mean latency is the base until the next probe, unless a round comes in lower.
#[derive(Debug, Clone)]
pub(super) struct Vegas {
    limit: usize,
    max: usize,
    /// Latencies of the round in progress.
    round: Vec<Duration>,
    /// The lowest mean latency since the last probe (the probe's included).
    base: Option<Duration>,
    rounds_since_probe: usize,
    /// In a probe: the limit to return to, and the latencies of writes started in it.
    probe: Option<(usize, Vec<Duration>)>,
    /// Counts probes: a write started before the current probe is no sample of it.
    epoch: u64,
}

impl Vegas {
    /// Grow while fewer than this many writes are estimated to wait in the server's queue.
    pub const ALPHA: f64 = 1.0;
    /// Shrink when more than this many are estimated to wait.
    pub const BETA: f64 = 3.0;
    /// Rounds between two probes of the unloaded latency.
    pub const PROBE_EVERY: usize = 50;
    /// Writes one at a time in a probe.
    pub const PROBE_WRITES: usize = 3;
    /// Where a limit goes after the first probe: two, so a server that takes one write at a
    /// time is busy from then on.
    pub const START: usize = 2;

    pub fn new(max: usize) -> Vegas {
        let max = max.max(1);
        Vegas {
            limit: 1,
            max,
            round: Vec::new(),
            base: None,
            rounds_since_probe: 0,
            probe: Some((Self::START.min(max), Vec::new())),
            epoch: 0,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The limit outside probes (what a probe returns to).
    #[cfg(test)]
    pub fn steady(&self) -> usize {
        self.probe
            .as_ref()
            .map_or(self.limit, |(resume, _)| *resume)
    }

    /// Stamp for a write starting now, given back with its latency.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// One write, started at `epoch`, answered after `latency`.
    pub fn sample(&mut self, latency: Duration, epoch: u64) {
        if let Some((resume, probed)) = &mut self.probe {
            if epoch != self.epoch {
                return;
            }
            probed.push(latency);
            if probed.len() >= Self::PROBE_WRITES {
                self.base = Some(mean(probed));
                self.limit = *resume;
                self.probe = None;
                self.rounds_since_probe = 0;
                self.round.clear();
            }
            return;
        }
        self.round.push(latency);
        if self.round.len() < self.limit {
            return;
        }
        let round_mean = mean(&self.round);
        self.round.clear();
        let base = self.base.map_or(round_mean, |b| b.min(round_mean));
        self.base = Some(base);
        if round_mean.is_zero() {
            self.limit = (self.limit + 1).min(self.max);
        } else {
            let queued = self.limit as f64 * (1.0 - base.as_secs_f64() / round_mean.as_secs_f64());
            if queued < Self::ALPHA {
                self.limit = (self.limit + 1).min(self.max);
            } else if queued > Self::BETA {
                self.limit = self.limit.saturating_sub(1).max(1);
            }
        }
        self.rounds_since_probe += 1;
        if self.rounds_since_probe >= Self::PROBE_EVERY && self.limit > 1 {
            self.probe = Some((self.limit, Vec::new()));
            self.limit = 1;
            self.epoch += 1;
        }
    }

    /// A write refused for load: halve the limit, start a new round.
    pub fn overloaded(&mut self) {
        match &mut self.probe {
            Some((resume, _)) => *resume = (*resume / 2).max(1),
            None => self.limit = (self.limit / 2).max(1),
        }
        self.round.clear();
    }
}

fn mean(latencies: &[Duration]) -> Duration {
    latencies.iter().sum::<Duration>() / latencies.len().max(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that serves `parallel` writes at once, each taking `service`, others queued:
    /// with `n` in flight a write's latency is `service × ceil(n / parallel)`. The limit after
    /// `writes` answers, with the client keeping the limit in flight.
    fn settle(parallel: usize, service: Duration, writes: usize) -> (Vegas, Vec<usize>) {
        let mut v = Vegas::new(AUTO_MAX_IN_FLIGHT);
        let mut seen = Vec::new();
        for _ in 0..writes {
            let n = v.limit();
            let latency = service * n.div_ceil(parallel) as u32;
            v.sample(latency, v.epoch());
            seen.push(v.limit());
        }
        (v, seen)
    }

    #[test]
    fn a_server_taking_one_write_at_a_time_keeps_the_limit_low() {
        let (v, seen) = settle(1, Duration::from_millis(120), 500);
        // One in service and one or two waiting: busy all the time, a short queue.
        assert!((2..=4).contains(&v.steady()), "limit {}", v.steady());
        assert!(seen.iter().all(|&l| l <= 5), "never far above: {seen:?}");
    }

    #[test]
    fn several_series_let_the_limit_follow_the_server() {
        let (v, _) = settle(4, Duration::from_millis(120), 500);
        assert!((5..=8).contains(&v.steady()), "limit {}", v.steady());
    }

    #[test]
    fn a_server_that_scales_gets_the_maximum() {
        let (v, _) = settle(1000, Duration::from_millis(20), 2000);
        assert_eq!(v.steady(), AUTO_MAX_IN_FLIGHT);
    }

    #[test]
    fn a_mix_of_cheap_and_dear_writes_is_not_read_as_queueing() {
        // Unallocated 120 ms, allocated 220 ms, alternating, on a server with 8 at once: the
        // limit must still grow past the 2 it starts at.
        let mut v = Vegas::new(AUTO_MAX_IN_FLIGHT);
        for i in 0..400 {
            let service = if i % 2 == 0 { 120 } else { 220 };
            let n = v.limit();
            v.sample(
                Duration::from_millis(service) * n.div_ceil(8) as u32,
                v.epoch(),
            );
        }
        assert!(v.steady() >= 8, "limit {}", v.steady());
    }

    #[test]
    fn a_server_that_slows_for_good_moves_the_base() {
        let (mut v, _) = settle(1, Duration::from_millis(100), 200);
        // Now every write takes 3× longer, still one at a time: the limit must not collapse
        // to 1 (that would leave the server idle between writes) once the base has moved.
        for _ in 0..400 {
            let n = v.limit();
            v.sample(Duration::from_millis(300) * n as u32, v.epoch());
        }
        assert!((2..=4).contains(&v.steady()), "limit {}", v.steady());
    }

    #[test]
    fn a_write_started_before_a_probe_is_no_sample_of_it() {
        let mut v = Vegas::new(AUTO_MAX_IN_FLIGHT);
        let before = v.epoch();
        // Finish the first probe at 100 ms.
        for _ in 0..Vegas::PROBE_WRITES {
            v.sample(Duration::from_millis(100), before);
        }
        assert_eq!(v.limit(), Vegas::START);
        // Run rounds until the next probe starts.
        while v.epoch() == before {
            let n = v.limit() as u32;
            v.sample(Duration::from_millis(100) * n, v.epoch());
        }
        assert_eq!(v.limit(), 1, "in a probe");
        // Writes sent before it answer slowly (they queued): ignored, the probe goes on.
        for _ in 0..10 {
            v.sample(Duration::from_secs(5), before);
        }
        assert_eq!(v.limit(), 1, "still probing");
        for _ in 0..Vegas::PROBE_WRITES {
            v.sample(Duration::from_millis(100), v.epoch());
        }
        assert!(v.limit() > 1, "back to the limit before the probe");
    }

    #[test]
    fn overload_halves_and_the_floor_is_one() {
        let (mut v, _) = settle(1000, Duration::from_millis(20), 2000);
        v.overloaded();
        assert_eq!(v.steady(), AUTO_MAX_IN_FLIGHT / 2);
        for _ in 0..10 {
            v.overloaded();
        }
        assert_eq!(v.steady(), 1);
    }

    // Paused time: every latency is exactly zero, the unloaded case.
    #[tokio::test(start_paused = true)]
    async fn the_semaphore_follows_the_limit() {
        let limit = WriteLimit::new(InFlight::Auto);
        assert_eq!(limit.current(), 1, "a probe first");
        // Unloaded answers: it grows one per round.
        for _ in 0..40 {
            limit.acquire().await.done(Load::Answered);
        }
        let grown = limit.current();
        assert!(grown > Vegas::START, "grew to {grown}");
        assert_eq!(
            limit.current(),
            limit
                .adaptive
                .as_ref()
                .unwrap()
                .lock()
                .unwrap()
                .vegas
                .steady()
        );
        assert_eq!(limit.slots.available_permits(), grown);
        // Holding all of them, an overload halves it: the permits out are kept as they return.
        let mut held = Vec::new();
        for _ in 0..grown {
            held.push(limit.acquire().await);
        }
        let first = held.pop().expect("one");
        first.done(Load::Overloaded);
        for s in held {
            s.done(Load::Answered);
        }
        // Halved, then grown by a round or so of the answers that followed.
        assert!(limit.current() < grown, "{} after {grown}", limit.current());
        assert_eq!(limit.slots.available_permits(), limit.current());
    }

    #[tokio::test]
    async fn a_fixed_limit_never_moves() {
        let limit = WriteLimit::new(InFlight::Fixed(3));
        for _ in 0..50 {
            limit.acquire().await.done(Load::Overloaded);
        }
        assert_eq!(limit.slots.available_permits(), 3);
    }
}
