//! `paysync run`: the long-running service.
//!
//! Three activities share one [`Engine`] (so webhooks and polls book through the same path, under
//! the same per-order locks):
//! - the **scheduler** (`scheduler.rs`) polls each account on its cron schedule for operations
//!   *updated* in `[watermark − lookback, now]`, under the account's poll lease (one instance at a
//!   time when several share a ledger), and moves the watermark only after the whole window was
//!   processed and only while that lease is still held;
//! - the **HTTP listener** (`http.rs`) takes webhooks into the durable inbox and serves `/healthz`
//!   and `/metrics`; `listener.rs` holds its timeouts and connection limit against hostile clients;
//! - the **inbox worker** (`inbox.rs`) re-reads each triggered operation from the API and decides.
//!
//! Shutdown: on SIGTERM/SIGINT, `STOPPING=1`, no new polls or inbox claims, in-flight work gets
//! `SHUTDOWN_GRACE` to finish (ERPNext calls are bounded by their timeout), what is left is
//! handed over (triggers back to pending, order claims released), then exit 0. Nothing is
//! requeued at a start: work a dead instance held is taken over when its leases lapse.
//!
//! Time: every part reads "now" from one [`Clock`], the [`App`]'s ([`DaemonCtx::clock`]), and
//! sleeps on tokio's timer; retry schedules are `retry::Backoff` constants. The daemon must not
//! book by itself: polls and triggers go through the [`Engine`].

pub mod http;
pub mod inbox;
pub mod listener;
pub mod mercadopago_hook;
pub mod scheduler;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::app::App;
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::DecisionKind;
use crate::pipeline::{AccountCtx, Engine, RunOptions};
use crate::source::{Window, WindowField};
use crate::store::{Ledger, PollLease, PollRecord};
use crate::summary::Summary;

/// How long in-flight work may take to finish after a stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
/// Non-final ledger rows re-examined per poll (orders that reached the ERP later, passing errors).
const RECHECK_PER_POLL: i64 = 200;

/// What the daemon's parts share.
pub struct DaemonCtx {
    pub settings: Settings,
    pub engine: Arc<Engine>,
    pub ledger: Arc<dyn Ledger>,
    pub accounts: HashMap<String, Arc<AccountCtx>>,
    /// The one clock of the daemon (scheduler, inbox, `/healthz`): the app's.
    pub clock: Arc<dyn Clock>,
    /// Wakes the inbox worker when a webhook queued something.
    pub inbox_wake: Notify,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Stop taking new work.
    pub cancel: CancellationToken,
    pub started: Timestamp,
    /// Counters tests (and `status`) can wait on: a signal instead of sleeps.
    pub progress: tokio::sync::watch::Sender<Progress>,
    last_status: Mutex<String>,
}

/// What the daemon has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub polls: u64,
    pub polls_ok: u64,
    pub triggers_done: u64,
    pub triggers_retried: u64,
    pub triggers_given_up: u64,
    /// Tries to write a trigger's outcome that the ledger refused (each is tried again).
    pub outcome_writes_failed: u64,
}

impl DaemonCtx {
    /// The daemon of `app`, reading time from `clock` (which becomes the app's clock).
    pub fn new(
        app: App,
        clock: Arc<dyn Clock>,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Arc<DaemonCtx> {
        DaemonCtx::from_app(app.with_clock(clock), metrics)
    }

    /// The daemon of `app`, reading time from the app's clock ([`App::clock`]).
    pub fn from_app(
        app: App,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Arc<DaemonCtx> {
        let App {
            settings,
            engine,
            ledger,
            accounts,
            clock,
            ..
        } = app;
        let accounts = accounts
            .into_iter()
            .map(|a| (a.settings.name.clone(), Arc::new(a)))
            .collect();
        Arc::new(DaemonCtx {
            started: clock.now(),
            settings,
            engine,
            ledger,
            accounts,
            clock,
            inbox_wake: Notify::new(),
            metrics,
            cancel: CancellationToken::new(),
            progress: tokio::sync::watch::channel(Progress::default()).0,
            last_status: Mutex::new(String::new()),
        })
    }

    fn set_status(&self, status: String) {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&status)]);
        *self.last_status.lock().expect("poisoned") = status;
    }
}

