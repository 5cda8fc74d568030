//! Input limits, one test each, through the real controller (or the real CLI): every oversized,
//! escaping or malformed input is refused with a message naming the object and the field (or
//! file), never a panic, never a Secret half-written or replaced, never a value in the message.
//! Each controller case first converges on a good input, then meets the bad one, so the test also
//! shows the last good state is kept: the Secret keeps its data, the Sync its objects and its
//! last applied revision (nothing pruned).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use sigil::api::conditions;
use sigil::api::sealed_secret::SealedSecret;
use sigil::api::sync::ManifestSync;
use sigil::crypto::sealing::{ARMOR_BEGIN, ARMOR_END, MAX_ARMORED_LEN};
use sigil::secret_size::MAX_SECRET_BYTES;

use crate::support::git_repo::GitRepo;
use crate::support::gitops::{GitOps, fleet_source_yaml, ready};
use crate::support::objects::wait_for_recipients;

const NS: &str = "limits";
const WAIT: Duration = Duration::from_secs(30);
/// In every value and every refused file: no message may quote it.
const MARKER: &str = "limits-marker-plaintext-9c1e";

fn assert_no_marker(what: &str, message: &str) {
    assert!(
        !message.contains(MARKER),
        "{what}: the message quotes a value: {message}"
    );
}

// --- SealedSecrets -------------------------------------------------------------------------

/// A SealedSecret `db` in [`NS`] whose Secret holds `password`, and the cluster it runs in.
struct Sealed {
    ops: GitOps,
    recipients: Vec<age::x25519::Recipient>,
}

impl Sealed {
    async fn start() -> Sealed {
        let ops = GitOps::start().await;
        ops.cluster.namespace(NS).await;
        let text = wait_for_recipients(&ops.client(), WAIT).await;
        let recipients = sigil::crypto::recipients::parse_list(&text).expect("recipients");
        let sealed = Sealed { ops, recipients };
        sealed
            .apply(&[("password", MARKER.as_bytes().to_vec())])
            .await;
        sealed.wait_ready("True", "").await;
        assert_eq!(sealed.secret_keys().await, ["password"]);
        sealed
    }

    fn seal(&self, value: &[u8]) -> String {
        let binding =
            sigil::crypto::Binding::new(Default::default(), Some(NS), Some("db")).expect("binding");
        sigil::crypto::sealing::seal(value, &binding, &self.recipients).expect("seal")
    }

    /// Applies `db` with these values sealed and `extra` armored values as they are.
    async fn apply_with(&self, values: &[(&str, Vec<u8>)], extra: &[(&str, String)]) {
        let mut encrypted: std::collections::BTreeMap<String, String> = values
            .iter()
            .map(|(k, v)| (k.to_string(), self.seal(v)))
            .collect();
        encrypted.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let object = serde_json::json!({
            "apiVersion": "sigil.dev/v1alpha1",
            "kind": "SealedSecret",
            "metadata": {"name": "db", "namespace": NS},
            "spec": {"encryptedData": encrypted},
        });
        Api::<SealedSecret>::namespaced(self.ops.client(), NS)
            .patch(
                "db",
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&object),
            )
            .await
            .expect("apply the SealedSecret");
    }

    async fn apply(&self, values: &[(&str, Vec<u8>)]) {
        self.apply_with(values, &[]).await;
    }

    /// Waits until `db`'s Ready condition of its current generation has `status` (and `reason`,
    /// unless empty).
    async fn wait_ready(&self, status: &str, reason: &str) -> Condition {
        let api = Api::<SealedSecret>::namespaced(self.ops.client(), NS);
        crate::support::gitops::wait_for(
            &format!("SealedSecret {NS}/db Ready={status} {reason}"),
            WAIT,
            || async {
                let object = api.get("db").await.ok()?;
                let status_ = object.status?;
                let condition = conditions::find(&status_.conditions, conditions::READY)?.clone();
                (condition.status == status
                    && (reason.is_empty() || condition.reason == reason)
                    && condition.observed_generation == object.metadata.generation)
                    .then_some(condition)
            },
        )
        .await
    }

    async fn secret_keys(&self) -> Vec<String> {
        let secret = Api::<Secret>::namespaced(self.ops.client(), NS)
            .get("db")
            .await
            .expect("the Secret");
        let data = secret.data.unwrap_or_default();
        assert_eq!(
            data.get("password").map(|v| v.0.as_slice()),
            Some(MARKER.as_bytes()),
            "the Secret keeps its last good value"
        );
        data.into_keys().collect()
    }
}

