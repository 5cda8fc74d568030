//! The API calls a Sync makes on objects, optionally as an impersonated ServiceAccount.
//!
//! Requests are built with kube's request builder and sent with `Client::request`, adding the
//! `Impersonate-User` header (what `Config.auth_info.impersonate` sends) when the Sync names a
//! `spec.serviceAccountName`; the API server then checks that ServiceAccount's rights.

use http::HeaderValue;
use kube::Resource;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::Request;
use serde_json::Value;

/// Who the calls are made as.
#[derive(Clone)]
pub struct Target {
    client: kube::Client,
    impersonate: Option<String>,
}

/// A failed API call: the HTTP code (0 when the server was not reached), reason and message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl ApiError {
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }

    pub fn is_forbidden(&self) -> bool {
        self.code == 403
    }

    pub fn is_conflict(&self) -> bool {
        self.code == 409
    }
}

impl From<kube::Error> for ApiError {
    fn from(err: kube::Error) -> Self {
        match err {
            kube::Error::Api(status) => ApiError {
                code: status.code,
                reason: status.reason.clone(),
                message: if status.message.is_empty() {
                    format!("HTTP {}", status.code)
                } else {
                    status.message.clone()
                },
            },
            other => ApiError {
                code: 0,
                reason: String::new(),
                message: other.to_string(),
            },
        }
    }
}

fn build_error(err: kube::core::request::Error) -> ApiError {
    ApiError {
        code: 0,
        reason: "BadRequest".to_string(),
        message: err.to_string(),
    }
}

impl Target {
    /// Calls made with the controller's own identity.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            impersonate: None,
        }
    }

    /// Calls made as `system:serviceaccount:NAMESPACE:NAME`.
    pub fn as_service_account(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            client,
            impersonate: Some(format!("system:serviceaccount:{namespace}:{name}")),
        }
    }

    /// The impersonated user, if any.
    pub fn user(&self) -> Option<&str> {
        self.impersonate.as_deref()
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    fn request(resource: &ApiResource, namespace: Option<&str>) -> Request {
        Request::new(DynamicObject::url_path(resource, namespace))
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        mut request: http::Request<Vec<u8>>,
    ) -> Result<T, ApiError> {
        if let Some(user) = &self.impersonate {
            let value = HeaderValue::from_str(user).map_err(|_| ApiError {
                code: 0,
                reason: "BadRequest".to_string(),
                message: format!("cannot impersonate {user:?}: not a valid header value"),
            })?;
            request.headers_mut().insert("Impersonate-User", value);
        }
        Ok(self.client.request::<T>(request).await?)
    }

    /// The live object, or None when it does not exist.
    pub async fn get(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        let request = Self::request(resource, namespace)
            .get(name, &Default::default())
            .map_err(build_error)?;
        match self.send::<Value>(request).await {
            Ok(object) => Ok(Some(object)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The objects matching a label selector (`""`: all) in one namespace, or all for None.
    pub async fn list(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Vec<Value>, ApiError> {
        let mut params = ListParams::default();
        if !selector.is_empty() {
            params = params.labels(selector);
        }
        let request = Self::request(resource, namespace)
            .list(&params)
            .map_err(build_error)?;
        let list: Value = self.send(request).await?;
        Ok(match list.get("items") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        })
    }

    /// Server-side apply of `object` as field manager `sigil`, taking over conflicting fields.
    pub async fn apply(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        object: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut params = PatchParams::apply(crate::api::FIELD_MANAGER).force();
        params.dry_run = dry_run;
        let request = Self::request(resource, namespace)
            .patch(name, &params, &Patch::Apply(object))
            .map_err(build_error)?;
        self.send(request).await
    }

    /// Deletes an object (background propagation). Ok(false) when it was already gone.
    pub async fn delete(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<bool, ApiError> {
        let params = DeleteParams::background();
        let request = Self::request(resource, namespace)
            .delete(name, &params)
            .map_err(build_error)?;
        match self.send::<Value>(request).await {
            Ok(_) => Ok(true),
            Err(err) if err.is_not_found() => Ok(false),
            Err(err) => Err(err),
        }
    }
}
