//! The "Pay" entry that reverses a refund, as ERPNext 15 takes it (recording 27p: the minimal
//! body; `paid_to` left out, ERPNext puts the party's receivable account there; 27d: what it
//! books — Debtors debited, the bank credited; 27f/27g: allocated to the Sales Order it would
//! raise the order's `advance_paid`, so it carries no references).

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;

use super::{ErpError, ErpNextClient, json_amount};
use crate::domain::reversal::ReversalEntry;
use crate::erp::CreatedEntry;

#[derive(Serialize)]
struct WireReversal<'a> {
    docstatus: u8,
    payment_type: &'static str,
    party_type: &'static str,
    party: &'a str,
    company: &'a str,
    mode_of_payment: &'a str,
    posting_date: String,
    paid_from: &'a str,
    paid_amount: Box<RawValue>,
    received_amount: Box<RawValue>,
    reference_no: &'a str,
    reference_date: String,
    /// The duplicate guard's value, when the guard is installed: the reversal's reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    paysync_operation: Option<&'a str>,
}

/// The POST body of a reversal (`guard`: the duplicate guard is installed).
pub fn reversal_body(e: &ReversalEntry, guard: bool) -> String {
    let amount: Decimal = e.amount;
    let body = WireReversal {
        docstatus: 1,
        payment_type: "Pay",
        party_type: "Customer",
        party: &e.party,
        company: &e.company,
        mode_of_payment: &e.mode_of_payment,
        posting_date: e.posting_date.to_string(),
        paid_from: &e.paid_from,
        paid_amount: json_amount(amount),
        received_amount: json_amount(amount),
        reference_no: &e.reference_no,
        reference_date: e.posting_date.to_string(),
        paysync_operation: guard.then_some(e.reference_no.as_str()),
    };
    serde_json::to_string(&body).expect("serializable")
}

impl ErpNextClient {
    pub(super) async fn post_reversal(&self, e: &ReversalEntry) -> Result<CreatedEntry, ErpError> {
        let guard = self.guard_detect().await.unwrap_or(false);
        let req = self
            .http
            .post(self.url(&["api", "resource", "Payment Entry"]))
            .header("content-type", "application/json")
            .body(reversal_body(e, guard));
        self.created("create_reversal", req).await
    }
}
