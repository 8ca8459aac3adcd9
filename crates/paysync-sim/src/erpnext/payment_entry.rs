//! Payment Entry in the simulated ERPNext: the document as JSON, and its create, validated in the
//! real order (see the parent module's top comment for the recordings each check follows).
//!
//! Both payment types to a Customer: `Receive` books from the party's receivable (`paid_from`) to
//! the bank (`paid_to`), `Pay` (a refund, 27d) the other way round, so each check reads the
//! account of the side it is about ([`Sides`]): the party's account defaults to
//! `get_party_account` (27p), the bank's is mandatory through its exchange rate ("Target" for
//! Receive, 03b; "Source" for Pay, 27n), a Bank-type bank account needs a reference no and date
//! (03c, 27o), and at submit the party's GL row refuses an account that is neither receivable nor
//! untyped (27q). A Pay allocated to an order is checked like a Receive (27i, 27k) and raises its
//! `advance_paid` as the real server does (27f/27g).

// Returns `Result<_, Response>` to short-circuit with an HTTP answer, as the handlers do.
#![allow(clippy::result_large_err)]

use std::str::FromStr;

use axum::http::StatusCode;
use axum::response::Response;
use jiff::civil::Date;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::naming::Naming;
use super::{deductions, frappe_error, json_body, lifecycle, python_error, validation};
use crate::{AccountType, SimPaymentEntry, SimReference, State, frappe_number};

/// Which account is the party's and which the bank's, by payment type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sides {
    /// `paid_from` the receivable, `paid_to` the bank.
    Receive,
    /// `paid_from` the bank, `paid_to` the receivable.
    Pay,
}

impl Sides {
    pub fn of(payment_type: &str) -> Sides {
        if payment_type == "Pay" {
            Sides::Pay
        } else {
            Sides::Receive
        }
    }
}

/// An amount as Python's `str(float)` writes it in remarks: `50.0`, `123.456789`.
fn py_float(d: Decimal) -> String {
    let n = d.normalize();
    if n.fract().is_zero() {
        format!("{}.0", n.trunc())
    } else {
        n.to_string()
    }
}

/// ERPNext's `set_remarks` (the site's currency is ARS): the amount and the party, the
/// transaction reference, one line per allocation and per deduction (03d, 27d, 29b).
fn remarks(pe: &SimPaymentEntry) -> String {
    let verb = match Sides::of(&pe.payment_type) {
        Sides::Receive => "received from",
        Sides::Pay => "to",
    };
    let mut lines = vec![format!(
        "Amount ARS {} {verb} {}",
        py_float(pe.paid_amount),
        pe.party
    )];
    if let Some(r) = &pe.reference_no {
        let date = pe
            .reference_date
            .map(|d| d.to_string())
            .unwrap_or_else(|| "None".into());
        lines.push(format!("Transaction reference no {r} dated {date}"));
    }
    for r in &pe.references {
        lines.push(format!(
            "Amount ARS {} against {} {}",
            py_float(r.allocated_amount),
            r.reference_doctype,
            r.reference_name
        ));
    }
    for d in pe.deductions.iter().filter(|d| !d.amount.is_zero()) {
        lines.push(format!(
            "Amount ARS {} deducted against {}",
            py_float(d.amount),
            d.account
        ));
    }
    lines.join("\n")
}

fn status(docstatus: i32) -> &'static str {
    match docstatus {
        0 => "Draft",
        1 => "Submitted",
        _ => "Cancelled",
    }
}

