//! `sigil crds`: prints the CustomResourceDefinitions.

/// Arguments of `sigil crds`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Prints every CRD as multi-document YAML.
pub fn run(_args: Args) -> Result<(), std::io::Error> {
    Err(std::io::Error::other("sigil crds is being built"))
}
