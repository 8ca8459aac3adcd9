//! The daemon's HTTP/1.1 accept loop, built to stay up under hostile clients.
//!
//! `axum::serve` has no header read timeout and no connection limit: a client holding many
//! connections open without ever finishing a request exhausted the process's file descriptors,
//! and real webhooks and `/healthz` stopped being answered. Here:
//!
//! - a request head must arrive within `header_timeout` (hyper's `header_read_timeout`, which
//!   also bounds how long a keep-alive connection may sit idle between requests); heads larger
//!   than [`MAX_HEAD`] get 431, paths longer than [`MAX_PATH`] get 414 before routing;
//! - the webhook handler checks the token before it reads a body, and gives the body
//!   `body_timeout` (see `http.rs`);
//! - at most `max_connections` are open at once. At the limit a new connection **sheds the one
//!   that has waited longest for a request head** (connections inside a request are never shed).
//!   A client without the token can hold a connection only while it waits for a head (its
//!   requests are answered at once), so it can never lock a real webhook out. Only when every
//!   open connection is inside a request is a newcomer closed at once, and each of those ends
//!   within the timeouts.
//! - The soft `RLIMIT_NOFILE` is raised to the hard limit at start, and `max_connections` is kept
//!   below it minus [`FD_RESERVE`] for the ledger and outbound connections.
//!
//! Pauses are `retry::Backoff` constants; this module must not route or read request bodies
//! (`http.rs` does).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::DaemonSettings;
use crate::retry::Backoff;

/// Longest request path routed; longer ones get 414 (the longest route is the webhook's, with an
/// account name: names are short).
pub const MAX_PATH: usize = 512;
/// Longest request target (path and query) routed; longer ones get 414 (the query holds the
/// token, as long as the operator chose).
pub const MAX_URI: usize = 4096;
/// Largest request head (request line and headers); hyper answers 431 past it. Also bounds what
/// one connection can make the process buffer before its request is routed.
pub const MAX_HEAD: usize = 16 * 1024;
/// File descriptors kept for everything but listener connections: the ledger (a pool of a few
/// connections, each with its database and WAL files), outbound HTTP (ERPNext's pool keeps up to
/// 64 idle connections, plus one pool per Mobbex account), stdio, the journal socket, the runtime.
pub const FD_RESERVE: u64 = 256;
/// How long open connections get to finish their request after a stop signal.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// At most one warning per this interval about one kind of hostile event.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// After an `accept` that failed for want of descriptors or memory: wait this long, do not spin.
const ACCEPT_RETRY: Backoff = Backoff::constant(Duration::from_millis(50));

