//! The `sigil_backend_leases_active` gauge: which ExternalSecret holds a lease
//! of which generator now, counted per generator. Rebuilt from the statuses
//! after a restart, as every ExternalSecret is reconciled again.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::runtime::reflector::ObjectRef;

use crate::api::external_secret::ExternalSecret;
use crate::providers::BackendCalls;

/// Leases held, by ExternalSecret.
pub struct ActiveLeases {
    calls: BackendCalls,
    by_external_secret: Mutex<HashMap<ObjectRef<ExternalSecret>, String>>,
}

impl ActiveLeases {
    pub fn new(calls: BackendCalls) -> Self {
        Self {
            calls,
            by_external_secret: Mutex::new(HashMap::new()),
        }
    }

    /// Notes that `es` holds a lease of the generator `store` (its store label), or none.
    pub fn set(&self, es: ObjectRef<ExternalSecret>, store: Option<String>) {
        let Ok(mut held) = self.by_external_secret.lock() else {
            return;
        };
        let before = match &store {
            Some(store) => held.insert(es, store.clone()),
            None => held.remove(&es),
        };
        if before == store {
            return;
        }
        for changed in [before, store].into_iter().flatten() {
            let count = held.values().filter(|s| **s == changed).count();
            self.calls.set_active_leases(
                &changed,
                "vault",
                i64::try_from(count).unwrap_or(i64::MAX),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn leases_are_counted_per_generator_as_they_move() {
        let calls = BackendCalls::default();
        let mut registry = Registry::with_prefix("sigil");
        calls.register(&mut registry);
        let active = ActiveLeases::new(calls);
        let es = |name: &str| ObjectRef::<ExternalSecret>::new(name).within("app");
        let pg = Some("VaultDynamicSecret/app/pg".to_string());
        let other = Some("VaultDynamicSecret/app/other".to_string());
        active.set(es("a"), pg.clone());
        active.set(es("b"), pg.clone());
        active.set(es("b"), pg.clone());
        active.set(es("c"), other.clone());
        active.set(es("a"), other);
        active.set(es("c"), None);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for line in [
            r#"sigil_backend_leases_active{store="VaultDynamicSecret/app/pg",provider="vault"} 1"#,
            r#"sigil_backend_leases_active{store="VaultDynamicSecret/app/other",provider="vault"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
