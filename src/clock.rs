//! Where "now" comes from.
//!
//! The daemon's scheduler asks a [`Clock`] instead of the system directly so that tests can run it
//! on tokio's paused time: [`TokioClock`] advances exactly as `tokio::time` does, so a test that
//! advances time by five minutes sees the scheduler fire as if five minutes had passed.

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
