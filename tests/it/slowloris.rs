//! 2,000 slow connections against the real `paysync run` binary (see `hostile.rs` for how it is
//! started): request heads sent byte by byte, connections that send nothing, whole heads with a
//! declared body that never comes (a wrong or no token), and a few token holders whose body
//! trickles, kept up while real webhooks and `/healthz` requests arrive. The real ones must be
//! answered fast, and the slow ones closed by the server within the configured timeouts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use paysync_sim::SimOptions;
use rust_decimal::Decimal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::daemon::{TOKEN, hook};
use crate::helpers::{TestEnv, order};
use crate::hostile::{
    BODY_TIMEOUT, CHILD_SOFT_NOFILE, HEADER_TIMEOUT, LISTENER_TOML, Service, status_of,
};

/// How long the attack is kept up once all slow connections are open.
const ATTACK: Duration = Duration::from_secs(8);
/// A trickling client sends one byte this often.
const TRICKLE_EVERY: Duration = Duration::from_millis(200);
/// What a slow connection's client may see later than the server acted: the attack runs at
/// nice 10 on a shared 2-core machine, beside other tests.
const SLACK: Duration = Duration::from_secs(3);

/// Raise this test process's own soft fd limit to its hard limit: it holds 2,000+ sockets.
fn raise_own_fd_limit(need: u64) {
    let (_, now) = paysync::daemon::listener::raise_nofile_limit().expect("setrlimit");
    assert!(
        now >= need,
        "this test needs {need} file descriptors; the hard limit allows {now}"
    );
}

fn seeded_env_ops(env: &TestEnv, n: usize) -> Vec<String> {
    env.sim.add_customer("Cliente Demo");
    (0..n)
        .map(|i| {
            let name = format!("SAL-ORD-2026-{:05}", i + 1);
            env.sim
                .add_sales_order(order(&name, "Cliente Demo", "1000"));
            let uid = format!("op-{i}");
            let t = Timestamp::now() - SignedDuration::from_mins(1);
            env.sim.add_operation(paysync_sim::SimOperation {
                uid: uid.clone(),
                reference: name,
                status: 200,
                total: Decimal::from(1000),
                currency: "ARS".into(),
                created: t,
                updated: t,
                description: "Compra".into(),
                payer_name: "Juan".into(),
                parent_uid: None,
                operation_type: "payment.v2".into(),
                entity_charges: Vec::new(),
            });
            uid
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// What one slow connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slow {
    /// A webhook's request head, one byte every [`TRICKLE_EVERY`], never finished.
    HeadTrickle,
    /// Connects and sends nothing.
    Silent,
    /// A whole head with a wrong token, declaring a body that never comes.
    WrongToken,
    /// The same without a token.
    NoToken,
    /// The right token (an insider, or a broken sender), the declared body trickling.
    BodyTrickle,
}

#[derive(Debug)]
struct Outcome {
    kind: Slow,
    /// From connected until the server closed it (None: the client gave up first).
    held: Option<Duration>,
    /// The status line's code, if the server answered.
    status: Option<u16>,
}

/// One slow connection, already connected: do `kind` until the server hangs up or `give_up`.
async fn slow_connection(mut s: TcpStream, kind: Slow, give_up: Instant) -> Outcome {
    let opened = Instant::now();
    let closed = |answer: &[u8]| Outcome {
        kind,
        held: Some(opened.elapsed()),
        status: status_of(answer),
    };
    let trickle: Vec<u8> = match kind {
        Slow::HeadTrickle => b"POST /webhooks/mobbex/main HTTP/1.1\r\nHost: paysync\r\nX-Pad: "
            .iter()
            .copied()
            .chain(std::iter::repeat_n(b'a', 100_000))
            .collect(),
        Slow::Silent => Vec::new(),
        Slow::WrongToken | Slow::NoToken | Slow::BodyTrickle => {
            let target = match kind {
                Slow::WrongToken => "/webhooks/mobbex/main?token=wrong".to_string(),
                Slow::NoToken => "/webhooks/mobbex/main".to_string(),
                _ => format!("/webhooks/mobbex/main?token={TOKEN}"),
            };
            // A body the size of a real one, declared and never (or slowly) sent.
            let head = format!(
                "POST {target} HTTP/1.1\r\nHost: paysync\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n"
            );
            if s.write_all(head.as_bytes()).await.is_err() {
                return closed(&[]);
            }
            if kind == Slow::BodyTrickle {
                br#"{"type":"checkout""#.repeat(100)
            } else {
                Vec::new()
            }
        }
    };
    let mut tick = tokio::time::interval(TRICKLE_EVERY);
    let mut next = 0;
    let mut buf = [0u8; 1024];
    let mut answer = Vec::new();
    let deadline = tokio::time::Instant::from_std(give_up);
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return closed(&answer),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick(), if next < trickle.len() => {
                if s.write_all(&trickle[next..next + 1]).await.is_err() {
                    return closed(&answer);
                }
                next += 1;
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Outcome { kind, held: None, status: status_of(&answer) };
            }
        }
    }
}

