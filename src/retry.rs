//! Retrying passing API failures: exponential backoff with jitter (`backon`), honouring
//! `Retry-After`, bounded in attempts and in total time.
//!
//! Only *transient* errors are retried (connection trouble, timeouts of idempotent reads, 429,
//! 500/502/503/504); a business rejection (ERPNext 417, 404, 403) never is. Writes are not retried
//! here: `pipeline::Engine::create` has its own rule (look the entry up by `reference_no` before
//! anything is sent again). Every retry is one warning line and one `paysync_retries_total` count.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
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

/// How hard to try before giving up for this run (the operation stays retryable for the next).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub max_times: usize,
    /// Sum of all waits.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
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

    fn builder(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_times)
            .with_total_delay(Some(self.max_total))
            .with_jitter()
    }

    /// The n-th backoff delay (n from 1), for callers that loop by hand.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.min_delay.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1) as i32);
        Duration::from_secs_f64(base.min(self.max_delay.as_secs_f64()))
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
    op.retry(policy.builder())
        .sleep(tokio::time::sleep)
        .when(|e: &E| e.is_transient())
        // Honour Retry-After, keep backon's decision to stop, and stop once the waits would pass
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
