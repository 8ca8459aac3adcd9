//! `paysync demo`: see paysync work on a fresh machine with one command.
//!
//! Starts the simulator of the three APIs in-process on loopback, loads a sample month (October
//! 2026) of Mobbex operations, a MercadoLibre seller's Mercado Pago payments and the ERPNext sales
//! orders they pay, writes a `sync.toml` with both accounts side by side (the Mercado Pago one
//! with OAuth keys whose refresh token rotates, its orders found by the MercadoLibre order id in
//! `po_no`, its fees deducted) and a temporary SQLite ledger, and runs the real `sync` pipeline
//! twice for each account: the first run books, the second books nothing. It ends by comparing
//! what was booked with what each sample says must be booked.
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
use paysync_sim::fixtures::{AccountConfig, ConfigBuilder, MpAuth};
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
    /// Per account (in the configuration's order): its name, and what its sample says must
    /// become of each operation, by operation id.
    accounts: Vec<(String, Vec<(String, String)>)>,
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
        trigger: crate::store::RunTrigger::Sync,
    };
    let mut errors = 0;
    for (i, (name, _)) in demo.accounts.iter().enumerate() {
        let first = first_run(&demo, i, window, &run_opts).await?;
        errors += first.errors();
        print_created_entries(&demo, i);
        print_not_booked(&demo.app, name).await?;
        println!();
    }
    let mut new_bookings = 0;
    let mut mismatches = 0;
    for i in 0..demo.accounts.len() {
        let second = second_run(&demo, i, window, &run_opts).await?;
        new_bookings +=
            second.get(DecisionKind::BookedInitial) + second.get(DecisionKind::BookedAdditional);
        mismatches += check_against_sample(&demo, i).await?;
    }
    println!();
    let code = if mismatches == 0 && new_bookings == 0 && errors == 0 {
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
    let outcomes = |e: &[sample::Expected]| -> Vec<(String, String)> {
        e.iter()
            .map(|e| (e.uid.clone(), e.outcome.decision().to_string()))
            .collect()
    };
    let mobbex = outcomes(&sample::demo_month(&sim));
    let meli: Vec<(String, String)> = sample::demo_mercadopago(&sim)
        .into_iter()
        .map(|e| (e.uid, e.outcome.decision().to_string()))
        .collect();
    let preexisting: Vec<String> = sim.payment_entries().into_iter().map(|e| e.name).collect();

    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("sync.toml");
    ConfigBuilder::for_simulator(&sim, dir.path().join("paysync.db"))
        .comment("Written by `paysync demo`: the simulator's addresses and credentials.")
        .erp("max_in_flight = 4")
        .account(
            AccountConfig::mercadopago_for_simulator("meli", &sim, MpAuth::oauth_for(&sim))
                .order_source("order_id")
                .order_field("po_no")
                .fees_account("Comisiones - MESA")
                .fees_cost_center("Main - MESA"),
        )
        .write(&config_path)?;
    let settings = config::load_with_env(&config_path, &HashMap::new())?;
    let app = App::build(settings).await?;
    Ok(Demo {
        accounts: vec![("main".into(), mobbex), ("meli".into(), meli)],
        preexisting,
        app,
        dir,
        sim,
    })
}

fn print_intro(demo: &Demo) {
    println!("paysync demo");
    println!("  simulated Mobbex        {}", demo.sim.mobbex_url);
    println!(
        "  simulated Mercado Pago  {} (and MercadoLibre)",
        demo.sim.mercadopago_url
    );
    println!("  simulated ERPNext       {}", demo.sim.erpnext_url);
    println!(
        "  ledger                  {}",
        demo.dir.path().join("paysync.db").display()
    );
    println!(
        "  account main (Mobbex)   {} operations created in October 2026",
        demo.accounts[0].1.len()
    );
    println!(
        "  account meli (Mercado Pago, OAuth, orders by MercadoLibre order id in po_no, fees deducted)"
    );
    println!(
        "                          {} payments created in October 2026",
        demo.accounts[1].1.len()
    );
    println!();
}

