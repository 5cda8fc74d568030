//! An HTTP proxy that counts requests on their way to a test server (moto,
//! OpenBao) and can play an outage or a policy denying an action.
//!
//! Requests are counted per AWS action (the `X-Amz-Target` header, e.g.
//! `BatchGetSecretValue`, or the `Action` of a form-encoded query-protocol
//! body, e.g. STS's `AssumeRoleWithWebIdentity`) or else per `METHOD /path`.
//! The proxy also remembers which access key signed each action and the form
//! fields of query-protocol requests.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct ProxyState {
    counts: Mutex<BTreeMap<String, u64>>,
    /// When each request arrived, per action, to split calls into rounds.
    times: Mutex<BTreeMap<String, Vec<Instant>>>,
    down: AtomicBool,
    /// Actions answered with AccessDeniedException, as a policy without them would.
    denied: Mutex<BTreeSet<String>>,
    /// Access key ids (from SigV4 `Authorization`) per action.
    signers: Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// Form fields of query-protocol requests, per action, in arrival order.
    forms: Mutex<BTreeMap<String, Vec<BTreeMap<String, String>>>>,
}

/// Counts requests per action on their way to `upstream`.
pub struct CountingProxy {
    pub endpoint: String,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    pub async fn start(upstream: &str) -> Self {
        let state = Arc::new(ProxyState::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr: SocketAddr = listener.local_addr().expect("proxy address");
        let http = crate::support::http::client();
        let upstream = upstream.to_string();
        let handler_state = state.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let state = handler_state.clone();
            let http = http.clone();
            let upstream = upstream.clone();
            async move { forward(state, http, upstream, request).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint: format!("http://{addr}"),
            state,
            task,
        }
    }

    /// Requests seen for an action: `BatchGetSecretValue`, or `POST /v1/auth/approle/login`.
    pub fn count(&self, action: &str) -> u64 {
        self.state
            .counts
            .lock()
            .expect("counts")
            .get(action)
            .copied()
            .unwrap_or(0)
    }

    /// Every action and its count.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.state.counts.lock().expect("counts").clone()
    }

    /// Arrival times of the requests for `action`.
    pub fn times(&self, action: &str) -> Vec<Instant> {
        self.state
            .times
            .lock()
            .expect("times")
            .get(action)
            .cloned()
            .unwrap_or_default()
    }

    /// Requests for `action` since `since`, grouped into rounds: bursts whose
    /// requests arrive less than `gap` apart. The count of each round, in order.
    pub fn rounds(&self, action: &str, since: Instant, gap: Duration) -> Vec<usize> {
        let mut rounds: Vec<usize> = Vec::new();
        let mut last: Option<Instant> = None;
        for t in self.times(action).into_iter().filter(|t| *t >= since) {
            match (last, rounds.last_mut()) {
                (Some(previous), Some(round)) if t.duration_since(previous) < gap => *round += 1,
                _ => rounds.push(1),
            }
            last = Some(t);
        }
        rounds
    }

    /// Answers every request for `action` with AccessDeniedException from now on.
    pub fn deny(&self, action: &str) {
        self.state
            .denied
            .lock()
            .expect("denied")
            .insert(action.to_string());
    }

    /// The access key ids that signed requests for `action`.
    pub fn signers(&self, action: &str) -> BTreeSet<String> {
        self.state
            .signers
            .lock()
            .expect("signers")
            .get(action)
            .cloned()
            .unwrap_or_default()
    }

    /// The form fields of every query-protocol request for `action` (e.g. `AssumeRoleWithWebIdentity`).
    pub fn forms(&self, action: &str) -> Vec<BTreeMap<String, String>> {
        self.state
            .forms
            .lock()
            .expect("forms")
            .get(action)
            .cloned()
            .unwrap_or_default()
    }

    /// Makes every request fail with 503 (true) or pass again (false).
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    state: Arc<ProxyState>,
    http: reqwest::Client,
    upstream: String,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 << 20).await else {
        return http::StatusCode::BAD_REQUEST.into_response();
    };
    let form = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
        .then(|| decode_form(&bytes));
    let action = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(|t| t.rsplit('.').next().unwrap_or(t).to_string())
        .or_else(|| form.as_ref().and_then(|f| f.get("Action").cloned()))
        .unwrap_or_else(|| format!("{} {}", parts.method, parts.uri.path()));
    if let Some(key) = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .and_then(|v| v.split('/').next())
    {
        state
            .signers
            .lock()
            .expect("signers")
            .entry(action.clone())
            .or_default()
            .insert(key.to_string());
    }
    if let Some(form) = form {
        state
            .forms
            .lock()
            .expect("forms")
            .entry(action.clone())
            .or_default()
            .push(form);
    }
    *state
        .counts
        .lock()
        .expect("counts")
        .entry(action.clone())
        .or_default() += 1;
    state
        .times
        .lock()
        .expect("times")
        .entry(action.clone())
        .or_default()
        .push(Instant::now());
    if state.denied.lock().expect("denied").contains(&action) {
        return (
            http::StatusCode::BAD_REQUEST,
            [("content-type", "application/x-amz-json-1.1")],
            format!(
                r#"{{"__type":"AccessDeniedException","message":"not authorized to perform {action}"}}"#
            ),
        )
            .into_response();
    }
    if state.down.load(Ordering::SeqCst) {
        return (
            http::StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "application/x-amz-json-1.1")],
            r#"{"__type":"ServiceUnavailable","message":"test outage"}"#,
        )
            .into_response();
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut outgoing = http.request(parts.method.clone(), format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    match outgoing.body(bytes).send().await {
        Ok(response) => {
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap_or_default();
            let mut answer = (status, body).into_response();
            for (name, value) in &headers {
                if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
                    answer.headers_mut().insert(name, value.clone());
                }
            }
            answer
        }
        Err(_) => http::StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// `application/x-www-form-urlencoded` fields.
fn decode_form(body: &[u8]) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}
