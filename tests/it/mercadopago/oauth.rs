//! OAuth that survives rotation: refresh tokens are single-use, so every one the server rotates
//! to must be in the ledger before its access token is used — under load, across a restart and
//! with two instances on one PostgreSQL — and a refused one stops the account, visibly.

use std::time::Duration;

use jiff::civil::date;
use paysync::domain::DecisionKind;
use paysync_sim::SimOptions;
use secrecy::ExposeSecret;

use super::{MP, assert_mp_books_exactly, sample, sync_mp};
use crate::helpers::TestEnv;

/// Each Mercado Pago call takes 20 ms, so a sync lasts long enough for [`under_expiry`].
fn rotating() -> SimOptions {
    SimOptions {
        faults: paysync_sim::Faults {
            mp_latency: Duration::from_millis(20),
            ..paysync_sim::Faults::default()
        },
        ..SimOptions::default()
    }
}

/// `work`, while the server revokes, every 100 ms, every access token it granted 200 ms ago or
/// more: the calls in flight get 401, paysync refreshes once for them (rotating the refresh
/// token), and so on — rotations during one sync, under concurrent calls. A token just granted
/// is not revoked: a call retried after its refresh must not meet a second 401 because the
/// machine is slow (paysync refreshes once per 401, as the issue asks).
async fn under_expiry<T>(
    sim: &paysync_sim::Simulator,
    work: impl std::future::Future<Output = T>,
) -> T {
    let expirer = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            sim.expire_mp_access_tokens_older_than(Duration::from_millis(200));
        }
    };
    tokio::select! {
        done = work => done,
        _ = expirer => unreachable!("the expirer never ends"),
    }
}

