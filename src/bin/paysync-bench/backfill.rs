//! The backfill section: `paysync sync --since` over a month of the oracle's operations, one row
//! per ledger × `max_in_flight`, each on a fresh simulator and a fresh ledger; at the largest
//! `max_in_flight` of each ledger, a rerun over the same, now decided, operations.

use std::time::Duration;

use paysync_sim::sample::populate;
use paysync_sim::{SimOptions, Simulator};

use crate::children::{run_ok, write_config};
use crate::ledger::{LedgerKind, Scratch};
use crate::{Args, check, faults, spec};

pub(crate) const SYNC: &[&str] = &["sync", "--since", "2026-10-01", "--until", "2026-10-31"];

/// The backfill's `sync.toml` in `dir`: against `sim`, ledger at `store_url`, `mif` writes at once.
pub fn sync_config(
    dir: &std::path::Path,
    sim: &Simulator,
    store_url: &str,
    mif: usize,
) -> anyhow::Result<std::path::PathBuf> {
    write_config(
        dir,
        "sync.toml",
        sim,
        store_url,
        mif,
        "127.0.0.1:0",
        "*/5 * * * *",
    )
}

/// What a rerun measured, printed under the table.
struct Rerun {
    ledger: LedgerKind,
    examined: u64,
    calls: u64,
    writes: u64,
    wall: Duration,
    cpu: Duration,
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    println!("## Backfill: `sync --since` over {} operations", args.ops);
    println!();
    println!(
        "| ledger | max_in_flight | examined | booked | wall s | lower bound s | wall ÷ bound | ERPNext calls (writes + reads) | ERPNext calls per booked entry | Mobbex calls (pages of 50 needed) | CPU µs per op | peak RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut reruns = Vec::new();
    let top = args.mif.iter().copied().max().unwrap_or(1);
    for &ledger in &args.ledger {
        for &mif in &args.mif {
            if let Some(r) = row(args, ledger, mif, mif == top).await? {
                reruns.push(r);
            }
        }
    }
    println!();
    let floor = crate::floor::measure(args, top).await?;
    let floor_cpu = floor.usage.cpu.as_micros() as f64;
    println!(
        "HTTP floor (`floor.rs`): the same {} creates sent {top} at a time by a bare client built as paysync's, nothing else: CPU **{:.0} µs per examined operation** ({:.0} per create), wall {:.2} s.",
        floor.creates,
        floor_cpu / floor.examined as f64,
        floor_cpu / floor.creates as f64,
        floor.usage.wall.as_secs_f64()
    );
    for r in reruns {
        println!(
            "Rerun ({}) over the same {} operations (all decided): ERPNext calls {} ({} writes) = **{:.4} per operation** (1 per {:.0}); wall {:.2} s; CPU {:.0} µs per op.",
            r.ledger.name(),
            r.examined,
            r.calls,
            r.writes,
            r.calls as f64 / r.examined as f64,
            if r.calls == 0 {
                f64::INFINITY
            } else {
                r.examined as f64 / r.calls as f64
            },
            r.wall.as_secs_f64(),
            r.cpu.as_micros() as f64 / r.examined as f64
        );
    }
    println!();
    Ok(())
}

/// One row (and the rerun after it when `rerun`).
async fn row(
    args: &Args,
    ledger: LedgerKind,
    mif: usize,
    rerun: bool,
) -> anyhow::Result<Option<Rerun>> {
    let name = format!("backfill {} max_in_flight {mif}", ledger.name());
    let sim = Simulator::start(SimOptions {
        faults: faults(args),
        ..Default::default()
    })
    .await?;
    let expected = populate(&sim, &spec(args, args.ops, 10));
    let before = check::entries_before(&sim);
    let dir = tempfile::tempdir()?;
    let scratch = Scratch::create(ledger, dir.path(), args.postgres_admin()).await?;
    let cfg = sync_config(dir.path(), &sim, &scratch.url, mif)?;
    sim.reset_stats();
    let u = run_ok(&cfg, SYNC, &dir.path().join("sync.log")).await?;
    let st = sim.stats();
    let booked = check::exactly_once(&sim, &expected, &before, &name)?;
    let write = Duration::from_millis(args.write_latency_ms);
    let bound = write.mul_f64(booked as f64 / mif as f64);
    let erp_calls = st.erp_reads + st.erp_writes;
    let examined = expected.len() as u64;
    println!(
        "| {} | {mif} | {examined} | {booked} | {:.2} | {:.2} | **{:.3}** | {erp_calls} ({} + {}) | **{:.3}** | {} ({}) | **{:.0}** | **{:.1}** |",
        ledger.name(),
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
    let mut out = None;
    if rerun {
        // Over the already-loaded operations, on the same ledger: nothing may be booked again.
        sim.reset_stats();
        let u2 = run_ok(&cfg, SYNC, &dir.path().join("rerun.log")).await?;
        let st2 = sim.stats();
        check::exactly_once(&sim, &expected, &before, &format!("{name}, rerun"))?;
        out = Some(Rerun {
            ledger,
            examined,
            calls: st2.erp_reads + st2.erp_writes,
            writes: st2.erp_writes,
            wall: u2.wall,
            cpu: u2.cpu,
        });
    }
    sim.shutdown().await;
    drop(scratch);
    Ok(out)
}
