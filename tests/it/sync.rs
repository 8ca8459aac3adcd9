//! `sync --since`: the whole pipeline against the simulator.

use std::collections::HashMap;
use std::str::FromStr;

use jiff::civil::date;
use jiff::{SignedDuration, Timestamp};
use paysync::domain::DecisionKind;
use paysync_sim::SimOperation;
use paysync_sim::sample::{ExpectedOutcome, SampleSpec, populate};
use rust_decimal::Decimal;

use crate::helpers::{TODAY, TestEnv, expected_kind, order};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn op(uid: &str, reference: &str, status: u16, total: &str, created: &str) -> SimOperation {
    SimOperation {
        uid: uid.into(),
        reference: reference.into(),
        status,
        total: d(total),
        currency: "ARS".into(),
        created: ts(created),
        updated: ts(created),
        description: "Compra".into(),
        payer_name: "Juan Pérez".into(),
        parent_uid: None,
        operation_type: "payment.v2".into(),
        entity_charges: Vec::new(),
    }
}

/// The acceptance scenario: a few hundred operations of every status, booked exactly as the
/// generator (an independent oracle) says; then a rerun books nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_every_status_books_exactly_the_paid_ones() {
    let env = TestEnv::start().await;
    let spec = SampleSpec {
        operations: 300,
        start: ts("2026-10-01T12:00:00Z"),
        span: SignedDuration::from_hours(24 * 28),
        company: "Mi Empresa SA".into(),
        seed: 7,
        ..SampleSpec::default()
    };
    let expected = populate(&env.sim, &spec);
    assert!(expected.len() >= 300);
    let before = env.sim.entry_names();

    let app = env.app().await;
    let summary =
        crate::helpers::sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), false).await;

    // Counts: the summary agrees with the oracle, kind by kind.
    let mut want: HashMap<DecisionKind, u64> = HashMap::new();
    for e in &expected {
        *want.entry(expected_kind(&e.outcome)).or_default() += 1;
    }
    for k in DecisionKind::ALL {
        assert_eq!(
            summary.get(k),
            want.get(&k).copied().unwrap_or(0),
            "count of {k}: {summary}"
        );
    }
    assert_eq!(summary.errors(), 0, "{summary}");
    for k in [
        DecisionKind::BookedInitial,
        DecisionKind::BookedAdditional,
        DecisionKind::Rejected,
        DecisionKind::Pending,
        DecisionKind::Refunded,
        DecisionKind::OrderMissing,
        DecisionKind::IgnoredChild,
    ] {
        assert!(
            want.get(&k).copied().unwrap_or(0) > 0,
            "the sample lacks {k}"
        );
    }

    // The ledger: one row per operation with the expected decision.
    let uids: Vec<String> = expected.iter().map(|e| e.uid.clone()).collect();
    let rows = app.ledger.rows("main", &uids).await.unwrap();
    for e in &expected {
        let row = rows
            .get(&e.uid)
            .unwrap_or_else(|| panic!("no ledger row for {}", e.uid));
        assert_eq!(
            row.decision,
            expected_kind(&e.outcome),
            "{}: {}",
            e.uid,
            row.reason
        );
    }

    // ERPNext: exactly one submitted entry per booked operation, with the right shape.
    let entries = env.sim.payment_entries();
    let ops: HashMap<String, SimOperation> = env
        .sim
        .operations()
        .into_iter()
        .map(|o| (o.uid.clone(), o))
        .collect();
    let mut by_ref: HashMap<String, Vec<_>> = HashMap::new();
    for e in entries.iter().filter(|e| !before.contains(&e.name)) {
        by_ref
            .entry(e.reference_no.clone().unwrap_or_default())
            .or_default()
            .push(e.clone());
    }
    let mut booked = 0;
    for e in &expected {
        let created = by_ref.get(&e.uid).cloned().unwrap_or_default();
        match &e.outcome {
            ExpectedOutcome::BookedInitial {
                order,
                allocated,
                party,
            } => {
                booked += 1;
                assert_eq!(created.len(), 1, "{}: {created:?}", e.uid);
                let pe = &created[0];
                assert_eq!(pe.docstatus, 1);
                assert_eq!(&pe.party, party);
                assert_eq!(pe.paid_amount, ops[&e.uid].total, "{}", e.uid);
                assert_eq!(pe.received_amount, ops[&e.uid].total);
                assert_eq!(pe.posting_date, TODAY);
                assert_eq!(pe.reference_date, Some(TODAY));
                assert_eq!(pe.mode_of_payment.as_deref(), Some("Mobbex"));
                assert_eq!(pe.references.len(), 1, "{}", e.uid);
                assert_eq!(&pe.references[0].reference_name, order);
                assert_eq!(pe.references[0].allocated_amount, *allocated, "{}", e.uid);
            }
            ExpectedOutcome::BookedAdditional { party, .. } => {
                booked += 1;
                assert_eq!(created.len(), 1, "{}: {created:?}", e.uid);
                let pe = &created[0];
                assert_eq!(pe.docstatus, 1);
                assert_eq!(&pe.party, party);
                assert!(
                    pe.references.is_empty(),
                    "{}: additional must be unallocated",
                    e.uid
                );
                assert_eq!(pe.unallocated_amount, ops[&e.uid].total);
                assert!(pe.paid_from.starts_with("Deudores"), "{}", pe.paid_from);
            }
            _ => assert!(
                created.is_empty(),
                "{} must not be booked: {created:?}",
                e.uid
            ),
        }
    }
    assert_eq!(by_ref.values().map(Vec::len).sum::<usize>(), booked);

    // Calls: one write per booked entry, reads batched.
    let stats = env.sim.stats();
    eprintln!(
        "first run: {} operations, {booked} booked, ERPNext writes {} reads {}, Mobbex list calls {}",
        expected.len(),
        stats.erp_writes,
        stats.erp_reads,
        stats.mobbex_list_calls
    );
    assert_eq!(
        stats.erp_writes as usize, booked,
        "exactly one write per booked entry"
    );

    // A rerun books nothing and sees every booked operation as already loaded.
    let stats_before = env.sim.stats();
    let again = crate::helpers::sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(again.get(DecisionKind::BookedInitial), 0, "{again}");
    assert_eq!(again.get(DecisionKind::BookedAdditional), 0, "{again}");
    assert_eq!(
        again.get(DecisionKind::AlreadyLoaded),
        summary.get(DecisionKind::AlreadyLoaded)
            + summary.get(DecisionKind::BookedInitial)
            + summary.get(DecisionKind::BookedAdditional)
    );
    assert_eq!(env.sim.payment_entries().len(), entries.len());
    let stats_after = env.sim.stats();
    assert_eq!(
        stats_after.erp_writes, stats_before.erp_writes,
        "a rerun must not write"
    );
    let rerun_reads = stats_after.erp_reads - stats_before.erp_reads;
    eprintln!(
        "rerun: ERPNext reads {rerun_reads} for {} operations",
        expected.len()
    );
    // Only operations that are not final are looked up again, in batches.
    assert!(rerun_reads as usize <= expected.len() / 10, "{rerun_reads}");
}

