//! The real-ERPNext mode (`--erp-url URL --erp-token-file FILE`): Mobbex simulated, ERPNext a
//! real server. For each naming-series count of `--series` it measures, in one run, on the same
//! mix of payments:
//!
//! 1. **the server's ceiling**: the bodies paysync would send (`sync --dry-run` prints them),
//!    replayed straight at the server at 1, 2, 4 and 8 at once, in the same series as paysync
//!    would use (round-robin), in two passes (up, then down) after a warm-up — the best rate of
//!    the four;
//! 2. **paysync's sustained rate**: `paysync sync` over a fresh set of orders of the same mix,
//!    once per `--real-mif` setting (default `max_in_flight = "auto"`) — booked entries ÷ the
//!    time it was writing (first create sent to last answered, as the replays are timed), and
//!    ÷ the command's whole wall time, process start included;
//!
//! and checks that every paid operation got exactly one submitted entry. Every ERPNext request
//! of both goes through a counting proxy on loopback ([`proxy`]): calls per entry and write
//! latencies are the proxy's.
//!
//! Each run creates its own customers (`PB <tag> <n>`) and submitted Sales Orders, one set per
//! measurement (an order paid once cannot be paid again); nothing else on the server is touched.

mod proxy;
mod server;

use std::time::{Duration, Instant};

use anyhow::Context;
use paysync_sim::fixtures::{AccountConfig, ConfigBuilder, ErpAuth, paid_op};
use paysync_sim::{SimOptions, Simulator};
use serde_json::Value;

use crate::Args;
use crate::children::run_ok;
use server::{Mix, RealErp};

/// The series beyond ERPNext's default one (`ACC-PAY-.YYYY.-`), in the order they are added.
const EXTRA_SERIES: &[&str] = &[
    "ACC-PAY-PB2-.YYYY.-",
    "ACC-PAY-PB3-.YYYY.-",
    "ACC-PAY-PB4-.YYYY.-",
];
const DEFAULT_SERIES: &str = "ACC-PAY-.YYYY.-";
/// Concurrencies the ceiling is measured at.
const CEILING_CONCURRENCY: &[usize] = &[1, 2, 4, 8];

