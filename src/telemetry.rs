//! Logs on stdout: JSON (default) or text, filtered by `PODGATE_LOG`.
//!
//! Lines go through a bounded in-memory queue drained by a writer thread, so
//! a slow stdout (a congested container log pipe) never blocks a request. If
//! the queue is full, lines are dropped rather than stalling traffic.

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// Installs the global subscriber. Keep the guard alive until exit: dropping
/// it flushes what is queued.
pub fn init(format: LogFormat, filter: &str) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(64 * 1024)
        .thread_name("podgate-log")
        .finish(std::io::stdout());
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(writer);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    // A subscriber may already be installed (tests start podgate in-process).
    let _ = result;
    guard
}
