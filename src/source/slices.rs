//! How a window is listed: in time slices, oldest first, each read completely before it is
//! decided (so an order's payments are decided oldest first whatever order the listing uses).
//!
//! Slices start at one day and adapt to what the listing finds: a slice with nothing in it doubles
//! the next one (up to [`MAX_STEP`]), a slice that needed more than one page halves it (down to
//! one day). A slice longer than a day that turns out to need more than [`MAX_PAGES_WIDE`] pages
//! is abandoned and read again in halves, so a busy stretch after an empty one is still read about
//! a day at a time (a few wasted requests once, not a month held in memory). A busy month is read a
//! day at a time with no extra request; an empty year costs about ten requests instead of 365, and
//! an empty decade about twenty instead of 3,650.
//!
//! A source whose search reads at most so many pages of one window (Mercado Pago: 10,000 rows,
//! [`crate::source::PaymentSource::page_ceiling`]) gets slices below a day where a day holds
//! more: a slice that would pass the ceiling is read again in halves, down to [`FLOOR`], and the
//! slices grow back towards a day once they come back light.

use jiff::{SignedDuration, Timestamp};

use super::Window;

/// The first and smallest slice.
pub const MIN_STEP: SignedDuration = SignedDuration::from_hours(24);
/// The largest slice an empty stretch grows to.
pub const MAX_STEP: SignedDuration = SignedDuration::from_hours(24 * 256);

/// Pages a slice longer than [`MIN_STEP`] may take before it is read again in halves.
pub const MAX_PAGES_WIDE: u32 = 2;
/// The shortest slice a page ceiling can force.
pub const FLOOR: SignedDuration = SignedDuration::from_secs(1);

/// Walks a window slice by slice; told after each slice what it held.
#[derive(Debug, Clone)]
pub struct SliceWalker {
    window: Window,
    /// Start of the next slice; `None` when the window is done.
    next_from: Option<Timestamp>,
    step: SignedDuration,
    /// The source's page ceiling for one window.
    ceiling: Option<u32>,
}

impl SliceWalker {
    pub fn new(window: Window) -> SliceWalker {
        SliceWalker {
            next_from: (window.from <= window.to).then_some(window.from),
            window,
            step: MIN_STEP,
            ceiling: None,
        }
    }

    /// A walker for a source that reads at most `ceiling` pages of one window.
    pub fn with_ceiling(mut self, ceiling: Option<u32>) -> SliceWalker {
        self.ceiling = ceiling;
        self
    }

    /// The next slice: `[from, from + step)`, clipped to the window's end.
    pub fn next_slice(&mut self) -> Option<Window> {
        let from = self.next_from?;
        let end = from
            .checked_add(self.step - SignedDuration::from_millis(1))
            .unwrap_or(self.window.to)
            .min(self.window.to);
        self.next_from = end
            .checked_add(SignedDuration::from_millis(1))
            .ok()
            .filter(|n| *n <= self.window.to);
        Some(Window {
            field: self.window.field,
            from,
            to: end,
        })
    }

    /// How many pages the current slice may take before [`SliceWalker::too_big`]; `None`: all.
    /// At [`FLOOR`] nothing shorter can be tried: the source's own limit then answers.
    pub fn page_limit(&self) -> Option<u32> {
        if self.step > MIN_STEP {
            Some(MAX_PAGES_WIDE)
        } else if self.step > FLOOR {
            self.ceiling
        } else {
            None
        }
    }

    /// The slice just started needs more pages than [`SliceWalker::page_limit`]: it is read
    /// again from its start, in a slice half as long (below a day only for a page ceiling).
    pub fn too_big(&mut self, slice: &Window) {
        self.next_from = Some(slice.from);
        let floor = if self.step > MIN_STEP {
            MIN_STEP
        } else {
            FLOOR
        };
        self.step = (self.step / 2).max(floor);
    }

