//! Generators: backends that issue new credentials on every request, each
//! under a lease that must be renewed to stay valid and revoked when done
//! (Vault's dynamic secrets engines, behind `VaultDynamicSecret`).

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{ProviderError, SecretValue};
use crate::api::vault_dynamic_secret::{VaultDynamicMethod, VaultDynamicResultType};

/// What to ask a generator for.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateRequest {
    /// The path issuing credentials, e.g. `database/creds/app`.
    pub path: String,
    pub method: VaultDynamicMethod,
    /// JSON body of a `POST`.
    pub parameters: Option<serde_json::Value>,
    pub result: VaultDynamicResultType,
}

/// A lease as Vault grants it.
#[derive(Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    /// Names the lease (to renew or revoke it); not a credential.
    pub id: String,
    /// How long the lease lasts from now unless renewed.
    pub duration: Duration,
    pub renewable: bool,
}

impl fmt::Debug for LeaseGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseGrant")
            .field("id", &self.id)
            .field("duration", &self.duration)
            .field("renewable", &self.renewable)
            .finish()
    }
}

/// New credentials and the lease they live under.
#[derive(Debug)]
pub struct Issued {
    /// The values, a JSON object of the answer's `data` (or `auth`).
    pub data: SecretValue,
    /// `None` when the answer carries no lease (nothing to renew or revoke).
    pub lease: Option<LeaseGrant>,
}

/// A renewal's answer: the lease's new duration from now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renewed {
    pub duration: Duration,
    pub renewable: bool,
}

/// A backend issuing leased credentials.
pub trait Generator: Send + Sync {
    /// Issues new credentials.
    fn issue<'a>(
        &'a self,
        request: &'a GenerateRequest,
    ) -> BoxFuture<'a, Result<Issued, ProviderError>>;

    /// Extends a lease by `increment` (the backend may grant less, up to its max TTL).
    fn renew<'a>(
        &'a self,
        lease_id: &'a str,
        increment: Duration,
    ) -> BoxFuture<'a, Result<Renewed, ProviderError>>;

    /// Ends a lease: the backend revokes the credentials. A lease already gone is not an error.
    fn revoke<'a>(&'a self, lease_id: &'a str) -> BoxFuture<'a, Result<(), ProviderError>>;
}
