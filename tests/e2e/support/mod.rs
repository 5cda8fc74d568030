//! Helpers shared by the end-to-end tests.

pub mod counting_proxy;
pub mod dev;
pub mod external;
pub mod moto;
pub mod readme;
pub mod rvault;
pub mod sealed;
pub mod tools;
pub mod vault_kv2;