#[tokio::test]
async fn dry_run_creates_and_records_nothing() {
    let env = TestEnv::start().await;
    env.sim.add_customer("Cliente Demo");
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00001", "Cliente Demo", "1000"));
    env.sim.add_operation(op(
        "op-1",
        "SAL-ORD-2026-00001",
        200,
        "600",
        "2026-10-02T12:00:00Z",
    ));
    env.sim.add_operation(op(
        "op-2",
        "SAL-ORD-2026-00001",
        200,
        "100",
        "2026-10-03T12:00:00Z",
    ));

    let app = env.app().await;
    let s = crate::helpers::sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), true).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    assert_eq!(s.get(DecisionKind::BookedAdditional), 1, "{s}");
    assert_eq!(s.booked.len(), 2);
    assert!(s.booked.iter().all(|b| b.entry_name.is_none()));
    assert!(env.sim.payment_entries().is_empty());
    assert_eq!(env.sim.stats().erp_writes, 0);
    let rows = app
        .ledger
        .rows("main", &["op-1".into(), "op-2".into()])
        .await
        .unwrap();
    assert!(rows.is_empty(), "a dry run records nothing: {rows:?}");

    // The real run then books exactly what the dry run showed.
    let real = crate::helpers::sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(real.get(DecisionKind::BookedInitial), 1);
    assert_eq!(real.get(DecisionKind::BookedAdditional), 1);
    assert_eq!(env.sim.payment_entries().len(), 2);
}

