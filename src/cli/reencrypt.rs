//! `sigil reencrypt`: re-seal SealedSecret files to the current recipients.

use std::path::PathBuf;

use super::common::{
    CliError, ControllerArgs, RecipientArgs, SealedFile, describe_sealed, load_identities,
    write_in_place,
};
use crate::api::sealed_secret::SealedSecret;
use crate::crypto::manifest;
use crate::crypto::sealed_data;

/// Arguments of `sigil reencrypt`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// SealedSecret files to re-seal in place (other documents are kept as they are).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Open the values with this identity file (repeatable) and re-seal offline
    /// to the recipients (--recipient/--recipients-file, else the cluster's).
    /// Without it, the controller re-seals them to its published recipients.
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identities: Vec<PathBuf>,
    #[command(flatten)]
    pub recipients: RecipientArgs,
    #[command(flatten)]
    pub controller: ControllerArgs,
}

/// Re-seals every value of every file, keeping each value's recorded scope.
pub async fn run(args: Args) -> Result<(), CliError> {
    if args.identities.is_empty() && args.recipients.is_offline() {
        return Err(CliError::Usage(
            "--recipient/--recipients-file need --identity: without it the controller re-seals to its own recipients".into(),
        ));
    }
    let offline = if args.identities.is_empty() {
        None
    } else {
        Some((
            load_identities(&args.identities)?,
            args.recipients.resolve().await?,
        ))
    };
    for path in &args.files {
        let mut file = SealedFile::read(Some(path))?;
        let file_path = file.path.clone();
        for sealed in file.sealed_mut() {
            let values = match &offline {
                Some((keyring, recipients)) => {
                    let (namespace, name) = manifest::sealed_identity(sealed)
                        .map_err(|error| CliError::manifest(file_path.clone(), error))?;
                    sealed_data::reseal_all(
                        &sealed.spec.encrypted_data,
                        keyring,
                        &namespace,
                        &name,
                        recipients,
                    )
                    .map_err(|e| {
                        CliError::Usage(format!("{file_path}: {}: {e}", describe_sealed(sealed)))
                    })?
                }
                None => rotate_in_cluster(&args, sealed).await?,
            };
            sealed.spec.encrypted_data = values;
        }
        write_in_place(path, &file.render()?)?;
    }
    Ok(())
}

async fn rotate_in_cluster(
    args: &Args,
    sealed: &SealedSecret,
) -> Result<std::collections::BTreeMap<String, String>, CliError> {
    let text = args
        .controller
        .post(&args.recipients.cluster, crate::wire::ROTATE_ROUTE, sealed)
        .await?;
    let rotated: SealedSecret = serde_json::from_str(&text).map_err(|e| {
        CliError::Cluster(format!(
            "unexpected answer from the controller's /v1/rotate: {e}"
        ))
    })?;
    Ok(rotated.spec.encrypted_data)
}
