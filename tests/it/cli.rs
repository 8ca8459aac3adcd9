//! The binary as a user runs it: exit codes, messages, the summary.

use std::process::{Command, Output};

use paysync_sim::SimOperation;
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
            entity_charges: Vec::new(),
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

/// "Today" where the test configuration lives (what `sync` compares `--since/--until` with).
fn today_in_buenos_aires() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("America/Argentina/Buenos_Aires").unwrap())
        .date()
}

fn days(n: i64) -> jiff::Span {
    jiff::Span::new().days(n)
}

async fn run_paysync(env: &TestEnv, args: &[&str]) -> Output {
    let mut all = vec![
        "--config".to_string(),
        env.config_path.display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        paysync(&args)
    })
    .await
    .unwrap()
}

/// `--until 9999-12-31` made 21,643 Mobbex requests in 10 s and `--since 1900-01-01` 46,356; both
/// are refused before any request, naming the limit and the key that sets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_refuses_a_window_past_today_or_further_back_than_max_sync_days() {
    let env = TestEnv::start().await;
    let cfg = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace("[daemon]\n", "[daemon]\nmax_sync_days = 10\n");
    std::fs::write(&env.config_path, cfg).unwrap();
    let today = today_in_buenos_aires();
    // Margins of two days: the test and the binary may see different days around midnight.
    let future = (today + days(2)).to_string();
    let far_back = (today - days(12)).to_string();
    let near = (today - days(8)).to_string();

    for (args, words) in [
        (
            vec!["sync", "--since", near.as_str(), "--until", future.as_str()],
            vec!["--until", future.as_str(), "today"],
        ),
        (
            vec!["sync", "--since", "2026-01-01", "--until", "9999-12-31"],
            vec!["--until", "9999-12-31"],
        ),
        (
            vec!["sync", "--since", far_back.as_str()],
            vec!["--since", far_back.as_str(), "10 days", "max_sync_days"],
        ),
        (
            vec!["sync", "--since", "1900-01-01"],
            vec!["--since", "1900-01-01", "max_sync_days"],
        ),
    ] {
        let out = run_paysync(&env, &args).await;
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {t}");
        for w in words {
            assert!(t.contains(w), "{args:?}: the message must say {w:?}: {t}");
        }
        assert_eq!(
            env.sim.stats().total_requests,
            0,
            "{args:?}: refused before any request"
        );
    }
    // Within the bounds: accepted.
    let out = run_paysync(&env, &["sync", "--since", &near]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(env.sim.stats().mobbex_list_calls > 0);
}

/// Inline secrets in a file others can read: `check` says so (and still passes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_when_others_can_read_a_file_with_inline_secrets() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::start().await;
    let path = env.config_path.display().to_string();
    let set_mode = |mode: u32| {
        std::fs::set_permissions(&env.config_path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set_mode(0o644);
    let out = run_paysync(&env, &["check"]).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let warning = t
        .lines()
        .find(|l| l.starts_with("WARNING") && l.contains(&path))
        .unwrap_or_else(|| panic!("no warning naming {path}: {t}"));
    assert!(
        warning.contains("chmod 600") && warning.contains("_file"),
        "{warning}"
    );
    assert!(warning.contains("erp.api_secret"), "{warning}");

    set_mode(0o600);
    let out = run_paysync(&env, &["check"]).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(!t.contains("chmod"), "{t}");
}

/// A careless operator's typos must not print a secret: the binary's whole output (stdout and
/// stderr) is searched for the secret values.
#[test]
fn a_broken_configuration_never_prints_a_secret() {
    const SECRET: &str = "Zq8v4739201847xK";
    let good = |erp_url: &str, secret_line: &str| {
        format!(
            "[store]\nurl = \"sqlite://ledger.db\"\n[erp]\nkind = \"erpnext\"\nurl = \"{erp_url}\"\napi_key = \"k\"\n{secret_line}\n[[accounts]]\nname = \"main\"\nsource = \"mobbex\"\napi_key = \"k\"\naccess_token = \"t\"\ncompany = \"C\"\nmode_of_payment = \"M\"\n"
        )
    };
    let cases = [
        // A TOML syntax error on the secret's line (an unterminated string).
        good(
            "https://erp.example.com",
            &format!("api_secret = \"{SECRET}"),
        ),
        // A secret pasted without a key.
        good(
            "https://erp.example.com",
            &format!("api_secret = \"s\"\n{SECRET}"),
        ),
        // A mistyped secret (a number).
        good("https://erp.example.com", "api_secret = 4739201847"),
        // A password in the ERPNext URL.
        good(
            &format!("https://admin:{SECRET}@erp.example.com"),
            "api_secret = \"s\"",
        ),
        // A secret that cannot be sent in an HTTP header.
        good(
            "https://erp.example.com",
            &format!("api_secret = \"{SECRET}\\n\""),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sync.toml");
    for (i, cfg) in cases.iter().enumerate() {
        std::fs::write(&path, cfg).unwrap();
        for args in [vec!["check"], vec!["sync", "--since", "2026-10-01"]] {
            let mut all = vec!["--config", path.to_str().unwrap()];
            all.extend(args.iter());
            let out = paysync(&all);
            let t = text(&out);
            assert_eq!(out.status.code(), Some(2), "case {i} {args:?}: {t}");
            assert!(
                t.contains("`erp"),
                "case {i}: the key (or section) is named: {t}"
            );
            for needle in [SECRET, "4739201847", "Zq8v"] {
                assert!(!t.contains(needle), "case {i} {args:?}: secret echoed: {t}");
            }
        }
    }
}

/// A run that works: no secret in anything `check` or `sync` prints or logs either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_sync_never_print_a_secret() {
    let opts = paysync_sim::SimOptions {
        erp_api_key: "ErpKey-6d1f0a".into(),
        erp_api_secret: "ErpSecret-93be27".into(),
        mobbex_api_key: "MbxKey-4c8e51".into(),
        mobbex_access_token: "MbxToken-0a7d39".into(),
        ..Default::default()
    };
    let env = TestEnv::start_with(opts, "").await;
    seed(&env);
    let today = today_in_buenos_aires().to_string();
    for args in [
        vec!["check"],
        vec!["sync", "--since", &today],
        vec!["sync", "--since", &today, "--dry-run"],
    ] {
        let mut all = vec![
            "--config".to_string(),
            env.config_path.display().to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let out = tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = all.iter().map(String::as_str).collect();
            Command::new(env!("CARGO_BIN_EXE_paysync"))
                .args(&a)
                .env("RUST_LOG", "trace")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {t}");
        for secret in [
            "ErpKey-6d1f0a",
            "ErpSecret-93be27",
            "MbxKey-4c8e51",
            "MbxToken-0a7d39",
            "hook-secret-token",
        ] {
            assert!(!t.contains(secret), "{args:?}: {secret} echoed: {t}");
        }
    }
}
