//! `paysync audit --since D --until D [--account A] [--json]`: does the gateway agree with the
//! books over a period? Reads the account's operations created in the period from the source
//! (and a month either side, to know the operations entries of the period may name), the Payment
//! Entries of the period with the account's mode of payment and those carrying the operations'
//! ids, the orders' customers and the ledger's bookings — every read batched — then asks
//! `domain::audit` for one verdict per operation and per unknown entry.
//!
//! Read-only: it creates, records and changes nothing. Text: the findings that need attention,
//! then the totals per verdict and per day; `--json`: one JSON object per finding, a line each.
//! Exit 0 when every finding is `ok` or `pending_in_source`, 1 otherwise (or when a read fails).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use jiff::ToSpan;
use jiff::civil::Date;
use serde_json::json;

use crate::app::{App, created_window};
use crate::domain::audit::{AuditInput, AuditVerdict, Finding, audit};
use crate::domain::pick_order;
use crate::domain::reversal::reversal_reference;
use crate::exit::{EXIT_FAILED, EXIT_OK};
use crate::pipeline::{AccountCtx, list_window};

/// How far around the period operations are listed: an entry posted in the period for an
/// operation created before it (booked late) or after it (posted on an earlier date) is not
/// unknown.
const MARGIN_DAYS: i64 = 31;

/// One account's findings over the period.
pub struct AuditReport {
    pub account: String,
    pub findings: Vec<Finding>,
    /// Documents the source listed but could not read (not audited: see `paysync sync`).
    pub unreadable: usize,
}

/// The period's findings of `acc`, or why they could not be had.
pub async fn audit_account(
    app: &App,
    acc: &AccountCtx,
    since: Date,
    until: Date,
    bar: Option<&ProgressBar>,
) -> Result<AuditReport, String> {
    let name = &acc.settings.name;
    let tz = &app.settings.daemon.timezone;
    let step = |msg: String| {
        if let Some(b) = bar {
            b.set_message(msg);
        }
    };
    step(format!("{name}: listing the operations"));
    let listed_from = since.checked_sub(MARGIN_DAYS.days()).unwrap_or(since);
    let listed_to = until.checked_add(MARGIN_DAYS.days()).unwrap_or(until);
    let (listed, unreadable) = list_window(
        acc.source.clone(),
        created_window(tz, listed_from, listed_to),
        acc.settings.source.api_name(),
    )
    .await
    .map_err(|e| format!("account {name}: {e}"))?;
    let known_uids: HashSet<String> = listed.iter().map(|o| o.uid.clone()).collect();
    let ops: Vec<_> = listed
        .into_iter()
        .filter(|o| {
            let day = o.created.to_zoned(tz.clone()).date();
            day >= since && day <= until
        })
        .collect();
    if let Some(b) = bar {
        b.set_position(ops.len() as u64);
    }
    let policy = app
        .engine
        .policy(&acc.settings)
        .await
        .map_err(|e| format!("account {name}: {e}"))?;

    step(format!("{name}: reading the orders"));
    let keys: Vec<String> = {
        let mut k: Vec<String> = ops
            .iter()
            .filter_map(|o| acc.settings.order_key(o).map(str::to_string))
            .collect();
        k.sort();
        k.dedup();
        k
    };
    let orders = app
        .erp
        .sales_orders(&acc.settings.order_field, &keys)
        .await
        .map_err(|e| format!("account {name}: reading the orders: {e}"))?;
    let customer_of: HashMap<String, String> = ops
        .iter()
        .filter_map(|o| {
            let key = acc.settings.order_key(o)?;
            let holders = orders.get(key)?.clone();
            let order = pick_order(holders).ok().flatten()?;
            Some((o.uid.clone(), order.customer))
        })
        .collect();

    step(format!("{name}: reading ERPNext's entries"));
    let mut references: Vec<String> = Vec::new();
    for o in &ops {
        references.push(o.uid.clone());
        references.extend(o.refunds.iter().map(|r| reversal_reference(&o.uid, &r.key)));
    }
    let entries = app
        .erp
        .audit_entries(&crate::erp::AuditQuery {
            company: &policy.company,
            mode_of_payment: &policy.mode_of_payment,
            from: since,
            to: until,
            references: &references,
        })
        .await
        .map_err(|e| format!("account {name}: reading the entries: {e}"))?;

    step(format!("{name}: reading the ledger"));
    let uids: Vec<String> = ops.iter().map(|o| o.uid.clone()).collect();
    let rows = app
        .ledger
        .rows(name, &uids)
        .await
        .map_err(|e| format!("account {name}: the ledger: {e}"))?;
    let booked_by_us: HashMap<String, String> = rows
        .into_iter()
        .filter(|(_, r)| r.decision.is_booked())
        .filter_map(|(uid, r)| r.erp_entry.map(|e| (uid, e)))
        .collect();

    let findings = audit(&AuditInput {
        ops: &ops,
        known_uids: &known_uids,
        customer_of: &customer_of,
        booked_by_us: &booked_by_us,
        entries: &entries,
        fees: policy.fees.as_ref(),
        include_test: policy.include_test,
        tz,
    });
    Ok(AuditReport {
        account: name.clone(),
        findings,
        unreadable,
    })
}

