//! OAuth access tokens that survive rotation: [`OAuthTokens`], the [`AccessTokens`] of an account
//! configured with `client_id`, `client_secret` and `refresh_token`.
//!
//! Mercado Pago and MercadoLibre refresh tokens are single-use: every refresh returns a new one
//! and kills the one sent. So a refresh here is, in this order and never otherwise:
//!
//! 1. one at a time per account — within the process (a mutex) and across processes sharing the
//!    ledger (a claim `oauth` on [`Leases`], for [`CLAIM_TTL`]);
//! 2. the refresh token read from the ledger (the configured one only when the ledger has none,
//!    or when the configured one changed since the stored chain began: the seller authorized
//!    again and the operator wrote the new token into `sync.toml`);
//! 3. one call to the token endpoint;
//! 4. the new refresh token written to the ledger (compare-and-set on the version read in 2),
//!    committed — **before** the new access token is handed to any call. If the ledger cannot
//!    take it, the grant is kept in memory and offered to the ledger again at the next call; its
//!    access token is not used until it is stored.
//!
//! A refresh happens when the access token is within [`EARLY`] of its expiry (half its life if
//! that is shorter; or there is none yet: a start), and once after a 401 for the token that got
//! it. A refused refresh token is checked against the ledger once more: if another instance
//! stored a newer one meanwhile (this one's claim had lapsed), that one is tried. `invalid_grant`,
//! `invalid_client` or another refusal (`invalid_scope`) stop the account: every later call fails at once with the reason, and
//! [`AccessTokens::stopped`] says so (for `/healthz`) until the process restarts with a new
//! `refresh_token` in the configuration. No token or secret is ever logged or put in an error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tracing::{info, warn};
use url::Url;

use super::oauth::{OAuthError, TokenGrant, refresh_grant};
use super::{API, AccessTokens};
use crate::clock::Clock;
use crate::source::SourceError;
use crate::store::{Ledger, StoreError};

/// Refresh this long before the access token expires (Mercado Libre's live 6 hours).
pub const EARLY: Duration = Duration::from_secs(10 * 60);
/// How long one process may hold the refresh claim: past the token endpoint's timeout and the
/// ledger write, so a holder that dies mid-refresh frees it soon.
pub const CLAIM_TTL: Duration = Duration::from_secs(90);
/// How long a refresh waits for another process's refresh of the same account.
const CLAIM_WAIT: Duration = Duration::from_secs(60);
/// The claim's key among the account's claims (orders use `order:<name>`).
const CLAIM_KEY: &str = "oauth";

/// The application's keys and the configured (first, or newly authorized) refresh token.
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: SecretString,
    pub configured_refresh_token: SecretString,
    pub token_url: Url,
}

pub struct OAuthTokens {
    account: String,
    app: OAuthApp,
    http: reqwest::Client,
    ledger: Arc<dyn Ledger>,
    clock: Arc<dyn Clock>,
    holder: String,
    state: tokio::sync::Mutex<State>,
    /// Why the account is stopped (`invalid_grant`, `invalid_client`), readable without the
    /// async lock (`/healthz`).
    stopped: Mutex<Option<String>>,
}

#[derive(Default)]
struct State {
    access: Option<Access>,
    /// A grant whose refresh token the ledger has not taken yet, and the version it replaces.
    unstored: Option<(TokenGrant, Option<i64>, String)>,
}

struct Access {
    token: SecretString,
    expires: Timestamp,
    /// Refresh this long before `expires`: [`EARLY`], or half the token's life if that is
    /// shorter (a token of a few minutes would otherwise be refreshed at every call).
    margin: SignedDuration,
}

