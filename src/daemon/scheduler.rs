//! The cron loop: fires each account's poll on its schedule, in the configured time zone.
//!
//! One loop for all accounts: it sleeps until the earliest next fire time, starts the polls that are
//! due (never two polls of one account at once: a poll still running when its next time comes is
//! skipped, with a log line), and pings the systemd watchdog between fires after a cheap store check.
//! Time comes from a [`Clock`] and sleeps from `tokio::time`, so tests drive it on paused time.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use croner::Cron;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::schedule::next_after;

/// One account's schedule.
pub struct AccountSchedule {
    pub account: String,
    pub cron: Cron,
}

pub type PollFn = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;
pub type WatchdogFn = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Run until `cancel`. `poll(account)` is spawned on `tracker` at each fire time.
pub async fn run(
    schedules: Vec<AccountSchedule>,
    tz: TimeZone,
    clock: Arc<dyn Clock>,
    poll: PollFn,
    watchdog: Option<(Duration, WatchdogFn)>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    let next_fire = |cron: &Cron, after: Timestamp| -> Option<Timestamp> {
        next_after(cron, &after.to_zoned(tz.clone())).map(|z| z.timestamp())
    };
    let mut next: HashMap<String, Option<Timestamp>> = schedules
        .iter()
        .map(|s| (s.account.clone(), next_fire(&s.cron, clock.now())))
        .collect();
    for s in &schedules {
        info!(account = %s.account, next = ?next[&s.account].map(|t| t.to_zoned(tz.clone()).to_string()), "scheduled");
    }
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut last_watchdog = tokio::time::Instant::now();

    loop {
        let now = clock.now();
        for s in &schedules {
            let Some(at) = next[&s.account] else { continue };
            if at > now {
                continue;
            }
            let busy = running.get(&s.account).is_some_and(|h| !h.is_finished());
            if busy {
                warn!(account = %s.account, "previous poll still running; this one is skipped");
            } else {
                let fut = poll(s.account.clone());
                running.insert(s.account.clone(), tracker.spawn(fut));
            }
            next.insert(s.account.clone(), next_fire(&s.cron, now));
        }

        let earliest = next.values().flatten().min().copied();
        let wait = earliest
            .map(|t| {
                let d = t.duration_since(clock.now());
                Duration::try_from(d).unwrap_or(Duration::ZERO)
            })
            .unwrap_or(Duration::from_secs(3600));
        let wait = match &watchdog {
            Some((every, _)) => wait.min(every.saturating_sub(last_watchdog.elapsed())),
            None => wait,
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
        if let Some((every, ping)) = &watchdog
            && last_watchdog.elapsed() >= *every
        {
            ping().await;
            last_watchdog = tokio::time::Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;
    use std::sync::Mutex;

    /// The scheduler fires exactly at the cron times, on paused tokio time.
    #[tokio::test(start_paused = true)]
    async fn fires_on_the_cron_times() {
        let tz = TimeZone::get("America/Argentina/Buenos_Aires").unwrap();
        let start: Timestamp = "2026-11-22T13:02:30Z".parse().unwrap(); // 10:02:30 local
        let clock = TokioClock::starting_at(start);
        let fired: Arc<Mutex<Vec<(String, Timestamp)>>> = Arc::default();
        let poll: PollFn = {
            let fired = fired.clone();
            let clock = clock.clone();
            Arc::new(move |acc| {
                let fired = fired.clone();
                let now = clock.now();
                Box::pin(async move { fired.lock().unwrap().push((acc, now)) })
            })
        };
        let pings = Arc::new(Mutex::new(0u32));
        let watchdog: WatchdogFn = {
            let pings = pings.clone();
            Arc::new(move || {
                let pings = pings.clone();
                Box::pin(async move { *pings.lock().unwrap() += 1 })
            })
        };
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let schedules = vec![
            AccountSchedule {
                account: "a".into(),
                cron: crate::schedule::parse("*/5 * * * *").unwrap(),
            },
            AccountSchedule {
                account: "b".into(),
                cron: crate::schedule::parse("0 11 * * *").unwrap(), // 11:00 local
            },
        ];
        let task = tokio::spawn(run(
            schedules,
            tz,
            clock.clone(),
            poll,
            Some((Duration::from_secs(30), watchdog)),
            tracker.clone(),
            cancel.clone(),
        ));
        // One hour of paused time.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        cancel.cancel();
        task.await.unwrap();
        tracker.close();
        tracker.wait().await;

        let fired = fired.lock().unwrap().clone();
        let a: Vec<String> = fired
            .iter()
            .filter(|(acc, _)| acc == "a")
            .map(|(_, t)| t.to_string())
            .collect();
        assert_eq!(a.first().map(String::as_str), Some("2026-11-22T13:05:00Z"));
        assert_eq!(a.len(), 12, "every 5 minutes for an hour: {a:?}");
        assert!(a.iter().all(|t| t.ends_with(":00Z")), "{a:?}");
        let b: Vec<String> = fired
            .iter()
            .filter(|(acc, _)| acc == "b")
            .map(|(_, t)| t.to_string())
            .collect();
        assert_eq!(
            b,
            vec!["2026-11-22T14:00:00Z".to_string()],
            "11:00 in Buenos Aires"
        );
        let p = *pings.lock().unwrap();
        assert!((100..=121).contains(&p), "watchdog every 30 s: {p}");
    }
}
