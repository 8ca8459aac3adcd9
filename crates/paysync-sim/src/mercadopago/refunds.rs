//! Refunds of a Mercado Pago payment after it was paid, made by a test
//! ([`Simulator::refund_mp_payment`]), as `shared/spec/mercadolibre-api.md` §3 describes them: a
//! payment refunded in full becomes `refunded`, a partly refunded one stays `approved` with
//! `transaction_amount_refunded` > 0, and each refund is a row of `refunds[]` (`id`, `amount`,
//! `date_created`, …: the SDKs' `PaymentRefund`). `date_last_updated` moves to the refund, so the
//! search's `range=date_last_updated` windows find it. The partial refund's `status_detail`
//! `partially_refunded` is what client code reads (third-party code, not a Mercado Pago document);
//! a full refund's is `refunded`.

use jiff::Timestamp;
use rust_decimal::Decimal;

use super::{SimMpRefund, StoredMp};
use crate::Simulator;

impl Simulator {
    /// Refund `amount` of approved payment `id` at `at` (`None`: all that is left), as the seller
    /// would with `POST /v1/payments/{id}/refunds`: the refund is added to `refunds[]`,
    /// `transaction_amount_refunded` grows by it and `date_last_updated` becomes `at`; when the
    /// refunded total reaches `transaction_amount`, the payment is `refunded`. `None` (nothing
    /// changed), as Mercado Pago refuses them: an unknown or raw payment, one not `approved`, an
    /// amount of zero or less or above what is left to refund.
    pub fn refund_mp_payment(
        &self,
        id: u64,
        amount: Option<Decimal>,
        at: Timestamp,
    ) -> Option<SimMpRefund> {
        self.with(|s| {
            let p = s.mp.payments.iter_mut().find_map(|p| match p {
                StoredMp::Typed(t) if t.id == id => Some(t),
                _ => None,
            })?;
            let left = p.transaction_amount - p.transaction_amount_refunded;
            let amount = amount.unwrap_or(left);
            if p.status != "approved" || amount <= Decimal::ZERO || amount > left {
                return None;
            }
            let refund = SimMpRefund {
                // Unique per payment and across payments of distinct ids.
                id: p
                    .id
                    .wrapping_mul(1000)
                    .wrapping_add(p.refunds.len() as u64 + 1),
                amount,
                created: at,
            };
            p.refunds.push(refund.clone());
            p.transaction_amount_refunded += amount;
            p.updated = at;
            if p.transaction_amount_refunded == p.transaction_amount {
                p.status = "refunded".into();
                p.status_detail = "refunded".into();
            } else {
                p.status_detail = "partially_refunded".into();
            }
            Some(refund)
        })
    }
}
