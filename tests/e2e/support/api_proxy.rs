//! A recording, fault-injecting proxy in front of the embedded API server, one per client under
//! test.
//!
//! Each controller process gets its own kubeconfig pointing at its own proxy (plain HTTP on
//! 127.0.0.1), and the proxy forwards every request to the `sigil dev` server over HTTPS, streaming
//! responses so watches work. It records method, path, status and time of each request, which lets
//! a test say exactly which process wrote what and when — the API server itself cannot tell two
//! clients with the same credentials apart — and every Secret a write answered with. On a
//! [`Schedule`] the test sets ([`ApiProxy::inject`]) it delays, refuses, resets connections or cuts
//! watches short (see [`super::fault_plan`]).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use tokio_util::sync::CancellationToken;

use super::fault_plan::{Fault, Rule, Schedule, is_watch, status_answer};

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

/// A running proxy; stops (and resets its connections) when dropped.
pub struct ApiProxy {
    /// A kubeconfig whose server is this proxy.
    pub kubeconfig: PathBuf,
    shared: Arc<Shared>,
    stop: CancellationToken,
    /// Cuts the open watches on the clock of a [`Fault::DropWatch`] rule.
    cutter: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What the connections of one proxy share.
struct Shared {
    http: reqwest::Client,
    upstream: String,
    log: Mutex<Vec<Recorded>>,
    stalled: AtomicBool,
    schedule: Mutex<Schedule>,
    /// Every Secret a successful create, update or patch answered with.
    secrets: Mutex<Vec<Secret>>,
    /// Bumped to close every open watch.
    cuts: tokio::sync::watch::Sender<u64>,
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
        let shared = Arc::new(Shared {
            http,
            upstream: upstream.trim_end_matches('/').to_string(),
            log: Mutex::new(Vec::new()),
            stalled: AtomicBool::new(false),
            schedule: Mutex::new(Schedule::default()),
            secrets: Mutex::new(Vec::new()),
            cuts: tokio::sync::watch::Sender::new(0),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, shared.clone(), stop.clone()));

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
            shared,
            stop,
            cutter: Mutex::new(None),
        }
    }

    /// Holds every new request unanswered (`true`) until called with `false`: the client sees an
    /// API server that hangs, as behind a network partition.
    pub fn stall(&self, stalled: bool) {
        self.shared.stalled.store(stalled, Ordering::Relaxed);
    }

    /// Injects faults by these rules from now on (replacing earlier ones).
    pub fn inject(&self, rules: Vec<Rule>) {
        let mut schedule = self.shared.schedule.lock().expect("schedule");
        schedule.set(rules);
        let mut cutter = self.cutter.lock().expect("cutter");
        if let Some(cutter) = cutter.take() {
            cutter.abort();
        }
        if let Some(every) = schedule.watch_cuts() {
            let shared = self.shared.clone();
            *cutter = Some(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    shared.cuts.send_modify(|cuts| *cuts += 1);
                }
            }));
        }
    }

    /// Stops injecting faults.
    pub fn heal(&self) {
        self.inject(Vec::new());
    }

    /// Faults injected so far, by kind (`latency`, `409`, `reset`, `drop-watch` ...).
    pub fn injected(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared.schedule.lock().expect("schedule").injected()
    }

    /// Every request so far, in the order they were answered (injected refusals included).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().expect("proxy log").clone()
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

    /// Every Secret a successful write through this proxy answered with, in order.
    pub fn written_secrets(&self) -> Vec<Secret> {
        self.shared.secrets.lock().expect("secrets").clone()
    }
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        self.heal();
        self.stop.cancel();
    }
}

