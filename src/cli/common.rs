//! What the sealing commands (`seal`, `set`, `unseal`, `reencrypt`, `validate`,
//! `fetch-key`) share: flags for recipients and the cluster, reading input,
//! writing files in place, and the error type.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use age::x25519::Recipient;
use zeroize::Zeroizing;

use crate::api::sealed_secret::{Scope, SealedSecret};
use crate::crypto::identity::{self, IdentityError};
use crate::crypto::keyring::Keyring;
use crate::crypto::manifest::{self, ManifestError};
use crate::crypto::recipients::{self, RecipientError};
use crate::crypto::sealed_data::FieldError;

/// Why a sealing command failed. Messages name the file, object and field,
/// never a value.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {error}")]
    Write { path: String, error: std::io::Error },
    #[error("{path}: {error}")]
    Manifest {
        path: String,
        error: Box<ManifestError>,
    },
    #[error(transparent)]
    Recipients(#[from] RecipientError),
    #[error("{path}: {error}")]
    RecipientsFile { path: String, error: RecipientError },
    #[error("{path}: {error}")]
    Identity { path: String, error: IdentityError },
    #[error("{0}")]
    Cluster(String),
    #[error("{object}: {error}")]
    Open {
        object: String,
        error: Box<FieldError>,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{failed} of {total} SealedSecrets cannot be opened")]
    Invalid { failed: usize, total: usize },
    #[error("{path}: {error}")]
    TooLarge {
        path: String,
        error: crate::secret_size::SecretTooLarge,
    },
}

impl CliError {
    /// A manifest problem in the file (or stream) `path`.
    pub fn manifest(path: impl Into<String>, error: ManifestError) -> Self {
        Self::Manifest {
            path: path.into(),
            error: Box::new(error),
        }
    }

    /// A value of `object` that cannot be opened.
    pub fn open(object: impl Into<String>, error: FieldError) -> Self {
        Self::Open {
            object: object.into(),
            error: Box::new(error),
        }
    }
}

/// Where the cluster is and where the controller runs.
#[derive(Clone, Debug, clap::Args)]
pub struct ClusterArgs {
    /// Path to a kubeconfig; without it, KUBECONFIG or the in-cluster config is used.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace the sigil controller runs in (holds the `sigil-recipients` ConfigMap).
    #[arg(
        long,
        default_value = "sigil-system",
        env = "SIGIL_CONTROLLER_NAMESPACE"
    )]
    pub controller_namespace: String,
}

impl ClusterArgs {
    pub async fn client(&self) -> Result<kube::Client, CliError> {
        crate::cli::controller::client(self.kubeconfig.as_deref())
            .await
            .map_err(|e| CliError::Cluster(e.to_string()))
    }
}

/// Which recipients to seal to: given ones, or the cluster's.
#[derive(Clone, Debug, clap::Args)]
pub struct RecipientArgs {
    /// An age recipient to seal to (repeatable). With recipients given, the
    /// cluster is not contacted.
    #[arg(long = "recipient", short = 'r', value_name = "AGE1...")]
    pub recipients: Vec<String>,
    /// A file of age recipients, one per line, `#` comments allowed (repeatable).
    #[arg(long = "recipients-file", short = 'R', value_name = "FILE")]
    pub recipients_files: Vec<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl RecipientArgs {
    /// Whether recipients were given on the command line (no cluster needed).
    pub fn is_offline(&self) -> bool {
        !self.recipients.is_empty() || !self.recipients_files.is_empty()
    }

    /// The recipients to seal to: the flags, or else the cluster's published ones.
    pub async fn resolve(&self) -> Result<Vec<Recipient>, CliError> {
        if !self.is_offline() {
            return fetch_recipients(&self.cluster).await;
        }
        let mut all = Vec::new();
        for text in &self.recipients {
            all.push(recipients::parse(text)?);
        }
        for path in &self.recipients_files {
            let text = read_text(path)?;
            all.extend(recipients::parse_list(&text).map_err(|error| {
                CliError::RecipientsFile {
                    path: path.display().to_string(),
                    error,
                }
            })?);
        }
        let all = recipients::dedup(all);
        if all.is_empty() {
            return Err(RecipientError::Empty.into());
        }
        Ok(all)
    }
}

/// The recipients the controller publishes in its ConfigMap.
pub async fn fetch_recipients(cluster: &ClusterArgs) -> Result<Vec<Recipient>, CliError> {
    use crate::wire::{RECIPIENTS_CONFIGMAP, RECIPIENTS_KEY};
    let client = cluster.client().await?;
    let namespace = &cluster.controller_namespace;
    let text = crate::wire::read_published_recipients(&client, namespace)
        .await
        .map_err(|e| {
            CliError::Cluster(format!(
                "cannot read ConfigMap {namespace}/{RECIPIENTS_CONFIGMAP}: {e}"
            ))
        })?
        .ok_or_else(|| {
            CliError::Cluster(format!(
                "ConfigMap {namespace}/{RECIPIENTS_CONFIGMAP} not found: is the sigil controller running in namespace {namespace}? (or pass --recipient)"
            ))
        })?;
    let list = recipients::parse_list(&text).map_err(|error| CliError::RecipientsFile {
        path: format!("ConfigMap {namespace}/{RECIPIENTS_CONFIGMAP} data.{RECIPIENTS_KEY}"),
        error,
    })?;
    if list.is_empty() {
        return Err(CliError::Cluster(format!(
            "ConfigMap {namespace}/{RECIPIENTS_CONFIGMAP} lists no recipients"
        )));
    }
    Ok(list)
}

/// Output formats of manifests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Yaml,
    Json,
}

