//! A deliberate re-booking: `paysync rebook <operation>`.
//!
//! paysync books a payment once and never again on its own — a cancelled entry stays cancelled
//! (an accountant may have cancelled it on purpose). When a person decides the payment must be
//! booked again after every entry of it was cancelled in ERPNext, this books it once more, by the
//! same rules as any booking (initial or additional is what ERPNext says *now*), under the order's
//! claim, with a new value in the server-side duplicate guard: a cancelled entry keeps its value
//! for ever (recording U4c), so the new entry carries `<id>#2`, then `<id>#3`, ...
//!
//! The ledger row is reopened (an unresolved `error`, remembering the guard value) before the
//! booking: if the process dies half way, the next run finishes the re-booking with the same
//! value, and the guard still lets only one entry commit.

use std::sync::Arc;

use super::run::Live;
use super::{AccountCtx, Engine, RunOptions};
use crate::domain::{DecisionKind, Operation, OperationEntry, PaymentStatus};
use crate::erp::ErpError;
use crate::source::{Fetched, SourceError};
use crate::store::{LedgerRow, Record, StoreError};
use crate::summary::Summary;

/// What [`RunOptions::rebook`] carries into the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Rebook {
    pub uid: String,
    /// The guard value of the new entry; `None`: the operation id itself (free: no entry holds it).
    pub guard_value: Option<String>,
    /// The operation's cancelled entries: the ledger's memory of one of them is not a booking.
    pub cancelled: Vec<String>,
}

/// The ledger row says the operation is loaded only because it remembers a cancelled entry (or
/// none: a cancelled guard holder is recorded without one), and this run re-books it. A row naming
/// any other entry is a booking made since — by a second `rebook` racing this one, say.
pub(super) fn forgets(opts: &RunOptions, row: &LedgerRow) -> bool {
    opts.rebook.as_ref().is_some_and(|r| {
        r.uid == row.uid
            && row
                .erp_entry
                .as_ref()
                .is_none_or(|e| r.cancelled.iter().any(|c| c == e))
    })
}

/// What a re-booking found before booking.
#[derive(Debug, Clone)]
pub struct RebookPlan {
    pub op: Operation,
    /// The operation's cancelled entries.
    pub cancelled: Vec<OperationEntry>,
    pub rebook: Rebook,
}

#[derive(Debug, thiserror::Error)]
pub enum RebookError {
    #[error("reading operation {uid} from the payment source: {source}")]
    Source {
        uid: String,
        #[source]
        source: SourceError,
    },
    #[error("reading operation {uid}'s entries from ERPNext: {source}")]
    Erp {
        uid: String,
        #[source]
        source: ErpError,
    },
    #[error("ledger: {0}")]
    Store(#[from] StoreError),
    #[error(
        "operation {uid} is not paid (status {source_status}: {status:?}); only a paid operation is booked"
    )]
    NotPaid {
        uid: String,
        source_status: String,
        status: PaymentStatus,
    },
    #[error(
        "operation {uid} is still booked in ERPNext: Payment Entry {entry} is {state}; cancel it there first, then re-book"
    )]
    StillBooked {
        uid: String,
        entry: String,
        state: &'static str,
    },
}

/// The guard value for one more entry of `uid`, given the entries that exist: `None` when no entry
/// holds any value (the operation id itself is free), else `<uid>#n` with `n` one above the
/// highest taken (`<uid>` counts as 1). Compared as the guard's index compares (case-insensitive).
pub fn next_guard_value(uid: &str, entries: &[OperationEntry]) -> Option<String> {
    let uid_lower = uid.to_lowercase();
    let taken = entries
        .iter()
        .filter_map(|e| e.guard_value.as_deref())
        .filter_map(|v| {
            let v = v.trim_end().to_lowercase();
            if v == uid_lower {
                Some(1u32)
            } else {
                v.strip_prefix(&uid_lower)?.strip_prefix('#')?.parse().ok()
            }
        })
        .max()?;
    Some(format!("{uid}#{}", taken + 1))
}

impl Engine {
    /// Book operation `uid` of `account` again after every ERPNext entry of it was cancelled.
    /// Refused (nothing created, nothing recorded) when the operation is not paid or one of its
    /// entries is still a draft or submitted. A dry run says what it would create and records
    /// nothing.
    pub async fn rebook(
        self: &Arc<Self>,
        account: &AccountCtx,
        uid: &str,
        opts: &RunOptions,
    ) -> Result<(RebookPlan, Summary), RebookError> {
        let plan = self.plan_rebook(account, uid).await?;
        if let Some(live) = self.live(opts) {
            self.reopen(&live, account, &plan).await?;
        }
        let run_opts = RunOptions {
            rebook: Some(plan.rebook.clone()),
            trigger: crate::store::RunTrigger::Rebook,
            ..opts.clone()
        };
        let items = vec![Fetched::Op(plan.op.clone())];
        let summary = self
            .process_operations(account, items, &run_opts)
            .await
            .map_err(|e| match e {
                super::SyncError::Source { source, .. } => RebookError::Source {
                    uid: uid.to_string(),
                    source,
                },
                super::SyncError::Erp { source, .. } => RebookError::Erp {
                    uid: uid.to_string(),
                    source,
                },
                super::SyncError::Store { source, .. } => RebookError::Store(source),
            })?;
        Ok((plan, summary))
    }

