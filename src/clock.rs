//! Where "now" comes from: the process's one [`Clock`].
//!
//! Owns the answer to "what time is it" wherever that time is compared with a stored or scheduled
//! one (cron fire times, trigger due times, poll records, claim expiries, `/healthz` ages). One
//! `Arc<dyn Clock>` is built with the app (`App::clock`, the wall clock by default) and handed to
//! the daemon (scheduler, inbox, HTTP) and the claims, so that tests can run them all on tokio's
//! paused time: [`TokioClock`] advances exactly as `tokio::time` does, so a test that advances
//! time by five minutes sees the scheduler fire as if five minutes had passed.
//!
//! Not owned here: how long something took or how long to sleep. Those are durations on tokio's
//! timer (`tokio::time::Instant`, `sleep`), which paused time drives too. This module must not
//! sleep, schedule or know who asks.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that starts at `base` and moves with `tokio::time` (paused or not).
pub struct TokioClock {
    base: Timestamp,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(base: Timestamp) -> Arc<TokioClock> {
        Arc::new(TokioClock {
            base,
            start: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = tokio::time::Instant::now() - self.start;
        self.base + SignedDuration::try_from(elapsed).unwrap_or(SignedDuration::ZERO)
    }
}
