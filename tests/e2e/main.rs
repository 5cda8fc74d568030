//! End-to-end tests: one binary, one module per area.

mod chart;
mod cli_help;
mod crds;
mod git;
mod scan;
mod support;
mod tools;
