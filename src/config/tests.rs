//! Loading and validating `sync.toml`: what is accepted, and what is refused with which key.

use super::*;
use secrecy::ExposeSecret;

const GOOD: &str = r#"
[daemon]
timezone = "America/Argentina/Buenos_Aires"
schedule = "*/5 * * * *"
lookback = "2h"
listen = "127.0.0.1:8080"
[store]
url = "sqlite://paysync.db"
[erp]
kind = "erpnext"
url = "https://erp.example.com"
api_key = "k"
api_secret = "s"
max_in_flight = 4
[[accounts]]
name = "main"
source = "mobbex"
api_url = "https://api.mobbex.com"
api_key = "mk"
access_token = "mt"
webhook_token = "wt"
company = "Mi Empresa SA"
mode_of_payment = "Mobbex"
paid_to = "Mobbex - MESA"
order_pattern = '^(?P<order>SAL-ORD-\d{4}-\d+)'
include_test = false
"#;

fn write(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let f = write(text);
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_with_env(f.path(), &env)
}

#[test]
fn the_documented_example_loads() {
    let s = load_text(GOOD, &[]).unwrap();
    assert_eq!(s.erp.max_in_flight, InFlight::Fixed(4));
    assert_eq!(s.daemon.lookback, Duration::from_secs(7200));
    let a = &s.accounts[0];
    assert_eq!(
        a.order_name("SAL-ORD-2026-00042-retry2"),
        Some("SAL-ORD-2026-00042")
    );
    assert_eq!(a.order_name("shop_id:42"), None);
    assert_eq!(a.mobbex_keys().unwrap().0.expose_secret(), "mk");
}

#[test]
fn env_overrides_sections_and_accounts() {
    let s = load_text(
        GOOD,
        &[
            ("PAYSYNC__ERP__MAX_IN_FLIGHT", "9"),
            ("PAYSYNC__ERP__URL", "http://127.0.0.1:9/"),
            ("PAYSYNC__ACCOUNTS__MAIN__ACCESS_TOKEN", "from-env"),
            ("PAYSYNC__ACCOUNTS__MAIN__INCLUDE_TEST", "true"),
        ],
    )
    .unwrap();
    assert_eq!(s.erp.max_in_flight, InFlight::Fixed(9));
    assert_eq!(s.erp.url.as_str(), "http://127.0.0.1:9/");
    assert_eq!(
        s.accounts[0].mobbex_keys().unwrap().1.expose_secret(),
        "from-env"
    );
    assert!(s.accounts[0].include_test);
}