    /// What the slice just read held: its operations and the pages it took.
    pub fn observe(&mut self, items: usize, pages: u32) {
        let light = self.ceiling.is_some_and(|c| pages <= c / 4);
        self.step = if items == 0 {
            (self.step * 2).min(MAX_STEP)
        } else if self.step < MIN_STEP {
            // Below a day only because a ceiling forced it: back towards a day when light.
            if light {
                (self.step * 2).min(MIN_STEP)
            } else {
                self.step
            }
        } else if pages > 1 {
            (self.step / 2).max(MIN_STEP)
        } else {
            self.step
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::WindowField;

    fn window(from: &str, to: &str) -> Window {
        Window {
            field: WindowField::Created,
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
        }
    }

    /// Walk `w`, answering each slice with `answer(slice) -> (items, pages)`; the slices walked.
    fn walk(w: Window, answer: impl Fn(&Window) -> (usize, u32)) -> Vec<Window> {
        walk_with(SliceWalker::new(w), answer)
    }

    fn walk_with(mut walker: SliceWalker, answer: impl Fn(&Window) -> (usize, u32)) -> Vec<Window> {
        let mut out = Vec::new();
        let mut tries = 0;
        while let Some(s) = walker.next_slice() {
            tries += 1;
            assert!(tries < 100_000, "the walk does not end");
            let (items, pages) = answer(&s);
            if walker.page_limit().is_some_and(|limit| pages > limit) {
                walker.too_big(&s);
                continue;
            }
            walker.observe(items, pages);
            out.push(s);
        }
        out
    }

    fn assert_tiles(w: &Window, slices: &[Window]) {
        assert_eq!(slices.first().unwrap().from, w.from);
        assert_eq!(slices.last().unwrap().to, w.to);
        for pair in slices.windows(2) {
            assert_eq!(
                pair[1].from,
                pair[0].to + SignedDuration::from_millis(1),
                "{pair:?}"
            );
        }
    }

    #[test]
    fn a_busy_month_is_read_one_day_at_a_time() {
        let w = window("2026-10-01T03:00:00Z", "2026-11-01T02:59:59.999Z");
        let slices = walk(w, |_| (60, 2));
        assert_eq!(slices.len(), 31);
        assert_tiles(&w, &slices);
    }

    #[test]
    fn an_empty_decade_takes_a_few_requests_not_one_per_day() {
        let w = window("2016-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
        let slices = walk(w, |_| (0, 1));
        assert!(slices.len() <= 25, "{}", slices.len());
        assert_tiles(&w, &slices);
    }

    #[test]
    fn after_an_empty_stretch_a_busy_day_shrinks_the_slices_again() {
        // Empty until 2026-06-01, then busy every day.
        let busy_from: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let w = window("2025-01-01T00:00:00Z", "2026-06-30T23:59:59.999Z");
        // 200 operations a day (four pages), none before.
        let slices = walk(w, |s| {
            if s.to < busy_from {
                (0, 1)
            } else {
                let days = s.to.duration_since(s.from.max(busy_from)).as_hours() / 24 + 1;
                (200 * days as usize, 4 * days as u32)
            }
        });
        assert_tiles(&w, &slices);
        let last_week: Vec<_> = slices.iter().rev().take(7).collect();
        assert!(
            last_week
                .iter()
                .all(|s| s.to.duration_since(s.from) < SignedDuration::from_hours(24)),
            "{last_week:?}"
        );
        assert!(slices.len() < 30 + 20, "{}", slices.len());
    }

    #[test]
    fn a_window_of_one_instant_is_one_slice_and_a_reversed_one_none() {
        let w = window("2026-10-01T00:00:00Z", "2026-10-01T00:00:00Z");
        assert_eq!(walk(w, |_| (1, 1)).len(), 1);
        let reversed = window("2026-10-02T00:00:00Z", "2026-10-01T00:00:00Z");
        assert!(walk(reversed, |_| (0, 1)).is_empty());
    }

    #[test]
    fn the_end_of_time_does_not_overflow() {
        let w = Window {
            field: WindowField::Created,
            from: "9999-12-01T00:00:00Z".parse().unwrap(),
            to: Timestamp::MAX,
        };
        let slices = walk(w, |_| (0, 1));
        assert_tiles(&w, &slices);
    }

    /// A day of 30,000 payments (600 pages) with a ceiling of 200 pages: read in slices of
    /// under a day that each fit, then a day at a time again once the burst is over.
    #[test]
    fn a_page_ceiling_splits_a_busy_day_and_the_slices_grow_back() {
        let burst_from: Timestamp = "2026-10-02T00:00:00Z".parse().unwrap();
        let burst_to: Timestamp = "2026-10-03T00:00:00Z".parse().unwrap();
        let w = window("2026-10-01T00:00:00Z", "2026-10-10T23:59:59.999Z");
        let per_hour_in_burst = 30_000 / 24;
        let answer = |s: &Window| {
            let overlap = s.to.min(burst_to).duration_since(s.from.max(burst_from));
            let burst = if overlap.is_negative() {
                0
            } else {
                (overlap.as_secs_f64() / 3600.0 * per_hour_in_burst as f64).ceil() as usize
            };
            let items = burst + 10;
            (items, (items / 50 + 1) as u32)
        };
        let walker = SliceWalker::new(w).with_ceiling(Some(200));
        let slices = walk_with(walker, answer);
        assert_tiles(&w, &slices);
        for s in &slices {
            assert!(answer(s).1 <= 200, "{s:?} passes the ceiling");
        }
        assert!(
            slices
                .iter()
                .filter(|s| s.from >= burst_to)
                .any(|s| s.to.duration_since(s.from) >= SignedDuration::from_hours(23)),
            "back to a day after the burst: {slices:?}"
        );
        assert!(slices.len() < 40, "{}", slices.len());
    }

    #[test]
    fn without_a_ceiling_a_busy_day_is_one_slice() {
        let w = window("2026-10-01T00:00:00Z", "2026-10-01T23:59:59.999Z");
        let slices = walk(w, |_| (30_000, 600));
        assert_eq!(slices.len(), 1);
    }
}
