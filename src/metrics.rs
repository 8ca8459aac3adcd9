//! Prometheus metrics: names in one place, the recorder installed once.
//!
//! The `metrics` macros are no-ops until a recorder is installed, so library code records
//! unconditionally; only `paysync run` installs the Prometheus recorder (process-global).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const DECISIONS: &str = "paysync_decisions_total";
pub const API_REQUESTS: &str = "paysync_api_requests_total";
pub const API_LATENCY: &str = "paysync_api_request_duration_seconds";
pub const RETRIES: &str = "paysync_retries_total";
pub const INBOX_DEPTH: &str = "paysync_inbox_depth";
pub const WEBHOOKS: &str = "paysync_webhooks_total";
/// The `account` label of webhooks for accounts that are not configured. Labels come only from
/// the configuration: a label per name in a URL would let anyone grow the process's memory.
/// Account names cannot contain parentheses, so this never collides with one.
pub const UNKNOWN_ACCOUNT: &str = "(unknown)";
/// HTTP connections open now.
pub const HTTP_CONNECTIONS: &str = "paysync_http_connections";
/// Connections closed to make room, at the connection limit, because they had not sent a request.
pub const HTTP_SHED: &str = "paysync_http_connections_shed_total";
/// Connections closed at once on arrival: at the limit, and every open one was inside a request.
pub const HTTP_REFUSED: &str = "paysync_http_connections_refused_total";
pub const LAST_GOOD_POLL: &str = "paysync_last_successful_poll_timestamp_seconds";
pub const POLLS: &str = "paysync_polls_total";
/// Where an `[erp] max_in_flight = "auto"` limit stands.
pub const WRITE_LIMIT: &str = "paysync_erp_write_limit";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the process-wide Prometheus recorder (idempotent) and return its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .expect("non-empty buckets")
                .install_recorder()
                .expect("the recorder is installed once")
        })
        .clone()
}

/// Record one API request: `api` = "mobbex" | "erpnext", `endpoint` a low-cardinality name.
pub fn api_request(api: &'static str, endpoint: &'static str, status: &str, took: Duration) {
    metrics::counter!(API_REQUESTS, "api" => api, "endpoint" => endpoint, "status" => status.to_string())
        .increment(1);
    metrics::histogram!(API_LATENCY, "api" => api, "endpoint" => endpoint)
        .record(took.as_secs_f64());
}
