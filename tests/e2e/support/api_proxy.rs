//! A recording proxy in front of the embedded API server, one per client under test.
//!
//! Each controller process gets its own kubeconfig pointing at its own proxy (plain HTTP on
//! 127.0.0.1), and the proxy forwards every request to the `sigil dev` server over HTTPS, streaming
//! responses so watches work. It records method, path, status and time of each request, which lets
//! a test say exactly which process wrote what and when — the API server itself cannot tell two
//! clients with the same credentials apart.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query, e.g. `/apis/coordination.k8s.io/v1/namespaces/sigil-system/leases/x`.
    pub path: String,
    pub status: u16,
    /// When the upstream answered.
    pub at: Instant,
}

impl Recorded {
    /// A request that changed something: a successful POST, PUT, PATCH or DELETE.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
            && (200..300).contains(&self.status)
    }

    /// Whether the request touched the Lease `name`.
    pub fn is_lease(&self, name: &str) -> bool {
        let path = self.path.split('?').next().unwrap_or_default();
        path.contains("/apis/coordination.k8s.io/v1/")
            && (path.ends_with(&format!("/leases/{name}")) || path.ends_with("/leases"))
    }
}

/// A running proxy; stops when dropped.
pub struct ApiProxy {
    /// A kubeconfig whose server is this proxy.
    pub kubeconfig: PathBuf,
    log: Arc<Mutex<Vec<Recorded>>>,
    stalled: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// The longest a stalled request is held (so nothing hangs forever).
const STALL_LIMIT: Duration = Duration::from_secs(120);

impl ApiProxy {
    /// Starts a proxy for the server of `kubeconfig` and writes a kubeconfig for it into `dir`
    /// as `NAME.kubeconfig`.
    pub async fn start(kubeconfig: &Path, dir: &Path, name: &str) -> ApiProxy {
        let mut config =
            kube::config::Kubeconfig::read_from(kubeconfig).expect("read the dev kubeconfig");
        let cluster = config
            .clusters
            .first_mut()
            .and_then(|named| named.cluster.as_mut())
            .expect("kubeconfig has a cluster");
        let upstream = cluster.server.clone().expect("cluster server");
        let ca = cluster
            .certificate_authority_data
            .clone()
            .expect("certificate-authority-data");
        let ca = base64::engine::general_purpose::STANDARD
            .decode(ca.trim())
            .expect("base64 CA");
        let http = crate::support::http::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("PEM CA"))
            .build()
            .expect("HTTPS client");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stalled = Arc::new(AtomicBool::new(false));
        let state = (
            http,
            upstream.trim_end_matches('/').to_string(),
            log.clone(),
            stalled.clone(),
        );
        let app = axum::Router::new().fallback(move |request: Request| {
            let (http, upstream, log, stalled) = state.clone();
            async move {
                // A network partition: new requests get no answer until it heals.
                let since = Instant::now();
                while stalled.load(Ordering::Relaxed) && since.elapsed() < STALL_LIMIT {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                forward(&http, &upstream, &log, request).await
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        cluster.server = Some(format!("http://{addr}"));
        cluster.certificate_authority_data = None;
        cluster.certificate_authority = None;
        let path = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(
            &path,
            sigil::yaml::to_string(&config).expect("kubeconfig YAML"),
        )
        .expect("write the proxy kubeconfig");
        ApiProxy {
            kubeconfig: path,
            log,
            stalled,
            task,
        }
    }

    /// Holds every new request unanswered (`true`) until called with `false`: the client sees an
    /// API server that hangs, as behind a network partition.
    pub fn stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::Relaxed);
    }

    /// Every request so far, in the order they were answered.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("proxy log").clone()
    }

    /// The successful writes so far.
    pub fn writes(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_write)
            .collect()
    }

    /// The successful writes answered after `since`.
    pub fn writes_since(&self, since: Instant) -> Vec<Recorded> {
        self.writes()
            .into_iter()
            .filter(|r| r.at >= since)
            .collect()
    }
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const HOP_BY_HOP: [HeaderName; 4] = [
    header::HOST,
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
];

async fn forward(
    http: &reqwest::Client,
    upstream: &str,
    log: &Mutex<Vec<Recorded>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return (StatusCode::BAD_REQUEST, "request body too large").into_response();
    };
    let mut outgoing = http.request(method.clone(), format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = match outgoing.body(body).send().await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    log.lock().expect("proxy log").push(Recorded {
        method: method.to_string(),
        path,
        status: status.as_u16(),
        at: Instant::now(),
    });
    let mut response = Response::builder().status(status);
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(name) {
            response = response.header(name, value);
        }
    }
    // Streams the answer chunk by chunk (watches never end); stops after the first error.
    let chunks = futures::stream::unfold(Some(answer), |answer| async move {
        let mut answer = answer?;
        match answer.chunk().await {
            Ok(Some(chunk)) => Some((Ok::<_, reqwest::Error>(chunk), Some(answer))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    response
        .body(Body::from_stream(chunks))
        .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}
