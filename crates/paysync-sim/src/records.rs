//! The records the simulator keeps and hands out: a Mobbex operation, an ERPNext Sales Order and
//! Payment Entry with their rows, and the request counts. Plain data; the servers own the state
//! that holds them (`State` in `lib.rs`).

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use rust_decimal::Decimal;

/// A Mobbex operation as the simulator stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOperation {
    pub uid: String,
    pub reference: String,
    pub status: u16,
    pub total: Decimal,
    /// "ARS", or "TEST" for test-mode operations.
    pub currency: String,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub description: String,
    pub payer_name: String,
    /// Children (`CHD-...`) name their parent.
    pub parent_uid: Option<String>,
    /// "payment.v2", or "payment.multiple-sources" for a multicard parent.
    pub operation_type: String,
    /// The merchant's charges on it, by name (`source`, `installment`, `service`): served as the
    /// list document's `totals.entity_charges` (mobbex-api.md §2), the one answer that carries
    /// them; the single-operation answer has no `totals`. Empty: no `entity_charges` key at all.
    pub entity_charges: Vec<(String, Decimal)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimSalesOrder {
    pub name: String,
    pub customer: String,
    pub company: String,
    pub currency: String,
    pub grand_total: Decimal,
    /// `None`: computed like a real ARS site, `grand_total` rounded to whole pesos.
    pub rounded_total: Option<Decimal>,
    pub advance_paid: Decimal,
    pub docstatus: i32,
    pub status: String,
    pub per_billed: Decimal,
    pub transaction_date: Date,
}

impl SimSalesOrder {
    pub fn effective_rounded_total(&self) -> Decimal {
        self.rounded_total.unwrap_or_else(|| {
            self.grand_total
                .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        })
    }

    /// `(rounded_total or grand_total) − advance_paid`.
    pub fn outstanding(&self) -> Decimal {
        let rt = self.effective_rounded_total();
        let total = if rt.is_zero() { self.grand_total } else { rt };
        total - self.advance_paid
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimPaymentEntry {
    pub name: String,
    /// The series it was named in, as the create sent it (or [`DEFAULT_NAMING_SERIES`]).
    pub naming_series: String,
    pub docstatus: i32,
    pub payment_type: String,
    pub company: String,
    pub party_type: String,
    pub party: String,
    pub paid_from: String,
    pub paid_to: String,
    pub mode_of_payment: Option<String>,
    pub paid_amount: Decimal,
    pub received_amount: Decimal,
    pub reference_no: Option<String>,
    pub reference_date: Option<Date>,
    pub posting_date: Date,
    pub references: Vec<SimReference>,
    /// The `deductions` rows (fees, write-offs), as sent.
    pub deductions: Vec<SimDeduction>,
    /// As ERPNext computes it: `base_received_amount + Σ deductions − allocated` when positive,
    /// unrounded (recording 29l stores 0.000999…).
    pub unallocated_amount: Decimal,
    /// The server-side guard's value (`guard::FIELD`), when the field is installed and was sent.
    pub paysync_operation: Option<String>,
    /// The cancelled entry this one amends (its name is that entry's with `-1`, `-2`…: 28l).
    pub amended_from: Option<String>,
}

/// A Payment Entry Deduction row.
#[derive(Debug, Clone, PartialEq)]
pub struct SimDeduction {
    pub account: String,
    pub cost_center: String,
    /// Stored as sent, with a third decimal if it had one (29l).
    pub amount: Decimal,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimReference {
    pub reference_doctype: String,
    pub reference_name: String,
    pub allocated_amount: Decimal,
}

/// Request counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimStats {
    /// ERPNext reads: GETs of lists and documents, and whitelisted methods (GET or POST, e.g.
    /// `POST /api/method/frappe.client.get_list`).
    pub erp_reads: u64,
    /// `POST /api/resource/Payment Entry` attempts (including faulted ones).
    pub erp_writes: u64,
    /// Entries actually created.
    pub erp_writes_ok: u64,
    pub mobbex_list_calls: u64,
    pub mobbex_get_calls: u64,
    /// `GET /v1/payments/search` calls answered (after auth and faults).
    pub mp_search_calls: u64,
    /// `GET /v1/payments/{id}` calls answered (after auth and faults).
    pub mp_get_calls: u64,
    /// `POST /oauth/token` requests, faulted or refused included.
    pub mp_token_calls: u64,
    /// MercadoLibre `GET /orders/{id}` calls answered (after auth and faults).
    pub ml_order_calls: u64,
    /// Every request, faulted or not, by "METHOD path-template".
    pub by_endpoint: BTreeMap<String, u64>,
    pub total_requests: u64,
    /// The most Payment Entry writes ever in progress at once (latency included).
    pub max_concurrent_writes: u64,
    /// The most ERPNext requests ever served at once (with `Faults::erp_workers`, each holds a
    /// worker; those waiting for one are not counted).
    pub max_concurrent_erp_requests: u64,
    /// Per naming-series counter (the prefix it numbers, e.g. `ACC-PAY-2026-`), the most Payment
    /// Entry creates ever in their write phase at once (see `Faults::erp_series_lock`).
    pub max_series_writes: BTreeMap<String, u64>,
    /// Creates chosen as a deadlock's victim (`Faults::erp_series_deadlock_rate`), by
    /// `reference_no` (empty when the body had none).
    pub deadlocks: BTreeMap<String, u64>,
    /// Every injected fault by a short label, e.g. "erp 502 html before commit",
    /// "mobbex 429 no retry-after", "erp lost after commit 504 empty", "erp drop after commit",
    /// "targeted commit later", "mp 429 no retry-after", "mp 502 html", "mp token lost after commit".
    pub faults_injected: BTreeMap<String, u64>,
}
