//! The sealing-keys controller: keeps the sealing identities in labelled Secrets of
//! the controller namespace, renews the active key, and publishes the
//! recipients to seal to in the `sigil-recipients` ConfigMap.
//!
//! It is level-triggered: on every change of a key Secret (and when a renewal
//! is due) it lists the key Secrets again and derives everything from them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use zeroize::Zeroizing;

use super::{Context, backoff};
use crate::crypto::identity;
use crate::crypto::keyring::{Keyring, SealingKey};
use crate::crypto::manifest;
use crate::crypto::recipients;
use crate::wire::{RECIPIENTS_CONFIGMAP, RECIPIENTS_KEY};

/// Label on every Secret holding sealing identities; its value is the key's fingerprint.
pub const KEY_LABEL: &str = "sigil.dev/sealing-key";
/// Data key of a key Secret: an age identity file (what `age-keygen` writes).
pub const KEY_DATA: &str = "age.key";
/// When the key was made (RFC 3339); survives backup and restore, unlike creationTimestamp.
pub const CREATED_ANNOTATION: &str = "sigil.dev/created-at";
/// The public recipient of the key, for people reading the Secret.
pub const RECIPIENT_ANNOTATION: &str = "sigil.dev/recipient";
/// Name prefix of generated key Secrets.
pub const KEY_SECRET_PREFIX: &str = "sigil-sealing-key-";

/// How often the key Secrets are re-read even without a watch event.
const RESYNC: Duration = Duration::from_secs(300);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// The current keyring, shared with the SealedSecret controller. `None` until
/// the key Secrets were read once.
#[derive(Clone)]
pub struct KeyringHandle {
    sender: Arc<watch::Sender<Option<Arc<Keyring>>>>,
}

impl Default for KeyringHandle {
    fn default() -> Self {
        Self {
            sender: Arc::new(watch::Sender::new(None)),
        }
    }
}

impl KeyringHandle {
    pub fn current(&self) -> Option<Arc<Keyring>> {
        self.sender.borrow().clone()
    }

    /// Changes whenever the set of keys changes.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Keyring>>> {
        self.sender.subscribe()
    }

    /// Publishes a keyring if its keys differ from the current one.
    pub fn publish(&self, keyring: Keyring) {
        self.sender.send_if_modified(|current| {
            let same = current.as_ref().is_some_and(|c| same_keys(c, &keyring));
            if !same {
                *current = Some(Arc::new(keyring));
            }
            !same
        });
    }

    /// Waits until a keyring was loaded; `None` if the sender side is gone.
    pub async fn loaded(&self) -> Option<Arc<Keyring>> {
        let mut receiver = self.subscribe();
        let loaded = receiver.wait_for(Option::is_some).await.ok()?;
        loaded.clone()
    }
}

fn same_keys(a: &Keyring, b: &Keyring) -> bool {
    a.keys().len() == b.keys().len()
        && a.keys()
            .iter()
            .zip(b.keys())
            .all(|(x, y)| x.fingerprint() == y.fingerprint() && x.created() == y.created())
}

/// Why the key Secrets could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error("invalid --recovery-recipient: {0}")]
    Recovery(#[from] recipients::RecipientError),
}

/// Builds the keyring from key Secrets. Secrets that hold no usable identity are
/// skipped and named in the second list (never with their content).
pub fn keyring_from_secrets(secrets: &[Secret]) -> (Keyring, Vec<String>) {
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    for secret in secrets {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(KEY_DATA)) else {
            problems.push(format!("Secret {name}: data.{KEY_DATA}: missing"));
            continue;
        };
        let text = Zeroizing::new(String::from_utf8_lossy(&bytes.0).into_owned());
        match identity::parse_file(&text) {
            Ok(identities) => {
                let created = created_at(&secret.metadata, &text);
                keys.extend(
                    identities
                        .into_iter()
                        .map(|id| SealingKey::new(id, created, name.clone())),
                );
            }
            Err(e) => problems.push(format!("Secret {name}: data.{KEY_DATA}: {e}")),
        }
    }
    (Keyring::new(keys), problems)
}

