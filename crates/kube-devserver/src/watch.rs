//! watch: a newline-delimited JSON stream of events, started from a
//! resourceVersion (replayed from the bounded history) or with synthetic ADDED
//! events for the current state; bookmarks, `sendInitialEvents` with the
//! `k8s.io/initial-events-end` bookmark, `timeoutSeconds`, and 410 `Expired` as an
//! ERROR event when the resourceVersion is older than the history kept.
//!
//! Fan-out never blocks writers: each watcher reads a bounded broadcast channel,
//! and a watcher that falls behind (or whose client stops reading) is closed,
//! as the real server closes slow watchers; the client re-watches or re-lists.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::{RwLock, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::convert::from_storage;
use super::read::{Filter, parse_rv};
use super::registry::ResourceType;
use super::request::Query;
use super::state::State;
use super::status::{ApiError, FieldError};
use super::store::{Change, EventType};
use super::table::{self, Include, Output};

/// A parsed watch request.
pub struct WatchRequest {
    pub rt: Arc<ResourceType>,
    pub namespace: Option<String>,
    pub filter: Filter,
    pub resource_version: Option<String>,
    pub send_initial: Option<bool>,
    pub bookmarks: bool,
    pub timeout: Duration,
    pub output: Output,
    pub include: Include,
}

fn invalid(errs: Vec<FieldError>) -> ApiError {
    ApiError::invalid("meta.k8s.io", "ListOptions", "", errs)
}

impl WatchRequest {
    pub fn from_query(
        q: &Query,
        rt: Arc<ResourceType>,
        namespace: Option<String>,
        filter: Filter,
        output: Output,
    ) -> Result<Self, ApiError> {
        let send_initial = q.bool("sendInitialEvents")?;
        let bookmarks = q.bool("allowWatchBookmarks")?.unwrap_or(false);
        let rv_match = q.value("resourceVersionMatch");
        if send_initial.is_some() {
            if rv_match != Some("NotOlderThan") {
                return Err(invalid(vec![FieldError::forbidden(
                    "sendInitialEvents",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                )]));
            }
            if send_initial == Some(true) && !bookmarks {
                return Err(invalid(vec![FieldError::required(
                    "allowWatchBookmarks",
                    "sendInitialEvents requires setting allowWatchBookmarks to true",
                )]));
            }
        } else if rv_match.is_some() {
            return Err(invalid(vec![FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            )]));
        }
        let timeout = match q.int("timeoutSeconds")? {
            Some(t) if t > 0 => Duration::from_secs(t as u64),
            _ => Duration::from_secs(1800 + rand::thread_rng().gen_range(0..1800)),
        };
        Ok(Self {
            rt,
            namespace,
            filter,
            resource_version: q.value("resourceVersion").map(String::from),
            send_initial,
            bookmarks,
            timeout,
            output,
            include: Include::parse(q.value("includeObject")),
        })
    }
}

/// Everything the stream needs, captured under the lock.
struct Start {
    initial: Vec<Value>,
    replay: Vec<Arc<Change>>,
    expired: Option<String>,
    start_rv: u64,
    rx: broadcast::Receiver<Arc<Change>>,
}

fn start(st: &State, req: &WatchRequest) -> Result<Start, ApiError> {
    let rx = st.store.subscribe();
    let start_rv = st.store.current_rv();
    let rv = req.resource_version.as_deref().filter(|v| !v.is_empty());
    let initial_wanted = match req.send_initial {
        Some(flag) => flag,
        None => rv.is_none_or(|v| v == "0"),
    };
    let mut out = Start {
        initial: Vec::new(),
        replay: Vec::new(),
        expired: None,
        start_rv,
        rx,
    };
    if initial_wanted {
        if let Some(v) = rv.filter(|v| *v != "0") {
            parse_rv(v)?;
        }
        let objects = st.store.list(&req.rt.storage, req.namespace.as_deref());
        out.initial = objects
            .iter()
            .filter(|o| req.filter.matches_stored(&req.rt, o))
            .map(|o| from_storage(&req.rt, o))
            .collect();
    } else if let Some(v) = rv.filter(|v| *v != "0") {
        let from = parse_rv(v)?;
        match st.store.changes_since(from) {
            Ok(changes) => out.replay = changes,
            Err(c) => {
                out.expired = Some(format!("too old resource version: {from} ({})", c.oldest))
            }
        }
    }
    Ok(out)
}

/// The event a change means for this watcher (label/field selector transitions included).
fn event_for(req: &WatchRequest, change: &Change) -> Option<(&'static str, Value)> {
    if change.storage != req.rt.storage {
        return None;
    }
    if req
        .namespace
        .as_deref()
        .is_some_and(|ns| ns != change.namespace)
    {
        return None;
    }
    let new = from_storage(&req.rt, &change.object);
    let old_matches = || {
        change
            .old
            .as_ref()
            .is_some_and(|o| req.filter.matches_stored(&req.rt, o))
    };
    match change.kind {
        EventType::Added => req.filter.matches(&new).then_some(("ADDED", new)),
        EventType::Modified => match (old_matches(), req.filter.matches(&new)) {
            (true, true) => Some(("MODIFIED", new)),
            (false, true) => Some(("ADDED", new)),
            (true, false) => Some(("DELETED", new)),
            (false, false) => None,
        },
        EventType::Deleted => old_matches().then_some(("DELETED", new)),
    }
}