/// The document as `GET /api/resource/Payment Entry/{name}` answers it (references with the
/// orders' current totals).
pub(super) fn pe_json(pe: &SimPaymentEntry, s: &State) -> Value {
    let orders = &s.orders;
    let account_type = |a: &str| s.accounts.get(a).map(|t| t.label()).unwrap_or("");
    let total_allocated: Decimal = pe.references.iter().map(|r| r.allocated_amount).sum();
    let refs: Vec<Value> = pe
        .references
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let so = orders.get(&r.reference_name);
            json!({
                "idx": i + 1,
                "doctype": "Payment Entry Reference",
                "parent": pe.name,
                "parentfield": "references",
                "parenttype": "Payment Entry",
                "reference_doctype": r.reference_doctype,
                "reference_name": r.reference_name,
                "allocated_amount": frappe_number(r.allocated_amount),
                "total_amount": so.map(|o| frappe_number(o.grand_total)).unwrap_or(json!(0.0)),
                "outstanding_amount": so.map(|o| frappe_number(o.outstanding())).unwrap_or(json!(0.0)),
                "exchange_rate": 1.0,
            })
        })
        .collect();
    let mut doc = json!({
        "name": pe.name,
        "doctype": "Payment Entry",
        "naming_series": pe.naming_series,
        "docstatus": pe.docstatus,
        "status": status(pe.docstatus),
        "payment_type": pe.payment_type,
        "company": pe.company,
        "party_type": pe.party_type,
        "party": pe.party,
        "party_name": pe.party,
        "title": pe.party,
        "paid_from": pe.paid_from,
        "paid_from_account_type": account_type(&pe.paid_from),
        "paid_to": pe.paid_to,
        "paid_to_account_type": account_type(&pe.paid_to),
        "mode_of_payment": pe.mode_of_payment,
        "paid_amount": frappe_number(pe.paid_amount),
        "received_amount": frappe_number(pe.received_amount),
        "base_paid_amount": frappe_number(pe.paid_amount.round_dp(2)),
        "base_received_amount": frappe_number(pe.received_amount.round_dp(2)),
        "source_exchange_rate": 1.0,
        "target_exchange_rate": 1.0,
        "total_allocated_amount": frappe_number(total_allocated),
        "unallocated_amount": frappe_number(pe.unallocated_amount),
        "difference_amount": 0.0,
        "deductions": deductions::to_json(&pe.name, &pe.deductions),
        "reference_no": pe.reference_no,
        "reference_date": pe.reference_date.map(|d| d.to_string()),
        "posting_date": pe.posting_date.to_string(),
        "references": refs,
        "remarks": remarks(pe),
    });
    if let Some(a) = &pe.amended_from {
        doc["amended_from"] = json!(a);
    }
    // Absent when NULL, as Frappe leaves out an unset custom field (U1a).
    if let Some(v) = &pe.paysync_operation {
        doc[crate::guard::FIELD] = json!(v);
    }
    doc
}

/// A JSON amount as Decimal from its exact text. `Err(true)` when it is a string (the real
/// server crashes on those, recording 24a).
fn amount(v: Option<&Value>) -> Result<Option<Decimal>, bool> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(_)) => Err(true),
        Some(Value::Number(n)) => Decimal::from_str(&n.to_string())
            .or_else(|_| Decimal::from_scientific(&n.to_string()))
            .map(Some)
            .map_err(|_| false),
        Some(_) => Err(false),
    }
}

fn type_error() -> Response {
    python_error(
        "TypeError: bad operand type for abs(): 'str'",
        "File \"apps/frappe/frappe/utils/data.py\", in money_in_words",
    )
}

/// Whether `b` has a reference row with a non-zero allocation (an initial payment): ERPNext
/// inserts a `tabPayment Entry Reference` row for it (rows allocating nothing are dropped).
pub(crate) fn is_allocated(b: &Value) -> bool {
    b.get("references")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| matches!(amount(r.get("allocated_amount")), Ok(Some(a)) if !a.is_zero()))
        })
}

/// The entry's posting date: the body's, else today.
pub(crate) fn posting_date(b: &Value) -> Date {
    b.get("posting_date")
        .and_then(Value::as_str)
        .and_then(|d| d.parse::<Date>().ok())
        .unwrap_or_else(|| jiff::Zoned::now().date())
}

/// The fields of a create read before its validation.
struct Head {
    company: String,
    party: String,
    party_type: String,
    payment_type: String,
    mode: Option<String>,
    paid_to: Option<String>,
    paid_from: Option<String>,
    /// (reference_doctype, reference_name) of each row.
    refs: Vec<(String, String)>,
}

