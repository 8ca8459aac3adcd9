//! The Payment Entry create request from arrival to answer: the gate (authentication, latency,
//! random faults), the faults aimed at it before and after its commit (`faults`), and, with
//! `Faults::erp_series_lock`, its naming series' lock held while it is written, as Frappe holds
//! the `tabSeries` row from naming to commit (`faults::contention`).

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::naming::Naming;
use super::{Kind, gate, maybe_hang, payment_entry, validation};
use crate::Shared;
use crate::faults::contention::{WritePhase, lock_series};
use crate::faults::{self, AfterCommit};

const ENDPOINT: &str = "POST /api/resource/Payment Entry";

pub(super) async fn create(state: &Shared, headers: &HeaderMap, raw: &Bytes) -> Response {
    let body = serde_json::from_slice::<Value>(raw);
    let allocated = body.as_ref().is_ok_and(payment_entry::is_allocated);
    let (locked, latency) = {
        let s = state.lock().expect("poisoned");
        let f = &s.opts.faults;
        let latency = if allocated && !f.erp_allocated_write_latency.is_zero() {
            f.erp_allocated_write_latency
        } else {
            f.erp_write_latency
        };
        (f.erp_series_lock, latency)
    };
    // Without the series lock the whole request is the create's write phase, and its latency is
    // spent before authentication, as every other request's.
    let mut phase = None;
    if !locked
        && let Ok(b) = &body
        && let Ok(n) = Naming::of(b, payment_entry::posting_date(b))
    {
        phase = Some(WritePhase::enter(state, &n.prefix, allocated));
    }
    let gate_latency = if locked { Duration::ZERO } else { latency };
    if let Err(r) = gate(state, headers, ENDPOINT, Kind::Create(gate_latency)).await {
        state.lock().expect("poisoned").stats.erp_writes += 1;
        return r;
    }
    let body = match body {
        Ok(v) => v,
        Err(e) => return validation(&format!("Invalid JSON: {e}")),
    };
    let after = match faults::before_commit(state, &body) {
        Ok(after) => after,
        Err(r) => return r,
    };
    let mut series_lock = None;
    if locked {
        let named = payment_entry::named(&state.lock().expect("poisoned"), &body);
        match named {
            // Refused before it was named: no lock taken, nothing written.
            Err(refused) => {
                state.lock().expect("poisoned").stats.erp_writes += 1;
                return answer(state, refused, false, after).await;
            }
            Ok(n) => {
                series_lock = Some(lock_series(state, &n.prefix).await);
                phase = Some(WritePhase::enter(state, &n.prefix, allocated));
                if !latency.is_zero() {
                    tokio::time::sleep(latency).await;
                }
            }
        }
    }
    let overlapped = phase.as_ref().is_some_and(WritePhase::overlapped);
    let (resp, committed) = {
        let mut s = state.lock().expect("poisoned");
        s.stats.erp_writes += 1;
        faults::commit_create(&mut s, &body, overlapped)
    };
    // Committed or rolled back: the write phase is over and the series' row lock released.
    drop(phase);
    drop(series_lock);
    answer(state, resp, committed, after).await
}

/// What reaches the client: the real answer `resp` unless a fault after the commit replaces it
/// (an answer lost behind a proxy, a hang, a targeted fault: `faults::after_commit`).
async fn answer(state: &Shared, resp: Response, committed: bool, after: AfterCommit) -> Response {
    if committed && !after.is_targeted() {
        let lost = {
            let mut s = state.lock().expect("poisoned");
            let f = s.opts.faults.clone();
            let lost = s.hit(f.erp_lost_response_rate);
            if lost {
                s.note_fault("erp lost after commit 504 empty");
            }
            lost
        };
        maybe_hang(state).await;
        if lost {
            // Committed, but the answer never reaches the client (as behind a proxy that gave up).
            return (StatusCode::GATEWAY_TIMEOUT, "").into_response();
        }
    }
    faults::after_commit(state, resp, committed, after).await
}
