//! Logging, set up in one place.
//!
//! Human-readable lines on a terminal, JSON lines with `--log-format json`. Level from `RUST_LOG`,
//! else `[daemon] log_level`, else `info`. Logs go to stderr so stdout stays for command output.
//! While a progress bar is drawn, log lines are printed above it (never through it).

use std::io::Write;
use std::sync::OnceLock;

use indicatif::ProgressBar;
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

static BAR: OnceLock<ProgressBar> = OnceLock::new();

/// Route log lines around this progress bar from now on.
pub fn attach_progress_bar(bar: ProgressBar) {
    let _ = BAR.set(bar);
}

/// stderr, suspending the progress bar (if any) while a line is written.
#[derive(Clone, Copy, Default)]
pub struct Stderr;

pub struct StderrLine;

impl Write for StderrLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match BAR.get() {
            Some(bar) if !bar.is_hidden() && !bar.is_finished() => {
                bar.suspend(|| std::io::stderr().write_all(buf))?
            }
            _ => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = StderrLine;
    fn make_writer(&'a self) -> Self::Writer {
        StderrLine
    }
}

/// The filter: `RUST_LOG` wins, then the configured level, then `default`.
pub fn filter(configured: Option<&str>, default: &str) -> EnvFilter {
    if let Ok(f) = EnvFilter::try_from_default_env() {
        return f;
    }
    let level = configured.unwrap_or(default);
    EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new(default))
}

/// Build a subscriber writing to `writer` (tests pass a buffer).
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_target(false)
                    .with_ansi(std::env::var_os("NO_COLOR").is_none() && is_terminal_stderr()),
            ),
        ),
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(writer),
            ),
        ),
    }
}

fn is_terminal_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// Install the process-wide subscriber (once, at the binary's start).
///
/// Under systemd (`JOURNAL_STREAM` set) text logs become native journal entries with proper
/// priorities (so `journalctl -p warning` works) and structured fields; `--log-format json`
/// always writes JSON lines.
pub fn init(format: LogFormat, configured: Option<&str>, default: &str) {
    if format == LogFormat::Text
        && std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(layer) = tracing_journald::layer()
    {
        let mappings = tracing_journald::PriorityMappings {
            info: tracing_journald::Priority::Informational,
            debug: tracing_journald::Priority::Debug,
            ..tracing_journald::PriorityMappings::new()
        };
        let layer = layer
            .with_syslog_identifier("paysync".into())
            .with_priority_mappings(mappings);
        let sub = tracing_subscriber::registry()
            .with(filter(configured, default))
            .with(layer);
        let _ = tracing::subscriber::set_global_default(sub);
        return;
    }
    let sub = subscriber(format, filter(configured, default), Stderr);
    let _ = tracing::subscriber::set_global_default(sub);
}
