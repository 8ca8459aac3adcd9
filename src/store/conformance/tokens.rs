//! The rotating OAuth refresh tokens on every backend (run by `on_every_backend!` in
//! `conformance.rs`): a first store only where nothing is stored, a replacement only over the
//! version it was read at, accounts apart, the token exactly as written and never in an error.

use std::future::Future;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::at;
use crate::store::{Ledger, StoreError, StoredToken};

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

async fn stored(l: &Arc<dyn Ledger>, account: &str) -> StoredToken {
    l.refresh_token(account)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{account}: a token is stored"))
}

/// Nothing stored: `None`. The first store (expected `None`) lands as version 1; a second first
/// store finds the row and writes nothing.
pub(super) async fn a_first_token_is_stored_once(l: Arc<dyn Ledger>) {
    assert!(l.refresh_token("main").await.unwrap().is_none());
    assert!(
        l.replace_refresh_token("main", None, &secret("TG-1"), "seed-a", at(100))
            .await
            .unwrap()
    );
    let t = stored(&l, "main").await;
    assert_eq!(t.refresh_token.expose_secret(), "TG-1");
    assert_eq!(
        (t.version, t.seed.as_str(), t.updated),
        (1, "seed-a", at(100))
    );
    assert!(
        !l.replace_refresh_token("main", None, &secret("TG-other"), "seed-b", at(200))
            .await
            .unwrap(),
        "a row exists: not a first store"
    );
    let t = stored(&l, "main").await;
    assert_eq!(t.refresh_token.expose_secret(), "TG-1");
    assert_eq!(
        (t.version, t.seed.as_str(), t.updated),
        (1, "seed-a", at(100))
    );
}

/// A replacement over the version read lands (version + 1, the token, seed and time as
/// written); one over a stale version, or over a version not reached yet, writes nothing.
pub(super) async fn a_token_is_replaced_only_over_the_version_it_was_read_at(l: Arc<dyn Ledger>) {
    // Nothing stored: no version to replace.
    assert!(
        !l.replace_refresh_token("main", Some(1), &secret("TG-x"), "s", at(1))
            .await
            .unwrap()
    );
    assert!(l.refresh_token("main").await.unwrap().is_none());
    assert!(
        l.replace_refresh_token("main", None, &secret("TG-1"), "seed-a", at(100))
            .await
            .unwrap()
    );
    assert!(
        l.replace_refresh_token("main", Some(1), &secret("TG-2"), "seed-a", at(200))
            .await
            .unwrap()
    );
    let t = stored(&l, "main").await;
    assert_eq!(t.refresh_token.expose_secret(), "TG-2");
    assert_eq!(
        (t.version, t.seed.as_str(), t.updated),
        (2, "seed-a", at(200))
    );
    // The operator wrote a new token in sync.toml: a new seed, over the same chain.
    assert!(
        l.replace_refresh_token("main", Some(2), &secret("TG-3"), "seed-b", at(300))
            .await
            .unwrap()
    );
    let t = stored(&l, "main").await;
    assert_eq!(t.refresh_token.expose_secret(), "TG-3");
    assert_eq!(
        (t.version, t.seed.as_str(), t.updated),
        (3, "seed-b", at(300))
    );
    // Stale (read at 1 or 2), or ahead: the newer token stays.
    for stale in [1, 2, 4] {
        assert!(
            !l.replace_refresh_token("main", Some(stale), &secret("TG-stale"), "seed-a", at(400))
                .await
                .unwrap(),
            "version {stale}"
        );
    }
    assert!(
        !l.replace_refresh_token("main", None, &secret("TG-stale"), "seed-a", at(400))
            .await
            .unwrap()
    );
    let t = stored(&l, "main").await;
    assert_eq!(t.refresh_token.expose_secret(), "TG-3");
    assert_eq!(
        (t.version, t.seed.as_str(), t.updated),
        (3, "seed-b", at(300))
    );
}

/// Two processes refreshed from one token and store at once, from the same version: exactly one
/// lands, and the stored token is its. Likewise two first stores.
pub(super) async fn concurrent_replaces_from_one_version_land_once(l: Arc<dyn Ledger>) {
    let (fa, fb) = (secret("TG-first-a"), secret("TG-first-b"));
    let (a, b) = tokio::join!(
        l.replace_refresh_token("main", None, &fa, "s", at(1)),
        l.replace_refresh_token("main", None, &fb, "s", at(1)),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a ^ b, "one first store: {a} {b}");
    let t = stored(&l, "main").await;
    let winner = if a { "TG-first-a" } else { "TG-first-b" };
    assert_eq!((t.refresh_token.expose_secret(), t.version), (winner, 1));
    for round in 1..=10_i64 {
        let ta = secret(&format!("TG-{round}-a"));
        let tb = secret(&format!("TG-{round}-b"));
        let (a, b) = tokio::join!(
            l.replace_refresh_token("main", Some(round), &ta, "s", at(round * 10)),
            l.replace_refresh_token("main", Some(round), &tb, "s", at(round * 10 + 1)),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a ^ b, "round {round}: exactly one lands ({a} {b})");
        let t = stored(&l, "main").await;
        let (winner, when) = if a {
            (&ta, at(round * 10))
        } else {
            (&tb, at(round * 10 + 1))
        };
        assert_eq!(
            (t.refresh_token.expose_secret(), t.version, t.updated),
            (winner.expose_secret(), round + 1, when),
            "round {round}"
        );
    }
}

