//! `paysync explain <operation-id>`: everything known about one operation, for the operator who
//! asks "what happened to payment X" — its state in the source (read live), every decision
//! paysync made for it (the ledger's history, with time and trigger), its ledger row, the ERPNext
//! entries carrying its id (read live), the reversals of its refunds and the inbox triggers it
//! had.
//!
//! Gathering ([`explain`]) reads only; it books, records and changes nothing. A source or ERP that
//! cannot be read is shown as such (the ledger's part is still worth showing). Rendering is
//! [`Explanation::text`] (for people) or [`Explanation::json`] (for tools).

use serde_json::{Value, json};

use crate::app::App;
use crate::domain::{Operation, OperationEntry};
use crate::exit::{EXIT_FAILED, EXIT_OK};
use crate::pipeline::AccountCtx;
use crate::store::{HistoryRow, LedgerRow, StoreError, StoredReversal, TriggerRow};

/// What is known about one operation of one account.
pub struct Explanation {
    pub account: String,
    pub uid: String,
    /// The source's answer now, or why it could not be read.
    pub source: Result<Operation, String>,
    pub row: Option<LedgerRow>,
    pub history: Vec<HistoryRow>,
    pub triggers: Vec<TriggerRow>,
    /// The ERPNext entries whose `reference_no` is the operation id (any state), or why not.
    pub entries: Result<Vec<OperationEntry>, String>,
    /// The reversals of its refunds paysync made (`reverse_refunds`), as the ledger has them.
    pub reversals: Vec<StoredReversal>,
}

impl Explanation {
    /// Nothing anywhere knows the operation.
    pub fn unknown(&self) -> bool {
        self.source.is_err()
            && self.row.is_none()
            && self.history.is_empty()
            && self.triggers.is_empty()
            && self.reversals.is_empty()
            && self.entries.as_ref().is_ok_and(|e| e.is_empty())
    }

