//! Sealing routes of the controller's HTTP port.
//!
//! * `GET /v1/recipients`: the recipients to seal to, one per line (text/plain).
//! * `POST /v1/verify`: a SealedSecret (JSON) → whether the cluster can open
//!   every value where it sits; never returns values.
//! * `POST /v1/rotate`: a SealedSecret (JSON) → the same object with every
//!   value re-sealed to the published recipients, keeping each value's scope.
//!   It only ever seals to the cluster's own recipients, so it cannot be used
//!   to decrypt.
//!
//! The two POST routes decrypt with the cluster's keys for anyone who reaches the port, so
//! they run under [`DecryptLimits`]: a rate per client IP, a body cap and a concurrency bound.
//!
//! Every route reads the same objects the keyring controller maintains (the
//! `sigil-recipients` ConfigMap and the key Secrets), so any replica answers the
//! same, leader or not.

use std::sync::Arc;

use axum::Router;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::api::sealed_secret::SealedSecret;
use crate::controller::Context;
use crate::controller::sealing_keys::load_keyring;
use crate::crypto::Keyring;
use crate::crypto::manifest;
use crate::crypto::recipients;
use crate::crypto::sealed_data::{self, ResealError};
use crate::server::decrypt_limit::{DecryptLimits, Refusal};
use crate::wire::{self, VerifyResponse, read_published_recipients};

pub fn router() -> Router<Arc<Context>> {
    router_with(Arc::new(DecryptLimits::default()))
}

/// The routes, with the decrypting ones under `limits`.
pub fn router_with(limits: Arc<DecryptLimits>) -> Router<Arc<Context>> {
    let rotate_limits = limits.clone();
    Router::new()
        .route(wire::RECIPIENTS_ROUTE, get(get_recipients))
        .route(
            wire::VERIFY_ROUTE,
            post(move |state, extensions, body| verify(state, limits.clone(), extensions, body)),
        )
        .route(
            wire::ROTATE_ROUTE,
            post(move |state, extensions, body| {
                rotate(state, rotate_limits.clone(), extensions, body)
            }),
        )
}

/// A refusal, answered as a Kubernetes `Status` so clients going through the
/// API server's service proxy (and kube's client) read it the usual way.
struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    fn unavailable(message: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::RateLimited => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "too many decrypting calls from this client; retry in a second",
            ),
            Refusal::Busy => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "too many decrypting calls at once; retry in a second",
            ),
            Refusal::TooLarge => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                format!(
                    "the SealedSecret is larger than {} bytes",
                    crate::server::decrypt_limit::MAX_BODY_BYTES
                ),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        let retry = matches!(
            self.code,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        let mut response = (self.code, axum::Json(body)).into_response();
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

async fn get_recipients(State(ctx): State<Arc<Context>>) -> Result<Response, ApiError> {
    match read_published_recipients(&ctx.client, &ctx.options.namespace).await {
        Ok(Some(text)) => {
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
        }
        Ok(None) => Err(ApiError::unavailable("no sealing key published yet")),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the recipients ConfigMap");
            Err(ApiError::unavailable("cannot read the recipients"))
        }
    }
}

/// Parses the posted SealedSecret and its namespace/name.
fn posted(body: &[u8]) -> Result<(SealedSecret, String, String), ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message);
    let document: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("expected a SealedSecret as JSON: {e}")))?;
    let sealed = manifest::sealed_from_document(&document).map_err(|e| bad(e.to_string()))?;
    let (namespace, name) = manifest::sealed_identity(&sealed).map_err(|e| bad(e.to_string()))?;
    Ok((sealed, namespace, name))
}

async fn keyring(ctx: &Context) -> Result<Keyring, ApiError> {
    match load_keyring(&ctx.client, &ctx.options.namespace).await {
        Ok((keyring, _)) if !keyring.is_empty() => Ok(keyring),
        Ok(_) => Err(ApiError::unavailable("no sealing key yet")),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the sealing keys");
            Err(ApiError::unavailable("the sealing keys cannot be read"))
        }
    }
}

/// The caller's address, when the server was started with connection info.
fn peer(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

async fn verify(
    State(ctx): State<Arc<Context>>,
    limits: Arc<DecryptLimits>,
    extensions: axum::http::Extensions,
    body: Body,
) -> Result<axum::Json<VerifyResponse>, ApiError> {
    let (_permit, body) = limits
        .admit(&ctx.metrics, "verify", peer(&extensions), body)
        .await?;
    let (sealed, namespace, name) = posted(&body)?;
    let keyring = keyring(&ctx).await?;
    Ok(axum::Json(VerifyResponse::check(
        &sealed, &keyring, &namespace, &name,
    )))
}

async fn rotate(
    State(ctx): State<Arc<Context>>,
    limits: Arc<DecryptLimits>,
    extensions: axum::http::Extensions,
    body: Body,
) -> Result<axum::Json<SealedSecret>, ApiError> {
    let (_permit, body) = limits
        .admit(&ctx.metrics, "rotate", peer(&extensions), body)
        .await?;
    let (mut sealed, namespace, name) = posted(&body)?;
    let keyring = keyring(&ctx).await?;
    let published = match read_published_recipients(&ctx.client, &ctx.options.namespace).await {
        Ok(Some(text)) => recipients::parse_list(&text).ok().filter(|l| !l.is_empty()),
        _ => None,
    }
    .ok_or_else(|| ApiError::unavailable("no recipients published yet"))?;
    let object = manifest::describe("SealedSecret", Some(&namespace), &name);
    let values = sealed_data::reseal_all(
        &sealed.spec.encrypted_data,
        &keyring,
        &namespace,
        &name,
        &published,
    )
    .map_err(|e| match e {
        ResealError::Open(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.error.reason(),
            format!("{object}: {e}"),
        ),
        e => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("{object}: {e}"),
        ),
    })?;
    sealed.spec.encrypted_data = values;
    sealed.status = None;
    Ok(axum::Json(sealed))
}