#[tokio::test]
async fn payments_of_one_order_are_decided_oldest_first() {
    let env = TestEnv::start().await;
    env.sim.add_customer("Cliente Demo");
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00001", "Cliente Demo", "1000"));
    // Listed newest first by Mobbex; the oldest paid one must be the initial payment.
    env.sim.add_operation(op(
        "late",
        "SAL-ORD-2026-00001",
        200,
        "300",
        "2026-10-05T12:00:00Z",
    ));
    env.sim.add_operation(op(
        "early",
        "SAL-ORD-2026-00001",
        200,
        "900",
        "2026-10-02T12:00:00Z",
    ));
    env.sim.add_operation(op(
        "middle",
        "SAL-ORD-2026-00001",
        300,
        "50",
        "2026-10-03T12:00:00Z",
    ));

    env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    let entries = env.sim.payment_entries();
    let get = |r: &str| {
        entries
            .iter()
            .find(|e| e.reference_no.as_deref() == Some(r))
            .unwrap()
            .clone()
    };
    let early = get("early");
    assert_eq!(early.references.len(), 1);
    assert_eq!(early.references[0].allocated_amount, d("900"));
    assert!(get("middle").references.is_empty());
    assert!(get("late").references.is_empty());
    assert_eq!(
        env.sim
            .sales_order("SAL-ORD-2026-00001")
            .unwrap()
            .advance_paid,
        d("900")
    );
}

#[tokio::test]
async fn order_with_an_existing_entry_gets_an_additional_payment() {
    let env = TestEnv::start().await;
    env.sim.add_customer("Cliente Demo");
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00001", "Cliente Demo", "1000"));
    // Someone booked a first payment by hand in ERPNext.
    env.sim
        .insert_payment_entry_directly(paysync_sim::SimPaymentEntry {
            name: "ACC-PAY-2026-09999".into(),
            naming_series: paysync_sim::DEFAULT_NAMING_SERIES.into(),
            docstatus: 1,
            payment_type: "Receive".into(),
            company: "Mi Empresa SA".into(),
            party_type: "Customer".into(),
            party: "Cliente Demo".into(),
            paid_from: "Deudores - MESA".into(),
            paid_to: "Mobbex - MESA".into(),
            mode_of_payment: Some("Efectivo".into()),
            paid_amount: d("200"),
            received_amount: d("200"),
            reference_no: Some("manual-1".into()),
            reference_date: Some(date(2026, 10, 1)),
            posting_date: date(2026, 10, 1),
            references: vec![paysync_sim::SimReference {
                reference_doctype: "Sales Order".into(),
                reference_name: "SAL-ORD-2026-00001".into(),
                allocated_amount: d("200"),
            }],
            deductions: Vec::new(),
            unallocated_amount: Decimal::ZERO,
            paysync_operation: None,
            amended_from: None,
        });
    env.sim.add_operation(op(
        "op-1",
        "SAL-ORD-2026-00001",
        200,
        "800",
        "2026-10-02T12:00:00Z",
    ));
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::BookedAdditional), 1, "{s}");
    let pe = env
        .sim
        .payment_entries()
        .into_iter()
        .find(|e| e.reference_no.as_deref() == Some("op-1"))
        .unwrap();
    assert!(pe.references.is_empty());
    assert_eq!(pe.paid_from, "Deudores - MESA");
}

#[tokio::test]
async fn an_order_that_reaches_the_erp_later_is_booked_on_the_next_run() {
    let env = TestEnv::start().await;
    env.sim.add_customer("Cliente Demo");
    env.sim.add_operation(op(
        "op-1",
        "SAL-ORD-2026-00077",
        200,
        "123.45",
        "2026-10-02T12:00:00Z",
    ));
    let first = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(first.get(DecisionKind::OrderMissing), 1, "{first}");
    assert!(env.sim.payment_entries().is_empty());

    env.sim
        .add_sales_order(order("SAL-ORD-2026-00077", "Cliente Demo", "123.45"));
    let second = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(second.get(DecisionKind::BookedInitial), 1, "{second}");
    let pe = &env.sim.payment_entries()[0];
    assert_eq!(pe.references[0].allocated_amount, d("123.45"));
}

