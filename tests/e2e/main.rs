//! End-to-end tests: one binary, one module per area.

mod crds;
mod git;
mod support;