    /// The operation as the source has it now and its entries in ERPNext: refused unless it is
    /// paid and every entry of it is cancelled; the guard value the new entry takes.
    async fn plan_rebook(
        &self,
        account: &AccountCtx,
        uid: &str,
    ) -> Result<RebookPlan, RebookError> {
        let op = account
            .source
            .get_operation(uid)
            .await
            .map_err(|source| RebookError::Source {
                uid: uid.to_string(),
                source,
            })?;
        if op.status != PaymentStatus::Paid {
            return Err(RebookError::NotPaid {
                uid: uid.to_string(),
                source_status: op.source_status.clone(),
                status: op.status,
            });
        }
        let erp_err = |source| RebookError::Erp {
            uid: uid.to_string(),
            source,
        };
        let entries = self
            .erp
            .entries_of_operation(&op.uid)
            .await
            .map_err(erp_err)?;
        if let Some(held) = entries.iter().find(|e| e.docstatus != 2) {
            return Err(RebookError::StillBooked {
                uid: op.uid.clone(),
                entry: held.name.clone(),
                state: if held.docstatus == 0 {
                    "a draft"
                } else {
                    "submitted"
                },
            });
        }
        let guarded = self.erp.guard_installed().await.map_err(erp_err)?;
        let rebook = Rebook {
            uid: op.uid.clone(),
            cancelled: entries.iter().map(|e| e.name.clone()).collect(),
            guard_value: if guarded {
                next_guard_value(&op.uid, &entries)
            } else {
                None
            },
        };
        Ok(RebookPlan {
            op,
            cancelled: entries,
            rebook,
        })
    }

    /// Reopen the operation's ledger row (an unresolved `error` remembering the guard value), so
    /// an interrupted re-booking is finished by the next run. Refused when the row names an entry
    /// booked since ERPNext was asked (a second `rebook` racing this one).
    async fn reopen(
        &self,
        live: &Live,
        account: &AccountCtx,
        plan: &RebookPlan,
    ) -> Result<(), RebookError> {
        let op = &plan.op;
        let names: Vec<&str> = plan.cancelled.iter().map(|e| e.name.as_str()).collect();
        let reason = if names.is_empty() {
            "re-booking requested (`paysync rebook`); no entry of it exists in ERPNext".to_string()
        } else {
            format!(
                "re-booking requested (`paysync rebook`) after Payment Entry {} was cancelled in ERPNext",
                names.join(", ")
            )
        };
        let rec = Record {
            account: account.settings.name.clone(),
            uid: op.uid.clone(),
            reference: op.reference.clone(),
            sales_order: None,
            status_code: op.status_code(),
            amount: Some(op.total),
            currency: Some(op.currency.clone()),
            decision: DecisionKind::Error,
            reason,
            erp_entry: None,
            op_created: Some(op.created),
            seen_at: self.clock.now(),
            trigger: crate::store::RunTrigger::Rebook,
        };
        let rebook = &plan.rebook;
        let reopened = live
            .ledger
            .reopen_for_rebook(&rec, rebook.guard_value.as_deref(), &rebook.cancelled)
            .await?;
        if reopened {
            return Ok(());
        }
        let row = self
            .ledger
            .rows(&rec.account, std::slice::from_ref(&rec.uid))
            .await?;
        Err(RebookError::StillBooked {
            uid: op.uid.clone(),
            entry: row
                .get(&op.uid)
                .and_then(|r| r.erp_entry.clone())
                .unwrap_or_default(),
            state: "booked meanwhile",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, guard: Option<&str>) -> OperationEntry {
        OperationEntry {
            name: name.into(),
            docstatus: 2,
            guard_value: guard.map(String::from),
            ..OperationEntry::default()
        }
    }

    #[test]
    fn the_first_rebooking_of_a_guarded_entry_takes_number_two() {
        assert_eq!(
            next_guard_value("op-1", &[entry("E1", Some("op-1"))]).as_deref(),
            Some("op-1#2")
        );
    }

    #[test]
    fn later_rebookings_count_on_from_the_highest_value() {
        let entries = [
            entry("E1", Some("op-1")),
            entry("E3", Some("op-1#3")),
            entry("E2", Some("OP-1#2")),
        ];
        assert_eq!(
            next_guard_value("op-1", &entries).as_deref(),
            Some("op-1#4")
        );
    }

    #[test]
    fn entries_booked_before_the_guard_leave_the_operation_id_free() {
        assert_eq!(next_guard_value("op-1", &[entry("E1", None)]), None);
        assert_eq!(next_guard_value("op-1", &[]), None);
    }

    #[test]
    fn other_operations_values_do_not_count() {
        // "op-10" shares a prefix with "op-1" but is another operation.
        let entries = [entry("E1", Some("op-10")), entry("E2", Some("op-1#x"))];
        assert_eq!(next_guard_value("op-1", &entries), None);
    }
}