#[tokio::test]
async fn money_stays_exact() {
    let env = TestEnv::start().await;
    env.sim.add_customer("Cliente Demo");
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00001", "Cliente Demo", "2871.74"));
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00002", "Cliente Demo", "0.30"));
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00003", "Cliente Demo", "1000000000.00"));
    env.sim.add_operation(op(
        "a",
        "SAL-ORD-2026-00001",
        200,
        "2871.74",
        "2026-10-02T12:00:00Z",
    ));
    env.sim.add_operation(op(
        "b1",
        "SAL-ORD-2026-00002",
        200,
        "0.10",
        "2026-10-02T12:00:00Z",
    ));
    env.sim.add_operation(op(
        "b2",
        "SAL-ORD-2026-00002",
        200,
        "0.20",
        "2026-10-03T12:00:00Z",
    ));
    env.sim.add_operation(op(
        "c",
        "SAL-ORD-2026-00003",
        200,
        "1000000000.00",
        "2026-10-02T12:00:00Z",
    ));
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.errors(), 0, "{s}");
    let entries = env.sim.payment_entries();
    let get = |r: &str| {
        entries
            .iter()
            .find(|e| e.reference_no.as_deref() == Some(r))
            .unwrap()
            .clone()
    };
    assert_eq!(get("a").paid_amount, d("2871.74"));
    assert_eq!(get("a").references[0].allocated_amount, d("2871.74"));
    assert_eq!(get("b1").paid_amount + get("b2").paid_amount, d("0.30"));
    assert_eq!(get("c").paid_amount, d("1000000000.00"));
    assert_eq!(get("c").references[0].allocated_amount, d("1000000000.00"));
    // The ledger keeps the exact amount too.
    let app = env.app().await;
    let rows = app
        .ledger
        .rows("main", &["a".into(), "b1".into()])
        .await
        .unwrap();
    assert_eq!(rows["a"].amount, Some(d("2871.74")));
    assert_eq!(rows["b1"].amount, Some(d("0.10")));
}

#[tokio::test]
async fn malformed_operations_are_errors_and_the_others_still_book() {
    let env = TestEnv::start().await;
    env.sim.add_customer("Cliente Demo");
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00001", "Cliente Demo", "1000"));
    env.sim.add_operation(op(
        "good",
        "SAL-ORD-2026-00001",
        200,
        "10",
        "2026-10-02T12:00:00Z",
    ));
    let created = ts("2026-10-03T12:00:00Z");
    let base = serde_json::json!({
        "uid": "bad-status", "status": "abc", "total": 10.0, "currency": "ARS",
        "reference": "SAL-ORD-2026-00001", "created": "2026-10-03T12:00:00.000Z"
    });
    env.sim.add_raw_operation(base.clone(), created);
    let mut comma = base.clone();
    comma["uid"] = "bad-total".into();
    comma["status"] = "200".into();
    comma["total"] = "1.234,56".into();
    env.sim.add_raw_operation(comma, created);
    let mut no_uid = base.clone();
    no_uid.as_object_mut().unwrap().remove("uid");
    no_uid["status"] = "200".into();
    env.sim.add_raw_operation(no_uid, created);

    let app = env.app().await;
    let s = crate::helpers::sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    assert_eq!(s.get(DecisionKind::Error), 3, "{s}");
    let rows = app
        .ledger
        .rows("main", &["bad-status".into(), "bad-total".into()])
        .await
        .unwrap();
    assert_eq!(rows["bad-status"].decision, DecisionKind::Error);
    assert!(
        rows["bad-status"].reason.contains("abc"),
        "{}",
        rows["bad-status"].reason
    );
    assert!(
        rows["bad-total"].reason.contains("comma"),
        "{}",
        rows["bad-total"].reason
    );
    assert_eq!(env.sim.payment_entries().len(), 1);
}

#[tokio::test]
async fn closed_order_is_not_payable_and_not_tried() {
    let env = TestEnv::start().await;
    env.sim.add_customer("Cliente Demo");
    let mut o = order("SAL-ORD-2026-00001", "Cliente Demo", "100");
    o.status = "Closed".into();
    env.sim.add_sales_order(o);
    env.sim.add_operation(op(
        "op-1",
        "SAL-ORD-2026-00001",
        200,
        "10",
        "2026-10-02T12:00:00Z",
    ));
    let app = env.app().await;
    let s = crate::helpers::sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::OrderNotPayable), 1, "{s}");
    let rows = app.ledger.rows("main", &["op-1".into()]).await.unwrap();
    assert!(
        rows["op-1"].reason.contains("Closed"),
        "{}",
        rows["op-1"].reason
    );
    assert_eq!(
        env.sim.stats().erp_writes,
        0,
        "a closed order is not even tried"
    );
}

