//! list: selectors, resourceVersion semantics, and limit/continue paging served
//! from a consistent snapshot (rebuilt from the change history).

use std::ops::Bound;

use base64::Engine;
use serde_json::{Value, json};

use super::convert::{self, from_storage};
use super::object;
use super::registry::ResourceType;
use super::request::Query;
use super::selector::{FieldSelector, LabelSelector};
use super::state::State;
use super::status::{ApiError, FieldError};

/// The filters a list or watch carries.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn from_query(q: &Query, rt: &ResourceType) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let extra = rt.extra_field_labels();
        for r in &fields.0 {
            let known = r.field == "metadata.name"
                || (r.field == "metadata.namespace" && rt.namespaced)
                || extra.contains(&r.field);
            if !known {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {}",
                    r.field
                )));
            }
        }
        Ok(Self { labels, fields })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Whether a stored object passes, as the client of `rt` sees it.
    pub fn matches_stored(&self, rt: &ResourceType, stored: &Value) -> bool {
        // Only a conversion that renames fields can change what a selector reads.
        self.is_empty()
            || if convert::renames_fields(rt) {
                self.matches(&from_storage(rt, stored))
            } else {
                self.matches(stored)
            }
    }

    /// Whether an object (in the client's version) passes.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(object::labels(obj))
            && self
                .fields
                .matches(|f| object::get_path(obj, f).map(object::field_string))
    }
}

/// List parameters.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub filter: Filter,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub rv_match: Option<String>,
}

fn list_options_invalid(errs: Vec<FieldError>) -> ApiError {
    ApiError::invalid("meta.k8s.io", "ListOptions", "", errs)
}

impl ListQuery {
    pub fn from_query(q: &Query, rt: &ResourceType) -> Result<Self, ApiError> {
        let limit = q.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
        let continue_token = q.value("continue").map(String::from);
        let resource_version = q.value("resourceVersion").map(String::from);
        let rv_match = q.value("resourceVersionMatch").map(String::from);
        if let Some(m) = &rv_match {
            if m != "Exact" && m != "NotOlderThan" {
                return Err(list_options_invalid(vec![FieldError::not_supported(
                    "resourceVersionMatch",
                    m.as_str(),
                    &["Exact", "NotOlderThan"],
                )]));
            }
            if resource_version.is_none() {
                return Err(list_options_invalid(vec![FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                )]));
            }
            if m == "Exact" && resource_version.as_deref() == Some("0") {
                return Err(list_options_invalid(vec![FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                )]));
            }
        }
        if continue_token.is_some() && resource_version.as_deref().is_some_and(|v| v != "0") {
            return Err(list_options_invalid(vec![FieldError::forbidden(
                "resourceVersion",
                "specifying resource version is not allowed when using continue",
            )]));
        }
        Ok(Self {
            filter: Filter::from_query(q, rt)?,
            limit,
            continue_token,
            resource_version,
            rv_match,
        })
    }
}

/// A page of a list.
pub struct ListPage {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

impl ListPage {
    pub fn metadata(&self) -> Value {
        let mut m = json!({"resourceVersion": self.resource_version.to_string()});
        if let Some(c) = &self.continue_token {
            m["continue"] = json!(c);
        }
        if let Some(r) = self.remaining {
            m["remainingItemCount"] = json!(r);
        }
        m
    }
}

fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": [ns, name]});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String, String), ApiError> {
    let bad = || {
        ApiError::bad_request("continue key is not valid: the continue token could not be decoded")
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = v["rv"].as_u64().ok_or_else(bad)?;
    let ns = v["start"][0].as_str().ok_or_else(bad)?.to_string();
    let name = v["start"][1].as_str().ok_or_else(bad)?.to_string();
    Ok((rv, ns, name))
}

pub fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse::<u64>().map_err(|_| {
        ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![FieldError::invalid(
                "resourceVersion",
                rv,
                "invalid resource version",
            )],
        )
    })
}

fn too_large(rv: u64, current: u64) -> ApiError {
    let mut e = ApiError::new(
        504,
        "Timeout",
        format!("Too large resource version: {rv}, current: {current}"),
    );
    e.details = Some(
        json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
    );
    e
}