/// Lets one log line through per [`WARN_EVERY`] and counts the others, so a flood of hostile
/// requests cannot flood the log (journald's rate limit would then drop the real lines too).
pub(crate) struct LogThrottle {
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    pub(crate) const fn new() -> LogThrottle {
        LogThrottle {
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(lines suppressed since the last one)` when a line may be written now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            s.1 += 1;
            return None;
        }
        s.0 = Some(Instant::now());
        Some(std::mem::take(&mut s.1))
    }
}

/// Pending connections the kernel may queue before `accept` (capped by `net.core.somaxconn`).
/// A burst of connections past the queue has its handshakes dropped, and a real webhook caught in
/// one waits a second for its SYN to be sent again: keep the queue deeper than the connection
/// limit's usual default.
const BACKLOG: u32 = 4096;

/// Bind the listening socket, with a deep accept queue ([`BACKLOG`]).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// What the listener enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// The soft and hard `RLIMIT_NOFILE` of this process.
#[allow(clippy::unnecessary_cast)] // `rlim_t` is u64 here, not on every target
pub fn nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((lim.rlim_cur as u64, lim.rlim_max as u64))
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (systemd starts services with a soft limit of
/// 1024). Returns the soft limit before and after. Only calls `setrlimit` when there is something
/// to raise (a unit may set `LimitNOFILE=` itself, and a seccomp filter may forbid the call).
#[allow(clippy::unnecessary_cast)] // `rlim_t` is u64 here, not on every target
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let (soft, hard) = nofile_limit()?;
    if soft >= hard {
        return Ok((soft, soft));
    }
    let lim = libc::rlimit {
        rlim_cur: hard as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((soft, hard))
}

/// The connection limit that fits `fd_limit`: the configured one, or less when the descriptors
/// left after [`FD_RESERVE`] (half of them, for a tiny limit) are fewer.
pub fn connection_budget(configured: usize, fd_limit: u64) -> usize {
    let available = if fd_limit > 2 * FD_RESERVE {
        fd_limit - FD_RESERVE
    } else {
        fd_limit / 2
    };
    configured
        .min(usize::try_from(available).unwrap_or(usize::MAX))
        .max(1)
}

/// Raise the descriptor limit and choose the connection limit; logs what was chosen.
pub fn plan(daemon: &DaemonSettings) -> Limits {
    let configured = daemon.max_connections;
    let fd_limit = match raise_nofile_limit() {
        Ok((before, now)) => {
            if now > before {
                info!(
                    from = before,
                    to = now,
                    "raised the open-file limit (RLIMIT_NOFILE)"
                );
            }
            now
        }
        Err(e) => {
            let soft = nofile_limit().map(|(s, _)| s).unwrap_or(1024);
            warn!(error = %e, fd_limit = soft, "could not raise the open-file limit (RLIMIT_NOFILE)");
            soft
        }
    };
    let max_connections = connection_budget(configured, fd_limit);
    if max_connections < configured {
        warn!(
            configured,
            max_connections,
            fd_limit,
            "[daemon] max_connections lowered to fit the open-file limit; raise LimitNOFILE="
        );
    }
    info!(
        fd_limit,
        fd_reserve = FD_RESERVE,
        max_connections,
        header_timeout_ms = daemon.header_timeout.as_millis() as u64,
        body_timeout_ms = daemon.body_timeout.as_millis() as u64,
        "http listener limits"
    );
    Limits {
        header_timeout: daemon.header_timeout,
        max_connections,
    }
}

/// Serve `router` on `listener` until `stop` is cancelled, then give open connections
/// [`STOP_GRACE`] to finish.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, stop: CancellationToken) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEAD)
        .max_buf_size(4 * MAX_HEAD);
    let builder = Arc::new(builder);
    let registry = Arc::new(Registry::new(limits.max_connections));
    let tracker = TaskTracker::new();
    let accept_errors = LogThrottle::new();
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok((stream, _peer)) => stream,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // Out of descriptors or memory: wait a little instead of spinning.
                    if let Some(suppressed) = accept_errors.allow() {
                        warn!(error = %e, suppressed, "cannot accept connections");
                    }
                    tokio::time::sleep(ACCEPT_RETRY.delay(1)).await;
                    continue;
                }
            },
        };
        let Some((id, shed)) = registry.admit() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tracker.spawn(connection(
            stream,
            Conn {
                id,
                shed,
                registry: registry.clone(),
                builder: builder.clone(),
                router: router.clone(),
                stop: stop.clone(),
            },
        ));
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// Errors that concern one connection, not the listener.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// One accepted connection and what it needs.
struct Conn {
    id: u64,
    /// Cancelled when the registry sheds this connection to make room.
    shed: CancellationToken,
    registry: Arc<Registry>,
    builder: Arc<http1::Builder>,
    router: Router,
    stop: CancellationToken,
}

async fn connection(stream: TcpStream, c: Conn) {
    let Conn {
        id,
        shed,
        registry,
        builder,
        router,
        stop,
    } = c;
    // Leaves the registry however the task ends.
    let _registered = Registered {
        registry: registry.clone(),
        id,
    };
    let hyper_router = TowerToHyperService::new(router);
    let in_requests = registry.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        // hyper calls this once a whole head was read: from now on the connection is not shed.
        let in_request = InRequest::start(in_requests.clone(), id);
        let (path, query) = (
            req.uri().path().len(),
            req.uri().query().map_or(0, str::len),
        );
        let call = (path <= MAX_PATH && path + query <= MAX_URI)
            .then(|| hyper::service::Service::call(&hyper_router, req));
        async move {
            let _in_request = in_request;
            match call {
                Some(call) => call.await,
                None => Ok::<_, Infallible>(uri_too_long()),
            }
        }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        // Dropping the connection closes the socket.
        _ = shed.cancelled() => debug!("connection shed at the connection limit"),
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(error = %e, "connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(STOP_GRACE, conn.as_mut()).await;
        }
    }
}

/// A connection's place in the registry, given up on drop.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

fn uri_too_long() -> Response<Body> {
    let mut r = Response::new(Body::from(r#"{"error":"request target too long"}"#));
    *r.status_mut() = StatusCode::URI_TOO_LONG;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Marks a connection as inside a request while alive.
struct InRequest {
    registry: Arc<Registry>,
    id: u64,
}

impl InRequest {
    fn start(registry: Arc<Registry>, id: u64) -> InRequest {
        registry.lock().in_request(id);
        InRequest { registry, id }
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.registry.lock().waiting(self.id);
    }
}

/// The open connections and which of them are waiting for a request head.
struct Registry {
    max: usize,
    inner: Mutex<Slots>,
    at_limit_log: LogThrottle,
}

impl Registry {
    fn new(max: usize) -> Registry {
        Registry {
            max,
            inner: Mutex::new(Slots::default()),
            at_limit_log: LogThrottle::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // The state stays consistent across a panic (each change is one map operation).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Room for a new connection: its id and shedding signal, or `None` to close it at once.
    fn admit(&self) -> Option<(u64, CancellationToken)> {
        let mut slots = self.lock();
        let admitted = slots.admit(self.max);
        metrics::gauge!(crate::metrics::HTTP_CONNECTIONS).set(slots.open.len() as f64);
        let admitted = match admitted {
            Admit::Room(c) => return Some(c),
            Admit::Shed(c) => {
                metrics::counter!(crate::metrics::HTTP_SHED).increment(1);
                Some(c)
            }
            Admit::Refused => {
                metrics::counter!(crate::metrics::HTTP_REFUSED).increment(1);
                None
            }
        };
        drop(slots);
        if let Some(suppressed) = self.at_limit_log.allow() {
            warn!(
                max_connections = self.max,
                suppressed,
                "connection limit reached: closing connections that have not sent a request \
                 (paysync_http_connections_shed_total / _refused_total count them)"
            );
        }
        admitted
    }

    fn remove(&self, id: u64) {
        let mut slots = self.lock();
        slots.remove(id);
        metrics::gauge!(crate::metrics::HTTP_CONNECTIONS).set(slots.open.len() as f64);
    }
}

/// The bookkeeping behind [`Registry`], without locking or metrics (unit-tested).
#[derive(Default)]
struct Slots {
    next_id: u64,
    next_seq: u64,
    /// Open connections (a shed one leaves at once): id → its entry.
    open: HashMap<u64, Slot>,
    /// Connections waiting for a request head, by when they began waiting: seq → id.
    waiting: BTreeMap<u64, u64>,
}

struct Slot {
    /// `Some(seq)` while waiting for a request head (its key in `waiting`).
    waiting_since: Option<u64>,
    shed: CancellationToken,
}

#[derive(Debug)]
enum Admit {
    Room((u64, CancellationToken)),
    /// Admitted after shedding the connection that had waited longest for a head.
    Shed((u64, CancellationToken)),
    Refused,
}

impl Slots {
    fn admit(&mut self, max: usize) -> Admit {
        let mut shed = false;
        if self.open.len() >= max {
            let Some((_, oldest)) = self.waiting.pop_first() else {
                return Admit::Refused;
            };
            if let Some(slot) = self.open.remove(&oldest) {
                slot.shed.cancel();
            }
            shed = true;
        }
        let id = self.next_id;
        self.next_id += 1;
        let token = CancellationToken::new();
        self.open.insert(
            id,
            Slot {
                waiting_since: None,
                shed: token.clone(),
            },
        );
        self.waiting(id);
        if shed {
            Admit::Shed((id, token))
        } else {
            Admit::Room((id, token))
        }
    }

    /// The connection's head was read: it is inside a request.
    fn in_request(&mut self, id: u64) {
        if let Some(seq) = self.open.get_mut(&id).and_then(|s| s.waiting_since.take()) {
            self.waiting.remove(&seq);
        }
    }

    /// The connection waits for a (next) request head from now on.
    fn waiting(&mut self, id: u64) {
        let seq = self.next_seq;
        if let Some(slot) = self.open.get_mut(&id) {
            self.next_seq += 1;
            if let Some(old) = slot.waiting_since.replace(seq) {
                self.waiting.remove(&old);
            }
            self.waiting.insert(seq, id);
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(seq) = self.open.remove(&id).and_then(|s| s.waiting_since) {
            self.waiting.remove(&seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(a: Admit) -> u64 {
        match a {
            Admit::Room((id, _)) | Admit::Shed((id, _)) => id,
            Admit::Refused => panic!("refused"),
        }
    }

    #[test]
    fn at_the_limit_the_connection_waiting_longest_for_a_head_is_shed() {
        let mut s = Slots::default();
        let a = s.admit(3);
        let Admit::Room((a, a_shed)) = a else {
            panic!("{a:?}")
        };
        let b = id(s.admit(3));
        let c = id(s.admit(3));
        // `a` is inside a request; `b` finished one and waits again (later than `c`).
        s.in_request(a);
        s.in_request(b);
        s.waiting(b);
        let Admit::Shed((d, _)) = s.admit(3) else {
            panic!("expected a shed")
        };
        assert!(!s.open.contains_key(&c), "c waited longest");
        assert!(s.open.contains_key(&a) && s.open.contains_key(&b) && s.open.contains_key(&d));
        assert!(
            !a_shed.is_cancelled(),
            "a connection inside a request is never shed"
        );
        // Next: b (waiting since before d arrived).
        assert!(matches!(s.admit(3), Admit::Shed(_)));
        assert!(!s.open.contains_key(&b));
    }

    #[test]
    fn when_every_connection_is_inside_a_request_a_newcomer_is_refused() {
        let mut s = Slots::default();
        let ids: Vec<u64> = (0..2).map(|_| id(s.admit(2))).collect();
        for i in &ids {
            s.in_request(*i);
        }
        assert!(matches!(s.admit(2), Admit::Refused));
        // One request ends: its connection may be shed for the next newcomer.
        s.waiting(ids[0]);
        assert!(matches!(s.admit(2), Admit::Shed(_)));
        // A connection that ended frees its place.
        s.remove(ids[1]);
        assert!(matches!(s.admit(2), Admit::Room(_)));
        assert_eq!(s.open.len(), 2);
    }

    #[test]
    fn the_shed_connection_is_told_and_forgotten() {
        let mut s = Slots::default();
        let Admit::Room((first, token)) = s.admit(1) else {
            panic!()
        };
        assert!(matches!(s.admit(1), Admit::Shed(_)));
        assert!(token.is_cancelled());
        // Its task still reports its end; nothing else changes.
        s.in_request(first);
        s.waiting(first);
        s.remove(first);
        assert_eq!(s.open.len(), 1);
        assert_eq!(s.waiting.len(), 1);
    }

    #[test]
    fn the_connection_budget_leaves_descriptors_for_the_rest() {
        assert_eq!(connection_budget(1024, 524_288), 1024);
        assert_eq!(connection_budget(1024, 1024), 1024 - FD_RESERVE as usize);
        assert_eq!(connection_budget(4096, 4096), 4096 - FD_RESERVE as usize);
        assert_eq!(connection_budget(1024, 256), 128);
        assert_eq!(connection_budget(1024, 0), 1);
    }
}