#[test]
fn secrets_from_files_and_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("erp-secret"), "file-secret\n").unwrap();
    let text = GOOD.replace("api_secret = \"s\"", "api_secret_file = \"erp-secret\"");
    let s = load_text(
        &text,
        &[("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())],
    )
    .unwrap();
    assert_eq!(s.erp.api_secret.expose_secret(), "file-secret");
}

fn key_error(text: &str) -> (String, String) {
    match load_text(text, &[]) {
        Err(ConfigError::Key { key, message, .. }) => (key, message),
        other => panic!("expected a key error, got {other:?}"),
    }
}

#[test]
fn bad_keys_are_named() {
    let cases = [
        (
            GOOD.replace("url = \"https://erp.example.com\"\n", ""),
            "erp",
        ),
        (
            GOOD.replace("\"*/5 * * * *\"", "\"every five\""),
            "daemon.schedule",
        ),
        (
            GOOD.replace("America/Argentina/Buenos_Aires", "Mars/Olympus"),
            "daemon.timezone",
        ),
        (GOOD.replace("\"2h\"", "\"soon\""), "daemon.lookback"),
        (
            GOOD.replace("https://erp.example.com", "not a url"),
            "erp.url",
        ),
        (
            GOOD.replace("max_in_flight = 4", "max_in_flight = 0"),
            "erp.max_in_flight",
        ),
        (
            GOOD.replace("max_in_flight = 4", "max_in_flight = \"many\""),
            "erp.max_in_flight",
        ),
        (
            GOOD.replace("kind = \"erpnext\"", "kind = \"odoo\""),
            "erp.kind",
        ),
        (GOOD.replace("api_secret = \"s\"\n", ""), "erp.api_secret"),
        (GOOD.replace("(?P<order>", "("), "accounts[0].order_pattern"),
        (
            GOOD.replace("sqlite://paysync.db", "mysql://x"),
            "store.url",
        ),
        (
            GOOD.replace("include_test = false", "include_tset = false"),
            "accounts[0]",
        ),
        (GOOD.replace("127.0.0.1:8080", "localhost"), "daemon.listen"),
    ];
    for (text, want) in cases {
        let (key, message) = key_error(&text);
        assert!(key.starts_with(want), "want {want}, got {key}: {message}");
        assert!(!message.is_empty());
    }
}

#[test]
fn one_mobbex_entity_configured_twice_is_refused_naming_both() {
    let twin = "\n[[accounts]]\nname = \"copy\"\nsource = \"mobbex\"\napi_key = \"mk\"\naccess_token = \"mt\"\ncompany = \"Mi Empresa SA\"\nmode_of_payment = \"Mobbex\"\n";
    let (key, message) = key_error(&format!("{GOOD}{twin}"));
    assert_eq!(key, "accounts[1].access_token");
    assert!(
        message.contains("\"main\"") && message.contains("\"copy\""),
        "{message}"
    );
    assert!(
        !message.contains("mt"),
        "no secret in the message: {message}"
    );
    // Another entity (other token) is fine.
    let other = twin.replace("access_token = \"mt\"", "access_token = \"other\"");
    assert!(load_text(&format!("{GOOD}{other}"), &[]).is_ok());
}

#[test]
fn missing_file_is_an_error() {
    let e = load_with_env(Path::new("/nonexistent/sync.toml"), &HashMap::new()).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/sync.toml"));
}

#[test]
fn secrets_do_not_show_in_debug() {
    let s = load_text(GOOD, &[]).unwrap();
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("\"mk\"") && !dbg.contains("\"wt\""), "{dbg}");
}

// ---- every number and duration is range-checked at start ------------------------------------

fn set(key_line: &str, new_line: &str) -> String {
    assert!(GOOD.contains(key_line), "{key_line}");
    GOOD.replacen(key_line, new_line, 1)
}

/// In `[daemon]`, after `listen`.
fn daemon(line: &str) -> String {
    set(
        "listen = \"127.0.0.1:8080\"\n",
        &format!("listen = \"127.0.0.1:8080\"\n{line}\n"),
    )
}

/// In `[erp]`, after `max_in_flight`.
fn erp(line: &str) -> String {
    set(
        "max_in_flight = 4\n",
        &format!("max_in_flight = 4\n{line}\n"),
    )
}

