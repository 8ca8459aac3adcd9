//! Contention inside a real ERPNext, as faults (`shared/spec/erpnext-real/README.md` 32–33,
//! BRINGUP.md "Measured on this server"): gunicorn's sync workers (`Faults::erp_workers`), the
//! row lock on a naming series' counter that a create holds from its naming to its commit
//! (`Faults::erp_series_lock`), and the InnoDB deadlock between allocated creates of two series
//! (`Faults::erp_series_deadlock_rate`, recording 33a). Which latency a create is written in
//! (`Faults::erp_allocated_write_latency`) and where it waits for its lock is the create's own
//! business (`erpnext/create.rs`).
//!
//! What tests read is counted, not timed: `SimStats::max_concurrent_erp_requests` (requests
//! holding a worker), `SimStats::max_series_writes` (creates in their write phase, per series),
//! `SimStats::deadlocks` (the victims).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Request, State as AxState};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::{OwnedMutexGuard, Semaphore};

use crate::Shared;
use crate::erpnext::json_body;

/// The server's shared resources: workers, series locks, the creates being written.
#[derive(Default)]
pub(crate) struct Contention {
    /// The worker pool and its size (rebuilt when `erp_workers` changes; requests holding a
    /// worker of the old pool finish in it).
    workers: Option<(usize, Arc<Semaphore>)>,
    /// Requests being served now.
    serving: u64,
    /// `tabSeries` row locks, by the prefix a series numbers. tokio's mutex queues its waiters
    /// in arrival order, as InnoDB's lock queue does.
    series_locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Creates in their write phase, by a number of their own.
    writing: BTreeMap<u64, Phase>,
    next_phase: u64,
}

struct Phase {
    prefix: String,
    allocated: bool,
    /// An allocated create of another series was written at the same time.
    overlapped: bool,
}

impl Contention {
    /// The pool of `n` workers (`None`: no limit).
    fn pool(&mut self, n: usize) -> Option<Arc<Semaphore>> {
        if n == 0 {
            self.workers = None;
            return None;
        }
        match &self.workers {
            Some((size, pool)) if *size == n => Some(pool.clone()),
            _ => {
                let pool = Arc::new(Semaphore::new(n));
                self.workers = Some((n, pool.clone()));
                Some(pool)
            }
        }
    }
}

/// Every ERPNext request passes here. With `erp_workers` it waits for a worker, then is served
/// to the end in a task of its own: a sync worker finishes its request even when the client
/// gave up, and holds the worker until then.
pub(crate) async fn worker(AxState(state): AxState<Shared>, req: Request, next: Next) -> Response {
    let pool = {
        let mut s = state.lock().expect("poisoned");
        let n = s.opts.faults.erp_workers;
        s.contention.pool(n)
    };
    let Some(pool) = pool else {
        let _serving = Serving::enter(&state);
        return next.run(req).await;
    };
    tokio::spawn(async move {
        let _worker = pool
            .acquire_owned()
            .await
            .expect("the pool is never closed");
        let _serving = Serving::enter(&state);
        next.run(req).await
    })
    .await
    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A request being served (for `max_concurrent_erp_requests`).
struct Serving(Shared);

impl Serving {
    fn enter(state: &Shared) -> Serving {
        let mut s = state.lock().expect("poisoned");
        s.contention.serving += 1;
        s.stats.max_concurrent_erp_requests = s
            .stats
            .max_concurrent_erp_requests
            .max(s.contention.serving);
        Serving(state.clone())
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.lock() {
            s.contention.serving -= 1;
        }
    }
}

/// Wait for the row lock of the series numbering `prefix`; it is held until the guard drops
/// (the create committed or rolled back).
pub(crate) async fn lock_series(state: &Shared, prefix: &str) -> OwnedMutexGuard<()> {
    let lock = state
        .lock()
        .expect("poisoned")
        .contention
        .series_locks
        .entry(prefix.to_string())
        .or_default()
        .clone();
    lock.lock_owned().await
}

/// A create being written in the series numbering `prefix`, from [`WritePhase::enter`] to its
/// drop.
pub(crate) struct WritePhase {
    state: Shared,
    id: u64,
}

impl WritePhase {
    pub fn enter(state: &Shared, prefix: &str, allocated: bool) -> WritePhase {
        let mut guard = state.lock().expect("poisoned");
        let s = &mut *guard;
        let c = &mut s.contention;
        let id = c.next_phase;
        c.next_phase += 1;
        let mut overlapped = false;
        if allocated {
            for other in c.writing.values_mut() {
                if other.allocated && other.prefix != prefix {
                    other.overlapped = true;
                    overlapped = true;
                }
            }
        }
        c.writing.insert(
            id,
            Phase {
                prefix: prefix.to_string(),
                allocated,
                overlapped,
            },
        );
        let now = c.writing.values().filter(|p| p.prefix == prefix).count() as u64;
        let max = s
            .stats
            .max_series_writes
            .entry(prefix.to_string())
            .or_default();
        *max = (*max).max(now);
        WritePhase {
            state: state.clone(),
            id,
        }
    }

    /// An allocated create of another series was written while this one was (both allocated).
    pub fn overlapped(&self) -> bool {
        let s = self.state.lock().expect("poisoned");
        s.contention
            .writing
            .get(&self.id)
            .is_some_and(|p| p.overlapped)
    }
}

impl Drop for WritePhase {
    fn drop(&mut self) {
        if let Ok(mut s) = self.state.lock() {
            s.contention.writing.remove(&self.id);
        }
    }
}

/// A deadlock's victim, as recording 33a: HTTP 500, `exc_type` `QueryDeadlockError`, the
/// exception raised from `db_insert` of a child row, no `_server_messages` (it is not raised
/// through `frappe.throw`).
pub(crate) fn deadlock() -> Response {
    let message = "(1213, 'Deadlock found when trying to get lock; try restarting transaction')";
    let traceback = format!(
        "Traceback (most recent call last):\n  File \"apps/frappe/frappe/database/database.py\", line 230, in sql\n    self._cursor.execute(query, values)\n  File \"env/lib/python3.11/site-packages/pymysql/err.py\", line 150, in raise_mysql_exception\n    raise errorclass(errno, errval)\npymysql.err.OperationalError: {message}\n\nThe above exception was the direct cause of the following exception:\n\nTraceback (most recent call last):\n  File \"apps/frappe/frappe/app.py\", line 115, in application\n    response = frappe.api.handle(request)\n  File \"apps/frappe/frappe/api/v1.py\", line 42, in create_doc\n    return frappe.new_doc(doctype, **data).insert()\n  File \"apps/frappe/frappe/model/document.py\", line 324, in insert\n    d.db_insert()\n  File \"apps/frappe/frappe/database/database.py\", line 236, in sql\n    raise frappe.QueryDeadlockError(e) from e\nfrappe.exceptions.QueryDeadlockError: {message}\n"
    );
    json_body(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({
            "exception": format!("frappe.exceptions.QueryDeadlockError: {message}"),
            "exc_type": "QueryDeadlockError",
            "exc": serde_json::to_string(&vec![traceback]).expect("strings"),
        }),
    )
}

#[cfg(test)]
mod tests;