impl OAuthTokens {
    pub fn new(
        account: &str,
        app: OAuthApp,
        ledger: Arc<dyn Ledger>,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Result<OAuthTokens, SourceError> {
        let http = super::oauth::token_client(&app.token_url, timeout)?;
        Ok(OAuthTokens {
            account: account.to_string(),
            app,
            http,
            ledger,
            clock,
            holder: crate::claims::holder_name(),
            state: tokio::sync::Mutex::new(State::default()),
            stopped: Mutex::new(None),
        })
    }

    fn fail(&self, message: String) -> SourceError {
        SourceError::Unauthorized {
            api: API,
            status: 401,
            message,
        }
    }

    fn stop(&self, why: String) -> SourceError {
        warn!(account = %self.account, reason = %why, "Mercado Pago account stopped: its OAuth authorization is gone");
        *self.stopped.lock().expect("poisoned") = Some(why.clone());
        self.fail(why)
    }

    fn stopped_reason(&self) -> Option<String> {
        self.stopped.lock().expect("poisoned").clone()
    }

    /// A usable access token from `state`, refreshing when `force` or when it is near expiry.
    async fn token(&self, state: &mut State, force: bool) -> Result<SecretString, SourceError> {
        if let Some(why) = self.stopped_reason() {
            return Err(self.fail(why));
        }
        // A grant the ledger did not take yet comes first: until it is stored, its access
        // token is not used and no other refresh may start (the stored token is dead).
        if let Some((grant, expected, seed)) = state.unstored.take() {
            match self.store(&grant, expected, &seed).await {
                Ok(()) => {
                    self.adopt(state, grant);
                }
                Err(e) => {
                    state.unstored = Some((grant, expected, seed));
                    return Err(e);
                }
            }
        }
        let now = self.clock.now();
        let fresh = state
            .access
            .as_ref()
            .filter(|a| !force && now.checked_add(a.margin).is_ok_and(|soon| soon < a.expires));
        if let Some(a) = fresh {
            return Ok(a.token.clone());
        }
        self.refresh(state).await
    }

    /// Steps 1–4 of the module comment, under the cross-process claim.
    async fn refresh(&self, state: &mut State) -> Result<SecretString, SourceError> {
        self.claim().await?;
        let result = self.refresh_claimed(state).await;
        if let Err(e) = self
            .ledger
            .release_claims(&self.account, &[CLAIM_KEY.to_string()], &self.holder)
            .await
        {
            // It lapses by itself after CLAIM_TTL.
            warn!(account = %self.account, error = %e, "could not release the OAuth refresh claim");
        }
        result
    }

    async fn refresh_claimed(&self, state: &mut State) -> Result<SecretString, SourceError> {
        match self.grant_once(state).await {
            // Refused: unless the ledger holds another token than the one just sent (another
            // instance rotated it while this one's claim had lapsed), the chain is dead.
            Err(Refusal::Spent(version, why)) => {
                let now_stored = self
                    .ledger
                    .refresh_token(&self.account)
                    .await
                    .map_err(|e| ledger_error(&e))?
                    .map(|s| s.version);
                if now_stored != version {
                    info!(account = %self.account, "the refresh token was refused but another instance stored a newer one; trying it");
                    return match self.grant_once(state).await {
                        Ok(t) => Ok(t),
                        Err(Refusal::Spent(_, why)) => Err(self.stop(why)),
                        Err(Refusal::Other(e)) => Err(e),
                    };
                }
                Err(self.stop(why))
            }
            Err(Refusal::Other(e)) => Err(e),
            Ok(t) => Ok(t),
        }
    }

    /// One refresh from the stored token (steps 2–4). `Spent`: the server refused that token,
    /// with the version it was read at.
    async fn grant_once(&self, state: &mut State) -> Result<SecretString, Refusal> {
        let seed = fingerprint(&self.app.configured_refresh_token);
        let stored = self
            .ledger
            .refresh_token(&self.account)
            .await
            .map_err(|e| Refusal::Other(ledger_error(&e)))?;
        let (refresh_token, expected) = match &stored {
            Some(s) if s.seed == seed => (s.refresh_token.clone(), Some(s.version)),
            Some(s) => {
                info!(account = %self.account, "the configured refresh_token is new: it replaces the stored one");
                (self.app.configured_refresh_token.clone(), Some(s.version))
            }
            None => (self.app.configured_refresh_token.clone(), None),
        };
        let grant = match refresh_grant(
            &self.http,
            &self.app.token_url,
            &self.app.client_id,
            &self.app.client_secret,
            &refresh_token,
        )
        .await
        {
            Ok(g) => g,
            Err(OAuthError::InvalidGrant(m)) => {
                return Err(Refusal::Spent(
                    expected,
                    format!(
                        "the refresh token was refused (invalid_grant: {m}); the seller must authorize the application again and the new refresh_token go into sync.toml"
                    ),
                ));
            }
            Err(OAuthError::InvalidClient(m)) => {
                return Err(Refusal::Other(self.stop(format!(
                    "the application's client_id or client_secret was refused (invalid_client: {m})"
                ))));
            }
            // Another refusal with the server's code (`invalid_scope`: no `offline_access`) is
            // as final for this configuration: the same request would get the same answer.
            Err(e @ OAuthError::Refused { .. }) => {
                return Err(Refusal::Other(
                    self.stop(format!("the token endpoint refused the refresh: {e}")),
                ));
            }
            Err(e) => {
                warn!(account = %self.account, error = %e, "OAuth refresh failed; tried again at the next call");
                return Err(Refusal::Other(SourceError::Transport {
                    api: API,
                    message: format!("OAuth refresh: {e}"),
                }));
            }
        };
        info!(account = %self.account, expires_in_s = grant.expires_in.as_secs(), "OAuth access token refreshed");
        if let Err(e) = self.store(&grant, expected, &seed).await {
            state.unstored = Some((grant, expected, seed));
            return Err(Refusal::Other(e));
        }
        Ok(self.adopt(state, grant))
    }

    /// Write the grant's refresh token over version `expected`. Lost the race (another process
    /// stored a token since — only when this one's claim lapsed): this grant is the newest the
    /// server gave, so it goes over whatever is there now.
    async fn store(
        &self,
        grant: &TokenGrant,
        expected: Option<i64>,
        seed: &str,
    ) -> Result<(), SourceError> {
        let now = self.clock.now();
        let written = self
            .ledger
            .replace_refresh_token(&self.account, expected, &grant.refresh_token, seed, now)
            .await
            .map_err(|e| ledger_error(&e))?;
        if written {
            return Ok(());
        }
        warn!(account = %self.account, "the stored refresh token changed during a refresh (a lapsed claim?); storing the newest grant");
        let current = self
            .ledger
            .refresh_token(&self.account)
            .await
            .map_err(|e| ledger_error(&e))?
            .map(|s| s.version);
        match self
            .ledger
            .replace_refresh_token(&self.account, current, &grant.refresh_token, seed, now)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(SourceError::Transport {
                api: API,
                message: "the stored refresh token keeps changing; tried again at the next call"
                    .into(),
            }),
            Err(e) => Err(ledger_error(&e)),
        }
    }