/// Run the daemon on `listener` until `shutdown` resolves. Returns once everything has stopped.
/// Ask each source once who the merchant behind its credentials is (Mercado Pago's seller id),
/// so that webhooks naming another merchant are refused at once, without an API call on the
/// webhook's path. Until it is known a webhook is taken (its payment is re-read with the
/// account's own token anyway); a failure here is only logged.
fn learn_merchants(ctx: &Arc<DaemonCtx>, tracker: &TaskTracker) {
    for (name, acc) in &ctx.accounts {
        if acc.settings.source != crate::source::SourceKind::MercadoPago {
            continue;
        }
        let (name, source) = (name.clone(), acc.source.clone());
        tracker.spawn(async move {
            if let Err(e) = source.check().await {
                warn!(account = %name, error = %e, "could not read the account's merchant id; webhooks are checked once it is known");
            }
        });
    }
}

pub async fn run(
    ctx: Arc<DaemonCtx>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    let addr = listener.local_addr()?;

    let server = spawn_http(&ctx, listener);
    learn_merchants(&ctx, &tracker);
    tracker.spawn(inbox::run(ctx.clone(), tracker.clone()));
    let schedules = account_schedules(&ctx)?;
    let poll = poll_fn(&ctx);
    let watchdog = watchdog(&ctx);
    catch_up_missed_polls(&ctx, &schedules, &tracker).await;
    tracker.spawn(scheduler::run(
        schedules,
        ctx.settings.daemon.timezone.clone(),
        ctx.clock.clone(),
        poll,
        watchdog,
        tracker.clone(),
        ctx.cancel.clone(),
    ));

    announce_ready(&ctx, addr);
    tokio::select! {
        _ = shutdown => info!("stop requested"),
        _ = ctx.cancel.cancelled() => {}
    }
    shut_down(&ctx, tracker, server).await;
    Ok(())
}

/// HTTP: webhooks, /healthz, /metrics; limits against hostile clients in `listener.rs`.
/// Not on the tracker: the server stops on `cancel` and is awaited last, after the drain.
fn spawn_http(ctx: &Arc<DaemonCtx>, listener: TcpListener) -> tokio::task::JoinHandle<()> {
    let limits = listener::plan(&ctx.settings.daemon);
    tokio::spawn(listener::serve(
        listener,
        http::router(ctx.clone()),
        limits,
        ctx.cancel.clone(),
    ))
}

/// Each account's cron schedule: its own, or the daemon's default.
fn account_schedules(ctx: &DaemonCtx) -> anyhow::Result<Vec<scheduler::AccountSchedule>> {
    let mut schedules = Vec::new();
    for (name, acc) in &ctx.accounts {
        let expr = acc
            .settings
            .schedule
            .clone()
            .unwrap_or_else(|| ctx.settings.daemon.schedule.clone());
        let cron = crate::schedule::parse(&expr).map_err(anyhow::Error::msg)?;
        schedules.push(scheduler::AccountSchedule {
            account: name.clone(),
            cron,
        });
    }
    Ok(schedules)
}

/// What the scheduler runs at each fire time: [`poll_account`].
fn poll_fn(ctx: &Arc<DaemonCtx>) -> scheduler::PollFn {
    let ctx = ctx.clone();
    Arc::new(move |account| {
        let ctx = ctx.clone();
        Box::pin(async move { poll_account(&ctx, &account).await })
    })
}

/// The systemd watchdog ping and its period (half the configured one), if systemd asks for it.
fn watchdog(ctx: &Arc<DaemonCtx>) -> Option<(Duration, scheduler::WatchdogFn)> {
    sd_notify::watchdog_enabled().map(|every| {
        let ctx = ctx.clone();
        let ping: scheduler::WatchdogFn = Arc::new(move || {
            let ctx = ctx.clone();
            Box::pin(async move {
                // Only claim liveness if the store answers.
                match ctx.ledger.ping().await {
                    Ok(()) => {
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    }
                    Err(e) => warn!(error = %e, "store check failed; watchdog not fed"),
                }
            })
        });
        (every / 2, ping)
    })
}

