//! `POST /hooks/{namespace}/{gitsource}`: a Git host's push webhook triggers an immediate fetch.
//!
//! The call is verified with the `token` key of the Secret named by the GitSource's
//! `spec.webhookSecretRef`: GitHub style (`X-Hub-Signature-256: sha256=HMAC-SHA256(token, body)`)
//! or GitLab style (`X-Gitlab-Token: token`). A valid call sets the GitSource's
//! `sigil.dev/reconcile-requested-at` annotation, which makes the controller (whichever replica
//! leads) fetch at once. Every invalid call gets the same 401, whatever was wrong, and a client
//! with too many of them gets 429 until its window passes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::api::git_source::GitSource;
use crate::controller::Context;
use crate::controller::git_source::REQUESTED_AT_ANNOTATION;
use crate::crypto::manifest::wipe_secret;

/// Invalid calls allowed per client and window before it gets 429.
const MAX_FAILURES: u32 = 10;
/// The largest body read (and signed over): push payloads of GitHub and GitLab are far smaller;
/// a larger one gets 413 and counts as an invalid call. The GitSource's interval still fetches.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
const WINDOW: Duration = Duration::from_secs(60);

/// Counts invalid calls per client.
#[derive(Default)]
pub struct Limiter {
    clients: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    /// How long the client must wait, when it is over the limit.
    fn blocked(&self, client: &str) -> Option<Duration> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let (start, failures) = clients.get(client)?;
        let left = WINDOW.checked_sub(start.elapsed())?;
        (*failures >= MAX_FAILURES).then_some(left)
    }

    fn failed(&self, client: &str) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() > 10_000 {
            clients.retain(|_, (start, _)| start.elapsed() < WINDOW);
        }
        let entry = clients
            .entry(client.to_string())
            .or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// The webhook route.
pub fn router() -> Router<Arc<Context>> {
    let limiter = Arc::new(Limiter::default());
    Router::new().route(
        "/hooks/{namespace}/{gitsource}",
        post(
            move |State(ctx): State<Arc<Context>>,
                  Path((namespace, name)): Path<(String, String)>,
                  extensions: axum::http::Extensions,
                  headers: HeaderMap,
                  body: Body| {
                let limiter = limiter.clone();
                async move {
                    let client = extensions
                        .get::<ConnectInfo<SocketAddr>>()
                        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
                    receive(&ctx, &limiter, &client, &namespace, &name, &headers, body).await
                }
            },
        ),
    )
}

/// Why a call was refused (logged; the caller only sees 401).
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("GitSource not found")]
    NoSource,
    #[error("GitSource has no spec.webhookSecretRef")]
    NoSecretRef,
    #[error("webhook Secret {0} not found or has no key `token`")]
    NoToken(String),
    #[error("no X-Hub-Signature-256 or X-Gitlab-Token header")]
    NoSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

async fn receive(
    ctx: &Context,
    limiter: &Limiter,
    client: &str,
    namespace: &str,
    name: &str,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    if let Some(wait) = limiter.blocked(client) {
        ctx.metrics.webhook_call("rate_limited");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, wait.as_secs().max(1).to_string())],
            "too many invalid webhook calls\n",
        )
            .into_response();
    }
    // Read only once the client is admitted, and never more than the limit.
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        limiter.failed(client);
        ctx.metrics.webhook_call("too_large");
        tracing::info!(gitsource = %format!("{namespace}/{name}"), %client, "webhook call refused: body over {MAX_BODY_BYTES} bytes");
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("webhook body larger than {MAX_BODY_BYTES} bytes\n"),
        )
            .into_response();
    };
    match verify(ctx, namespace, name, headers, &body).await {
        Ok(()) => {}
        Err(Refused::Api(err)) => {
            tracing::warn!(gitsource = %format!("{namespace}/{name}"), error = %err, "webhook: cannot check the call");
            ctx.metrics.webhook_call("unavailable");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot check the call now\n",
            )
                .into_response();
        }
        Err(reason) => {
            limiter.failed(client);
            ctx.metrics.webhook_call("unauthorized");
            tracing::info!(gitsource = %format!("{namespace}/{name}"), %client, %reason, "webhook call refused");
            return (StatusCode::UNAUTHORIZED, "invalid webhook call\n").into_response();
        }
    }
    let now = jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: now}}});
    match Api::<GitSource>::namespaced(ctx.client.clone(), namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(gitsource = %format!("{namespace}/{name}"), "webhook: fetch requested");
            ctx.metrics.webhook_call("accepted");
            (StatusCode::ACCEPTED, "fetch requested\n").into_response()
        }
        Err(err) => {
            tracing::warn!(gitsource = %format!("{namespace}/{name}"), error = %err, "webhook: cannot request a fetch");
            ctx.metrics.webhook_call("unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot request a fetch now\n",
            )
                .into_response()
        }
    }
}

