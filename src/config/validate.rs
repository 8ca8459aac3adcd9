//! Every key checked, before any work starts, into [`Settings`].
//!
//! Each number and duration has a range (the table below): a value past it is refused at start as
//! `key: problem (got VALUE)`, not found later as a poll that panics (`lookback = "200000000h"`
//! overflowed the timestamp), a request that times out at once (`erp.timeout = "0s"`) or a window
//! of a century. Secret values are never shown.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;
use url::Url;

mod account;

use super::raw::{RawDaemon, RawErp, RawInFlight, RawSettings, RawStore};
use super::secrets::{self, SecretKey, SentAs};
use super::{ConfigError, DaemonSettings, ErpSettings, InFlight, Settings, StoreSettings};

use account::validate_accounts;

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

// ---- every numeric and duration key: default and accepted range --------------------------------

/// `[daemon] lookback`: a poll re-reads this much before the previous poll's end.
pub const LOOKBACK: (Duration, RangeInclusive<Duration>) =
    (secs(2 * HOUR), secs(0)..=secs(400 * DAY));
/// `[daemon] retry_budget`: the waits between retries of one API call (0 = no retries).
pub const RETRY_BUDGET: (Duration, RangeInclusive<Duration>) = (secs(60), secs(0)..=secs(HOUR));
/// `[daemon] inbox_limit`: queued webhook triggers per account before 429.
pub const INBOX_LIMIT: (i64, RangeInclusive<i64>) = (10_000, 1..=1_000_000);
/// `[daemon] max_sync_days`: how far back `sync --since` may go.
pub const MAX_SYNC_DAYS: (i64, RangeInclusive<i64>) = (400, 1..=3660);
/// `[daemon] header_timeout`: a client's time to send a request head (and the keep-alive idle limit).
pub const HEADER_TIMEOUT: (Duration, RangeInclusive<Duration>) =
    (secs(10), secs(1)..=secs(5 * MINUTE));
/// `[daemon] body_timeout`: a webhook body's time to arrive once its head was read.
pub const BODY_TIMEOUT: (Duration, RangeInclusive<Duration>) =
    (secs(30), secs(1)..=secs(5 * MINUTE));
/// `[daemon] max_connections`: connections open at once (lowered at start to fit the fd limit).
pub const MAX_CONNECTIONS: (i64, RangeInclusive<i64>) = (1024, 16..=1_000_000);
/// `[daemon] lease`: how long a dead, paused or cut-off instance's poll, inbox and order leases
/// last before another takes its work over (its holder renews every quarter of it).
pub const LEASE: (Duration, RangeInclusive<Duration>) = (secs(30), secs(1)..=secs(HOUR));
/// `[erp] max_in_flight`: Payment Entry writes at once.
pub const MAX_IN_FLIGHT: (i64, RangeInclusive<i64>) = (4, 1..=64);
/// `[erp] timeout`: one ERPNext answer.
pub const ERP_TIMEOUT: (Duration, RangeInclusive<Duration>) =
    (secs(30), secs(1)..=secs(10 * MINUTE));
/// `[erp] commit_horizon`: how long ERPNext may still commit a create whose answer was lost.
/// Not 0: a create would then be sent again while the first may still commit.
pub const COMMIT_HORIZON: (Duration, RangeInclusive<Duration>) = (secs(120), secs(1)..=secs(HOUR));

/// The context every message carries: the file.
struct Check<'a> {
    file: &'a str,
}

impl Check<'_> {
    fn bad(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Key {
            file: self.file.to_string(),
            key: key.to_string(),
            message,
        }
    }

    fn duration(
        &self,
        key: &str,
        raw: Option<&str>,
        (default, range): (Duration, RangeInclusive<Duration>),
    ) -> Result<Duration, ConfigError> {
        let Some(raw) = raw else {
            return Ok(default);
        };
        let expected = format!(
            "expected a duration from {} to {}",
            show(*range.start()),
            show(*range.end())
        );
        match parse_duration(raw) {
            Ok(d) if range.contains(&d) => Ok(d),
            Ok(_) => Err(self.bad(key, format!("{expected} (got {raw:?})"))),
            Err(m) => Err(self.bad(
                key,
                format!("{expected}, like \"30s\", \"2h\" or \"3d\" (got {raw:?}: {m})"),
            )),
        }
    }

    fn whole(
        &self,
        key: &str,
        raw: Option<i64>,
        (default, range): (i64, RangeInclusive<i64>),
    ) -> Result<i64, ConfigError> {
        let n = raw.unwrap_or(default);
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(self.bad(
                key,
                format!(
                    "expected a whole number from {} to {} (got {n})",
                    range.start(),
                    range.end()
                ),
            ))
        }
    }

    fn secret(
        &self,
        s: SecretKey<'_>,
        creds_dir: Option<&Path>,
    ) -> Result<Option<secrecy::SecretString>, ConfigError> {
        secrets::resolve(s, creds_dir).map_err(|(key, m)| self.bad(&key, m))
    }
}