async fn stored(env: &TestEnv, app: &paysync::app::App) -> String {
    let _ = env;
    app.ledger
        .refresh_token("mp")
        .await
        .unwrap()
        .expect("a refresh token is stored")
        .refresh_token
        .expose_secret()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rotate_under_load_and_the_live_refresh_token_is_always_the_stored_one() {
    let env = TestEnv::start_mercadopago(rotating(), true, "", None).await;
    let expected = sample(&env.sim, 150, 3);
    let before = env.sim.entry_names();
    let app = env.app().await;
    let first_grant = env.sim.mp_token_grants();
    let s = under_expiry(
        &env.sim,
        sync_mp(&app, date(2026, 10, 1), date(2026, 10, 31)),
    )
    .await;
    assert_eq!(s.errors(), 0, "{s}");
    assert_mp_books_exactly(&env.sim, &expected, &before);
    let grants = env.sim.mp_token_grants() - first_grant;
    assert!(
        grants >= 2,
        "the token rotated during the sync, more than once: {grants} grants"
    );
    // The token the server will take next is the one the ledger holds: no rotation was lost.
    assert_eq!(stored(&env, &app).await, env.sim.mp_refresh_token());
    let stored_row = app.ledger.refresh_token("mp").await.unwrap().unwrap();
    assert_eq!(
        stored_row.version as u64, grants,
        "one stored version per grant"
    );

    // Tokens the server invalidates mid-run (expired early): a 401 refreshes once, and goes on.
    env.sim.expire_mp_access_tokens();
    let again = sync_mp(&app, date(2026, 10, 1), date(2026, 10, 31)).await;
    assert_eq!(again.errors(), 0, "{again}");
    assert_eq!(stored(&env, &app).await, env.sim.mp_refresh_token());
}

#[tokio::test]
async fn after_a_restart_the_stored_token_is_used_not_the_configured_one() {
    let env = TestEnv::start_mercadopago(rotating(), true, "", None).await;
    let configured = env.sim.mp_refresh_token();
    env.sim.add_sales_order(crate::helpers::order(
        "SAL-ORD-2026-00001",
        "Cliente Uno",
        "100",
    ));
    let mut p = paysync_sim::SimMpPayment::approved(
        1001,
        super::d("100"),
        super::ts("2026-11-03T10:00:00Z"),
    );
    p.external_reference = Some("SAL-ORD-2026-00001".into());
    env.sim.add_mp_payment(p);
    {
        let app = env.app().await;
        let s = sync_mp(&app, date(2026, 11, 1), date(2026, 11, 5)).await;
        assert_eq!(s.get(DecisionKind::BookedInitial), 1, "{s}");
    }
    // The configured token is dead now (it was used once); a new process must not send it.
    assert_ne!(env.sim.mp_refresh_token(), configured);
    let requests_before = env.sim.mp_token_requests();
    let app = env.app().await;
    let s = sync_mp(&app, date(2026, 11, 1), date(2026, 11, 5)).await;
    assert_eq!(s.errors(), 0, "{s}");
    assert_eq!(s.get(DecisionKind::AlreadyLoaded), 1, "{s}");
    assert!(app.accounts[MP].source.stopped().is_none());
    assert!(
        env.sim.mp_token_requests() > requests_before,
        "the new process refreshed"
    );
    assert_eq!(
        env.sim.mp_token_requests(),
        env.sim.mp_token_grants(),
        "no refresh was refused: none sent a spent token"
    );
    assert_eq!(stored(&env, &app).await, env.sim.mp_refresh_token());
}

#[tokio::test]
async fn a_refused_refresh_token_stops_the_account_with_a_clear_reason() {
    let env = TestEnv::start_mercadopago(SimOptions::default(), true, "", None).await;
    // Someone else spent the configured token (another tool, a copy of the configuration):
    // the server refuses it from now on.
    let opts = env.sim.options();
    let spent = reqwest::Client::new()
        .post(format!("{}/oauth/token", env.sim.mercadopago_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "refresh_token")
                .append_pair("client_id", &opts.mp_client_id)
                .append_pair("client_secret", &opts.mp_client_secret)
                .append_pair("refresh_token", &opts.mp_refresh_token)
                .finish(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(spent.status(), 200);
    let app = env.app().await;
    let window = paysync::app::created_window(
        &app.settings.daemon.timezone,
        date(2026, 11, 1),
        date(2026, 11, 5),
    );
    let err = app
        .engine
        .sync_window(&app.accounts[MP], window, &Default::default())
        .await
        .expect_err("no token, no listing");
    let text = err.1.to_string();
    assert!(text.contains("invalid_grant"), "{text}");
    assert!(
        !text.contains(&opts.mp_refresh_token),
        "no token in errors: {text}"
    );
    let why = app.accounts[MP].source.stopped().expect("stopped");
    assert!(why.contains("authorize the application again"), "{why}");
    // Stopped means stopped: no more refresh attempts with a dead token.
    let requests = env.sim.mp_token_requests();
    let _ = app
        .engine
        .sync_window(&app.accounts[MP], window, &Default::default())
        .await;
    assert_eq!(env.sim.mp_token_requests(), requests);
}

/// Two instances on one PostgreSQL ledger, each rotating the account's token many times while
/// both sync: refreshes take turns through the ledger's claim, so neither ever sends a token the
/// other already spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgresql_share_the_rotation() {
    let Some(db) = paysync::store::postgres::scratch::ScratchDb::create("mp_oauth_two").await
    else {
        eprintln!("skipped: PAYSYNC_TEST_POSTGRES_URL is not set");
        return;
    };
    let env = TestEnv::start_mercadopago(rotating(), true, "", Some(&db.url)).await;
    let expected = sample(&env.sim, 150, 9);
    let before = env.sim.entry_names();
    let a = env.app().await;
    let b = env.app().await;
    let (sa, sb) = under_expiry(&env.sim, async {
        tokio::join!(
            sync_mp(&a, date(2026, 10, 1), date(2026, 10, 31)),
            sync_mp(&b, date(2026, 10, 1), date(2026, 10, 31)),
        )
    })
    .await;
    assert_eq!(sa.errors() + sb.errors(), 0, "{sa} / {sb}");
    assert!(a.accounts[MP].source.stopped().is_none());
    assert!(b.accounts[MP].source.stopped().is_none());
    assert_mp_books_exactly(&env.sim, &expected, &before);
    assert!(
        env.sim.mp_token_grants() >= 3,
        "both instances took a token, and it rotated during their syncs"
    );
    assert_eq!(stored(&env, &a).await, env.sim.mp_refresh_token());
    drop((a, b));
    drop(env);
    drop(db);
}

/// A whole `paysync sync` of the real binary at trace level, its tokens rotating: no access
/// token, refresh token or client secret appears in its output, and the ledger holds only the
/// live refresh token (it must: it is single-use), never an access token or the client secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_reaches_the_logs() {
    let env = TestEnv::start_mercadopago(rotating(), true, "", None).await;
    sample(&env.sim, 40, 21);
    let opts = env.sim.options();
    let configured = env.sim.mp_refresh_token();
    let cfg = env.config_path.to_str().unwrap().to_string();
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_paysync"))
            .args([
                "--config",
                &cfg,
                "--log-format",
                "json",
                "sync",
                "--since",
                "2026-10-01",
                "--until",
                "2026-10-31",
            ])
            .env("RUST_LOG", "trace")
            .output()
            .unwrap()
    });
    let out = under_expiry(&env.sim, run).await.unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        logs.contains("OAuth access token refreshed"),
        "{logs:.3000}"
    );
    assert!(
        env.sim.mp_token_grants() >= 2,
        "the token rotated during the run"
    );
    let live_refresh = env.sim.mp_refresh_token();
    let mut secrets = env.sim.mp_valid_access_tokens();
    secrets.extend([
        opts.mp_client_secret.clone(),
        configured,
        live_refresh.clone(),
    ]);
    for s in &secrets {
        assert!(s.len() >= 8, "{s:?} too short to search for");
        assert!(
            !logs.contains(s.as_str()),
            "a token or secret reached the logs"
        );
    }
    let ledger = env.ledger_contents().await;
    assert!(
        ledger.contains(&live_refresh),
        "the live refresh token is kept"
    );
    for s in env
        .sim
        .mp_valid_access_tokens()
        .iter()
        .chain([&opts.mp_client_secret])
    {
        assert!(
            !ledger.contains(s.as_str()),
            "an access token or the secret reached the ledger"
        );
    }
}

