//! How a window is read and cut into batches.
//!
//! The window is read in slices (a day, longer over empty stretches: `source::slices`), oldest
//! first. Each slice is read completely (all its pages) before it is decided, so an order's
//! payments inside a slice are decided oldest first whatever order the listing uses; slices are
//! decided in time order, so the same holds across slices. The next slice is fetched while this
//! one is being booked.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::Engine;
use super::run::{Item, RunCtx, RunState};
use crate::source::slices::SliceWalker;
use crate::source::{Fetched, PaymentSource, SourceError, Window};
use crate::summary::Summary;

/// Operations per batch of ERP lookups (eight Mobbex pages): each batch costs up to three reads
/// (orders, entries by `reference_no`, orders with entries), so 400 keep the reads under 0.02
/// per booked entry (100 gave 0.054); the ERP client sends up to 500 names in one request body.
/// Larger batches cost a little wall time at 16 in flight (BENCHMARKS.md).
pub(super) const BATCH: usize = 400;

/// The first batch of a run is smaller: the first creates start after two pages, not six.
pub(super) const FIRST_BATCH: usize = 100;

impl Engine {
    /// Decide every operation of `window`. Returns what was decided, the run's state (for the
    /// end-of-run pass) and the listing's failure, if it could not be read to its end.
    pub(super) async fn decide_window(
        self: &Arc<Self>,
        ctx: &Arc<RunCtx>,
        window: Window,
    ) -> (Summary, RunState, Option<SourceError>) {
        let (fetcher, mut slices) =
            spawn_listing(ctx.source.clone(), window, ctx.acc.source.api_name());
        let mut summary = Summary::default();
        let mut state = self.run_state();
        let mut failure = None;
        let mut batcher = Batcher::default();
        while let Some(slice) = slices.recv().await {
            let items = match slice {
                Ok(items) => items.into_iter().map(|f| ctx.item(f)).collect(),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            for batch in batcher.push(items, &mut state.seen) {
                let s = self.process_batch(ctx, &mut state, batch, None).await;
                summary.merge(s);
                state.reap(&mut summary);
            }
        }
        drop(slices);
        let _ = fetcher.await;
        // The remainder is decided even when a later slice failed: its operations were read.
        if let Some(batch) = batcher.finish() {
            let s = self.process_batch(ctx, &mut state, batch, None).await;
            summary.merge(s);
        }
        state.drain(&mut summary).await;
        (summary, state, failure)
    }
}

/// List `window` slice by slice in a task of its own, one slice ahead of its reader.
/// Every operation `source` lists in `window`, read slice by slice as a run reads them (its
/// pages, its offset ceiling), each once, and how many documents could not be read. Decides
/// nothing: for `paysync audit`.
pub async fn list_window(
    source: Arc<dyn PaymentSource>,
    window: Window,
    api: &'static str,
) -> Result<(Vec<crate::domain::Operation>, usize), SourceError> {
    let (fetcher, mut slices) = spawn_listing(source, window, api);
    let mut ops: Vec<crate::domain::Operation> = Vec::new();
    let mut seen = HashSet::new();
    let mut unreadable = 0;
    while let Some(slice) = slices.recv().await {
        for f in slice? {
            match f {
                // A listing that shifts while it is read can repeat one.
                Fetched::Op(op) if seen.insert(op.uid.clone()) => ops.push(op),
                Fetched::Op(_) => {}
                Fetched::Bad { .. } => unreadable += 1,
            }
        }
    }
    let _ = fetcher.await;
    Ok((ops, unreadable))
}

fn spawn_listing(
    source: Arc<dyn PaymentSource>,
    window: Window,
    api: &'static str,
) -> (
    tokio::task::JoinHandle<()>,
    mpsc::Receiver<Result<Vec<Fetched>, SourceError>>,
) {
    let (tx, rx) = mpsc::channel(1);
    let fetcher = tokio::spawn(
        async move {
            let mut walker = SliceWalker::new(window).with_ceiling(source.page_ceiling());
            while let Some(slice) = walker.next_slice() {
                let result =
                    match fetch_all(source.as_ref(), &slice, walker.page_limit(), api).await {
                        Ok(Some((items, pages))) => {
                            walker.observe(items.len(), pages);
                            Ok(items)
                        }
                        Ok(None) => {
                            walker.too_big(&slice);
                            continue;
                        }
                        Err(e) => Err(e),
                    };
                let failed = result.is_err();
                if tx.send(result).await.is_err() || failed {
                    return;
                }
            }
        }
        .in_current_span(),
    );
    (fetcher, rx)
}

/// Read every page of one slice. A source that ignores `page` would loop forever: a page that
/// repeats the previous page's first operation stops the listing with an error (worded for
/// `api`, the source's name).
///
/// Returns the slice's items and the number of pages read; `None` when it needs more than
/// `page_limit` pages (then it is read again in smaller slices).
pub(super) async fn fetch_all(
    source: &dyn PaymentSource,
    window: &Window,
    page_limit: Option<u32>,
    api: &'static str,
) -> Result<Option<(Vec<Fetched>, u32)>, SourceError> {
    let mut items = Vec::new();
    let mut previous_first: Option<String> = None;
    for page in 0u32.. {
        let p = match source.list_page(window, page).await {
            Ok(p) => p,
            // The source cannot page this far into one window: shorter slices, while there is
            // a shorter one to try (`page_limit` is `None` at the floor).
            Err(SourceError::Api { code, .. })
                if code == crate::source::PAST_PAGE_CEILING && page > 0 && page_limit.is_some() =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let first = p.items.iter().find_map(|i| match i {
            Fetched::Op(o) => Some(o.uid.clone()),
            Fetched::Bad { uid, .. } => uid.clone(),
        });
        if first.is_some() && first == previous_first {
            return Err(SourceError::Malformed {
                api,
                message: format!(
                    "page {page} repeats page {}: paging is not honoured",
                    page - 1
                ),
            });
        }
        previous_first = first;
        let last = p.is_last;
        // The first page says how many the window holds: one that cannot fit in the pages
        // allowed is split now, not after reading all it can.
        let page_len = p.items.len() as u64;
        let past_limit = |limit: u32| p.total.is_some_and(|t| t > page_len * u64::from(limit));
        if page == 0 && !last && page_limit.is_some_and(past_limit) {
            return Ok(None);
        }
        items.extend(p.items);
        if last {
            return Ok(Some((items, page + 1)));
        }
        if page_limit.is_some_and(|limit| page + 1 >= limit) {
            return Ok(None);
        }
    }
    unreachable!("the page counter ran out")
}

/// Cuts the listing into lookup batches of [`BATCH`] operations, ordered by (order, creation
/// time) so each order's payments are decided oldest first (an order straddling two batches is
/// chained). A slice's remainder waits for the next slice, so sparse days still make full batches;
/// the remainder is older than anything a later slice brings, so the order is kept.
/// Duplicates (a listing that shifted while it was read) are dropped.
#[derive(Default)]
pub(super) struct Batcher {
    pending: Vec<(String, Timestamp, Item)>,
    /// Batches handed out so far.
    sent: usize,
}

impl Batcher {
    /// Add a slice; returns the full batches now ready. `seen` holds the run's operation ids:
    /// one listed again, or already pulled in by an earlier batch, is dropped.
    pub fn push(&mut self, items: Vec<Item>, seen: &mut HashSet<String>) -> Vec<Vec<Item>> {
        for item in items {
            match &item {
                Item::Op(e) => {
                    if !seen.insert(e.op.uid.clone()) {
                        continue;
                    }
                    let order = e.order.clone().unwrap_or_default();
                    self.pending.push((order, e.op.created, item));
                }
                Item::Bad { .. } => self.pending.push((String::new(), Timestamp::MIN, item)),
            }
        }
        self.sort();
        let mut batches = Vec::new();
        loop {
            let size = if self.sent == 0 { FIRST_BATCH } else { BATCH };
            if self.pending.len() < size {
                break;
            }
            batches.push(
                self.pending
                    .drain(..size)
                    .map(|(_, _, item)| item)
                    .collect(),
            );
            self.sent += 1;
        }
        batches
    }

    /// The last, partial batch.
    pub fn finish(&mut self) -> Option<Vec<Item>> {
        if self.pending.is_empty() {
            return None;
        }
        self.sort();
        let rest = std::mem::take(&mut self.pending);
        Some(rest.into_iter().map(|(_, _, item)| item).collect())
    }

    fn sort(&mut self) {
        self.pending
            .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::fakes::{op, paid};
    use crate::pipeline::run::Examined;

    fn item(uid: &str, order: Option<&str>, minute: i64) -> Item {
        Item::Op(Examined {
            op: op(uid, order.unwrap_or("shop"), paid(), "100", minute),
            order: order.map(str::to_string),
        })
    }

    fn uids(batch: &[Item]) -> Vec<String> {
        batch
            .iter()
            .map(|i| match i {
                Item::Op(e) => e.op.uid.clone(),
                Item::Bad { uid, .. } => uid.clone().unwrap_or_default(),
            })
            .collect()
    }

    /// An order's payments come out oldest first whatever order they were listed in; a
    /// repeated operation (a listing that shifted) is dropped; a remainder waits for more.
    #[test]
    fn a_batch_holds_each_orders_payments_oldest_first_without_repeats() {
        let mut b = Batcher::default();
        let mut seen = HashSet::new();
        let listed = vec![
            item("b2", Some("B"), 20),
            item("a2", Some("A"), 30),
            item("b1", Some("B"), 10),
            item("a1", Some("A"), 5),
            item("a2", Some("A"), 30),
        ];
        assert!(
            b.push(listed, &mut seen).is_empty(),
            "fewer than a batch: held back"
        );
        let rest = b.finish().unwrap();
        assert_eq!(uids(&rest), ["a1", "a2", "b1", "b2"]);
        assert!(b.finish().is_none());
        // Already seen in this run (pulled in by an earlier batch): not decided twice.
        assert!(b.push(vec![item("a1", Some("A"), 5)], &mut seen).is_empty());
        assert!(b.finish().is_none());
    }

    /// Full batches go at once, the remainder waits for the next slice (whose operations are all
    /// newer), and a malformed document sorts first without breaking the order of the rest.
    #[test]
    fn full_batches_go_at_once_and_the_remainder_waits_for_the_next_slice() {
        let mut b = Batcher::default();
        let mut seen = HashSet::new();
        let mut slice: Vec<Item> = (0..FIRST_BATCH as i64 + 3)
            .map(|i| item(&format!("p{i:03}"), Some("A"), i))
            .collect();
        slice.push(Item::Bad {
            uid: Some("bad".into()),
            reason: "r".into(),
        });
        let ready = b.push(slice, &mut seen);
        assert_eq!(ready.len(), 1);
        assert_eq!(
            ready[0].len(),
            FIRST_BATCH,
            "the first batch is the small one"
        );
        assert_eq!(uids(&ready[0])[0], "bad");
        assert_eq!(uids(&ready[0])[1], "p000");
        let next = vec![item("q", Some("A"), 1000)];
        assert!(b.push(next, &mut seen).is_empty());
        let rest = b.finish().unwrap();
        let mut want: Vec<String> = (FIRST_BATCH - 1..FIRST_BATCH + 3)
            .map(|i| format!("p{i:03}"))
            .collect();
        want.push("q".into());
        assert_eq!(uids(&rest), want);
        // Later batches are full size.
        let later: Vec<Item> = (0..BATCH as i64)
            .map(|i| item(&format!("r{i:03}"), Some("B"), 2000 + i))
            .collect();
        let ready = b.push(later, &mut seen);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].len(), BATCH);
    }
}
