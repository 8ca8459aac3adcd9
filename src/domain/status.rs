//! Mobbex status codes and the bucket each one falls into.
//!
//! This is the one table in the code that says which operations are money received. It follows
//! `shared/spec/rules.md` ("The three checks before creating", check 1) and is printed in README.md;
//! keep the two in step. Mobbex sends codes as strings; the source adapter turns them into `u16`.

/// What a status code means for booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusBucket {
    /// Money received: book it.
    Paid,
    /// Declined, expired, failed: never book (a later paid operation may still come).
    Rejected,
    /// Refunded or cancelled: do not book; if it was booked earlier, warn (no automatic reversal yet).
    Refunded,
    /// Not decided yet (including any code we do not know): re-examined on later runs.
    Pending,
}

/// `(first code, last code, bucket, Mobbex label)`. Ranges are inclusive. Codes not listed are
/// [`StatusBucket::Pending`]: an unknown code must never be booked, and must not be dropped either.
pub const STATUS_TABLE: &[(u16, u16, StatusBucket, &str)] = &[
    (0, 0, StatusBucket::Pending, "Sin Estado"),
    (1, 1, StatusBucket::Pending, "Pendiente"),
    (
        2,
        2,
        StatusBucket::Pending,
        "En Espera (cash coupon issued)",
    ),
    (3, 3, StatusBucket::Pending, "Autorizada (not captured)"),
    (100, 100, StatusBucket::Pending, "En Revisión"),
    (200, 200, StatusBucket::Paid, "Paga"),
    (201, 201, StatusBucket::Pending, "Aceptada"),
    (210, 210, StatusBucket::Paid, "Retenida (paid, funds held)"),
    (299, 299, StatusBucket::Paid, "Liquidación en Progreso"),
    (300, 300, StatusBucket::Paid, "Liquidada"),
    (301, 301, StatusBucket::Paid, "Liberada"),
    (302, 302, StatusBucket::Paid, "Conciliada"),
    (303, 303, StatusBucket::Paid, "Liberación Retenida"),
    (
        400,
        403,
        StatusBucket::Rejected,
        "Declinada / Expirada / Abandonada / Fallida",
    ),
    (410, 415, StatusBucket::Rejected, "Denegada"),
    (500, 500, StatusBucket::Rejected, "Error"),
    (600, 600, StatusBucket::Pending, "Cancelación en proceso"),
    (601, 601, StatusBucket::Refunded, "Cancelada"),
    (602, 602, StatusBucket::Refunded, "Devuelta"),
    (603, 603, StatusBucket::Refunded, "Desconocida"),
    (604, 604, StatusBucket::Rejected, "Rechazada (plugins)"),
    (605, 605, StatusBucket::Refunded, "Parcialmente Devuelta"),
    (610, 610, StatusBucket::Refunded, "Cancelada (plugins)"),
];

/// The bucket of a status code; unknown codes are pending.
pub fn bucket(code: u16) -> StatusBucket {
    STATUS_TABLE
        .iter()
        .find(|(lo, hi, _, _)| (*lo..=*hi).contains(&code))
        .map(|(_, _, b, _)| *b)
        .unwrap_or(StatusBucket::Pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_named_in_the_rules_is_in_its_bucket() {
        for c in [200, 210, 299, 300, 301, 302, 303] {
            assert_eq!(bucket(c), StatusBucket::Paid, "{c}");
        }
        for c in [400, 401, 402, 403, 410, 411, 412, 413, 414, 415, 500, 604] {
            assert_eq!(bucket(c), StatusBucket::Rejected, "{c}");
        }
        for c in [601, 602, 603, 605, 610] {
            assert_eq!(bucket(c), StatusBucket::Refunded, "{c}");
        }
        for c in [0, 1, 2, 3, 100, 201, 600, 4, 404, 416, 777, 800, 65535] {
            assert_eq!(bucket(c), StatusBucket::Pending, "{c}");
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
