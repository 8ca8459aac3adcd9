//! Which naming series a create goes out in, when the account lists several
//! (`naming_series = [...]`).
//!
//! Frappe names a Payment Entry under a row lock on its series' counter, held until the request
//! commits, so one series takes one write at a time; each series has its own counter and its
//! own lock (recordings 32b, 33). A create takes the account's series with the fewest creates
//! in flight *in this process* (the lock is the server's, so the count is over every account
//! that lists the series), the earliest listed on a tie, and holds it until its answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Creates in flight per series.
#[derive(Default)]
pub(super) struct SeriesSpread {
    busy: Arc<Mutex<HashMap<String, usize>>>,
}

/// A series taken for one create; dropping it gives it back.
pub(super) struct SeriesTaken {
    busy: Arc<Mutex<HashMap<String, usize>>>,
    series: String,
}

impl SeriesSpread {
    /// The least busy of `listed` (`None` when the account lists none: ERPNext's default).
    pub fn take(&self, listed: &[String]) -> Option<SeriesTaken> {
        let mut busy = self.busy.lock().expect("poisoned");
        let series = listed
            .iter()
            .min_by_key(|s| busy.get(s.as_str()).copied().unwrap_or(0))?
            .clone();
        *busy.entry(series.clone()).or_insert(0) += 1;
        Some(SeriesTaken {
            busy: self.busy.clone(),
            series,
        })
    }
}

impl SeriesTaken {
    pub fn name(&self) -> &str {
        &self.series
    }
}

impl Drop for SeriesTaken {
    fn drop(&mut self) {
        let mut busy = self.busy.lock().expect("poisoned");
        if let Some(n) = busy.get_mut(&self.series) {
            *n -= 1;
            if *n == 0 {
                busy.remove(&self.series);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn none_listed_means_the_default_series() {
        assert!(SeriesSpread::default().take(&[]).is_none());
    }

    #[test]
    fn creates_spread_over_the_least_busy_and_come_back() {
        let spread = SeriesSpread::default();
        let l = list(&["A-.YYYY.-", "B-.YYYY.-", "C-.YYYY.-"]);
        let a = spread.take(&l).expect("one");
        let b = spread.take(&l).expect("one");
        let c = spread.take(&l).expect("one");
        assert_eq!(
            [a.name(), b.name(), c.name()],
            ["A-.YYYY.-", "B-.YYYY.-", "C-.YYYY.-"]
        );
        // All busy once: the first listed again.
        let a2 = spread.take(&l).expect("one");
        assert_eq!(a2.name(), "A-.YYYY.-");
        // B's create answered: B is the least busy.
        drop(b);
        assert_eq!(spread.take(&l).expect("one").name(), "B-.YYYY.-");
        drop((a, c, a2));
        assert!(spread.busy.lock().unwrap().is_empty());
    }

    #[test]
    fn a_series_shared_by_two_accounts_is_counted_once_for_both() {
        let spread = SeriesSpread::default();
        let first = list(&["S1", "S2"]);
        let second = list(&["S2", "S1"]);
        let x = spread.take(&first).expect("one");
        assert_eq!(x.name(), "S1");
        // The other account prefers S2, which is free.
        let y = spread.take(&second).expect("one");
        assert_eq!(y.name(), "S2");
        // Both busy once: each takes its own first.
        assert_eq!(spread.take(&second).expect("one").name(), "S2");
    }
}
