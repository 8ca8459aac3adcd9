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

use jiff::{SignedDuration, Timestamp};

use super::Window;

/// The first and smallest slice.
pub const MIN_STEP: SignedDuration = SignedDuration::from_hours(24);
/// The largest slice an empty stretch grows to.
pub const MAX_STEP: SignedDuration = SignedDuration::from_hours(24 * 256);

/// Pages a slice longer than [`MIN_STEP`] may take before it is read again in halves.
pub const MAX_PAGES_WIDE: u32 = 2;

/// Walks a window slice by slice; told after each slice what it held.
#[derive(Debug, Clone)]
pub struct SliceWalker {
    window: Window,
    /// Start of the next slice; `None` when the window is done.
    next_from: Option<Timestamp>,
    step: SignedDuration,
}

impl SliceWalker {
    pub fn new(window: Window) -> SliceWalker {
        SliceWalker {
            next_from: (window.from <= window.to).then_some(window.from),
            window,
            step: MIN_STEP,
        }
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
    pub fn page_limit(&self) -> Option<u32> {
        (self.step > MIN_STEP).then_some(MAX_PAGES_WIDE)
    }

    /// The slice just started needs more pages than [`SliceWalker::page_limit`]: it is read
    /// again from its start, in a slice half as long.
    pub fn too_big(&mut self, slice: &Window) {
        self.next_from = Some(slice.from);
        self.step = (self.step / 2).max(MIN_STEP);
    }

    /// What the slice just read held: its operations and the pages it took.
    pub fn observe(&mut self, items: usize, pages: u32) {
        self.step = if items == 0 {
            (self.step * 2).min(MAX_STEP)
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
        let mut walker = SliceWalker::new(w);
        let mut out = Vec::new();
        while let Some(s) = walker.next_slice() {
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
}
