//! The charges of an operation read alone. `GET /p/operations/{uid}` answers the operation as a
//! webhook shapes it, with no `totals` (mobbex-api.md §3a), so it never says what Mobbex kept;
//! only the listing's documents carry `totals.entity_charges` (§2). An account that books fees
//! must not book a webhook's or a re-read's payment at the gross amount for lack of them, so the
//! operation is looked up in the listing by its `reference` (a documented filter) and takes the
//! charges of the document with its uid. Not found there: an error, never a guess.

use super::{API, MobbexClient, PAGE_SIZE, SourceError, read_list};
use crate::domain::Operation;
use crate::source::Fetched;

/// Pages of one reference's listing read at most (a reference has a few attempts, not 500).
const MAX_PAGES: u32 = 10;

impl MobbexClient {
    /// `op` with the charges its listing document carries.
    pub(super) async fn with_listed_charges(
        &self,
        mut op: Operation,
    ) -> Result<Operation, SourceError> {
        // Without a reference no order can be found for it: nothing will be booked either way.
        if op.reference.trim().is_empty() {
            return Ok(op);
        }
        let url = self.url("/p/entity/operations");
        for page in 0..MAX_PAGES {
            let query = [
                ("page", page.to_string()),
                ("limit", PAGE_SIZE.to_string()),
                ("reference", op.reference.clone()),
            ];
            let listed = self
                .get(
                    "list_operations_by_reference",
                    url.clone(),
                    &query,
                    read_list,
                )
                .await?;
            for item in listed.items {
                match item {
                    Fetched::Op(found) if found.uid == op.uid => {
                        op.fees = found.fees;
                        return Ok(op);
                    }
                    Fetched::Bad {
                        uid: Some(uid),
                        reason,
                    } if uid == op.uid => {
                        return Err(SourceError::Malformed {
                            api: API,
                            message: format!("{uid}'s listing document: {reason}"),
                        });
                    }
                    _ => {}
                }
            }
            if listed.is_last {
                break;
            }
        }
        Err(SourceError::Malformed {
            api: API,
            message: format!(
                "operation {} is not in the listing under its reference {:?}: its charges \
                 (totals.entity_charges) are unknown, so it is not booked with fees",
                op.uid, op.reference
            ),
        })
    }
}
