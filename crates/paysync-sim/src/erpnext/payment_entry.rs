//! Payment Entry in the simulated ERPNext: the document as JSON, and its create, validated in the
//! real order (see the parent module's top comment for the recordings each check follows).

// Returns `Result<_, Response>` to short-circuit with an HTTP answer, as the handlers do.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::http::StatusCode;
use axum::response::Response;
use jiff::civil::Date;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::naming::Naming;
use super::{deductions, frappe_error, json_body, python_error, validation};
use crate::{SimPaymentEntry, SimReference, SimSalesOrder, State, frappe_number};

fn status(docstatus: i32) -> &'static str {
    match docstatus {
        0 => "Draft",
        1 => "Submitted",
        _ => "Cancelled",
    }
}

/// The document as `GET /api/resource/Payment Entry/{name}` answers it (references with the
/// orders' current totals).
pub(super) fn pe_json(pe: &SimPaymentEntry, orders: &BTreeMap<String, SimSalesOrder>) -> Value {
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
        "paid_to": pe.paid_to,
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
    });
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

/// What Frappe's `insert()` does before the controller's `validate()`: the link checks, then the
/// name (`set_new_name`, where the series' row lock is taken). `Err` is the refusal.
pub(crate) fn named(s: &State, b: &Value) -> Result<Naming, Response> {
    check_links(s, &head(s, b))?;
    deductions::check_links(s, b)?;
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
    if received_amount.is_none() {
        return Err(validation("Received Amount is mandatory"));
    }
    let Some(paid_to) = paid_to else {
        return Err(validation("Target Exchange Rate is mandatory"));
    };
    let Some(paid_amount) = paid_amount else {
        return Err(validation("Paid Amount is mandatory"));
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
    let is_bank = s.accounts.get(&paid_to).copied().unwrap_or(false);
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
        if *alloc > o.outstanding() {
            return Err(validation(&format!(
                "Row #{}: Allocated Amount cannot be greater than outstanding amount.",
                i + 1
            )));
        }
    }
    let total_allocated: Decimal = refs.iter().map(|r| r.2).sum();
    let (unallocated_amount, difference) =
        deductions::unallocated_and_difference(received_amount, total_allocated, &deductions);
    // on_submit (21, 29h, 29k); a draft keeps its difference.
    if docstatus == 1 && !difference.is_zero() {
        return Err(validation("Difference Amount must be zero"));
    }

    // db_insert: the parent row (the duplicate guard's unique index refuses here), then the
    // reference rows (where two series' inserts can deadlock, 33a). A refusal or a rollback uses
    // up no series number (U2b, U2g).
    let posting_date = posting_date(b);
    let (name, number) = naming.next(s);
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
    s.series_counters.insert(naming.prefix.clone(), number);
    let mut pe = SimPaymentEntry {
        name,
        naming_series: naming.series,
        docstatus,
        payment_type,
        // ERPNext's set_missing_values: get_party_account(party_type, party, company).
        paid_from: paid_from.unwrap_or_else(|| s.party_account(&party, &company)),
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
    };
    pe.paysync_operation = guard_value;
    if docstatus == 1 {
        for r in &pe.references {
            if let Some(o) = s.orders.get_mut(&r.reference_name) {
                o.advance_paid += r.allocated_amount;
            }
        }
    }
    let doc = pe_json(&pe, &s.orders);
    if let Some(r) = &pe.reference_no {
        s.commit_times
            .entry(r.clone())
            .or_insert_with(std::time::Instant::now);
    }
    s.entries.push(pe);
    Ok(json_body(StatusCode::OK, json!({ "data": doc })))
}
