//! Mercado Pago payment statuses and the [`PaymentStatus`] each one means.
//!
//! Owns: the one table in the code that says which Mercado Pago payments are money received
//! (facts: `shared/spec/mercadolibre-api.md` §3.2). Nothing outside the Mercado Pago adapter sees
//! a Mercado Pago status: the rules get the [`PaymentStatus`], the ledger the status's own text.

use crate::domain::PaymentStatus;

/// `(Mercado Pago status, what it means)`. A status not listed is [`PaymentStatus::Pending`]:
/// an unknown status must never be booked, and must not be dropped either (it is looked at
/// again on a later poll, by which time it may have become one we know).
pub const STATUS_TABLE: &[(&str, PaymentStatus)] = &[
    ("approved", PaymentStatus::Paid),
    ("pending", PaymentStatus::Pending),
    ("in_process", PaymentStatus::Pending),
    ("in_mediation", PaymentStatus::Pending),
    // Authorized but not captured: no money yet.
    ("authorized", PaymentStatus::Pending),
    ("rejected", PaymentStatus::Rejected),
    ("cancelled", PaymentStatus::Rejected),
    // Money that came and went back: not booked, and a warning where it was booked before.
    ("refunded", PaymentStatus::Refunded),
    ("charged_back", PaymentStatus::Refunded),
];

/// What a status means; an unknown one is pending, with a warning naming it (so a status
/// Mercado Pago adds is noticed rather than left pending in silence).
pub fn status_of(status: &str) -> PaymentStatus {
    match known(status) {
        Some(s) => s,
        None => {
            tracing::warn!(
                status,
                "unknown Mercado Pago payment status: treated as pending"
            );
            PaymentStatus::Pending
        }
    }
}

/// The table's answer, without the warning (`None`: not in the table).
pub fn known(status: &str) -> Option<PaymentStatus> {
    STATUS_TABLE
        .iter()
        .find(|(s, _)| *s == status)
        .map(|(_, p)| *p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_of_the_spec_is_in_its_bucket() {
        for (s, want) in [
            ("approved", PaymentStatus::Paid),
            ("pending", PaymentStatus::Pending),
            ("in_process", PaymentStatus::Pending),
            ("in_mediation", PaymentStatus::Pending),
            ("authorized", PaymentStatus::Pending),
            ("rejected", PaymentStatus::Rejected),
            ("cancelled", PaymentStatus::Rejected),
            ("refunded", PaymentStatus::Refunded),
            ("charged_back", PaymentStatus::Refunded),
        ] {
            assert_eq!(status_of(s), want, "{s}");
            assert_eq!(known(s), Some(want), "{s}");
        }
    }

    /// Unknown statuses, and known ones written otherwise, are pending: never booked.
    #[test]
    fn anything_else_is_pending() {
        for s in [
            "",
            "Approved",
            "APPROVED",
            " approved",
            "accredited",
            "paid",
            "null",
        ] {
            assert_eq!(known(s), None, "{s:?}");
            assert_eq!(status_of(s), PaymentStatus::Pending, "{s:?}");
        }
    }

    #[test]
    fn the_table_names_each_status_once() {
        for (i, (a, _)) in STATUS_TABLE.iter().enumerate() {
            assert!(
                STATUS_TABLE[i + 1..].iter().all(|(b, _)| a != b),
                "{a} twice"
            );
        }
    }
}
