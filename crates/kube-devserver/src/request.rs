//! Request paths (`RequestInfoFactory`) and query parameters.

use std::collections::HashMap;

use super::status::ApiError;

/// What a path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/api` or `/apis`.
    Root { legacy: bool },
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`.
    GroupVersion { group: String, version: String },
    /// A resource collection or object.
    Resource(ResourcePath),
    /// Anything else (`/version`, `/openapi/...`, unknown paths).
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The deprecated `/watch/` path prefix was used.
    pub watch_prefix: bool,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(
                std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                16,
            )
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a request path into what it addresses.
pub fn parse_path(path: &str) -> Target {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let (group, version, rest) = match segs.first().map(String::as_str) {
        Some("api") => match segs.len() {
            1 => return Target::Root { legacy: true },
            _ => (String::new(), segs[1].clone(), &segs[2..]),
        },
        Some("apis") => match segs.len() {
            1 => return Target::Root { legacy: false },
            2 => return Target::Group(segs[1].clone()),
            _ => (segs[1].clone(), segs[2].clone(), &segs[3..]),
        },
        _ => return Target::Other,
    };
    let mut rest: &[String] = rest;
    if rest.is_empty() {
        return Target::GroupVersion { group, version };
    }
    let mut watch_prefix = false;
    if rest[0] == "watch" {
        watch_prefix = true;
        rest = &rest[1..];
    }
    let mut namespace = None;
    if rest.len() >= 2 && rest[0] == "namespaces" {
        // `namespaces/{ns}/{resource}...` unless the third segment is a namespace subresource.
        if rest.len() > 2 && rest[2] != "status" && rest[2] != "finalize" {
            namespace = Some(rest[1].clone());
            rest = &rest[2..];
        }
    }
    if rest.is_empty() || rest.len() > 3 {
        return Target::Other;
    }
    Target::Resource(ResourcePath {
        group,
        version,
        resource: rest[0].clone(),
        namespace,
        name: rest.get(1).cloned(),
        subresource: rest.get(2).cloned(),
        watch_prefix,
    })
}

/// Query parameters, last value wins.
#[derive(Clone, Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map = HashMap::new();
        for pair in raw.unwrap_or("").split('&') {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode(&s.replace('+', " "));
            map.insert(decode(k), decode(v));
        }
        Self(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A non-empty value.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|s| !s.is_empty())
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some("true") | Some("1") | Some("") => Ok(Some(true)),
            Some("false") | Some("0") => Ok(Some(false)),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value for {key}: {other:?} (expected true or false)"
            ))),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value for {key}: {v:?} (expected an integer)"
                ))
            }),
        }
    }

    /// `dryRun=All` (the only value the API defines).
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.value("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match parse_path(path) {
            Target::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths_split_like_request_info() {
        let r = res("/api/v1/namespaces/default/configmaps/x");
        assert_eq!(
            (
                r.namespace.as_deref(),
                r.resource.as_str(),
                r.name.as_deref()
            ),
            (Some("default"), "configmaps", Some("x"))
        );
        let ns = res("/api/v1/namespaces/default");
        assert_eq!(
            (ns.resource.as_str(), ns.name.as_deref(), ns.namespace),
            ("namespaces", Some("default"), None)
        );
        let fin = res("/api/v1/namespaces/default/finalize");
        assert_eq!(fin.subresource.as_deref(), Some("finalize"));
        let st = res("/apis/apps/v1/namespaces/a/deployments/web/status");
        assert_eq!(
            (st.group.as_str(), st.subresource.as_deref()),
            ("apps", Some("status"))
        );
        let w = res("/api/v1/watch/namespaces/a/configmaps");
        assert!(w.watch_prefix);
        assert_eq!(parse_path("/apis"), Target::Root { legacy: false });
        assert_eq!(
            parse_path("/api/v1"),
            Target::GroupVersion {
                group: String::new(),
                version: "v1".into()
            }
        );
        assert_eq!(parse_path("/version"), Target::Other);
        let rbac = res("/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Aview");
        assert_eq!(rbac.name.as_deref(), Some("system:view"));
    }

    #[test]
    fn queries_decode() {
        let q = Query::parse(Some(
            "&labelSelector=app%3Dweb%2Ctier+in+(a)&watch=true&limit=5",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(q.bool("watch").expect("bool"), Some(true));
        assert_eq!(q.int("limit").expect("int"), Some(5));
    }
}