#[tokio::test]
async fn sealed_value_over_the_armored_limit_is_refused_and_the_secret_kept() {
    let sealed = Sealed::start().await;
    let huge = format!(
        "{ARMOR_BEGIN}\n{}\n{ARMOR_END}\n",
        "A".repeat(MAX_ARMORED_LEN)
    );
    sealed
        .apply_with(
            &[("password", MARKER.as_bytes().to_vec())],
            &[("huge", huge)],
        )
        .await;
    let refused = sealed.wait_ready("False", "DecryptFailed").await;
    assert!(
        refused.message.contains(&format!(
            "spec.encryptedData.huge: sealed value is larger than {MAX_ARMORED_LEN} bytes"
        )),
        "{refused:?}"
    );
    assert_no_marker("armored limit", &refused.message);
    assert_eq!(sealed.secret_keys().await, ["password"]);
    eprintln!("limit: sealed value: {}", refused.message);
}

#[tokio::test]
async fn sealed_values_over_a_secrets_size_in_total_are_refused_and_the_secret_kept() {
    let sealed = Sealed::start().await;
    // Each value is far under the armored limit; together they come close to a Secret's 1 MiB
    // (accepted: the limit is Kubernetes' own), then pass it.
    let half = |c: u8, len: usize| [MARKER.as_bytes(), &vec![c; len][..]].concat();
    let under = MAX_SECRET_BYTES / 2 - 1024;
    sealed
        .apply(&[
            ("password", MARKER.as_bytes().to_vec()),
            ("a", half(b'a', under)),
            ("b", half(b'b', under)),
        ])
        .await;
    sealed.wait_ready("True", "").await;
    assert_eq!(sealed.secret_keys().await, ["a", "b", "password"]);
    let over = MAX_SECRET_BYTES / 2 + 1024;
    sealed
        .apply(&[
            ("password", MARKER.as_bytes().to_vec()),
            ("a", half(b'A', over)),
            ("b", half(b'B', over)),
        ])
        .await;
    let refused = sealed.wait_ready("False", "InvalidSpec").await;
    assert!(
        refused
            .message
            .starts_with("spec.encryptedData: the Secret would hold")
            && refused.message.contains(&MAX_SECRET_BYTES.to_string()),
        "{refused:?}"
    );
    assert_no_marker("Secret size", &refused.message);
    assert_eq!(sealed.secret_keys().await, ["a", "b", "password"]);
    let secret = Api::<Secret>::namespaced(sealed.ops.client(), NS)
        .get("db")
        .await
        .expect("the Secret");
    assert_eq!(
        secret.data.unwrap_or_default()["a"].0,
        half(b'a', under),
        "the Secret keeps the values it had"
    );
    eprintln!("limit: sealed total: {}", refused.message);
}

// --- Webhooks ------------------------------------------------------------------------------