    fn adopt(&self, state: &mut State, grant: TokenGrant) -> SecretString {
        let now = self.clock.now();
        let lifetime = SignedDuration::try_from(grant.expires_in).unwrap_or(SignedDuration::ZERO);
        let expires = now.checked_add(lifetime).unwrap_or(Timestamp::MAX);
        let early = SignedDuration::try_from(EARLY).unwrap_or(SignedDuration::ZERO);
        state.access = Some(Access {
            token: grant.access_token.clone(),
            expires,
            margin: early.min(lifetime / 2),
        });
        grant.access_token
    }

    /// Take the account's refresh claim, waiting up to [`CLAIM_WAIT`] for another holder.
    async fn claim(&self) -> Result<(), SourceError> {
        let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
        loop {
            let now = self.clock.now();
            let taken = self
                .ledger
                .try_claim(&self.account, CLAIM_KEY, &self.holder, now, CLAIM_TTL)
                .await
                .map_err(|e| ledger_error(&e))?;
            if taken.is_some() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SourceError::Transport {
                    api: API,
                    message: "another instance has been refreshing this account's OAuth token for a minute; tried again at the next call".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[async_trait]
impl AccessTokens for OAuthTokens {
    async fn current(&self) -> Result<SecretString, SourceError> {
        let mut state = self.state.lock().await;
        self.token(&mut state, false).await
    }

    async fn after_unauthorized(
        &self,
        rejected: &SecretString,
    ) -> Result<SecretString, SourceError> {
        let mut state = self.state.lock().await;
        // Another call refreshed while this one waited: its token is new, use it.
        let already_new = state
            .access
            .as_ref()
            .is_some_and(|a| a.token.expose_secret() != rejected.expose_secret());
        self.token(&mut state, !already_new).await
    }

    fn stopped(&self) -> Option<String> {
        self.stopped_reason()
    }
}

/// Why one refresh gave no token.
enum Refusal {
    /// The server refused the token read at this version (`invalid_grant`), with the reason.
    Spent(Option<i64>, String),
    Other(SourceError),
}

/// What the ledger keeps of the configured token: a digest, so a changed configuration is told
/// apart without storing the configured secret twice.
fn fingerprint(token: &SecretString) -> String {
    let digest = Sha256::digest(token.expose_secret().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn ledger_error(e: &StoreError) -> SourceError {
    SourceError::Transport {
        api: API,
        message: format!("the ledger could not keep the OAuth refresh token: {e}"),
    }
}