/// One account's token, version and seed are its own.
pub(super) async fn accounts_keep_their_own_tokens(l: Arc<dyn Ledger>) {
    for (account, token) in [
        ("main", "TG-main"),
        ("other", "TG-other"),
        ("Main", "TG-Main"),
    ] {
        assert!(
            l.replace_refresh_token(account, None, &secret(token), account, at(1))
                .await
                .unwrap()
        );
    }
    assert!(
        l.replace_refresh_token("main", Some(1), &secret("TG-main-2"), "main", at(2))
            .await
            .unwrap()
    );
    // "other" is still at 1; replacing it over 2 (main's version) fails.
    assert!(
        !l.replace_refresh_token("other", Some(2), &secret("TG-x"), "x", at(3))
            .await
            .unwrap()
    );
    for (account, token, version) in [
        ("main", "TG-main-2", 2),
        ("other", "TG-other", 1),
        ("Main", "TG-Main", 1),
    ] {
        let t = stored(&l, account).await;
        assert_eq!(
            (t.refresh_token.expose_secret(), t.version, t.seed.as_str()),
            (token, version, account),
            "{account}"
        );
    }
    assert!(l.refresh_token("nobody").await.unwrap().is_none());
}

/// A token (and a seed) with quotes, backslashes, SQL, whitespace and non-ASCII comes back
/// byte for byte.
pub(super) async fn odd_tokens_round_trip_exactly(l: Arc<dyn Ledger>) {
    let odd = "TG-'\"; DROP TABLE oauth_tokens; -- \\ %_ $1 ?1 \t\r\n  ñ€𝄞 \u{feff}/*x*/ ";
    let long = format!("TG-{}", "x9/+=".repeat(2_000));
    assert!(
        l.replace_refresh_token("main", None, &secret(odd), odd, at(1))
            .await
            .unwrap()
    );
    let t = stored(&l, "main").await;
    assert_eq!(t.refresh_token.expose_secret(), odd);
    assert_eq!(t.seed, odd);
    assert!(
        l.replace_refresh_token("main", Some(1), &secret(&long), "s", at(2))
            .await
            .unwrap()
    );
    assert_eq!(stored(&l, "main").await.refresh_token.expose_secret(), long);
}

/// What a failed statement says names no token: with the table gone (the statement fails in
/// the database) and with the pool closed. Needs the backend's pool, so it is run below, once
/// per backend, rather than through `on_every_backend!`.
async fn a_failed_statement_never_shows_the_token<D, C>(
    l: Arc<dyn Ledger>,
    drop_table: impl FnOnce() -> D,
    close: impl FnOnce() -> C,
) where
    D: Future<Output = ()>,
    C: Future<Output = ()>,
{
    const TOKEN: &str = "TG-do-not-show-me-0123456789";
    assert!(
        l.replace_refresh_token("main", None, &secret(TOKEN), "seed", at(1))
            .await
            .unwrap()
    );
    let hides_the_token = |e: &StoreError| {
        let (shown, debug) = (e.to_string(), format!("{e:?}"));
        assert!(!shown.contains(TOKEN) && !debug.contains(TOKEN), "{shown}");
        assert!(!shown.contains("do-not-show") && !debug.contains("do-not-show"));
    };
    drop_table().await;
    for expected in [None, Some(1)] {
        let e = l
            .replace_refresh_token("main", expected, &secret(TOKEN), "seed", at(2))
            .await
            .expect_err("no table");
        hides_the_token(&e);
    }
    close().await;
    for expected in [None, Some(1)] {
        let e = l
            .replace_refresh_token("main", expected, &secret(TOKEN), "seed", at(2))
            .await
            .expect_err("pool closed");
        hides_the_token(&e);
    }
    assert!(l.refresh_token("main").await.is_err());
}

mod failed_statements {
    use std::sync::Arc;

    use crate::store::postgres::PgLedger;
    use crate::store::postgres::scratch::ScratchDb;
    use crate::store::sqlite::SqliteLedger;

    #[tokio::test]
    async fn sqlite_errors_never_show_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("l.db").display());
        let ledger = SqliteLedger::open(&url).await.unwrap();
        let pool = ledger.pool().clone();
        super::a_failed_statement_never_shows_the_token(
            Arc::new(ledger),
            || {
                let pool = pool.clone();
                async move {
                    sqlx::query("DROP TABLE oauth_tokens")
                        .execute(&pool)
                        .await
                        .unwrap();
                }
            },
            || pool.close(),
        )
        .await;
    }

    #[tokio::test]
    async fn postgres_errors_never_show_the_token() {
        let Some(db) = ScratchDb::create("postgres_errors_never_show_the_token").await else {
            return;
        };
        let ledger = PgLedger::open(&db.url).await.unwrap();
        let pool = ledger.pool().clone();
        super::a_failed_statement_never_shows_the_token(
            Arc::new(ledger),
            || {
                let pool = pool.clone();
                async move {
                    sqlx::query("DROP TABLE oauth_tokens")
                        .execute(&pool)
                        .await
                        .unwrap();
                }
            },
            || pool.close(),
        )
        .await;
        // The pool closed before its database is dropped.
        drop(pool);
        drop(db);
    }
}
