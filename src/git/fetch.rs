//! One shallow fetch of a reference into a bare cache repository.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use gix::bstr::BStr;
use gix::protocol::transport::client::blocking_io::{self as transport, http};
use gix::remote::Direction;
use secrecy::ExposeSecret;

use super::error::{chain, scrub};
use super::ssh::SshFiles;
use super::{Auth, Credentials, FetchError, Reference};

/// What to fetch and how to authenticate.
#[derive(Debug)]
pub struct FetchRequest<'a> {
    pub url: &'a str,
    pub reference: &'a Reference,
    pub credentials: &'a Credentials,
}

/// The outcome of a fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The commit's 40-hex SHA-1.
    pub commit: String,
    /// `<branch or tag>@sha1:<commit>` (or `sha1:<commit>`).
    pub revision: String,
    /// False when the remote ref pointed at a commit already in the cache, so no pack was fetched.
    pub downloaded: bool,
}

/// The URL as it may appear in messages: without a password.
pub fn display_url(url: &str) -> String {
    match gix::url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                parsed.set_password(Some("***".to_string()));
            }
            parsed.to_bstring().to_string()
        }
        Err(_) => url.to_string(),
    }
}

/// Fetches `request.reference` from `request.url` into the bare repository at `repo_dir`
/// (created when missing) with depth 1. `scratch_dir` holds short-lived ssh key files.
/// Setting `interrupt` aborts a running transfer.
pub fn fetch(
    repo_dir: &Path,
    scratch_dir: &Path,
    request: &FetchRequest<'_>,
    interrupt: &AtomicBool,
) -> Result<Fetched, FetchError> {
    let shown_url = display_url(request.url);
    let url = gix::url::parse(request.url).map_err(|e| FetchError::InvalidUrl {
        url: shown_url.clone(),
        message: e.to_string(),
    })?;
    check_scheme_and_credentials(&url, &request.credentials.auth, &shown_url)?;
    // gix's reqwest transport takes the process's rustls provider (ring, the only one compiled in).
    crate::tls::install_crypto_provider();
    let secrets = secret_values(&request.credentials.auth);

    let repo = open_or_init(repo_dir)?;
    let ssh_files = match &request.credentials.auth {
        Auth::Ssh {
            identity,
            known_hosts,
        } => Some(
            SshFiles::write(scratch_dir, identity.expose_secret(), known_hosts).map_err(|e| {
                FetchError::Cache {
                    path: scratch_dir.display().to_string(),
                    message: format!("cannot write ssh key files: {e}"),
                }
            })?,
        ),
        _ => None,
    };
    let fail = |err: gix::Error| {
        let ssh_stderr = ssh_files.as_ref().map(SshFiles::stderr).unwrap_or_default();
        classify(&err, &ssh_stderr, &shown_url, request, &secrets)
    };
    let ssh_options = transport::ssh::connect::Options {
        command: Some(
            ssh_files
                .as_ref()
                .map(SshFiles::command)
                .unwrap_or_else(SshFiles::anonymous_command),
        ),
        disallow_shell: false,
        kind: Some(transport::ssh::ProgramKind::Ssh),
    };
    let connection = transport::connect::connect(
        url.clone(),
        transport::connect::Options {
            version: gix::protocol::transport::Protocol::V2,
            ssh: ssh_options,
            trace: false,
        },
    )
    .map_err(fail)?;

    let remote = repo
        .remote_at_without_url_rewrite(url.clone())
        .map_err(fail)?
        .with_refspecs([refspec(request.reference).as_str()], Direction::Fetch)
        .map_err(fail)?
        .with_fetch_tags(gix::remote::fetch::Tags::None);
    let mut connection = remote.to_connection_with_transport(connection);
    if matches!(url.scheme, gix::url::Scheme::Http | gix::url::Scheme::Https) {
        connection.set_transport_options(Box::new(http_options(request.credentials)?));
    }
    let connection = connection.with_credentials(credentials_callback(&request.credentials.auth));

    let prepare = connection
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(fail)?;
    let target = target_commit(prepare.ref_map(), request.reference).ok_or_else(|| {
        FetchError::RefNotFound {
            url: shown_url.clone(),
            reference: request.reference.to_string(),
        }
    })?;
    let commit = target.to_string();
    let revision = request.reference.revision(&commit);
    if has_commit(&repo, target) {
        return Ok(Fetched {
            commit,
            revision,
            downloaded: false,
        });
    }
    let depth = NonZeroU32::new(1).expect("1 is not zero");
    prepare
        .with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(depth))
        .receive(gix::progress::Discard, interrupt)
        .map_err(fail)?;
    // A fresh handle sees the pack just written.
    let repo = open_or_init(repo_dir)?;
    if !has_commit(&repo, target) {
        return Err(FetchError::RefNotFound {
            url: shown_url,
            reference: request.reference.to_string(),
        });
    }
    Ok(Fetched {
        commit,
        revision,
        downloaded: true,
    })
}

