//! `paysync-bench`: drives the real paysync (the same CLI code, in child processes so their CPU
//! and memory are their own) against the simulator, with configurable size, status mix, payments
//! per order, API latencies, ledger (SQLite, PostgreSQL) and number of instances, and prints one
//! report of tables. See BENCHMARKS.md for how to read it.
//!
//! The child is this same executable re-run with the hidden first argument `__paysync`, which
//! hands the rest of the arguments to `paysync::cli` exactly as the `paysync` binary does
//! (and, with `__http_floor`, the bare HTTP client of `floor.rs`).
//!
//! This file: the arguments, what they default to, and the dispatch to the sections
//! (`backfill.rs`, `webhooks.rs`, `resident.rs`); `ledger.rs` sets up each row's ledger,
//! `children.rs` starts and stops paysync, `check.rs` checks every row booked exactly once,
//! `process.rs` measures the children.

use std::time::Duration;

use clap::Parser;
use paysync_sim::Faults;
use paysync_sim::sample::SampleSpec;

mod backfill;
mod check;
mod children;
mod floor;
mod ledger;
mod process;
mod real_erp;
mod resident;
mod webhooks;

use ledger::LedgerKind;
use process::cpu_model;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "paysync-bench",
    about = "Measure paysync against the simulator",
    after_help = "PostgreSQL rows: each creates its own database paysync_bench_<random> through \
                  --postgres-url (an admin URL: it needs CREATEDB) and drops it afterwards. \
                  Without a URL only SQLite rows run, and the report says so."
)]
pub struct Args {
    /// Operations in the backfill.
    #[arg(long, default_value_t = 10_000)]
    pub ops: usize,
    /// max_in_flight values to run the backfill with.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub mif: Vec<usize>,
    /// Ledgers to run the backfill and the webhook burst on [default: sqlite,postgres when a
    /// PostgreSQL URL is known (--postgres-url or its environment variable), else sqlite].
    #[arg(long, value_delimiter = ',', value_enum)]
    pub ledger: Vec<LedgerKind>,
    /// Admin URL of the PostgreSQL server the postgres rows create their databases on.
    #[arg(long, env = "PAYSYNC_TEST_POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,
    /// `paysync run` instances sharing the ledger in the webhook burst, webhooks spread
    /// round-robin over them [default: 1,3 when postgres is in --ledger, else 1]. SQLite rows
    /// always run one instance (a SQLite ledger is one host's file): values above 1 need
    /// postgres in --ledger.
    #[arg(long, value_delimiter = ',')]
    pub instances: Vec<usize>,
    /// ERPNext write (submitted Payment Entry) latency, ms.
    #[arg(long, default_value_t = 20)]
    pub write_latency_ms: u64,
    /// ERPNext read latency, ms (the recorded server: 10.7 ms median).
    #[arg(long, default_value_t = 10)]
    pub read_latency_ms: u64,
    /// Mobbex latency per call, ms.
    #[arg(long, default_value_t = 10)]
    pub mobbex_latency_ms: u64,
    /// Share of paid orders among scenarios, in twentieths (9 = the default mix).
    #[arg(long, default_value_t = 9)]
    pub paid_weight: u64,
    /// Payments per paid order: 1 to this many.
    #[arg(long, default_value_t = 3)]
    pub max_payments: u64,
    /// Distinct customers the orders go to. Default: one per two operations (about one per
    /// order, as in a real shop), so per-customer costs show.
    #[arg(long)]
    pub customers: Option<usize>,
    /// Webhooks in the burst.
    #[arg(long, default_value_t = 1000)]
    pub webhooks: usize,
    /// Webhooks per second (over all instances together).
    #[arg(long, default_value_t = 100)]
    pub webhook_rate: u64,
    /// Idle daemon observation, seconds.
    #[arg(long, default_value_t = 60)]
    pub idle_secs: u64,
    /// Rows in the big-ledger test.
    #[arg(long, default_value_t = 1_000_000)]
    pub ledger_rows: u64,
    /// Only these sections (backfill, webhooks, idle, ledger); default all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// A real ERPNext to measure against instead of the simulator (Mobbex stays simulated):
    /// the real-ERPNext mode, which runs only its own section (see BENCHMARKS.md). It creates
    /// customers and submitted Sales Orders on that server, tagged with the run.
    #[arg(long, requires = "erp_token_file")]
    pub erp_url: Option<String>,
    /// A file holding `KEY:SECRET` of an ERPNext user who may create customers, Sales Orders
    /// and Payment Entries.
    #[arg(long)]
    pub erp_token_file: Option<std::path::PathBuf>,
    /// Real-ERPNext mode: the company the orders and entries are for.
    #[arg(long, default_value = "Test Co AR")]
    pub erp_company: String,
    /// Real-ERPNext mode: the mode of payment (its account for the company is `paid_to`).
    #[arg(long, default_value = "Mobbex")]
    pub erp_mode_of_payment: String,
    /// Real-ERPNext mode: operations per measurement (each measurement books about 70 % of them).
    #[arg(long, default_value_t = 480)]
    pub real_ops: usize,
    /// Real-ERPNext mode: naming-series counts to measure (1 = ERPNext's default series only).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub series: Vec<usize>,
    /// Real-ERPNext mode: the `[erp] max_in_flight` settings paysync is measured with, each on
    /// its own fresh orders (`auto`, or a number).
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    pub real_mif: Vec<String>,
    /// A tiny run that only proves the benchmark works (CI): SQLite rows, plus a PostgreSQL
    /// backfill and a 2-instance PostgreSQL burst when a PostgreSQL URL is known.
    #[arg(long)]
    pub smoke: bool,
}

