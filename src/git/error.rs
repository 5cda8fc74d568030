//! Why a fetch or a tree read failed, with the condition reason each maps to.

/// A fetch failed. Messages never hold a credential: URLs are shown without their password and
/// transport messages are scrubbed of the secret values in use.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("spec.url {url:?}: {message}")]
    InvalidUrl { url: String, message: String },
    #[error("spec.secretRef: {0}")]
    Credentials(String),
    #[error("authentication to {url} failed: {message}")]
    AuthFailed { url: String, message: String },
    #[error(
        "ssh host key of {url} not verified against the known_hosts of spec.secretRef: {message}"
    )]
    HostKeyFailed { url: String, message: String },
    #[error("repository {url} not found: {message}")]
    NotFound { url: String, message: String },
    #[error("{reference} not found in {url}")]
    RefNotFound { url: String, reference: String },
    #[error("fetching {url} timed out")]
    Timeout { url: String },
    #[error("fetching {url} failed: {message}")]
    Failed { url: String, message: String },
    #[error("git cache {path}: {message}")]
    Cache { path: String, message: String },
}

impl FetchError {
    /// The `Ready=False` reason of the GitSource.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::InvalidUrl { .. } => "InvalidURL",
            FetchError::Credentials(_) => "CredentialsInvalid",
            FetchError::AuthFailed { .. } => "AuthFailed",
            FetchError::HostKeyFailed { .. } => "HostKeyFailed",
            FetchError::NotFound { .. } => "NotFound",
            FetchError::RefNotFound { .. } => "RefNotFound",
            FetchError::Timeout { .. } => "Timeout",
            FetchError::Failed { .. } => "FetchFailed",
            FetchError::Cache { .. } => "StorageFailed",
        }
    }
}

/// Reading a commit's tree failed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("git cache {path}: {message}")]
    Open { path: String, message: String },
    #[error("commit {commit} is not in the cache")]
    MissingCommit { commit: String },
    #[error("commit {commit}: {message}")]
    Corrupt { commit: String, message: String },
    #[error("path {path:?} is not a folder of commit {commit}")]
    PathNotFound { path: String, commit: String },
    #[error("path {path:?}: {message}")]
    InvalidPath { path: String, message: String },
    #[error("{path}: symlink points outside the repository ({target:?})")]
    SymlinkEscapes { path: String, target: String },
    #[error("{path}: symlink does not resolve inside the repository ({target:?})")]
    SymlinkDangling { path: String, target: String },
    #[error("{path}: {size} bytes is more than the {limit}-byte limit per file")]
    FileTooLarge { path: String, size: u64, limit: u64 },
    #[error("the files under {path:?} exceed the {limit}-byte limit for a tree")]
    TreeTooLarge { path: String, limit: u64 },
    #[error("more than {limit} files under {path:?}")]
    TooManyFiles { path: String, limit: usize },
}

/// The messages of an error and its sources, joined with `": "`, without repeats.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(err) = current {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}

/// Replaces every occurrence of a secret value in `message` with `***`.
pub(crate) fn scrub(mut message: String, secrets: &[&str]) -> String {
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        message = message.replace(secret, "***");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_hides_secret_values() {
        assert_eq!(
            scrub("bad token s3cr3t for s3cr3t".into(), &["s3cr3t", ""]),
            "bad token *** for ***"
        );
    }

    #[test]
    fn chain_joins_sources_once() {
        let io = std::io::Error::other("inner");
        let outer = FetchError::Failed {
            url: "u".into(),
            message: "x".into(),
        };
        assert_eq!(chain(&io), "inner");
        assert_eq!(chain(&outer), "fetching u failed: x");
    }
}