/// When a key was made: the annotation, else the identity file's `# created:`
/// line (so an imported `age-keygen` key keeps its age), else the Secret's creation.
fn created_at(meta: &ObjectMeta, file: &str) -> Option<jiff::Timestamp> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(CREATED_ANNOTATION))
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .or_else(|| identity::created_comment(file))
        .or_else(|| meta.creation_timestamp.as_ref().map(|t| t.0))
}

fn key_secrets(client: &Client, namespace: &str) -> Api<Secret> {
    Api::namespaced(client.clone(), namespace)
}

/// Reads every key Secret of the namespace into a keyring.
pub async fn load_keyring(
    client: &Client,
    namespace: &str,
) -> Result<(Keyring, Vec<String>), kube::Error> {
    let list = key_secrets(client, namespace)
        .list(&ListParams::default().labels(KEY_LABEL))
        .await?;
    let mut items = list.items;
    let result = keyring_from_secrets(&items);
    items.iter_mut().for_each(manifest::wipe_secret);
    Ok(result)
}

/// Makes a new identity and stores it in a key Secret.
async fn create_key(
    client: &Client,
    namespace: &str,
    now: jiff::Timestamp,
) -> Result<SealingKey, kube::Error> {
    let (identity, file) = identity::generate_file(now);
    let recipient = identity.to_public();
    let fingerprint = recipients::fingerprint(&recipient);
    let name = format!("{KEY_SECRET_PREFIX}{fingerprint}");
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(KEY_LABEL.to_string(), fingerprint)])),
            annotations: Some(BTreeMap::from([
                (CREATED_ANNOTATION.to_string(), now.to_string()),
                (RECIPIENT_ANNOTATION.to_string(), recipient.to_string()),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(
            KEY_DATA.to_string(),
            k8s_openapi::ByteString(file.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    };
    let mut created = key_secrets(client, namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    manifest::wipe_secret(&mut created);
    manifest::wipe_secret(&mut secret);
    Ok(SealingKey::new(identity, Some(now), name))
}

/// Writes the recipients ConfigMap with server-side apply.
async fn publish_recipients(
    client: &Client,
    namespace: &str,
    text: &str,
) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let config_map = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": RECIPIENTS_CONFIGMAP,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "sigil"},
        },
        "data": {RECIPIENTS_KEY: text},
    });
    api.patch(
        RECIPIENTS_CONFIGMAP,
        &PatchParams::apply(crate::api::FIELD_MANAGER).force(),
        &Patch::Apply(&config_map),
    )
    .await?;
    Ok(())
}

/// The text of the ConfigMap: the active key, then every recovery recipient.
pub fn recipients_text(keyring: &Keyring, recovery: &[age::x25519::Recipient]) -> String {
    let mut all: Vec<age::x25519::Recipient> = keyring
        .active()
        .map(|k| k.recipient().clone())
        .into_iter()
        .collect();
    all.extend(recovery.iter().cloned());
    recipients::to_text(&recipients::dedup(all))
}

/// State kept between passes of the loop.
struct Pass {
    recovery: Vec<age::x25519::Recipient>,
    published: Option<String>,
    keys_gauge: Gauge<i64, AtomicI64>,
}

