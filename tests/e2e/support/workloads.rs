//! Work for all three controllers in one namespace — a SealedSecret, an ExternalSecret read from
//! moto and a Sync of a Git folder served over smart HTTPS — whose values move in rounds, with
//! the checks the fault and crash-restart tests share: a round ended as a clean run ends, and no
//! Secret was ever half-written or emptied, nor a kept object pruned, on the way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::{ListParams, PostParams};
use sigil::api::ExternalSecret;
use sigil::api::conditions;
use sigil::api::git_source::GitSource;
use sigil::api::sync::ManifestSync;

use super::git_http::GitHttpServer;
use super::git_repo::GitRepo;
use super::moto::{self, Moto};
use super::objects::{apply_sealed_secret, create_namespace};
use super::versions::Versions;

/// The SealedSecret and its Secret.
pub const SEALED: &str = "sealed";
/// The ExternalSecret and its Secret.
pub const EXTERNAL: &str = "external";
/// The GitSource and the Sync.
pub const FLEET: &str = "fleet";
/// A ConfigMap every revision keeps: never pruned.
pub const KEPT: &str = "kept";
/// A ConfigMap every revision keeps, its data the round: never pruned.
pub const SETTINGS: &str = "settings";
/// Label on the ConfigMaps the Sync applies.
const WORKLOAD_LABEL: &str = "e2e.sigil.dev/workload";
const GIT_USER: &str = "gitops";
const GIT_PASSWORD: &str = "workloads-token";

/// The servers behind the workloads, shared by every namespace: moto and a Git server.
pub struct Backends {
    pub moto: Moto,
    pub git: GitHttpServer,
    root: tempfile::TempDir,
}

impl Backends {
    pub async fn start() -> Backends {
        let root = tempfile::tempdir().expect("temp dir");
        Backends {
            moto: Moto::start().await,
            git: GitHttpServer::start(root.path(), GIT_USER, GIT_PASSWORD).await,
            root,
        }
    }

    fn repo_dir(&self, namespace: &str) -> PathBuf {
        self.root.path().join(namespace)
    }
}

/// Everything one round leaves behind, with namespaces left out so that runs in different
/// namespaces compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndState {
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// `Kind/name` of the Sync's inventory.
    pub inventory: Vec<String>,
    /// The Sync applied the commit at the head of the repository.
    pub applied_head: bool,
}

/// The workloads of one namespace.
pub struct Workloads {
    pub namespace: String,
    client: kube::Client,
    kubeconfig: PathBuf,
    repo: GitRepo,
    aws: aws_sdk_secretsmanager::Client,
    /// The commit of each round.
    commits: std::sync::Mutex<BTreeMap<u32, String>>,
}

impl Workloads {
    /// Creates the namespace and round 0 of every workload, without waiting for any result.
    /// `client` and `kubeconfig` reach the API server directly (`sigil seal` reads the published
    /// recipients with the latter).
    pub async fn create(
        client: &kube::Client,
        kubeconfig: &Path,
        backends: &Backends,
        namespace: &str,
    ) -> Workloads {
        create_namespace(client, namespace).await;
        let workloads = Workloads {
            namespace: namespace.to_string(),
            client: client.clone(),
            kubeconfig: kubeconfig.to_path_buf(),
            repo: GitRepo::init(&backends.repo_dir(namespace)),
            aws: backends.moto.client().await,
            commits: std::sync::Mutex::default(),
        };
        workloads.set_round(0).await;
        moto::create_store(client, namespace, &backends.moto.endpoint).await;
        workloads.create_git_objects(backends).await;
        workloads
            .create_object::<ExternalSecret>(&format!(
                "apiVersion: sigil.dev/v1alpha1\nkind: ExternalSecret\nmetadata:\n  name: {EXTERNAL}\n  namespace: {namespace}\nspec:\n  refreshInterval: 1s\n  secretStoreRef: {{name: aws, kind: SecretStore}}\n  target: {{name: {EXTERNAL}}}\n  data:\n    - secretKey: user\n      remoteRef: {{key: {}, property: user}}\n    - secretKey: password\n      remoteRef: {{key: {}, property: password}}\n",
                workloads.remote_key(),
                workloads.remote_key()
            ))
            .await;
        workloads
    }

