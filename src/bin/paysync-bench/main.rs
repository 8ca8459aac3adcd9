//! `paysync-bench`: drives the real paysync (the same CLI code, in a child process so its CPU and
//! memory are its own) against the simulator, with configurable size, status mix, payments per
//! order and API latencies, and prints one table. See BENCHMARKS.md for how to read it.
//!
//! The child is this same executable re-run with the hidden first argument `__paysync`, which
//! hands the rest of the arguments to `paysync::cli` exactly as the `paysync` binary does.

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use paysync_sim::fixtures::ConfigBuilder;
use paysync_sim::sample::{ExpectedOutcome, SampleSpec, populate};
use paysync_sim::{Faults, SimOperation, SimOptions, SimSalesOrder, Simulator};
use rust_decimal::Decimal;

mod process;
use process::{Usage, cpu_model, proc_usage, run_blocking, wait_usage};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "paysync-bench",
    about = "Measure paysync against the simulator"
)]
struct Args {
    /// Operations in the backfill.
    #[arg(long, default_value_t = 10_000)]
    ops: usize,
    /// max_in_flight values to run the backfill with.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    mif: Vec<usize>,
    /// ERPNext write (submitted Payment Entry) latency, ms.
    #[arg(long, default_value_t = 20)]
    write_latency_ms: u64,
    /// ERPNext read latency, ms (the recorded server: 10.7 ms median).
    #[arg(long, default_value_t = 10)]
    read_latency_ms: u64,
    /// Mobbex latency per call, ms.
    #[arg(long, default_value_t = 10)]
    mobbex_latency_ms: u64,
    /// Share of paid orders among scenarios, in twentieths (9 = the default mix).
    #[arg(long, default_value_t = 9)]
    paid_weight: u64,
    /// Payments per paid order: 1 to this many.
    #[arg(long, default_value_t = 3)]
    max_payments: u64,
    /// Webhooks in the burst.
    #[arg(long, default_value_t = 1000)]
    webhooks: usize,
    /// Webhooks per second.
    #[arg(long, default_value_t = 100)]
    webhook_rate: u64,
    /// Idle daemon observation, seconds.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Rows in the big-ledger test.
    #[arg(long, default_value_t = 1_000_000)]
    ledger_rows: u64,
    /// Only these sections (backfill, webhooks, idle, ledger); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// A tiny run that only proves the benchmark works (CI).
    #[arg(long)]
    smoke: bool,
}

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("__paysync") {
        let cli = paysync::cli::Cli::parse_from(
            std::iter::once("paysync".to_string()).chain(argv[2..].iter().cloned()),
        );
        return paysync::cli::run(cli);
    }
    let mut args = Args::parse();
    if args.smoke {
        args.ops = 400;
        args.mif = vec![4];
        args.webhooks = 40;
        args.webhook_rate = 200;
        args.idle_secs = 1;
        args.ledger_rows = 20_000;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paysync-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn wants(args: &Args, section: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|s| s == section)
}

async fn run(args: Args) -> anyhow::Result<()> {
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
    println!();
    if wants(&args, "backfill") {
        backfill(&args).await?;
    }
    if wants(&args, "webhooks") {
        webhooks(&args).await?;
    }
    if wants(&args, "idle") {
        idle(&args).await?;
    }
    if wants(&args, "ledger") {
        big_ledger(&args).await?;
    }
    Ok(())
}

fn faults(args: &Args) -> Faults {
    Faults {
        erp_write_latency: Duration::from_millis(args.write_latency_ms),
        erp_read_latency: Duration::from_millis(args.read_latency_ms),
        mobbex_latency: Duration::from_millis(args.mobbex_latency_ms),
        ..Default::default()
    }
}

/// A temporary directory with a sync.toml pointing at `sim`.
fn write_config(dir: &Path, sim: &Simulator, mif: usize, listen: &str, schedule: &str) -> PathBuf {
    let path = dir.join("sync.toml");
    ConfigBuilder::for_simulator(sim, dir.join("ledger.db"))
        .daemon(&format!("schedule = \"{schedule}\""))
        .daemon(&format!("listen = \"{listen}\""))
        .erp(&format!("max_in_flight = {mif}"))
        .account_line("webhook_token = \"bench-hook-token\"")
        .write(&path)
        .expect("config written");
    path
}

