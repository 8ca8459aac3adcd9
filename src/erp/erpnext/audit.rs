//! The reads `paysync audit` makes of ERPNext, batched: the Payment Entries of a company and
//! mode of payment posted in a period (any state), and those whose `reference_no` is among the
//! operations' ids and their reversals' references, wherever posted.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

use super::{ErpError, ErpNextClient};
use crate::domain::audit::AuditEntry;
use crate::erp::AuditQuery;

/// References per lookup: the request body stays small (the booking path sends 500 too).
const CHUNK: usize = 500;

const FIELDS: &[&str] = &[
    "name",
    "docstatus",
    "payment_type",
    "party",
    "paid_amount",
    "reference_no",
    "posting_date",
];

#[derive(Deserialize)]
struct Row {
    name: String,
    docstatus: Option<i32>,
    payment_type: Option<String>,
    party: Option<String>,
    paid_amount: Option<Decimal>,
    reference_no: Option<String>,
    posting_date: Option<String>,
}

impl Row {
    fn into_entry(self, in_period: bool) -> Result<AuditEntry, ErpError> {
        let date = self.posting_date.unwrap_or_default();
        Ok(AuditEntry {
            posting_date: date.parse().map_err(|_| {
                ErpError::Malformed(format!(
                    "Payment Entry {} has posting_date {date:?}",
                    self.name
                ))
            })?,
            name: self.name,
            docstatus: self.docstatus.unwrap_or(0),
            payment_type: self.payment_type.unwrap_or_default(),
            party: self.party.unwrap_or_default(),
            paid_amount: self.paid_amount.unwrap_or_default(),
            reference_no: self.reference_no.filter(|r| !r.is_empty()),
            in_period,
        })
    }
}

impl ErpNextClient {
    pub(super) async fn read_audit_entries(
        &self,
        q: &AuditQuery<'_>,
    ) -> Result<Vec<AuditEntry>, ErpError> {
        let mut by_name: HashMap<String, AuditEntry> = HashMap::new();
        let period: Vec<Row> = self
            .list(
                "list_entries_of_period",
                "Payment Entry",
                json!([
                    ["company", "=", q.company],
                    ["mode_of_payment", "=", q.mode_of_payment],
                    ["posting_date", ">=", q.from.to_string()],
                    ["posting_date", "<=", q.to.to_string()],
                ]),
                FIELDS,
            )
            .await?;
        for r in period {
            let e = r.into_entry(true)?;
            by_name.insert(e.name.clone(), e);
        }
        for chunk in q.references.chunks(CHUNK) {
            let rows: Vec<Row> = self
                .list(
                    "list_entries_by_reference",
                    "Payment Entry",
                    json!([["reference_no", "in", chunk]]),
                    FIELDS,
                )
                .await?;
            for r in rows {
                if !by_name.contains_key(&r.name) {
                    let e = r.into_entry(false)?;
                    by_name.insert(e.name.clone(), e);
                }
            }
        }
        let mut out: Vec<AuditEntry> = by_name.into_values().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
