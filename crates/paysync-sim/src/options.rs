//! What a simulator is started with: the credentials it accepts, the seed of its fault RNG, and
//! the faults it injects ([`Faults`], also changed on a running simulator by
//! `Simulator::set_faults`).
//!
//! Mercado Pago's credentials: a static seller access token that never expires (as an app's own
//! "production credentials" token), the OAuth client and the initial refresh token the token
//! endpoint rotates (`mercadopago/oauth.rs`).

use std::time::Duration;

/// Credentials and faults of a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub erp_api_key: String,
    pub erp_api_secret: String,
    pub mobbex_api_key: String,
    pub mobbex_access_token: String,
    /// A Mercado Pago access token valid until `Simulator::revoke_mp_static_token` (never expires).
    pub mp_access_token: String,
    pub mp_client_id: String,
    pub mp_client_secret: String,
    /// The refresh token valid at start; each refresh kills the one sent and issues a new one.
    pub mp_refresh_token: String,
    /// The life of the access tokens `POST /oauth/token` grants (its `expires_in`).
    pub mp_access_ttl: Duration,
    /// The seller (MercadoLibre user id) every token belongs to: `/users/me`, `collector_id`.
    pub mp_seller_id: u64,
    /// The deepest row a search may reach (`offset + limit`), past which it answers 400 with
    /// cause 1000 "Number of rows exceeded the limits".
    pub mp_max_rows: u64,
    pub faults: Faults,
    /// Seed of the deterministic fault RNG.
    pub seed: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            erp_api_key: "sim-erp-key".into(),
            erp_api_secret: "sim-erp-secret".into(),
            mobbex_api_key: "sim-mbx-key".into(),
            mobbex_access_token: "sim-mbx-token".into(),
            mp_access_token: "APP_USR-sim-mp-token".into(),
            mp_client_id: "6245733745812345".into(),
            mp_client_secret: "sim-mp-client-secret".into(),
            mp_refresh_token: "TG-sim-initial".into(),
            mp_access_ttl: Duration::from_secs(6 * 3600),
            mp_seller_id: 123_456_789,
            mp_max_rows: 10_000,
            faults: Faults::default(),
            seed: 42,
        }
    }
}

