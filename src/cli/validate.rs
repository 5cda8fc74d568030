//! `sigil validate`: can the cluster (or an identity) open these SealedSecrets where they sit?

use std::path::PathBuf;

use super::common::{
    CliError, ClusterArgs, ControllerArgs, SealedFile, describe_sealed, load_identities,
    write_stdout,
};
use crate::api::sealed_secret::SealedSecret;
use crate::crypto::keyring::Keyring;
use crate::crypto::manifest;
use crate::wire::{VERIFY_ROUTE, VerifyResponse};

/// Arguments of `sigil validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// SealedSecret manifests to check (several documents allowed; `-` reads stdin).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Check with this identity file instead of asking the cluster (repeatable).
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identities: Vec<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub controller: ControllerArgs,
}

/// Prints one line per SealedSecret; fails when any cannot be opened. Never prints values.
pub async fn run(args: Args) -> Result<(), CliError> {
    let keyring = if args.identities.is_empty() {
        None
    } else {
        Some(load_identities(&args.identities)?)
    };
    let (mut total, mut failed) = (0, 0);
    for path in &args.files {
        let file = SealedFile::read(Some(path))?;
        for sealed in file.sealed() {
            total += 1;
            let answer = match &keyring {
                Some(keyring) => check_offline(sealed, keyring),
                None => check_in_cluster(&args, sealed).await,
            };
            let object = describe_sealed(sealed);
            match answer {
                Ok(answer) if answer.opened => {
                    let line = format!(
                        "{}: {object}: ok ({} values, key {})\n",
                        file.path,
                        sealed.spec.encrypted_data.len(),
                        answer.keys.join(",")
                    );
                    write_stdout(line.as_bytes())?;
                }
                Ok(answer) => {
                    failed += 1;
                    eprintln!(
                        "{}: {object}: {}: {}",
                        file.path,
                        answer.reason.unwrap_or_default(),
                        answer.message
                    );
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("{}: {e}", file.path);
                }
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Invalid { failed, total });
    }
    Ok(())
}

fn check_offline(sealed: &SealedSecret, keyring: &Keyring) -> Result<VerifyResponse, CliError> {
    let (namespace, name) = manifest::sealed_identity(sealed)
        .map_err(|error| CliError::manifest(describe_sealed(sealed), error))?;
    Ok(VerifyResponse::check(sealed, keyring, &namespace, &name))
}

async fn check_in_cluster(args: &Args, sealed: &SealedSecret) -> Result<VerifyResponse, CliError> {
    let text = args
        .controller
        .post(&args.cluster, VERIFY_ROUTE, sealed)
        .await?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::Cluster(format!(
            "unexpected answer from the controller's /v1/verify: {e}"
        ))
    })
}
