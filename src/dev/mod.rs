//! The embedded Kubernetes API server behind `sigil dev` and the tests.
//!
//! The production controller never depends on this module.

pub mod patch;
pub mod schema;