impl Pass {
    /// One level-triggered pass: read keys, renew if due, publish. Returns when
    /// the next renewal is due.
    async fn run(
        &mut self,
        ctx: &Context,
        handle: &KeyringHandle,
    ) -> Result<Option<jiff::Timestamp>, KeyringError> {
        let namespace = &ctx.options.namespace;
        let period = ctx.options.key_renew_period;
        let (mut keyring, problems) = load_keyring(&ctx.client, namespace).await?;
        for problem in problems {
            tracing::warn!(%namespace, problem, "skipping unusable sealing key");
        }
        // With shards, only shard 0 makes keys and publishes; the others only read.
        let writer = ctx.options.shard.index == 0;
        let now = jiff::Timestamp::now();
        if writer && keyring.needs_new_key(now, period) {
            let key = create_key(&ctx.client, namespace, now).await?;
            tracing::info!(
                %namespace,
                secret = key.source(),
                key = key.fingerprint(),
                recipient = %key.recipient(),
                "generated a new active sealing key"
            );
            let mut keys = keyring.keys().to_vec();
            keys.push(key);
            keyring = Keyring::new(keys);
        }
        self.keys_gauge.set(keyring.len() as i64);
        let text = recipients_text(&keyring, &self.recovery);
        if writer && self.published.as_deref() != Some(text.as_str()) {
            publish_recipients(&ctx.client, namespace, &text).await?;
            tracing::info!(
                %namespace,
                active = keyring.active().map(SealingKey::fingerprint).unwrap_or_default(),
                keys = keyring.len(),
                recovery = self.recovery.len(),
                "published sealing recipients"
            );
            self.published = Some(text);
        }
        let next = keyring.next_renewal(period);
        handle.publish(keyring);
        Ok(next)
    }
}

/// Runs the keyring controller until shutdown.
pub async fn run(ctx: Arc<Context>, handle: KeyringHandle) {
    let recovery = match ctx
        .options
        .recovery_recipients
        .iter()
        .map(|r| recipients::parse(r))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(recovery) => recovery,
        Err(e) => {
            // A recovery recipient silently dropped would leave values unrecoverable.
            tracing::error!(error = %KeyringError::from(e), "stopping: fix --recovery-recipient");
            ctx.shutdown.cancel();
            return;
        }
    };
    let keys_gauge = Gauge::<i64, AtomicI64>::default();
    ctx.metrics.register(|registry| {
        registry.register(
            "sealing_keys",
            "Sealing keys in the keyring (the newest is active)",
            keys_gauge.clone(),
        );
    });
    let mut pass = Pass {
        recovery,
        published: None,
        keys_gauge,
    };

    let api = key_secrets(&ctx.client, &ctx.options.namespace);
    let mut changes = watcher(api, watcher::Config::default().labels(KEY_LABEL))
        .default_backoff()
        .boxed();
    let mut failures: u32 = 0;
    loop {
        let wait = match pass.run(&ctx, &handle).await {
            Ok(next) => {
                failures = 0;
                until(next).min(RESYNC)
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = retry_delay(failures);
                tracing::warn!(error = %e, retry_in = ?wait, "keyring pass failed");
                wait
            }
        };
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            event = changes.next() => {
                if let Some(Err(e)) = event {
                    tracing::debug!(error = %e, "watch of sealing key Secrets interrupted");
                }
                // Take every event already queued, so a burst costs one pass.
                while let Some(Some(_)) = changes.next().now_or_never() {}
            }
        }
    }
}

fn until(next: Option<jiff::Timestamp>) -> Duration {
    next.map(|at| {
        let left = at.duration_since(jiff::Timestamp::now());
        // A small margin so the pass runs just after the key became due.
        Duration::try_from(left).unwrap_or(Duration::ZERO) + Duration::from_millis(50)
    })
    .unwrap_or(RESYNC)
}

