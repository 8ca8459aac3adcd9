//! Payments of a batch's orders that earlier runs left unresolved, re-examined with the batch.
//!
//! A trigger for a later payment retries the earlier one first, in creation order: a later payment
//! never overtakes an earlier one, and one that waited for an earlier payment is booked as soon as
//! that one resolves.

use std::collections::HashSet;

use futures::StreamExt;
use tracing::{info, warn};

use super::Engine;
use super::run::{Examined, RunCtx};

/// Unresolved payments of a batch's orders re-examined with it, at most.
const PULL_IN_LIMIT: i64 = 200;

impl Engine {
    /// Re-read from the source the unresolved payments of the batch's orders that this run has not
    /// seen (an earlier payment that failed in another run or trigger, a later one that waits for
    /// it), so they are decided with the batch. Best effort: one that cannot be re-read now keeps
    /// its ledger row, and the ledger check before each booking still holds later payments back.
    pub(super) async fn pull_in(
        &self,
        ctx: &RunCtx,
        ops: &[Examined],
        seen: &mut HashSet<String>,
    ) -> Vec<Examined> {
        let acc = &ctx.acc;
        let mut orders: Vec<String> = ops
            .iter()
            .filter(|e| !e.op.is_child && (!e.op.is_test || ctx.policy.include_test))
            .filter_map(|e| e.order.clone())
            .collect();
        orders.sort();
        orders.dedup();
        if orders.is_empty() {
            return Vec::new();
        }
        let uids: Vec<String> = match self
            .ledger
            .unresolved_in_orders(&acc.name, &orders, PULL_IN_LIMIT)
            .await
        {
            Ok(rows) => rows
                .into_iter()
                .map(|(uid, _)| uid)
                .filter(|uid| !seen.contains(uid))
                .collect(),
            Err(e) => {
                warn!(account = %acc.name, error = %e, "could not read the orders' unresolved payments");
                return Vec::new();
            }
        };
        if uids.is_empty() {
            return Vec::new();
        }
        let fetched: Vec<_> = futures::stream::iter(uids)
            .map(|uid| {
                let source = ctx.source.clone();
                async move { (source.get_operation(&uid).await, uid) }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut out = Vec::new();
        for (result, uid) in fetched {
            match result {
                // Decided with this batch, so never again in this run (a later slice may list it).
                Ok(op) if seen.insert(op.uid.clone()) => {
                    info!(account = %acc.name, uid = %op.uid, reference = %op.reference, "re-examining an unresolved payment of the order with this batch");
                    out.push(ctx.examine(op));
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(account = %acc.name, uid = %uid, error = %e, "could not re-read an unresolved payment of the order; later payments keep waiting for it");
                }
            }
        }
        out
    }
}