/// Catch up at once after downtime: an account whose schedule fired since its watermark missed
/// a poll. The window starts at the stored watermark: no gap, however long the downtime.
async fn catch_up_missed_polls(
    ctx: &Arc<DaemonCtx>,
    schedules: &[scheduler::AccountSchedule],
    tracker: &TaskTracker,
) {
    for s in schedules {
        let now = ctx.clock.now();
        let Ok(Some(watermark)) = ctx.ledger.watermark(&s.account).await else {
            continue;
        };
        let tz = ctx.settings.daemon.timezone.clone();
        let missed = crate::schedule::next_after(&s.cron, &watermark.to_zoned(tz))
            .is_some_and(|next| next.timestamp() <= now);
        if missed {
            info!(account = %s.account, watermark = %watermark, "catching up after downtime");
            let ctx = ctx.clone();
            let account = s.account.clone();
            tracker.spawn(async move { poll_account(&ctx, &account).await });
        }
    }
}

/// Tell systemd (and the log) that the daemon is up.
fn announce_ready(ctx: &DaemonCtx, addr: std::net::SocketAddr) {
    info!(listen = %addr, accounts = ctx.accounts.len(), "paysync running");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    ctx.set_status(format!("listening on {addr}; no poll yet"));
}

/// Stop taking work, give in-flight work [`SHUTDOWN_GRACE`] to finish, then stop the server.
async fn shut_down(ctx: &DaemonCtx, tracker: TaskTracker, server: tokio::task::JoinHandle<()>) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    ctx.cancel.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "in-flight work did not finish in time; leaving it for the next start"
        );
    }
    hand_over(ctx).await;
    if let Err(e) = server.await {
        error!(error = %e, "HTTP server task failed");
    }
    info!("stopped");
}

/// A clean stop hands its unfinished work over at once instead of leaving it to lapse: its inbox
/// triggers go back to pending and its order claims are released (poll leases are released by
/// each poll as it ends). A hard stop (SIGKILL, a crash) leaves them to expire after `[daemon] lease`.
async fn hand_over(ctx: &DaemonCtx) {
    match ctx.ledger.inbox_release(ctx.engine.holder()).await {
        Ok(0) => {}
        Ok(n) => info!(
            triggers = n,
            "unfinished webhook triggers handed back to the inbox"
        ),
        Err(e) => {
            warn!(error = %e, "could not hand back unfinished triggers; they are taken over when their leases end")
        }
    }
    ctx.engine.release_claims().await;
}

/// One poll of one account: operations updated in `[watermark − lookback, now]`, by one instance
/// at a time (the account's poll lease, renewed while the poll runs; the watermark moves only if
/// this poll still holds it).
pub async fn poll_account(ctx: &DaemonCtx, account: &str) {
    let Some(acc) = ctx.accounts.get(account) else {
        return;
    };
    let Some(lease) = take_poll_lease(ctx, account).await else {
        return;
    };
    let renewal = RenewedLease::start(ctx, &lease);
    poll_under_lease(ctx, acc, &lease).await;
    renewal.stop();
    if let Err(e) = ctx.ledger.release_poll_lease(&lease).await {
        warn!(account, error = %e, "could not release the poll lease; it lapses by itself");
    }
}

/// The account's poll lease, or `None` (this poll skipped) while another instance polls it or
/// the ledger does not answer.
async fn take_poll_lease(ctx: &DaemonCtx, account: &str) -> Option<PollLease> {
    match ctx
        .ledger
        .take_poll_lease(
            account,
            ctx.engine.holder(),
            ctx.clock.now(),
            ctx.settings.daemon.lease,
        )
        .await
    {
        Ok(Some(lease)) => Some(lease),
        Ok(None) => {
            debug!(
                account,
                "another instance is polling this account; this poll is skipped"
            );
            None
        }
        Err(e) => {
            error!(account, error = %e, "poll skipped: ledger unavailable");
            None
        }
    }
}

/// Renews a poll lease every quarter of `[daemon] lease` until stopped (or until the lease was
/// taken over: then the poll goes on — its bookings are safe under the order claims — but its
/// watermark will not move).
struct RenewedLease {
    task: tokio::task::JoinHandle<()>,
}