#[test]
fn every_number_and_duration_is_range_checked_naming_the_key_and_the_value() {
    // (configuration, the key, how the value must be shown)
    let cases = [
        (
            set("lookback = \"2h\"", "lookback = \"200000000h\""),
            "daemon.lookback",
            "\"200000000h\"",
        ),
        (
            set("lookback = \"2h\"", "lookback = \"9700h\""),
            "daemon.lookback",
            "\"9700h\"",
        ),
        (
            set("lookback = \"2h\"", "lookback = \"401d\""),
            "daemon.lookback",
            "\"401d\"",
        ),
        (
            daemon("retry_budget = \"2h\""),
            "daemon.retry_budget",
            "\"2h\"",
        ),
        (daemon("inbox_limit = 0"), "daemon.inbox_limit", "0"),
        (daemon("inbox_limit = -5"), "daemon.inbox_limit", "-5"),
        (
            daemon("inbox_limit = 100000000"),
            "daemon.inbox_limit",
            "100000000",
        ),
        (
            set("127.0.0.1:8080", "127.0.0.1:99999"),
            "daemon.listen",
            "\"127.0.0.1:99999\"",
        ),
        (daemon("max_sync_days = 0"), "daemon.max_sync_days", "0"),
        (
            daemon("max_sync_days = 5000"),
            "daemon.max_sync_days",
            "5000",
        ),
        (
            set("max_in_flight = 4", "max_in_flight = 1e20"),
            "erp.max_in_flight",
            "1e+20",
        ),
        (
            set("max_in_flight = 4", "max_in_flight = -1"),
            "erp.max_in_flight",
            "-1",
        ),
        (
            set("max_in_flight = 4", "max_in_flight = 0"),
            "erp.max_in_flight",
            "0",
        ),
        (
            set("max_in_flight = 4", "max_in_flight = 65"),
            "erp.max_in_flight",
            "65",
        ),
        (
            set("max_in_flight = 4", "max_in_flight = 2.5"),
            "erp.max_in_flight",
            "2.5",
        ),
        (
            set("max_in_flight = 4", "max_in_flight = \"many\""),
            "erp.max_in_flight",
            "\"many\"",
        ),
        (erp("timeout = \"0s\""), "erp.timeout", "\"0s\""),
        (erp("timeout = \"2h\""), "erp.timeout", "\"2h\""),
        (
            erp("commit_horizon = \"0s\""),
            "erp.commit_horizon",
            "\"0s\"",
        ),
        (
            erp("commit_horizon = \"2h\""),
            "erp.commit_horizon",
            "\"2h\"",
        ),
    ];
    for (text, want_key, shown) in cases {
        let (key, message) = key_error(&text);
        assert_eq!(key, want_key, "{message}");
        assert!(
            message.contains(&format!("(got {shown})")),
            "{want_key}: the message must show the value as `(got {shown})`: {message}"
        );
    }
}

#[test]
fn the_bounds_themselves_are_accepted() {
    let text = set("lookback = \"2h\"", "lookback = \"400d\"")
        .replace(
            "listen = \"127.0.0.1:8080\"\n",
            "listen = \"127.0.0.1:8080\"\nretry_budget = \"1h\"\ninbox_limit = 1000000\nmax_sync_days = 3660\n",
        )
        .replace(
            "max_in_flight = 4\n",
            "max_in_flight = 64\ntimeout = \"10m\"\ncommit_horizon = \"1h\"\n",
        );
    let s = load_text(&text, &[]).unwrap();
    assert_eq!(s.daemon.lookback, Duration::from_secs(400 * 86_400));
    assert_eq!(s.daemon.max_sync_days, 3660);
    assert_eq!(s.erp.max_in_flight, InFlight::Fixed(64));
    assert_eq!(s.erp.timeout, Duration::from_secs(600));

    let text = set("lookback = \"2h\"", "lookback = \"0s\"")
        .replace(
            "listen = \"127.0.0.1:8080\"\n",
            "listen = \"127.0.0.1:8080\"\nretry_budget = \"0s\"\ninbox_limit = 1\nmax_sync_days = 1\n",
        )
        .replace(
            "max_in_flight = 4\n",
            "max_in_flight = 1\ntimeout = \"1s\"\ncommit_horizon = \"1s\"\n",
        );
    let s = load_text(&text, &[]).unwrap();
    assert_eq!(s.daemon.lookback, Duration::ZERO);
    assert_eq!(s.daemon.max_sync_days, 1);
    // The default window bound.
    assert_eq!(load_text(GOOD, &[]).unwrap().daemon.max_sync_days, 400);
}

#[test]
fn an_environment_override_out_of_range_names_the_key_and_the_variable() {
    let e = load_text(GOOD, &[("PAYSYNC__ERP__TIMEOUT", "0s")]).unwrap_err();
    let t = e.to_string();
    assert!(
        t.contains("erp.timeout") && t.contains("(got \"0s\")"),
        "{t}"
    );
    assert!(t.contains("PAYSYNC__ERP__TIMEOUT"), "{t}");
}

// ---- secret files ---------------------------------------------------------------------------

fn with_secret_file(path: &Path) -> String {
    set(
        "api_secret = \"s\"",
        &format!("api_secret_file = {:?}", path.display().to_string()),
    )
}