    /// Creates the object of `yaml` in the namespace.
    async fn create_object<K>(&self, yaml: &str)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::Serialize
            + serde::de::DeserializeOwned,
    {
        create_object::<K>(&self.client, &self.namespace, yaml).await;
    }

    async fn create_git_objects(&self, backends: &Backends) {
        let namespace = &self.namespace;
        let ca = backends.git.ca_pem.replace('\n', "\n    ");
        self.create_object::<Secret>(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: git-auth\n  namespace: {namespace}\nstringData:\n  username: {GIT_USER}\n  password: {GIT_PASSWORD}\n  ca.crt: |\n    {ca}\n"
        ))
        .await;
        self.create_object::<GitSource>(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: GitSource\nmetadata:\n  name: {FLEET}\n  namespace: {namespace}\nspec:\n  url: {}\n  ref: {{branch: main}}\n  interval: 1s\n  secretRef: {{name: git-auth}}\n",
            backends.git.url(namespace)
        ))
        .await;
        self.create_object::<ManifestSync>(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: {FLEET}\n  namespace: {namespace}\nspec:\n  sourceRef: {{kind: GitSource, name: {FLEET}}}\n  path: apps\n  interval: 1s\n  prune: true\n"
        ))
        .await;
    }

    fn remote_key(&self) -> String {
        format!("{}/{EXTERNAL}", self.namespace)
    }

    /// Moves every workload to `round`: the SealedSecret re-sealed, the remote value rotated, and
    /// a commit that changes `settings`, adds `round-N` and removes `round-(N-1)` (a prune).
    pub async fn set_round(&self, round: u32) {
        self.seal_round(round).await;
        self.restore_remote(round).await;
        self.commit_round(round);
    }

    /// Re-seals the SealedSecret with the values of `round`.
    pub async fn seal_round(&self, round: u32) {
        let sealed = sealed_data(round);
        let sealed: Vec<(&str, &str)> = sealed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        apply_sealed_secret(
            &self.client,
            &self.kubeconfig,
            &self.namespace,
            SEALED,
            &sealed,
        )
        .await;
    }

    /// Commits the folder of `round`.
    pub fn commit_round(&self, round: u32) {
        if round > 0 {
            self.repo.remove(&format!("apps/round-{}.yaml", round - 1));
        }
        for (name, data) in synced_config_maps(round) {
            let data: String = data
                .iter()
                .map(|(k, v)| format!("  {k}: \"{v}\"\n"))
                .collect();
            self.repo.write(
                &format!("apps/{name}.yaml"),
                &format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{{WORKLOAD_LABEL}: {FLEET}}}\ndata:\n{data}"
                ),
            );
        }
        let commit = self.repo.commit(&format!("round {round}"));
        self.commits.lock().expect("commits").insert(round, commit);
    }

    /// The commit of `round`.
    pub fn head_of_round(&self, round: u32) -> String {
        self.commits.lock().expect("commits")[&round].clone()
    }

    /// Writes the remote value of `round` (also into a moto that restarted empty).
    pub async fn restore_remote(&self, round: u32) {
        moto::upsert(&self.aws, &self.remote_key(), &remote_value(round)).await;
    }

    /// What every workload holds once `round` converged: what a clean run leaves.
    pub fn expected(round: u32) -> EndState {
        EndState {
            secrets: BTreeMap::from([
                (SEALED.to_string(), sealed_data(round)),
                (EXTERNAL.to_string(), external_data(round)),
            ]),
            config_maps: synced_config_maps(round),
            inventory: {
                let mut names: Vec<String> = synced_config_maps(round)
                    .into_keys()
                    .map(|name| format!("ConfigMap/{name}"))
                    .collect();
                names.sort();
                names
            },
            applied_head: true,
        }
    }

    /// What the workloads hold now.
    pub async fn state(&self) -> EndState {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut secret_data = BTreeMap::new();
        for name in [SEALED, EXTERNAL] {
            if let Some(secret) = secrets.get_opt(name).await.expect("read a Secret") {
                secret_data.insert(name.to_string(), super::versions::data_of(&secret));
            }
        }
        let config_maps = Api::<ConfigMap>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default().labels(&format!("{WORKLOAD_LABEL}={FLEET}")))
            .await
            .expect("list ConfigMaps")
            .items
            .into_iter()
            .map(|cm| {
                (
                    cm.metadata.name.clone().unwrap_or_default(),
                    cm.data.unwrap_or_default(),
                )
            })
            .collect();
        let sync = self.sync().await;
        let status = sync.status.unwrap_or_default();
        let mut inventory: Vec<String> = status
            .inventory
            .iter()
            .map(|e| format!("{}/{}", e.kind, e.name))
            .collect();
        inventory.sort();
        let head = self.repo.head();
        EndState {
            secrets: secret_data,
            config_maps,
            inventory,
            applied_head: status
                .last_applied_revision
                .is_some_and(|r| r.ends_with(&format!("sha1:{head}"))),
        }
    }

    /// Waits (bounded) until the workloads hold `round` as a clean run leaves it; panics with
    /// the state it saw last and `log()`.
    pub async fn wait_round(&self, round: u32, limit: Duration, log: impl Fn() -> String) {
        let expected = Workloads::expected(round);
        let last = std::cell::RefCell::new(None);
        let reached = kube_devserver::testing::poll(limit, Duration::from_millis(100), || async {
            let state = self.state().await;
            let done = state == expected;
            *last.borrow_mut() = Some(state);
            done.then_some(())
        })
        .await;
        if reached.is_none() {
            panic!(
                "{}: round {round} not reached within {limit:?}\nexpected {expected:#?}\nlast seen {:#?}\nSync status: {:#?}\n{}",
                self.namespace,
                last.into_inner(),
                self.sync().await.status,
                log()
            );
        }
    }

    pub async fn sync(&self) -> ManifestSync {
        Api::<ManifestSync>::namespaced(self.client.clone(), &self.namespace)
            .get(FLEET)
            .await
            .expect("get the Sync")
    }

    /// The `Ready` conditions of the ExternalSecret and of the GitSource.
    pub async fn external_and_source_ready(&self) -> (Option<Condition>, Option<Condition>) {
        let es = Api::<ExternalSecret>::namespaced(self.client.clone(), &self.namespace)
            .get(EXTERNAL)
            .await
            .expect("get the ExternalSecret");
        let source = Api::<GitSource>::namespaced(self.client.clone(), &self.namespace)
            .get(FLEET)
            .await
            .expect("get the GitSource");
        (
            ready(es.status.map(|s| s.conditions)),
            ready(source.status.map(|s| s.conditions)),
        )
    }

    /// Starts recording every version of the namespace's Secrets and ConfigMaps.
    pub async fn watch(&self) -> Watched {
        Watched {
            secrets: Versions::secrets(&self.client, &self.namespace).await,
            config_maps: Versions::config_maps(&self.client, &self.namespace).await,
        }
    }

    /// How many times Events were emitted about each of the workloads' objects (an Event
    /// repeated as a series counts each time), by `Kind/name`.
    pub async fn event_counts(&self) -> BTreeMap<String, i32> {
        event_counts(&self.client, &self.namespace).await
    }
}

