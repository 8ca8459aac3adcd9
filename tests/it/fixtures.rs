//! The seam between the simulator crate and paysync: the shared fixtures speak paysync's formats
//! only as text (a `sync.toml`, decision names), so these tests check that paysync reads them as
//! meant. A key or decision paysync renamed fails here, once, with its name.

use std::collections::HashSet;
use std::time::Duration;

use paysync::config;
use paysync::domain::DecisionKind;
use paysync_sim::fixtures::{AccountConfig, ConfigBuilder, ErpAuth};
use paysync_sim::sample::ExpectedOutcome;
use rust_decimal::Decimal;
use secrecy::ExposeSecret;

use crate::helpers::expected_kind;

#[test]
fn the_shared_config_builder_renders_what_paysync_reads_as_meant() {
    let dir = tempfile::tempdir().unwrap();
    let (key_file, secret_file) = (dir.path().join("key"), dir.path().join("secret"));
    std::fs::write(&key_file, "file-key").unwrap();
    std::fs::write(&secret_file, "file-secret").unwrap();
    let path = dir.path().join("sync.toml");
    ConfigBuilder::new(
        dir.path().join("ledger.db"),
        "http://127.0.0.1:9/erp",
        ErpAuth::Files {
            key_file,
            secret_file,
        },
    )
    .comment("written by a test")
    .daemon("retry_budget = \"3s\"")
    .erp("max_in_flight = 7")
    .erp("commit_horizon = \"9s\"")
    .account(
        AccountConfig::new(
            "main",
            "http://127.0.0.1:9/mbx",
            "mk",
            "a \"quoted\" \\ token",
        )
        .line("webhook_token = \"hook\""),
    )
    .account(
        AccountConfig::new("b", "http://127.0.0.1:9/other", "bk", "bt")
            .company("Otra SA")
            .mode_of_payment("Transferencia"),
    )
    .account_line(r"order_pattern = '^(?P<order>SAL-ORD-\d{4}-\d+)'")
    .write(&path)
    .unwrap();

    let s = config::load_with_env(&path, &Default::default()).expect("paysync reads it");
    assert_eq!(s.daemon.timezone_name, "America/Argentina/Buenos_Aires");
    assert_eq!(s.daemon.retry_budget, Duration::from_secs(3));
    assert_eq!(
        s.store.url,
        format!("sqlite://{}", dir.path().join("ledger.db").display())
    );
    assert_eq!(s.erp.url.as_str(), "http://127.0.0.1:9/erp");
    assert_eq!(s.erp.api_key.expose_secret(), "file-key");
    assert_eq!(s.erp.api_secret.expose_secret(), "file-secret");
    assert_eq!(s.erp.max_in_flight, paysync::config::InFlight::Fixed(7));
    assert_eq!(s.erp.commit_horizon, Duration::from_secs(9));
    let [main, b] = &s.accounts[..] else {
        panic!("two accounts: {:?}", s.accounts.len());
    };
    assert_eq!(main.name, "main");
    assert_eq!(main.api_url.as_str(), "http://127.0.0.1:9/mbx");
    assert_eq!(main.mobbex_keys().unwrap().0.expose_secret(), "mk");
    assert_eq!(
        main.mobbex_keys().unwrap().1.expose_secret(),
        "a \"quoted\" \\ token"
    );
    assert_eq!(
        main.webhook_token.as_ref().map(|t| t.expose_secret()),
        Some("hook")
    );
    assert_eq!(
        (main.company.as_str(), main.mode_of_payment.as_str()),
        ("Mi Empresa SA", "Mobbex")
    );
    assert!(
        main.order_pattern.is_none(),
        "the line went to the last account"
    );
    assert_eq!(b.name, "b");
    assert_eq!(
        (b.company.as_str(), b.mode_of_payment.as_str()),
        ("Otra SA", "Transferencia")
    );
    assert_eq!(
        b.order_pattern.as_ref().map(|r| r.as_str()),
        Some(r"^(?P<order>SAL-ORD-\d{4}-\d+)")
    );
    assert!(b.webhook_token.is_none());
}

#[test]
fn every_outcome_the_oracle_expects_names_a_decision_paysync_records() {
    let zero = Decimal::ZERO;
    let all = [
        ExpectedOutcome::BookedInitial {
            order: "o".into(),
            allocated: zero,
            party: "p".into(),
        },
        ExpectedOutcome::BookedAdditional {
            order: "o".into(),
            party: "p".into(),
        },
        ExpectedOutcome::AlreadyLoaded,
        ExpectedOutcome::Rejected,
        ExpectedOutcome::Pending,
        ExpectedOutcome::Refunded,
        ExpectedOutcome::OrderMissing,
        ExpectedOutcome::OrderNotPayable,
        ExpectedOutcome::CurrencyMismatch,
        ExpectedOutcome::IgnoredChild,
        ExpectedOutcome::IgnoredTest,
    ];
    let kinds: Vec<DecisionKind> = all.iter().map(expected_kind).collect();
    for (o, k) in all.iter().zip(&kinds) {
        assert_eq!(k.as_str(), o.decision());
        assert_eq!(k.is_booked(), o.is_booked(), "{o:?} -> {k}");
    }
    let distinct: HashSet<_> = kinds.iter().collect();
    assert_eq!(distinct.len(), all.len(), "two outcomes name one decision");
}
