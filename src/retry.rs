//! Every delay schedule of paysync, and retrying passing API failures.
//!
//! Owns: [`Backoff`] — the one way a schedule of growing (or fixed) delays is written: `first`,
//! times `factor` each attempt, capped at `max`, with optional [`Jitter`]; built on backon's
//! `ExponentialBuilder`. Each user declares its schedule as a constant next to its code (the
//! inbox's trigger retries and ledger pauses, the claims' wait for another holder, the API
//! clients' [`RetryPolicy`]). Also [`retrying`]: exponential backoff with jitter (`backon`),
//! honouring `Retry-After`, bounded in attempts and in total time.
//!
//! Only *transient* errors are retried (connection trouble, timeouts of idempotent reads, 429,
//! 500/502/503/504); a business rejection (ERPNext 417, 404, 403) never is. Writes are not retried
//! here: `pipeline::Engine::create` has its own rule (look the entry up by `reference_no` before
//! anything is sent again). Every retry is one warning line and one `paysync_retries_total` count.
//!
//! Must not: decide what is transient (the error types say so) or know any API. Waits are
//! durations slept on tokio's timer; the one wall-clock reading is turning a `Retry-After`
//! HTTP-date into a wait ([`parse_retry_after`], called by the adapters, which have no `Clock`).

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder, Retryable};
use tracing::warn;

/// An error that may say "try again" (and when).
pub trait Transient: std::fmt::Display {
    fn is_transient(&self) -> bool;
    fn retry_after(&self) -> Option<Duration>;
}

impl Transient for crate::erp::ErpError {
    fn is_transient(&self) -> bool {
        crate::erp::ErpError::is_transient(self)
    }
    fn retry_after(&self) -> Option<Duration> {
        crate::erp::ErpError::retry_after(self)
    }
}

impl Transient for crate::source::SourceError {
    fn is_transient(&self) -> bool {
        crate::source::SourceError::is_transient(self)
    }
    fn retry_after(&self) -> Option<Duration> {
        crate::source::SourceError::retry_after(self)
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3). A date in the past
/// means "now". Unreadable values are ignored (the caller's own backoff applies).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let wait = at.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// A random factor each delay is multiplied by, uniform in `[1 − below, 1 + above)`: callers that
/// failed together do not all come back at the same instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    pub below: f64,
    pub above: f64,
}

impl Jitter {
    /// Exactly the schedule.
    pub const NONE: Jitter = Jitter {
        below: 0.0,
        above: 0.0,
    };
    /// backon's own jitter: a random extra of up to one more delay (`[d, 2d)`).
    pub const UP_TO_DOUBLE: Jitter = Jitter {
        below: 0.0,
        above: 1.0,
    };

    /// `±fraction` around the delay.
    pub const fn plus_minus(fraction: f64) -> Jitter {
        Jitter {
            below: fraction,
            above: fraction,
        }
    }

    fn apply(self, d: Duration) -> Duration {
        if self == Jitter::NONE {
            return d;
        }
        d.mul_f64(1.0 - self.below + (self.below + self.above) * fastrand::f64())
    }
}

/// A schedule of delays: `first`, then each one `factor` times the one before, never past `max`
/// (the cap applies before the jitter, as backon does). Attempts count from 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub first: Duration,
    pub factor: f32,
    pub max: Duration,
    pub jitter: Jitter,
}

