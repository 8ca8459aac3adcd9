//! Mobbex status codes and the [`PaymentStatus`] each one means.
//!
//! This is the one table in the code that says which Mobbex operations are money received. It
//! follows `shared/spec/rules.md` ("The three checks before creating", check 1) and is printed in
//! README.md; keep the two in step. Mobbex sends codes as strings; the adapter reads them as `u16`.
//! Nothing outside the Mobbex adapter sees a code: the rules get the [`PaymentStatus`].

use rust_decimal::Decimal;

use crate::domain::{PaymentStatus, Refund};

/// `(first code, last code, status, Mobbex label)`. Ranges are inclusive. Codes not listed are
/// [`PaymentStatus::Pending`]: an unknown code must never be booked, and must not be dropped either.
pub const STATUS_TABLE: &[(u16, u16, PaymentStatus, &str)] = &[
    (0, 0, PaymentStatus::Pending, "Sin Estado"),
    (1, 1, PaymentStatus::Pending, "Pendiente"),
    (
        2,
        2,
        PaymentStatus::Pending,
        "En Espera (cash coupon issued)",
    ),
    (3, 3, PaymentStatus::Pending, "Autorizada (not captured)"),
    (100, 100, PaymentStatus::Pending, "En Revisión"),
    (200, 200, PaymentStatus::Paid, "Paga"),
    (201, 201, PaymentStatus::Pending, "Aceptada"),
    (210, 210, PaymentStatus::Paid, "Retenida (paid, funds held)"),
    (299, 299, PaymentStatus::Paid, "Liquidación en Progreso"),
    (300, 300, PaymentStatus::Paid, "Liquidada"),
    (301, 301, PaymentStatus::Paid, "Liberada"),
    (302, 302, PaymentStatus::Paid, "Conciliada"),
    (303, 303, PaymentStatus::Paid, "Liberación Retenida"),
    (
        400,
        403,
        PaymentStatus::Rejected,
        "Declinada / Expirada / Abandonada / Fallida",
    ),
    (410, 415, PaymentStatus::Rejected, "Denegada"),
    (500, 500, PaymentStatus::Rejected, "Error"),
    (600, 600, PaymentStatus::Pending, "Cancelación en proceso"),
    (601, 601, PaymentStatus::Refunded, "Cancelada"),
    (602, 602, PaymentStatus::Refunded, "Devuelta"),
    (603, 603, PaymentStatus::Refunded, "Desconocida"),
    (604, 604, PaymentStatus::Rejected, "Rechazada (plugins)"),
    (605, 605, PaymentStatus::Refunded, "Parcialmente Devuelta"),
    (610, 610, PaymentStatus::Refunded, "Cancelada (plugins)"),
];

/// What a status code means; unknown codes are pending.
pub fn status_of(code: u16) -> PaymentStatus {
    STATUS_TABLE
        .iter()
        .find(|(lo, hi, _, _)| (*lo..=*hi).contains(&code))
        .map(|(_, _, b, _)| *b)
        .unwrap_or(PaymentStatus::Pending)
}

/// What a status says was given back of an operation of `total`: 601/602/603/610 (cancelled,
/// returned, unknown, charged back) all of it; 605 (partly returned) an amount Mobbex does not
/// state on the operation (`shared/spec/mobbex-api.md` names none), so `None`: never guessed.
/// Mobbex states no refund id: the one refund an operation can show is `1`.
pub fn refunds_of(code: u16, total: Decimal) -> Vec<Refund> {
    let amount = match code {
        601 | 602 | 603 | 610 => Some(total),
        605 => None,
        _ => return Vec::new(),
    };
    vec![Refund {
        key: "1".into(),
        amount,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full refund or chargeback gives back the whole total; a partial one an unstated amount.
    #[test]
    fn refund_statuses_say_what_was_given_back() {
        let total = Decimal::new(30050, 2);
        for c in [601, 602, 603, 610] {
            assert_eq!(
                refunds_of(c, total),
                vec![Refund {
                    key: "1".into(),
                    amount: Some(total)
                }],
                "{c}"
            );
        }
        assert_eq!(refunds_of(605, total)[0].amount, None);
        for c in [200, 300, 400, 600, 604] {
            assert!(refunds_of(c, total).is_empty(), "{c}");
        }
    }

    #[test]
    fn every_code_named_in_the_rules_is_in_its_bucket() {
        for c in [200, 210, 299, 300, 301, 302, 303] {
            assert_eq!(status_of(c), PaymentStatus::Paid, "{c}");
        }
        for c in [400, 401, 402, 403, 410, 411, 412, 413, 414, 415, 500, 604] {
            assert_eq!(status_of(c), PaymentStatus::Rejected, "{c}");
        }
        for c in [601, 602, 603, 605, 610] {
            assert_eq!(status_of(c), PaymentStatus::Refunded, "{c}");
        }
        for c in [0, 1, 2, 3, 100, 201, 600, 4, 404, 416, 777, 800, 65535] {
            assert_eq!(status_of(c), PaymentStatus::Pending, "{c}");
        }
    }

    #[test]
    fn table_ranges_do_not_overlap() {
        for (i, a) in STATUS_TABLE.iter().enumerate() {
            assert!(a.0 <= a.1);
            for b in &STATUS_TABLE[i + 1..] {
                assert!(a.1 < b.0, "{a:?} overlaps {b:?}");
            }
        }
    }
}
