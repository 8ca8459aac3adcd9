//! The command line: argument parsing and one function per command.
//!
//! Exit codes: 0 = no errors; 1 = some operations failed (they stay retryable) or a check failed;
//! 2 = configuration or usage error.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::civil::Date;

use crate::app::{App, created_window};
use crate::config::{self, Settings};
use crate::domain::DecisionKind;
use crate::erp::erpnext::entry_body;
use crate::pipeline::{Observer, RunOptions};
use crate::summary::Summary;
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
    /// Validate the configuration and reach both APIs, saying which one fails and why.
    Check,
    /// Run against a built-in simulator of Mobbex and ERPNext with sample data (no set-up needed).
    Demo,
}

fn parse_date(s: &str) -> Result<Date, String> {
    s.parse::<Date>()
        .map_err(|e| format!("expected a date as YYYY-MM-DD, got {s:?}: {e}"))
}

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;

pub fn run(cli: Cli) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paysync: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = rt.block_on(async move {
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
            Command::Check => {
                let settings = match load_settings(&cli.config) {
                    Ok(s) => s,
                    Err(code) => return code,
                };
                telemetry::init(cli.log_format, settings.daemon.log_level.as_deref(), "warn");
                check(settings).await
            }
        }
    });
    ExitCode::from(code)
}

fn load_settings(explicit: &Option<PathBuf>) -> Result<Settings, u8> {
    let path = config::resolve_path(explicit.as_deref());
    config::load(&path).map_err(|e| {
        eprintln!("paysync: {e}");
        EXIT_CONFIG
    })
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
    let until = until.unwrap_or(today);
    if since > until {
        eprintln!("paysync: --since {since} is after --until {until}");
        return EXIT_CONFIG;
    }
    if let Some(a) = &account
        && settings.account(a).is_none()
    {
        let names: Vec<&str> = settings.accounts.iter().map(|a| a.name.as_str()).collect();
        eprintln!(
            "paysync: no account named {a:?} in {} (accounts: {})",
            settings.file.display(),
            names.join(", ")
        );
        return EXIT_CONFIG;
    }
    let app = match App::build(settings).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("paysync: {e}");
            return EXIT_FAILED;
        }
    };

    let bar = if show_bar {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} examined {pos} operations, {msg}")
                .expect("valid template"),
        );
        b.enable_steady_tick(Duration::from_millis(120));
        telemetry::attach_progress_bar(b.clone());
        Some(b)
    } else {
        None
    };
    let observer: Option<Observer> = bar.clone().map(|b| {
        let booked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        Arc::new(move |o: &crate::pipeline::Outcome| {
            b.inc(1);
            if o.kind.is_booked() {
                let n = booked.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                b.set_message(format!("{n} booked"));
            }
        }) as Observer
    });
    let opts = RunOptions {
        dry_run,
        collect_booked: dry_run,
        observer,
    };

    let window = created_window(&tz, since, until);
    let mut total = Summary::default();
    for acc in app
        .accounts
        .iter()
        .filter(|a| account.as_ref().is_none_or(|n| *n == a.settings.name))
    {
        let started = std::time::Instant::now();
        let result = app.engine.sync_window(acc, window, &opts).await;
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
    if let Some(b) = bar {
        b.finish_and_clear();
    }

    if dry_run {
        println!("Dry run: nothing was created. Entries that would be created:");
        for line in &total.booked {
            println!("  {} {}: {}", line.uid, line.kind, entry_body(&line.entry));
        }
    }
    print_summary(&total, since, until, dry_run);
    if total.errors() > 0 {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// The closing table.
pub fn print_summary(s: &Summary, since: Date, until: Date, dry_run: bool) {
    let title = if dry_run {
        "Summary (dry run)"
    } else {
        "Summary"
    };
    println!("{title}: operations created {since} .. {until}");
    let rows = [
        ("examined", s.examined),
        (
            if dry_run {
                "would book initial"
            } else {
                "booked initial"
            },
            s.get(DecisionKind::BookedInitial),
        ),
        (
            if dry_run {
                "would book additional"
            } else {
                "booked additional"
            },
            s.get(DecisionKind::BookedAdditional),
        ),
        ("already loaded", s.get(DecisionKind::AlreadyLoaded)),
        ("rejected", s.get(DecisionKind::Rejected)),
        ("pending", s.get(DecisionKind::Pending)),
        ("refunded", s.get(DecisionKind::Refunded)),
        ("order missing", s.get(DecisionKind::OrderMissing)),
        ("other skips", s.other_skips()),
        ("errors", s.errors()),
    ];
    for (label, n) in rows {
        println!("  {label:<22} {n:>8}");
    }
    for f in &s.failures {
        println!("  failure: {f}");
    }
}

async fn check(settings: Settings) -> u8 {
    let mut failed = false;
    println!("configuration {}: ok", settings.file.display());
    let app = match App::build(settings).await {
        Ok(a) => {
            println!(
                "ledger {}: ok",
                crate::store::redact_url(&a.settings.store.url)
            );
            a
        }
        Err(e) => {
            println!("FAILED: {e}");
            return EXIT_FAILED;
        }
    };
    match app.erp.whoami().await {
        Ok(user) => println!("ERPNext {}: ok (logged in as {user})", app.settings.erp.url),
        Err(e) => {
            failed = true;
            println!("ERPNext {}: FAILED: {e}", app.settings.erp.url);
        }
    }
    for acc in &app.accounts {
        let s = &acc.settings;
        match acc.source.check().await {
            Ok(()) => println!("account {} Mobbex {}: ok", s.name, s.api_url),
            Err(e) => {
                failed = true;
                println!("account {} Mobbex {}: FAILED: {e}", s.name, s.api_url);
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
