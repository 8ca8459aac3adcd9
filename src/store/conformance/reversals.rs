//! Reversals on every backend (run by `on_every_backend!` in `conformance.rs`).

use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::Decimal;

use super::at;
use crate::store::{Ledger, StoredReversal};

fn rev(account: &str, uid: &str, key: &str, amount: &str, entry: &str) -> StoredReversal {
    StoredReversal {
        account: account.into(),
        uid: uid.into(),
        refund_key: key.into(),
        amount: Decimal::from_str(amount).unwrap(),
        erp_entry: entry.into(),
        created: at(1_000),
    }
}

pub(super) async fn reversals_are_kept_once_per_refund_exactly(l: Arc<dyn Ledger>) {
    let first = rev("main", "op-1", "9001", "100.10", "ACC-PAY-2026-00007");
    l.record_reversal(&first).await.unwrap();
    // Recorded again (a run found the entry a crashed one made): the first row stays.
    l.record_reversal(&rev("main", "op-1", "9001", "999", "OTHER"))
        .await
        .unwrap();
    l.record_reversal(&rev("main", "op-1", "9002", "0.35", "ACC-PAY-2026-00008"))
        .await
        .unwrap();
    l.record_reversal(&rev("other", "op-1", "9001", "5", "ACC-PAY-2026-00009"))
        .await
        .unwrap();
    let got = l
        .reversals_of("main", &["op-1".into(), "op-2".into()])
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "op-2 has none");
    let keys: Vec<(&str, String, &str)> = got["op-1"]
        .iter()
        .map(|r| {
            (
                r.refund_key.as_str(),
                r.amount.to_string(),
                r.erp_entry.as_str(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            ("9001", "100.10".to_string(), "ACC-PAY-2026-00007"),
            ("9002", "0.35".to_string(), "ACC-PAY-2026-00008"),
        ]
    );
    assert_eq!(got["op-1"][0], first);
    let other = l.reversals_of("other", &["op-1".into()]).await.unwrap();
    assert_eq!(other["op-1"].len(), 1, "per account");
}
