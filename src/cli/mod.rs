//! One module per `sigil` command. Each exposes `Args` (clap) and `run`.

pub mod common;
pub mod completions;
pub mod controller;
pub mod crds;
#[cfg(feature = "dev")]
pub mod dev;
pub mod diff;
pub mod fetch_key;
pub mod keygen;
pub mod reencrypt;
pub mod scan;
pub mod seal;
pub mod set;
pub mod status;
pub mod unseal;
pub mod validate;

use tracing_subscriber::{EnvFilter, fmt};

/// How log lines are written on stderr.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Sets up tracing on stderr; `RUST_LOG` picks levels (default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // try_init: tests and `sigil dev` may call this more than once in a process.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