/// A required secret sent in an HTTP header.
fn header_secret<'a>(key: &'a str, inline: Option<String>, file: Option<String>) -> SecretKey<'a> {
    SecretKey {
        key,
        inline,
        file,
        required: true,
        sent_as: SentAs::Header,
    }
}

/// A duration for messages: "0s", "90s", "10m", "2h", "400d".
fn show(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 {
        format!("{}ms", d.as_millis())
    } else if s != 0 && s.is_multiple_of(DAY) {
        format!("{}d", s / DAY)
    } else if s != 0 && s.is_multiple_of(HOUR) {
        format!("{}h", s / HOUR)
    } else if s != 0 && s.is_multiple_of(MINUTE) {
        format!("{}m", s / MINUTE)
    } else {
        format!("{s}s")
    }
}

pub(super) fn validate(
    raw: RawSettings,
    path: &Path,
    creds_dir: Option<&Path>,
) -> Result<Settings, ConfigError> {
    let file = path.display().to_string();
    let c = Check { file: &file };
    // The first problem found is the one reported: the sections are checked in this order.
    let daemon = validate_daemon(&c, raw.daemon)?;
    let store = validate_store(&c, raw.store, creds_dir)?;
    let erp = validate_erp(&c, raw.erp, creds_dir)?;
    let accounts = validate_accounts(&c, raw.accounts, creds_dir)?;
    Ok(Settings {
        file: path.to_path_buf(),
        daemon,
        store,
        erp,
        accounts,
        secrets_in_file: Vec::new(),
    })
}

/// `[daemon]`: time zone, schedule, the ranged numbers and durations, log level, listen address.
fn validate_daemon(c: &Check<'_>, d: RawDaemon) -> Result<DaemonSettings, ConfigError> {
    let timezone = jiff::tz::TimeZone::get(&d.timezone).map_err(|e| {
        c.bad(
            "daemon.timezone",
            format!(
                "expected an IANA time zone like America/Argentina/Buenos_Aires (got {:?}: {e})",
                d.timezone
            ),
        )
    })?;
    check_cron("daemon.schedule", &d.schedule).map_err(|m| c.bad("daemon.schedule", m))?;
    let lookback = c.duration("daemon.lookback", d.lookback.as_deref(), LOOKBACK)?;
    let retry_budget = c.duration(
        "daemon.retry_budget",
        d.retry_budget.as_deref(),
        RETRY_BUDGET,
    )?;
    let inbox_limit = c.whole("daemon.inbox_limit", d.inbox_limit, INBOX_LIMIT)?;
    let max_sync_days = c.whole("daemon.max_sync_days", d.max_sync_days, MAX_SYNC_DAYS)?;
    let header_timeout = c.duration(
        "daemon.header_timeout",
        d.header_timeout.as_deref(),
        HEADER_TIMEOUT,
    )?;
    let body_timeout = c.duration(
        "daemon.body_timeout",
        d.body_timeout.as_deref(),
        BODY_TIMEOUT,
    )?;
    let max_connections = c.whole("daemon.max_connections", d.max_connections, MAX_CONNECTIONS)?;
    let lease = c.duration("daemon.lease", d.lease.as_deref(), LEASE)?;
    if let Some(level) = &d.log_level
        && !is_log_filter(level)
    {
        return Err(c.bad(
            "daemon.log_level",
            format!(
                "expected error, warn, info, debug or trace, or per-target levels like \"paysync=debug,warn\" (got {level:?})"
            ),
        ));
    }
    // Port 0 (any free port, logged at start) is allowed: tests and benchmarks use it.
    let listen: SocketAddr = d.listen.trim().parse().map_err(|_| {
        c.bad(
            "daemon.listen",
            format!(
                "expected ADDRESS:PORT like 127.0.0.1:8080, port 0 to 65535 (got {:?})",
                d.listen
            ),
        )
    })?;
    Ok(DaemonSettings {
        timezone_name: d.timezone,
        timezone,
        schedule: d.schedule,
        lookback,
        listen,
        log_level: d.log_level,
        retry_budget,
        inbox_limit,
        max_sync_days: max_sync_days as u32,
        header_timeout,
        body_timeout,
        max_connections: max_connections as usize,
        lease,
    })
}

/// `[store]`: the ledger's URL, written inline or read from `url_file` (shown masked in the
/// message, under the key it came from).
fn validate_store(
    c: &Check<'_>,
    s: RawStore,
    creds_dir: Option<&Path>,
) -> Result<StoreSettings, ConfigError> {
    let (key, url) = match (s.url, s.url_file) {
        (Some(_), Some(_)) => {
            return Err(c.bad(
                "store.url",
                "give either store.url or store.url_file, not both".into(),
            ));
        }
        (Some(url), None) => ("store.url", url),
        (None, Some(file)) => {
            let from_file = c.secret(
                SecretKey {
                    key: "store.url",
                    inline: None,
                    file: Some(file),
                    required: true,
                    sent_as: SentAs::UrlToken,
                },
                creds_dir,
            )?;
            let url = from_file.map(|u| u.expose_secret().to_string());
            ("store.url_file", url.unwrap_or_default())
        }
        (None, None) => ("store.url", super::raw::default_store()),
    };
    let url = url.trim().to_string();
    crate::store::check_url(&url)
        .map_err(|m| c.bad(key, format!("{m} (got {:?})", crate::redact::url(&url))))?;
    Ok(StoreSettings { url })
}