async fn verify(
    ctx: &Context,
    namespace: &str,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Refused> {
    let source = Api::<GitSource>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await?
        .ok_or(Refused::NoSource)?;
    let secret_name = source
        .spec
        .webhook_secret_ref
        .map(|r| r.name)
        .ok_or(Refused::NoSecretRef)?;
    let mut secret = Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get_opt(&secret_name)
        .await?;
    let token = secret
        .as_mut()
        .and_then(|s| s.data.as_mut())
        .and_then(|data| data.remove("token"))
        .map(|t| Zeroizing::new(t.0));
    if let Some(secret) = secret.as_mut() {
        wipe_secret(secret);
    }
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Refused::NoToken(secret_name.clone()))?;
    check_signature(&token, headers, body)
}

/// Whether `headers` carry a valid signature of `body` for `token` (for the fuzz target).
pub fn signature_matches(token: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    check_signature(token, headers, body).is_ok()
}

/// GitHub's HMAC signature, or GitLab's plain token, compared in constant time.
fn check_signature(token: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), Refused> {
    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(signature) = header_text("x-hub-signature-256") {
        let hex_sig = signature
            .strip_prefix("sha256=")
            .ok_or(Refused::BadSignature)?;
        let expected = hex::decode(hex_sig.trim()).map_err(|_| Refused::BadSignature)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(token).map_err(|_| Refused::BadSignature)?;
        mac.update(body);
        return mac
            .verify_slice(&expected)
            .map_err(|_| Refused::BadSignature);
    }
    if let Some(given) = header_text("x-gitlab-token") {
        return if constant_time_eq(given.as_bytes(), token) {
            Ok(())
        } else {
            Err(Refused::BadSignature)
        };
    }
    Err(Refused::NoSignature)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header value"));
        }
        map
    }

    fn github_signature(token: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(token).expect("key");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn github_signatures() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = github_signature(b"s3cret", body);
        assert!(
            check_signature(b"s3cret", &headers(&[("x-hub-signature-256", &good)]), body).is_ok()
        );
        let other = github_signature(b"other", body);
        assert!(
            check_signature(
                b"s3cret",
                &headers(&[("x-hub-signature-256", &other)]),
                body
            )
            .is_err()
        );
        assert!(
            check_signature(
                b"s3cret",
                &headers(&[("x-hub-signature-256", &good)]),
                b"tampered"
            )
            .is_err()
        );
        assert!(
            check_signature(
                b"s3cret",
                &headers(&[("x-hub-signature-256", "sha256=zz")]),
                body
            )
            .is_err()
        );
        assert!(check_signature(b"s3cret", &headers(&[]), body).is_err());
    }

    #[test]
    fn gitlab_tokens() {
        assert!(check_signature(b"s3cret", &headers(&[("x-gitlab-token", "s3cret")]), b"").is_ok());
        assert!(check_signature(b"s3cret", &headers(&[("x-gitlab-token", "s3cre")]), b"").is_err());
    }

    #[test]
    fn limiter_blocks_after_too_many_failures() {
        let limiter = Limiter::default();
        for _ in 0..MAX_FAILURES {
            assert!(limiter.blocked("1.2.3.4").is_none());
            limiter.failed("1.2.3.4");
        }
        assert!(limiter.blocked("1.2.3.4").is_some());
        assert!(limiter.blocked("5.6.7.8").is_none());
    }
}
