//! Dynamic secrets on Vault: credentials from a secrets engine with the lease
//! they live under, and the lease's renewal and revocation.
//!
//! A named exception to "every call through vaultrs": vaultrs 0.8 has no
//! `sys/leases/renew` or `sys/leases/revoke`, and its generic executor
//! (`exec_with_result`) drops an answer's `lease_id`, `lease_duration` and
//! `renewable`. So these three calls are rustify endpoints of our own, run on
//! the store's own vaultrs client (its token, namespace header, HTTP client
//! and CA bundle) through [`VaultKv::authed`], like every other call: the same
//! login, the same retry after a revoked token, the same error mapping.
//!
//! The answer's body is wiped once parsed; the parsed values are wiped once
//! copied into a [`SecretValue`].

use std::time::Duration;

use futures::future::BoxFuture;
use rustify::endpoint::Endpoint;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use serde::Deserialize;
use serde_json::{Value, json};
use vaultrs::client::Client;
use zeroize::Zeroize;

use super::{TokenClient, VaultKv, check_segments, scrub, secret_data};
use crate::api::vault_dynamic_secret::{VaultDynamicMethod, VaultDynamicResultType};
use crate::providers::ProviderError;
use crate::providers::generator::{GenerateRequest, Generator, Issued, LeaseGrant, Renewed};
use crate::providers::metrics::LeaseOperation;

/// One request to a path below `/v1/`, answered with Vault's usual envelope.
#[derive(Clone)]
struct Call {
    path: String,
    method: RequestMethod,
    body: Option<Vec<u8>>,
}

impl Drop for Call {
    fn drop(&mut self) {
        if let Some(body) = self.body.as_mut() {
            body.zeroize();
        }
    }
}

/// Vault's answer envelope, keeping what vaultrs drops.
#[derive(Deserialize, Default)]
struct Answer {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    auth: Option<Value>,
    #[serde(default)]
    lease_id: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

impl Endpoint for Call {
    type Response = Answer;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> RequestMethod {
        self.method.clone()
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        Ok(self.body.clone())
    }
}

impl Call {
    fn new(path: &str, method: RequestMethod, body: Option<&Value>) -> Self {
        Self {
            path: path.to_string(),
            method,
            body: body.map(|b| serde_json::to_vec(b).unwrap_or_default()),
        }
    }

    /// Sends the call with `client`'s token; an empty answer (`204`) parses as no data.
    async fn send(&self, client: &TokenClient) -> Result<Answer, vaultrs::error::ClientError> {
        let mut result = self
            .clone()
            .with_middleware(client.0.middle())
            .exec(client.0.http())
            .await
            .map_err(api_error)?;
        let answer = if result.response.body().is_empty() {
            Ok(Answer::default())
        } else {
            result.parse().map_err(vaultrs::error::ClientError::from)
        };
        result.response.body_mut().zeroize();
        answer
    }
}

/// Vault's error messages out of a non-2xx answer, as vaultrs reports them
/// (its own converter is private).
fn api_error(error: rustify::errors::ClientError) -> vaultrs::error::ClientError {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    if let rustify::errors::ClientError::ServerResponseError {
        code,
        content: Some(content),
    } = &error
        && let Ok(parsed) = serde_json::from_str::<Errors>(content)
    {
        return vaultrs::error::ClientError::APIError {
            code: *code,
            errors: parsed.errors,
        };
    }
    vaultrs::error::ClientError::from(error)
}

impl VaultKv {
    async fn issue_credentials(&self, request: &GenerateRequest) -> Result<Issued, ProviderError> {
        let path = request.path.trim_matches('/');
        check_segments(path)
            .map_err(|why| ProviderError::Config(format!("spec.path {path:?}: {why}")))?;
        let (method, body) = match request.method {
            VaultDynamicMethod::Get => (RequestMethod::GET, None),
            VaultDynamicMethod::Post => (
                RequestMethod::POST,
                Some(request.parameters.clone().unwrap_or_else(|| json!({}))),
            ),
        };
        let call = Call::new(path, method, body.as_ref());
        let answer = self
            .authed(path, |client| {
                let call = &call;
                async move { call.send(&client).await }
            })
            .await;
        let issued = answer.and_then(|mut answer| {
            let picked = match request.result {
                VaultDynamicResultType::Data => answer.data.take(),
                VaultDynamicResultType::Auth => answer.auth.take(),
            };
            if let Some(other) = answer.data.as_mut().or(answer.auth.as_mut()) {
                scrub(other);
            }
            let data = secret_data(picked.unwrap_or(Value::Null), path)?;
            let lease = (!answer.lease_id.is_empty()).then(|| LeaseGrant {
                id: std::mem::take(&mut answer.lease_id),
                duration: Duration::from_secs(answer.lease_duration),
                renewable: answer.renewable,
            });
            Ok(Issued { data, lease })
        });
        self.calls.record_lease(LeaseOperation::Issue, &issued);
        issued
    }

    async fn renew_lease(
        &self,
        lease_id: &str,
        increment: Duration,
    ) -> Result<Renewed, ProviderError> {
        let body = json!({ "lease_id": lease_id, "increment": increment.as_secs() });
        let call = Call::new("sys/leases/renew", RequestMethod::PUT, Some(&body));
        let renewed = self
            .authed("Vault sys/leases/renew", |client| {
                let call = &call;
                async move { call.send(&client).await }
            })
            .await
            .map(|answer| Renewed {
                duration: Duration::from_secs(answer.lease_duration),
                renewable: answer.renewable,
            });
        self.calls.record_lease(LeaseOperation::Renew, &renewed);
        renewed
    }

    async fn revoke_lease(&self, lease_id: &str) -> Result<(), ProviderError> {
        let body = json!({ "lease_id": lease_id });
        let call = Call::new("sys/leases/revoke", RequestMethod::PUT, Some(&body));
        let revoked = self
            .authed("Vault sys/leases/revoke", |client| {
                let call = &call;
                async move { call.send(&client).await }
            })
            .await
            .map(|_| ())
            // Already revoked or expired: what was asked for holds.
            .or_else(|e| if lease_is_gone(&e) { Ok(()) } else { Err(e) });
        self.calls.record_lease(LeaseOperation::Revoke, &revoked);
        revoked
    }
}

impl Generator for VaultKv {
    fn issue<'a>(
        &'a self,
        request: &'a GenerateRequest,
    ) -> BoxFuture<'a, Result<Issued, ProviderError>> {
        Box::pin(self.issue_credentials(request))
    }

    fn renew<'a>(
        &'a self,
        lease_id: &'a str,
        increment: Duration,
    ) -> BoxFuture<'a, Result<Renewed, ProviderError>> {
        Box::pin(self.renew_lease(lease_id, increment))
    }

    fn revoke<'a>(&'a self, lease_id: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(self.revoke_lease(lease_id))
    }
}

/// Whether Vault's answer to a renewal says the lease no longer exists (revoked or expired).
pub fn lease_is_gone(error: &ProviderError) -> bool {
    match error {
        ProviderError::Value { message, .. } => {
            message.contains("lease")
                && ["not found", "expired", "invalid"]
                    .iter()
                    .any(|why| message.contains(why))
        }
        ProviderError::NotFound { .. } => true,
        _ => false,
    }
}