/// The slow connections' mix: 2,000 without a token, and a few with it whose body trickles.
fn attack_mix() -> Vec<Slow> {
    let mut v = Vec::new();
    v.extend(std::iter::repeat_n(Slow::HeadTrickle, 700));
    v.extend(std::iter::repeat_n(Slow::Silent, 700));
    v.extend(std::iter::repeat_n(Slow::WrongToken, 300));
    v.extend(std::iter::repeat_n(Slow::NoToken, 300));
    v.extend(std::iter::repeat_n(Slow::BodyTrickle, 10));
    v
}

/// The slow connections, on a runtime and thread of their own so that their 2,000 tasks do not
/// delay the test's own measurements. Each slot reopens its connection when the server drops
/// it, until the attack ends.
struct Attack {
    thread: std::thread::JoinHandle<Vec<Outcome>>,
    /// Every slot has connected once.
    all_open: Arc<tokio::sync::Notify>,
    connected: Arc<AtomicUsize>,
    end: Arc<Mutex<Option<Instant>>>,
}

impl Attack {
    fn start(addr: SocketAddr) -> Attack {
        let all_open = Arc::new(tokio::sync::Notify::new());
        let connected = Arc::new(AtomicUsize::new(0));
        let end = Arc::new(Mutex::new(None::<Instant>));
        let (a, c, e) = (all_open.clone(), connected.clone(), end.clone());
        let thread = std::thread::spawn(move || {
            // A real attacker's CPU is not the server's: on loopback, at least let the server
            // and the real clients run first (nice 10 for this thread only).
            // SAFETY: plain FFI calls on this thread's own id.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, 10);
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mix = attack_mix();
                let total = mix.len();
                let slots: Vec<_> = mix
                    .into_iter()
                    .map(|kind| {
                        tokio::spawn(slot(addr, kind, a.clone(), c.clone(), total, e.clone()))
                    })
                    .collect();
                let mut outcomes = Vec::new();
                for s in slots {
                    outcomes.extend(s.await.unwrap());
                }
                outcomes
            })
        });
        Attack {
            thread,
            all_open,
            connected,
            end,
        }
    }

    /// Stop opening connections at `end`.
    fn stop_at(&self, end: Instant) {
        *self.end.lock().unwrap() = Some(end);
    }

    /// The outcomes of all connections, once every one was closed (or given up on).
    async fn outcomes(self) -> Vec<Outcome> {
        tokio::task::spawn_blocking(move || self.thread.join().unwrap())
            .await
            .unwrap()
    }
}

async fn slot(
    addr: SocketAddr,
    kind: Slow,
    all_open: Arc<tokio::sync::Notify>,
    connected: Arc<AtomicUsize>,
    total: usize,
    end: Arc<Mutex<Option<Instant>>>,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut first = true;
    // A refused request is sent again every 2 s (a flood of them is another attack); a held
    // connection is reopened half a second after the server drops it.
    let pause = match kind {
        Slow::WrongToken | Slow::NoToken => Duration::from_secs(2),
        _ => Duration::from_millis(500),
    };
    loop {
        let end = *end.lock().unwrap();
        if end.is_some_and(|e| Instant::now() >= e) {
            return outcomes;
        }
        // The client gives up on a connection the server never closes.
        let give_up = end.unwrap_or_else(Instant::now) + Duration::from_secs(15);
        let Ok(s) = TcpStream::connect(addr).await else {
            tokio::time::sleep(pause).await;
            continue;
        };
        if std::mem::take(&mut first) && connected.fetch_add(1, Ordering::SeqCst) + 1 == total {
            all_open.notify_one();
        }
        outcomes.push(slow_connection(s, kind, give_up).await);
        tokio::time::sleep(pause).await;
    }
}

