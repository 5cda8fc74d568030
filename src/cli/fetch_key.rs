//! `sigil fetch-key`: the recipients the cluster wants values sealed to.

use super::common::{CliError, ClusterArgs, fetch_recipients, write_stdout};
use crate::crypto::recipients;

/// Arguments of `sigil fetch-key`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Prints the published recipients (active key first, then recovery), one per line.
pub async fn run(args: Args) -> Result<(), CliError> {
    let list = fetch_recipients(&args.cluster).await?;
    write_stdout(recipients::to_text(&list).as_bytes())
}