/// Injected faults. Rates are probabilities in `[0, 1]` drawn from a seeded RNG.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub erp_read_latency: Duration,
    pub erp_write_latency: Duration,
    pub mobbex_latency: Duration,
    /// ERPNext answers 500 (a Frappe-shaped `OperationalError`) before doing anything.
    pub erp_500_rate: f64,
    /// ERPNext answers 429 "Too Many Requests" with `Retry-After: erp_retry_after_secs`.
    pub erp_429_rate: f64,
    pub erp_retry_after_secs: u64,
    /// ERPNext takes `erp_hang` before answering (a write is committed first).
    pub erp_timeout_rate: f64,
    pub erp_hang: Duration,
    /// A create is committed, then the answer is lost (504 with an empty body, as a proxy gives).
    pub erp_lost_response_rate: f64,
    pub mobbex_5xx_rate: f64,
    pub mobbex_429_rate: f64,
    /// Mobbex answers 200 with a body that is not JSON (a proxy's error page).
    pub mobbex_garbage_rate: f64,
    /// Mobbex (or its proxy) answers a 5xx before doing anything, as an overloaded or restarting
    /// API behind a load balancer: status drawn from 500/502/503/504, body from [`ErrorBody::ALL`].
    pub mobbex_5xx_any_rate: f64,
    /// The share of Mobbex 429s (`mobbex_429_rate`) sent without `Retry-After`, as rate limiters
    /// that give no hint.
    pub mobbex_429_no_retry_after_rate: f64,
    /// Mobbex closes the connection mid-answer (a reset while the body is transferred): status 200,
    /// a `content-length` larger than what is sent, then the connection closes.
    pub mobbex_drop_connection_rate: f64,
    /// ERPNext (or its proxy) answers a 5xx before doing anything, nothing committed (a worker
    /// restart, maintenance, a proxy that cannot reach gunicorn): status drawn from
    /// 500/502/503/504, body from [`ErrorBody::ALL`]. Reads and writes.
    pub erp_5xx_rate: f64,
    /// The share of ERPNext 429s (`erp_429_rate`) sent without `Retry-After`.
    pub erp_429_no_retry_after_rate: f64,
    /// A Payment Entry create is committed, then a proxy that gave up answers 502 or 504 (drawn)
    /// with a body drawn from [`ErrorBody::ALL`].
    pub erp_lost_after_commit_rate: f64,
    /// ERPNext closes the connection without a complete answer (a killed worker, a reset). Reads:
    /// status 200 and a cut body. Payment Entry creates: half before the commit (closed before the
    /// status line, nothing committed), half after it (the real answer cut mid-body). Other
    /// writes: closed before the status line, nothing done.
    pub erp_drop_connection_rate: f64,
    /// gunicorn's sync workers: at most this many ERPNext requests are served at once, the others
    /// wait in arrival order (the socket's backlog) before anything else happens to them, their
    /// latency included; a worker serves its request to the end even when the client gave up.
    /// 0: no limit. The real server has 2 (BRINGUP.md).
    pub erp_workers: usize,
    /// Frappe names a Payment Entry under a row lock on its naming series' counter (`tabSeries`,
    /// `SELECT … FOR UPDATE` in `getseries`) held until the request commits: with this on, a
    /// create takes its series' lock after its link checks and naming (a create refused before
    /// them takes none) and holds it for its whole write latency, so the creates of one series
    /// are written one at a time and those of different series in parallel (recordings 32b, 33).
    /// A series is the prefix its counter numbers: `ACC-PAY-.YYYY.-` posted in 2026 and in 2027
    /// are two. The write latency is then spent under the lock instead of before authentication.
    pub erp_series_lock: bool,
    /// The latency of a create with an allocated reference row (an initial payment), instead of
    /// `erp_write_latency`: the real server takes 1.6–1.9× as long for one (BRINGUP.md). Zero:
    /// `erp_write_latency` for every create.
    pub erp_allocated_write_latency: Duration,
    /// The probability that an allocated create, while an allocated create of another naming
    /// series was in its write phase at some point of its own, is chosen as InnoDB's deadlock
    /// victim on its `tabPayment Entry Reference` insert: HTTP 500 `QueryDeadlockError` without
    /// `_server_messages` (recording 33a), the whole request rolled back: nothing created (33b),
    /// no series number used up (the counter rolls back with it, as in 29n); a retry may succeed
    /// (33c). Seeded like every rate, and drawn only for a create that passed validation and the
    /// duplicate guard and had such an overlap. The write phase is the time under the series
    /// lock with `erp_series_lock`, else the whole request.
    pub erp_series_deadlock_rate: f64,
    /// Mercado Pago (and the MercadoLibre paths it serves) sleeps this long before answering
    /// (not the token endpoint: `mp_token_latency`).
    pub mp_latency: Duration,
    /// Mercado Pago (or its proxy) answers a 5xx before doing anything: status drawn from
    /// 500/502/503/504, body from [`ErrorBody::ALL`] (`Json`: its `internal_error` body).
    pub mp_5xx_rate: f64,
    /// Mercado Pago answers 429 `local_rate_limited` with `Retry-After: 1`...
    pub mp_429_rate: f64,
    /// ...or, for this share of them, without `Retry-After`.
    pub mp_429_no_retry_after_rate: f64,
    /// Mercado Pago closes the connection mid-answer (status 200, a cut body).
    pub mp_drop_connection_rate: f64,
    /// Mercado Pago answers 200 with a body that is not JSON (a proxy's page).
    pub mp_garbage_rate: f64,
    /// `POST /oauth/token` rotates the tokens, then the answer is lost: 502 with an empty body
    /// (the refresh token sent is dead, the client never saw the new one).
    pub mp_token_lost_after_commit_rate: f64,
    /// `POST /oauth/token` sleeps this long after reading the request and before deciding it,
    /// so a test can overlap two refreshes.
    pub mp_token_latency: Duration,
}