/// `[erp]`: kind, URL, limits, and the two required credentials.
fn validate_erp(
    c: &Check<'_>,
    e: RawErp,
    creds_dir: Option<&Path>,
) -> Result<ErpSettings, ConfigError> {
    if e.kind != "erpnext" {
        return Err(c.bad(
            "erp.kind",
            format!(
                "expected \"erpnext\" (the only ERP supported) (got {:?})",
                e.kind
            ),
        ));
    }
    let erp_url = parse_http_url(
        &e.url,
        "ERPNext is reached with erp.api_key and erp.api_secret",
    )
    .map_err(|m| c.bad("erp.url", m))?;
    let max_in_flight = match e.max_in_flight {
        Some(RawInFlight::Auto) => InFlight::Auto,
        Some(RawInFlight::Number(n)) => {
            InFlight::Fixed(c.whole("erp.max_in_flight", Some(n), MAX_IN_FLIGHT)? as usize)
        }
        None => InFlight::Fixed(MAX_IN_FLIGHT.0 as usize),
    };
    let timeout = c.duration("erp.timeout", e.timeout.as_deref(), ERP_TIMEOUT)?;
    let commit_horizon = c.duration(
        "erp.commit_horizon",
        e.commit_horizon.as_deref(),
        COMMIT_HORIZON,
    )?;
    Ok(ErpSettings {
        url: erp_url,
        api_key: c
            .secret(
                header_secret("erp.api_key", e.api_key, e.api_key_file),
                creds_dir,
            )?
            .expect("required"),
        api_secret: c
            .secret(
                header_secret("erp.api_secret", e.api_secret, e.api_secret_file),
                creds_dir,
            )?
            .expect("required"),
        max_in_flight,
        timeout,
        commit_horizon,
    })
}

/// A level or `target=level` list. The log filter would take a bare word (`verbose`) as a target
/// name and log nothing else, so every directive must end in a level here.
fn is_log_filter(s: &str) -> bool {
    const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
    s.split(',').all(|d| {
        let level = d.rsplit_once('=').map_or(d, |(_, l)| l).trim();
        LEVELS.contains(&level.to_ascii_lowercase().as_str())
    }) && tracing_subscriber::EnvFilter::try_new(s).is_ok()
}

/// An http(s) URL with a host and no userinfo; the message shows the URL masked.
fn parse_http_url(s: &str, auth: &str) -> Result<Url, String> {
    let shown = crate::redact::url(s.trim());
    let u = Url::parse(s.trim())
        .map_err(|e| format!("expected an http(s) URL (got {shown:?}: {e})"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(format!(
            "expected an http(s) URL with a host (got {shown:?})"
        ));
    }
    if !u.username().is_empty() || u.password().is_some() {
        // reqwest would send them as Basic auth, replacing the API's own credentials.
        return Err(format!(
            "expected a URL without user name or password: {auth} (got {shown:?})"
        ));
    }
    Ok(u)
}

/// Parse a friendly duration ("2h", "90s", "1h 30m", "3d"; a day is 24 hours).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d: jiff::SignedDuration = match s.parse() {
        Ok(d) => d,
        Err(first) => {
            let span: jiff::Span = s.parse().map_err(|_| first.to_string())?;
            span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                .map_err(|e| e.to_string())?
        }
    };
    if d.is_negative() {
        return Err("must not be negative".into());
    }
    Duration::try_from(d).map_err(|e| e.to_string())
}

/// Validate a cron expression: standard 5 fields, or 6 with seconds.
pub fn check_cron(_key: &str, expr: &str) -> Result<(), String> {
    crate::schedule::parse(expr).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_written() {
        for (text, secs) in [
            ("90s", 90),
            ("2h", 7200),
            ("1h 30m", 5400),
            ("3d", 3 * DAY),
            ("400 days", 400 * DAY),
            ("1w", 7 * DAY),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for text in ["soon", "-5s", "1 month", ""] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
    }

    #[test]
    fn bounds_are_shown_in_friendly_units() {
        assert_eq!(show(Duration::ZERO), "0s");
        assert_eq!(show(Duration::from_secs(90)), "90s");
        assert_eq!(show(Duration::from_secs(600)), "10m");
        assert_eq!(show(Duration::from_secs(400 * DAY)), "400d");
        assert_eq!(show(Duration::from_millis(1500)), "1500ms");
    }
}