fn shape(req: &WatchRequest, obj: Value) -> Value {
    match req.output {
        Output::Object => obj,
        Output::Metadata(v) => table::partial_metadata(&obj, v),
        Output::Table(v) => table::table(&req.rt, &[obj], req.include, v, json!({})),
    }
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

fn bookmark(req: &WatchRequest, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let object = match req.output {
        Output::Metadata(v) => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": format!("meta.k8s.io/{v}"), "metadata": meta})
        }
        _ => json!({"kind": req.rt.kind, "apiVersion": req.rt.api_version(), "metadata": meta}),
    };
    line("BOOKMARK", object)
}

/// Sends one line; false when the client is gone or too slow to take it.
async fn send(tx: &mpsc::Sender<Bytes>, bytes: Bytes) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(10), tx.send(bytes)).await,
        Ok(Ok(()))
    )
}

async fn stream(
    req: WatchRequest,
    mut s: Start,
    tx: mpsc::Sender<Bytes>,
    shutdown: CancellationToken,
    bookmark_every: Duration,
) {
    let deadline = tokio::time::Instant::now() + req.timeout;
    if let Some(message) = s.expired {
        let status = ApiError::expired(message).to_status();
        let _ = send(&tx, line("ERROR", status)).await;
        return;
    }
    for obj in std::mem::take(&mut s.initial) {
        if !send(&tx, line("ADDED", shape(&req, obj))).await {
            return;
        }
    }
    if req.send_initial == Some(true) && !send(&tx, bookmark(&req, s.start_rv, true)).await {
        return;
    }
    let mut last_rv = s.start_rv;
    for change in std::mem::take(&mut s.replay) {
        if let Some((kind, obj)) = event_for(&req, &change)
            && !send(&tx, line(kind, shape(&req, obj))).await
        {
            return;
        }
    }
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + bookmark_every, bookmark_every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
            _ = tokio::time::sleep_until(deadline) => return,
            _ = ticker.tick(), if req.bookmarks => {
                if !send(&tx, bookmark(&req, last_rv, false)).await {
                    return;
                }
            }
            received = s.rx.recv() => match received {
                Ok(change) => {
                    last_rv = change.rv;
                    if let Some((kind, obj)) = event_for(&req, &change)
                        && !send(&tx, line(kind, shape(&req, obj))).await
                    {
                        return;
                    }
                }
                // Fell behind the broadcast window or the server is stopping: close the watch.
                Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Starts a watch and answers with its stream.
pub async fn serve(
    state: &RwLock<State>,
    req: WatchRequest,
    shutdown: CancellationToken,
    bookmark_every: Duration,
) -> Result<Response, ApiError> {
    let start = {
        let st = state.read().await;
        start(&st, &req)?
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(stream(req, start, tx, shutdown, bookmark_every));
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    }));
    Ok((
        http::StatusCode::OK,
        [
            (http::header::CONTENT_TYPE, "application/json"),
            (http::header::CACHE_CONTROL, "no-cache, private"),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::Filter;
    use crate::write::{WriteOptions, create};

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_closed_and_writers_never_wait() {
        let mut st = State::new(100, 16);
        let o = WriteOptions::new("t");
        let ns = st.registry.lookup("", "v1", "namespaces").expect("served");
        create(&mut st, &ns, "", json!({"metadata": {"name": "a"}}), &o).expect("ns");
        let cm = st.registry.lookup("", "v1", "configmaps").expect("served");
        let req = WatchRequest {
            rt: cm.clone(),
            namespace: None,
            filter: Filter::default(),
            resource_version: Some(st.store.current_rv().to_string()),
            send_initial: None,
            bookmarks: false,
            timeout: Duration::from_secs(60),
            output: Output::Object,
            include: Include::Metadata,
        };
        let start = start(&st, &req).expect("watch starts");
        // 200 writes against a 16-event broadcast window while nobody reads: none blocks.
        for i in 0..200 {
            create(
                &mut st,
                &cm,
                "a",
                json!({"metadata": {"name": format!("c{i}")}}),
                &o,
            )
            .expect("write");
        }
        let (tx, mut rx) = mpsc::channel(8);
        let task = tokio::spawn(stream(
            req,
            start,
            tx,
            CancellationToken::new(),
            Duration::from_secs(60),
        ));
        let mut received = 0;
        while tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the stream ends instead of hanging")
            .is_some()
        {
            received += 1;
        }
        assert!(
            received < 200,
            "the lagging watcher was closed, not fed every event ({received})"
        );
        task.await.expect("stream task");
    }
}
