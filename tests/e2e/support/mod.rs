//! Helpers shared by the end-to-end tests.

pub mod dev;
pub mod sealed;
pub mod tools;