impl Backoff {
    /// Doubling from `first` up to `max`, no jitter.
    pub const fn exponential(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            factor: 2.0,
            max,
            jitter: Jitter::NONE,
        }
    }

    /// The same delay every time.
    pub const fn constant(every: Duration) -> Backoff {
        Backoff {
            first: every,
            factor: 1.0,
            max: every,
            jitter: Jitter::NONE,
        }
    }

    pub const fn with_jitter(self, jitter: Jitter) -> Backoff {
        Backoff { jitter, ..self }
    }

    /// backon's sequence of this schedule: no jitter (ours is applied on top), no end.
    fn schedule(&self) -> ExponentialBackoff {
        ExponentialBuilder::new()
            .with_min_delay(self.first)
            .with_factor(self.factor)
            .with_max_delay(self.max)
            .without_max_times()
            .build()
    }

    /// The delay before attempt `attempt` (from 1; 0 reads as 1), without jitter.
    pub fn base(&self, attempt: u32) -> Duration {
        let mut delays = self.iter_with(Jitter::NONE);
        let mut d = delays.next_delay();
        for _ in 1..attempt {
            let next = delays.next_delay();
            // Past the cap (or with a factor of 1) every later delay is this one.
            if next == d {
                break;
            }
            d = next;
        }
        d
    }

    /// The delay before attempt `attempt` (from 1), with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.jitter.apply(self.base(attempt))
    }

    /// The delays one after another, with jitter, without end (`take(n)` bounds them).
    pub fn iter(&self) -> Delays {
        self.iter_with(self.jitter)
    }

    fn iter_with(&self, jitter: Jitter) -> Delays {
        Delays {
            schedule: self.schedule(),
            max: self.max,
            jitter,
        }
    }
}

/// The delays of a [`Backoff`], one per attempt: an endless iterator, usable as a backon backoff.
pub struct Delays {
    schedule: ExponentialBackoff,
    max: Duration,
    jitter: Jitter,
}

impl Delays {
    /// The next delay (there always is one).
    pub fn next_delay(&mut self) -> Duration {
        // backon caps every delay but the first at `max`; ours never passes it.
        let base = self.schedule.next().unwrap_or(self.max).min(self.max);
        self.jitter.apply(base)
    }
}

impl Iterator for Delays {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(self.next_delay())
    }
}

/// The API clients' schedule: 250 ms doubling up to 10 s, each delay plus up to one more.
pub const API_RETRIES: Backoff =
    Backoff::exponential(Duration::from_millis(250), Duration::from_secs(10))
        .with_jitter(Jitter::UP_TO_DOUBLE);

/// How hard to try before giving up for this run (the operation stays retryable for the next).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The delays between attempts.
    pub backoff: Backoff,
    pub max_times: usize,
    /// Sum of all waits.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff: API_RETRIES,
            max_times: 6,
            max_total: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all (tests that want to see the first failure).
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_times: 0,
            ..RetryPolicy::default()
        }
    }

    /// The n-th backoff delay (n from 1), without jitter, for callers that loop by hand.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.backoff.base(attempt)
    }
}

