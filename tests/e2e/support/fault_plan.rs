//! The faults [`super::api_proxy::ApiProxy`] injects between a client and the API server: rules a
//! test sets (a fault, the requests it hits, how often), and the answers they make.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What happens to a request a rule hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The request is forwarded this much later.
    Latency(Duration),
    /// Refused, not forwarded, with this code and a Kubernetes `Status` body: 409 Conflict,
    /// 429 TooManyRequests (with `Retry-After`), 500 InternalError, 503 ServiceUnavailable.
    Status(u16),
    /// The connection is reset (TCP RST) with no answer; not forwarded.
    Reset,
    /// Every watch open while the rule is in force (whenever it began) is closed, cleanly and
    /// mid-stream, each time this much has passed: the client must watch again. Acts on streams,
    /// not on requests, so `every` does not apply.
    DropWatch(Duration),
}

impl Fault {
    /// How the proxy counts it: `latency`, `409`, `reset`, `drop-watch`.
    pub fn label(&self) -> String {
        match self {
            Fault::Latency(_) => "latency".into(),
            Fault::Status(code) => code.to_string(),
            Fault::Reset => "reset".into(),
            Fault::DropWatch(_) => "drop-watch".into(),
        }
    }
}

/// Which requests a rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requests {
    All,
    /// GETs that are not watches.
    Reads,
    /// Everything but GET.
    Writes,
    /// Writes of a `status` subresource.
    StatusWrites,
    Watches,
}

/// A fault on every `every`-th request of a kind.
#[derive(Clone, Debug)]
pub struct Rule {
    pub fault: Fault,
    pub requests: Requests,
    pub every: u64,
    seen: u64,
}

impl Rule {
    /// The fault on every request of the kind.
    pub fn on(requests: Requests, fault: Fault) -> Rule {
        Rule {
            fault,
            requests,
            every: 1,
            seen: 0,
        }
    }

    /// Only on every `n`-th request it looks at (1 = every one).
    pub fn every(self, n: u64) -> Rule {
        Rule {
            every: n.max(1),
            ..self
        }
    }

    fn looks_at(&self, method: &Method, path: &str) -> bool {
        let watch = is_watch(path);
        match self.requests {
            Requests::All => true,
            Requests::Reads => method == Method::GET && !watch,
            Requests::Writes => method != Method::GET,
            Requests::StatusWrites => {
                method != Method::GET
                    && path
                        .split('?')
                        .next()
                        .is_some_and(|p| p.ends_with("/status"))
            }
            Requests::Watches => watch,
        }
    }
}

/// The rules in force and what they did; the first rule that fires decides a request.
#[derive(Debug, Default)]
pub struct Schedule {
    rules: Vec<Rule>,
    injected: BTreeMap<String, u64>,
}

impl Schedule {
    pub fn set(&mut self, rules: Vec<Rule>) {
        self.rules = rules;
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The fault for a request (`path` with its query), if a rule fires.
    pub fn decide(&mut self, method: &Method, path: &str) -> Option<Fault> {
        let mut fired = None;
        for rule in &mut self.rules {
            if matches!(rule.fault, Fault::DropWatch(_)) || !rule.looks_at(method, path) {
                continue;
            }
            rule.seen += 1;
            if fired.is_none() && rule.seen % rule.every == 0 {
                fired = Some(rule.fault);
            }
        }
        if let Some(fault) = fired {
            self.count(fault);
        }
        fired
    }

    /// How often open watches are cut, while a [`Fault::DropWatch`] rule is in force.
    pub fn watch_cuts(&self) -> Option<Duration> {
        self.rules.iter().find_map(|rule| match rule.fault {
            Fault::DropWatch(every) => Some(every),
            _ => None,
        })
    }

    /// Counts a fault injected.
    pub fn count(&mut self, fault: Fault) {
        *self.injected.entry(fault.label()).or_default() += 1;
    }

    /// Faults injected so far, by [`Fault::label`].
    pub fn injected(&self) -> BTreeMap<String, u64> {
        self.injected.clone()
    }
}

/// Whether the request (path and query) is a watch.
pub fn is_watch(path: &str) -> bool {
    path.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    })
}

/// Seconds a 429 asks the client to wait.
const RETRY_AFTER_SECONDS: u64 = 1;

/// The answer of an API server refusing with `code`, as a real one writes it.
pub fn status_answer(code: u16) -> Response {
    let (reason, message) = match code {
        409 => (
            "Conflict",
            "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
        ),
        429 => (
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        _ => (
            "InternalError",
            "Internal error occurred: injected by the test proxy",
        ),
    };
    let mut status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    let mut response = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json");
    if code == 429 {
        status["details"] = serde_json::json!({ "retryAfterSeconds": RETRY_AFTER_SECONDS });
        response = response.header(header::RETRY_AFTER, RETRY_AFTER_SECONDS.to_string());
    }
    response
        .body(axum::body::Body::from(status.to_string()))
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fire_on_every_nth_request_of_their_kind() {
        let mut schedule = Schedule::default();
        schedule.set(vec![
            Rule::on(Requests::StatusWrites, Fault::Status(503)),
            Rule::on(Requests::Writes, Fault::Status(500)).every(2),
            Rule::on(Requests::Watches, Fault::DropWatch(Duration::from_secs(1))),
        ]);
        let write = |s: &mut Schedule| s.decide(&Method::PATCH, "/api/v1/namespaces/a/secrets/b");
        let status = |s: &mut Schedule| {
            s.decide(
                &Method::PATCH,
                "/apis/sigil.dev/v1alpha1/namespaces/a/syncs/b/status?fieldManager=sigil",
            )
        };
        assert_eq!(write(&mut schedule), None);
        assert_eq!(write(&mut schedule), Some(Fault::Status(500)));
        assert_eq!(status(&mut schedule), Some(Fault::Status(503)));
        assert_eq!(
            write(&mut schedule),
            Some(Fault::Status(500)),
            "the status write counted as the third write"
        );
        assert_eq!(schedule.decide(&Method::GET, "/api/v1/secrets"), None);
        assert_eq!(
            schedule.decide(&Method::GET, "/api/v1/secrets?watch=true&resourceVersion=3"),
            None,
            "watches are cut on a clock, not refused"
        );
        assert_eq!(schedule.watch_cuts(), Some(Duration::from_secs(1)));
        assert_eq!(
            schedule.injected(),
            BTreeMap::from([("500".into(), 2), ("503".into(), 1)])
        );
        schedule.clear();
        assert_eq!(write(&mut schedule), None);
        assert_eq!(schedule.watch_cuts(), None);
    }
}
