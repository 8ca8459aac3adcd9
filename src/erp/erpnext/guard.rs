//! The server-side duplicate guard on a real ERPNext (recordings `U*`, README "Server-side
//! duplicate guard"): a Custom Field `paysync_operation` on Payment Entry with `unique: 1`, which
//! MariaDB turns into a UNIQUE index. Installed once by `paysync erp-setup` (System Manager or
//! Administrator); afterwards every create carries the operation id in it, and the database
//! refuses a second entry for one operation inside the very transaction that would book it — two
//! racing processes, or a dead client's in-flight request and its successor, cannot both commit.

use serde::Deserialize;
use serde_json::json;

use super::{ErpError, ErpNextClient};
use rust_decimal::Decimal;

use crate::domain::{ExistingEntry, OperationEntry};

/// The field (and the MariaDB key the duplicate error names).
pub const FIELD: &str = "paysync_operation";
/// The Custom Field document.
const DOC: &str = "Payment Entry-paysync_operation";

#[derive(Deserialize)]
struct Holder {
    name: String,
    docstatus: Option<i32>,
    reference_no: Option<String>,
}

impl ErpNextClient {
    /// Is the guard installed? Asked once per process (then remembered) — unless the answer was
    /// an error, which is not remembered.
    pub(super) async fn guard_detect(&self) -> Result<bool, ErpError> {
        self.guard
            .get_or_try_init(|| async {
                let req = self
                    .http
                    .get(self.url(&["api", "resource", "Custom Field", DOC]));
                match self
                    .read::<serde_json::Value>("get_custom_field", req)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(ErpError::Rejected { status: 404, .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await
            .copied()
    }

    pub(super) async fn guard_install(&self) -> Result<bool, ErpError> {
        if self.guard_detect().await? {
            return Ok(false);
        }
        let body = json!({
            "dt": "Payment Entry",
            "fieldname": FIELD,
            "label": "Gateway operation",
            "fieldtype": "Data",
            "unique": 1,
            "read_only": 1,
            "no_copy": 1,
            "insert_after": "reference_date",
            "description": "Payment gateway operation id, set by paysync: a unique guard against booking one payment twice",
        });
        let req = self
            .http
            .post(self.url(&["api", "resource", "Custom Field"]))
            .header("content-type", "application/json")
            .body(body.to_string());
        match self
            .send::<serde_json::Value>("create_custom_field", req)
            .await
        {
            Ok(_) => Ok(true),
            // Already there (created meanwhile): a real ERPNext 15 says 417 "A field with the
            // name paysync_operation already exists in Payment Entry" (as in recording U7d).
            Err(ErpError::Rejected {
                status: 409 | 417,
                message,
                ..
            }) if message.contains("already exists") => Ok(false),
            Err(ErpError::Rejected {
                status: 403,
                message,
                ..
            }) => Err(ErpError::Rejected {
                status: 403,
                exc_type: "PermissionError".into(),
                about_order: false,
                message: format!(
                    "{message} — creating the guard needs a System Manager (or Administrator) API key once; booking afterwards needs only Accounts User"
                ),
            }),
            Err(e) => Err(e),
        }
    }

    /// The holder of a guard value, whatever its docstatus (a cancelled entry keeps its value for
    /// ever, U4c).
    pub(super) async fn guard_holder(
        &self,
        guard_value: &str,
    ) -> Result<Option<ExistingEntry>, ErpError> {
        let rows: Vec<Holder> = self
            .list(
                "list_entries_by_guard",
                "Payment Entry",
                json!([[FIELD, "=", guard_value]]),
                &["name", "docstatus", "reference_no"],
            )
            .await?;
        Ok(rows.into_iter().next().map(|h| ExistingEntry {
            name: h.name,
            reference_no: h.reference_no.unwrap_or_default(),
            docstatus: h.docstatus.unwrap_or(0),
        }))
    }

    /// Every entry with this `reference_no`, whatever its docstatus, with its guard value when the
    /// guard is installed (asking for the field otherwise is an error: it does not exist).
    pub(super) async fn operation_entries(
        &self,
        reference_no: &str,
    ) -> Result<Vec<OperationEntry>, ErpError> {
        #[derive(Deserialize)]
        struct Row {
            name: String,
            docstatus: Option<i32>,
            paysync_operation: Option<String>,
            payment_type: Option<String>,
            party: Option<String>,
            paid_amount: Option<Decimal>,
            posting_date: Option<String>,
        }
        let guarded = self.guard_detect().await?;
        let mut fields = vec![
            "name",
            "docstatus",
            "payment_type",
            "party",
            "paid_amount",
            "posting_date",
        ];
        if guarded {
            fields.push(FIELD);
        }
        let rows: Vec<Row> = self
            .list(
                "list_entries_of_operation",
                "Payment Entry",
                json!([["reference_no", "=", reference_no]]),
                &fields,
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| OperationEntry {
                name: r.name,
                docstatus: r.docstatus.unwrap_or(0),
                guard_value: r.paysync_operation.filter(|v| !v.is_empty()),
                payment_type: r.payment_type,
                party: r.party,
                paid_amount: r.paid_amount,
                posting_date: r.posting_date,
            })
            .collect())
    }
}