#[tokio::test]
async fn webhook_body_over_the_limit_gets_413_and_triggers_nothing() {
    use sigil::server::hooks::MAX_BODY_BYTES;
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write("apps/keep.yaml", &configmap_yaml("first"));
    repo.commit("first");
    let ops = GitOps::start().await;
    ops.cluster.namespace(NS).await;
    ops.create_webhook_source(NS, &repo.url(), MARKER).await;
    let http = crate::support::http::client();
    let url = format!("http://{}/hooks/{NS}/fleet", ops.http);
    let post = |body: Vec<u8>| {
        http.post(&url)
            .header("X-Gitlab-Token", MARKER)
            .body(body)
            .send()
    };
    let answer = post(vec![b' '; MAX_BODY_BYTES + 1])
        .await
        .expect("oversized call");
    assert_eq!(answer.status(), 413);
    let text = answer.text().await.expect("answer");
    assert!(
        text.contains(&format!("larger than {MAX_BODY_BYTES} bytes")),
        "{text}"
    );
    let annotations = ops.source(NS, "fleet").await.metadata.annotations;
    assert!(
        annotations.is_none_or(|a| !a.contains_key("sigil.dev/reconcile-requested-at")),
        "an oversized call requests no fetch"
    );
    // The same call with a small body is accepted: the limit is about size only.
    let answer = post(br#"{"ref":"refs/heads/main"}"#.to_vec())
        .await
        .expect("small call");
    assert_eq!(answer.status(), 202);
    let metrics = crate::support::http::get(format!("http://{}/metrics", ops.http))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(
        metrics.contains("sigil_webhook_calls_total{outcome=\"too_large\"} 1"),
        "{metrics}"
    );
    eprintln!("limit: webhook body: 413 {}", text.trim());
}

// --- ExternalSecrets -----------------------------------------------------------------------

mod external {
    use std::time::Duration;

    use sigil::api::{ExternalSecret, SecretStore};
    use sigil::secret_size::MAX_SECRET_BYTES;

    use super::{MARKER, assert_no_marker};
    use crate::support::external::{self, Env, ready_reason};
    use crate::support::openbao::{OpenBao, ROOT_TOKEN};

    const WAIT: Duration = Duration::from_secs(30);

    /// OpenBao holding `app/big` = {"value": `value`}, and the ExternalSecret `big` of namespace
    /// `app` reading it every second through `spec` (after `secretStoreRef`), converged.
    async fn start(value: &str, spec: &str) -> (OpenBao, Env) {
        let bao = OpenBao::start().await;
        bao.put_v1("app/big", serde_json::json!({ "value": value }))
            .await;
        let env = external::start(|_| {}).await;
        env.namespace("app", &[]).await;
        env.secret("app", "bao", &[("token", ROOT_TOKEN)]).await;
        env.apply::<SecretStore>(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: SecretStore\nmetadata: {{name: bao, namespace: app}}\nspec:\n  provider:\n    vault:\n      server: {}\n      path: kv1\n      version: v1\n      auth:\n        tokenSecretRef: {{name: bao, key: token}}\n",
            bao.address
        ))
        .await;
        env.apply::<ExternalSecret>(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: ExternalSecret\nmetadata: {{name: big, namespace: app}}\nspec:\n  secretStoreRef: {{name: bao}}\n  refreshInterval: 1s\n{spec}"
        ))
        .await;
        env.wait_condition("app", "big", "True", WAIT).await;
        (bao, env)
    }

    /// Puts `value` at `app/big`; waits until `big` says why it cannot be written; checks the
    /// Secret still holds `kept` under `key`. Returns the condition's reason and message.
    async fn refused(
        bao: &OpenBao,
        env: &Env,
        value: &str,
        key: &str,
        kept: &str,
    ) -> (String, String) {
        bao.put_v1("app/big", serde_json::json!({ "value": value }))
            .await;
        let es = env.wait_condition("app", "big", "False", WAIT).await;
        let (reason, message) = ready_reason(&es);
        assert_no_marker("ExternalSecret", &message);
        let data = env.secret_data("app", "big").await.expect("the Secret");
        assert_eq!(
            data.get(key).map(String::as_str),
            Some(kept),
            "the Secret keeps its last good value"
        );
        // It stays refused over several refreshes, and the Secret untouched.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (again, _) = ready_reason(&env.external_secret("app", "big").await);
        assert_eq!(again, reason);
        assert_eq!(env.secret_data("app", "big").await, Some(data));
        (reason, message)
    }

    #[tokio::test]
    async fn backend_value_over_a_secrets_size_is_refused_and_the_secret_kept() {
        let small = format!("{MARKER}-small");
        let (bao, env) = start(
            &small,
            "  data:\n    - secretKey: value\n      remoteRef: {key: app/big, property: value}\n",
        )
        .await;
        let huge = format!("{MARKER}{}", "x".repeat(MAX_SECRET_BYTES + 1));
        let (reason, message) = refused(&bao, &env, &huge, "value", &small).await;
        assert!(
            message.contains("spec.data, spec.dataFrom: the Secret would hold")
                && message.contains("largest: key \"value\""),
            "{reason}: {message}"
        );
        eprintln!("limit: backend value: {reason}: {message}");
    }

    #[tokio::test]
    async fn template_output_over_a_secrets_size_is_refused_and_the_secret_kept() {
        // Four copies of a value a quarter of the limit: only the rendered output is too large.
        let (bao, env) = start(
            "s",
            "  target:\n    template:\n      data:\n        big: \"{{ .value }}{{ .value }}{{ .value }}{{ .value }}\"\n  data:\n    - secretKey: value\n      remoteRef: {key: app/big, property: value}\n",
        )
        .await;
        let quarter = format!("{MARKER}{}", "x".repeat(MAX_SECRET_BYTES / 4));
        let (reason, message) = refused(&bao, &env, &quarter, "big", "ssss").await;
        assert!(
            message.contains("spec.target.template.data: the Secret would hold")
                && message.contains("largest: key \"big\""),
            "{reason}: {message}"
        );
        eprintln!("limit: template output: {reason}: {message}");
    }
}

