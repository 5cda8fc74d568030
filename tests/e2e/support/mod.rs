//! Helpers shared by the end-to-end tests.

pub mod api_proxy;
pub mod controller;
pub mod dev;
pub mod git_http;
pub mod git_repo;
pub mod gitops;
pub mod kube_cli;
pub mod objects;
pub mod readme;
pub mod sealed;
pub mod sshd;
pub mod tools;