/// Run `op` until it succeeds, fails for good, or the policy is spent.
pub async fn retrying<T, E, F, Fut>(
    policy: &RetryPolicy,
    api: &'static str,
    what: &str,
    op: F,
) -> Result<T, E>
where
    E: Transient,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let max_total = policy.max_total;
    let mut waited = Duration::ZERO;
    op.retry(policy.backoff.iter().take(policy.max_times))
        .sleep(tokio::time::sleep)
        .when(|e: &E| e.is_transient())
        // Honour Retry-After, stop after `max_times` retries, and stop once the waits would pass
        // the total budget.
        .adjust(move |e: &E, dur| {
            let wait = dur.map(|d| e.retry_after().map(|r| r.max(d)).unwrap_or(d))?;
            if waited + wait > max_total {
                return None;
            }
            waited += wait;
            Some(wait)
        })
        .notify(|e: &E, wait: Duration| {
            metrics::counter!(crate::metrics::RETRIES, "api" => api).increment(1);
            warn!(api, call = what, error = %e, retry_in_ms = wait.as_millis() as u64, "retrying");
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct E(bool, Option<Duration>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "e")
        }
    }
    impl Transient for E {
        fn is_transient(&self) -> bool {
            self.0
        }
        fn retry_after(&self) -> Option<Duration> {
            self.1
        }
    }

    /// `RetryPolicy::delay` (the create loop's schedule) is what it always was: 250 ms doubling,
    /// capped at 10 s, no jitter; attempt 0 reads as 1.
    #[test]
    fn the_policy_delay_doubles_from_250_ms_to_10_s_without_jitter() {
        let p = RetryPolicy::default();
        let ms: Vec<u128> = (0..=9).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(
            ms,
            [250, 250, 500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]
        );
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(10));
        assert_eq!(p.delay(3), p.delay(3), "no jitter");
    }

    /// The iterator is the same schedule, jittered; a constant schedule never changes; the first
    /// delay is capped too.
    #[test]
    fn a_backoff_iterates_its_schedule_and_jitters_within_bounds() {
        let plain = Backoff::exponential(Duration::from_millis(500), Duration::from_secs(30));
        let got: Vec<u128> = plain.iter().take(9).map(|d| d.as_millis()).collect();
        assert_eq!(
            got,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        let every = Backoff::constant(Duration::from_millis(50));
        assert!(
            every
                .iter()
                .take(100)
                .all(|d| d == Duration::from_millis(50))
        );
        assert_eq!(every.delay(1_000_000), Duration::from_millis(50));
        let capped = Backoff::exponential(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(capped.delay(1), Duration::from_secs(1));
        assert_eq!(capped.iter().next(), Some(Duration::from_secs(1)));

        let spread = plain.with_jitter(Jitter::plus_minus(0.2));
        let doubled = plain.with_jitter(Jitter::UP_TO_DOUBLE);
        for (n, base) in plain.iter().take(9).enumerate() {
            let n = n as u32 + 1;
            assert_eq!(plain.base(n), base);
            for _ in 0..20 {
                let d = spread.delay(n);
                assert!(
                    d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2),
                    "{n}: {d:?}"
                );
                let d = doubled.delay(n);
                assert!(d >= base && d < base * 2, "{n}: {d:?}");
            }
        }
        let mut delays = spread.iter();
        let first: Vec<Duration> = (0..20).map(|_| delays.next_delay()).collect();
        assert!(first.windows(2).any(|w| w[0] != w[1]), "jittered");
    }

    /// `retrying` stops after `max_times` retries even with a budget left.
    #[tokio::test(start_paused = true)]
    async fn retrying_stops_after_max_times() {
        let n = AtomicU32::new(0);
        let policy = RetryPolicy {
            max_times: 2,
            ..RetryPolicy::default()
        };
        let r: Result<(), E> = retrying(&policy, "t", "x", || async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(E(true, None))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 3, "one try and two retries");
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
        let text = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&soon)
            .unwrap();
        let d = parse_retry_after(&text).expect("an HTTP-date");
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(27),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past: now"
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-3"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_and_business_errors_are_not() {
        let n = AtomicU32::new(0);
        let r: Result<u32, E> = retrying(&RetryPolicy::default(), "t", "x", || async {
            let i = n.fetch_add(1, Ordering::SeqCst);
            if i < 3 { Err(E(true, None)) } else { Ok(i) }
        })
        .await;
        assert_eq!(r.unwrap(), 3);

        let n = AtomicU32::new(0);
        let r: Result<u32, E> = retrying(&RetryPolicy::default(), "t", "x", || async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(E(false, None))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 1, "a 417 is tried once");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_the_total_is_bounded() {
        let start = tokio::time::Instant::now();
        let n = AtomicU32::new(0);
        let r: Result<(), E> = retrying(&RetryPolicy::default(), "t", "x", || async {
            if n.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(E(true, Some(Duration::from_secs(7))))
            } else {
                Ok(())
            }
        })
        .await;
        assert!(r.is_ok());
        assert!(
            start.elapsed() >= Duration::from_secs(7),
            "{:?}",
            start.elapsed()
        );

        let start = tokio::time::Instant::now();
        let r: Result<(), E> = retrying(&RetryPolicy::default(), "t", "x", || async {
            Err(E(true, Some(Duration::from_secs(30))))
        })
        .await;
        assert!(r.is_err());
        assert!(
            start.elapsed() <= Duration::from_secs(60),
            "bounded: {:?}",
            start.elapsed()
        );
    }
}
