//! Logging: JSON lines by default (what log pipelines expect in a cluster), plain text for humans.
//! Filter with --log-filter (or RUST_LOG when the flag is not given). Request headers are never logged, so tokens cannot leak.
//!
//! One rule keeps JSON lines well-formed: no event may carry a field named `message`, because the
//! flattened JSON object already has the event's own `message` key (a second one makes a line
//! that many log pipelines reject or misread). Use `detail` for a message-like field.

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// An explicit filter wins over RUST_LOG, which wins over "info".
pub fn init(format: LogFormat, filter: Option<&str>) {
    let filter = match filter {
        Some(filter) => EnvFilter::new(filter),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a log file or pipeline.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