/// Load on another thread: a configuration that blocks the loader (a FIFO nobody writes to)
/// fails the test instead of hanging it.
fn load_within(text: String, limit: std::time::Duration) -> Result<Settings, ConfigError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(load_text(&text, &[]));
    });
    rx.recv_timeout(limit)
        .expect("loading the configuration must not block")
}

#[test]
fn a_secret_file_larger_than_the_limit_is_refused_naming_key_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big-secret");
    std::fs::write(&big, "a".repeat(64 * 1024 + 1)).unwrap();
    let e = load_text(&with_secret_file(&big), &[]).unwrap_err();
    let t = e.to_string();
    assert!(
        matches!(&e, ConfigError::Key { key, .. } if key == "erp.api_secret_file"),
        "{t}"
    );
    assert!(
        t.contains(&big.display().to_string()) && t.contains("64 KiB"),
        "{t}"
    );
    assert!(!t.contains("aaaa"), "{t}");

    // Exactly the limit is fine.
    std::fs::write(&big, "a".repeat(64 * 1024)).unwrap();
    let s = load_text(&with_secret_file(&big), &[]).unwrap();
    assert_eq!(s.erp.api_secret.expose_secret().len(), 64 * 1024);
}

#[test]
fn a_secret_file_that_is_not_a_regular_file_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = load_within(with_secret_file(&fifo), Duration::from_secs(10)).unwrap_err();
    let t = e.to_string();
    assert!(
        t.contains("erp.api_secret_file") && t.contains(fifo.to_str().unwrap()),
        "{t}"
    );
    assert!(t.contains("regular file"), "{t}");
}

#[test]
fn a_secret_file_that_is_not_text_or_not_one_line_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s");
    for (content, word) in [
        (&b"\xff\xfe binary"[..], "UTF-8"),
        (&b"two\nlines\n"[..], "header"),
    ] {
        std::fs::write(&p, content).unwrap();
        let t = load_text(&with_secret_file(&p), &[])
            .unwrap_err()
            .to_string();
        assert!(t.contains("erp.api_secret_file") && t.contains(word), "{t}");
        assert!(!t.contains("lines") && !t.contains("binary"), "{t}");
    }
}

// ---- the ledger must remember -----------------------------------------------------------------

#[test]
fn a_ledger_that_forgets_is_refused() {
    for url in [
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite://?mode=memory",
        "sqlite://paysync.db?mode=memory",
        "sqlite://paysync.db?vfs=memdb",
        "sqlite://file::memory:",
        "sqlite://paysync.db?mode=ro",
        "sqlite://",
        "sqlite:",
        "sqlite://  ",
        "sqlite://paysync.db?mode=rwx",
        "sqlite://paysync.db?journal=wal",
    ] {
        let (key, message) = key_error(&set("sqlite://paysync.db", url));
        assert_eq!(key, "store.url", "{url}: {message}");
        assert!(message.contains("(got "), "{url}: {message}");
    }
    for url in [
        "sqlite://paysync.db",
        "sqlite:///var/lib/paysync/paysync.db",
        "sqlite://paysync.db?mode=rwc",
    ] {
        let s = load_text(&set("sqlite://paysync.db", url), &[]).unwrap();
        assert_eq!(s.store.url, url);
    }
}

// ---- environment overrides and account names ------------------------------------------------

#[test]
fn an_override_for_an_account_that_does_not_exist_is_refused_naming_the_variable() {
    for var in [
        "PAYSYNC__ACCOUNTS__MIAN__ACCESS_TOKEN",
        "PAYSYNC__ACCOUNTS__MAIN__ACCES_TOKEN",
        "PAYSYNC__ACCOUNTS__MAIN",
        "PAYSYNC__ERP__MAX_INFLIGHT",
    ] {
        let e = load_text(GOOD, &[(var, "3")]).expect_err(var);
        let t = e.to_string();
        assert!(t.contains(var), "{var}: {t}");
    }
}