impl Args {
    /// The instance counts of the burst on `ledger`.
    pub fn instances_on(&self, ledger: LedgerKind) -> Vec<usize> {
        match ledger {
            LedgerKind::Sqlite => vec![1],
            LedgerKind::Postgres => self.instances.clone(),
        }
    }

    /// The admin URL (validated as present by [`resolve`] whenever postgres rows run).
    pub fn postgres_admin(&self) -> &str {
        self.postgres_url.as_deref().unwrap_or_default()
    }
}

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("__paysync") {
        let cli = paysync::cli::Cli::parse_from(
            std::iter::once("paysync".to_string()).chain(argv[2..].iter().cloned()),
        );
        return paysync::cli::run(cli);
    }
    if argv.get(1).map(String::as_str) == Some("__http_floor") {
        return floor::child(&argv[2..]);
    }
    let (args, skipped) = match resolve(Args::parse()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("paysync-bench: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(args, skipped)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paysync-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The defaults that depend on other arguments, the smoke sizes, and the combinations that make
/// no sense. The second value says the PostgreSQL rows were left out for want of a URL.
fn resolve(mut args: Args) -> anyhow::Result<(Args, bool)> {
    // An empty value (`PAYSYNC_TEST_POSTGRES_URL=`) means none, as an unset one.
    args.postgres_url = args.postgres_url.filter(|u| !u.trim().is_empty());
    if let Some(url) = &args.postgres_url {
        anyhow::ensure!(
            paysync::store::postgres::is_postgres_url(url),
            "--postgres-url: not a postgres:// URL"
        );
    }
    let skipped = args.ledger.is_empty() && args.postgres_url.is_none();
    if args.ledger.is_empty() {
        args.ledger.push(LedgerKind::Sqlite);
        if args.postgres_url.is_some() {
            args.ledger.push(LedgerKind::Postgres);
        }
    }
    let mut seen = Vec::new();
    args.ledger.retain(|l| {
        let first = !seen.contains(l);
        seen.push(*l);
        first
    });
    let postgres = args.ledger.contains(&LedgerKind::Postgres);
    anyhow::ensure!(
        !postgres || args.postgres_url.is_some(),
        "--ledger postgres needs --postgres-url or PAYSYNC_TEST_POSTGRES_URL"
    );
    if args.smoke {
        args.ops = 400;
        args.mif = vec![4];
        args.webhooks = 40;
        args.webhook_rate = 200;
        args.idle_secs = 1;
        args.ledger_rows = 20_000;
        if args.instances.is_empty() && postgres {
            args.instances = vec![2];
        }
    }
    if args.instances.is_empty() {
        args.instances = if postgres { vec![1, 3] } else { vec![1] };
    }
    anyhow::ensure!(
        args.instances.iter().all(|&n| n >= 1),
        "--instances: at least 1"
    );
    anyhow::ensure!(
        postgres || args.instances.iter().all(|&n| n == 1),
        "--instances above 1 need postgres in --ledger (instances share a PostgreSQL ledger; a SQLite one is one host's file)"
    );
    anyhow::ensure!(args.mif.iter().all(|&m| m >= 1), "--mif: at least 1");
    anyhow::ensure!(args.webhook_rate >= 1, "--webhook-rate: at least 1");
    anyhow::ensure!(args.webhooks >= 1, "--webhooks: at least 1");
    Ok((args, skipped))
}

fn wants(args: &Args, section: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|s| s == section)
}

async fn run(args: Args, postgres_skipped: bool) -> anyhow::Result<()> {
    println!("# paysync-bench");
    println!(
        "machine: {} cores, {}; paysync {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model(),
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "latencies: ERPNext write {} ms, read {} ms; Mobbex {} ms",
        args.write_latency_ms, args.read_latency_ms, args.mobbex_latency_ms
    );
    println!(
        "ledgers: {}",
        args.ledger
            .iter()
            .map(|l| l.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if postgres_skipped {
        println!(
            "PostgreSQL rows skipped: no --postgres-url and PAYSYNC_TEST_POSTGRES_URL not set"
        );
    }
    println!();
    if let (Some(url), Some(token)) = (&args.erp_url, &args.erp_token_file) {
        return real_erp::run(&args, url, token).await;
    }
    if wants(&args, "backfill") {
        backfill::run(&args).await?;
    }
    if wants(&args, "webhooks") {
        webhooks::run(&args).await?;
    }
    if wants(&args, "idle") {
        resident::idle(&args).await?;
    }
    if wants(&args, "ledger") {
        resident::big_ledger(&args).await?;
    }
    Ok(())
}

pub fn faults(args: &Args) -> Faults {
    Faults {
        erp_write_latency: Duration::from_millis(args.write_latency_ms),
        erp_read_latency: Duration::from_millis(args.read_latency_ms),
        mobbex_latency: Duration::from_millis(args.mobbex_latency_ms),
        ..Default::default()
    }
}

pub fn spec(args: &Args, ops: usize, seed: u64) -> SampleSpec {
    SampleSpec {
        operations: ops,
        seed,
        paid_weight: args.paid_weight,
        max_payments_per_order: args.max_payments,
        customers: args.customers.unwrap_or(ops / 2).max(1),
        ..SampleSpec::default()
    }
}