#[tokio::test]
async fn erp_rejection_is_recorded_with_its_message_and_retried_later() {
    let env = TestEnv::start_with(
        paysync_sim::SimOptions::default(),
        "paid_to = \"Caja Inexistente - MESA\"",
    )
    .await;
    env.sim.add_customer("Cliente Demo");
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00001", "Cliente Demo", "100"));
    env.sim.add_operation(op(
        "op-1",
        "SAL-ORD-2026-00001",
        200,
        "10",
        "2026-10-02T12:00:00Z",
    ));
    let app = env.app().await;
    let s = crate::helpers::sync_with(&app, date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::Error), 1, "{s}");
    let rows = app.ledger.rows("main", &["op-1".into()]).await.unwrap();
    let reason = &rows["op-1"].reason;
    assert!(reason.contains("417"), "{reason}");
    assert!(reason.contains("Caja Inexistente - MESA"), "{reason}");
    assert!(env.sim.payment_entries().is_empty());
    assert_eq!(env.sim.stats().erp_writes, 1, "a 417 is not retried");
}

/// Every log line of a full run of the real binary, at the most verbose level, is searched for
/// the secrets; so are the ledger file and the output of `check`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_or_ledger() {
    let env = TestEnv::start().await;
    env.sim.add_customer("Cliente Demo");
    env.sim
        .add_sales_order(order("SAL-ORD-2026-00001", "Cliente Demo", "1000"));
    env.sim.add_operation(op(
        "op-1",
        "SAL-ORD-2026-00001",
        200,
        "600",
        "2026-10-02T12:00:00Z",
    ));
    env.sim.add_operation(op(
        "op-2",
        "SAL-ORD-2026-00001",
        200,
        "100",
        "2026-10-03T12:00:00Z",
    ));
    env.sim.add_operation(op(
        "op-3",
        "SAL-ORD-2026-00404",
        200,
        "100",
        "2026-10-03T12:00:00Z",
    ));
    let settings = env.settings();
    let secrets = {
        use secrecy::ExposeSecret;
        let a = &settings.accounts[0];
        vec![
            settings.erp.api_key.expose_secret().to_string(),
            settings.erp.api_secret.expose_secret().to_string(),
            a.mobbex_keys().unwrap().0.expose_secret().to_string(),
            a.mobbex_keys().unwrap().1.expose_secret().to_string(),
            a.webhook_token
                .as_ref()
                .unwrap()
                .expose_secret()
                .to_string(),
        ]
    };
    let cfg = env.config_path.to_str().unwrap().to_string();
    let run = |args: Vec<&'static str>| {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || {
            let mut full = vec!["--config", cfg.as_str(), "--log-format", "json"];
            full.extend(args);
            std::process::Command::new(env!("CARGO_BIN_EXE_paysync"))
                .args(&full)
                .env("RUST_LOG", "trace")
                .output()
                .unwrap()
        })
    };
    let sync = run(vec![
        "sync",
        "--since",
        "2026-10-01",
        "--until",
        "2026-10-31",
    ])
    .await
    .unwrap();
    let check = run(vec!["check"]).await.unwrap();
    let mut logs = String::new();
    for o in [&sync, &check] {
        logs.push_str(&String::from_utf8_lossy(&o.stdout));
        logs.push_str(&String::from_utf8_lossy(&o.stderr));
    }
    assert!(
        logs.contains("booked_initial"),
        "the capture works: {logs:.2000}"
    );
    assert!(
        logs.contains("\"level\":\"TRACE\"") || logs.contains("\"level\":\"DEBUG\""),
        "verbose logs were on"
    );
    let ledger_text = env.ledger_contents().await;
    assert!(ledger_text.contains("op-1"), "the ledger was read");
    for s in secrets {
        assert!(s.len() >= 8, "secret {s:?} too short to search for");
        assert!(!logs.contains(&s), "secret leaked into logs");
        assert!(!ledger_text.contains(&s), "secret leaked into the ledger");
    }
}

/// Different orders are booked in parallel, never more than `max_in_flight` writes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_run_in_parallel_up_to_max_in_flight() {
    let opts = paysync_sim::SimOptions {
        faults: paysync_sim::Faults {
            erp_write_latency: std::time::Duration::from_millis(40),
            ..Default::default()
        },
        ..Default::default()
    };
    let env = TestEnv::start_with(opts, "").await;
    env.sim.add_customer("Cliente Demo");
    for i in 1..=12 {
        let name = format!("SAL-ORD-2026-{i:05}");
        env.sim.add_sales_order(order(&name, "Cliente Demo", "100"));
        env.sim.add_operation(op(
            &format!("op-{i}"),
            &name,
            200,
            "100",
            "2026-10-02T12:00:00Z",
        ));
    }
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 12, "{s}");
    let stats = env.sim.stats();
    assert_eq!(
        stats.max_concurrent_writes, 4,
        "max_in_flight = 4 in the test config"
    );
}

