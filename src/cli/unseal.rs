//! `sigil unseal`: disaster recovery, a SealedSecret opened with an offline identity.

use std::path::PathBuf;

use zeroize::Zeroizing;

use super::common::{
    CliError, OutputFormat, SealedFile, describe_sealed, load_identities, render_all, write_stdout,
};
use crate::crypto::manifest;
use crate::crypto::sealed_data;

/// Arguments of `sigil unseal`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// An age identity file (e.g. the recovery key from `sigil keygen`); repeatable.
    #[arg(short = 'i', long = "identity", value_name = "FILE", required = true)]
    pub identities: Vec<PathBuf>,
    /// SealedSecret manifests (YAML or JSON, several documents allowed); `-` or
    /// omitted reads stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Prints the Secret (base64 `data`) of every SealedSecret, checking each value's scope.
pub fn run(args: Args) -> Result<(), CliError> {
    let keyring = load_identities(&args.identities)?;
    let file = SealedFile::read(args.file.as_deref())?;
    let mut secrets = Vec::new();
    for sealed in file.sealed() {
        let (namespace, name) = manifest::sealed_identity(sealed)
            .map_err(|error| CliError::manifest(file.path.clone(), error))?;
        let opened =
            sealed_data::open_all(&sealed.spec.encrypted_data, &keyring, &namespace, &name)
                .map_err(|error| CliError::open(describe_sealed(sealed), error))?;
        secrets.push(manifest::secret_manifest(sealed, &opened));
    }
    let text = render_all(&secrets, args.output).map(Zeroizing::new);
    for secret in &mut secrets {
        manifest::wipe_secret_manifest(secret);
    }
    let text = text.map_err(|error| CliError::manifest(file.path.clone(), error))?;
    write_stdout(text.as_bytes())
}
