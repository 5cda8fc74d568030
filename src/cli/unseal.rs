//! `sigil unseal`: disaster recovery, a SealedSecret opened with an offline identity; and a
//! SOPS file encrypted to age recipients opened with the same identity files, as `sops -d`
//! would (MAC verified), without handing the key to another program.

use std::path::PathBuf;

use zeroize::Zeroizing;

use super::common::{
    CliError, OutputFormat, SealedFile, describe_sealed, display, read_identities, read_input,
    render_all, write_stdout,
};
use crate::crypto::{Keyring, manifest, sealed_data};
use crate::manifests::parse::parse_file;
use crate::manifests::sops;
use crate::manifests::source::SourceFile;

/// Arguments of `sigil unseal`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// An age identity file (e.g. the recovery key from `sigil keygen`); repeatable.
    #[arg(short = 'i', long = "identity", value_name = "FILE", required = true)]
    pub identities: Vec<PathBuf>,
    /// SealedSecret manifests, or a SOPS-encrypted manifest file (YAML or JSON, several
    /// documents allowed); `-` or omitted reads stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Prints the Secret (base64 `data`) of every SealedSecret, checking each value's scope; or
/// the opened documents of a SOPS file.
pub fn run(args: Args) -> Result<(), CliError> {
    let identities = read_identities(&args.identities)?;
    let path = display(args.file.as_deref());
    let text = read_input(args.file.as_deref())?;
    if let Some(opened) = open_sops(&path, &text, identities.clone())? {
        let rendered = render_all(&opened, args.output)
            .map(zeroize::Zeroizing::new)
            .map_err(|error| CliError::manifest(path, error))?;
        return write_stdout(rendered.as_bytes());
    }
    let keyring = Keyring::from_identities(identities, "identity file");
    let file = SealedFile::parse(&path, &text)?;
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

/// The documents of a SOPS file, opened and MAC-verified; `None` when the file holds none.
fn open_sops(
    path: &str,
    text: &str,
    identities: Vec<age::x25519::Identity>,
) -> Result<Option<Vec<serde_json::Value>>, CliError> {
    if !sops::may_hold_sops(text.as_bytes()) {
        return Ok(None);
    }
    let source = SourceFile {
        path: path.to_string(),
        content: text.as_bytes().to_vec(),
    };
    let Ok(manifests) = parse_file(&source) else {
        return Ok(None);
    };
    if !manifests.iter().any(|m| sops::is_sops(&m.object)) {
        return Ok(None);
    }
    let keys = sops::Keys::new(identities);
    let (opened, failures) = sops::open_manifests(manifests, &[source], Some(&keys));
    if let Some(failed) = failures.first() {
        return Err(CliError::Usage(format!(
            "{}: {}",
            failed.location, failed.error
        )));
    }
    Ok(Some(opened.into_iter().map(|m| m.object).collect()))
}
