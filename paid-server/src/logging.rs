//! Logs of `paid serve`: JSON lines on stderr through `tracing`.
//!
//! Each line carries the event's fields and, under `span`, the fields of
//! the span it happened in: `trace_id`, `run_id` and `project_id` for work
//! on a run, `trace_id` (the request id) for API requests.

use crate::config::LogSettings;

/// Installs the subscriber (once; later calls do nothing).
pub fn init(settings: &LogSettings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if settings.json {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .try_init();
    } else {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    }
}