fn head(s: &State, b: &Value) -> Head {
    let text = |k: &str| b.get(k).and_then(|v| v.as_str()).map(String::from);
    let field = |r: &Value, k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    Head {
        company: text("company").unwrap_or_else(|| s.company.clone()),
        party: text("party").unwrap_or_default(),
        party_type: text("party_type").unwrap_or_default(),
        payment_type: text("payment_type").unwrap_or_else(|| "Receive".into()),
        mode: text("mode_of_payment"),
        paid_to: text("paid_to"),
        paid_from: text("paid_from"),
        refs: b
            .get("references")
            .and_then(|r| r.as_array())
            .map(|rows| {
                rows.iter()
                    .map(|r| (field(r, "reference_doctype"), field(r, "reference_name")))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// What Frappe's `insert()` does before the controller's `validate()`: the link checks, the
/// amendment check (`validate_amended_from`, 28q), then the name (`set_new_name`, where the
/// series' row lock is taken). `Err` is the refusal.
pub(crate) fn named(s: &State, b: &Value) -> Result<Naming, Response> {
    check_links(s, &head(s, b))?;
    deductions::check_links(s, b)?;
    lifecycle::amended_name(s, b)?;
    Naming::of(b, posting_date(b))
}

fn check_links(s: &State, h: &Head) -> Result<(), Response> {
    let link = |label: &str, value: &str| {
        frappe_error(
            StatusCode::EXPECTATION_FAILED,
            "LinkValidationError",
            Some(&format!("Could not find {label}: {value}")),
            false,
        )
    };
    if !s.companies.contains(&h.company) {
        return Err(link("Company", &h.company));
    }
    if h.party_type.is_empty() {
        return Err(validation("Party Type is mandatory"));
    }
    if h.party.is_empty() {
        return Err(validation("Party is mandatory"));
    }
    if !s.customers.contains(&h.party) {
        return Err(link("Party", &h.party));
    }
    if let Some(m) = &h.mode
        && !s.modes.contains_key(m)
    {
        return Err(link("Mode of Payment", m));
    }
    if let Some(a) = &h.paid_to
        && !s.accounts.contains_key(a)
    {
        return Err(link("Account Paid To", a));
    }
    if let Some(a) = &h.paid_from
        && !s.accounts.contains_key(a)
    {
        return Err(link("Account Paid From", a));
    }
    for (i, (dt, name)) in h.refs.iter().enumerate() {
        if dt == "Sales Order" {
            match s.orders.get(name) {
                None => return Err(link(&format!("Row #{}: Name", i + 1), name)),
                Some(o) if o.docstatus == 2 => {
                    return Err(frappe_error(
                        StatusCode::EXPECTATION_FAILED,
                        "CancelledLinkError",
                        Some(&format!(
                            "Cannot link cancelled document: Row #{}: Name: {name}",
                            i + 1
                        )),
                        false,
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Validates `b` as ERPNext does and commits the entry (see the parent module's top comment).
/// `overlapped`: an allocated create of another naming series was written at the same time, so
/// this one's reference rows may lose a deadlock (`Faults::erp_series_deadlock_rate`). `Err` is
/// the answer to send when it is refused or rolled back (nothing committed).
pub(crate) fn create_payment_entry(
    s: &mut State,
    b: &Value,
    overlapped: bool,
) -> Result<Response, Response> {
    let naming = named(s, b)?;
    let Head {
        company,
        party,
        party_type,
        payment_type,
        mode,
        paid_to,
        paid_from,
        refs: _,
    } = head(s, b);
    let text = |k: &str| b.get(k).and_then(|v| v.as_str()).map(String::from);
    // ERPNext's validate(). 24a: string amounts crash it (in `set_total_in_words`).
    let paid_amount = amount(b.get("paid_amount")).map_err(|is_str| {
        if is_str {
            type_error()
        } else {
            validation("Paid Amount must be a number")
        }
    })?;
    let received_amount = amount(b.get("received_amount")).map_err(|is_str| {
        if is_str {
            type_error()
        } else {
            validation("Received Amount must be a number")
        }
    })?;
    let refs_json = b
        .get("references")
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default();
    let mut refs = Vec::new();
    for r in &refs_json {
        let alloc = amount(r.get("allocated_amount")).map_err(|is_str| {
            if is_str {
                type_error()
            } else {
                validation("Allocated Amount must be a number")
            }
        })?;
        refs.push((
            r.get("reference_doctype")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            r.get("reference_name")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            alloc.unwrap_or_default(),
        ));
    }
    let docstatus = b.get("docstatus").and_then(|v| v.as_i64()).unwrap_or(0) as i32;
    // set_missing_values: the party's side defaults to get_party_account(party_type, party,
    // company): paid_from of a Receive (03d), paid_to of a Pay (27p).
    let sides = Sides::of(&payment_type);
    let (paid_from, paid_to) = match sides {
        Sides::Receive => (
            Some(paid_from.unwrap_or_else(|| s.party_account(&party, &company))),
            paid_to,
        ),
        Sides::Pay => (
            paid_from,
            Some(paid_to.unwrap_or_else(|| s.party_account(&party, &company))),
        ),
    };
    // validate_mandatory, in its order: the amounts, then the rates set from each account's
    // currency (so a missing bank account shows as its side's rate: 03b, 27n).
    let Some(paid_amount) = paid_amount else {
        return Err(validation("Paid Amount is mandatory"));
    };
    if received_amount.is_none() {
        return Err(validation("Received Amount is mandatory"));
    }
    let Some(paid_from) = paid_from else {
        return Err(validation("Source Exchange Rate is mandatory"));
    };
    let Some(paid_to) = paid_to else {
        return Err(validation("Target Exchange Rate is mandatory"));
    };
    // Frappe's mandatory check of the child rows, after the entry was named (29n names it).
    let deductions = deductions::read(b, &naming.next(s).0, |v| {
        amount(v).map_err(|is_str| {
            if is_str {
                type_error()
            } else {
                validation("Amount must be a number")
            }
        })
    })?;
    // set_received_amount: paid_from and paid_to share the currency, so the received amount
    // is the paid amount whatever was sent (29b stored received 1000 for a 950 sent).
    let received_amount = paid_amount;
    let reference_no = text("reference_no").filter(|r| !r.is_empty());
    let reference_date = text("reference_date").and_then(|d| d.parse::<Date>().ok());
    // validate_transaction_reference: the bank's side (paid_to of a Receive, paid_from of a Pay).
    let (party_account, bank_account) = match sides {
        Sides::Receive => (&paid_from, &paid_to),
        Sides::Pay => (&paid_to, &paid_from),
    };
    let is_bank = s.accounts.get(bank_account) == Some(&AccountType::Bank);
    if is_bank && (reference_no.is_none() || reference_date.is_none()) {
        return Err(validation(
            "Reference No and Reference Date is mandatory for Bank transaction",
        ));
    }
    for (dt, name, _) in &refs {
        if dt != "Sales Order" {
            continue;
        }
        let o = &s.orders[name];
        if o.docstatus == 0 {
            return Err(validation(&format!("Sales Order {name} must be submitted")));
        }
        if o.customer != party {
            return Err(validation(&format!(
                "Sales Order {name} is not associated with Customer {party}"
            )));
        }
    }
    for (i, (dt, name, alloc)) in refs.iter().enumerate() {
        if dt != "Sales Order" || alloc.is_zero() {
            continue;
        }
        let o = &s.orders[name];
        // get_orders_to_be_billed: submitted, same company, not Closed, total > advance_paid,
        // abs(100 - per_billed) > 0.01.
        let to_be_billed = o.docstatus == 1
            && o.company == company
            && o.status != "Closed"
            && o.outstanding() > Decimal::ZERO
            && (Decimal::ONE_HUNDRED - o.per_billed).abs() > Decimal::new(1, 2);
        if !to_be_billed {
            return Err(validation(&format!(
                "Sales Order {name} has already been fully paid."
            )));
        }
        // validate_allocated_amount_with_latest_data: a positive allocation above the
        // outstanding, or a negative one below it (so any negative one against an order that
        // is still owed something: 27i).
        let outstanding = o.outstanding();
        if (*alloc > Decimal::ZERO && *alloc > outstanding)
            || (*alloc < Decimal::ZERO && *alloc < outstanding)
        {
            return Err(validation(&format!(
                "Row #{}: Allocated Amount cannot be greater than outstanding amount.",
                i + 1
            )));
        }
    }
    let total_allocated: Decimal = refs.iter().map(|r| r.2).sum();
    let (unallocated_amount, difference) = deductions::unallocated_and_difference(
        sides,
        received_amount,
        total_allocated,
        &deductions,
    );
    // on_submit (21, 29h, 29k); a draft keeps its difference.
    if docstatus == 1 && !difference.is_zero() {
        return Err(validation("Difference Amount must be zero"));
    }
    // on_submit, make_gl_entries: the party's GL row (validate_account_party_type) takes a
    // receivable, payable or untyped account only (27q: a Pay with the Receive's accounts).
    if docstatus == 1
        && matches!(
            s.accounts.get(party_account),
            Some(AccountType::Bank | AccountType::Cash)
        )
    {
        return Err(validation(&format!(
            "Party Type and Party can only be set for Receivable / Payable account<br><br>{party_account}"
        )));
    }

    // db_insert: the parent row (the duplicate guard's unique index refuses here), then the
    // reference rows (where two series' inserts can deadlock, 33a). A refusal or a rollback uses
    // up no series number (U2b, U2g).
    let posting_date = posting_date(b);
    // An amendment is named after the entry it amends and uses up no series number (28l); its
    // name taken already is the primary key's duplicate (U4h).
    let amended_from = text("amended_from").filter(|a| !a.is_empty());
    let (name, number) = match lifecycle::amended_name(s, b)? {
        Some(name) => (name, None),
        None => {
            let (name, n) = naming.next(s);
            (name, Some(n))
        }
    };
    if s.entries.iter().any(|e| e.name == name) {
        return Err(lifecycle::duplicate_name(&name));
    }
    let guard_value = crate::guard::check(s, b, &name)?;
    let allocated = refs.iter().any(|r| !r.2.is_zero());
    let rate = s.opts.faults.erp_series_deadlock_rate;
    if overlapped && allocated && s.hit(rate) {
        s.note_fault("erp deadlock");
        *s.stats
            .deadlocks
            .entry(reference_no.unwrap_or_default())
            .or_default() += 1;
        return Err(crate::faults::contention::deadlock());
    }
    if let Some(number) = number {
        s.series_counters.insert(naming.prefix.clone(), number);
    }
    let mut pe = SimPaymentEntry {
        name,
        naming_series: naming.series,
        docstatus,
        payment_type,
        paid_from,
        company,
        party_type,
        party,
        paid_to,
        mode_of_payment: mode,
        paid_amount,
        received_amount,
        reference_no,
        reference_date,
        posting_date,
        references: refs
            .iter()
            .filter(|r| !r.2.is_zero())
            .map(|(dt, name, alloc)| SimReference {
                reference_doctype: dt.clone(),
                reference_name: name.clone(),
                allocated_amount: *alloc,
            })
            .collect(),
        deductions,
        unallocated_amount,
        paysync_operation: None,
        amended_from,
    };
    pe.paysync_operation = guard_value;
    // The answer's reference rows show the orders' outstanding as validated, before this entry
    // (27f: 100, though the order then owes 50).
    let doc = pe_json(&pe, s);
    // on_submit: every allocation is added to the order's advance_paid, a Pay's too (27g: the
    // Advance Payment Ledger books +allocated for both types, 27j).
    if docstatus == 1 {
        for r in &pe.references {
            if let Some(o) = s.orders.get_mut(&r.reference_name) {
                o.advance_paid += r.allocated_amount;
            }
        }
    }
    if let Some(r) = &pe.reference_no {
        s.commit_times
            .entry(r.clone())
            .or_insert_with(std::time::Instant::now);
    }
    s.entries.push(pe);
    Ok(json_body(StatusCode::OK, json!({ "data": doc })))
}

#[cfg(test)]
mod tests;