fn check_scheme_and_credentials(
    url: &gix::Url,
    credentials: &Auth,
    shown_url: &str,
) -> Result<(), FetchError> {
    use gix::url::Scheme;
    let mismatch = |what: &str| {
        Err(FetchError::Credentials(format!(
            "{} credentials cannot be used with {what} URL {shown_url}",
            credentials.kind()
        )))
    };
    match (&url.scheme, credentials) {
        (Scheme::Https | Scheme::Http, Auth::Ssh { .. }) => mismatch("an http(s)"),
        (Scheme::Https | Scheme::Http, _) => Ok(()),
        (Scheme::Ssh, Auth::Basic { .. } | Auth::Bearer(_)) => mismatch("an ssh"),
        (Scheme::Ssh, _) => Ok(()),
        // `git upload-pack` reports a missing repository only on its stderr, which gix does not keep.
        (Scheme::File, Auth::None) if !Path::new(&url.path.to_string()).is_dir() => {
            Err(FetchError::NotFound {
                url: shown_url.to_string(),
                message: "no such folder".to_string(),
            })
        }
        (Scheme::File, Auth::None) => Ok(()),
        (Scheme::File, _) => mismatch("a file"),
        (other, _) => Err(FetchError::InvalidUrl {
            url: shown_url.to_string(),
            message: format!("scheme {other} is not supported (use https://, ssh:// or file://)"),
        }),
    }
}

/// `+refs/heads/B:refs/heads/B`, `+refs/tags/T:refs/tags/T`, or the bare commit id.
fn refspec(reference: &Reference) -> String {
    match reference {
        Reference::Branch(name) => format!("+refs/heads/{name}:refs/heads/{name}"),
        Reference::Tag(name) => format!("+refs/tags/{name}:refs/tags/{name}"),
        Reference::Commit(sha) => sha.clone(),
    }
}

fn target_commit(
    ref_map: &gix::remote::fetch::RefMap,
    reference: &Reference,
) -> Option<gix::ObjectId> {
    let wanted = match reference {
        Reference::Branch(name) => format!("refs/heads/{name}"),
        Reference::Tag(name) => format!("refs/tags/{name}"),
        Reference::Commit(sha) => return gix::ObjectId::from_hex(sha.as_bytes()).ok(),
    };
    ref_map
        .mappings
        .iter()
        .find(|m| m.remote.as_name() == Some(<&BStr>::from(wanted.as_str())))
        .and_then(|m| m.remote.peeled_id())
        .map(ToOwned::to_owned)
}

fn has_commit(repo: &gix::Repository, id: gix::ObjectId) -> bool {
    repo.find_commit(id).is_ok_and(|c| c.tree_id().is_ok())
}