/// The finding as one JSON object.
fn finding_json(account: &str, f: &Finding) -> serde_json::Value {
    json!({
        "account": account,
        "verdict": f.verdict.as_str(),
        "operation": f.operation,
        "entry": f.entry,
        "source_amount": f.source_amount.map(|a| a.to_string()),
        "erp_amount": f.erp_amount.map(|a| a.to_string()),
        "day": f.day.to_string(),
        "detail": f.detail,
    })
}

/// The human text of the reports: what needs attention, then totals per verdict and per day.
pub fn text(reports: &[AuditReport], since: Date, until: Date) -> String {
    let mut out = format!("audit {since} .. {until}\n");
    let mut totals: BTreeMap<AuditVerdict, usize> = BTreeMap::new();
    let mut per_day: BTreeMap<Date, BTreeMap<AuditVerdict, usize>> = BTreeMap::new();
    for r in reports {
        for f in &r.findings {
            *totals.entry(f.verdict).or_default() += 1;
            *per_day
                .entry(f.day)
                .or_default()
                .entry(f.verdict)
                .or_default() += 1;
            if !f.verdict.is_clean() {
                out.push_str(&format!(
                    "{:<17} {}  {}  entry {}  source {}  erp {}  {}\n",
                    f.verdict.as_str(),
                    r.account,
                    f.operation.as_deref().unwrap_or("-"),
                    f.entry.as_deref().unwrap_or("-"),
                    f.source_amount.map(|a| a.to_string()).unwrap_or("-".into()),
                    f.erp_amount.map(|a| a.to_string()).unwrap_or("-".into()),
                    f.detail
                ));
            }
        }
        if r.unreadable > 0 {
            out.push_str(&format!(
                "{}: {} documents the source listed could not be read (not audited; `paysync sync` names them)\n",
                r.account, r.unreadable
            ));
        }
    }
    out.push_str("totals:");
    for v in AuditVerdict::ALL {
        out.push_str(&format!(" {}={}", v, totals.get(&v).copied().unwrap_or(0)));
    }
    out.push('\n');
    out.push_str("per day:\n");
    for (day, counts) in &per_day {
        let line: Vec<String> = counts.iter().map(|(v, n)| format!("{v}={n}")).collect();
        out.push_str(&format!("  {day}  {}\n", line.join(" ")));
    }
    out
}

/// `paysync audit` on a built app: prints the reports; the exit code.
pub async fn command(app: &App, since: Date, until: Date, account: Option<&str>, json: bool) -> u8 {
    if until < since {
        eprintln!("paysync: --until {until} is before --since {since}");
        return crate::exit::EXIT_CONFIG;
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {pos} operations  {msg}")
                .expect("valid template"),
        );
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    let mut reports = Vec::new();
    for acc in app
        .accounts
        .iter()
        .filter(|a| account.is_none_or(|n| a.settings.name == n))
    {
        match audit_account(app, acc, since, until, bar.as_ref()).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                eprintln!("paysync: audit failed: {e}");
                return EXIT_FAILED;
            }
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if json {
        for r in &reports {
            for f in &r.findings {
                println!("{}", finding_json(&r.account, f));
            }
        }
    } else {
        print!("{}", text(&reports, since, until));
    }
    let clean = reports
        .iter()
        .all(|r| r.unreadable == 0 && r.findings.iter().all(|f| f.verdict.is_clean()));
    if clean { EXIT_OK } else { EXIT_FAILED }
}