    /// The human text.
    pub fn text(&self) -> String {
        let mut out = format!("operation {} (account {})\n", self.uid, self.account);
        out.push_str("source, read now: ");
        match &self.source {
            Ok(op) => out.push_str(&format!(
                "{} (status {}), {} {}, created {}, reference {:?}{}{}\n",
                status_word(op),
                op.source_status,
                op.total,
                op.currency,
                op.created,
                op.reference,
                op.marketplace_order
                    .as_ref()
                    .map(|o| format!(", marketplace order {o}"))
                    .unwrap_or_default(),
                if op.is_test { ", test mode" } else { "" },
            )),
            Err(e) => out.push_str(&format!("not read: {e}\n")),
        }
        match &self.row {
            Some(r) => out.push_str(&format!(
                "ledger now: {}{}; first seen {}, last seen {}, seen {} times\n",
                r.decision,
                r.erp_entry
                    .as_ref()
                    .map(|e| format!(", Payment Entry {e}"))
                    .unwrap_or_default(),
                r.first_seen,
                r.last_seen,
                r.times_seen
            )),
            None => out.push_str("ledger now: never examined\n"),
        }
        out.push_str("decisions, oldest first:\n");
        if self.history.is_empty() {
            out.push_str("  none recorded\n");
        }
        for h in &self.history {
            let repeats = if h.repeats > 1 {
                format!(" ×{} (last {})", h.repeats, h.last_at)
            } else {
                String::new()
            };
            let reason = if h.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", h.reason)
            };
            out.push_str(&format!(
                "  {}  {:<7}  {}{}{}{}\n",
                h.decided_at,
                h.trigger.as_str(),
                h.decision,
                h.erp_entry
                    .as_ref()
                    .map(|e| format!(" {e}"))
                    .unwrap_or_default(),
                repeats,
                reason
            ));
        }
        out.push_str("ERPNext entries with this reference_no, read now:\n");
        match &self.entries {
            Ok(entries) if entries.is_empty() => out.push_str("  none\n"),
            Ok(entries) => {
                for e in entries {
                    out.push_str(&format!(
                        "  {}  {}  {} {} {}  posted {}\n",
                        e.name,
                        docstatus_word(e.docstatus),
                        e.payment_type.as_deref().unwrap_or("?"),
                        e.party.as_deref().unwrap_or("?"),
                        e.paid_amount.map(|a| a.to_string()).unwrap_or("?".into()),
                        e.posting_date.as_deref().unwrap_or("?"),
                    ));
                }
            }
            Err(e) => out.push_str(&format!("  not read: {e}\n")),
        }
        out.push_str("reversals of its refunds:\n");
        if self.reversals.is_empty() {
            out.push_str("  none\n");
        }
        for r in &self.reversals {
            out.push_str(&format!(
                "  refund {} of {}: Payment Entry {} (reference_no {}:refund:{}), {}\n",
                r.refund_key, r.amount, r.erp_entry, r.uid, r.refund_key, r.created
            ));
        }
        out.push_str("webhook triggers:\n");
        if self.triggers.is_empty() {
            out.push_str("  none\n");
        }
        for t in &self.triggers {
            out.push_str(&format!(
                "  received {}  {}  {} attempt(s){}\n",
                t.received,
                t.state,
                t.attempts,
                t.last_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
        out
    }

    /// One JSON object with every part.
    pub fn json(&self) -> Value {
        json!({
            "account": self.account,
            "operation": self.uid,
            "source": match &self.source {
                Ok(op) => json!({
                    "status": status_word(op),
                    "source_status": op.source_status,
                    "amount": op.total.to_string(),
                    "currency": op.currency,
                    "created": op.created.to_string(),
                    "reference": op.reference,
                    "marketplace_order": op.marketplace_order,
                    "test": op.is_test,
                }),
                Err(e) => json!({ "error": e }),
            },
            "ledger": self.row.as_ref().map(|r| json!({
                "decision": r.decision.as_str(),
                "reason": r.reason,
                "erp_entry": r.erp_entry,
                "sales_order": r.sales_order,
                "first_seen": r.first_seen.to_string(),
                "last_seen": r.last_seen.to_string(),
                "times_seen": r.times_seen,
            })),
            "history": self.history.iter().map(|h| json!({
                "at": h.decided_at.to_string(),
                "trigger": h.trigger.as_str(),
                "decision": h.decision.as_str(),
                "reason": h.reason,
                "erp_entry": h.erp_entry,
                "sales_order": h.sales_order,
                "amount": h.amount.map(|a| a.to_string()),
                "repeats": h.repeats,
                "last_at": h.last_at.to_string(),
            })).collect::<Vec<_>>(),
            "erp_entries": match &self.entries {
                Ok(entries) => json!(entries.iter().map(|e| json!({
                    "name": e.name,
                    "docstatus": e.docstatus,
                    "state": docstatus_word(e.docstatus),
                    "payment_type": e.payment_type,
                    "party": e.party,
                    "paid_amount": e.paid_amount.map(|a| a.to_string()),
                    "posting_date": e.posting_date,
                })).collect::<Vec<_>>()),
                Err(e) => json!({ "error": e }),
            },
            "reversals": self.reversals.iter().map(|r| json!({
                "refund": r.refund_key,
                "amount": r.amount.to_string(),
                "erp_entry": r.erp_entry,
                "reference_no": crate::domain::reversal::reversal_reference(&r.uid, &r.refund_key),
                "at": r.created.to_string(),
            })).collect::<Vec<_>>(),
            "triggers": self.triggers.iter().map(|t| json!({
                "received": t.received.to_string(),
                "state": t.state,
                "attempts": t.attempts,
                "last_error": t.last_error,
                "done": t.done.map(|d| d.to_string()),
            })).collect::<Vec<_>>(),
        })
    }
}

fn status_word(op: &Operation) -> &'static str {
    match op.status {
        crate::domain::PaymentStatus::Paid => "paid",
        crate::domain::PaymentStatus::Rejected => "rejected",
        crate::domain::PaymentStatus::Refunded => "refunded",
        crate::domain::PaymentStatus::Pending => "pending",
    }
}

fn docstatus_word(docstatus: i32) -> &'static str {
    match docstatus {
        0 => "draft",
        1 => "submitted",
        2 => "cancelled",
        _ => "unknown state",
    }
}