#[test]
fn account_names_that_collide_ignoring_case_are_refused() {
    let second = |name: &str| {
        format!(
            "{GOOD}\n[[accounts]]\nname = \"{name}\"\nsource = \"mobbex\"\napi_key = \"other\"\naccess_token = \"other\"\ncompany = \"Mi Empresa SA\"\nmode_of_payment = \"Mobbex\"\n"
        )
    };
    for name in ["MAIN", "Main"] {
        let (key, message) = key_error(&second(name));
        assert_eq!(key, "accounts[1].name", "{message}");
        assert!(
            message.contains("\"main\"") && message.contains(name),
            "{message}"
        );
    }
    let text = second("my-shop").replace("name = \"main\"", "name = \"my_shop\"");
    let (key, _) = key_error(&text);
    assert_eq!(key, "accounts[1].name");
    assert!(load_text(&second("other"), &[]).is_ok());
}

// ---- no secret in any message ---------------------------------------------------------------

const SECRET: &str = "Zq8v4739201847xK";

#[test]
fn a_syntax_error_says_where_but_never_shows_the_text() {
    // An unterminated string on a secret's line, and a secret pasted on a line of its own.
    let broken = set("api_secret = \"s\"", &format!("api_secret = \"{SECRET}"));
    let t = load_text(&broken, &[]).unwrap_err().to_string();
    assert!(!t.contains(SECRET), "{t}");
    let line = broken.lines().position(|l| l.contains(SECRET)).unwrap() + 1;
    assert!(t.contains(&format!("line {line}")), "{t}");
    assert!(t.contains("erp.api_secret"), "{t}");

    let pasted = set(
        "api_secret = \"s\"",
        &format!("api_secret = \"s\"\n{SECRET}"),
    );
    let t = load_text(&pasted, &[]).unwrap_err().to_string();
    assert!(!t.contains(SECRET) && !t.contains("Zq8v"), "{t}");
}

#[test]
fn a_secret_of_the_wrong_type_is_refused_without_its_value() {
    for (line, key) in [
        ("api_key = \"k\"", "erp.api_key"),
        ("api_secret = \"s\"", "erp.api_secret"),
        ("api_key = \"mk\"", "accounts[0].api_key"),
        ("access_token = \"mt\"", "accounts[0].access_token"),
        ("webhook_token = \"wt\"", "accounts[0].webhook_token"),
    ] {
        let name = line.split(' ').next().unwrap();
        for value in [
            "4739201847",
            "47392018.47",
            "[\"Zq8v4739201847xK\"]",
            "{ v = 4739201847 }",
        ] {
            let (k, message) = key_error(&set(line, &format!("{name} = {value}")));
            assert_eq!(k, key, "{message}");
            assert!(!message.contains("4739201847"), "{key}: {message}");
        }
    }
}

#[test]
fn a_secret_that_cannot_be_sent_in_a_header_is_refused_at_start() {
    for bad in ["abc\\u0007def", "contraseña", "tab\\there"] {
        let (key, message) = key_error(&set(
            "api_secret = \"s\"",
            &format!("api_secret = \"{bad}\""),
        ));
        assert_eq!(key, "erp.api_secret", "{message}");
        assert!(
            !message.contains("abc") && !message.contains("contrase"),
            "{message}"
        );
    }
}

#[test]
fn credentials_in_an_api_url_are_refused_without_being_echoed() {
    for (from, to, key) in [
        (
            "https://erp.example.com",
            "https://admin:Pw0rdXYZ@erp.example.com",
            "erp.url",
        ),
        (
            "https://erp.example.com",
            "ftp://admin:Pw0rdXYZ@erp.example.com",
            "erp.url",
        ),
        (
            "https://erp.example.com",
            "https://admin:Pw0rdXYZ@",
            "erp.url",
        ),
        (
            "https://api.mobbex.com",
            "https://Pw0rdXYZ@api.mobbex.com",
            "accounts[0].api_url",
        ),
    ] {
        let (k, message) = key_error(&set(from, to));
        assert_eq!(k, key, "{to}: {message}");
        assert!(!message.contains("Pw0rdXYZ"), "{message}");
    }
}

