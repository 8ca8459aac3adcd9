//! The binary as a user runs it: exit codes, messages, the summary.

use std::process::{Command, Output};

use paysync::sim::SimOperation;
use rust_decimal::Decimal;

use crate::helpers::TestEnv;

fn paysync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paysync"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("PAYSYNC_CONFIG")
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_bad_config_exits_2_naming_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sync.toml");
    std::fs::write(
        &path,
        "[erp]\nkind = \"erpnext\"\nurl = \"not a url\"\napi_key = \"k\"\napi_secret = \"s\"\n[[accounts]]\nname = \"main\"\nsource = \"mobbex\"\napi_key = \"k\"\naccess_token = \"t\"\ncompany = \"C\"\nmode_of_payment = \"M\"\n",
    )
    .unwrap();
    let out = paysync(&[
        "--config",
        path.to_str().unwrap(),
        "sync",
        "--since",
        "2026-10-01",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("erp.url"), "{t}");
    assert!(t.contains(path.to_str().unwrap()), "{t}");

    let missing = paysync(&["--config", "/nonexistent/sync.toml", "check"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("/nonexistent/sync.toml"));
}

#[test]
fn bad_usage_exits_2() {
    let out = paysync(&["sync", "--since", "01/10/2026"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("YYYY-MM-DD"), "{}", text(&out));
}

fn seed(env: &TestEnv) {
    env.sim.add_customer("Cliente Demo");
    env.sim.add_sales_order(crate::helpers::order(
        "SAL-ORD-2026-00001",
        "Cliente Demo",
        "1000",
    ));
    for (uid, status) in [("op-paid", 200), ("op-rejected", 400)] {
        env.sim.add_operation(SimOperation {
            uid: uid.into(),
            reference: "SAL-ORD-2026-00001".into(),
            status,
            total: Decimal::from(600),
            currency: "ARS".into(),
            created: "2026-10-02T12:00:00Z".parse().unwrap(),
            updated: "2026-10-02T12:00:00Z".parse().unwrap(),
            description: "Compra".into(),
            payer_name: "Juan".into(),
            parent_uid: None,
            operation_type: "payment.v2".into(),
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_prints_a_summary_and_logs_one_line_per_decision() {
    let env = TestEnv::start().await;
    seed(&env);
    let cfg = env.config_path.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        paysync(&[
            "--config",
            &cfg,
            "sync",
            "--since",
            "2026-10-01",
            "--until",
            "2026-10-31",
        ])
    })
    .await
    .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("booked initial") && l.trim_end().ends_with(" 1")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("rejected") && l.trim_end().ends_with(" 1")),
        "{stdout}"
    );
    // Not a terminal: every decision is a log line with the operation id and the decision.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("op-paid") && l.contains("booked_initial")),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("op-rejected") && l.contains("decision=rejected")),
        "{stderr}"
    );
    assert_eq!(env.sim.payment_entries().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_which_api_fails() {
    let env = TestEnv::start().await;
    let cfg = env.config_path.to_str().unwrap().to_string();
    let ok = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || paysync(&["--config", &cfg, "check"]))
            .await
            .unwrap()
    };
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));

    // Wrong ERPNext secret, right Mobbex credentials.
    let broken = std::fs::read_to_string(&env.config_path).unwrap().replace(
        "api_secret = \"sim-erp-secret\"",
        "api_secret = \"wrong-secret-123\"",
    );
    std::fs::write(&env.config_path, broken).unwrap();
    let out = tokio::task::spawn_blocking(move || paysync(&["--config", &cfg, "check"]))
        .await
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let erp_line = t
        .lines()
        .find(|l| l.starts_with("ERPNext"))
        .unwrap_or_default();
    assert!(
        erp_line.contains("FAILED") && erp_line.contains("401"),
        "{t}"
    );
    let mbx_line = t.lines().find(|l| l.contains("Mobbex")).unwrap_or_default();
    assert!(mbx_line.ends_with("ok"), "{t}");
    assert!(
        !t.contains("wrong-secret-123"),
        "the secret is not echoed: {t}"
    );
}

#[test]
fn demo_runs_on_a_fresh_machine() {
    let out = paysync(&["demo"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("booked initial"), "{stdout}");
    assert!(stdout.contains("ACC-PAY-"), "{stdout}");
    assert!(stdout.contains("Second run"), "{stdout}");
}
