//! Logging: JSON lines by default (what log pipelines expect in a cluster), plain text for humans.
//! Filter with --log-filter (or RUST_LOG when the flag is not given). Request headers are never logged, so tokens cannot leak.

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
