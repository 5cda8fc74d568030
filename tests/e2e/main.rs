//! End-to-end tests: one binary, one module per area.

mod chart;
mod cli_help;
mod crds;
mod dev_api;
mod examples;
mod ha;
mod helm_install;
mod kubectl;
mod metrics;
mod sealed;
mod sealed_cli;
mod sealed_example;
mod sharding;
mod support;
mod tools;
