//! The sections about a daemon's standing costs, on SQLite (one host's ledger file): an idle
//! `paysync run` (memory and CPU with nothing to do) and a ledger of a million rows (start-up,
//! `status`, and a month's backfill and rerun on top of it).

use std::time::{Duration, Instant};

use paysync_sim::sample::populate;
use paysync_sim::{SimOptions, Simulator};

use crate::children::{Daemon, free_port, run_ok, stop_all, write_config};
use crate::ledger::{LedgerKind, Scratch};
use crate::process::proc_usage;
use crate::{Args, check, faults, spec};

const SYNC: &[&str] = &["sync", "--since", "2026-10-01", "--until", "2026-10-31"];

pub async fn idle(args: &Args) -> anyhow::Result<()> {
    println!(
        "## Idle daemon over {} s (schedule every 5 minutes, nothing to do)",
        args.idle_secs
    );
    println!();
    let sim = Simulator::start(SimOptions::default()).await?;
    let (dir, _scratch, cfg) = sqlite_setup(&sim, 4, "*/5 * * * *").await?;
    let daemon = Daemon::start(&cfg, dir.path(), "idle")?;
    let ready = daemon.ready;
    let pid = daemon.pid();
    let (_, cpu0) = proc_usage(pid);
    // The idle period is what is measured: there is nothing to wait for but time.
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let (rss, cpu1) = proc_usage(pid);
    let usage = stop_all(vec![daemon]).await?.remove(0);
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

pub async fn big_ledger(args: &Args) -> anyhow::Result<()> {
    println!("## A ledger of {} rows", args.ledger_rows);
    println!();
    let sim = Simulator::start(SimOptions {
        faults: faults(args),
        ..Default::default()
    })
    .await?;
    let (dir, scratch, cfg) = sqlite_setup(&sim, 16, "0 0 1 1 *").await?;
    // Fill the ledger: history rows of another account plus this run's operations later.
    let fill_started = Instant::now();
    {
        let ledger = paysync::store::sqlite::SqliteLedger::open(&scratch.url).await?;
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
    let daemon = Daemon::start(&cfg, dir.path(), "big-ledger")?;
    let ready = daemon.ready;
    stop_all(vec![daemon]).await?;
    // `status`.
    let st = run_ok(&cfg, &["status"], &dir.path().join("status.log")).await?;
    // A month of operations booked into the big ledger, then a rerun over them.
    let n = if args.smoke { 300 } else { 10_000 };
    let expected = populate(&sim, &spec(args, n, 99));
    let before = check::entries_before(&sim);
    run_ok(&cfg, SYNC, &dir.path().join("sync.log")).await?;
    check::exactly_once(&sim, &expected, &before, "big ledger")?;
    sim.reset_stats();
    let rerun = run_ok(&cfg, SYNC, &dir.path().join("rerun.log")).await?;
    check::exactly_once(&sim, &expected, &before, "big ledger, rerun")?;
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

/// A SQLite ledger in a fresh directory and a `sync.toml` for `sim` (listening on a free port).
async fn sqlite_setup(
    sim: &Simulator,
    max_in_flight: usize,
    schedule: &str,
) -> anyhow::Result<(tempfile::TempDir, Scratch, std::path::PathBuf)> {
    let dir = tempfile::tempdir()?;
    let scratch = Scratch::create(LedgerKind::Sqlite, dir.path(), "").await?;
    let cfg = write_config(
        dir.path(),
        "sync.toml",
        sim,
        &scratch.url,
        max_in_flight,
        &format!("127.0.0.1:{}", free_port()),
        schedule,
    )?;
    Ok((dir, scratch, cfg))
}