/// The run that books account `i`: as `paysync sync` would, with its closing table.
async fn first_run(
    demo: &Demo,
    i: usize,
    window: Window,
    run_opts: &RunOptions,
) -> anyhow::Result<Summary> {
    println!(
        "$ paysync sync --since {SINCE} --until {UNTIL} --account {}",
        demo.accounts[i].0
    );
    let first = match demo
        .app
        .engine
        .sync_window(&demo.app.accounts[i], window, run_opts)
        .await
    {
        Ok(s) => s,
        Err((_, e)) => anyhow::bail!("sync failed: {e}"),
    };
    print_summary(&first, SINCE, UNTIL, false);
    Ok(first)
}

/// The Payment Entries paysync created in the simulated ERPNext for account `i`, by name.
fn print_created_entries(demo: &Demo, i: usize) {
    let ids: Vec<&String> = demo.accounts[i].1.iter().map(|(uid, _)| uid).collect();
    println!();
    println!("Payment Entries created in ERPNext:");
    println!(
        "  {:<20} {:<26} {:<28} {:>14}  allocation",
        "entry", "reference_no", "customer", "to the bank"
    );
    let mut entries: Vec<_> = demo
        .sim
        .payment_entries()
        .into_iter()
        .filter(|e| !demo.preexisting.contains(&e.name))
        .filter(|e| e.reference_no.as_ref().is_some_and(|r| ids.contains(&r)))
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in &entries {
        let allocation = match e.references.first() {
            Some(r) => format!("{:.2} to {}", r.allocated_amount, r.reference_name),
            None => "unallocated (additional payment, on account)".into(),
        };
        let fees: rust_decimal::Decimal = e.deductions.iter().map(|d| d.amount).sum();
        let fees = match fees.is_zero() {
            true => String::new(),
            false => format!(" (fees {fees:.2} to {})", e.deductions[0].account),
        };
        println!(
            "  {:<20} {:<26} {:<28} {:>14}  {}{}",
            e.name,
            e.reference_no.as_deref().unwrap_or("-"),
            e.party,
            format!("{:.2}", e.paid_amount),
            allocation,
            fees
        );
    }
}

/// Every operation of `account` not booked, with the ledger's reason.
async fn print_not_booked(app: &App, account: &str) -> anyhow::Result<()> {
    println!();
    println!("Operations not booked, and why (from the ledger):");
    for kind in DecisionKind::ALL.into_iter().filter(|k| !k.is_booked()) {
        for row in app.ledger.latest(account, kind, 100).await? {
            println!("  {:<26} {:<18} {}", row.uid, kind.as_str(), row.reason);
        }
    }
    Ok(())
}

/// The same window again for account `i`: it must book nothing.
async fn second_run(
    demo: &Demo,
    i: usize,
    window: Window,
    run_opts: &RunOptions,
) -> anyhow::Result<Summary> {
    println!(
        "Second run of {} (nothing new to book):",
        demo.accounts[i].0
    );
    let second = match demo
        .app
        .engine
        .sync_window(&demo.app.accounts[i], window, run_opts)
        .await
    {
        Ok(s) => s,
        Err((_, e)) => anyhow::bail!("second sync failed: {e}"),
    };
    println!("  {second}");
    Ok(second)
}

/// Self-check of account `i`: the ledger's decision for each operation against the sample's;
/// prints each mismatch and returns how many.
async fn check_against_sample(demo: &Demo, i: usize) -> anyhow::Result<usize> {
    let (account, expected) = &demo.accounts[i];
    let uids: Vec<String> = expected.iter().map(|(uid, _)| uid.clone()).collect();
    let rows = demo.app.ledger.rows(account, &uids).await?;
    let mut mismatches = 0;
    for (uid, decision) in expected {
        let want = DecisionKind::parse(decision)
            .ok_or_else(|| anyhow::anyhow!("the sample names an unknown decision {decision:?}"))?;
        let got = rows.get(uid).map(|r| r.decision);
        if got != Some(want) {
            mismatches += 1;
            println!("  MISMATCH {account} {uid}: expected {want}, got {got:?}");
        }
    }
    Ok(mismatches)
}