fn retry_delay(failures: u32) -> Duration {
    backoff::exponential(FIRST_RETRY, MAX_RETRY, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_secret(name: &str, file: &str, created: Option<&str>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: created
                    .map(|c| BTreeMap::from([(CREATED_ANNOTATION.to_string(), c.to_string())])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                KEY_DATA.to_string(),
                k8s_openapi::ByteString(file.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        }
    }

    #[test]
    fn keyring_comes_from_the_secrets_and_skips_broken_ones() {
        let t1: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().expect("time");
        let t2: jiff::Timestamp = "2024-02-01T00:00:00Z".parse().expect("time");
        let (old, old_file) = identity::generate_file(t1);
        let (new, new_file) = identity::generate_file(t2);
        let secrets = vec![
            key_secret("b", &new_file, Some("2024-02-01T00:00:00Z")),
            key_secret("a", &old_file, Some("2024-01-01T00:00:00Z")),
            key_secret("broken", "AGE-SECRET-KEY-1NOPE\n", None),
        ];
        let (keyring, problems) = keyring_from_secrets(&secrets);
        assert_eq!(keyring.len(), 2);
        assert_eq!(
            keyring.active().map(|k| k.recipient().to_string()),
            Some(new.to_public().to_string())
        );
        assert_eq!(
            keyring.keys()[0].recipient().to_string(),
            old.to_public().to_string()
        );
        assert_eq!(
            problems,
            vec![format!(
                "Secret broken: data.{KEY_DATA}: line 1: not an X25519 age identity (`AGE-SECRET-KEY-1…`)"
            )]
        );
    }

    #[test]
    fn recipients_text_lists_active_then_recovery() {
        let t: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().expect("time");
        let (active, file) = identity::generate_file(t);
        let (keyring, _) = keyring_from_secrets(&[key_secret("k", &file, None)]);
        let recovery = age::x25519::Identity::generate().to_public();
        assert_eq!(
            recipients_text(&keyring, std::slice::from_ref(&recovery)),
            format!("{}\n{recovery}\n", active.to_public())
        );
    }

    #[test]
    fn handle_publishes_only_changes() {
        let handle = KeyringHandle::default();
        let mut receiver = handle.subscribe();
        assert!(handle.current().is_none());
        let (_, file) = identity::generate_file(jiff::Timestamp::UNIX_EPOCH);
        let (keyring, _) = keyring_from_secrets(&[key_secret("k", &file, None)]);
        handle.publish(keyring.clone());
        assert!(receiver.has_changed().expect("open"));
        receiver.borrow_and_update();
        handle.publish(keyring);
        assert!(!receiver.has_changed().expect("open"));
    }

    #[test]
    fn retries_back_off_to_a_cap() {
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert_eq!(retry_delay(2), Duration::from_secs(1));
        assert_eq!(retry_delay(100), MAX_RETRY);
    }

    mod mocked_api {
        use http::{Method, StatusCode};
        use serde_json::json;

        use super::*;
        use crate::controller::test_api::{self, ApiServer, Call, Started};

        const SECRETS: &str = "/api/v1/namespaces/sigil-system/secrets";
        const RECIPIENTS: &str = "/api/v1/namespaces/sigil-system/configmaps/sigil-recipients";

        type Ran = (
            Pass,
            Result<Option<jiff::Timestamp>, KeyringError>,
            KeyringHandle,
        );

        fn pass() -> Pass {
            Pass {
                recovery: Vec::new(),
                published: None,
                keys_gauge: Gauge::default(),
            }
        }

        /// Runs one pass on a mocked API; the test answers its requests.
        fn start(mut pass: Pass) -> Started<Ran> {
            test_api::spawn(|ctx| async move {
                let handle = KeyringHandle::default();
                let result = pass.run(&ctx, &handle).await;
                (pass, result, handle)
            })
        }

        /// Answers the LIST of key Secrets (selected by their label) with `items`.
        async fn list_keys(api: &mut ApiServer, items: &[Secret]) {
            let list = api.expect(Method::GET, SECRETS).await;
            list.assert_query("labelSelector", KEY_LABEL);
            list.ok(&json!({
                "apiVersion": "v1",
                "kind": "SecretList",
                "metadata": {"resourceVersion": "7"},
                "items": items,
            }));
        }

        /// Asserts the creation of a key Secret (a POST: never a replacing write) and returns
        /// the call with the recipient of the key it holds.
        async fn key_created(api: &mut ApiServer) -> (Call, String) {
            let create = api.expect(Method::POST, SECRETS).await;
            let secret: Secret = serde_json::from_value(create.body.clone()).expect("a Secret");
            let (keyring, problems) = keyring_from_secrets(std::slice::from_ref(&secret));
            assert!(problems.is_empty(), "{problems:?}");
            let key = keyring.active().expect("the new key");
            let fingerprint = key.fingerprint().to_string();
            let recipient = key.recipient().to_string();
            assert_eq!(
                secret.metadata.name,
                Some(format!("{KEY_SECRET_PREFIX}{fingerprint}"))
            );
            assert_eq!(secret.metadata.namespace.as_deref(), Some("sigil-system"));
            assert_eq!(
                secret.metadata.labels,
                Some(BTreeMap::from([(KEY_LABEL.to_string(), fingerprint)]))
            );
            let annotations = secret.metadata.annotations.clone().unwrap_or_default();
            assert_eq!(annotations.get(RECIPIENT_ANNOTATION), Some(&recipient));
            assert!(annotations.contains_key(CREATED_ANNOTATION));
            assert_eq!(secret.type_.as_deref(), Some("Opaque"));
            (create, recipient)
        }

        /// Asserts the server-side apply of the recipients ConfigMap.
        async fn recipients_applied(api: &mut ApiServer, text: &str) {
            let apply = api.expect_apply(RECIPIENTS).await;
            assert_eq!(apply.body["kind"], "ConfigMap");
            assert_eq!(apply.body["metadata"]["name"], RECIPIENTS_CONFIGMAP);
            assert_eq!(apply.body["data"], json!({ RECIPIENTS_KEY: text }));
            assert!(!apply.body.to_string().contains("AGE-SECRET-KEY"));
            apply.echo();
        }

        #[tokio::test]
        async fn the_first_start_creates_a_key_and_publishes_its_recipient() {
            let (mut api, run) = start(pass());
            list_keys(&mut api, &[]).await;
            let (create, recipient) = key_created(&mut api).await;
            create.echo();
            recipients_applied(&mut api, &format!("{recipient}\n")).await;
            let (_, result, handle) = api.finish(run).await;
            assert!(result.expect("pass").is_some(), "a renewal is scheduled");
            assert_eq!(handle.current().expect("published").len(), 1);
        }

        #[tokio::test]
        async fn a_key_name_taken_meanwhile_is_never_overwritten() {
            let (mut api, run) = start(pass());
            list_keys(&mut api, &[]).await;
            let (create, _) = key_created(&mut api).await;
            create.fail(
                StatusCode::CONFLICT,
                "AlreadyExists",
                "the Secret already exists",
            );
            // No update, no apply, no publishing: `finish` fails on any further request.
            let (_, result, handle) = api.finish(run).await;
            match result {
                Err(KeyringError::Kube(kube::Error::Api(status))) => assert_eq!(status.code, 409),
                other => panic!("expected the conflict, got {other:?}"),
            }
            assert!(
                handle.current().is_none(),
                "no keyring without its key Secret"
            );
        }

        #[tokio::test]
        async fn a_due_renewal_adds_a_key_and_keeps_the_old_one() {
            let (old, file) = identity::generate_file(jiff::Timestamp::UNIX_EPOCH);
            let old_key = key_secret("sigil-sealing-key-old", &file, Some("2024-01-01T00:00:00Z"));
            let (mut api, run) = start(pass());
            list_keys(&mut api, std::slice::from_ref(&old_key)).await;
            let (create, recipient) = key_created(&mut api).await;
            assert_ne!(recipient, old.to_public().to_string());
            create.echo();
            recipients_applied(&mut api, &format!("{recipient}\n")).await;
            let (pass, result, handle) = api.finish(run).await;
            result.expect("pass");
            assert_eq!(handle.current().expect("published").len(), 2);

            // The next pass finds both keys, nothing due and the recipients published: one read.
            let now = jiff::Timestamp::now();
            let (_, new_file) = identity::generate_file(now);
            let new_key = key_secret("sigil-sealing-key-new", &new_file, Some(&now.to_string()));
            let (new_keyring, _) = keyring_from_secrets(std::slice::from_ref(&new_key));
            let mut pass = pass;
            pass.published = Some(recipients_text(&new_keyring, &[]));
            let (mut api, run) = start(pass);
            list_keys(&mut api, &[old_key, new_key]).await;
            let (_, result, _) = api.finish(run).await;
            result.expect("pass");
        }
    }
}
