//! `paysync demo`: see paysync work on a fresh machine with one command.
//!
//! Starts the simulator of both APIs in-process on loopback, loads a sample month (October 2026)
//! of Mobbex operations and ERPNext sales orders, writes a `sync.toml` pointing at them with a
//! temporary SQLite ledger, and runs the real `sync` pipeline twice: the first run books, the second
//! books nothing. It ends by comparing what was booked with what the sample says must be booked.
//!
//! Prints its tables with `summary` and ends with `exit`'s codes; it must not import `cli`
//! (which dispatches to it).

use std::collections::HashMap;

use jiff::civil::{Date, date};

use crate::app::{App, created_window};
use crate::config;
use crate::domain::DecisionKind;
use crate::exit::{EXIT_FAILED, EXIT_OK};
use crate::pipeline::RunOptions;
use crate::source::Window;
use crate::summary::Summary;
use paysync_sim::fixtures::ConfigBuilder;
use paysync_sim::sample;
use paysync_sim::{SimOptions, Simulator};

use crate::summary::print_summary;

pub async fn run() -> u8 {
    match run_inner().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("paysync demo: {e:#}");
            EXIT_FAILED
        }
    }
}

/// What the demo runs against: the simulator with its sample, and an app configured for it.
struct Demo {
    /// What the sample says must become of each operation.
    expected: Vec<sample::Expected>,
    /// Entries the sample put in ERPNext before the first run (not created by paysync).
    preexisting: Vec<String>,
    /// Dropped before `dir`: the ledger is in it.
    app: App,
    dir: tempfile::TempDir,
    sim: Simulator,
}

/// The sample month (October 2026), both days inclusive.
const SINCE: Date = date(2026, 10, 1);
const UNTIL: Date = date(2026, 10, 31);

async fn run_inner() -> anyhow::Result<u8> {
    let demo = set_up().await?;
    print_intro(&demo);
    let window = created_window(&demo.app.settings.daemon.timezone, SINCE, UNTIL);
    let run_opts = RunOptions {
        dry_run: false,
        collect_booked: true,
        observer: None,
        rebook: None,
    };
    let first = first_run(&demo, window, &run_opts).await?;
    print_created_entries(&demo);
    print_not_booked(&demo.app).await?;
    let second = second_run(&demo, window, &run_opts).await?;
    let mismatches = check_against_sample(&demo).await?;
    let new_bookings =
        second.get(DecisionKind::BookedInitial) + second.get(DecisionKind::BookedAdditional);
    println!();
    let code = if mismatches == 0 && new_bookings == 0 && first.errors() == 0 {
        println!(
            "Every operation got the decision the sample expects; the second run booked nothing."
        );
        EXIT_OK
    } else {
        println!("{mismatches} mismatches, {new_bookings} bookings on the second run.");
        EXIT_FAILED
    };
    let Demo { sim, .. } = demo;
    sim.shutdown().await;
    Ok(code)
}

/// Start the simulator with the sample, write a `sync.toml` for it in a temporary directory
/// (with the ledger there too), and build the app from it.
async fn set_up() -> anyhow::Result<Demo> {
    let opts = SimOptions::default();
    let sim = Simulator::start(opts.clone()).await?;
    let expected = sample::demo_month(&sim);
    let preexisting: Vec<String> = sim.payment_entries().into_iter().map(|e| e.name).collect();

    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("sync.toml");
    ConfigBuilder::for_simulator(&sim, dir.path().join("paysync.db"))
        .comment("Written by `paysync demo`: the simulator's addresses and credentials.")
        .erp("max_in_flight = 4")
        .write(&config_path)?;
    let settings = config::load_with_env(&config_path, &HashMap::new())?;
    let app = App::build(settings).await?;
    Ok(Demo {
        expected,
        preexisting,
        app,
        dir,
        sim,
    })
}

fn print_intro(demo: &Demo) {
    println!("paysync demo");
    println!("  simulated Mobbex  {}", demo.sim.mobbex_url);
    println!("  simulated ERPNext {}", demo.sim.erpnext_url);
    println!(
        "  ledger            {}",
        demo.dir.path().join("paysync.db").display()
    );
    println!(
        "  sample            {} Mobbex operations created in October 2026",
        demo.expected.len()
    );
    println!();
}

/// The run that books: as `paysync sync` would, with its closing table.
async fn first_run(demo: &Demo, window: Window, run_opts: &RunOptions) -> anyhow::Result<Summary> {
    println!("$ paysync sync --since {SINCE} --until {UNTIL}");
    let first = match demo
        .app
        .engine
        .sync_window(&demo.app.accounts[0], window, run_opts)
        .await
    {
        Ok(s) => s,
        Err((_, e)) => anyhow::bail!("sync failed: {e}"),
    };
    print_summary(&first, SINCE, UNTIL, false);
    Ok(first)
}

/// The Payment Entries paysync created in the simulated ERPNext, by name.
fn print_created_entries(demo: &Demo) {
    println!();
    println!("Payment Entries created in ERPNext:");
    println!(
        "  {:<20} {:<26} {:<28} {:>14}  allocation",
        "entry", "reference_no (Mobbex)", "customer", "amount"
    );
    let mut entries: Vec<_> = demo
        .sim
        .payment_entries()
        .into_iter()
        .filter(|e| !demo.preexisting.contains(&e.name))
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in &entries {
        let allocation = match e.references.first() {
            Some(r) => format!("{:.2} to {}", r.allocated_amount, r.reference_name),
            None => "unallocated (additional payment, on account)".into(),
        };
        println!(
            "  {:<20} {:<26} {:<28} {:>14}  {}",
            e.name,
            e.reference_no.as_deref().unwrap_or("-"),
            e.party,
            format!("{:.2}", e.paid_amount),
            allocation
        );
    }
}

/// Every operation not booked, with the ledger's reason.
async fn print_not_booked(app: &App) -> anyhow::Result<()> {
    println!();
    println!("Operations not booked, and why (from the ledger):");
    for kind in DecisionKind::ALL.into_iter().filter(|k| !k.is_booked()) {
        for row in app.ledger.latest("main", kind, 100).await? {
            println!("  {:<26} {:<18} {}", row.uid, kind.as_str(), row.reason);
        }
    }
    Ok(())
}

/// The same window again: it must book nothing.
async fn second_run(demo: &Demo, window: Window, run_opts: &RunOptions) -> anyhow::Result<Summary> {
    println!();
    println!("Second run (nothing new to book):");
    let second = match demo
        .app
        .engine
        .sync_window(&demo.app.accounts[0], window, run_opts)
        .await
    {
        Ok(s) => s,
        Err((_, e)) => anyhow::bail!("second sync failed: {e}"),
    };
    println!("  {second}");
    Ok(second)
}

/// Self-check: the ledger's decision for each operation against the sample's; prints each
/// mismatch and returns how many.
async fn check_against_sample(demo: &Demo) -> anyhow::Result<usize> {
    let uids: Vec<String> = demo.expected.iter().map(|e| e.uid.clone()).collect();
    let rows = demo.app.ledger.rows("main", &uids).await?;
    let mut mismatches = 0;
    for e in &demo.expected {
        let want = DecisionKind::parse(e.outcome.decision()).ok_or_else(|| {
            anyhow::anyhow!(
                "the sample names an unknown decision {:?}",
                e.outcome.decision()
            )
        })?;
        let got = rows.get(&e.uid).map(|r| r.decision);
        if got != Some(want) {
            mismatches += 1;
            println!("  MISMATCH {}: expected {want}, got {got:?}", e.uid);
        }
    }
    Ok(mismatches)
}
