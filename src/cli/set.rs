//! `sigil set FILE KEY`: seal a value from stdin into an existing SealedSecret file.

use std::path::PathBuf;

use secrecy::ExposeSecret;

use super::common::{CliError, RecipientArgs, SealedFile, read_input_bytes, write_in_place};
use crate::crypto::manifest::{self, ManifestError};
use crate::crypto::sealed_data::is_valid_data_key;
use crate::crypto::sealing::{self, ARMOR_BEGIN, ARMOR_END};

/// Arguments of `sigil set`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The SealedSecret file to change, in place.
    pub file: PathBuf,
    /// The key of `spec.encryptedData` to add or replace.
    pub key: String,
    /// Stdin is already an ASCII-armored age file holding a sigil envelope (made
    /// e.g. with `sigil seal --raw --envelope-only … | age -a -r age1…`); it is
    /// inserted as is. The controller checks its scope when opening it.
    #[arg(long)]
    pub sealed: bool,
    #[command(flatten)]
    pub recipients: RecipientArgs,
}

/// Reads stdin, seals it with the file's name, namespace and scope, writes the file.
pub async fn run(args: Args) -> Result<(), CliError> {
    let mut file = SealedFile::read(Some(&args.file))?;
    let path = file.path.clone();
    let manifest_err = |error| CliError::manifest(path.clone(), error);
    let sealed = file.single_mut()?;
    let (namespace, name) = manifest::sealed_identity(sealed).map_err(manifest_err)?;
    let object = manifest::describe("SealedSecret", Some(&namespace), &name);
    if !is_valid_data_key(&args.key) {
        return Err(manifest_err(ManifestError::Field {
            object,
            field: format!("spec.encryptedData.{}", args.key),
            problem: "invalid key (allowed: letters, digits, '-', '_', '.')".into(),
        }));
    }
    let input = read_input_bytes(None)?;
    let armored = if args.sealed {
        let text = std::str::from_utf8(&input)
            .ok()
            .map(str::trim)
            .filter(|t| t.starts_with(ARMOR_BEGIN) && t.ends_with(ARMOR_END))
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "stdin: with --sealed, expected an ASCII-armored age file (`{ARMOR_BEGIN}`)"
                ))
            })?;
        format!("{text}\n")
    } else {
        let binding = manifest::binding_for(sealed.spec.scope, &namespace, &name, &object)
            .map_err(manifest_err)?;
        let recipients = args.recipients.resolve().await?;
        let value = secrecy::SecretSlice::from(input.to_vec());
        sealing::seal(value.expose_secret(), &binding, &recipients).map_err(|error| {
            manifest_err(ManifestError::Seal {
                object: object.clone(),
                error,
            })
        })?
    };
    sealed.spec.encrypted_data.insert(args.key, armored);
    let text = file.render()?;
    write_in_place(&args.file, &text)
}
