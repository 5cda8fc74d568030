//! `sigil_backend_calls_total{store,provider,outcome}`: one count per request a
//! provider sends to its backend (a batch of 20 reads is one call). Vault
//! stores also count their logins and token renewals:
//! `sigil_backend_logins_total{store,provider,outcome}` and
//! `sigil_backend_token_renewals_total{store,provider,outcome}`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of one backend call; `outcome` is a fixed word (`success`, `not_found`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendCallLabels {
    pub store: String,
    pub provider: String,
    pub outcome: String,
}

/// The counter family, shared by every provider.
#[derive(Clone, Debug, Default)]
pub struct BackendCalls {
    family: Family<BackendCallLabels, Counter>,
    logins: Family<BackendCallLabels, Counter>,
    renewals: Family<BackendCallLabels, Counter>,
}

impl BackendCalls {
    /// Adds the series to a registry (prefix `sigil` comes from the registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "backend_calls",
            "Requests sent to secret backends, per store, provider and outcome",
            self.family.clone(),
        );
        registry.register(
            "backend_logins",
            "Logins to secret backends (Vault auth methods), per store, provider and outcome",
            self.logins.clone(),
        );
        registry.register(
            "backend_token_renewals",
            "Token renewals at secret backends (Vault renew-self), per store, provider and outcome",
            self.renewals.clone(),
        );
    }

    /// A recorder bound to one store.
    pub fn for_store(&self, store: &str, provider: &'static str) -> StoreCalls {
        StoreCalls {
            family: self.family.clone(),
            logins: self.logins.clone(),
            renewals: self.renewals.clone(),
            store: store.to_string(),
            provider,
        }
    }

    /// Calls counted so far for a store and outcome (tests and diagnostics).
    pub fn count(&self, store: &str, provider: &str, outcome: &str) -> u64 {
        self.family
            .get_or_create(&BackendCallLabels {
                store: store.to_string(),
                provider: provider.to_string(),
                outcome: outcome.to_string(),
            })
            .get()
    }
}

/// Counts the calls of one store's provider.
#[derive(Clone, Debug)]
pub struct StoreCalls {
    family: Family<BackendCallLabels, Counter>,
    logins: Family<BackendCallLabels, Counter>,
    renewals: Family<BackendCallLabels, Counter>,
    store: String,
    provider: &'static str,
}

impl StoreCalls {
    fn labels(&self, outcome: &str) -> BackendCallLabels {
        BackendCallLabels {
            store: self.store.clone(),
            provider: self.provider.to_string(),
            outcome: outcome.to_string(),
        }
    }

    pub fn record(&self, outcome: &str) {
        self.family.get_or_create(&self.labels(outcome)).inc();
    }

    /// Counts one login and its outcome.
    pub fn record_login<T>(&self, result: &Result<T, super::ProviderError>) {
        self.logins
            .get_or_create(&self.labels(outcome_of(result)))
            .inc();
    }

    /// Counts one token renewal and its outcome.
    pub fn record_renewal<T>(&self, result: &Result<T, super::ProviderError>) {
        self.renewals
            .get_or_create(&self.labels(outcome_of(result)))
            .inc();
    }

    /// Records the outcome of a result and passes it through.
    pub fn observe<T>(
        &self,
        result: Result<T, super::ProviderError>,
    ) -> Result<T, super::ProviderError> {
        self.record(outcome_of(&result));
        result
    }
}

fn outcome_of<T>(result: &Result<T, super::ProviderError>) -> &'static str {
    match result {
        Ok(_) => "success",
        Err(error) => error.outcome(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_per_store_and_outcome() {
        let calls = BackendCalls::default();
        let mut registry = Registry::with_prefix("sigil");
        calls.register(&mut registry);
        let store = calls.for_store("SecretStore/app/aws", "aws");
        store.record("success");
        store.record("success");
        let _ = store.observe::<()>(Err(super::super::ProviderError::NotFound {
            key: "db".into(),
        }));
        assert_eq!(calls.count("SecretStore/app/aws", "aws", "success"), 2);
        store.record_login::<()>(&Ok(()));
        store.record_renewal::<()>(&Err(super::super::ProviderError::Auth("expired".into())));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains(r#"sigil_backend_calls_total{store="SecretStore/app/aws",provider="aws",outcome="not_found"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sigil_backend_logins_total{store="SecretStore/app/aws",provider="aws",outcome="success"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sigil_backend_token_renewals_total{store="SecretStore/app/aws",provider="aws",outcome="auth_error"} 1"#),
            "{text}"
        );
    }
}