#[test]
fn an_unquoted_secret_too_large_for_a_number_is_not_echoed() {
    let text = set("api_secret = \"s\"", "api_secret = 99999999999999999999999");
    let t = load_text(&text, &[]).unwrap_err().to_string();
    assert!(!t.contains("99999"), "{t}");
    assert!(t.contains("erp.api_secret"), "{t}");
}

/// The commented example at the repository's root loads as written, and says every key's range.
#[test]
fn the_example_file_loads() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/sync.toml"));
    let s = load_with_env(path, &HashMap::new()).unwrap();
    assert_eq!(s.daemon.max_sync_days, 400);
    let text = std::fs::read_to_string(path).unwrap();
    for documented in [
        "max_sync_days",
        "0s to 400d",
        "1 to 64",
        "1s to 10m",
        "1s to 1h",
    ] {
        assert!(text.contains(documented), "{documented}");
    }
}

/// `log_level = "verbose"` was taken by the log filter as a target name: nothing was logged.
#[test]
fn a_log_level_that_is_not_one_is_refused() {
    for bad in ["verbose", "inf", "paysync=loud"] {
        let (key, message) = key_error(&daemon(&format!("log_level = \"{bad}\"")));
        assert_eq!(key, "daemon.log_level", "{message}");
        assert!(message.contains(&format!("(got \"{bad}\"")), "{message}");
    }
    for good in ["info", "WARN", "paysync=debug,warn"] {
        let s = load_text(&daemon(&format!("log_level = \"{good}\"")), &[]).unwrap();
        assert_eq!(s.daemon.log_level.as_deref(), Some(good));
    }
}

#[test]
fn listener_limits_have_defaults_and_ranges() {
    let s = load_text(GOOD, &[]).unwrap();
    assert_eq!(s.daemon.header_timeout, Duration::from_secs(10));
    assert_eq!(s.daemon.body_timeout, Duration::from_secs(30));
    assert_eq!(s.daemon.max_connections, 1024);
    let with = |lines: &str| GOOD.replace("[daemon]\n", &format!("[daemon]\n{lines}\n"));
    let s = load_text(
        &with("header_timeout = \"2s\"\nbody_timeout = \"1m\"\nmax_connections = 100"),
        &[("PAYSYNC__DAEMON__MAX_CONNECTIONS", "2000")],
    )
    .unwrap();
    assert_eq!(s.daemon.header_timeout, Duration::from_secs(2));
    assert_eq!(s.daemon.body_timeout, Duration::from_secs(60));
    assert_eq!(s.daemon.max_connections, 2000);
    for (line, want) in [
        ("header_timeout = \"0s\"", "daemon.header_timeout"),
        ("header_timeout = \"500ms\"", "daemon.header_timeout"),
        ("header_timeout = \"10m\"", "daemon.header_timeout"),
        ("body_timeout = \"soon\"", "daemon.body_timeout"),
        ("max_connections = 8", "daemon.max_connections"),
        ("max_connections = 2000000", "daemon.max_connections"),
        ("max_connections = \"many\"", "daemon.max_connections"),
    ] {
        let (key, message) = key_error(&with(line));
        assert_eq!(key, want, "{line}: {message}");
    }
}

#[test]
fn a_postgres_ledger_is_accepted_and_its_password_never_shown() {
    for url in [
        "postgres://paysync@db:5432/paysync",
        "postgresql://paysync:pw@db/paysync?sslmode=require",
    ] {
        let s = load_text(&set("sqlite://paysync.db", url), &[]).unwrap();
        assert_eq!(s.store.url, url);
    }
    let (key, message) = key_error(&set("sqlite://paysync.db", "postgres://paysync:S3cr3t@db"));
    assert_eq!(key, "store.url");
    assert!(message.contains("no database named"), "{message}");
    assert!(!message.contains("S3cr3t"), "{message}");
}

