//! End-to-end tests: one binary, one module per area.

mod chart;
mod cli_help;
mod crds;
mod dev_api;
mod examples;
mod examples_sync;
mod external_aws;
mod external_example;
mod external_vault;
mod git;
mod ha;
mod helm_install;
mod kubectl;
mod lifecycle;
mod metrics;
mod scan;
mod sealed;
mod sealed_cli;
mod sealed_example;
mod sharding;
mod status_cli;
mod support;
mod sync;
mod tools;