/// How many times Events were emitted about each object of `namespace` (an Event repeated as a
/// series counts each time), by `Kind/name`.
pub async fn event_counts(client: &kube::Client, namespace: &str) -> BTreeMap<String, i32> {
    let events = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items;
    let mut counts = BTreeMap::new();
    for event in events {
        let Some(regarding) = event.regarding else {
            continue;
        };
        let about = format!(
            "{}/{}",
            regarding.kind.unwrap_or_default(),
            regarding.name.unwrap_or_default()
        );
        *counts.entry(about).or_default() += event.series.map_or(1, |s| s.count.max(1));
    }
    counts
}

/// Creates the object of `yaml` in `namespace`.
pub async fn create_object<K>(client: &kube::Client, namespace: &str, yaml: &str)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let object: K = sigil::yaml::from_str(yaml).expect("a test manifest");
    Api::<K>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create a {} in {namespace}: {e}", K::kind(&())));
}

fn ready(conditions: Option<Vec<Condition>>) -> Option<Condition> {
    conditions::find(&conditions.unwrap_or_default(), conditions::READY).cloned()
}

/// The versions a round's watch saw.
pub struct Watched {
    pub secrets: Versions,
    pub config_maps: Versions,
}

impl Watched {
    /// Panics on the first Secret version that was not one whole round (or a deletion), and on
    /// any deletion of a ConfigMap every revision keeps. Returns how many versions it checked.
    pub fn assert_never_torn(&self) -> usize {
        let secrets = self.secrets.assert_whole(&[SEALED, EXTERNAL], whole);
        let config_maps = self
            .config_maps
            .assert_whole(&[KEPT, SETTINGS], |_, data| !data.is_empty());
        secrets + config_maps
    }

