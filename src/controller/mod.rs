//! The controllers: one module per controller, and what they share ([`Context`], errors,
//! metrics, status writes, scheduling). [`crate::operator`] starts them; each controller module
//! exposes `async fn run(ctx: Arc<Context>, ...)` that returns when `ctx.shutdown` is cancelled.

pub mod backoff;
pub mod context;
pub mod error;
pub mod events;
pub mod external_secret;
pub mod git_source;
pub mod metrics;
pub mod options;
pub mod reload;
pub mod runner;
pub mod schedule;
pub mod sealed_secret;
pub mod sealing_keys;
pub mod secret_store;
pub mod shard;
pub mod status;
pub mod sync;
#[cfg(test)]
pub mod test_api;

pub use context::Context;
pub use error::Error;
pub use options::Options;
pub use shard::Shard;
