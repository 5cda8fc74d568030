//! End-to-end tests: one binary, one module per area.

mod chart;
mod cli_help;
mod crds;
mod external_aws;
mod external_vault;
mod support;
mod tools;