impl RenewedLease {
    fn start(ctx: &DaemonCtx, lease: &PollLease) -> RenewedLease {
        let ledger = ctx.ledger.clone();
        let clock = ctx.clock.clone();
        let ttl = ctx.settings.daemon.lease;
        let lease = lease.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 4).await;
                match ledger.renew_poll_lease(&lease, clock.now(), ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!(account = %lease.account, "the poll lease was taken over by another instance (this one was paused or cut off longer than [daemon] lease); this poll will not move the watermark");
                        return;
                    }
                    Err(e) => {
                        warn!(account = %lease.account, error = %e, "could not renew the poll lease; retrying")
                    }
                }
            }
        });
        RenewedLease { task }
    }

    fn stop(self) {
        self.task.abort();
    }
}

async fn poll_under_lease(ctx: &DaemonCtx, acc: &AccountCtx, lease: &PollLease) {
    let account = acc.settings.name.as_str();
    let started = ctx.clock.now();
    let Some(window) = poll_window(ctx, account, started).await else {
        return;
    };
    let opts = RunOptions {
        trigger: crate::store::RunTrigger::Poll,
        ..RunOptions::default()
    };
    let (mut summary, error) = match ctx.engine.sync_window(acc, window, &opts).await {
        Ok(s) => (s, None),
        Err((s, e)) => (s, Some(e.to_string())),
    };
    if error.is_none() && !ctx.cancel.is_cancelled() {
        requeue_not_booked_yet(ctx, account, started).await;
    }

    let finished = ctx.clock.now();
    if error.is_none() {
        move_watermark(ctx, lease, window.to).await;
    }
    summary.failures.clear();
    let poll = FinishedPoll {
        account,
        window,
        started,
        finished,
        summary,
        error,
    };
    record_poll(ctx, &poll).await;
    count_poll(ctx, &poll);
    report_poll(ctx, &poll);
}

/// One poll's outcome, as recorded, counted and logged.
struct FinishedPoll<'a> {
    account: &'a str,
    window: Window,
    started: Timestamp,
    finished: Timestamp,
    /// The run's summary, its `failures` list cleared before it is recorded.
    summary: Summary,
    error: Option<String>,
}

impl FinishedPoll<'_> {
    fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// The window to poll, `[watermark − lookback, started]`, or `None` (poll skipped) when the
/// ledger cannot say where the last poll ended.
async fn poll_window(ctx: &DaemonCtx, account: &str, started: Timestamp) -> Option<Window> {
    let lookback = SignedDuration::try_from(ctx.settings.daemon.lookback).unwrap_or_default();
    let watermark = match ctx.ledger.watermark(account).await {
        Ok(w) => w,
        Err(e) => {
            error!(account, error = %e, "poll skipped: ledger unavailable");
            return None;
        }
    };
    // First poll ever: start `lookback` ago (older operations: `paysync sync --since`).
    let from = watermark.unwrap_or(started) - lookback;
    Some(Window {
        field: WindowField::Updated,
        from,
        to: started,
    })
}

/// Re-examine what earlier runs could not book yet (an order that reached the ERP, a passing
/// error): these operations may not change in Mobbex, so the updated-window would miss them.
async fn requeue_not_booked_yet(ctx: &DaemonCtx, account: &str, started: Timestamp) {
    let uids = match ctx
        .ledger
        .retryable(
            account,
            started - SignedDuration::from_secs(60),
            RECHECK_PER_POLL,
        )
        .await
    {
        Ok(uids) => uids,
        Err(e) => {
            warn!(account, error = %e, "could not list operations to re-examine");
            return;
        }
    };
    let mut queued = 0;
    for uid in uids {
        if ctx
            .ledger
            .inbox_push(account, &uid, started, None)
            .await
            .unwrap_or(false)
        {
            queued += 1;
        }
    }
    if queued > 0 {
        info!(account, queued, "re-examining operations not booked yet");
        ctx.inbox_wake.notify_one();
    }
}

/// Only after the whole window was processed, and only while `lease` is still the account's
/// current poll lease (fenced in the ledger): the next poll starts from `to`.
async fn move_watermark(ctx: &DaemonCtx, lease: &PollLease, to: Timestamp) {
    let account = lease.account.as_str();
    match ctx.ledger.set_watermark(lease, to).await {
        Ok(true) => {}
        Ok(false) => warn!(
            account,
            "the poll lease was taken over meanwhile; the watermark is left to its new holder"
        ),
        Err(e) => {
            error!(account, error = %e, "could not store the watermark; the next poll repeats this window")
        }
    }
}