fn open_or_init(dir: &Path) -> Result<gix::Repository, FetchError> {
    let cache_error = |e: gix::Error| FetchError::Cache {
        path: dir.display().to_string(),
        message: chain(&e),
    };
    if dir.join("HEAD").exists() {
        return gix::open_opts(dir, gix::open::Options::isolated()).map_err(cache_error);
    }
    std::fs::create_dir_all(dir).map_err(|e| FetchError::Cache {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    gix::ThreadSafeRepository::init_opts(
        dir,
        gix::create::Kind::Bare,
        gix::create::Options::default(),
        gix::open::Options::isolated(),
    )
    .map(Into::into)
    .map_err(cache_error)
}

fn http_options(credentials: &Credentials) -> Result<http::Options, FetchError> {
    let mut options = http::Options {
        connect_timeout: Some(std::time::Duration::from_secs(20)),
        // Abort a transfer that stalls below 1 KiB/s for a minute.
        low_speed_limit_bytes_per_second: 1024,
        low_speed_time_seconds: 60,
        user_agent: Some(format!("sigil/{}", env!("CARGO_PKG_VERSION"))),
        ..Default::default()
    };
    if let Auth::Bearer(token) = &credentials.auth {
        options
            .extra_headers
            .push(format!("Authorization: Bearer {}", token.expose_secret()));
    }
    if let Some(pem) = &credentials.ca_pem {
        let certificates = reqwest::Certificate::from_pem_bundle(pem)
            .ok()
            .filter(|certs| !certs.is_empty())
            .ok_or_else(|| {
                FetchError::Credentials("key ca.crt holds no PEM certificate".to_string())
            })?;
        let backend = http::reqwest::Options {
            configure_client: Some(Box::new(move |builder| {
                Ok(certificates
                    .iter()
                    .cloned()
                    .fold(builder, |b, cert| b.add_root_certificate(cert)))
            })),
            configure_request: None,
        };
        options.backend = Some(std::sync::Arc::new(std::sync::Mutex::new(backend)));
    }
    Ok(options)
}

type CredentialsFn<'a> = Box<
    dyn FnMut(
            gix::credentials::helper::Action,
        ) -> gix::Result<Option<gix::credentials::protocol::Outcome>>
        + 'a,
>;

/// Answers gix's credential requests from the Secret only: never a helper, never a prompt.
fn credentials_callback(credentials: &Auth) -> CredentialsFn<'_> {
    Box::new(move |action| match (action, credentials) {
        (gix::credentials::helper::Action::Get(context), Auth::Basic { username, password }) => {
            Ok(Some(gix::credentials::protocol::Outcome {
                identity: gix::sec::identity::Account {
                    username: username.clone(),
                    password: password.expose_secret().to_string(),
                    oauth_refresh_token: None,
                },
                next: context.into(),
            }))
        }
        _ => Ok(None),
    })
}

fn secret_values(credentials: &Auth) -> Vec<&str> {
    match credentials {
        Auth::Basic { password, .. } => vec![password.expose_secret()],
        Auth::Bearer(token) => vec![token.expose_secret()],
        _ => Vec::new(),
    }
}

/// Maps a gix error to a reason, by its classification first and by the transport's words second
/// (ssh and `git upload-pack` only report in text).
fn classify(
    err: &gix::Error,
    ssh_stderr: &str,
    shown_url: &str,
    request: &FetchRequest<'_>,
    secrets: &[&str],
) -> FetchError {
    use gix::error::Class;
    let mut message = chain(err);
    if !ssh_stderr.trim().is_empty() {
        message = format!("{message}: {}", ssh_stderr.trim());
    }
    let message = scrub(message, secrets);
    let lower = message.to_lowercase();
    let url = shown_url.to_string();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if has(&[
        "host key verification failed",
        "remote host identification has changed",
        "no matching host key",
    ]) {
        return FetchError::HostKeyFailed { url, message };
    }
    if has(&[
        "not our ref",
        "couldn't find remote ref",
        "no such remote ref",
    ]) {
        return FetchError::RefNotFound {
            url,
            reference: request.reference.to_string(),
        };
    }
    let class = err.dominant_class();
    if matches!(
        class,
        Some(Class::Unauthenticated | Class::PermissionDenied)
    ) || has(&[
        "permission denied (publickey",
        "authentication failed",
        "authentication required",
        "401",
        "403",
    ]) {
        return FetchError::AuthFailed { url, message };
    }
    if matches!(class, Some(Class::Cancelled)) || has(&["interrupt"]) {
        return FetchError::Timeout { url };
    }
    if matches!(class, Some(Class::NotFound))
        || has(&[
            "not found",
            "does not appear to be a git repository",
            "could not verify that",
            "404",
            "no such file or directory",
        ])
    {
        return FetchError::NotFound { url, message };
    }
    FetchError::Failed { url, message }
}

impl SshFiles {
    /// The ssh command without a key: still strict about host keys (with no known_hosts at all,
    /// every host is refused).
    fn anonymous_command() -> std::ffi::OsString {
        "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refspecs_per_reference() {
        assert_eq!(
            refspec(&Reference::Branch("main".into())),
            "+refs/heads/main:refs/heads/main"
        );
        assert_eq!(
            refspec(&Reference::Tag("v1".into())),
            "+refs/tags/v1:refs/tags/v1"
        );
    }

    #[test]
    fn urls_are_shown_without_passwords() {
        let shown = display_url("https://user:hunter22@example.com/repo.git");
        assert!(!shown.contains("hunter22"), "{shown}");
        assert!(shown.contains("example.com/repo.git"), "{shown}");
    }

    #[test]
    fn credentials_must_fit_the_scheme() {
        let url = gix::url::parse("file:///tmp/x").expect("url");
        let creds = Auth::Bearer(secrecy::SecretString::from("t".to_string()));
        assert!(check_scheme_and_credentials(&url, &creds, "file:///tmp/x").is_err());
        let url = gix::url::parse("ftp://host/x").expect("url");
        assert!(check_scheme_and_credentials(&url, &Auth::None, "ftp://host/x").is_err());
    }
}
