//! Starting and stopping paysync: its configuration for a row, one-shot commands (`sync`,
//! `status`), and `paysync run` daemons — one or several on one ledger, each with its own
//! `[daemon] listen` and otherwise the same file, as hosts behind a load balancer.
//!
//! A child's stderr goes to a log file in the row's directory, quoted when it fails. A daemon
//! the benchmark lost track of (an error part-way) is killed when its [`Daemon`] is dropped.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use paysync_sim::Simulator;
use paysync_sim::fixtures::ConfigBuilder;

use crate::process::{Usage, wait_usage};

/// The webhook token every configuration gives account `main`.
pub const HOOK_TOKEN: &str = "bench-hook-token";

/// Write `dir/<file>`: paysync against `sim`, ledger at `store_url`, listening on `listen`,
/// polling on `schedule`, ERPNext writes `mif` at a time.
pub fn write_config(
    dir: &Path,
    file: &str,
    sim: &Simulator,
    store_url: &str,
    mif: usize,
    listen: &str,
    schedule: &str,
) -> anyhow::Result<PathBuf> {
    let path = dir.join(file);
    ConfigBuilder::for_simulator(sim, dir.join("ledger.db"))
        .store_url(store_url)
        .daemon(&format!("schedule = \"{schedule}\""))
        .daemon(&format!("listen = \"{listen}\""))
        .erp(&format!("max_in_flight = {mif}"))
        .account_line(&format!("webhook_token = \"{HOOK_TOKEN}\""))
        .write(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `paysync --config <config> <args>` (this executable in its paysync role), stderr to `log`.
///
/// For profiling, `PAYSYNC_BENCH_CHILD_WRAPPER` (words split on spaces, e.g.
/// `valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p`) runs each child under that
/// program, and `PAYSYNC_BENCH_CHILD_LOG` replaces its `RUST_LOG` (`warn`).
pub fn paysync_cmd(config: &Path, args: &[&str], log: &Path) -> anyhow::Result<Command> {
    let stderr = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
    let mut c = own_child()?;
    let log_filter = std::env::var("PAYSYNC_BENCH_CHILD_LOG").unwrap_or_else(|_| "warn".into());
    c.arg("__paysync")
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", log_filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    Ok(c)
}

/// This executable as a child, under `PAYSYNC_BENCH_CHILD_WRAPPER` when it is set.
pub fn own_child() -> anyhow::Result<Command> {
    let own = std::env::current_exe().context("own path")?;
    let wrapper = std::env::var("PAYSYNC_BENCH_CHILD_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    Ok(match words.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(words).arg(own);
            c
        }
        None => Command::new(own),
    })
}

/// The last lines of a child's log, for an error message.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    if tail.is_empty() {
        format!("({} is empty)", log.display())
    } else {
        format!("{}:\n{tail}", log.display())
    }
}

/// Run a one-shot command to its end; an exit other than 0 is an error quoting its log.
pub async fn run_ok(config: &Path, args: &[&str], log: &Path) -> anyhow::Result<Usage> {
    let cmd = paysync_cmd(config, args, log)?;
    let u = crate::process::run_blocking(cmd).await?;
    anyhow::ensure!(
        u.status == 0,
        "paysync {} exited with {}; {}",
        args.join(" "),
        u.status,
        log_tail(log)
    );
    Ok(u)
}

/// Reserve a free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running `paysync run`.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
    /// From spawn to READY=1.
    pub ready: Duration,
}

impl Daemon {
    /// Start `paysync run` on `cfg` and wait for READY=1 on a private NOTIFY_SOCKET (sent once
    /// the ledger is migrated and the listener bound). `name` names its log and socket.
    pub fn start(cfg: &Path, dir: &Path, name: &str) -> anyhow::Result<Daemon> {
        let sock_path = dir.join(format!("{name}.notify"));
        let sock = UnixDatagram::bind(&sock_path)?;
        // Not a poll for readiness (READY=1 is the signal): only so that a child dying before
        // it is noticed within a second instead of hanging the benchmark.
        sock.set_read_timeout(Some(Duration::from_secs(1)))?;
        let log = dir.join(format!("{name}.log"));
        let started = Instant::now();
        let child = paysync_cmd(cfg, &["run"], &log)?
            .env("NOTIFY_SOCKET", &sock_path)
            .spawn()
            .context("paysync run starts")?;
        let mut daemon = Daemon {
            child: Some(child),
            log,
            ready: Duration::ZERO,
        };
        let mut buf = [0u8; 4096];
        loop {
            match sock.recv(&mut buf) {
                Ok(n) if String::from_utf8_lossy(&buf[..n]).contains("READY=1") => {
                    daemon.ready = started.elapsed();
                    return Ok(daemon);
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    let child = daemon.child.as_mut().expect("not stopped");
                    if let Some(status) = child.try_wait()? {
                        anyhow::bail!(
                            "paysync run ({name}) exited before READY=1: {status}; {}",
                            log_tail(&daemon.log)
                        );
                    }
                    anyhow::ensure!(
                        started.elapsed() < Duration::from_secs(120),
                        "paysync run ({name}): no READY=1 within 120 s; {}",
                        log_tail(&daemon.log)
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }
}

/// A row that failed part-way must not leave daemons running.
impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && matches!(child.try_wait(), Ok(None))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGTERM every daemon at once and wait for each: their usage (CPU from wait4, peak RSS from
/// VmHWM), in order. A stop other than a clean exit 0 is an error quoting the daemon's log.
pub async fn stop_all(daemons: Vec<Daemon>) -> anyhow::Result<Vec<Usage>> {
    let mut waits = Vec::new();
    let mut pids = Vec::new();
    let mut logs = Vec::new();
    for mut d in daemons {
        let child = d.child.take().expect("not stopped");
        pids.push(child.id());
        logs.push(d.log.clone());
        // The waiter samples VmHWM until the exit: started before the signal, so that the
        // high-water mark is read while /proc still has it.
        waits.push(tokio::task::spawn_blocking(move || {
            wait_usage(child, Instant::now())
        }));
    }
    for pid in &pids {
        // SAFETY: kill(2) on our own child, not reaped yet (its waiter reaps it after it exits).
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGTERM) };
    }
    let mut usages = Vec::new();
    for (w, log) in waits.into_iter().zip(logs) {
        let u = w.await.context("waiting for a daemon")?;
        anyhow::ensure!(
            u.status == 0,
            "paysync run did not stop cleanly (status {}); {}",
            u.status,
            log_tail(&log)
        );
        usages.push(u);
    }
    Ok(usages)
}