/// The poll's row in the ledger (`paysync status` reads it).
async fn record_poll(ctx: &DaemonCtx, poll: &FinishedPoll<'_>) {
    let record = PollRecord {
        account: poll.account.to_string(),
        started: poll.started,
        finished: poll.finished,
        window_from: poll.window.from,
        window_to: poll.window.to,
        ok: poll.ok(),
        summary: poll.summary.to_string(),
        error: poll.error.clone(),
    };
    if let Err(e) = ctx.ledger.record_poll(&record).await {
        warn!(account = poll.account, error = %e, "could not record the poll");
    }
}

/// The poll counters: the metric and the [`Progress`] tests wait on.
fn count_poll(ctx: &DaemonCtx, poll: &FinishedPoll<'_>) {
    let ok = poll.ok();
    metrics::counter!(crate::metrics::POLLS, "account" => poll.account.to_string(), "ok" => ok.to_string()).increment(1);
    ctx.progress.send_modify(|p| {
        p.polls += 1;
        if ok {
            p.polls_ok += 1;
        }
    });
}

/// The log line, the last-good-poll gauge and the systemd status of a finished poll.
fn report_poll(ctx: &DaemonCtx, poll: &FinishedPoll<'_>) {
    let FinishedPoll {
        account,
        window,
        started,
        finished,
        summary,
        error,
    } = poll;
    let account = *account;
    let duration_ms = (*finished - *started).get_milliseconds();
    match error {
        None => {
            let skipped: Vec<String> = summary
                .by_kind
                .iter()
                .filter(|(k, _)| !k.is_booked() && **k != DecisionKind::Error)
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            metrics::gauge!(crate::metrics::LAST_GOOD_POLL, "account" => account.to_string())
                .set(finished.as_second() as f64);
            info!(
                account,
                window_from = %window.from, window_to = %window.to,
                examined = summary.examined,
                booked_initial = summary.get(DecisionKind::BookedInitial),
                booked_additional = summary.get(DecisionKind::BookedAdditional),
                skipped = %skipped.join(" "),
                errors = summary.errors(),
                duration_ms,
                "poll finished"
            );
            ctx.set_status(format!(
                "last poll {account} at {}: examined {}, booked {}",
                finished
                    .to_zoned(ctx.settings.daemon.timezone.clone())
                    .strftime("%H:%M:%S"),
                summary.examined,
                summary.get(DecisionKind::BookedInitial)
                    + summary.get(DecisionKind::BookedAdditional)
            ));
        }
        Some(e) => {
            error!(
                account,
                window_from = %window.from, window_to = %window.to,
                examined = summary.examined,
                errors = summary.errors(),
                duration_ms,
                error = %e,
                "poll failed; the watermark stays, the next poll repeats this window"
            );
            ctx.set_status(format!("last poll {account} FAILED: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;

    async fn app(dir: &std::path::Path) -> App {
        let path = dir.join("sync.toml");
        std::fs::write(
            &path,
            format!(
                r#"[store]
url = "sqlite://{}"
[erp]
kind = "erpnext"
url = "http://127.0.0.1:9"
api_key = "k"
api_secret = "s"
[[accounts]]
name = "main"
source = "mobbex"
api_url = "http://127.0.0.1:9"
api_key = "mk"
access_token = "mt"
company = "Mi Empresa SA"
mode_of_payment = "Mobbex"
"#,
                dir.join("ledger.db").display()
            ),
        )
        .unwrap();
        let settings = crate::config::load_with_env(&path, &HashMap::new()).unwrap();
        App::build(settings).await.unwrap()
    }

    /// The daemon reads time from the app's clock; the clock given to `new` becomes the app's.
    #[tokio::test]
    async fn the_daemon_reads_time_from_the_apps_clock() {
        let dir = tempfile::tempdir().unwrap();
        let at: Timestamp = "2000-01-01T00:00:00Z".parse().unwrap();
        let ctx = DaemonCtx::from_app(
            app(dir.path())
                .await
                .with_clock(TokioClock::starting_at(at)),
            None,
        );
        assert!(ctx.started >= at && ctx.started < at + SignedDuration::from_secs(60));
        assert!(ctx.clock.now() < at + SignedDuration::from_secs(60));

        let ctx = DaemonCtx::new(app(dir.path()).await, TokioClock::starting_at(at), None);
        assert!(ctx.started < at + SignedDuration::from_secs(60));
    }
}
