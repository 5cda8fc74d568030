//! `sigil keygen`: a new age identity, for recovery or offline use.

use std::io::Write;
use std::path::PathBuf;

use super::common::{CliError, write_stdout};
use crate::crypto::identity;

/// Arguments of `sigil keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write the identity to this file (created with mode 0600; never overwritten)
    /// instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Writes a new identity in the format of `age-keygen`; the public key also goes to stderr.
pub fn run(args: Args) -> Result<(), CliError> {
    let (identity, text) = identity::generate_file(jiff::Timestamp::now());
    match &args.output {
        Some(path) => {
            let err = |error| CliError::Write {
                path: path.display().to_string(),
                error,
            };
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(err)?;
            file.write_all(text.as_bytes()).map_err(err)?;
        }
        None => write_stdout(text.as_bytes())?,
    }
    eprintln!("Public key: {}", identity.to_public());
    Ok(())
}
