//! The domain: what a payment operation, a sales order and a payment entry are, and the pure
//! booking rules that turn the first two into the third.
//!
//! Nothing in here does I/O or knows a wire format. The adapters (`source`, `erp`, `store`)
//! translate to and from these types; `pipeline` feeds them to [`rules::decide`].

pub mod audit;
pub mod reversal;
pub mod rules;

use jiff::Timestamp;
use jiff::civil::Date;
use rust_decimal::Decimal;

pub use rules::{
    AccountPolicy, Decision, DecisionInput, DecisionKind, EarlierPayment, FeePolicy, Skip, decide,
    pick_order,
};

/// What a payment's status means for booking, whatever the gateway. Each source maps its own
/// status codes onto this (Mobbex: `source::mobbex::status`); the rules see nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    /// Money received: book it.
    Paid,
    /// Declined, expired, failed: never book (a later paid operation may still come).
    Rejected,
    /// Refunded or cancelled: do not book; if it was booked earlier, warn (no automatic reversal yet).
    Refunded,
    /// Not decided yet (including any status the source does not know): re-examined later.
    Pending,
}

/// One payment-gateway operation, as the payment source reports it now, in the source's own
/// terms translated by its adapter: the rules never see a gateway's codes or id conventions.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// The gateway's operation id; becomes the entry's `reference_no`.
    pub uid: String,
    /// The order reference the merchant gave the gateway (Mobbex: `reference`); the account's
    /// `order_pattern` finds the sales order in it.
    pub reference: String,
    pub status: PaymentStatus,
    /// The gateway's own status, as it wrote it (Mobbex: `"200"`): for logs and the ledger.
    pub source_status: String,
    /// Amount collected, in major units, exact.
    pub total: Decimal,
    /// ISO currency code.
    pub currency: String,
    pub created: Timestamp,
    pub updated: Option<Timestamp>,
    /// A part of another operation (a multicard or multivendor split): never booked on its own,
    /// its parent is.
    pub is_child: bool,
    /// Made in the gateway's test mode: booked only where the account says `include_test`.
    pub is_test: bool,
    /// The marketplace order this payment pays, where the gateway names one (Mercado Pago:
    /// `order.id` of an order of type `mercadolibre`): what `order_source = "order_id"` looks
    /// the sales order up by.
    pub marketplace_order: Option<String>,
    /// What the gateway kept of `total` (its fees and charges to the merchant), one item per
    /// charge; deducted on the entry only where the account sets `fees_account`.
    pub fees: Vec<Fee>,
    /// What was given back of it (refunds, chargebacks), as the gateway states them: reversed in
    /// the ERP where the account sets `reverse_refunds` (`reversal.rs`).
    pub refunds: Vec<Refund>,
}

/// One refund or chargeback of an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    /// Stable for the operation (Mercado Pago: the refund's id; a full refund the gateway
    /// states no id for: `1`): its reversal's `reference_no` is `<uid>:refund:<key>`.
    pub key: String,
    /// What was given back, exact; `None` where the gateway does not say (a Mobbex partial
    /// refund, status 605): nothing is guessed.
    pub amount: Option<Decimal>,
}

/// One charge the gateway kept of a payment (Mercado Pago: a `fee_details` row paid by the
/// collector; Mobbex: an `entity_charges` item).
#[derive(Debug, Clone, PartialEq)]
pub struct Fee {
    /// The gateway's name for it (`mercadopago_fee`, `service`): the deduction's description.
    pub kind: String,
    /// Positive, in the operation's currency, exact as the gateway wrote it.
    pub amount: Decimal,
}

impl Operation {
    /// The gateway's status as a number, where it has one (the ledger's `status_code` column).
    pub fn status_code(&self) -> Option<u16> {
        self.source_status.parse().ok()
    }
}