pub async fn run(args: &Args, url: &str, token_file: &std::path::Path) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("reading {}", token_file.display()))?;
    let (key, secret) = token
        .trim()
        .split_once(':')
        .context("--erp-token-file: expected one line KEY:SECRET")?;
    let proxy = proxy::Proxy::start(url).await?;
    let erp = std::sync::Arc::new(RealErp::new(&proxy.url, key, secret));
    let site = erp
        .describe(&args.erp_company, &args.erp_mode_of_payment)
        .await?;
    // Unique per run: the customers, orders and operation ids are named after it.
    let tag = format!(
        "{:x}",
        jiff::Timestamp::now().as_millisecond() % 0x1000_0000
    );
    println!("## Real ERPNext: {url}");
    println!();
    println!(
        "server: {}; company {}, mode of payment {} → {}; tag {tag}; {} operations per measurement",
        site.versions, args.erp_company, args.erp_mode_of_payment, site.paid_to, args.real_ops
    );
    println!();
    println!(
        "| series | ceiling: entries/s at 1 / 2 / 4 / 8 at once | ceiling (best) | paysync max_in_flight | paysync entries/s sustained (whole run) | sustained ÷ ceiling | sustained ÷ 1-series ceiling | booked | ERPNext calls per entry | write latency p50 / p90 ms (paysync) | deadlocks retried | exactly once |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut single_ceiling = None;
    let mut notes = Vec::new();
    for (round, &k) in args.series.iter().enumerate() {
        let series = series_list(k);
        // Ceiling: the dry run's bodies, replayed.
        let seed = 1000 + round as u64 * 2;
        let mix_a = Mix::generate(args.real_ops, seed, &format!("{tag}-c{k}"));
        let orders_a = erp
            .create_orders(&tag, &format!("c{k}"), &mix_a, &site)
            .await?;
        let bodies = dry_run_bodies(&erp, &proxy, &mix_a, &orders_a, &site).await?;
        if round == 0 {
            warm_up(args, &erp, &proxy, &site, &tag).await?;
        }
        // Two passes, up then down (1, 2, 4, 8, 8, 4, 2, 1), each on its own share of the
        // bodies: a server that speeds up or slows down during the run favours no concurrency.
        let passes: Vec<usize> = CEILING_CONCURRENCY
            .iter()
            .chain(CEILING_CONCURRENCY.iter().rev())
            .copied()
            .collect();
        let mut totals: Vec<(usize, Duration)> =
            vec![(0, Duration::ZERO); CEILING_CONCURRENCY.len()];
        for (&c, chunk) in passes.iter().zip(split(&bodies, passes.len())) {
            let r = erp.replay(&chunk, c, &series).await?;
            notes.push(format!(
                "- {k} series, replay at {}: {} entries, {:.2}/s, latency p50 {:.0} ms / p90 {:.0} ms, {} deadlocks sent again",
                r.concurrency, r.entries, r.rate, r.p50_ms, r.p90_ms, r.deadlocks
            ));
            let i = CEILING_CONCURRENCY
                .iter()
                .position(|&x| x == c)
                .expect("listed");
            totals[i].0 += r.entries;
            totals[i].1 += r.wall;
        }
        let rates: Vec<f64> = totals
            .iter()
            .map(|(n, wall)| *n as f64 / wall.as_secs_f64().max(1e-9))
            .collect();
        let ceiling = rates.iter().copied().fold(0.0, f64::max);
        let single = *single_ceiling.get_or_insert(ceiling);
        // paysync on a fresh set of the same mix, once per `max_in_flight` setting.
        for (m, mif) in args.real_mif.iter().enumerate() {
            let in_flight = in_flight_value(mif)?;
            let mix_b = Mix::generate(
                args.real_ops,
                seed + 1 + m as u64 * 100,
                &format!("{tag}-p{k}m{m}"),
            );
            let orders_b = erp
                .create_orders(&tag, &format!("p{k}m{m}"), &mix_b, &site)
                .await?;
            proxy.reset();
            let run =
                paysync_sync(&erp, &proxy, &mix_b, &orders_b, &site, &series, &in_flight).await?;
            let stats = proxy.stats();
            let check = erp.check_exactly_once(&mix_b, &orders_b).await?;
            // Sustained: while paysync was writing (first create sent to last answered, the
            // proxy's clock), as the replays are timed; whole run: process start included.
            let rate = check.booked as f64 / stats.write_span.as_secs_f64().max(1e-9);
            let whole = check.booked as f64 / run.as_secs_f64();
            println!(
                "| {k} | {} | **{ceiling:.2}** | `{mif}` | **{rate:.2}** ({whole:.2}) | **{:.3}** | **{:.3}** | {} | {:.3} | {:.0} / {:.0} | {} | {} |",
                rates
                    .iter()
                    .map(|r| format!("{r:.2}"))
                    .collect::<Vec<_>>()
                    .join(" / "),
                rate / ceiling,
                rate / single,
                check.booked,
                stats.calls as f64 / check.booked.max(1) as f64,
                stats.write_p50_ms,
                stats.write_p90_ms,
                stats.deadlocks,
                if check.problems.is_empty() {
                    "yes".to_string()
                } else {
                    format!("**no**: {}", check.problems.join("; "))
                },
            );
        }
    }
    println!();
    println!(
        "Ceiling replays (an eighth of one dry run's bodies each, in two passes; series round-robin; client latency):"
    );
    for n in notes {
        println!("{n}");
    }
    println!();
    proxy.shutdown().await;
    Ok(())
}

/// `k` series: ERPNext's default first (what a desk user sees), then the extra ones.
fn series_list(k: usize) -> Vec<String> {
    std::iter::once(DEFAULT_SERIES)
        .chain(EXTRA_SERIES.iter().copied())
        .take(k.max(1))
        .map(String::from)
        .collect()
}

/// `n` near-equal shares, dealt round-robin so that each has the same mix (the dry run lists
/// the entries in the order it planned them; consecutive slices would not).
fn split<T: Clone>(items: &[T], n: usize) -> Vec<Vec<T>> {
    let n = n.max(1);
    let mut out = vec![Vec::new(); n];
    for (i, item) in items.iter().enumerate() {
        out[i % n].push(item.clone());
    }
    out
}

/// A simulator serving the mix's operations as Mobbex, referencing the real orders.
async fn mobbex_for(mix: &Mix, orders: &[String]) -> anyhow::Result<Simulator> {
    let sim = Simulator::start(SimOptions::default()).await?;
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2);
    for (i, op) in mix.ops.iter().enumerate() {
        let mut o = paid_op(&op.uid, &orders[op.order], 0, at);
        o.total = op.amount;
        o.status = op.status;
        o.created = at + jiff::SignedDuration::from_millis(i as i64);
        o.updated = o.created;
        sim.add_operation(o);
    }
    Ok(sim)
}

