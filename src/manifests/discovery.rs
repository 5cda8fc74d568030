//! Which kinds the API server serves: `apiVersion` + `kind` → resource (plural) and scope,
//! cached per group-version and refreshed when a kind is missing (a CRD may just have landed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::api::ApiResource;

use super::client::ApiError;

/// A served kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kind {
    pub resource: ApiResource,
    pub namespaced: bool,
}

struct Cached {
    fetched: Instant,
    /// None when the group-version is not served at all.
    kinds: Option<Vec<Kind>>,
}

/// Discovery with a cache, shared by every reconcile.
pub struct Resolver {
    client: kube::Client,
    cache: Mutex<HashMap<String, Cached>>,
}

/// A cached miss is trusted this long before asking the server again.
const MISS_TTL: Duration = Duration::from_secs(2);

impl Resolver {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn lookup(&self, api_version: &str, kind: &str) -> Option<Option<Kind>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let cached = cache.get(api_version)?;
        let found = cached
            .kinds
            .as_ref()
            .and_then(|kinds| kinds.iter().find(|k| k.resource.kind == kind).cloned());
        match found {
            Some(k) => Some(Some(k)),
            None if cached.fetched.elapsed() < MISS_TTL => Some(None),
            None => None,
        }
    }

    /// The served kind, or None when the server does not know it.
    pub async fn resolve(&self, api_version: &str, kind: &str) -> Result<Option<Kind>, ApiError> {
        if let Some(known) = self.lookup(api_version, kind) {
            return Ok(known);
        }
        let kinds = self.fetch(api_version).await?;
        let found = kinds
            .as_ref()
            .and_then(|kinds| kinds.iter().find(|k| k.resource.kind == kind).cloned());
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(
            api_version.to_string(),
            Cached {
                fetched: Instant::now(),
                kinds,
            },
        );
        Ok(found)
    }

    /// Drops what is cached for a group-version (after its CRD changed).
    pub fn forget(&self, api_version: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(api_version);
    }

    async fn fetch(&self, api_version: &str) -> Result<Option<Vec<Kind>>, ApiError> {
        let listed = if api_version.contains('/') {
            self.client.list_api_group_resources(api_version).await
        } else {
            self.client.list_core_api_resources(api_version).await
        };
        let list = match listed.map_err(ApiError::from) {
            Ok(list) => list,
            Err(err) if err.is_not_found() => return Ok(None),
            Err(err) => return Err(err),
        };
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        Ok(Some(
            list.resources
                .into_iter()
                .filter(|r| !r.name.contains('/'))
                .map(|r| Kind {
                    resource: ApiResource {
                        group: group.clone(),
                        version: version.clone(),
                        api_version: api_version.to_string(),
                        kind: r.kind,
                        plural: r.name,
                    },
                    namespaced: r.namespaced,
                })
                .collect(),
        ))
    }
}