/// `--scope` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScopeArg {
    /// Only this namespace and name.
    Strict,
    /// Any name in this namespace.
    Namespace,
    /// Anywhere in the cluster.
    Cluster,
}

impl From<ScopeArg> for Scope {
    fn from(scope: ScopeArg) -> Self {
        match scope {
            ScopeArg::Strict => Scope::Strict,
            ScopeArg::Namespace => Scope::Namespace,
            ScopeArg::Cluster => Scope::Cluster,
        }
    }
}

pub fn display(path: Option<&Path>) -> String {
    match path {
        Some(p) if p != Path::new("-") => p.display().to_string(),
        _ => "stdin".to_string(),
    }
}

/// Reads a file, or stdin for `None` or `-`, into a buffer wiped on drop.
pub fn read_input(path: Option<&Path>) -> Result<Zeroizing<String>, CliError> {
    let bytes = read_input_bytes(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| CliError::Read {
        path: display(path),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })?;
    Ok(Zeroizing::new(text.to_string()))
}

/// Reads raw bytes from a file, or stdin for `None` or `-`, wiped on drop; refuses more than
/// a Git source's per-file limit (a manifest larger than that could never be synced anyway).
pub fn read_input_bytes(path: Option<&Path>) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let limit = crate::git::TreeLimits::default().max_file_bytes;
    let mut bytes = Zeroizing::new(Vec::new());
    let result = match path {
        Some(p) if p != Path::new("-") => {
            std::fs::File::open(p).and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        }
        _ => std::io::stdin()
            .lock()
            .take(limit + 1)
            .read_to_end(&mut bytes),
    };
    let read_error = |error| CliError::Read {
        path: display(path),
        error,
    };
    result.map_err(read_error)?;
    if bytes.len() as u64 > limit {
        return Err(read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than {limit} bytes, the limit for a manifest file"),
        )));
    }
    Ok(bytes)
}

/// Reads a text file that holds no secret (recipients, sealed manifests).
pub fn read_text(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|error| CliError::Read {
        path: path.display().to_string(),
        error,
    })
}

/// Writes to stdout.
pub fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|error| CliError::Write {
            path: "stdout".into(),
            error,
        })
}

