//! One long-lived provider per store.
//!
//! A provider is built once and reused by every reconcile; it is replaced only
//! when the store's `spec.provider` or one of its credential Secrets changes
//! (compared by uid and resourceVersion). Credential Secrets are re-read at
//! most every [`CREDENTIAL_RECHECK`] (or at once when a caller saw an
//! authentication error), so a rotated credential is picked up without a
//! Secret watch and without reading them on every reconcile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::aws::AwsSecretsManager;
use super::credentials::{self, Material, StoreKey};
use super::parameter_store::AwsParameterStore;
use super::vault::VaultKv;
use super::{BackendCalls, Provider, ProviderError};
use crate::api::secret_store::{AwsService, Provider as ProviderSpec};

/// How long a built provider is trusted before its credential Secrets are read again.
pub const CREDENTIAL_RECHECK: Duration = Duration::from_secs(30);

struct Entry {
    spec_hash: [u8; 32],
    credential_versions: Vec<String>,
    provider: Arc<dyn Provider>,
    checked: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Entry>>>;

/// Providers by store.
#[derive(Default)]
pub struct ClientCache {
    slots: Mutex<HashMap<StoreKey, Slot>>,
    calls: BackendCalls,
    builds: AtomicU64,
}

impl ClientCache {
    pub fn new(calls: BackendCalls) -> Self {
        Self {
            calls,
            ..Self::default()
        }
    }

    /// The backend call counters the providers report to.
    pub fn calls(&self) -> &BackendCalls {
        &self.calls
    }

    /// Providers built so far (a new one per store spec or credential change).
    pub fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    fn slot(&self, key: &StoreKey) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(key.clone()).or_default().clone()
    }

    /// Drops the providers of stores not in `alive`.
    pub fn retain(&self, alive: impl Fn(&StoreKey) -> bool) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|key, _| alive(key));
    }

    /// The store's provider; `recheck` forces re-reading the credential Secrets.
    pub async fn provider(
        &self,
        kube: &kube::Client,
        key: &StoreKey,
        spec: &ProviderSpec,
        recheck: bool,
    ) -> Result<Arc<dyn Provider>, ProviderError> {
        let spec_hash: [u8; 32] =
            Sha256::digest(serde_json::to_vec(spec).unwrap_or_default()).into();
        let slot = self.slot(key);
        let mut entry = slot.lock().await;
        if let Some(current) = entry.as_ref()
            && current.spec_hash == spec_hash
            && !recheck
            && current.checked.elapsed() < CREDENTIAL_RECHECK
        {
            return Ok(current.provider.clone());
        }
        let resolved = credentials::resolve(kube, key, spec).await?;
        if let Some(current) = entry.as_mut()
            && current.spec_hash == spec_hash
            && current.credential_versions == resolved.versions
        {
            current.checked = Instant::now();
            return Ok(current.provider.clone());
        }
        let provider = self.build(key, spec, resolved.material).await?;
        self.builds.fetch_add(1, Ordering::Relaxed);
        tracing::info!(store = %key, "built a new backend client");
        *entry = Some(Entry {
            spec_hash,
            credential_versions: resolved.versions,
            provider: provider.clone(),
            checked: Instant::now(),
        });
        Ok(provider)
    }

    async fn build(
        &self,
        key: &StoreKey,
        spec: &ProviderSpec,
        material: Material,
    ) -> Result<Arc<dyn Provider>, ProviderError> {
        let label = key.to_string();
        match (material, &spec.aws, &spec.vault) {
            (Material::Aws(credentials), Some(aws), _) => match aws.service {
                AwsService::SecretsManager => Ok(Arc::new(
                    AwsSecretsManager::new(aws, credentials, self.calls.for_store(&label, "aws"))
                        .await
                        .map_err(|e| in_store(key, e))?,
                )),
                AwsService::ParameterStore => Ok(Arc::new(
                    AwsParameterStore::new(
                        aws,
                        credentials,
                        self.calls.for_store(&label, "aws-ssm"),
                    )
                    .await
                    .map_err(|e| in_store(key, e))?,
                )),
            },
            (Material::Vault(login), _, Some(vault)) => {
                let kv = Arc::new(
                    VaultKv::new(vault, login, self.calls.for_store(&label, "vault"))
                        .map_err(|e| in_store(key, e))?,
                );
                super::vault::keep_alive(&kv);
                Ok(kv)
            }
            _ => Err(ProviderError::Config(format!(
                "{key}: spec.provider: set exactly one of aws, vault"
            ))),
        }
    }
}

fn in_store(key: &StoreKey, error: ProviderError) -> ProviderError {
    match error {
        ProviderError::Config(message) if !message.starts_with(&key.to_string()) => {
            ProviderError::Config(format!("{key}: {message}"))
        }
        other => other,
    }
}
