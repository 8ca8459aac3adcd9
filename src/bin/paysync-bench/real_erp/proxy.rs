//! A counting HTTP proxy on loopback in front of the real ERPNext: every request paysync (or
//! the replay) sends goes through it, so the benchmark knows the calls per entry and the
//! latency of each Payment Entry create as the client saw it, without trusting the client.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;

/// What passed through since the last [`Proxy::reset`].
#[derive(Default)]
struct Seen {
    calls: usize,
    create_latencies: Vec<Duration>,
    deadlocks: usize,
    /// The first create sent and the last create answered: the span paysync was writing.
    first_create: Option<Instant>,
    last_answer: Option<Instant>,
}

/// Figures of the requests since the last reset.
pub struct Stats {
    pub calls: usize,
    pub write_p50_ms: f64,
    pub write_p90_ms: f64,
    pub deadlocks: usize,
    /// From the first create sent to the last create answered (zero: no create).
    pub write_span: Duration,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    seen: Mutex<Seen>,
}

pub struct Proxy {
    pub url: String,
    shared: Arc<Shared>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> anyhow::Result<Proxy> {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()?,
            seen: Mutex::new(Seen::default()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Proxy {
            url,
            shared,
            stop,
            task,
        })
    }

    pub fn reset(&self) {
        *self.shared.seen.lock().expect("poisoned") = Seen::default();
    }

    pub fn stats(&self) -> Stats {
        let seen = self.shared.seen.lock().expect("poisoned");
        let mut l = seen.create_latencies.clone();
        l.sort();
        let p = |q: f64| {
            if l.is_empty() {
                0.0
            } else {
                l[((l.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0
            }
        };
        Stats {
            calls: seen.calls,
            write_p50_ms: p(0.5),
            write_p90_ms: p(0.9),
            deadlocks: seen.deadlocks,
            write_span: match (seen.first_create, seen.last_answer) {
                (Some(a), Some(b)) => b.saturating_duration_since(a),
                _ => Duration::ZERO,
            },
        }
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn forward(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("proxy: {e}")),
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let is_create = parts.method == axum::http::Method::POST
        && (path.starts_with("/api/resource/Payment%20Entry")
            || path.starts_with("/api/resource/Payment Entry"));
    let mut out = shared
        .http
        .request(parts.method.clone(), format!("{}{path}", shared.upstream))
        .body(bytes);
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            out = out.header(name, value);
        }
    }
    let started = Instant::now();
    if is_create {
        shared
            .seen
            .lock()
            .expect("poisoned")
            .first_create
            .get_or_insert(started);
    }
    let answer = out.send().await;
    let took = started.elapsed();
    let resp = match answer {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("proxy: {e}")),
    };
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .cloned();
    let retry_after = resp.headers().get(axum::http::header::RETRY_AFTER).cloned();
    let body = resp.bytes().await.unwrap_or_default();
    {
        let mut seen = shared.seen.lock().expect("poisoned");
        seen.calls += 1;
        if is_create {
            seen.last_answer = Some(Instant::now());
            if status.is_success() {
                seen.create_latencies.push(took);
            } else if String::from_utf8_lossy(&body).contains("QueryDeadlockError") {
                seen.deadlocks += 1;
            }
        }
    }
    let mut r = Response::builder().status(status.as_u16());
    if let Some(ct) = content_type {
        r = r.header(axum::http::header::CONTENT_TYPE, ct);
    }
    if let Some(ra) = retry_after {
        r = r.header(axum::http::header::RETRY_AFTER, ra);
    }
    r.body(Body::from(body)).expect("a response")
}

fn plain(status: StatusCode, text: String) -> Response {
    Response::builder()
        .status(status)
        .body(Body::from(text))
        .expect("a response")
}