/// The ledger's URL (with its password) may live in a file, like every secret: `url_file`,
/// relative to `$CREDENTIALS_DIRECTORY`. Never both; a problem names the key, not the password.
#[test]
fn the_store_url_may_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let pg = "postgres://paysync:S3cr3t@db:5432/paysync";
    std::fs::write(dir.path().join("ledger-url"), format!("{pg}\n")).unwrap();
    let creds = [("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())];
    let text = set("url = \"sqlite://paysync.db\"", "url_file = \"ledger-url\"");
    let s = load_text(&text, &creds).unwrap();
    assert_eq!(s.store.url, pg);
    let both = set(
        "url = \"sqlite://paysync.db\"",
        "url = \"sqlite://paysync.db\"\nurl_file = \"ledger-url\"",
    );
    let e = load_text(&both, &creds).unwrap_err().to_string();
    assert!(e.contains("not both"), "{e}");
    std::fs::write(
        dir.path().join("ledger-url"),
        "postgres://paysync:S3cr3t@db\n",
    )
    .unwrap();
    let e = load_text(&text, &creds).unwrap_err().to_string();
    assert!(
        e.contains("store.url_file") && e.contains("no database named"),
        "{e}"
    );
    assert!(!e.contains("S3cr3t"), "{e}");
}

#[test]
fn max_in_flight_may_be_auto() {
    for text in ["\"auto\"", "\"AUTO\"", "\" auto \""] {
        let s = load_text(
            &GOOD.replace("max_in_flight = 4", &format!("max_in_flight = {text}")),
            &[],
        )
        .unwrap();
        assert_eq!(s.erp.max_in_flight, InFlight::Auto, "{text}");
    }
    let s = load_text(GOOD, &[("PAYSYNC__ERP__MAX_IN_FLIGHT", "auto")]).unwrap();
    assert_eq!(s.erp.max_in_flight, InFlight::Auto);
    let (key, message) = key_error(&GOOD.replace("max_in_flight = 4", "max_in_flight = \"autp\""));
    assert_eq!(key, "erp.max_in_flight");
    assert!(message.contains("\"auto\""), "{message}");
}

#[test]
fn naming_series_are_a_checked_list() {
    let with = |v: &str| {
        GOOD.replace(
            "include_test = false",
            &format!("include_test = false\nnaming_series = {v}"),
        )
    };
    let s = load_text(&with(r#"["ACC-PAY-.YYYY.-", "ACC-PAY-MBX-.YYYY.-"]"#), &[]).unwrap();
    assert_eq!(
        s.accounts[0].naming_series,
        ["ACC-PAY-.YYYY.-", "ACC-PAY-MBX-.YYYY.-"]
    );
    assert!(
        load_text(GOOD, &[]).unwrap().accounts[0]
            .naming_series
            .is_empty()
    );
    // From the environment: comma-separated.
    let s = load_text(
        GOOD,
        &[(
            "PAYSYNC__ACCOUNTS__MAIN__NAMING_SERIES",
            "S1-.YYYY.-, S2-.YYYY.-",
        )],
    )
    .unwrap();
    assert_eq!(s.accounts[0].naming_series, ["S1-.YYYY.-", "S2-.YYYY.-"]);
    for (bad, says) in [
        (r#"["ACC*PAY-.YYYY.-"]"#, "letters, digits"),
        (r#"["ACC-PAY-.YYYY.- "]"#, "letters, digits"),
        (r#"[""]"#, "letters, digits"),
        (r#"["A-", "A-"]"#, "listed twice"),
        (r#"["1","2","3","4","5","6","7","8","9"]"#, "at most 8"),
        (r#"[1]"#, "list of strings"),
        ("true", "list of strings"),
    ] {
        match load_text(&with(bad), &[]) {
            Err(ConfigError::Key { key, message, .. }) => {
                assert_eq!(key, "accounts[0].naming_series", "{bad}");
                assert!(message.contains(says), "{bad}: {message}");
            }
            Err(e) if says == "list of strings" => {
                assert!(e.to_string().contains("naming_series"), "{bad}: {e}");
                assert!(e.to_string().contains(says), "{bad}: {e}");
            }
            other => panic!("{bad}: expected a key error, got {other:?}"),
        }
    }
}

mod accounts;
