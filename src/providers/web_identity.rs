//! AWS credentials from a ServiceAccount token (`auth.jwt`): the token is
//! exchanged with STS `AssumeRoleWithWebIdentity` for the store's role, as
//! IRSA does, but for a ServiceAccount the store names.
//!
//! The credentials are kept and handed out until [`RENEW_BEFORE`] their
//! expiry; then a fresh token is requested and exchanged again. The SDK's own
//! identity cache sits in front and asks only when its copy nears expiry.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_sdk_sts::error::DisplayErrorContext;
use secrecy::ExposeSecret;

use super::{JwtSource, ProviderError};

/// Credentials are exchanged again when less than this is left of them.
pub const RENEW_BEFORE: Duration = Duration::from_secs(300);
const SESSION_NAME: &str = "sigil";
const PROVIDER_NAME: &str = "sigil-web-identity";

/// Temporary credentials for `role`, from `account`'s tokens.
#[derive(Clone)]
pub struct WebIdentityCredentials {
    inner: Arc<Inner>,
}

struct Inner {
    sts: aws_sdk_sts::Client,
    role: String,
    /// `namespace/name` of the ServiceAccount, for messages.
    account: String,
    token: JwtSource,
    current: tokio::sync::Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for WebIdentityCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebIdentityCredentials")
            .field("role", &self.inner.role)
            .field("account", &self.inner.account)
            .finish_non_exhaustive()
    }
}

impl WebIdentityCredentials {
    /// `sts` is the STS client to call (with the store's endpoint override, if any).
    pub fn new(sts: aws_sdk_sts::Client, role: &str, account: &str, token: JwtSource) -> Self {
        Self {
            inner: Arc::new(Inner {
                sts,
                role: role.to_string(),
                account: account.to_string(),
                token,
                current: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Valid credentials: the kept ones, or freshly exchanged ones.
    pub async fn credentials(&self) -> Result<Credentials, ProviderError> {
        let mut current = self.inner.current.lock().await;
        if let Some(credentials) = current.as_ref()
            && !needs_renewal(credentials.expiry(), SystemTime::now())
        {
            return Ok(credentials.clone());
        }
        let fresh = self.exchange().await?;
        *current = Some(fresh.clone());
        Ok(fresh)
    }

    async fn exchange(&self) -> Result<Credentials, ProviderError> {
        let inner = &self.inner;
        let token = (inner.token)().await?;
        let failed = |why: String| {
            ProviderError::Auth(format!(
                "AssumeRoleWithWebIdentity of {} with the token of ServiceAccount {}: {why}",
                inner.role, inner.account
            ))
        };
        let answer = inner
            .sts
            .assume_role_with_web_identity()
            .role_arn(&inner.role)
            .role_session_name(SESSION_NAME)
            .web_identity_token(token.expose_secret())
            .send()
            .await
            .map_err(|e| failed(DisplayErrorContext(&e).to_string()))?;
        let granted = answer
            .credentials()
            .ok_or_else(|| failed("no credentials in the answer".into()))?;
        let expiry = SystemTime::try_from(*granted.expiration())
            .map_err(|_| failed("expiration out of range".into()))?;
        tracing::debug!(role = %inner.role, account = %inner.account, "exchanged a ServiceAccount token for role credentials");
        Ok(Credentials::new(
            granted.access_key_id(),
            granted.secret_access_key(),
            Some(granted.session_token().to_string()),
            Some(expiry),
            PROVIDER_NAME,
        ))
    }
}

/// Whether credentials expiring at `expiry` must be renewed at `now`.
fn needs_renewal(expiry: Option<SystemTime>, now: SystemTime) -> bool {
    match expiry {
        None => true,
        Some(expiry) => expiry
            .duration_since(now)
            .map_or(true, |left| left < RENEW_BEFORE),
    }
}

impl ProvideCredentials for WebIdentityCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.credentials()
                .await
                .map_err(CredentialsError::provider_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_renewed_shortly_before_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(!needs_renewal(Some(now + Duration::from_secs(3600)), now));
        assert!(!needs_renewal(Some(now + RENEW_BEFORE), now));
        assert!(needs_renewal(
            Some(now + RENEW_BEFORE - Duration::from_secs(1)),
            now
        ));
        assert!(needs_renewal(Some(now - Duration::from_secs(1)), now));
        assert!(needs_renewal(None, now));
    }
}