/// How long after `since` the server's count of open connections fell to one (the request
/// asking), polled until `within` has passed.
async fn drained_after(svc: &Service, since: Instant, within: Duration) -> Option<Duration> {
    let client = reqwest::Client::new();
    while since.elapsed() < within {
        let text = client
            .get(svc.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let open: Option<f64> = text
            .lines()
            .find_map(|l| l.strip_prefix("paysync_http_connections "))
            .and_then(|v| v.trim().parse().ok());
        if open.is_some_and(|n| n <= 1.0) {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Requests on fresh connections (as Mobbex and a monitor send them) every `every` until `end`:
/// the latencies of those answered with 200, and what went wrong with the others.
async fn probe(
    request: impl Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder,
    every: Duration,
    end: Instant,
) -> (Vec<Duration>, Vec<String>) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let (mut took, mut failures) = (Vec::new(), Vec::new());
    let mut i = 0;
    while Instant::now() < end {
        let t = Instant::now();
        match request(&client, i).send().await {
            Ok(r) if r.status().as_u16() == 200 => took.push(t.elapsed()),
            Ok(r) => failures.push(format!("status {}", r.status())),
            Err(e) => failures.push(format!("{e} after {:?}", t.elapsed())),
        }
        i += 1;
        tokio::time::sleep(every).await;
    }
    (took, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_do_not_delay_real_webhooks_or_healthz() {
    let _heavy = crate::helpers::CPU_HEAVY.lock().await;
    raise_own_fd_limit(2_500);
    let env = TestEnv::start_with(SimOptions::default(), "").await;
    let uids = seeded_env_ops(&env, 5);
    let svc = Service::start(&env, LISTENER_TOML);

    let attack = Attack::start(svc.addr);
    // The real traffic starts once every slot has connected (bounded: on a server out of file
    // descriptors the connections pile up in the accept queue).
    let _ = tokio::time::timeout(Duration::from_secs(10), attack.all_open.notified()).await;
    let connected = attack.connected.load(Ordering::SeqCst);
    let end = Instant::now() + ATTACK;
    attack.stop_at(end);
    let hook_url = svc.url(&format!("/webhooks/mobbex/main?token={TOKEN}"));
    let hooks = tokio::spawn(probe(
        move |c, i| {
            c.post(&hook_url)
                .json(&hook(&uids[i % uids.len()], "200", 1000.0))
        },
        Duration::from_millis(20),
        end,
    ));
    let health_url = svc.url("/healthz");
    let health = tokio::spawn(probe(
        move |c, _| c.get(&health_url),
        Duration::from_millis(50),
        end,
    ));
    let (mut hook_took, hook_failures) = hooks.await.unwrap();
    let (health_took, health_failures) = health.await.unwrap();
    let drained = drained_after(
        &svc,
        end,
        HEADER_TIMEOUT + BODY_TIMEOUT + Duration::from_secs(5),
    )
    .await;
    let outcomes = attack.outcomes().await;
    let metrics = svc.metrics().await;

    hook_took.sort();
    let p99 = hook_took.last().map(|_| percentile(&hook_took, 0.99));
    let max = hook_took.last().copied();
    eprintln!(
        "slow connections: {} opened, {connected} of them at once; real webhooks: {} ok, {} failed, \
         p99 {p99:?}, max {max:?}; healthz: {} ok, {} failed; the server had closed them all \
         {drained:?} after the attack",
        outcomes.len(),
        hook_took.len(),
        hook_failures.len(),
        health_took.len(),
        health_failures.len(),
    );
    for kind in [
        Slow::HeadTrickle,
        Slow::Silent,
        Slow::WrongToken,
        Slow::NoToken,
        Slow::BodyTrickle,
    ] {
        let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.kind == kind).collect();
        let longest = of.iter().filter_map(|o| o.held).max();
        let never = of.iter().filter(|o| o.held.is_none()).count();
        eprintln!(
            "  {kind:?}: {} connections, {never} not closed by the server, longest held {longest:?}",
            of.len()
        );
    }

    // Real traffic was served, fast.
    assert!(
        hook_failures.is_empty(),
        "{} real webhooks failed: {:?}",
        hook_failures.len(),
        &hook_failures[..hook_failures.len().min(5)]
    );
    assert!(hook_took.len() >= 100, "{} webhooks sent", hook_took.len());
    // What the listener must prevent is a real request waiting behind the slow ones — for a
    // slot, or for the accept loop — which costs it on the order of the header timeout (2 s).
    // An eighth of it: well clear of that failure, and of this 2-core machine's scheduling when
    // the test's own 2,000 connections load it too (p99 10–40 ms usually, 100–142 ms seen on
    // loaded days, the unchanged code included).
    let p99 = p99.unwrap();
    assert!(
        p99 <= HEADER_TIMEOUT / 8,
        "real webhooks p99 {p99:?} (max {max:?})"
    );
    assert!(
        health_failures.is_empty(),
        "{} /healthz requests failed: {:?}",
        health_failures.len(),
        &health_failures[..health_failures.len().min(5)]
    );
    assert!(health_took.len() >= 50);

    // The server closed every slow connection within the timeouts: the last ones opened just
    // before the attack's end were gone a header timeout (or, for a head that came late, a body
    // timeout more) later. Counted by the server itself, so a slow client cannot blur it.
    let drained = drained.expect("the slow connections were never all closed");
    assert!(
        drained <= HEADER_TIMEOUT + BODY_TIMEOUT + Duration::from_secs(1),
        "the last slow connections were closed {drained:?} after the attack ended"
    );
    // And each client saw its connection closed (it may notice late: it runs at nice 10).
    let late: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| {
            let limit = match o.kind {
                // (A wrong or missing token: refused before the body, checked below.)
                Slow::HeadTrickle | Slow::Silent | Slow::WrongToken | Slow::NoToken => {
                    HEADER_TIMEOUT + SLACK
                }
                Slow::BodyTrickle => BODY_TIMEOUT + SLACK,
            };
            o.held.is_none_or(|h| h > limit)
        })
        .collect();
    assert!(
        late.is_empty(),
        "{} slow connections were not closed in time, e.g. {:?}",
        late.len(),
        &late[..late.len().min(5)]
    );
    // The declared body never came, yet the answer did: the token was checked before it.
    let refused_right_away = outcomes
        .iter()
        .filter(|o| matches!(o.kind, Slow::WrongToken | Slow::NoToken))
        .all(|o| o.status == Some(401));
    assert!(
        refused_right_away,
        "a wrong or missing token gets 401 at once"
    );
    // A token holder's trickling body is cut at the body timeout, not shed earlier (the 408
    // itself may be lost to the reset that the unread trickle causes; see the next test).
    for o in outcomes.iter().filter(|o| o.kind == Slow::BodyTrickle) {
        assert!(matches!(o.status, Some(408) | None), "{o:?}");
        assert!(
            o.held.unwrap() >= BODY_TIMEOUT - Duration::from_millis(200),
            "{o:?}"
        );
    }

    // The service raised its descriptor limit and says what it chose; it shed connections.
    let logs = svc.logs();
    let limits = logs
        .iter()
        .find(|l| l.contains("http listener limits"))
        .unwrap_or_else(|| panic!("no limits line in {:?}", &logs[..logs.len().min(20)]));
    let v: serde_json::Value = serde_json::from_str(limits).unwrap();
    assert!(
        v["fd_limit"].as_u64().unwrap() > CHILD_SOFT_NOFILE,
        "{limits}"
    );
    assert_eq!(v["max_connections"].as_u64(), Some(1000), "{limits}");
    let shed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("paysync_http_connections_shed_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        shed > 0,
        "1,400 held connections against a limit of 1,000 shed some"
    );
}