/// `kill -9` of the real binary syncing an OAuth account, several times: every new process
/// starts from the refresh token the previous one stored (the configured one is spent after the
/// first), and after the last run every paid payment is booked exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_syncs_books_exactly_once_and_never_loses_the_token() {
    let opts = SimOptions {
        faults: paysync_sim::Faults {
            erp_write_latency: Duration::from_millis(8),
            ..paysync_sim::Faults::default()
        },
        ..SimOptions::default()
    };
    let env = TestEnv::start_mercadopago(opts, true, "", None).await;
    let expected = sample(&env.sim, 600, 31);
    let before = env.sim.entry_names();
    let cfg = env.config_path.to_str().unwrap().to_string();
    let sync = move || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_paysync"));
        c.args([
            "--config",
            &cfg,
            "sync",
            "--account",
            "mp",
            "--since",
            "2026-10-01",
            "--until",
            "2026-10-31",
        ])
        .env("RUST_LOG", "warn");
        c
    };
    let mut writes = env.sim.subscribe_writes();
    let start = *writes.borrow();
    for threshold in [40u64, 100, 170] {
        let mut child = sync()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let reached = tokio::time::timeout(
            Duration::from_secs(60),
            writes.wait_for(|n| *n >= start + threshold),
        )
        .await;
        assert!(
            reached.is_ok(),
            "the sync stalled before {threshold} entries"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let last = tokio::task::spawn_blocking(move || sync().output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&last.stderr);
    assert!(!stderr.contains("invalid_grant"), "{stderr}");
    assert_eq!(
        env.sim.mp_token_requests(),
        env.sim.mp_token_grants(),
        "no process sent a spent refresh token"
    );
    assert!(
        env.sim.mp_token_grants() >= 4,
        "each process refreshed once at least"
    );
    assert_mp_books_exactly(&env.sim, &expected, &before);
    let app = env.app().await;
    assert_eq!(stored(&env, &app).await, env.sim.mp_refresh_token());
}

/// What a token endpoint answers while it is overloaded (429, 503) does not stop the account —
/// the refresh token was not spent — and the next call refreshes; a 400 that is neither
/// `invalid_grant` nor `invalid_client` (`invalid_scope`: the application lacks
/// `offline_access`) does: the same request would get the same answer.
#[tokio::test]
async fn passing_token_errors_are_retried_and_a_refusal_stops_the_account() {
    use paysync_sim::{ErrorBody, NextAnswer, SimApi};
    let env = TestEnv::start_mercadopago(SimOptions::default(), true, "", None).await;
    env.sim.fail_next(
        SimApi::MercadoPagoToken,
        vec![
            NextAnswer::TooManyRequests(Some(1)),
            NextAnswer::Status(503, ErrorBody::Json),
        ],
    );
    let app = env.app().await;
    let source = &app.accounts[MP].source;
    for _ in 0..2 {
        let e = source.check().await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(source.stopped().is_none());
    }
    source.check().await.expect("the third refresh is granted");
    assert_eq!(stored(&env, &app).await, env.sim.mp_refresh_token());

    // Refused for another reason than the token or the client.
    let env = TestEnv::start_mercadopago(SimOptions::default(), true, "", None).await;
    env.sim.fail_next(
        SimApi::MercadoPagoToken,
        vec![NextAnswer::Status(400, ErrorBody::Json)],
    );
    let app = env.app().await;
    let e = app.accounts[MP].source.check().await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    let why = app.accounts[MP].source.stopped().expect("stopped");
    assert!(why.contains("refused"), "{why}");
}
