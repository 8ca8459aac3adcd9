//! The real `paysync run` binary when its ledger's storage misbehaves: the disk fills up (and
//! empties again) under it, or the ledger file is deleted or replaced while it runs; and
//! `paysync status` against a ledger that does not exist.
//!
//! A full disk without root or a small file system: the daemon's file size limit
//! (`RLIMIT_FSIZE`, set on the running child with prlimit(2)) is lowered to 0, so every write(2)
//! to a regular file fails (EFBIG; SIGXFSZ is ignored in the child so it is not killed) and
//! SQLite's writes fail as on a disk without room; raising the limit is the space coming back.
//! Logs travel through a pipe, which the limit does not touch.

use std::io::BufRead;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use paysync::domain::DecisionKind;
use paysync_sim::{Faults, SimOperation};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::daemon::{NEVER, TOKEN};
use crate::helpers::{TestEnv, order};

/// `paysync run` in a child process, its JSON log lines collected as they come.
struct Child {
    child: Option<std::process::Child>,
    pid: i32,
    lines: Arc<Mutex<Vec<Value>>>,
    seen: tokio::sync::watch::Receiver<usize>,
    addr: SocketAddr,
}

impl Child {
    async fn start(env: &TestEnv) -> Child {
        let text = std::fs::read_to_string(&env.config_path).unwrap().replace(
            "[daemon]\n",
            &format!("[daemon]\nlisten = \"127.0.0.1:0\"\nschedule = \"{NEVER}\"\n"),
        );
        std::fs::write(&env.config_path, text).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_paysync"));
        cmd.args(["--log-format", "json", "--config"])
            .arg(&env.config_path)
            .arg("run")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // SAFETY: between fork and exec only signal(2), which is async-signal-safe. A process
        // over its file size limit gets SIGXFSZ, which kills it by default; ignored, the write
        // fails with EFBIG as it would with ENOSPC on a full disk.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let pid = child.id() as i32;
        let stderr = child.stderr.take().unwrap();
        let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (tx, seen) = tokio::sync::watch::channel(0usize);
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let v = serde_json::from_str(&line).unwrap_or_else(|_| json!({"raw": line}));
                    let n = {
                        let mut l = lines.lock().unwrap();
                        l.push(v);
                        l.len()
                    };
                    tx.send_replace(n);
                }
            });
        }
        let mut c = Child {
            child: Some(child),
            pid,
            lines,
            seen,
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let running = c
            .wait_log("the daemon to listen", Duration::from_secs(30), |l| {
                l.iter().any(|v| msg(v) == "paysync running")
            })
            .await;
        let line = running
            .iter()
            .find(|v| msg(v) == "paysync running")
            .unwrap();
        c.addr = line["listen"].as_str().unwrap().parse().unwrap();
        c
    }

    /// Wait (on each new log line) until `pred` holds for the lines so far; returns them.
    async fn wait_log(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let lines = self.lines.clone();
        let got = tokio::time::timeout(
            timeout,
            self.seen.wait_for(|_| pred(&lines.lock().unwrap())),
        )
        .await;
        let all = self.lines.lock().unwrap().clone();
        if !matches!(got, Ok(Ok(_))) {
            let tail: Vec<String> = all.iter().rev().take(15).map(|v| v.to_string()).collect();
            panic!(
                "timed out after {timeout:?} waiting for {what}; {} log lines, the last ones (newest first):\n{}",
                all.len(),
                tail.join("\n")
            );
        }
        all
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// CPU time (user + system) the process used so far.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<u64> = after_comm
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // SAFETY: sysconf has no memory effects.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis((f[11] + f[12]) * 1000 / ticks)
    }

    /// The disk fills (`true`: no byte more can be written) or has room again.
    fn disk_full(&self, full: bool) {
        let lim = libc::rlimit {
            rlim_cur: if full { 0 } else { libc::RLIM_INFINITY },
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: valid pointers to a local rlimit and a null old-limit pointer.
        let rc = unsafe { libc::prlimit(self.pid, libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()) };
        assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn webhook(&self, uid: &str, order: &str) -> u16 {
        let body = json!({"type": "checkout", "data": {"payment": {"id": uid, "status": {"code": "200"}, "total": 100.0, "reference": order}}});
        reqwest::Client::new()
            .post(self.url(&format!("/webhooks/mobbex/main?token={TOKEN}")))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn healthz(&self) -> (u16, Value) {
        let r = reqwest::get(self.url("/healthz")).await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// SIGTERM, then the exit code.
    async fn stop(mut self) -> Option<i32> {
        let child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap().status.code())
            .await
            .unwrap()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // A failed test leaves no daemon behind.
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn msg(v: &Value) -> &str {
    v["message"].as_str().unwrap_or("")
}

fn level(v: &Value) -> &str {
    v["level"].as_str().unwrap_or("")
}

fn done_uids(lines: &[Value]) -> Vec<String> {
    let mut u: Vec<String> = lines
        .iter()
        .filter(|v| msg(v) == "trigger done")
        .filter_map(|v| v["uid"].as_str().map(String::from))
        .collect();
    u.sort();
    u.dedup();
    u
}

/// Six paid operations, each of its own order (no payment waits for another).
fn seed(env: &TestEnv) -> Vec<(String, String)> {
    env.sim.add_customer("Cliente Demo");
    (1..=6)
        .map(|i| {
            let (uid, name) = (format!("op-{i}"), format!("SAL-ORD-2026-{i:05}"));
            env.sim.add_sales_order(order(&name, "Cliente Demo", "100"));
            let t = Timestamp::now() - SignedDuration::from_mins(5);
            env.sim.add_operation(SimOperation {
                uid: uid.clone(),
                reference: name.clone(),
                status: 200,
                total: Decimal::from(100),
                currency: "ARS".into(),
                created: t,
                updated: t,
                description: "Compra".into(),
                payer_name: "Juan".into(),
                parent_uid: None,
                operation_type: "payment.v2".into(),
                entity_charges: Vec::new(),
            });
            (uid, name)
        })
        .collect()
}

fn mobbex_gets(env: &TestEnv) -> u64 {
    env.sim
        .stats()
        .by_endpoint
        .get("GET /p/operations/{uid}")
        .copied()
        .unwrap_or(0)
}

/// The disk fills while triggers are due and one is in work, and webhooks keep arriving: the
/// daemon neither spins nor floods its log, and once there is room again it books every trigger
/// by itself (no restart), each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_the_inbox_without_a_hot_loop_and_it_recovers_by_itself() {
    let env = TestEnv::start().await;
    let ops = seed(&env);
    let mut d = Child::start(&env).await;

    // Three triggers that fail once (Mobbex answers 5xx) and are due again ~2 s later.
    env.sim.set_faults(Faults {
        mobbex_5xx_rate: 1.0,
        ..Default::default()
    });
    for (uid, name) in &ops[1..4] {
        assert_eq!(d.webhook(uid, name).await, 200);
    }
    d.wait_log(
        "three failed first attempts",
        Duration::from_secs(30),
        |l| {
            l.iter()
                .filter(|v| msg(v) == "trigger failed; will retry")
                .count()
                >= 3
        },
    )
    .await;
    // One trigger in work when the disk fills: Mobbex takes 1.5 s to answer it.
    env.sim.set_faults(Faults {
        mobbex_latency: Duration::from_millis(1500),
        ..Default::default()
    });
    let gets = mobbex_gets(&env);
    assert_eq!(d.webhook(&ops[0].0, &ops[0].1).await, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while mobbex_gets(&env) == gets {
        assert!(Instant::now() < deadline, "the trigger was not taken");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    d.disk_full(true);
    // Webhooks that cannot be stored are refused (Mobbex sends them again later).
    for (uid, name) in &ops[4..] {
        assert_eq!(
            d.webhook(uid, name).await,
            503,
            "{uid} while the disk is full"
        );
    }
    let lines = d
        .wait_log(
            "the inbox to find the ledger failing",
            Duration::from_secs(30),
            // (Claiming the due triggers, or, on a slow machine that took them before the disk
            // filled, writing their outcome.)
            |l| {
                l.iter().any(|v| {
                    level(v) == "WARN"
                        && (msg(v).starts_with("inbox: cannot claim")
                            || msg(v).starts_with("inbox: could not reschedule"))
                })
            },
        )
        .await;
    // Three seconds of a full disk: a few warnings (one per backoff), next to no CPU.
    let (from, cpu_before) = (lines.len(), d.cpu());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu = d.cpu() - cpu_before;
    let window: Vec<Value> = d.lines()[from..].to_vec();
    let sample: Vec<String> = window.iter().take(5).map(|v| v.to_string()).collect();
    assert!(
        window.len() <= 20,
        "{} log lines in 3 s of a full disk, e.g.:\n{}",
        window.len(),
        sample.join("\n")
    );
    assert!(
        cpu < Duration::from_millis(300),
        "{cpu:?} of CPU in 3 s of a full disk"
    );

    // Room again; Mobbex answers again and re-sends the refused webhooks.
    d.disk_full(false);
    let room_again = Instant::now();
    env.sim.set_faults(Faults::default());
    for (uid, name) in &ops[4..] {
        assert_eq!(
            d.webhook(uid, name).await,
            200,
            "{uid} after the disk has room"
        );
    }
    let want: Vec<String> = ops.iter().map(|(u, _)| u.clone()).collect();
    let lines = d
        .wait_log("every trigger to be done", Duration::from_secs(60), |l| {
            done_uids(l) == want
        })
        .await;
    eprintln!(
        "full disk: {} log lines and {cpu:?} of CPU in 3 s; every trigger done {:?} after the disk had room again",
        window.len(),
        room_again.elapsed()
    );
    for (uid, _) in &ops {
        let n = env
            .sim
            .payment_entries()
            .iter()
            .filter(|e| e.reference_no.as_deref() == Some(uid))
            .count();
        assert_eq!(n, 1, "{uid}: {n} entries");
    }
    let ledger = paysync::store::open(&env.settings().store.url)
        .await
        .unwrap();
    let rows = ledger.rows("main", &want).await.unwrap();
    for uid in &want {
        assert_eq!(rows[uid].decision, DecisionKind::BookedInitial, "{uid}");
    }
    assert!(ledger.inbox_depth().await.unwrap().is_empty());
    let stuck: Vec<&Value> = lines
        .iter()
        .filter(|v| v.to_string().contains("transaction depth"))
        .collect();
    assert!(stuck.is_empty(), "{stuck:?}");
    assert_eq!(d.stop().await, Some(0));
}

/// The ledger file deleted, then replaced by another one, under the running daemon: /healthz
/// says 503 naming the file, webhooks are refused (nothing stored in a file no one will read,
/// nothing booked), an error line names the file; `paysync status` creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_deleted_or_replaced_under_the_daemon_fails_closed() {
    let env = TestEnv::start().await;
    let ops = seed(&env);
    let mut d = Child::start(&env).await;
    let path = env.dir.path().join("ledger.db");
    let shown = path.display().to_string();
    assert_eq!(d.healthz().await.0, 200);
    assert_eq!(d.webhook(&ops[0].0, &ops[0].1).await, 200);
    d.wait_log("the first trigger", Duration::from_secs(30), |l| {
        done_uids(l).len() == 1
    })
    .await;

    std::fs::remove_file(&path).unwrap();
    let (status, body) = d.healthz().await;
    assert_eq!(status, 503, "{body}");
    assert!(body["problems"].to_string().contains(&shown), "{body}");
    assert_eq!(d.webhook(&ops[1].0, &ops[1].1).await, 503);
    d.wait_log(
        "an error line naming the file",
        Duration::from_secs(10),
        |l| {
            l.iter()
                .any(|v| level(v) == "ERROR" && v.to_string().contains(&shown))
        },
    )
    .await;
    // `status` says the ledger is missing; it does not create an empty one.
    let out = crate::helpers::paysync_cmd(&env, &["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&shown) && err.contains("does not exist"),
        "{err}"
    );
    assert!(!path.exists(), "status created a ledger");

    // Replaced: a backup (a valid ledger of its own) moved to the path.
    let backup = tempfile::tempdir().unwrap();
    let backup_db = backup.path().join("ledger.db");
    let other = paysync::store::open(&format!("sqlite://{}", backup_db.display()))
        .await
        .unwrap();
    drop(other);
    std::fs::rename(&backup_db, &path).unwrap();
    assert_eq!(d.healthz().await.0, 503);
    assert_eq!(d.webhook(&ops[2].0, &ops[2].1).await, 503);
    let booked: Vec<_> = env
        .sim
        .payment_entries()
        .into_iter()
        .filter_map(|e| e.reference_no)
        .collect();
    assert_eq!(
        booked,
        vec![ops[0].0.clone()],
        "nothing booked after the delete"
    );
    assert_eq!(d.stop().await, Some(0));
}

/// `paysync status` before any run: a clear message and exit 1, and no ledger created.
#[test]
fn status_never_creates_a_ledger() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = rt.block_on(TestEnv::start());
    let path = env.dir.path().join("ledger.db");
    let out = crate::helpers::paysync_cmd(&env, &["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&path.display().to_string()) && err.contains("does not exist"),
        "{err}"
    );
    assert!(!path.exists(), "status created {}", path.display());
    for suffix in ["-wal", "-shm"] {
        assert!(!env.dir.path().join(format!("ledger.db{suffix}")).exists());
    }
}
