//! Credentials of a Git source, read from the Secret named by `spec.secretRef`.

use std::collections::BTreeMap;

use secrecy::{SecretBox, SecretString};
use zeroize::Zeroizing;

use super::FetchError;

/// How to reach a remote: authentication and, for https, extra trusted CA certificates.
/// `Debug` never shows a secret value.
#[derive(Debug, Default)]
pub struct Credentials {
    pub auth: Auth,
    /// PEM certificates (the Secret's `ca.crt`) trusted for https besides the system roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl From<Auth> for Credentials {
    fn from(auth: Auth) -> Self {
        Self { auth, ca_pem: None }
    }
}

/// How to authenticate to a remote. `Debug` never shows a secret value.
#[derive(Debug, Default)]
pub enum Auth {
    /// Anonymous (or `file://`).
    #[default]
    None,
    /// HTTP basic auth (`username` + `password`, the password often being a token).
    Basic {
        username: String,
        password: SecretString,
    },
    /// `Authorization: Bearer <bearerToken>` on every HTTP request.
    Bearer(SecretString),
    /// An ssh private key (`identity`) and the `known_hosts` lines the server's key must match.
    Ssh {
        identity: SecretBox<Vec<u8>>,
        known_hosts: String,
    },
}

impl Credentials {
    /// Reads the Secret's data: `identity` + `known_hosts` (ssh), `bearerToken`, or
    /// `username` + `password` (https), and `ca.crt`. The error names the missing or malformed key.
    pub fn from_secret_data(
        secret_name: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, FetchError> {
        let ca_pem = data.get("ca.crt").filter(|ca| !ca.is_empty()).cloned();
        let auth = if data.len() == usize::from(ca_pem.is_some()) {
            Auth::None
        } else {
            Auth::from_secret_data(secret_name, data)?
        };
        Ok(Self { auth, ca_pem })
    }
}

impl Auth {
    /// The authentication part of [`Credentials::from_secret_data`].
    fn from_secret_data(
        secret_name: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, FetchError> {
        let text = |key: &str| -> Result<Option<String>, FetchError> {
            data.get(key)
                .map(|bytes| {
                    String::from_utf8(bytes.clone()).map_err(|_| {
                        FetchError::Credentials(format!(
                            "Secret {secret_name}: key {key} is not UTF-8"
                        ))
                    })
                })
                .transpose()
        };
        if let Some(identity) = data.get("identity") {
            let known_hosts = text("known_hosts")?
                .filter(|k| !k.trim().is_empty())
                .ok_or_else(|| {
                    FetchError::Credentials(format!(
                        "Secret {secret_name}: key known_hosts is required with identity (host keys are always verified)"
                    ))
                })?;
            let identity = Zeroizing::new(identity.clone());
            if identity.is_empty() {
                return Err(FetchError::Credentials(format!(
                    "Secret {secret_name}: key identity is empty"
                )));
            }
            return Ok(Auth::Ssh {
                identity: SecretBox::new(Box::new(identity.to_vec())),
                known_hosts,
            });
        }
        if let Some(token) = text("bearerToken")? {
            return Ok(Auth::Bearer(SecretString::from(token.trim().to_string())));
        }
        match (text("username")?, text("password")?) {
            (Some(username), Some(password)) => Ok(Auth::Basic {
                username,
                password: SecretString::from(password),
            }),
            (Some(_), None) => Err(FetchError::Credentials(format!(
                "Secret {secret_name}: key password is required with username"
            ))),
            (None, Some(_)) => Err(FetchError::Credentials(format!(
                "Secret {secret_name}: key username is required with password"
            ))),
            (None, None) => Err(FetchError::Credentials(format!(
                "Secret {secret_name}: no credentials found (expected username+password, bearerToken, or identity+known_hosts)"
            ))),
        }
    }

    /// Name of the kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::None => "no",
            Auth::Basic { .. } => "basic auth",
            Auth::Bearer(_) => "bearer token",
            Auth::Ssh { .. } => "ssh key",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn reads_each_kind() {
        assert!(matches!(
            Credentials::from_secret_data("s", &data(&[("username", "u"), ("password", "p")]))
                .map(|c| c.auth),
            Ok(Auth::Basic { .. })
        ));
        assert!(matches!(
            Credentials::from_secret_data("s", &data(&[("bearerToken", "t")])).map(|c| c.auth),
            Ok(Auth::Bearer(_))
        ));
        assert!(matches!(
            Credentials::from_secret_data(
                "s",
                &data(&[
                    ("identity", "KEY"),
                    ("known_hosts", "host ssh-ed25519 AAAA")
                ])
            )
            .map(|c| c.auth),
            Ok(Auth::Ssh { .. })
        ));
    }

    #[test]
    fn a_ca_alone_is_anonymous_https() {
        let creds = Credentials::from_secret_data("s", &data(&[("ca.crt", "PEM")])).expect("ok");
        assert!(matches!(creds.auth, Auth::None));
        assert_eq!(creds.ca_pem.as_deref(), Some(b"PEM".as_slice()));
    }

    #[test]
    fn ssh_without_known_hosts_is_refused() {
        let err = Credentials::from_secret_data("git-ssh", &data(&[("identity", "KEY")]))
            .expect_err("refused");
        assert!(err.to_string().contains("known_hosts"), "{err}");
        assert_eq!(err.reason(), "CredentialsInvalid");
    }

    #[test]
    fn debug_never_shows_values() {
        let creds = Credentials::from_secret_data(
            "s",
            &data(&[("username", "u"), ("password", "hunter22")]),
        )
        .expect("basic");
        assert!(!format!("{creds:?}").contains("hunter22"));
    }
}
