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

use jiff::civil::date;

use crate::app::{App, created_window};
use crate::config;
use crate::domain::DecisionKind;
use crate::exit::{EXIT_FAILED, EXIT_OK};
use crate::pipeline::RunOptions;
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

async fn run_inner() -> anyhow::Result<u8> {
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

    println!("paysync demo");
    println!("  simulated Mobbex  {}", sim.mobbex_url);
    println!("  simulated ERPNext {}", sim.erpnext_url);
    println!(
        "  ledger            {}",
        dir.path().join("paysync.db").display()
    );
    println!(
        "  sample            {} Mobbex operations created in October 2026",
        expected.len()
    );
    println!();

    let (since, until) = (date(2026, 10, 1), date(2026, 10, 31));
    let window = created_window(&app.settings.daemon.timezone, since, until);
    let run_opts = RunOptions {
        dry_run: false,
        collect_booked: true,
        observer: None,
        rebook: None,
    };
    println!("$ paysync sync --since {since} --until {until}");
    let first = match app
        .engine
        .sync_window(&app.accounts[0], window, &run_opts)
        .await
    {
        Ok(s) => s,
        Err((_, e)) => anyhow::bail!("sync failed: {e}"),
    };
    print_summary(&first, since, until, false);

    println!();
    println!("Payment Entries created in ERPNext:");
    println!(
        "  {:<20} {:<26} {:<28} {:>14}  allocation",
        "entry", "reference_no (Mobbex)", "customer", "amount"
    );
    let mut entries: Vec<_> = sim
        .payment_entries()
        .into_iter()
        .filter(|e| !preexisting.contains(&e.name))
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

    println!();
    println!("Operations not booked, and why (from the ledger):");
    for kind in DecisionKind::ALL.into_iter().filter(|k| !k.is_booked()) {
        for row in app.ledger.latest("main", kind, 100).await? {
            println!("  {:<26} {:<18} {}", row.uid, kind.as_str(), row.reason);
        }
    }

    println!();
    println!("Second run (nothing new to book):");
    let second = match app
        .engine
        .sync_window(&app.accounts[0], window, &run_opts)
        .await
    {
        Ok(s) => s,
        Err((_, e)) => anyhow::bail!("second sync failed: {e}"),
    };
    println!("  {second}");

    // Self-check against the sample's expected outcomes.
    let uids: Vec<String> = expected.iter().map(|e| e.uid.clone()).collect();
    let rows = app.ledger.rows("main", &uids).await?;
    let mut mismatches = 0;
    for e in &expected {
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
    let new_bookings =
        second.get(DecisionKind::BookedInitial) + second.get(DecisionKind::BookedAdditional);
    println!();
    if mismatches == 0 && new_bookings == 0 && first.errors() == 0 {
        println!(
            "Every operation got the decision the sample expects; the second run booked nothing."
        );
        sim.shutdown().await;
        Ok(EXIT_OK)
    } else {
        println!("{mismatches} mismatches, {new_bookings} bookings on the second run.");
        sim.shutdown().await;
        Ok(EXIT_FAILED)
    }
}