#[tokio::test]
async fn refused_mobbex_credentials_fail_the_window_with_the_reason() {
    let opts = paysync_sim::SimOptions {
        mobbex_access_token: "the-real-token".into(),
        ..Default::default()
    };
    let env = TestEnv::start_with(opts, "").await;
    // The test config is written with the simulator's token; break it.
    let text = std::fs::read_to_string(&env.config_path).unwrap().replace(
        "access_token = \"the-real-token\"",
        "access_token = \"a-wrong-token\"",
    );
    std::fs::write(&env.config_path, text).unwrap();
    let app = env.app().await;
    let window = paysync::app::created_window(
        &app.settings.daemon.timezone,
        date(2026, 10, 1),
        date(2026, 10, 31),
    );
    let err = app
        .engine
        .sync_window(&app.accounts[0], window, &Default::default())
        .await
        .expect_err("the listing must fail");
    let text = err.1.to_string();
    assert!(text.contains("Mobbex") && text.contains("401"), "{text}");
    assert!(!text.contains("a-wrong-token"));
}

/// An order whose outstanding has three decimals (advance_paid 0.005; grand_total 1000.005): the
/// first payment books allocated, at most the outstanding rounded down — never an allocation that
/// ERPNext refuses for ever ("Allocated Amount cannot be greater than outstanding amount").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outstanding_with_three_decimals_never_blocks_a_payment() {
    let env = TestEnv::start().await;
    env.sim.add_customer("Cliente Demo");
    let mut a = crate::helpers::order("SAL-ORD-2026-00001", "Cliente Demo", "1000");
    a.advance_paid = Decimal::from_str("0.005").unwrap();
    env.sim.add_sales_order(a);
    let mut b = crate::helpers::order("SAL-ORD-2026-00002", "Cliente Demo", "1000.005");
    b.rounded_total = Some(Decimal::ZERO); // Disable Rounded Total
    env.sim.add_sales_order(b);
    let at: jiff::Timestamp = "2026-10-05T15:00:00Z".parse().unwrap();
    env.sim.add_operation(crate::helpers::paid_op(
        "p1",
        "SAL-ORD-2026-00001",
        1000,
        at,
    ));
    let mut p2 = crate::helpers::paid_op("p2", "SAL-ORD-2026-00002", 1000, at);
    p2.total = Decimal::from_str("1000.01").unwrap();
    env.sim.add_operation(p2);
    let s = env.sync(date(2026, 10, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 2, "{s}");
    assert_eq!(s.unresolved(), 0, "{s}");
    let entries = env.sim.payment_entries();
    let alloc = |uid: &str| {
        entries
            .iter()
            .find(|e| e.reference_no.as_deref() == Some(uid))
            .map(|e| e.references[0].allocated_amount)
            .unwrap()
    };
    assert_eq!(alloc("p1"), Decimal::from_str("999.99").unwrap());
    assert_eq!(alloc("p2"), Decimal::from(1000));
}

/// A listing skips empty stretches instead of asking for every empty day: a decade with one busy
/// month costs a few dozen Mobbex requests, not one per day (3,600+), and books the month exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_window_skips_its_empty_years() {
    let env = TestEnv::start().await;
    env.sim.add_customer("Cliente Demo");
    for day in 1..=28i8 {
        let so = format!("SAL-ORD-2026-{day:05}");
        env.sim.add_sales_order(order(&so, "Cliente Demo", "1000"));
        // Three payments a day, the busy month's days each read whole.
        for n in 0..3 {
            let at: Timestamp = format!("2026-10-{day:02}T1{n}:00:00Z").parse().unwrap();
            env.sim.add_operation(crate::helpers::paid_op(
                &format!("op-{day}-{n}"),
                &so,
                100,
                at,
            ));
        }
    }
    let s = env.sync(date(2016, 1, 1), date(2026, 10, 31), false).await;
    assert_eq!(s.get(DecisionKind::BookedInitial), 28, "{s}");
    assert_eq!(s.get(DecisionKind::BookedAdditional), 56, "{s}");
    let calls = env.sim.stats().mobbex_list_calls;
    eprintln!("mobbex listing requests over ten years with one busy month: {calls}");
    assert!(
        calls <= 80,
        "{calls} Mobbex listing requests for one busy month in ten years"
    );
}
