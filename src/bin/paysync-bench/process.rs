//! The benchmark's measuring of child processes: wall and CPU time (wait4), peak RSS (VmHWM
//! sampled from /proc), and the machine's CPU model for the report.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// What a finished child used: wall time, CPU time, peak RSS.
pub struct Usage {
    pub wall: Duration,
    pub cpu: Duration,
    pub max_rss_kb: i64,
    pub status: i32,
}

/// The child's own peak RSS (kB): `VmHWM` is reset at exec, whereas wait4's `ru_maxrss` may count
/// the memory of the forking parent (this benchmark, which holds the simulator).
pub fn vm_hwm_kb(pid: u32) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Wait for `child` with wait4(2) to read its CPU time; its peak RSS is sampled from /proc while
/// it runs (every 10 ms; the high-water mark only grows, so the last sample is the peak but for
/// the final 10 ms).
pub fn wait_usage(child: Child, started: Instant) -> Usage {
    let pid = child.id() as libc::pid_t;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        let upid = child.id();
        std::thread::spawn(move || {
            let mut peak = 0i64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(v) = vm_hwm_kb(upid) {
                    peak = peak.max(v);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    std::mem::forget(child); // already reaped
    let tv =
        |t: libc::timeval| Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    Usage {
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        max_rss_kb: if peak > 0 { peak } else { ru.ru_maxrss },
        status: if r == pid && libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
    }
}

/// Spawn `cmd` and wait for it (on a blocking thread: wait4 blocks).
pub async fn run_blocking(cmd: Command) -> anyhow::Result<Usage> {
    tokio::task::spawn_blocking(move || {
        let mut cmd = cmd;
        let started = Instant::now();
        let child = cmd.spawn()?;
        Ok(wait_usage(child, started))
    })
    .await?
}

/// A running process's resident set size (kB) and CPU time so far, from /proc.
pub fn proc_usage(pid: u32) -> (i64, Duration) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name: utime is 14th, stime 15th overall.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    (rss, Duration::from_millis(ticks * 1000 / hz))
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
