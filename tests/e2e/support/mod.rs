//! Helpers shared by the end-to-end tests.

pub mod dev;
pub mod git_http;
pub mod git_repo;
pub mod gitops;
pub mod sealed;
pub mod sshd;
pub mod tools;
