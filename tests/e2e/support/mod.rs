//! Helpers shared by the end-to-end tests.

pub mod api_proxy;
pub mod controller;
pub mod counting_proxy;
pub mod dev;
pub mod external;
pub mod fault_plan;
pub mod git_http;
pub mod git_repo;
pub mod gitops;
pub mod http;
pub mod kube_cli;
pub mod moto;
pub mod objects;
pub mod openbao;
pub mod postgres;
pub mod readme;
pub mod sealed;
pub mod sshd;
pub mod tools;
pub mod versions;
pub mod workloads;
