//! Smart HTTP for Git: `git http-backend` run as CGI behind a small axum server on a loopback
//! port, over TLS with a test CA, with HTTP basic auth (or `Authorization: Bearer PASSWORD`). Counts the pack requests (`command=fetch`) it served.
//! It can be stopped (connections refused) and started again on the same address.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::io::AsyncWriteExt;

struct Shared {
    root: PathBuf,
    username: String,
    password: String,
    pack_requests: AtomicUsize,
    unauthorized: AtomicUsize,
}

/// A running server; stops when dropped.
pub struct GitHttpServer {
    pub addr: SocketAddr,
    /// PEM of the CA that signed the server's certificate (for a GitSource Secret's `ca.crt`).
    pub ca_pem: String,
    shared: Arc<Shared>,
    tls: axum_server::tls_rustls::RustlsConfig,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

/// A CA and a certificate for 127.0.0.1 it signed: (CA PEM, server cert PEM, server key PEM).
fn test_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

impl GitHttpServer {
    /// Serves the repositories under `root` (`https://ADDR/NAME` for `root/NAME`).
    pub async fn start(root: &Path, username: &str, password: &str) -> Self {
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            username: username.to_string(),
            password: password.to_string(),
            pack_requests: AtomicUsize::new(0),
            unauthorized: AtomicUsize::new(0),
        });
        sigil::tls::install_crypto_provider();
        let (ca_pem, cert_pem, key_pem) = test_pki();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert_pem.into_bytes(),
            key_pem.into_bytes(),
        )
        .await
        .expect("TLS config");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("address");
        let (handle, task) = serve(listener, &tls, &shared);
        Self {
            addr,
            ca_pem,
            shared,
            tls,
            handle,
            task,
        }
    }

    /// Stops serving: open connections are closed, new ones refused.
    pub fn stop(&mut self) {
        self.handle.shutdown();
        self.task.abort();
    }

    /// Serves again on the same address (after [`GitHttpServer::stop`]).
    pub async fn restart(&mut self) {
        let addr = self.addr;
        let listener = kube_devserver::testing::poll(
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async move { std::net::TcpListener::bind(addr).ok() },
        )
        .await
        .unwrap_or_else(|| panic!("{addr} stays taken"));
        (self.handle, self.task) = serve(listener, &self.tls, &self.shared);
    }

    pub fn url(&self, repo: &str) -> String {
        format!("https://{}/{repo}", self.addr)
    }

    /// Upload-pack requests that asked for a pack.
    pub fn pack_requests(&self) -> usize {
        self.shared.pack_requests.load(Ordering::SeqCst)
    }

    /// Requests answered with 401.
    pub fn unauthorized(&self) -> usize {
        self.shared.unauthorized.load(Ordering::SeqCst)
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    listener: std::net::TcpListener,
    tls: &axum_server::tls_rustls::RustlsConfig,
    shared: &Arc<Shared>,
) -> (axum_server::Handle<SocketAddr>, tokio::task::JoinHandle<()>) {
    listener.set_nonblocking(true).expect("non-blocking");
    let app = axum::Router::new().fallback(cgi).with_state(shared.clone());
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, tls.clone())
        .expect("TLS server")
        .handle(handle.clone());
    let task = tokio::spawn(async move {
        let _ = server.serve(app.into_make_service()).await;
    });
    (handle, task)
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let expected = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", shared.username, shared.password));
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v == format!("Basic {expected}") || v == format!("Bearer {}", shared.password)
        })
}

async fn cgi(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&shared, &headers) {
        shared.unauthorized.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"git\"")],
            "authentication required",
        )
            .into_response();
    }
    if method == Method::POST && body.windows(13).any(|w| w == b"command=fetch") {
        shared.pack_requests.fetch_add(1, Ordering::SeqCst);
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut child = tokio::process::Command::new(super::tools::tool("git"))
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", &shared.username)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("git http-backend starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let output = child.wait_with_output().await.expect("http-backend output");
    let _ = writer.await;
    cgi_response(&output.stdout)
}

/// Turns CGI output (headers, blank line, body) into a response.
fn cgi_response(out: &[u8]) -> Response {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)));
    let Some((end, sep)) = split else {
        return (StatusCode::BAD_GATEWAY, "bad CGI output").into_response();
    };
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let mut response = Response::builder().status(StatusCode::OK);
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            response = response.status(code);
        } else {
            response = response.header(name.trim(), value);
        }
    }
    response
        .body(axum::body::Body::from(out[end + sep..].to_vec()))
        .unwrap_or_else(|_| (StatusCode::BAD_GATEWAY, "bad CGI headers").into_response())
}
