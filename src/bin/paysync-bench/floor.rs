//! The HTTP floor of the backfill: what the ERPNext creates alone cost a client built as
//! paysync builds its own, so that "CPU per operation" can be read against what no booking
//! engine on this stack can go below.
//!
//! On a fresh simulator holding the same sample, `paysync sync --dry-run` prints the bodies it
//! would send; then a child process (this executable with the hidden first argument
//! `__http_floor`) sends exactly those bodies, `max_in_flight` at a time, on one `current_thread`
//! runtime with one reqwest client as paysync's (`http_client::client_builder_for`, the same
//! timeout), reading each answer whole and its `name`, and does nothing else: no listing, no
//! ledger, no decisions. Its CPU (wait4, process start included) is measured as paysync's is.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use paysync_sim::sample::populate;
use paysync_sim::{SimOptions, Simulator};

use crate::children::{log_tail, own_child, paysync_cmd};
use crate::ledger::{LedgerKind, Scratch};
use crate::process::{Usage, run_blocking};
use crate::{Args, faults, spec};

/// What the floor measured.
pub struct Floor {
    /// Operations in the sample (the denominator of "per examined operation").
    pub examined: usize,
    pub creates: usize,
    pub usage: Usage,
}

/// Plan the backfill's creates with a dry run on a fresh simulator, then send them from a
/// child that does nothing else.
pub async fn measure(args: &Args, mif: usize) -> anyhow::Result<Floor> {
    let sim = Simulator::start(SimOptions {
        faults: faults(args),
        ..Default::default()
    })
    .await?;
    let examined = populate(&sim, &spec(args, args.ops, 10)).len();
    let dir = tempfile::tempdir()?;
    let scratch = Scratch::create(LedgerKind::Sqlite, dir.path(), "").await?;
    let cfg = crate::backfill::sync_config(dir.path(), &sim, &scratch.url, mif)?;
    let bodies = dir.path().join("bodies.jsonl");
    plan(&cfg, dir.path(), &bodies)?;
    let creates = std::fs::read_to_string(&bodies)?.lines().count();
    let o = sim.options();
    let mut cmd = own_child()?;
    cmd.arg("__http_floor")
        .arg(&sim.erpnext_url)
        .arg(format!("token {}:{}", o.erp_api_key, o.erp_api_secret))
        .arg(&bodies)
        .arg(mif.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("floor.log"))?);
    let usage = run_blocking(cmd).await?;
    anyhow::ensure!(
        usage.status == 0,
        "the HTTP floor exited with {}; {}",
        usage.status,
        log_tail(&dir.path().join("floor.log"))
    );
    let written = sim.stats().erp_writes as usize;
    anyhow::ensure!(
        written == creates,
        "the HTTP floor sent {creates} creates, the simulator wrote {written}"
    );
    sim.shutdown().await;
    Ok(Floor {
        examined,
        creates,
        usage,
    })
}

/// `paysync sync --dry-run` over the backfill's month: one JSON body per line into `out`.
fn plan(cfg: &Path, dir: &Path, out: &Path) -> anyhow::Result<()> {
    let printed = dir.join("dry-run.out");
    let log = dir.join("dry-run.log");
    let mut args = crate::backfill::SYNC.to_vec();
    args.push("--dry-run");
    let status = paysync_cmd(cfg, &args, &log)?
        .stdout(std::fs::File::create(&printed)?)
        .status()
        .context("paysync sync --dry-run")?;
    // 0: all decided; 1: some operations left unresolved, which the sample has (orders missing).
    anyhow::ensure!(
        matches!(status.code(), Some(0 | 1)),
        "paysync sync --dry-run exited with {status}; {}",
        log_tail(&log)
    );
    let text = std::fs::read_to_string(&printed)?;
    let bodies: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(": {").map(|(_, rest)| rest))
        .collect();
    anyhow::ensure!(!bodies.is_empty(), "the dry run planned no entries");
    let lines: String = bodies.iter().map(|b| format!("{{{b}\n")).collect();
    std::fs::write(out, lines)?;
    Ok(())
}

/// The child: `__http_floor <erpnext url> <authorization> <bodies file> <in flight>`.
pub fn child(argv: &[String]) -> std::process::ExitCode {
    match child_run(argv) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http floor: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn child_run(argv: &[String]) -> anyhow::Result<()> {
    let [url, auth, file, in_flight] = argv else {
        anyhow::bail!("usage: __http_floor URL AUTHORIZATION BODIES IN_FLIGHT");
    };
    let base: url::Url = url.parse()?;
    let in_flight: usize = in_flight.parse()?;
    let bodies: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(file)?
            .lines()
            .map(String::from)
            .collect(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut auth = reqwest::header::HeaderValue::from_str(auth)?;
        auth.set_sensitive(true);
        let headers = reqwest::header::HeaderMap::from_iter([
            (reqwest::header::AUTHORIZATION, auth),
            (
                reqwest::header::ACCEPT,
                reqwest::header::HeaderValue::from_static("application/json"),
            ),
        ]);
        let http = paysync::http_client::client_builder_for(&base)
            .default_headers(headers)
            .timeout(Duration::from_secs(30))
            .build()?;
        let endpoint = base.join("api/resource/Payment%20Entry")?;
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..in_flight.max(1) {
            let (http, endpoint, bodies, next) =
                (http.clone(), endpoint.clone(), bodies.clone(), next.clone());
            workers.spawn(async move {
                while let Some(body) = bodies.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let resp = http
                        .post(endpoint.clone())
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await?;
                    let status = resp.status();
                    let bytes = resp.bytes().await?;
                    anyhow::ensure!(status.is_success(), "HTTP {status}");
                    let created: Created = serde_json::from_slice(&bytes)?;
                    anyhow::ensure!(!created.data.name.is_empty(), "no name");
                }
                Ok(())
            });
        }
        while let Some(done) = workers.join_next().await {
            done??;
        }
        Ok(())
    })
}

#[derive(serde::Deserialize)]
struct Created {
    data: CreatedName,
}

#[derive(serde::Deserialize)]
struct CreatedName {
    name: String,
}