fn paysync_cmd(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("own path"));
    c.arg("__paysync")
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn spec(args: &Args, ops: usize, seed: u64) -> SampleSpec {
    SampleSpec {
        operations: ops,
        seed,
        paid_weight: args.paid_weight,
        max_payments_per_order: args.max_payments,
        ..SampleSpec::default()
    }
}

async fn backfill(args: &Args) -> anyhow::Result<()> {
    println!("## Backfill: `sync --since` over {} operations", args.ops);
    println!();
    println!(
        "| max_in_flight | examined | booked | wall s | lower bound s | wall ÷ bound | ERPNext calls (writes + reads) | ERPNext calls per booked entry | Mobbex calls (pages of 50 needed) | CPU µs per op | peak RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let write = Duration::from_millis(args.write_latency_ms);
    let mut rerun_dir = None;
    for &mif in &args.mif {
        let opts = SimOptions {
            faults: faults(args),
            ..Default::default()
        };
        let sim = Simulator::start(opts.clone()).await?;
        let expected = populate(&sim, &spec(args, args.ops, 10));
        let dir = tempfile::tempdir()?;
        let cfg = write_config(dir.path(), &sim, mif, "127.0.0.1:0", "*/5 * * * *");
        sim.reset_stats();
        let u = run_blocking(paysync_cmd(
            &cfg,
            &["sync", "--since", "2026-10-01", "--until", "2026-10-31"],
        ))
        .await;
        anyhow::ensure!(u.status == 0, "sync exited with {}", u.status);
        let st = sim.stats();
        let booked = st.erp_writes_ok;
        let want = expected
            .iter()
            .filter(|e| {
                matches!(
                    e.outcome,
                    ExpectedOutcome::BookedInitial { .. }
                        | ExpectedOutcome::BookedAdditional { .. }
                )
            })
            .count() as u64;
        anyhow::ensure!(booked == want, "booked {booked}, expected {want}");
        let bound = write.mul_f64(booked as f64 / mif as f64);
        let erp_calls = st.erp_reads + st.erp_writes;
        let examined = expected.len() as u64;
        println!(
            "| {mif} | {examined} | {booked} | {:.2} | {:.2} | **{:.3}** | {erp_calls} ({} + {}) | **{:.3}** | {} ({}) | **{:.0}** | **{:.1}** |",
            u.wall.as_secs_f64(),
            bound.as_secs_f64(),
            u.wall.as_secs_f64() / bound.as_secs_f64(),
            st.erp_writes,
            st.erp_reads,
            erp_calls as f64 / booked as f64,
            st.mobbex_list_calls + st.mobbex_get_calls,
            examined.div_ceil(50),
            u.cpu.as_micros() as f64 / examined as f64,
            u.max_rss_kb as f64 / 1024.0,
        );
        if mif == *args.mif.iter().max().unwrap_or(&mif) {
            // Rerun over the already-loaded operations, on the same ledger.
            sim.reset_stats();
            let u2 = run_blocking(paysync_cmd(
                &cfg,
                &["sync", "--since", "2026-10-01", "--until", "2026-10-31"],
            ))
            .await;
            let st2 = sim.stats();
            rerun_dir = Some((
                examined,
                st2.erp_reads + st2.erp_writes,
                st2.erp_writes,
                u2.wall,
                u2.cpu,
            ));
        }
        drop(dir);
        sim.shutdown().await;
    }
    if let Some((examined, calls, writes, wall, cpu)) = rerun_dir {
        println!();
        println!(
            "Rerun over the same {examined} operations (all decided): ERPNext calls {calls} ({writes} writes) = **{:.4} per operation** (1 per {:.0}); wall {:.2} s; CPU {:.0} µs per op.",
            calls as f64 / examined as f64,
            if calls == 0 {
                f64::INFINITY
            } else {
                examined as f64 / calls as f64
            },
            wall.as_secs_f64(),
            cpu.as_micros() as f64 / examined as f64
        );
    }
    println!();
    Ok(())
}

/// Reserve a free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Start `paysync run` and wait for READY=1 on a private NOTIFY_SOCKET. Returns the child and
/// the time to ready.
fn start_daemon(cfg: &Path, dir: &Path) -> anyhow::Result<(Child, Duration)> {
    let sock_path = dir.join(format!("notify-{}.sock", free_port()));
    let sock = UnixDatagram::bind(&sock_path)?;
    sock.set_read_timeout(Some(Duration::from_secs(120)))?;
    let started = Instant::now();
    let child = paysync_cmd(cfg, &["run"])
        .env("NOTIFY_SOCKET", &sock_path)
        .spawn()?;
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf)?;
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            return Ok((child, started.elapsed()));
        }
    }
}

