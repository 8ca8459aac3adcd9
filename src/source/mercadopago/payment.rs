//! Mercado Pago payment documents (`GET /v1/payments/{id}`, the `results` of
//! `GET /v1/payments/search`) read into domain [`Operation`]s.
//!
//! Owns: which payment fields mean what (`docs/mercadopago-contract.md`, "Payment JSON") and the
//! reasons a document is refused. Every field is taken as its JSON text first and checked on its
//! own, so one odd document inside a good search page is one [`Fetched::Bad`] item and never
//! spoils the page; amounts are read from the number's exact text (never through `f64`).

use std::str::FromStr;

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{API, PAGE_SIZE, id_of_raw, status};
use crate::domain::{Fee, Operation, Refund};
use crate::source::{Fetched, Page, SourceError};

/// The fields of a payment the adapter reads, as their JSON text (`None`: absent or `null`).
#[derive(Deserialize)]
struct WirePayment<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    status: Option<&'a RawValue>,
    #[serde(borrow)]
    external_reference: Option<&'a RawValue>,
    #[serde(borrow)]
    order: Option<&'a RawValue>,
    #[serde(borrow)]
    transaction_amount: Option<&'a RawValue>,
    #[serde(borrow)]
    currency_id: Option<&'a RawValue>,
    #[serde(borrow)]
    date_created: Option<&'a RawValue>,
    #[serde(borrow)]
    date_last_updated: Option<&'a RawValue>,
    #[serde(borrow)]
    live_mode: Option<&'a RawValue>,
    #[serde(borrow)]
    fee_details: Option<&'a RawValue>,
    #[serde(borrow)]
    transaction_details: Option<&'a RawValue>,
    #[serde(borrow)]
    transaction_amount_refunded: Option<&'a RawValue>,
    #[serde(borrow)]
    refunds: Option<&'a RawValue>,
}

/// One payment document into an [`Operation`]; the error is the reason it was refused (it
/// never quotes more than the offending field's value).
pub fn parse_payment(text: &str) -> Result<Operation, String> {
    if !is_object(text) {
        return Err("unreadable payment: not an object".to_string());
    }
    let w: WirePayment =
        serde_json::from_str(text).map_err(|e| format!("unreadable payment: {e}"))?;
    build(&w)
}

/// A search answer (`{"paging": {"total": T, ...}, "results": [...]}`) into a [`Page`]: last
/// when it is short; `paging.total` is carried as the caller's hint of the window's size.
pub fn parse_search(text: &str) -> Result<Page, SourceError> {
    #[derive(Deserialize)]
    struct Search<'a> {
        #[serde(borrow)]
        results: Vec<&'a RawValue>,
        paging: Option<Paging>,
    }
    #[derive(Deserialize)]
    struct Paging {
        total: Option<u64>,
        limit: Option<u64>,
    }
    let malformed = |why: String| SourceError::Malformed {
        api: API,
        message: format!("search answer has no results array: {why}"),
    };
    if !is_object(text) {
        return Err(malformed("not an object".into()));
    }
    let s: Search = serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
    // A server that pages by fewer than were asked for would end the walk at its first page
    // (short, so taken as the last) and the offsets would skip rows: refused, never guessed.
    if let Some(limit) = s.paging.as_ref().and_then(|p| p.limit)
        && limit < u64::from(PAGE_SIZE)
    {
        return Err(SourceError::Malformed {
            api: API,
            message: format!(
                "the search paged by {limit} (paging.limit) though {PAGE_SIZE} were asked for; not read, so that no payment is skipped"
            ),
        });
    }
    let len = s.results.len();
    let items = s.results.into_iter().map(fetched).collect();
    // Only a short page ends the walk: integrators report `paging.total` varying from one page
    // to the next, so a total reached is no proof (one more, empty, page costs one request).
    Ok(Page {
        items,
        is_last: len < PAGE_SIZE as usize,
        total: s.paging.and_then(|p| p.total),
    })
}

/// One element of `results`: an operation, or a bad item carrying the id when it is readable.
fn fetched(raw: &RawValue) -> Fetched {
    match parse_payment(raw.get()) {
        Ok(op) => Fetched::Op(op),
        Err(reason) => {
            #[derive(Deserialize)]
            struct JustId<'a> {
                #[serde(borrow)]
                id: Option<&'a RawValue>,
            }
            let uid = Some(raw.get())
                .filter(|t| is_object(t))
                .and_then(|t| serde_json::from_str::<JustId>(t).ok())
                .and_then(|j| j.id)
                .and_then(id_of_raw);
            Fetched::Bad { uid, reason }
        }
    }
}