/// Replaces a file's content atomically (write a sibling, then rename),
/// keeping its permissions.
pub fn write_in_place(path: &Path, text: &str) -> Result<(), CliError> {
    let err = |error| CliError::Write {
        path: path.display().to_string(),
        error,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{file_name}.sigil-{}", std::process::id()));
    let result = (|| {
        std::fs::write(&temp, text)?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&temp, meta.permissions())?;
        }
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(err)
}

/// Reads identity files into a keyring.
pub fn load_identities(paths: &[PathBuf]) -> Result<Keyring, CliError> {
    Ok(Keyring::from_identities(
        read_identities(paths)?,
        "identity file",
    ))
}

/// Every identity of the identity files.
pub fn read_identities(paths: &[PathBuf]) -> Result<Vec<age::x25519::Identity>, CliError> {
    let mut all = Vec::new();
    for path in paths {
        let text = read_input(Some(path))?;
        all.extend(
            identity::parse_file(&text).map_err(|error| CliError::Identity {
                path: path.display().to_string(),
                error,
            })?,
        );
    }
    Ok(all)
}

/// One document of a manifest file: a SealedSecret, or anything else kept as is.
pub enum Document {
    Sealed(Box<SealedSecret>),
    Other(serde_json::Value),
}

/// A manifest file of one or more documents, remembering whether it was JSON.
pub struct SealedFile {
    pub path: String,
    pub documents: Vec<Document>,
    pub json: bool,
}

impl SealedFile {
    /// Parses a file (or stdin for `-`) of SealedSecrets; other kinds are kept untouched.
    pub fn read(path: Option<&Path>) -> Result<Self, CliError> {
        let text = read_input(path)?;
        Self::parse(&display(path), &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<Self, CliError> {
        let manifest_err = |error| CliError::manifest(path.to_string(), error);
        let json = text.trim_start().starts_with('{');
        let values = crate::yaml::documents(text).map_err(|e| manifest_err(e.into()))?;
        let mut documents = Vec::new();
        for value in values {
            if manifest::is_sealed_secret(&value) {
                let sealed = manifest::sealed_from_document(&value).map_err(manifest_err)?;
                documents.push(Document::Sealed(Box::new(sealed)));
            } else {
                documents.push(Document::Other(value));
            }
        }
        if !documents.iter().any(|d| matches!(d, Document::Sealed(_))) {
            return Err(manifest_err(ManifestError::Empty("SealedSecret")));
        }
        Ok(Self {
            path: path.to_string(),
            documents,
            json,
        })
    }

    pub fn sealed(&self) -> impl Iterator<Item = &SealedSecret> {
        self.documents.iter().filter_map(|d| match d {
            Document::Sealed(s) => Some(s.as_ref()),
            Document::Other(_) => None,
        })
    }

    pub fn sealed_mut(&mut self) -> impl Iterator<Item = &mut SealedSecret> {
        self.documents.iter_mut().filter_map(|d| match d {
            Document::Sealed(s) => Some(s.as_mut()),
            Document::Other(_) => None,
        })
    }

    /// The only SealedSecret of the file (commands that edit one object).
    pub fn single_mut(&mut self) -> Result<&mut SealedSecret, CliError> {
        let path = self.path.clone();
        let mut all: Vec<&mut SealedSecret> = self.sealed_mut().collect();
        if all.len() != 1 {
            return Err(CliError::Usage(format!(
                "{path}: holds {} SealedSecrets; expected exactly one",
                all.len()
            )));
        }
        Ok(all.remove(0))
    }

    /// The file's text in its original format.
    pub fn render(&self) -> Result<String, CliError> {
        let values: Vec<serde_json::Value> = self
            .documents
            .iter()
            .map(|d| match d {
                Document::Sealed(s) => serde_json::to_value(s.as_ref()),
                Document::Other(v) => Ok(v.clone()),
            })
            .collect::<Result<_, _>>()
            .map_err(|e| CliError::Usage(format!("{}: cannot write: {e}", self.path)))?;
        let format = if self.json {
            OutputFormat::Json
        } else {
            OutputFormat::Yaml
        };
        render_all(&values, format).map_err(|error| CliError::manifest(self.path.clone(), error))
    }
}

/// Renders one value as YAML or JSON (with a final newline).
pub fn render<T: serde::Serialize>(
    value: &T,
    format: OutputFormat,
) -> Result<String, ManifestError> {
    match format {
        OutputFormat::Yaml => {
            let mut text = crate::yaml::to_string(value)?;
            if !text.ends_with('\n') {
                text.push('\n');
            }
            Ok(text)
        }
        OutputFormat::Json => {
            let mut text = serde_json::to_string_pretty(value)
                .map_err(|e| crate::yaml::YamlError::Write(e.to_string()))?;
            text.push('\n');
            Ok(text)
        }
    }
}

/// Renders several values: a YAML stream, or for JSON one object or a `v1 List`.
pub fn render_all(
    values: &[serde_json::Value],
    format: OutputFormat,
) -> Result<String, ManifestError> {
    match (values, format) {
        ([one], _) => render(one, format),
        (_, OutputFormat::Yaml) => Ok(crate::yaml::to_multi_string(values)?),
        (_, OutputFormat::Json) => render(
            &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": values}),
            format,
        ),
    }
}

/// `SealedSecret namespace/name` for messages.
pub fn describe_sealed(sealed: &SealedSecret) -> String {
    manifest::describe(
        "SealedSecret",
        sealed.metadata.namespace.as_deref(),
        sealed.metadata.name.as_deref().unwrap_or("(unnamed)"),
    )
}

/// How to reach the controller's HTTP port, for what needs its private keys
/// (`validate` and `reencrypt` without `--identity`).
#[derive(Clone, Debug, clap::Args)]
pub struct ControllerArgs {
    /// Name of the controller's Service, reached through the API server's service proxy.
    #[arg(long, default_value = "sigil")]
    pub controller_name: String,
    /// Call the controller's HTTP port at this URL (e.g. `http://127.0.0.1:8080`
    /// after `kubectl port-forward`) instead of through the API server.
    #[arg(long, value_name = "URL")]
    pub controller_url: Option<String>,
}

impl ControllerArgs {
    /// POSTs a SealedSecret as JSON to a controller route (`/v1/verify`, `/v1/rotate`).
    pub async fn post(
        &self,
        cluster: &ClusterArgs,
        route: &str,
        sealed: &SealedSecret,
    ) -> Result<String, CliError> {
        let (client, path) = match &self.controller_url {
            Some(url) => {
                let uri: http::Uri = url
                    .parse()
                    .map_err(|e| CliError::Usage(format!("--controller-url {url:?}: {e}")))?;
                let client = kube::Client::try_from(kube::Config::new(uri))
                    .map_err(|e| CliError::Cluster(format!("--controller-url {url:?}: {e}")))?;
                (client, route.to_string())
            }
            None => (
                cluster.client().await?,
                format!(
                    "/api/v1/namespaces/{}/services/http:{}:http/proxy{route}",
                    cluster.controller_namespace, self.controller_name
                ),
            ),
        };
        let body = serde_json::to_vec(sealed).map_err(|e| {
            CliError::Usage(format!("cannot encode {}: {e}", describe_sealed(sealed)))
        })?;
        let request = http::Request::post(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        client
            .request_text(request)
            .await
            .map_err(|e| CliError::Cluster(format!("sigil controller {route}: {e}")))
    }
}