    /// Panics when a `round-N` ConfigMap was pruned before the whole next revision was applied
    /// (`settings` at round N+1 and `round-(N+1)` seen first): pruning after a failed apply.
    pub fn assert_pruned_only_after_applies(&self) -> usize {
        let versions = self.config_maps.all();
        let mut prunes = 0;
        for (at, version) in versions.iter().enumerate() {
            let Some(round) = version
                .name
                .strip_prefix("round-")
                .and_then(|r| r.parse::<u32>().ok())
            else {
                continue;
            };
            if !version.deleted {
                continue;
            }
            let next = (round + 1).to_string();
            let before = &versions[..at];
            let applied = |name: &str| {
                before
                    .iter()
                    .any(|v| v.name == name && !v.deleted && v.data.get("round") == Some(&next))
            };
            assert!(
                applied(SETTINGS) && applied(&format!("round-{next}")),
                "round-{round} was pruned before revision {next} was applied whole"
            );
            prunes += 1;
        }
        prunes
    }
}

/// Whether `data` is exactly one round of the Secret `name`.
pub fn whole(name: &str, data: &BTreeMap<String, String>) -> bool {
    let round = |value: Option<&String>, prefix: &str| -> Option<u32> {
        value?.strip_prefix(prefix)?.parse().ok()
    };
    match name {
        SEALED => round(data.get("a"), "sealed-a-r").is_some_and(|r| *data == sealed_data(r)),
        EXTERNAL => round(data.get("user"), "user-r").is_some_and(|r| *data == external_data(r)),
        _ => false,
    }
}

/// Whether every Secret written through a proxy (`written`) is one whole round.
pub fn assert_written_whole(written: &[Secret]) -> usize {
    for secret in written {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let data = super::versions::data_of(secret);
        assert!(
            whole(&name, &data),
            "a write answered with Secret {name} half-written or emptied: keys {:?}",
            data.keys().collect::<Vec<_>>()
        );
    }
    written.len()
}

fn sealed_data(round: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("a".to_string(), format!("sealed-a-r{round}")),
        ("b".to_string(), format!("sealed-b-r{round}")),
    ])
}

fn external_data(round: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("user".to_string(), format!("user-r{round}")),
        ("password".to_string(), format!("password-r{round}")),
    ])
}

fn remote_value(round: u32) -> String {
    serde_json::to_string(&external_data(round)).expect("JSON")
}

fn synced_config_maps(round: u32) -> BTreeMap<String, BTreeMap<String, String>> {
    BTreeMap::from([
        (
            KEPT.to_string(),
            BTreeMap::from([("kept".to_string(), "always".to_string())]),
        ),
        (
            SETTINGS.to_string(),
            BTreeMap::from([("round".to_string(), round.to_string())]),
        ),
        (
            format!("round-{round}"),
            BTreeMap::from([("round".to_string(), round.to_string())]),
        ),
    ])
}