/// Serves each connection with hyper (not `axum::serve`) so that a [`Fault::Reset`] can drop
/// that very connection.
async fn accept(listener: tokio::net::TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        tokio::spawn(serve_connection(stream, shared.clone(), stop.child_token()));
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    reset: CancellationToken,
) {
    // A second handle on the socket, to set SO_LINGER=0 before it closes: a close then sends RST.
    let Ok(stream) = stream.into_std() else {
        return;
    };
    let Ok(handle) = stream.try_clone() else {
        return;
    };
    let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
        return;
    };
    let service = {
        let reset = reset.clone();
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let shared = shared.clone();
            let reset = reset.clone();
            async move { Ok::<_, Infallible>(answer(&shared, &reset, request.map(Body::new)).await) }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        () = reset.cancelled() => {
            let _ = socket2::SockRef::from(&handle).set_linger(Some(Duration::ZERO));
        }
    }
}

async fn answer(shared: &Arc<Shared>, reset: &CancellationToken, request: Request) -> Response {
    // A network partition: new requests get no answer until it heals.
    let since = Instant::now();
    while shared.stalled.load(Ordering::Relaxed) && since.elapsed() < STALL_LIMIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let path = path_of(&request);
    let fault = shared
        .schedule
        .lock()
        .expect("schedule")
        .decide(request.method(), &path);
    match fault {
        None | Some(Fault::DropWatch(_)) => forward(shared, request).await,
        Some(Fault::Latency(delay)) => {
            tokio::time::sleep(delay).await;
            forward(shared, request).await
        }
        Some(Fault::Status(code)) => {
            record(shared, request.method(), path, code);
            status_answer(code)
        }
        Some(Fault::Reset) => {
            reset.cancel();
            std::future::pending().await
        }
    }
}

fn path_of(request: &Request) -> String {
    request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string())
}

fn record(shared: &Shared, method: &Method, path: String, status: u16) {
    shared.log.lock().expect("proxy log").push(Recorded {
        method: method.to_string(),
        path,
        status,
        at: Instant::now(),
    });
}

/// A successful create, update or patch of a Secret, whose answer is the stored Secret.
fn writes_a_secret(method: &Method, path: &str, status: StatusCode) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let secrets = path.starts_with("/api/v1/namespaces/")
        && path.split('/').nth(5) == Some("secrets")
        && path.split('/').count() == 7;
    secrets && matches!(*method, Method::POST | Method::PUT | Method::PATCH) && status.is_success()
}

const HOP_BY_HOP: [HeaderName; 4] = [
    header::HOST,
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
];

/// Forwards the request and streams the answer back; a watch's stream ends early when the watches
/// are cut.
async fn forward(shared: &Arc<Shared>, request: Request) -> Response {
    let path = path_of(&request);
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return (StatusCode::BAD_REQUEST, "request body too large").into_response();
    };
    let mut outgoing = shared
        .http
        .request(method.clone(), format!("{}{path}", shared.upstream));
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
    let secret_written = writes_a_secret(&method, &path, status);
    let watch = is_watch(&path);
    record(shared, &method, path, status.as_u16());
    let mut response = Response::builder().status(status);
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(name) {
            response = response.header(name, value);
        }
    }
    if secret_written && !watch {
        let Ok(bytes) = answer.bytes().await else {
            return (StatusCode::BAD_GATEWAY, "answer cut").into_response();
        };
        if let Ok(secret) = serde_json::from_slice::<Secret>(&bytes) {
            shared.secrets.lock().expect("secrets").push(secret);
        }
        return response
            .body(Body::from(bytes))
            .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response());
    }
    // Streams the answer chunk by chunk (watches never end); stops after the first error, or
    // cleanly when watches are cut (as when the server closes a watch).
    let mut cuts = shared.cuts.subscribe();
    cuts.mark_unchanged();
    let state = (answer, cuts, shared.clone(), watch);
    let chunks = futures::stream::unfold(Some(state), |state| async move {
        let (mut answer, mut cuts, shared, watch) = state?;
        let next = tokio::select! {
            next = answer.chunk() => next,
            Ok(()) = cuts.changed(), if watch => {
                shared.schedule.lock().expect("schedule").count(Fault::DropWatch(Duration::ZERO));
                return None;
            }
        };
        match next {
            Ok(Some(chunk)) => Some((
                Ok::<_, reqwest::Error>(chunk),
                Some((answer, cuts, shared, watch)),
            )),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    response
        .body(Body::from_stream(chunks))
        .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}