/// The paysync configuration for the real server behind `proxy`.
fn config(
    dir: &std::path::Path,
    sim: &Simulator,
    erp: &RealErp,
    proxy: &proxy::Proxy,
    site: &server::Site,
    series: &[String],
    in_flight: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let opts = sim.options();
    let mut account = AccountConfig::new(
        "main",
        &sim.mobbex_url,
        &opts.mobbex_api_key,
        &opts.mobbex_access_token,
    )
    .company(&site.company)
    .mode_of_payment(&site.mode_of_payment)
    .line(&format!("paid_to = \"{}\"", site.paid_to));
    if series.len() > 1 {
        let list: Vec<String> = series.iter().map(|s| format!("\"{s}\"")).collect();
        account = account.line(&format!("naming_series = [{}]", list.join(", ")));
    }
    let path = dir.join("sync.toml");
    ConfigBuilder::new(
        dir.join("ledger.db"),
        &proxy.url,
        ErpAuth::Inline {
            key: erp.key.clone(),
            secret: erp.secret.clone(),
        },
    )
    .erp(&format!("max_in_flight = {in_flight}"))
    .erp("timeout = \"120s\"")
    .account(account)
    .write(&path)?;
    Ok(path)
}

fn sync_args() -> Vec<String> {
    let today = jiff::Zoned::now().date();
    let since = today.yesterday().expect("a date");
    vec![
        "sync".into(),
        "--since".into(),
        since.to_string(),
        "--until".into(),
        today.to_string(),
    ]
}

/// What `paysync sync --dry-run` would send for `mix`: one JSON body per entry.
async fn dry_run_bodies(
    erp: &RealErp,
    proxy: &proxy::Proxy,
    mix: &Mix,
    orders: &[String],
    site: &server::Site,
) -> anyhow::Result<Vec<Value>> {
    let sim = mobbex_for(mix, orders).await?;
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path(), &sim, erp, proxy, site, &[], "4")?;
    let mut a = sync_args();
    a.push("--dry-run".into());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = dir.path().join("dry-run.out");
    let cmd = crate::children::paysync_cmd(&cfg, &a, &dir.path().join("dry-run.log"))?
        .stdout(std::fs::File::create(&out)?)
        .status()
        .context("paysync sync --dry-run")?;
    // 0: all decided; 1: some operations unresolved (the mix has none that should be).
    anyhow::ensure!(
        cmd.success(),
        "paysync sync --dry-run exited with {cmd}; {}",
        crate::children::log_tail(&dir.path().join("dry-run.log"))
    );
    let text = std::fs::read_to_string(&out)?;
    let bodies: Vec<Value> = text
        .lines()
        .filter_map(|l| l.split_once(": {").map(|(_, rest)| format!("{{{rest}")))
        .map(|b| serde_json::from_str(&b).context("a dry-run body"))
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(
        bodies.len() == mix.to_book(),
        "the dry run planned {} entries, the mix has {} paid operations",
        bodies.len(),
        mix.to_book()
    );
    sim.shutdown().await;
    Ok(bodies)
}

/// A few writes before anything is measured, not counted: the first writes on a server that sat
/// idle are slower (its workers' caches, MariaDB's buffer pool), which would favour whatever is
/// measured last.
async fn warm_up(
    args: &Args,
    erp: &std::sync::Arc<RealErp>,
    proxy: &proxy::Proxy,
    site: &server::Site,
    tag: &str,
) -> anyhow::Result<()> {
    let mix = Mix::generate(args.real_ops.min(60), 999, &format!("{tag}-w"));
    let orders = erp.create_orders(tag, "w", &mix, site).await?;
    let bodies = dry_run_bodies(erp, proxy, &mix, &orders, site).await?;
    erp.replay(&bodies, 2, &series_list(1)).await?;
    Ok(())
}

/// `--real-mif`'s value as it goes into `sync.toml`.
fn in_flight_value(mif: &str) -> anyhow::Result<String> {
    if mif == "auto" {
        return Ok("\"auto\"".into());
    }
    let n: usize = mif
        .parse()
        .with_context(|| format!("--real-mif: {mif:?} is neither `auto` nor a number"))?;
    Ok(n.to_string())
}

/// `paysync sync` over `mix` with `max_in_flight = in_flight`: its wall time.
async fn paysync_sync(
    erp: &RealErp,
    proxy: &proxy::Proxy,
    mix: &Mix,
    orders: &[String],
    site: &server::Site,
    series: &[String],
    in_flight: &str,
) -> anyhow::Result<Duration> {
    let sim = mobbex_for(mix, orders).await?;
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path(), &sim, erp, proxy, site, series, in_flight)?;
    let a = sync_args();
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let started = Instant::now();
    let u = run_ok(&cfg, &a, &dir.path().join("sync.log")).await?;
    let wall = started.elapsed().max(u.wall);
    sim.shutdown().await;
    Ok(wall)
}
