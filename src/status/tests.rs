//! `paysync status` output, byte for byte: the expected texts are what the command printed before
//! the report became a typed struct (captured from that binary on this same ledger content).

use super::*;
use crate::store::Record;

/// A ledger with every case the report shows: booked and unresolved rows, a failed last poll after
/// a good one, queued triggers, an account never polled, one polled but without a watermark.
async fn ledger(dir: &std::path::Path) -> std::sync::Arc<dyn Ledger> {
    let l = crate::store::open(&format!("sqlite://{}", dir.join("ledger.db").display()))
        .await
        .unwrap();
    let t = |s: &str| s.parse::<Timestamp>().unwrap();
    let rec = |uid: &str, order: Option<&str>, d: DecisionKind, reason: &str, at: &str| Record {
        account: "main".into(),
        uid: uid.into(),
        reference: format!("ref-{uid}"),
        sales_order: order.map(str::to_string),
        status_code: Some(200),
        amount: Some("100.50".parse().unwrap()),
        currency: Some("ARS".into()),
        decision: d,
        reason: reason.into(),
        erp_entry: d.is_booked().then(|| "ACC-PAY-2026-00001".to_string()),
        op_created: Some(t(at)),
        seen_at: t(at),
        trigger: crate::store::RunTrigger::Sync,
    };
    for r in [
        rec(
            "ok-1",
            Some("SAL-ORD-1"),
            DecisionKind::BookedInitial,
            "initial",
            "2026-10-05T15:00:00Z",
        ),
        rec(
            "ok-2",
            Some("SAL-ORD-1"),
            DecisionKind::BookedAdditional,
            "additional",
            "2026-10-05T16:00:00Z",
        ),
        rec(
            "miss",
            Some("SAL-ORD-404"),
            DecisionKind::OrderMissing,
            "no such order",
            "2026-10-05T17:00:00Z",
        ),
        rec(
            "err-1",
            None,
            DecisionKind::Error,
            "ERPNext: HTTP 500 \"boom\" — ñ",
            "2026-10-06T10:00:00Z",
        ),
        rec(
            "err-2",
            Some("SAL-ORD-2"),
            DecisionKind::Error,
            "timed out",
            "2026-10-06T11:00:00Z",
        ),
        rec(
            "wait-1",
            Some("SAL-ORD-2"),
            DecisionKind::Waiting,
            "earlier payment err-2",
            "2026-10-06T12:00:00Z",
        ),
        rec(
            "rej",
            Some("SAL-ORD-3"),
            DecisionKind::Rejected,
            "status 400",
            "2026-10-06T12:30:00Z",
        ),
    ] {
        l.record(&r).await.unwrap();
    }
    assert!(
        crate::store::set_watermark_once(&*l, "main", t("2026-10-06T13:00:00Z"))
            .await
            .unwrap()
    );
    l.record_poll(&PollRecord {
        account: "main".into(),
        started: t("2026-10-06T12:59:00Z"),
        finished: t("2026-10-06T13:00:00Z"),
        window_from: t("2026-10-06T12:00:00Z"),
        window_to: t("2026-10-06T13:00:00Z"),
        ok: true,
        summary: "examined=3 booked_initial=1".into(),
        error: None,
    })
    .await
    .unwrap();
    l.record_poll(&PollRecord {
        account: "main".into(),
        started: t("2026-10-06T13:04:00Z"),
        finished: t("2026-10-06T13:05:00Z"),
        window_from: t("2026-10-06T12:00:00Z"),
        window_to: t("2026-10-06T13:05:00Z"),
        ok: false,
        summary: "examined=0".into(),
        error: Some("Mobbex: connection failed".into()),
    })
    .await
    .unwrap();
    l.record_poll(&PollRecord {
        account: "third".into(),
        started: t("2026-10-06T13:04:00Z"),
        finished: t("2026-10-06T13:05:00Z"),
        window_from: t("2026-10-06T12:00:00Z"),
        window_to: t("2026-10-06T13:05:00Z"),
        ok: true,
        summary: "examined=0 booked_initial=0".into(),
        error: None,
    })
    .await
    .unwrap();
    l.inbox_push("main", "op-x", t("2026-10-06T13:06:00Z"), None)
        .await
        .unwrap();
    l.inbox_push("main", "op-y", t("2026-10-06T13:06:00Z"), Some("SAL-ORD-9"))
        .await
        .unwrap();
    l
}

const ACCOUNTS: [&str; 3] = ["main", "second", "third"];

