//! `sigil dev`: the embedded API server with the controller running against it.

/// Arguments of `sigil dev`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Starts the embedded API server and runs until Ctrl-C.
pub async fn run(_args: Args) -> Result<(), std::io::Error> {
    Err(std::io::Error::other("sigil dev is being built"))
}