fn build(w: &WirePayment<'_>) -> Result<Operation, String> {
    let id = w.id.ok_or("missing id")?;
    let uid = id_of_raw(id).ok_or_else(|| format!("id {} is not a payment id", quote(id)))?;
    let source_status = string("status", w.status)?.ok_or("missing status")?;
    let reference = string("external_reference", w.external_reference)?.unwrap_or_default();
    let amount = w.transaction_amount.ok_or("missing transaction_amount")?;
    let total = amount_of("transaction_amount", amount)?;
    let currency =
        currency_of(string("currency_id", w.currency_id)?.ok_or("missing currency_id")?)?;
    let created = time_of(
        "date_created",
        string("date_created", w.date_created)?.ok_or("missing date_created")?,
    )?;
    let updated = match string("date_last_updated", w.date_last_updated)? {
        Some(t) => Some(time_of("date_last_updated", t)?),
        None => None,
    };
    let live_mode = match w.live_mode.map(|r| r.get()) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => return Err(format!("live_mode {} is not true or false", clip(other))),
    };
    Ok(Operation {
        status: status::status_of(&source_status),
        source_status,
        uid,
        reference,
        total,
        currency,
        created,
        updated,
        // Mercado Pago has no split payments of the Mobbex kind: every payment is its own.
        is_child: false,
        // Only an explicit `false` is test mode: a payment that does not say is a live one.
        is_test: live_mode == Some(false),
        marketplace_order: marketplace_order(w.order)?,
        fees: reconciled(
            total,
            fees_of(w.fee_details)?,
            net_of(w.transaction_details)?,
        ),
        refunds: refunds_of(w, total)?,
    })
}

/// What was given back of the payment: one [`Refund`] per `refunds[]` row (keyed by its id);
/// without rows, what the status and `transaction_amount_refunded` say — all of `total` for
/// `refunded`/`charged_back` (the refunded amount if stated), or the stated partial amount of
/// an `approved` one — as the one refund `1`.
fn refunds_of(w: &WirePayment<'_>, total: Decimal) -> Result<Vec<Refund>, String> {
    #[derive(Deserialize)]
    struct Row<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        #[serde(borrow)]
        amount: Option<&'a RawValue>,
    }
    let refunded = match w.transaction_amount_refunded {
        Some(raw) if raw.get() != "null" => amount_of("transaction_amount_refunded", raw)?,
        _ => Decimal::ZERO,
    };
    let rows: Vec<&RawValue> = match w.refunds.map(|r| r.get()) {
        None | Some("null") => Vec::new(),
        Some(text) => {
            serde_json::from_str(text).map_err(|_| "refunds is not a list".to_string())?
        }
    };
    let mut out = Vec::new();
    for (i, raw) in rows.iter().enumerate() {
        let field = format!("refunds[{i}]");
        let row: Row = Some(raw.get())
            .filter(|t| is_object(t))
            .and_then(|t| serde_json::from_str(t).ok())
            .ok_or_else(|| format!("{field} is not an object"))?;
        let key = row
            .id
            .and_then(id_of_raw)
            .ok_or_else(|| format!("{field} has no id"))?;
        let amount = row
            .amount
            .filter(|a| a.get() != "null")
            .map(|a| amount_of(&format!("{field}.amount"), a))
            .transpose()?;
        out.push(Refund { key, amount });
    }
    if !out.is_empty() {
        return Ok(out);
    }
    let status = string("status", w.status)?.unwrap_or_default();
    let amount = match status.as_str() {
        "refunded" | "charged_back" if refunded > Decimal::ZERO => Some(refunded),
        "refunded" | "charged_back" => Some(total),
        _ if refunded > Decimal::ZERO => Some(refunded),
        _ => return Ok(Vec::new()),
    };
    Ok(vec![Refund {
        key: "1".into(),
        amount,
    }])
}

/// `transaction_details.net_received_amount`: what reached the seller's account, when stated.
fn net_of(details: Option<&RawValue>) -> Result<Option<Decimal>, String> {
    #[derive(Deserialize)]
    struct Details<'a> {
        #[serde(borrow)]
        net_received_amount: Option<&'a RawValue>,
    }
    let Some(details) = details.filter(|d| d.get() != "null") else {
        return Ok(None);
    };
    let d: Details = Some(details.get())
        .filter(|t| is_object(t))
        .and_then(|t| serde_json::from_str(t).ok())
        .ok_or_else(|| format!("transaction_details {} is not an object", quote(details)))?;
    match d.net_received_amount.filter(|n| n.get() != "null") {
        None => Ok(None),
        Some(n) => amount_of("transaction_details.net_received_amount", n).map(Some),
    }
}

/// The fees, made to add up to what Mercado Pago kept when the payment says what reached the
/// seller: `fee_details` does not list every charge a MercadoLibre sale bears (shipping, for one,
/// is in `charges_details`; research notes (h)), and the bank side of the entry must be what
/// really arrived. Listed fees short of `total − net`: the rest is one more row,
/// `other_charges`; listed fees past it (a charge that is net-neutral): one row for what was
/// kept, `charges`. Without a stated net, the listed fees as they are.
fn reconciled(total: Decimal, listed: Vec<Fee>, net: Option<Decimal>) -> Vec<Fee> {
    let Some(net) = net else { return listed };
    let kept = total - net;
    let sum: Decimal = listed.iter().map(|f| f.amount).sum();
    let mut fees = if sum <= kept { listed } else { Vec::new() };
    let rest = kept - fees.iter().map(|f| f.amount).sum::<Decimal>();
    if rest > Decimal::ZERO {
        let kind = if fees.is_empty() && sum > kept {
            "charges"
        } else {
            "other_charges"
        };
        fees.push(Fee {
            kind: kind.into(),
            amount: rest,
        });
    }
    fees
}

