//! The command line: argument parsing and one function per command.
//!
//! Exit codes (`exit`): 0 = no errors; 1 = some operations failed (they stay retryable) or a check
//! failed; 2 = configuration or usage error.
//!
//! Owns: parsing, loading the settings, and turning each command's outcome into output and an
//! exit code. What it prints is built elsewhere: the closing table in `summary`, the status report
//! in `status`. Must not book or decide (the pipeline does) nor be imported by the commands it
//! dispatches to (`demo`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::civil::Date;

use crate::app::{App, created_window, sync_days};
use crate::config::{self, Settings};
use crate::domain::DecisionKind;
use crate::erp::erpnext::entry_body;
use crate::pipeline::{Observer, RebookPlan, RunOptions};
use crate::redact;
use crate::source::Window;
use crate::status::StatusReport;
use crate::summary::{Summary, print_summary};
use crate::telemetry::{self, LogFormat};

#[derive(Parser, Debug)]
#[command(
    name = "paysync",
    version,
    about = "Books every paid Mobbex operation into ERPNext as exactly one submitted Payment Entry"
)]
pub struct Cli {
    /// Configuration file [default: $PAYSYNC_CONFIG, else ./sync.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Examine operations created between two dates and book the paid ones.
    Sync {
        /// First day (YYYY-MM-DD, in the configured time zone).
        #[arg(long, value_parser = parse_date)]
        since: Date,
        /// Last day, inclusive [default: today].
        #[arg(long, value_parser = parse_date)]
        until: Option<Date>,
        /// Only this account (the `name` of an [[accounts]] table).
        #[arg(long)]
        account: Option<String>,
        /// Show what would be created; create and record nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Book one operation again after every ERPNext entry of it was cancelled (paysync never
    /// does that on its own). Decided by the usual rules, initial or additional as ERPNext says now.
    Rebook {
        /// The operation id (Mobbex `uid`; the cancelled entry's `reference_no`).
        operation: String,
        /// The account it belongs to [default: the only one].
        #[arg(long)]
        account: Option<String>,
        /// Show what would be created; create and record nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Does the gateway agree with the books? One verdict per operation created in the period
    /// and per ERPNext entry of the period (the account's mode of payment) that is no operation:
    /// ok, missing, duplicate, amount_mismatch, party_mismatch, cancelled_in_erp, not_reversed,
    /// unknown_entry, pending_in_source. Reads only. Exit 0 when all are ok or pending.
    Audit {
        /// First day (YYYY-MM-DD, in the configured time zone).
        #[arg(long, value_parser = parse_date)]
        since: Date,
        /// Last day, inclusive.
        #[arg(long, value_parser = parse_date)]
        until: Date,
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
        /// One JSON object per finding, a line each.
        #[arg(long)]
        json: bool,
    },
    /// Everything known about one operation: its state in the source (read now), every decision
    /// paysync made for it (when, on which trigger, why), the ERPNext entries carrying its id
    /// (read now) and the webhook triggers it had. Reads only.
    Explain {
        /// The operation id (Mobbex `uid`, Mercado Pago payment id; an entry's `reference_no`).
        operation: String,
        /// The account it belongs to [default: the one whose ledger knows it, or the only one].
        #[arg(long)]
        account: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration and reach both APIs, saying which one fails and why.
    Check,
    /// Install ERPNext's server-side duplicate guard (a unique Custom Field on Payment Entry),
    /// once, with a System Manager's API key. Safe to run again.
    ErpSetup,
    /// Run against a built-in simulator of Mobbex and ERPNext with sample data (no set-up needed).
    Demo,
    /// The service: poll on the cron schedule, take webhooks, serve /healthz and /metrics.
    Run,
    /// Per account: watermark, last poll, counts by decision, inbox depth, latest errors.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn parse_date(s: &str) -> Result<Date, String> {
    s.parse::<Date>()
        .map_err(|e| format!("expected a date as YYYY-MM-DD, got {s:?}: {e}"))
}

pub use crate::exit::{EXIT_CONFIG, EXIT_FAILED, EXIT_OK};

pub fn run(cli: Cli) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paysync: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = rt.block_on(dispatch(cli));
    ExitCode::from(code)
}

/// One thread: paysync waits on I/O (the ERP's latency bounds it), and a single thread avoids
/// the context switches that took most of its CPU time with two workers (measured with perf).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Load the settings and start logging as the command wants, then run the command.
async fn dispatch(cli: Cli) -> u8 {
    match cli.command {
        Command::Demo => {
            telemetry::init(cli.log_format, None, "warn");
            crate::demo::run().await
        }
        Command::Sync {
            since,
            until,
            account,
            dry_run,
        } => {
            let settings = match load_settings(&cli.config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let show_bar = std::io::stderr().is_terminal();
            // On a terminal the bar shows progress and only warnings are logged; elsewhere
            // every decision is a log line.
            telemetry::init(
                cli.log_format,
                settings.daemon.log_level.as_deref().filter(|_| !show_bar),
                if show_bar { "warn" } else { "info" },
            );
            sync(settings, since, until, account, dry_run, show_bar).await
        }
        Command::Rebook {
            operation,
            account,
            dry_run,
        } => match settings_with_logs(&cli.config, cli.log_format, "warn") {
            Ok(settings) => rebook(settings, &operation, account, dry_run).await,
            Err(code) => code,
        },
        Command::Run => match settings_with_logs(&cli.config, cli.log_format, "info") {
            Ok(settings) => run_daemon(settings).await,
            Err(code) => code,
        },
        Command::Status { json } => match settings_with_logs(&cli.config, cli.log_format, "warn") {
            Ok(settings) => status(settings, json).await,
            Err(code) => code,
        },
        Command::Audit {
            since,
            until,
            account,
            json,
        } => match settings_with_logs(&cli.config, cli.log_format, "warn") {
            Ok(settings) => audit(settings, since, until, account, json).await,
            Err(code) => code,
        },
        Command::Explain {
            operation,
            account,
            json,
        } => match settings_with_logs(&cli.config, cli.log_format, "warn") {
            Ok(settings) => explain(settings, &operation, account, json).await,
            Err(code) => code,
        },
        Command::Check => match settings_with_logs(&cli.config, cli.log_format, "warn") {
            Ok(settings) => check(settings).await,
            Err(code) => code,
        },
        Command::ErpSetup => match settings_with_logs(&cli.config, cli.log_format, "warn") {
            Ok(settings) => erp_setup(settings).await,
            Err(code) => code,
        },
    }
}

/// The settings, then logging at their `log_level` (else at `default`).
fn settings_with_logs(
    config: &Option<PathBuf>,
    log_format: LogFormat,
    default: &str,
) -> Result<Settings, u8> {
    let settings = load_settings(config)?;
    telemetry::init(log_format, settings.daemon.log_level.as_deref(), default);
    Ok(settings)
}

fn load_settings(explicit: &Option<PathBuf>) -> Result<Settings, u8> {
    let path = config::resolve_path(explicit.as_deref());
    config::load(&path).map_err(|e| {
        eprintln!("paysync: {e}");
        EXIT_CONFIG
    })
}

/// The app, or the exit code after saying why it could not be built.
async fn build_app(settings: Settings) -> Result<App, u8> {
    App::build(settings).await.map_err(|e| {
        eprintln!("paysync: {e}");
        EXIT_FAILED
    })
}

/// Says that `--account NAME` names no configured account.
fn no_such_account(settings: &Settings, name: &str) -> u8 {
    let names: Vec<&str> = settings.accounts.iter().map(|a| a.name.as_str()).collect();
    eprintln!(
        "paysync: no account named {name:?} in {} (accounts: {})",
        settings.file.display(),
        names.join(", ")
    );
    EXIT_CONFIG
}

async fn sync(
    settings: Settings,
    since: Date,
    until: Option<Date>,
    account: Option<String>,
    dry_run: bool,
    show_bar: bool,
) -> u8 {
    let tz = settings.daemon.timezone.clone();
    let today = jiff::Timestamp::now().to_zoned(tz.clone()).date();
    let (since, until) = match sync_days(since, until, today, settings.daemon.max_sync_days) {
        Ok(days) => days,
        Err(e) => {
            eprintln!("paysync: {e}");
            return EXIT_CONFIG;
        }
    };
    if let Some(a) = &account
        && settings.account(a).is_none()
    {
        return no_such_account(&settings, a);
    }
    let app = match build_app(settings).await {
        Ok(a) => a,
        Err(code) => return code,
    };

    let bar = show_bar.then(progress_bar);
    let opts = RunOptions {
        dry_run,
        collect_booked: dry_run,
        observer: bar.clone().map(progress_observer),
        rebook: None,
        trigger: crate::store::RunTrigger::Sync,
    };
    let window = created_window(&tz, since, until);
    let total = sync_accounts(&app, account.as_deref(), window, &opts).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    print_sync_outcome(&total, since, until, dry_run)
}

/// A spinner on stderr counting examined operations; log lines are printed above it.
fn progress_bar() -> ProgressBar {
    let b = ProgressBar::new_spinner();
    b.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} examined {pos} operations, {msg}")
            .expect("valid template"),
    );
    b.enable_steady_tick(Duration::from_millis(120));
    telemetry::attach_progress_bar(b.clone());
    b
}

/// Moves the bar on each examined operation and shows how many were booked.
fn progress_observer(b: ProgressBar) -> Observer {
    let booked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    Arc::new(move |o: &crate::pipeline::Outcome| {
        b.inc(1);
        if o.kind.is_booked() {
            let n = booked.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            b.set_message(format!("{n} booked"));
        }
    }) as Observer
}

/// Sync `window` for each account (or only `only`), one after the other, into one summary. A
/// listing that fails is logged and the account's partial summary still counts.
async fn sync_accounts(
    app: &App,
    only: Option<&str>,
    window: Window,
    opts: &RunOptions,
) -> Summary {
    let mut total = Summary::default();
    for acc in app
        .accounts
        .iter()
        .filter(|a| only.is_none_or(|n| n == a.settings.name))
    {
        let started = std::time::Instant::now();
        let result = app.engine.sync_window(acc, window, opts).await;
        let summary = match result {
            Ok(s) => s,
            Err((s, e)) => {
                tracing::error!(account = %acc.settings.name, error = %e, "listing failed; the window is incomplete");
                s
            }
        };
        tracing::info!(
            account = %acc.settings.name,
            from = %window.from, to = %window.to,
            summary = %summary,
            duration_ms = started.elapsed().as_millis() as u64,
            "sync finished"
        );
        total.merge(summary);
    }
    total
}

/// The dry run's would-be entries, the closing table, and the exit code.
fn print_sync_outcome(total: &Summary, since: Date, until: Date, dry_run: bool) -> u8 {
    if dry_run {
        println!("Dry run: nothing was created. Entries that would be created:");
        for line in &total.booked {
            println!("  {} {}: {}", line.uid, line.kind, entry_body(&line.entry));
        }
    }
    print_summary(total, since, until, dry_run);
    if total.unresolved() > 0 {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

async fn rebook(settings: Settings, operation: &str, account: Option<String>, dry_run: bool) -> u8 {
    let account = match rebook_account(&settings, account) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let app = match build_app(settings).await {
        Ok(a) => a,
        Err(code) => return code,
    };
    let acc = app
        .accounts
        .iter()
        .find(|a| a.settings.name == account)
        .expect("the account was checked against the settings");
    let opts = RunOptions {
        dry_run,
        collect_booked: true,
        observer: None,
        rebook: None,
        trigger: crate::store::RunTrigger::Sync,
    };
    let (plan, summary) = match app.engine.rebook(acc, operation, &opts).await {
        Ok(x) => x,
        Err(e) => {
            println!("not re-booked: {e}");
            return EXIT_FAILED;
        }
    };
    for e in &plan.cancelled {
        println!("cancelled in ERPNext: Payment Entry {}", e.name);
    }
    print_rebook_outcome(&app, &account, &plan, &summary, dry_run).await
}

/// `paysync audit` (`crate::audit`).
async fn audit(
    settings: Settings,
    since: Date,
    until: Date,
    account: Option<String>,
    json: bool,
) -> u8 {
    if let Some(a) = &account
        && !settings.accounts.iter().any(|s| &s.name == a)
    {
        return no_such_account(&settings, a);
    }
    match build_app(settings).await {
        Ok(app) => crate::audit::command(&app, since, until, account.as_deref(), json).await,
        Err(code) => code,
    }
}

/// `paysync explain` (`crate::explain`): exit 0 when something knows the operation, 1 when
/// nothing does.
async fn explain(settings: Settings, operation: &str, account: Option<String>, json: bool) -> u8 {
    if let Some(a) = &account
        && !settings.accounts.iter().any(|s| &s.name == a)
    {
        return no_such_account(&settings, a);
    }
    match build_app(settings).await {
        Ok(app) => crate::explain::command(&app, operation, account.as_deref(), json).await,
        Err(code) => code,
    }
}

/// The account `--account` names, or the only one configured.
fn rebook_account(settings: &Settings, account: Option<String>) -> Result<String, u8> {
    let names: Vec<String> = settings.accounts.iter().map(|a| a.name.clone()).collect();
    match account {
        Some(a) if names.contains(&a) => Ok(a),
        Some(a) => Err(no_such_account(settings, &a)),
        None if names.len() == 1 => Ok(names[0].clone()),
        None => {
            eprintln!(
                "paysync: several accounts are configured; say which one with --account ({})",
                names.join(", ")
            );
            Err(EXIT_CONFIG)
        }
    }
}

/// What became of the re-booking (created, would create, booked meanwhile, or why not), and the
/// exit code.
async fn print_rebook_outcome(
    app: &App,
    account: &str,
    plan: &RebookPlan,
    summary: &Summary,
    dry_run: bool,
) -> u8 {
    let guard = plan.rebook.guard_value.as_deref().unwrap_or(&plan.op.uid);
    match summary.booked.iter().find(|b| b.uid == plan.op.uid) {
        Some(b) if dry_run => {
            println!(
                "dry run: would create ({}, duplicate guard {guard}): {}",
                b.kind,
                entry_body(&b.entry)
            );
            EXIT_OK
        }
        Some(b) => {
            println!(
                "re-booked {} as {}: Payment Entry {} (duplicate guard {guard})",
                plan.op.uid,
                b.kind,
                b.entry_name.as_deref().unwrap_or("?")
            );
            EXIT_OK
        }
        None if summary.get(DecisionKind::AlreadyLoaded) > 0 => {
            // Another process (a second `rebook`, the service finishing this request) booked it
            // between the check and this run's booking: booked once, as asked.
            let entry = ledger_entry(app, account, &plan.op.uid).await;
            println!(
                "already re-booked meanwhile (by another paysync process): Payment Entry {entry}"
            );
            EXIT_OK
        }
        None => {
            let why = summary
                .unresolved
                .iter()
                .find(|u| u.uid == plan.op.uid)
                .map(|u| format!("{}: {}", u.kind, u.reason))
                .unwrap_or_else(|| format!("{summary}"));
            println!("not re-booked: {why}");
            if !dry_run {
                println!(
                    "the ledger keeps the request: the next run (or `paysync rebook` again) finishes it"
                );
            }
            EXIT_FAILED
        }
    }
}

/// The ERPNext entry the ledger records for `uid`: "?" when none, with the error when unreadable.
async fn ledger_entry(app: &App, account: &str, uid: &str) -> String {
    let uid = uid.to_string();
    match app
        .engine
        .ledger()
        .rows(account, std::slice::from_ref(&uid))
        .await
    {
        Ok(rows) => rows
            .get(&uid)
            .and_then(|r| r.erp_entry.clone())
            .unwrap_or_else(|| "?".into()),
        Err(e) => format!("? (ledger: {e})"),
    }
}

async fn erp_setup(settings: Settings) -> u8 {
    let app = match App::build(settings).await {
        Ok(a) => a,
        Err(e) => {
            println!("FAILED: {e}");
            return EXIT_FAILED;
        }
    };
    match app.erp.install_guard().await {
        Ok(true) => {
            println!(
                "ERPNext duplicate guard installed: Custom Field `Payment Entry-paysync_operation` (unique)"
            );
            EXIT_OK
        }
        Ok(false) => {
            println!("ERPNext duplicate guard: already installed");
            EXIT_OK
        }
        Err(e) => {
            println!("FAILED to install the ERPNext duplicate guard: {e}");
            EXIT_FAILED
        }
    }
}

async fn check(settings: Settings) -> u8 {
    let mut failed = false;
    println!("configuration {}: ok", settings.file.display());
    if let Some(w) = config::exposure_warning(&settings) {
        println!("{w}");
    }
    let app = match App::build(settings).await {
        Ok(a) => {
            println!("ledger {}: ok", redact::url(&a.settings.store.url));
            a
        }
        Err(e) => {
            println!("FAILED: {e}");
            return EXIT_FAILED;
        }
    };
    let erp_url = redact::url(app.settings.erp.url.as_str());
    match app.erp.whoami().await {
        Ok(user) => println!("ERPNext {erp_url}: ok (logged in as {user})"),
        Err(e) => {
            failed = true;
            println!("ERPNext {erp_url}: FAILED: {e}");
        }
    }
    match app.erp.guard_installed().await {
        Ok(true) => println!("ERPNext duplicate guard: installed"),
        Ok(false) => println!(
            "WARNING: ERPNext duplicate guard: not installed — run `paysync erp-setup` once with a System Manager's key, so that ERPNext itself refuses a second entry for one payment"
        ),
        Err(e) => println!("WARNING: ERPNext duplicate guard: could not tell ({e})"),
    }
    for acc in &app.accounts {
        let s = &acc.settings;
        let api_url = redact::url(s.api_url.as_str());
        match acc.source.check().await {
            Ok(()) => println!("account {} Mobbex {api_url}: ok", s.name),
            Err(e) => {
                failed = true;
                println!("account {} Mobbex {api_url}: FAILED: {e}", s.name);
            }
        }
        if s.paid_to.is_none() {
            match app
                .erp
                .mode_of_payment_account(&s.mode_of_payment, &s.company)
                .await
            {
                Ok(a) => println!(
                    "account {} paid_to (Mode of Payment {:?}): {a}",
                    s.name, s.mode_of_payment
                ),
                Err(e) => {
                    failed = true;
                    println!("account {} paid_to: FAILED: {e}", s.name);
                }
            }
        }
    }
    if failed { EXIT_FAILED } else { EXIT_OK }
}

async fn run_daemon(settings: Settings) -> u8 {
    let listen = settings.daemon.listen;
    let app = match App::build(settings).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("paysync: {e}");
            return EXIT_FAILED;
        }
    };
    let listener = match crate::daemon::listener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %listen, error = %e, "cannot listen");
            eprintln!("paysync: cannot listen on {listen} ([daemon] listen): {e}");
            return EXIT_FAILED;
        }
    };
    let ctx = crate::daemon::DaemonCtx::from_app(app, Some(crate::metrics::install()));
    match crate::daemon::run(ctx, listener, stop_signal()).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            tracing::error!(error = %e, "stopped on an error");
            EXIT_FAILED
        }
    }
}

/// SIGTERM (systemd stop) or SIGINT (Ctrl-C).
/// SIGTERM or Ctrl-C. The handlers are installed **now**, before the service says READY: a
/// signal listener created lazily (when the returned future is first polled, after READY) let a
/// SIGTERM arriving just after READY kill the process without a clean shutdown.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    async fn recv(s: Option<Signal>) {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    async move {
        tokio::select! {
            _ = recv(term) => {}
            _ = recv(int) => {}
        }
    }
}

async fn status(settings: Settings, as_json: bool) -> u8 {
    // Only looks: a missing ledger is reported, never created (an empty one would hide that the
    // daemon writes elsewhere, or that its file was deleted).
    let ledger = match crate::store::open_existing(&settings.store.url).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("paysync: {e}");
            return EXIT_FAILED;
        }
    };
    let names: Vec<&str> = settings.accounts.iter().map(|a| a.name.as_str()).collect();
    let report = match StatusReport::read(&*ledger, &names, &settings.daemon.timezone).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("paysync: {e}");
            return EXIT_FAILED;
        }
    };
    if as_json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    EXIT_OK
}
