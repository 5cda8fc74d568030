//! `sigil seal`: a Secret manifest in, a SealedSecret out.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretSlice};

use super::common::{
    CliError, OutputFormat, RecipientArgs, ScopeArg, SealedFile, read_input_bytes, render,
    write_in_place, write_stdout,
};
use crate::api::sealed_secret::Scope;
use crate::crypto::manifest::{self, ManifestError, PlainSecret};
use crate::crypto::{envelope, sealed_data, sealing};

/// Arguments of `sigil seal`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Secret manifest (YAML or JSON, `data` and/or `stringData`); `-` or
    /// omitted reads stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Where the values may be opened: this name and namespace (strict, the
    /// default), any name in the namespace, or anywhere in the cluster.
    #[arg(long, value_enum)]
    pub scope: Option<ScopeArg>,
    /// Namespace of the object, when the manifest has none (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Name of the object (overrides the manifest's; required with --raw and strict scope).
    #[arg(long)]
    pub name: Option<String>,
    /// Add or replace the Secret's keys in this existing SealedSecret file, in
    /// place, sealed with that file's name, namespace and scope.
    #[arg(long, value_name = "FILE", conflicts_with = "raw")]
    pub merge_into: Option<PathBuf>,
    /// Seal one value (from --from-file, --from-literal or stdin) and print only
    /// the armored age file, for pasting into `spec.encryptedData`.
    #[arg(long)]
    pub raw: bool,
    /// With --raw: the value is this file's content.
    #[arg(
        long,
        value_name = "FILE",
        requires = "raw",
        conflicts_with = "from_literal"
    )]
    pub from_file: Option<PathBuf>,
    /// With --raw: the value is this text (visible to other local users in the
    /// process list; prefer --from-file or stdin).
    #[arg(long, value_name = "VALUE", requires = "raw")]
    pub from_literal: Option<String>,
    /// With --raw: print the unencrypted envelope (scope header + value) instead,
    /// to encrypt with another age implementation (`| age -a -r age1…`), then
    /// insert with `sigil set --sealed`. The output holds the plaintext value.
    #[arg(long, requires = "raw")]
    pub envelope_only: bool,
    #[command(flatten)]
    pub recipients: RecipientArgs,
}

/// Seals the input and prints (or merges) the result.
pub async fn run(args: Args) -> Result<(), CliError> {
    if args.raw {
        return run_raw(args).await;
    }
    let input_path = args.file.as_deref();
    let text = super::common::read_input(input_path)?;
    let source = input_path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "stdin".into());
    let secret =
        manifest::parse_secret(&text).map_err(|e| CliError::manifest(source.clone(), e))?;
    drop(text);
    check_size(
        &source,
        &format!("{}: data", secret.describe()),
        secret
            .data
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret().len())),
    )?;
    match &args.merge_into {
        Some(target) => merge_into(&args, &secret, target).await,
        None => {
            let sealed_text = seal_new(&args, &secret, &source).await?;
            write_stdout(sealed_text.as_bytes())
        }
    }
}

async fn seal_new(args: &Args, secret: &PlainSecret, source: &str) -> Result<String, CliError> {
    let manifest_err = |e| CliError::manifest(source.to_string(), e);
    let namespace = match (&secret.namespace, &args.namespace) {
        (Some(inner), Some(flag)) if inner != flag => {
            return Err(CliError::Usage(format!(
                "{}: metadata.namespace {inner:?} does not match --namespace {flag:?}",
                secret.describe()
            )));
        }
        (Some(ns), _) | (None, Some(ns)) => ns.clone(),
        (None, None) => "default".to_string(),
    };
    let name = args
        .name
        .clone()
        .or_else(|| secret.name.clone())
        .ok_or_else(|| {
            manifest_err(ManifestError::Field {
                object: secret.describe(),
                field: "metadata.name".into(),
                problem: "missing (or pass --name)".into(),
            })
        })?;
    let scope: Scope = args.scope.map(Into::into).unwrap_or_default();
    let object = manifest::describe("Secret", Some(&namespace), &name);
    let binding = manifest::binding_for(scope, &namespace, &name, &object).map_err(manifest_err)?;
    let recipients = args.recipients.resolve().await?;
    let sealed = manifest::seal_secret(secret, &namespace, &name, &binding, &recipients)
        .map_err(manifest_err)?;
    render(&sealed, args.output).map_err(manifest_err)
}

async fn merge_into(
    args: &Args,
    secret: &PlainSecret,
    target: &std::path::Path,
) -> Result<(), CliError> {
    let mut file = SealedFile::read(Some(target))?;
    let path = file.path.clone();
    let manifest_err = |e| CliError::manifest(path.clone(), e);
    let sealed = file.single_mut()?;
    let (namespace, name) = manifest::sealed_identity(sealed).map_err(manifest_err)?;
    let scope = sealed.spec.scope;
    if let Some(wanted) = args.scope.map(Scope::from)
        && wanted != scope
    {
        return Err(CliError::Usage(format!(
            "{path}: spec.scope is {scope}, not {wanted}: values are merged with the file's scope"
        )));
    }
    let object = manifest::describe("SealedSecret", Some(&namespace), &name);
    let binding = manifest::binding_for(scope, &namespace, &name, &object).map_err(manifest_err)?;
    let recipients = args.recipients.resolve().await?;
    let values = sealed_data::seal_all(&secret.data, &binding, &recipients).map_err(|error| {
        manifest_err(ManifestError::Seal {
            object: object.clone(),
            error,
        })
    })?;
    sealed.spec.encrypted_data.extend(values);
    let text = file.render()?;
    write_in_place(target, &text)
}

async fn run_raw(args: Args) -> Result<(), CliError> {
    let value: SecretSlice<u8> = match (&args.from_literal, &args.from_file) {
        (Some(literal), _) => SecretSlice::from(literal.as_bytes().to_vec()),
        (None, file) => SecretSlice::from(read_input_bytes(file.as_deref())?.to_vec()),
    };
    let source = match (&args.from_literal, &args.from_file) {
        (Some(_), _) => "--from-literal".to_string(),
        (None, file) => super::common::display(file.as_deref()),
    };
    check_size(&source, "--raw", [("value", value.expose_secret().len())])?;
    let scope: Scope = args.scope.map(Into::into).unwrap_or_default();
    let binding =
        crate::crypto::Binding::new(scope, args.namespace.as_deref(), args.name.as_deref())
            .map_err(|e| CliError::Usage(format!("--raw: {e} (--namespace, --name)")))?;
    if args.envelope_only {
        let plaintext = envelope::encode(&binding, value.expose_secret());
        return write_stdout(&plaintext);
    }
    let recipients = args.recipients.resolve().await?;
    let armored = sealing::seal(value.expose_secret(), &binding, &recipients).map_err(|error| {
        CliError::manifest(
            "--raw",
            ManifestError::Seal {
                object: format!("value for {binding}"),
                error,
            },
        )
    })?;
    write_stdout(armored.as_bytes())
}

/// Refuses values that make a Secret over Kubernetes' size limit: sealed, they could never open
/// into a Secret.
fn check_size<'a>(
    source: &str,
    field: &str,
    data: impl IntoIterator<Item = (&'a str, usize)>,
) -> Result<(), CliError> {
    crate::secret_size::check(field, data).map_err(|error| CliError::TooLarge {
        path: source.to_string(),
        error,
    })
}
