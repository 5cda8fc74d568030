//! `sigil_backend_calls_total{store,provider,outcome}`: one count per request a
//! provider sends to its backend (a batch of 20 reads is one call). Vault
//! stores also count their logins and token renewals:
//! `sigil_backend_logins_total{store,provider,outcome}` and
//! `sigil_backend_token_renewals_total{store,provider,outcome}`. Generators
//! (`VaultDynamicSecret`, store label `VaultDynamicSecret/NAMESPACE/NAME`)
//! count their leases: `sigil_backend_leases_active{store,provider}` (held by
//! ExternalSecrets now), `sigil_backend_leases_issued_total`,
//! `sigil_backend_leases_renewed_total`, `sigil_backend_leases_revoked_total`
//! and `sigil_backend_lease_failures_total{store,provider,operation}`
//! (`issue`, `renew` or `revoke` answered with an error).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of one backend call; `outcome` is a fixed word (`success`, `not_found`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendCallLabels {
    pub store: String,
    pub provider: String,
    pub outcome: String,
}

/// Labels of a store's lease series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    pub store: String,
    pub provider: String,
}

/// Labels of a failed lease operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseFailureLabels {
    pub store: String,
    pub provider: String,
    pub operation: String,
}

/// What was done with a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseOperation {
    Issue,
    Renew,
    Revoke,
}

impl LeaseOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issue => "issue",
            Self::Renew => "renew",
            Self::Revoke => "revoke",
        }
    }
}

/// The lease series of generators.
#[derive(Clone, Debug, Default)]
struct LeaseSeries {
    active: Family<LeaseLabels, Gauge>,
    issued: Family<LeaseLabels, Counter>,
    renewed: Family<LeaseLabels, Counter>,
    revoked: Family<LeaseLabels, Counter>,
    failures: Family<LeaseFailureLabels, Counter>,
}

/// The counter family, shared by every provider.
#[derive(Clone, Debug, Default)]
pub struct BackendCalls {
    family: Family<BackendCallLabels, Counter>,
    logins: Family<BackendCallLabels, Counter>,
    renewals: Family<BackendCallLabels, Counter>,
    leases: LeaseSeries,
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
        registry.register(
            "backend_leases_active",
            "Leases of generated credentials held by ExternalSecrets, per generator",
            self.leases.active.clone(),
        );
        registry.register(
            "backend_leases_issued",
            "Leased credentials issued by generators",
            self.leases.issued.clone(),
        );
        registry.register(
            "backend_leases_renewed",
            "Leases renewed (Vault sys/leases/renew)",
            self.leases.renewed.clone(),
        );
        registry.register(
            "backend_leases_revoked",
            "Leases revoked (Vault sys/leases/revoke)",
            self.leases.revoked.clone(),
        );
        registry.register(
            "backend_lease_failures",
            "Lease operations (issue, renew, revoke) the backend answered with an error",
            self.leases.failures.clone(),
        );
    }

    /// Sets how many leases a store's ExternalSecrets hold now.
    pub fn set_active_leases(&self, store: &str, provider: &str, count: i64) {
        self.leases
            .active
            .get_or_create(&LeaseLabels {
                store: store.to_string(),
                provider: provider.to_string(),
            })
            .set(count);
    }

    /// A recorder bound to one store.
    pub fn for_store(&self, store: &str, provider: &'static str) -> StoreCalls {
        StoreCalls {
            family: self.family.clone(),
            logins: self.logins.clone(),
            renewals: self.renewals.clone(),
            leases: self.leases.clone(),
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
    leases: LeaseSeries,
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

    /// Counts one lease operation: done, or failed.
    pub fn record_lease<T>(
        &self,
        operation: LeaseOperation,
        result: &Result<T, super::ProviderError>,
    ) {
        let labels = LeaseLabels {
            store: self.store.clone(),
            provider: self.provider.to_string(),
        };
        match (result, operation) {
            (Ok(_), LeaseOperation::Issue) => self.leases.issued.get_or_create(&labels).inc(),
            (Ok(_), LeaseOperation::Renew) => self.leases.renewed.get_or_create(&labels).inc(),
            (Ok(_), LeaseOperation::Revoke) => self.leases.revoked.get_or_create(&labels).inc(),
            (Err(_), operation) => self
                .leases
                .failures
                .get_or_create(&LeaseFailureLabels {
                    store: labels.store,
                    provider: labels.provider,
                    operation: operation.as_str().to_string(),
                })
                .inc(),
        };
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
        store.record_lease::<()>(LeaseOperation::Renew, &Ok(()));
        store.record_lease::<()>(
            LeaseOperation::Revoke,
            &Err(super::super::ProviderError::Backend("down".into())),
        );
        calls.set_active_leases("SecretStore/app/aws", "aws", 3);
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
        for line in [
            r#"sigil_backend_leases_renewed_total{store="SecretStore/app/aws",provider="aws"} 1"#,
            r#"sigil_backend_lease_failures_total{store="SecretStore/app/aws",provider="aws",operation="revoke"} 1"#,
            r#"sigil_backend_leases_active{store="SecretStore/app/aws",provider="aws"} 3"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
