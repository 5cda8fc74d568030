//! `sigil controller`: the operator.

/// Arguments of `sigil controller`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the operator until SIGTERM.
pub async fn run(_args: Args) -> Result<(), std::io::Error> {
    Err(std::io::Error::other("sigil controller is being built"))
}