async fn report() -> StatusReport {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path()).await;
    let tz = TimeZone::get("America/Argentina/Buenos_Aires").unwrap();
    StatusReport::read(&*l, &ACCOUNTS, &tz).await.unwrap()
}

#[tokio::test]
async fn text_is_as_it_always_was() {
    assert_eq!(report().await.to_string(), TEXT);
}

#[tokio::test]
async fn json_is_as_it_always_was() {
    // `println!` adds the newline after the JSON.
    assert_eq!(format!("{}\n", report().await.to_json()), JSON);
}

const TEXT: &str = r#"account main
  watermark             2026-10-06 10:00:00 -03
  last poll             2026-10-06 10:05:00 -03 FAILED (Mobbex: connection failed)
  inbox depth           2
  decisions
    booked_additional    1
    booked_initial       1
    error                2
    order_missing        1
    rejected             1
    waiting              1
  latest errors
    2026-10-06 08:00:00 -03 err-2 timed out
    2026-10-06 07:00:00 -03 err-1 ERPNext: HTTP 500 "boom" — ñ
  waiting for an earlier payment of their order
    2026-10-06 09:00:00 -03 wait-1 earlier payment err-2
account second
  watermark             (never polled)
  last poll             (none)
  inbox depth           0
  decisions
account third
  watermark             (never polled)
  last poll             2026-10-06 10:05:00 -03 ok (examined=0 booked_initial=0)
  inbox depth           0
  decisions
"#;

const JSON: &str = r#"{
  "accounts": [
    {
      "account": "main",
      "decisions": {
        "already_loaded": 0,
        "booked_additional": 1,
        "booked_initial": 1,
        "currency_mismatch": 0,
        "error": 2,
        "ignored_child": 0,
        "ignored_test": 0,
        "order_missing": 1,
        "order_not_payable": 0,
        "pending": 0,
        "refunded": 0,
        "rejected": 1,
        "waiting": 1
      },
      "inbox_depth": 2,
      "last_poll": {
        "error": "Mobbex: connection failed",
        "finished": "2026-10-06 10:05:00 -03",
        "ok": false,
        "summary": "examined=0",
        "window": [
          "2026-10-06 09:00:00 -03",
          "2026-10-06 10:05:00 -03"
        ]
      },
      "last_successful_poll": "2026-10-06 10:00:00 -03",
      "latest_errors": [
        {
          "last_seen": "2026-10-06 08:00:00 -03",
          "order": "SAL-ORD-2",
          "reason": "timed out",
          "reference": "ref-err-2",
          "uid": "err-2"
        },
        {
          "last_seen": "2026-10-06 07:00:00 -03",
          "order": null,
          "reason": "ERPNext: HTTP 500 \"boom\" — ñ",
          "reference": "ref-err-1",
          "uid": "err-1"
        }
      ],
      "latest_waiting": [
        {
          "last_seen": "2026-10-06 09:00:00 -03",
          "order": "SAL-ORD-2",
          "reason": "earlier payment err-2",
          "reference": "ref-wait-1",
          "uid": "wait-1"
        }
      ],
      "watermark": "2026-10-06 10:00:00 -03"
    },
    {
      "account": "second",
      "decisions": {
        "already_loaded": 0,
        "booked_additional": 0,
        "booked_initial": 0,
        "currency_mismatch": 0,
        "error": 0,
        "ignored_child": 0,
        "ignored_test": 0,
        "order_missing": 0,
        "order_not_payable": 0,
        "pending": 0,
        "refunded": 0,
        "rejected": 0,
        "waiting": 0
      },
      "inbox_depth": 0,
      "last_poll": null,
      "last_successful_poll": null,
      "latest_errors": [],
      "latest_waiting": [],
      "watermark": null
    },
    {
      "account": "third",
      "decisions": {
        "already_loaded": 0,
        "booked_additional": 0,
        "booked_initial": 0,
        "currency_mismatch": 0,
        "error": 0,
        "ignored_child": 0,
        "ignored_test": 0,
        "order_missing": 0,
        "order_not_payable": 0,
        "pending": 0,
        "refunded": 0,
        "rejected": 0,
        "waiting": 0
      },
      "inbox_depth": 0,
      "last_poll": {
        "error": null,
        "finished": "2026-10-06 10:05:00 -03",
        "ok": true,
        "summary": "examined=0 booked_initial=0",
        "window": [
          "2026-10-06 09:00:00 -03",
          "2026-10-06 10:05:00 -03"
        ]
      },
      "last_successful_poll": "2026-10-06 10:05:00 -03",
      "latest_errors": [],
      "latest_waiting": [],
      "watermark": null
    }
  ]
}
"#;