// --- Syncs ---------------------------------------------------------------------------------

fn configmap_yaml(mode: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n  namespace: {NS}\ndata:\n  mode: \"{mode}\"\n"
    )
}

fn revision(commit: &str) -> String {
    format!("main@sha1:{commit}")
}

/// A Sync `fleet` of `apps/` (prune on, every second) that applied a first commit holding the
/// ConfigMap `keep`.
struct Fleet {
    _tmp: tempfile::TempDir,
    repo: GitRepo,
    ops: GitOps,
    first: String,
}

impl Fleet {
    async fn start() -> Fleet {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = GitRepo::init(&tmp.path().join("fleet"));
        // Big blobs are stored whole, without a delta search.
        repo.git(&["config", "core.bigFileThreshold", "1m"]);
        repo.write("apps/keep.yaml", &configmap_yaml("first"));
        let first = repo.commit("first");
        let ops = GitOps::start().await;
        ops.cluster.namespace(NS).await;
        ops.create_source(NS, &fleet_source_yaml(&repo.url(), "1s", ""))
            .await;
        ops.create_sync(
            NS,
            "apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: fleet\nspec:\n  sourceRef:\n    name: fleet\n  path: apps\n  interval: 1s\n  prune: true\n",
        )
        .await;
        let applied = revision(&first);
        ops.wait_sync(NS, "fleet", "the first commit applied", WAIT, |s| {
            s.status
                .as_ref()
                .and_then(|st| st.last_applied_revision.as_deref())
                == Some(applied.as_str())
                && ready(s).is_some_and(|(status, _, _)| status == "True")
        })
        .await;
        Fleet {
            _tmp: tmp,
            repo,
            ops,
            first,
        }
    }

    /// Commits `change` (with `keep` moved on, so that applying anything would show), waits
    /// until the Sync refused that commit with `reason`, and checks nothing moved. Returns the
    /// Ready message.
    async fn refuses(&self, what: &str, reason: &str, change: impl FnOnce(&GitRepo)) -> String {
        self.repo.write("apps/keep.yaml", &configmap_yaml("second"));
        change(&self.repo);
        let attempted = revision(&self.repo.commit(what));
        let sync = self
            .ops
            .wait_sync(NS, "fleet", what, Duration::from_secs(60), |s| {
                s.status
                    .as_ref()
                    .and_then(|st| st.last_attempted_revision.as_deref())
                    == Some(attempted.as_str())
                    && ready(s).is_some_and(|(status, r, _)| status == "False" && r == reason)
            })
            .await;
        let (_, _, message) = ready(&sync).expect("Ready");
        self.assert_kept(what, &message).await;
        message
    }

    /// Waits until the Sync's Ready is False with `reason` for its current generation.
    async fn wait_refused(&self, what: &str, reason: &str) -> String {
        let sync = self
            .ops
            .wait_sync(NS, "fleet", what, WAIT, |s| {
                s.status.as_ref().and_then(|st| st.observed_generation) == s.metadata.generation
                    && ready(s).is_some_and(|(status, r, _)| status == "False" && r == reason)
            })
            .await;
        let (_, _, message) = ready(&sync).expect("Ready");
        self.assert_kept(what, &message).await;
        message
    }