/// Gather everything about `uid` of `acc`: the source and ERPNext are read at once, then the
/// ledger. Only a ledger that cannot be read fails it (the other parts say why they are
/// missing).
pub async fn explain(app: &App, acc: &AccountCtx, uid: &str) -> Result<Explanation, StoreError> {
    let account = acc.settings.name.clone();
    let (source, entries) = tokio::join!(
        acc.source.get_operation(uid),
        app.erp.entries_of_operation(uid)
    );
    let ledger = &app.ledger;
    let uids = [uid.to_string()];
    let (row, history, triggers, reversals) = tokio::join!(
        ledger.rows(&account, &uids),
        ledger.history(&account, uid),
        ledger.inbox_of(&account, uid),
        ledger.reversals_of(&account, &uids)
    );
    Ok(Explanation {
        account,
        uid: uid.to_string(),
        source: source.map_err(|e| e.to_string()),
        row: row?.remove(uid),
        history: history?,
        triggers: triggers?,
        entries: entries.map_err(|e| e.to_string()),
        reversals: reversals?.remove(uid).unwrap_or_default(),
    })
}

/// `paysync explain <operation> [--account A] [--json]` on a built app: prints the
/// explanation of each account that knows the operation; the exit code.
pub async fn command(app: &App, operation: &str, account: Option<&str>, json: bool) -> u8 {
    let accounts = match accounts_of(app, operation, account).await {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut known = false;
    let mut out = Vec::new();
    for acc in accounts {
        match explain(app, acc, operation).await {
            Ok(x) => {
                known |= !x.unknown();
                out.push(x);
            }
            Err(e) => {
                eprintln!("paysync: the ledger could not be read: {e}");
                return EXIT_FAILED;
            }
        }
    }
    if json {
        let v: Vec<serde_json::Value> = out.iter().map(|x| x.json()).collect();
        let v = if v.len() == 1 {
            v.into_iter().next().expect("one")
        } else {
            serde_json::Value::Array(v)
        };
        println!("{v:#}");
    } else {
        let texts: Vec<String> = out.iter().map(|x| x.text()).collect();
        print!("{}", texts.join("\n"));
    }
    if known { EXIT_OK } else { EXIT_FAILED }
}

/// The accounts to explain `uid` for: `--account`, else those whose ledger knows it, else the
/// only one, else every account (each source is asked).
async fn accounts_of<'a>(
    app: &'a App,
    uid: &str,
    account: Option<&str>,
) -> Result<Vec<&'a AccountCtx>, u8> {
    if let Some(a) = account {
        return Ok(app
            .accounts
            .iter()
            .filter(|acc| acc.settings.name == a)
            .collect());
    }
    let mut knowing = Vec::new();
    for acc in &app.accounts {
        let name = &acc.settings.name;
        // Its row (rows recorded before the history existed have none there), or its history.
        let known = match app.ledger.rows(name, &[uid.to_string()]).await {
            Ok(rows) if !rows.is_empty() => Ok(true),
            Ok(_) => app.ledger.history(name, uid).await.map(|h| !h.is_empty()),
            Err(e) => Err(e),
        };
        match known {
            Ok(true) => knowing.push(acc),
            Ok(false) => {}
            Err(e) => {
                eprintln!("paysync: the ledger could not be read: {e}");
                return Err(EXIT_FAILED);
            }
        }
    }
    if knowing.is_empty() {
        return Ok(app.accounts.iter().collect());
    }
    Ok(knowing)
}
