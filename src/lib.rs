//! sigil: GitOps for Kubernetes with no plaintext secret in Git.
//!
//! One binary: the in-cluster operator (sealed secrets, external
//! secrets, manifest sync) and the command-line tool. `src/main.rs` only parses
//! arguments; every command lives in [`cli`].
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod controller;
pub mod crypto;
pub mod git;
pub mod manifests;
pub mod operator;
pub mod providers;
pub mod secret_size;
pub mod server;
pub mod tls;
pub mod wire;
pub use bounded_yaml as yaml;
