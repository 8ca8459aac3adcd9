//! The webhook burst: N webhooks at a fixed rate into `paysync run`, one row per ledger ×
//! instance count. With several instances they share one PostgreSQL database, each with its own
//! `[daemon] listen` and otherwise the same configuration, and the webhooks are spread
//! round-robin over them as a load balancer would. Every webhook is a paid operation on its own
//! order (so every one books an entry and the latency is webhook → entry for each); polls are
//! scheduled once a year, so only the webhooks book.
//!
//! Measured per row: throughput (entries ÷ time from the first webhook sent to the last entry
//! booked), when the last webhook was sent (whether the sender kept the rate), latency webhook sent → entry committed in the simulator (p50, p99, max), each
//! instance's peak RSS, and the CPU of all instances together per webhook.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use paysync_sim::fixtures::{order, paid_op};
use paysync_sim::sample::{Expected, ExpectedOutcome};
use paysync_sim::{SimOptions, Simulator};
use rust_decimal::Decimal;

use crate::children::{Daemon, HOOK_TOKEN, free_port, stop_all, write_config};
use crate::ledger::{LedgerKind, Scratch};
use crate::{Args, check, faults};

const CUSTOMER: &str = "Cliente Bench";
/// `max_in_flight` of every instance.
const MIF: usize = 4;

pub async fn run(args: &Args) -> anyhow::Result<()> {
    println!(
        "## Webhook burst: {} webhooks at {}/s into `paysync run` (max_in_flight {MIF} per instance)",
        args.webhooks, args.webhook_rate
    );
    println!();
    println!(
        "| ledger | instances | webhooks answered 200 | entries | entries per s | p50 ms | p99 ms | max ms | p50 ÷ write latency | p99 ÷ write latency | all sent in s | all booked in s | peak RSS MB per instance | CPU µs per webhook (all instances) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &ledger in &args.ledger {
        for n in args.instances_on(ledger) {
            row(args, ledger, n).await?;
        }
    }
    println!();
    Ok(())
}

fn order_name(i: usize) -> String {
    format!("SAL-ORD-2026-{:05}", i + 1)
}

fn uid(i: usize) -> String {
    format!("hook-{i:05}")
}

/// One paid operation on its own order per webhook; the expected set: each booked once, as the
/// initial payment of its order.
fn seed(sim: &Simulator, webhooks: usize) -> Vec<Expected> {
    sim.add_customer(CUSTOMER);
    let now = jiff::Timestamp::now();
    let total = Decimal::from(1000);
    (0..webhooks)
        .map(|i| {
            sim.add_sales_order(order(&order_name(i), CUSTOMER, "1000"));
            sim.add_operation(paid_op(&uid(i), &order_name(i), 1000, now));
            Expected {
                uid: uid(i),
                outcome: ExpectedOutcome::BookedInitial {
                    order: order_name(i),
                    allocated: total,
                    party: CUSTOMER.into(),
                },
            }
        })
        .collect()
}

async fn row(args: &Args, ledger: LedgerKind, instances: usize) -> anyhow::Result<()> {
    let name = format!("webhooks {} × {instances}", ledger.name());
    let sim = Simulator::start(SimOptions {
        faults: faults(args),
        ..Default::default()
    })
    .await?;
    let expected = seed(&sim, args.webhooks);
    let before = check::entries_before(&sim);
    let dir = tempfile::tempdir()?;
    let scratch = Scratch::create(ledger, dir.path(), args.postgres_admin()).await?;
    // Started one after the other: the first migrates the ledger, the others find it migrated.
    let mut daemons = Vec::new();
    let mut addrs = Vec::new();
    for k in 0..instances {
        let addr = format!("127.0.0.1:{}", free_port());
        let cfg = write_config(
            dir.path(),
            &format!("sync-{k}.toml"),
            &sim,
            &scratch.url,
            MIF,
            &addr,
            "0 0 1 1 *",
        )?;
        daemons.push(Daemon::start(&cfg, dir.path(), &format!("instance-{k}"))?);
        addrs.push(addr);
    }

    let client = reqwest::Client::new();
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.webhook_rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut writes = sim.subscribe_writes();
    let started = Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    let mut last_sent = started;
    for i in 0..args.webhooks {
        tick.tick().await;
        last_sent = Instant::now();
        sent.insert(uid(i), last_sent);
        let url = format!(
            "http://{}/webhooks/mobbex/main?token={HOOK_TOKEN}",
            addrs[i % instances]
        );
        let body = serde_json::json!({"type": "checkout", "data": {"payment": {
            "id": uid(i), "status": {"code": "200"}, "total": 1000.0, "reference": order_name(i)
        }}});
        let client = client.clone();
        posts.spawn(async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
    }
    let mut ok = 0;
    let mut refused = Vec::new();
    while let Some(r) = posts.join_next().await {
        match r? {
            Ok(200) => ok += 1,
            other => refused.push(format!("{other:?}")),
        }
    }
    // A webhook not taken would never be booked (no polls): say so instead of waiting.
    anyhow::ensure!(
        refused.is_empty(),
        "{name}: {} webhooks not answered 200, e.g. {}",
        refused.len(),
        refused[0]
    );
    let n = args.webhooks as u64;
    let booked_all = tokio::time::timeout(Duration::from_secs(300), writes.wait_for(|w| *w >= n))
        .await
        .is_ok();
    let usages = stop_all(daemons).await?;
    anyhow::ensure!(
        booked_all,
        "{name}: only {} of {n} entries after 300 s",
        *writes.borrow()
    );
    // After the clean stops: anything a daemon still had in flight is in the simulator now.
    check::exactly_once(&sim, &expected, &before, &name)?;

    let commits: Vec<(Instant, Instant)> = sent
        .iter()
        .map(|(uid, t)| {
            sim.commit_instant(uid)
                .map(|c| (*t, c))
                .with_context(|| format!("{name}: no commit time for {uid}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut lat: Vec<f64> = commits
        .iter()
        .map(|(t, c)| c.duration_since(*t).as_secs_f64() * 1000.0)
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let last = commits.iter().map(|(_, c)| *c).max().unwrap_or(started);
    let span = last.duration_since(started);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    let w = args.write_latency_ms as f64;
    let rss: Vec<String> = usages
        .iter()
        .map(|u| format!("{:.1}", u.max_rss_kb as f64 / 1024.0))
        .collect();
    let cpu: Duration = usages.iter().map(|u| u.cpu).sum();
    println!(
        "| {} | {instances} | {ok} | {} | **{:.1}** | {:.1} | {:.1} | {:.1} | {:.2} | **{:.2}** | {:.2} | {:.2} | {} | {:.0} |",
        ledger.name(),
        lat.len(),
        lat.len() as f64 / span.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(0.0),
        pct(0.5) / w,
        pct(0.99) / w,
        last_sent.duration_since(started).as_secs_f64(),
        span.as_secs_f64(),
        rss.join(" / "),
        cpu.as_micros() as f64 / args.webhooks as f64
    );
    sim.shutdown().await;
    drop(scratch);
    Ok(())
}
