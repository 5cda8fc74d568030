//! A mocked Kubernetes API for reconcile tests, in kube-rs' `tower-test` pattern: the test awaits
//! each request the code under test makes, asserts its method, path, query and body, and answers
//! it with a canned response. [`ApiServer::finish`] fails on any request nobody expected, so a
//! test states the exact requests of a reconcile; no API server (nor its emulator) takes part.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::Value;
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle, SendResponse};

use super::{Context, Options};

/// Longest a test waits for the next request (or for the code under test to finish).
const WAIT: Duration = Duration::from_secs(30);

/// The test's side of the mocked API.
pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// The code under test, running, and the API it talks to.
pub type Started<T> = (ApiServer, JoinHandle<T>);

/// Runs `code` on a controller [`Context`] (default options) whose client sends every request
/// to the returned [`ApiServer`].
pub fn spawn<F>(code: impl FnOnce(Arc<Context>) -> F) -> Started<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let ctx = Arc::new(Context::new(client, Options::default()));
    (ApiServer { handle }, tokio::spawn(code(ctx)))
}

/// One request, waiting for its answer.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    /// The JSON body (`Null` without one).
    pub body: Value,
    respond: SendResponse<Response<Body>>,
}

impl ApiServer {
    /// The next request the code under test makes.
    pub async fn next(&mut self) -> Call {
        let (request, respond) = tokio::time::timeout(WAIT, self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request within {WAIT:?}"))
            .expect("the client is gone");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("a request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{} {}: body is not JSON: {e}", parts.method, parts.uri))
        };
        let query = axum::extract::Query::<BTreeMap<String, String>>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default();
        Call {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query,
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body,
            respond,
        }
    }

    /// The next request, which must be `method path`.
    pub async fn expect(&mut self, method: Method, path: &str) -> Call {
        let call = self.next().await;
        assert_eq!(
            (&call.method, call.path.as_str()),
            (&method, path),
            "unexpected request (query {:?}, body {})",
            call.query,
            call.body
        );
        call
    }

    /// The next request, which must be a PATCH of `path` with body type `content_type`.
    async fn expect_patch(&mut self, path: &str, content_type: &str) -> Call {
        let call = self.expect(Method::PATCH, path).await;
        assert_eq!(call.content_type.as_deref(), Some(content_type), "{path}");
        call
    }

    /// The next request, which must be a server-side apply by field manager `sigil` that forces
    /// conflicts, to `path`.
    pub async fn expect_apply(&mut self, path: &str) -> Call {
        let call = self
            .expect_patch(path, "application/apply-patch+yaml")
            .await;
        call.assert_query("fieldManager", crate::api::FIELD_MANAGER);
        call.assert_query("force", "true");
        call
    }

    /// The next request, which must be a JSON merge patch of `path`.
    pub async fn expect_merge_patch(&mut self, path: &str) -> Call {
        self.expect_patch(path, "application/merge-patch+json")
            .await
    }

    /// The next request, which must create an Event in `namespace`; answered with the Event.
    /// Returns the Event as sent.
    pub async fn expect_event(&mut self, namespace: &str) -> Value {
        let call = self
            .expect(
                Method::POST,
                &format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events"),
            )
            .await;
        let event = call.body.clone();
        call.echo();
        event
    }

    /// Waits for `run` to end and returns its output; any request it makes meanwhile fails the
    /// test, as does one that is still queued when it ends.
    pub async fn finish<T>(&mut self, run: JoinHandle<T>) -> T {
        let mut run = std::pin::pin!(run);
        let ended = tokio::time::timeout(WAIT, async {
            tokio::select! {
                biased;
                request = self.handle.next_request() => match request {
                    Some((request, _)) => panic!(
                        "unexpected request {} {}",
                        request.method(),
                        request.uri()
                    ),
                    None => (&mut run).await,
                },
                ended = &mut run => ended,
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the code under test did not end within {WAIT:?}"));
        if let Some(Some((request, _))) = self.handle.next_request().now_or_never() {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
        ended.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

impl Call {
    /// Asserts one query parameter.
    pub fn assert_query(&self, key: &str, value: &str) -> &Self {
        assert_eq!(
            self.query.get(key).map(String::as_str),
            Some(value),
            "{} {}: query {key} (query {:?})",
            self.method,
            self.path,
            self.query
        );
        self
    }

    /// Answers with `status` and a JSON body.
    pub fn respond(self, status: StatusCode, body: &Value) {
        let bytes = serde_json::to_vec(body).expect("JSON");
        let response = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(bytes))
            .expect("a response");
        self.respond.send_response(response);
    }

    /// Answers 200 with `body`.
    pub fn ok(self, body: &Value) {
        self.respond(StatusCode::OK, body);
    }

    /// Answers 200 with the request's own body, as an API server returns a created or applied
    /// object (plus a resourceVersion).
    pub fn echo(self) {
        let mut body = self.body.clone();
        if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata
                .entry("resourceVersion")
                .or_insert_with(|| "1".into());
        }
        self.ok(&body);
    }

    /// Answers a merge patch with `object` patched by it, as the API server returns it.
    pub fn merged_into(self, object: &impl serde::Serialize) {
        let mut merged = serde_json::to_value(object).expect("JSON");
        json_patch::merge(&mut merged, &self.body);
        self.ok(&merged);
    }

    /// Answers with a `Status` failure, as the API server does.
    pub fn fail(self, status: StatusCode, reason: &str, message: &str) {
        let failure = kube::core::Status::failure(message, reason).with_code(status.as_u16());
        self.respond(status, &serde_json::to_value(failure).expect("a Status"));
    }

    /// Answers 404 NotFound.
    pub fn not_found(self) {
        let message = format!("{} not found", self.path);
        self.fail(StatusCode::NOT_FOUND, "NotFound", &message);
    }
}
