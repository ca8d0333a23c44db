//! Logging: readable text or one JSON object per line on stdout (the host forwards stdout to
//! Application Insights). The level comes from `RUST_LOG`, default `info`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The storage SDK logs one INFO "Failed response" line per failed call (every retry, while
/// storage is down); maxconf logs the failure once itself. Those lines show from `debug` on.
const SDK_FAILED_RESPONSES: &str = "typespec_client_core::http::policies::logging";

/// `RUST_LOG` (else `default`), with the SDK's per-call lines quietened unless it asks for
/// debug or names the SDK's crate.
fn filter(default: &str) -> EnvFilter {
    let asked = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let spec = asked.clone().unwrap_or_else(|| default.to_owned());
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new(default));
    let verbose = filter
        .max_level_hint()
        .is_some_and(|level| level >= tracing::level_filters::LevelFilter::DEBUG);
    if verbose || spec.contains("typespec_client_core") {
        return filter;
    }
    match format!("{SDK_FAILED_RESPONSES}=warn").parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

pub fn init(format: LogFormat) {
    let filter = filter("info");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

/// Operator commands print their own output on stdout: logs go to stderr, warnings and up
/// unless `RUST_LOG` asks for more.
pub fn init_for_commands(format: LogFormat) {
    let filter = filter("warn");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}