    /// The first commit's objects, inventory and applied revision are all still there.
    async fn assert_kept(&self, what: &str, message: &str) {
        assert_no_marker(what, message);
        let keep = Api::<ConfigMap>::namespaced(self.ops.client(), NS)
            .get_opt("keep")
            .await
            .expect("read keep")
            .unwrap_or_else(|| panic!("{what}: `keep` was pruned"));
        assert_eq!(
            keep.data
                .unwrap_or_default()
                .get("mode")
                .map(String::as_str),
            Some("first"),
            "{what}: nothing of the refused revision is applied"
        );
        let status = self.ops.sync(NS, "fleet").await.status.unwrap_or_default();
        assert_eq!(
            status.last_applied_revision,
            Some(revision(&self.first)),
            "{what}"
        );
        let inventory: Vec<String> = status
            .inventory
            .iter()
            .map(|e| format!("{}/{}", e.kind, e.name))
            .collect();
        assert_eq!(inventory, ["ConfigMap/keep"], "{what}");
    }

    async fn set_path(&self, path: &str) {
        let patch = serde_json::json!({"spec": {"path": path}});
        Api::<ManifestSync>::namespaced(self.ops.client(), NS)
            .patch("fleet", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch spec.path");
    }
}

#[tokio::test]
async fn sync_path_climbing_out_or_absolute_is_refused() {
    let fleet = Fleet::start().await;
    fleet.set_path("apps/../../outside").await;
    let climbing = fleet
        .wait_refused("spec.path with ..", "PathNotFound")
        .await;
    assert!(
        climbing.contains("spec.path: path \"apps/../../outside\": must not contain `..`"),
        "{climbing}"
    );
    fleet.set_path("/etc").await;
    let absolute = fleet
        .wait_refused("absolute spec.path", "PathNotFound")
        .await;
    assert!(
        absolute.contains("spec.path: path \"/etc\": must be relative to the repository root"),
        "{absolute}"
    );
    eprintln!("limit: spec.path: {climbing} / {absolute}");
}

#[tokio::test]
async fn symlink_escaping_the_repository_is_refused() {
    let fleet = Fleet::start().await;
    let relative = fleet
        .refuses("escaping symlink", "ArtifactRefused", |repo| {
            repo.symlink("apps/escape.yaml", "../../../../etc/passwd");
        })
        .await;
    assert!(
        relative.contains(
            "apps/escape.yaml: symlink points outside the repository (\"../../../../etc/passwd\")"
        ),
        "{relative}"
    );
    let absolute = fleet
        .refuses("absolute symlink", "ArtifactRefused", |repo| {
            repo.remove("apps/escape.yaml");
            repo.symlink("apps/absolute.yaml", "/etc/hostname");
        })
        .await;
    assert!(
        absolute.contains("apps/absolute.yaml: symlink points outside the repository"),
        "{absolute}"
    );
    eprintln!("limit: symlink: {relative}");
}

#[tokio::test]
async fn non_utf8_manifest_is_refused() {
    let fleet = Fleet::start().await;
    let message = fleet
        .refuses("a Latin-1 file", "ParseFailed", |repo| {
            let latin1 = [
                b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: latin\ndata:\n  v: \"caf\xe9 "
                    .as_slice(),
                MARKER.as_bytes(),
                b"\"\n".as_slice(),
            ]
            .concat();
            std::fs::write(repo.dir.join("apps/latin1.yaml"), latin1).expect("write");
        })
        .await;
    assert!(
        message.contains("apps/latin1.yaml:1: not UTF-8"),
        "{message}"
    );
    eprintln!("limit: non-UTF-8: {message}");
}

#[tokio::test]
async fn file_over_the_per_file_limit_is_refused() {
    let limit = sigil::git::TreeLimits::default().max_file_bytes;
    let fleet = Fleet::start().await;
    let message = fleet
        .refuses("a huge file", "ArtifactRefused", |repo| {
            let body = format!("# {MARKER}\n{}", "#".repeat(limit as usize));
            repo.write("apps/huge.yaml", &body);
        })
        .await;
    assert!(
        message.contains(&format!(
            "apps/huge.yaml: {} bytes is more than the {limit}-byte limit per file",
            limit + MARKER.len() as u64 + 3
        )),
        "{message}"
    );
    eprintln!("limit: file: {message}");
}

#[tokio::test]
async fn tree_over_the_file_count_limit_is_refused() {
    let limit = sigil::git::TreeLimits::default().max_files;
    let fleet = Fleet::start().await;
    let message = fleet
        .refuses("too many files", "ArtifactRefused", |repo| {
            for i in 0..limit {
                repo.write(&format!("apps/many/{i:05}.yaml"), "# empty\n");
            }
        })
        .await;
    assert!(
        message.contains(&format!("more than {limit} files under \"apps\"")),
        "{message}"
    );
    eprintln!("limit: file count: {message}");
}

#[tokio::test]
async fn tree_over_the_total_size_limit_is_refused() {
    let limits = sigil::git::TreeLimits::default();
    let fleet = Fleet::start().await;
    let message = fleet
        .refuses("too many bytes", "ArtifactRefused", |repo| {
            // Files just under the per-file limit, until their sum passes the tree's.
            let size = limits.max_file_bytes as usize - 4096;
            let count = limits.max_total_bytes as usize / size + 1;
            for i in 0..count {
                let body = format!("# {MARKER} {i}\n{}", "#".repeat(size - 64));
                repo.write(&format!("apps/big/{i:02}.yaml"), &body);
            }
        })
        .await;
    assert!(
        message.contains(&format!(
            "the files under \"apps\" exceed the {}-byte limit for a tree",
            limits.max_total_bytes
        )),
        "{message}"
    );
    eprintln!("limit: tree bytes: {message}");
}

#[tokio::test]
async fn yaml_alias_bomb_is_refused() {
    let fleet = Fleet::start().await;
    let message = fleet
        .refuses("a YAML bomb", "ParseFailed", |repo| {
            // 11 levels of 10 aliases: 10^12 nodes once expanded, from a 1 KiB file.
            let mut bomb = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n  l0: &l0 [\"{MARKER}\", x, x, x, x, x, x, x, x, x]\n"
            );
            for i in 1..12 {
                let p = format!("*l{}", i - 1);
                let list = [p.as_str(); 10].join(", ");
                bomb.push_str(&format!("  l{i}: &l{i} [{list}]\n"));
            }
            repo.write("apps/bomb.yaml", &bomb);
        })
        .await;
    assert!(
        message.contains("apps/bomb.yaml:1: invalid YAML"),
        "{message}"
    );
    eprintln!("limit: YAML bomb: {message}");
}

// --- sigil seal ----------------------------------------------------------------------------

/// Runs `sigil seal ARGS` offline (one generated recipient) on `stdin`; returns its stderr after
/// checking it failed and printed nothing.
fn seal_fails(args: &[&str], stdin: &[u8]) -> String {
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    let output = crate::support::sealed::run(
        std::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args(["seal", "--recipient", &recipient])
            .args(args),
        stdin,
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "sigil seal {args:?} succeeded");
    assert!(
        output.stdout.is_empty(),
        "sigil seal {args:?} printed output"
    );
    assert_no_marker("sigil seal", &stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn secret_manifest(kind: &str, value: &str) -> Vec<u8> {
    format!(
        "apiVersion: v1\nkind: {kind}\nmetadata:\n  name: big\n  namespace: {NS}\nstringData:\n  value: \"{value}\"\n"
    )
    .into_bytes()
}

#[test]
fn seal_refuses_input_over_the_limit_and_what_is_not_a_secret() {
    let limit = sigil::git::TreeLimits::default().max_file_bytes;
    let over_a_secret = format!("{MARKER}{}", "x".repeat(MAX_SECRET_BYTES));
    let too_large = seal_fails(&[], &secret_manifest("Secret", &over_a_secret));
    assert!(
        too_large.contains(&format!(
            "stdin: Secret {NS}/big: data: the Secret would hold"
        )) && too_large.contains("largest: key \"value\""),
        "{too_large}"
    );
    let raw = seal_fails(
        &["--raw", "--namespace", NS, "--name", "big"],
        over_a_secret.as_bytes(),
    );
    assert!(raw.contains("stdin: --raw: the Secret would hold"), "{raw}");
    let huge_input = [
        secret_manifest("Secret", MARKER),
        vec![b'#'; limit as usize],
    ]
    .concat();
    let huge = seal_fails(&[], &huge_input);
    assert!(
        huge.contains(&format!(
            "stdin: more than {limit} bytes, the limit for a manifest file"
        )),
        "{huge}"
    );
    let not_a_secret = seal_fails(&[], &secret_manifest("ConfigMap", MARKER));
    assert!(
        not_a_secret.contains("stdin: expected a Secret manifest, found kind \"ConfigMap\""),
        "{not_a_secret}"
    );
    eprintln!("limit: sigil seal: {too_large} / {huge} / {not_a_secret}");
}