/// `order.id` when the order is a MercadoLibre one; other orders (`mercadopago`, `{}`, absent)
/// name no marketplace order.
fn marketplace_order(order: Option<&RawValue>) -> Result<Option<String>, String> {
    #[derive(Deserialize)]
    struct WireOrder<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        #[serde(rename = "type", borrow)]
        kind: Option<&'a RawValue>,
    }
    let Some(order) = order else { return Ok(None) };
    let o: WireOrder = Some(order.get())
        .filter(|t| is_object(t))
        .and_then(|t| serde_json::from_str(t).ok())
        .ok_or_else(|| format!("order {} is not an object", quote(order)))?;
    if string("order.type", o.kind)?.as_deref() != Some("mercadolibre") {
        return Ok(None);
    }
    // A marketplace payment whose order cannot be read would be booked against nothing (or
    // not found by an account that looks orders up by id): refused, with the value.
    let id = o.id.ok_or("order of type mercadolibre has no id")?;
    id_of_raw(id)
        .map(Some)
        .ok_or_else(|| format!("order.id {} is not an order id", quote(id)))
}

/// The `fee_details` rows the collector (the seller) paid: what Mercado Pago kept of the
/// amount. Rows paid by the buyer (`fee_payer: "payer"`) were added on top and are not
/// deducted; zero rows deduct nothing and are left out.
fn fees_of(details: Option<&RawValue>) -> Result<Vec<Fee>, String> {
    #[derive(Deserialize)]
    struct Row<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<&'a RawValue>,
        #[serde(borrow)]
        amount: Option<&'a RawValue>,
        #[serde(borrow)]
        fee_payer: Option<&'a RawValue>,
    }
    let Some(details) = details else {
        return Ok(Vec::new());
    };
    let not_a_list = || "fee_details is not a list of objects".to_string();
    let raws: Vec<&RawValue> = serde_json::from_str(details.get()).map_err(|_| not_a_list())?;
    let rows = raws
        .iter()
        .map(|r| {
            Some(r.get())
                .filter(|t| is_object(t))
                .and_then(|t| serde_json::from_str::<Row>(t).ok())
                .ok_or_else(not_a_list)
        })
        .collect::<Result<Vec<Row>, String>>()?;
    let mut fees = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if string("fee_payer", row.fee_payer)?.as_deref() != Some("collector") {
            continue;
        }
        let field = format!("fee_details[{i}]");
        let kind = string(&field, row.kind)?
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| format!("{field} has no type"))?;
        let amount = amount_of(
            &format!("{field}.amount"),
            row.amount.ok_or_else(|| format!("{field} has no amount"))?,
        )?;
        if !amount.is_zero() {
            fees.push(Fee { kind, amount });
        }
    }
    Ok(fees)
}

/// A string field; `None` when absent or `null`; another type is the document's fault.
fn string(field: &str, raw: Option<&RawValue>) -> Result<Option<String>, String> {
    match raw {
        None => Ok(None),
        Some(r) => serde_json::from_str::<String>(r.get())
            .map(Some)
            .map_err(|_| format!("{field} {} is not a string", quote(r))),
    }
}

/// An amount: a JSON number, read from its exact text. A string is refused (Mercado Pago sends
/// numbers; a string amount means something between us changed the document); so is a
/// negative amount.
fn amount_of(field: &str, raw: &RawValue) -> Result<Decimal, String> {
    let text = raw.get().trim();
    let is_number = text.starts_with(|c: char| c.is_ascii_digit() || c == '-');
    if !is_number || text.len() > 40 {
        return Err(format!("{field} {} is not a number", clip(text)));
    }
    let d = Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| format!("{field} {} is not a number", clip(text)))?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(format!("{field} {text} is negative"));
    }
    Ok(d)
}

fn currency_of(c: String) -> Result<String, String> {
    let up = c.trim().to_ascii_uppercase();
    if up.len() != 3 || !up.chars().all(|ch| ch.is_ascii_alphabetic()) {
        return Err(format!("currency_id {:?} is not a currency code", clip(&c)));
    }
    Ok(up)
}

/// RFC 3339 with an offset (`2026-11-05T10:01:50.000-04:00`).
fn time_of(field: &str, s: String) -> Result<Timestamp, String> {
    s.parse::<Timestamp>()
        .map_err(|e| format!("{field} {:?} is not an RFC 3339 timestamp: {e}", clip(&s)))
}

/// A JSON object's text (serde would also read a struct from an array, by position).
fn is_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

fn quote(raw: &RawValue) -> String {
    clip(raw.get())
}

/// A value quoted in a reason, cut short: a reason names the value, it does not carry a document.
fn clip(s: &str) -> String {
    if s.chars().count() <= 60 {
        s.to_string()
    } else {
        let head: String = s.chars().take(60).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests;