/// Lists a resource (in `namespace`, or everywhere).
pub fn list(
    st: &State,
    rt: &ResourceType,
    namespace: Option<&str>,
    q: &ListQuery,
) -> Result<ListPage, ApiError> {
    let current = st.store.current_rv();
    let mut start_after: Option<(String, String)> = None;
    let snapshot_rv = if let Some(token) = &q.continue_token {
        let (rv, ns, name) = decode_continue(token)?;
        start_after = Some((ns, name));
        rv
    } else {
        match (q.rv_match.as_deref(), q.resource_version.as_deref()) {
            (Some("Exact"), Some(rv)) => {
                let rv = parse_rv(rv)?;
                if rv > current {
                    return Err(too_large(rv, current));
                }
                rv
            }
            (_, Some(rv)) if rv != "0" => {
                let rv = parse_rv(rv)?;
                if rv > current {
                    return Err(too_large(rv, current));
                }
                current
            }
            _ => current,
        }
    };
    let snapshot = st.store.snapshot_at(&rt.storage, snapshot_rv).map_err(|c| {
        if q.continue_token.is_some() {
            ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
        } else {
            ApiError::expired(format!("too old resource version: {snapshot_rv} ({})", c.oldest))
        }
    })?;
    let namespace_start = namespace.map(|ns| (ns.to_string(), String::new()));
    let lower = match (&start_after, &namespace_start) {
        (Some(after), Some(start)) if after < start => Bound::Included(start),
        (Some(after), _) => Bound::Excluded(after),
        (None, Some(start)) => Bound::Included(start),
        (None, None) => Bound::Unbounded,
    };
    let mut matching = snapshot
        .range(lower)
        .take_while(|((ns, _), _)| namespace.is_none_or(|want| want == ns))
        .filter(|(_, obj)| q.filter.matches_stored(rt, obj));
    let mut items = Vec::new();
    let mut last_key = None;
    while let Some((key, obj)) = matching.next() {
        if q.limit.is_some_and(|l| items.len() >= l) {
            // One more item exists: the page ends here.
            let token = last_key
                .map(|(ns, name): &(String, String)| encode_continue(snapshot_rv, ns, name));
            let remaining = q.filter.is_empty().then(|| 1 + matching.count());
            return Ok(ListPage {
                items,
                resource_version: snapshot_rv,
                continue_token: token,
                remaining,
            });
        }
        last_key = Some(key);
        items.push(from_storage(rt, obj));
    }
    Ok(ListPage {
        items,
        resource_version: snapshot_rv,
        continue_token: None,
        remaining: None,
    })
}

/// The List object for a page.
pub fn list_object(rt: &ResourceType, page: &ListPage) -> Value {
    json!({
        "kind": rt.list_kind,
        "apiVersion": rt.api_version(),
        "metadata": page.metadata(),
        "items": page.items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::{WriteOptions, create};

    #[test]
    fn pages_are_consistent_snapshots() {
        let mut st = State::new(1000, 16);
        let o = WriteOptions::new("t");
        let ns = st.registry.lookup("", "v1", "namespaces").expect("served");
        create(&mut st, &ns, "", json!({"metadata": {"name": "a"}}), &o).expect("ns");
        let cm = st.registry.lookup("", "v1", "configmaps").expect("served");
        for i in 0..5 {
            create(
                &mut st,
                &cm,
                "a",
                json!({"metadata": {"name": format!("c{i}"), "labels": {"i": i.to_string()}}}),
                &o,
            )
            .expect("cm");
        }
        let q = ListQuery {
            limit: Some(2),
            ..Default::default()
        };
        let first = list(&st, &cm, Some("a"), &q).expect("page");
        assert_eq!(first.items.len(), 2);
        assert_eq!(first.remaining, Some(3));
        create(&mut st, &cm, "a", json!({"metadata": {"name": "c9"}}), &o).expect("cm");
        let mut next = ListQuery {
            limit: Some(10),
            ..Default::default()
        };
        next.continue_token = first.continue_token.clone();
        let second = list(&st, &cm, Some("a"), &next).expect("page");
        let names: Vec<&str> = second.items.iter().map(object::name).collect();
        assert_eq!(names, ["c2", "c3", "c4"]);
        assert_eq!(second.resource_version, first.resource_version);
        assert!(second.continue_token.is_none());
        let q = Query::parse(Some("labelSelector=i%20in%20(1,3)"));
        let sel = ListQuery::from_query(&q, &cm).expect("query");
        assert_eq!(
            list(&st, &cm, Some("a"), &sel).expect("list").items.len(),
            2
        );
        let bad = Query::parse(Some("fieldSelector=spec.x%3Dy"));
        assert_eq!(
            ListQuery::from_query(&bad, &cm)
                .expect_err("unsupported")
                .code,
            400
        );
    }
}