fn stop_daemon(child: Child) -> Usage {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    wait_usage(child, Instant::now())
}

async fn webhooks(args: &Args) -> anyhow::Result<()> {
    println!(
        "## Webhook burst: {} webhooks at {}/s into `paysync run` (max_in_flight 4)",
        args.webhooks, args.webhook_rate
    );
    println!();
    let opts = SimOptions {
        faults: faults(args),
        ..Default::default()
    };
    let sim = Simulator::start(opts.clone()).await?;
    sim.add_customer("Cliente Bench");
    let now = jiff::Timestamp::now();
    for i in 0..args.webhooks {
        let order = format!("SAL-ORD-2026-{:05}", i + 1);
        sim.add_sales_order(SimSalesOrder {
            name: order.clone(),
            customer: "Cliente Bench".into(),
            company: "Mi Empresa SA".into(),
            currency: "ARS".into(),
            grand_total: Decimal::from(1000),
            rounded_total: None,
            advance_paid: Decimal::ZERO,
            docstatus: 1,
            status: "To Deliver and Bill".into(),
            per_billed: Decimal::ZERO,
            transaction_date: jiff::civil::date(2026, 11, 1),
        });
        sim.add_operation(SimOperation {
            uid: format!("hook-{i:05}"),
            reference: order,
            status: 200,
            total: Decimal::from(1000),
            currency: "ARS".into(),
            created: now,
            updated: now,
            description: "bench".into(),
            payer_name: "x".into(),
            parent_uid: None,
            operation_type: "payment.v2".into(),
        });
    }
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let cfg = write_config(
        dir.path(),
        &sim,
        4,
        &format!("127.0.0.1:{port}"),
        "0 0 1 1 *",
    );
    let (child, _) = start_daemon(&cfg, dir.path())?;
    let client = reqwest::Client::new();
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let interval = Duration::from_secs_f64(1.0 / args.webhook_rate as f64);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut writes = sim.subscribe_writes();
    let started = Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..args.webhooks {
        tick.tick().await;
        let uid = format!("hook-{i:05}");
        let reference = format!("SAL-ORD-2026-{:05}", i + 1);
        sent.insert(uid.clone(), Instant::now());
        let url = format!("http://127.0.0.1:{port}/webhooks/mobbex/main?token=bench-hook-token");
        let client = client.clone();
        posts.spawn(async move {
            client
                .post(url)
                .json(&serde_json::json!({"type": "checkout", "data": {"payment": {
                    "id": uid, "status": {"code": "200"}, "total": 1000.0, "reference": reference
                }}}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
    }
    let mut ok = 0;
    while let Some(r) = posts.join_next().await {
        if matches!(r, Ok(Ok(200))) {
            ok += 1;
        }
    }
    let n = args.webhooks as u64;
    tokio::time::timeout(Duration::from_secs(300), writes.wait_for(|w| *w >= n)).await??;
    let total = started.elapsed();
    let usage = stop_daemon(child);
    let mut lat: Vec<f64> = sent
        .iter()
        .filter_map(|(uid, t)| {
            sim.commit_instant(uid)
                .map(|c| c.duration_since(*t).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    let w = args.write_latency_ms as f64;
    println!(
        "| webhooks answered 200 | entries | p50 ms | p99 ms | max ms | p50 ÷ write latency | p99 ÷ write latency | all booked in s | daemon peak RSS MB | daemon CPU µs per webhook |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {ok} | {} | {:.1} | {:.1} | {:.1} | {:.2} | **{:.2}** | {:.2} | {:.1} | {:.0} |",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(0.0),
        pct(0.5) / w,
        pct(0.99) / w,
        total.as_secs_f64(),
        usage.max_rss_kb as f64 / 1024.0,
        usage.cpu.as_micros() as f64 / args.webhooks as f64
    );
    println!();
    sim.shutdown().await;
    Ok(())
}

/// Resident set size (kB) and CPU time of a running process, from /proc.
async fn idle(args: &Args) -> anyhow::Result<()> {
    println!(
        "## Idle daemon over {} s (schedule every 5 minutes, nothing to do)",
        args.idle_secs
    );
    println!();
    let opts = SimOptions::default();
    let sim = Simulator::start(opts.clone()).await?;
    let dir = tempfile::tempdir()?;
    let cfg = write_config(
        dir.path(),
        &sim,
        4,
        &format!("127.0.0.1:{}", free_port()),
        "*/5 * * * *",
    );
    let (child, ready) = start_daemon(&cfg, dir.path())?;
    let pid = child.id();
    let (_, cpu0) = proc_usage(pid);
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let (rss, cpu1) = proc_usage(pid);
    let usage = stop_daemon(child);
    let cpu = cpu1.saturating_sub(cpu0);
    println!(
        "| ready after ms | RSS after idle MB | CPU over the period ms | CPU % | peak RSS MB |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {} | **{:.1}** | {} | {:.3} | {:.1} |",
        ready.as_millis(),
        rss as f64 / 1024.0,
        cpu.as_millis(),
        cpu.as_secs_f64() * 100.0 / args.idle_secs as f64,
        usage.max_rss_kb as f64 / 1024.0
    );
    println!();
    sim.shutdown().await;
    Ok(())
}

async fn big_ledger(args: &Args) -> anyhow::Result<()> {
    println!("## A ledger of {} rows", args.ledger_rows);
    println!();
    let opts = SimOptions {
        faults: faults(args),
        ..Default::default()
    };
    let sim = Simulator::start(opts.clone()).await?;
    let dir = tempfile::tempdir()?;
    let cfg = write_config(
        dir.path(),
        &sim,
        16,
        &format!("127.0.0.1:{}", free_port()),
        "0 0 1 1 *",
    );
    // Fill the ledger: history rows of another account plus this run's operations later.
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let fill_started = Instant::now();
    {
        let ledger = paysync::store::sqlite::SqliteLedger::open(&url).await?;
        let rows = args.ledger_rows as i64;
        sqlx::query(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $1) \
             INSERT INTO operations (account, uid, reference, sales_order, status_code, amount, currency, decision, reason, erp_entry, op_created_ms, first_seen_ms, last_seen_ms) \
             SELECT CASE WHEN x % 2 = 0 THEN 'main' ELSE 'history' END, 'hist-' || x, 'SAL-ORD-2025-' || x, 'SAL-ORD-2025-' || x, 200, '1000.00', 'ARS', \
                    'booked_initial', '', 'ACC-PAY-2025-' || x, 1700000000000 + x, 1700000000000 + x, 1700000000000 + x FROM c",
        )
        .bind(rows)
        .execute(ledger.pool())
        .await?;
    }
    let fill = fill_started.elapsed();
    // Startup of the daemon on it (config, migrations, listener → READY=1).
    let (child, ready) = start_daemon(&cfg, dir.path())?;
    stop_daemon(child);
    // `status`.
    let st = run_blocking(paysync_cmd(&cfg, &["status"])).await;
    // A month of operations booked into the big ledger, then a rerun over them.
    let n = if args.smoke { 300 } else { 10_000 };
    let expected = populate(&sim, &spec(args, n, 99));
    let first = run_blocking(paysync_cmd(
        &cfg,
        &["sync", "--since", "2026-10-01", "--until", "2026-10-31"],
    ))
    .await;
    anyhow::ensure!(first.status == 0, "sync exited with {}", first.status);
    sim.reset_stats();
    let rerun = run_blocking(paysync_cmd(
        &cfg,
        &["sync", "--since", "2026-10-01", "--until", "2026-10-31"],
    ))
    .await;
    let s = sim.stats();
    let calls = s.erp_reads + s.erp_writes;
    println!(
        "| filled in s | daemon start to READY ms | `status` s | rerun over {} decided operations: ERPNext calls (per op) | rerun wall s | rerun CPU µs per op | rerun peak RSS MB |",
        expected.len()
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {:.1} | **{}** | **{:.2}** | {calls} (**{:.4}**) | {:.2} | {:.0} | {:.1} |",
        fill.as_secs_f64(),
        ready.as_millis(),
        st.wall.as_secs_f64(),
        calls as f64 / expected.len() as f64,
        rerun.wall.as_secs_f64(),
        rerun.cpu.as_micros() as f64 / expected.len() as f64,
        rerun.max_rss_kb as f64 / 1024.0
    );
    println!();
    sim.shutdown().await;
    Ok(())
}