/// A sales order as the ERP reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesOrder {
    pub name: String,
    pub customer: String,
    pub company: String,
    pub currency: String,
    /// 0 draft, 1 submitted, 2 cancelled. Trust this over `status` (an order created submitted
    /// through the API can still say "Draft").
    pub docstatus: i32,
    pub status: String,
    pub grand_total: Decimal,
    /// Zero when the site does not round (or rounds a tiny order to 0).
    pub rounded_total: Decimal,
    pub advance_paid: Decimal,
    pub per_billed: Decimal,
}

impl SalesOrder {
    /// What is still to be paid: `(rounded_total or grand_total) − advance_paid`, as ERPNext computes it.
    pub fn outstanding(&self) -> Decimal {
        let total = if self.rounded_total.is_zero() {
            self.grand_total
        } else {
            self.rounded_total
        };
        total - self.advance_paid
    }
}

/// A Payment Entry paysync asks the ERP to create (always "Receive" from a "Customer", submitted).
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentEntry {
    pub company: String,
    /// The customer (the order's `customer`).
    pub party: String,
    pub paid_amount: Decimal,
    pub received_amount: Decimal,
    pub mode_of_payment: String,
    pub paid_to: String,
    /// The customer's receivable account; paysync leaves it `None` and ERPNext fills in the one
    /// `get_party_account` gives (rules.md: "paid_from = the customer's receivable account").
    pub paid_from: Option<String>,
    /// The operation id: the key that tells "already loaded".
    pub reference_no: String,
    pub reference_date: Date,
    pub posting_date: Date,
    /// `Some` for an initial payment: the order and the amount allocated to it.
    pub allocation: Option<Allocation>,
    /// The gateway's fees, one row per fee, when the account books them (`fees_account`):
    /// `paid_amount` is then the net and the customer is credited with net + Σ deductions.
    /// Empty: the gross amount is booked, as without the option.
    pub deductions: Vec<Deduction>,
    /// The duplicate guard's value when it is not the operation id itself: a deliberate
    /// re-booking after its entry was cancelled (`paysync rebook`) takes `<id>#2`, `<id>#3`, ...
    /// because a cancelled entry keeps its value for ever (recording U4c).
    pub guard_value: Option<String>,
    /// The naming series it is created in; `None`: ERPNext's default. Chosen when it is sent
    /// (`pipeline::series`), not by the rules.
    pub naming_series: Option<String>,
}

impl PaymentEntry {
    /// What the entry carries in the server-side duplicate guard's field.
    pub fn guard_key(&self) -> &str {
        self.guard_value.as_deref().unwrap_or(&self.reference_no)
    }
}

/// One `deductions` row of a Payment Entry (ERPNext's Payment Entry Deduction): a fee the gateway
/// kept, booked as an expense so that the bank gets the net and the customer the gross.
#[derive(Debug, Clone, PartialEq)]
pub struct Deduction {
    pub account: String,
    /// Mandatory in ERPNext: a row without one is refused on insert (recording 29n).
    pub cost_center: String,
    /// Positive, rounded to 2 decimals by the rules (ERPNext would store a third one, 29l).
    pub amount: Decimal,
    /// The gateway's name for the fee ([`Fee::kind`]).
    pub description: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub sales_order: String,
    pub allocated_amount: Decimal,
}

/// An entry of an operation in the ERP, whatever its state (cancelled ones included).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OperationEntry {
    pub name: String,
    /// 0 draft, 1 submitted, 2 cancelled.
    pub docstatus: i32,
    /// Its value in the duplicate guard's field (`None` without the guard, or booked before it).
    pub guard_value: Option<String>,
    /// What it books, as ERPNext answered (`None` where the answer left it out).
    pub payment_type: Option<String>,
    pub party: Option<String>,
    pub paid_amount: Option<Decimal>,
    pub posting_date: Option<String>,
}

/// An entry that already exists in the ERP for an operation id.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingEntry {
    pub name: String,
    pub reference_no: String,
    /// 0 draft, 1 submitted.
    pub docstatus: i32,
}
