//! The Helm chart (`deploy/charts/sigil`) checked with the real `helm`, and the Dockerfile checked
//! against the crate's real targets and features.

use crate::support::tools::tool;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NS: &str = "sigil-system";
const RELEASE: &str = "sigil";
const READ_VERBS: [&str; 3] = ["get", "list", "watch"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo().join("deploy/charts/sigil")
}

/// Runs helm with its own config, cache and data folders and no cluster.
fn helm(args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("temp dir");
    Command::new(tool("helm"))
        .args(args)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .env("KUBECONFIG", home.path().join("no-cluster.kubeconfig"))
        .output()
        .expect("run helm")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `helm template` with `--set` values; panics with helm's message when it fails.
fn render(set: &[&str]) -> Vec<Value> {
    let output = try_render(set);
    assert!(
        output.status.success(),
        "helm template {set:?} failed:\n{}",
        text(&output)
    );
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 manifests");
    sigil::yaml::documents(&stdout).expect("helm template renders valid YAML")
}

fn try_render(set: &[&str]) -> Output {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().expect("UTF-8 path"),
        "--namespace",
        NS,
    ];
    for value in set {
        args.extend(["--set", value]);
    }
    helm(&args)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().expect("metadata.name")
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn the_deployment(docs: &[Value]) -> &Value {
    let deployments = of_kind(docs, "Deployment");
    assert_eq!(deployments.len(), 1, "one Deployment");
    deployments[0]
}

fn controller_args(docs: &[Value]) -> Vec<String> {
    let container = &the_deployment(docs)["spec"]["template"]["spec"]["containers"][0];
    strings(&container["args"])
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[test]
fn helm_lint_passes_for_default_namespaced_and_full_values() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("UTF-8 path");
    for set in [
        vec![],
        vec!["rbac.namespaced=true"],
        vec![
            "serviceMonitor.enabled=true",
            "networkPolicy.enabled=true",
            "rbac.secretWriteNamespaces={apps,payments}",
            "rbac.sync.fallbackClusterRole=edit",
        ],
    ] {
        let mut args = vec!["lint", "--strict", chart, "--namespace", NS];
        for value in &set {
            args.extend(["--set", value]);
        }
        let output = helm(&args);
        assert!(
            output.status.success(),
            "helm lint {set:?}:\n{}",
            text(&output)
        );
        assert!(
            text(&output).contains("0 chart(s) failed"),
            "{}",
            text(&output)
        );
    }
}

#[test]
fn chart_crds_are_exactly_what_sigil_crds_prints() {
    let stale = "the chart's CRDs differ from `sigil crds`: run \
                 `scripts/gen-crds.sh`";
    let generated: BTreeMap<String, String> = sigil::api::rendered_crds()
        .expect("CRDs render")
        .into_iter()
        .map(|crd| (crd.file_name, crd.yaml))
        .collect();
    let files_dir = chart_dir().join("files/crds");
    let in_chart: BTreeMap<String, String> = std::fs::read_dir(&files_dir)
        .expect("deploy/charts/sigil/files/crds exists")
        .map(|entry| {
            let path = entry.expect("readable entry").path();
            let file = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            (
                file,
                std::fs::read_to_string(&path).expect("readable CRD file"),
            )
        })
        .collect();
    assert_eq!(
        in_chart.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "{stale}"
    );
    for (file, yaml) in &generated {
        if let Some((line, (ours, theirs))) = in_chart[file]
            .lines()
            .zip(yaml.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
        {
            panic!(
                "{file} line {}: chart has {ours:?}, sigil crds prints {theirs:?}; {stale}",
                line + 1
            );
        }
        assert_eq!(in_chart[file].len(), yaml.len(), "{file} length; {stale}");
    }

    // What helm renders is those CRDs, plus only the chart's labels and the keep policy.
    let expected: BTreeMap<String, Value> = generated
        .values()
        .map(|yaml| {
            let doc = sigil::yaml::documents(yaml).expect("CRD YAML").remove(0);
            (name(&doc).to_string(), doc)
        })
        .collect();
    let docs = render(&[]);
    let mut rendered: BTreeMap<String, Value> = BTreeMap::new();
    for crd in of_kind(&docs, "CustomResourceDefinition") {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep",
            "{} survives helm uninstall",
            name(crd)
        );
        assert_eq!(
            crd["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "Helm"
        );
        let mut crd = crd.clone();
        let metadata = crd["metadata"].as_object_mut().expect("metadata");
        metadata.remove("labels");
        metadata.remove("annotations");
        rendered.insert(name(&crd).to_string(), crd);
    }
    assert_eq!(rendered.len(), 7, "the seven CRDs");
    assert_eq!(
        rendered.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (crd, doc) in &expected {
        assert!(
            rendered[crd] == *doc,
            "helm renders {crd} differently from `sigil crds`"
        );
    }

    let without = render(&["crds.install=false"]);
    assert!(of_kind(&without, "CustomResourceDefinition").is_empty());
    let not_kept = render(&["crds.keep=false"]);
    assert!(
        of_kind(&not_kept, "CustomResourceDefinition")
            .iter()
            .all(|crd| crd["metadata"]["annotations"]["helm.sh/resource-policy"].is_null())
    );
}

#[test]
fn deployment_is_hardened_with_probes_and_limits() {
    let docs = render(&[]);
    let deployment = the_deployment(&docs);
    assert_eq!(deployment["metadata"]["namespace"], NS);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(pod["serviceAccountName"], "sigil");

    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert!(security["capabilities"]["add"].is_null());
    assert_ne!(security["privileged"], true);

    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][kind][resource].is_string(),
                "resources.{kind}.{resource} is set"
            );
        }
    }
    assert_eq!(container["ports"][0]["name"], "http");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "http");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "http");
    // A read-only root filesystem still needs scratch space.
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/tmp");
    assert!(pod["volumes"][0]["emptyDir"].is_object());

    assert_eq!(
        controller_args(&docs),
        [
            "controller",
            "--namespace=sigil-system",
            "--leader-elect",
            "--key-renew-period=720h",
            "--log-format=json"
        ]
    );
    let recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    let configured = render(&[
        "controller.leaderElect=false",
        &format!("controller.recoveryRecipients={{{recipient},{recipient}}}"),
        "controller.keyRenewPeriod=48h",
        "controller.logFormat=text",
    ]);
    let args = controller_args(&configured);
    assert!(!args.contains(&"--leader-elect".to_string()));
    assert_eq!(
        args.iter()
            .filter(|a| **a == format!("--recovery-recipient={recipient}"))
            .count(),
        2
    );
    assert!(args.contains(&"--key-renew-period=48h".to_string()));
    assert!(args.contains(&"--log-format=text".to_string()));
}

#[test]
fn sigil_controller_accepts_the_arguments_the_chart_passes() {
    let recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    let recipients = format!("controller.recoveryRecipients={{{recipient}}}");
    for set in [
        vec![recipients.as_str()],
        vec![recipients.as_str(), "rbac.namespaced=true"],
    ] {
        let args = controller_args(&render(&set));
        assert_eq!(args[0], "controller");
        // clap parses and validates every argument before the trailing --help; an unknown flag or a bad
        // value fails.
        let output = Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args(&args)
            .arg("--help")
            .output()
            .expect("run sigil");
        assert!(
            output.status.success(),
            "sigil refuses the chart's arguments {args:?} (values {set:?}):\n{}",
            text(&output)
        );
    }
}

/// Every Role and ClusterRole rendered, by name.
fn roles(docs: &[Value]) -> BTreeMap<String, &Value> {
    docs.iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
        .map(|d| (name(d).to_string(), d))
        .collect()
}

/// Whether some bound role of the controller allows `verb` on `group`/`resource`.
fn allowed(docs: &[Value], group: &str, resource: &str, verb: &str) -> bool {
    let roles = roles(docs);
    docs.iter()
        .filter(|d| d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding")
        .filter(|binding| {
            binding["subjects"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["kind"] == "ServiceAccount" && s["name"] == "sigil")
            })
        })
        .filter_map(|binding| roles.get(binding["roleRef"]["name"].as_str().unwrap_or_default()))
        .flat_map(|role| role["rules"].as_array().into_iter().flatten())
        .any(|rule| {
            strings(&rule["apiGroups"]).contains(&group)
                && strings(&rule["resources"]).contains(&resource)
                && strings(&rule["verbs"]).contains(&verb)
        })
}

const SIGIL_KINDS: [&str; 5] = [
    "sealedsecrets",
    "externalsecrets",
    "secretstores",
    "gitsources",
    "syncs",
];

fn assert_controller_permissions(docs: &[Value], cluster_scoped: bool) {
    let mut kinds = SIGIL_KINDS.to_vec();
    if cluster_scoped {
        kinds.push("clustersecretstores");
    }
    for kind in &kinds {
        for verb in READ_VERBS.iter().chain(&["patch"]) {
            assert!(allowed(docs, "sigil.dev", kind, verb), "{verb} {kind}");
        }
        assert!(
            allowed(docs, "sigil.dev", &format!("{kind}/status"), "patch"),
            "{kind}/status"
        );
        assert!(
            allowed(docs, "sigil.dev", &format!("{kind}/finalizers"), "update"),
            "{kind}/finalizers"
        );
    }
    for verb in [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ] {
        assert!(allowed(docs, "", "secrets", verb), "{verb} secrets");
    }
    for verb in ["get", "create", "update", "patch"] {
        assert!(allowed(docs, "", "configmaps", verb), "{verb} configmaps");
        assert!(
            allowed(docs, "coordination.k8s.io", "leases", verb),
            "{verb} leases"
        );
    }
    for group in ["", "events.k8s.io"] {
        assert!(
            allowed(docs, group, "events", "create"),
            "create events in {group:?}"
        );
    }
    for workload in ["deployments", "statefulsets", "daemonsets"] {
        for verb in ["get", "list", "patch"] {
            assert!(allowed(docs, "apps", workload, verb), "{verb} {workload}");
        }
    }
    assert!(allowed(docs, "", "serviceaccounts", "impersonate"));
    assert!(
        allowed(docs, "sigil.dev", "vaultdynamicsecrets", "get"),
        "generators ExternalSecrets name"
    );
    assert!(
        allowed(docs, "", "serviceaccounts/token", "create"),
        "TokenRequest for SecretStores' serviceAccountRef"
    );
}

#[test]
fn rbac_is_least_privilege_with_read_split_from_write() {
    let docs = render(&[]);
    let roles = roles(&docs);
    assert!(!roles.is_empty());
    for (role_name, role) in &roles {
        for rule in role["rules"].as_array().expect("rules") {
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                assert!(
                    !strings(&rule[field]).contains(&"*"),
                    "{role_name}: wildcard in {field}"
                );
            }
            let verbs = strings(&rule["verbs"]);
            if role_name.ends_with("-read") {
                assert!(
                    verbs.iter().all(|v| READ_VERBS.contains(v)),
                    "{role_name} writes: {verbs:?}"
                );
            }
            if strings(&rule["resources"]).contains(&"secrets")
                && !verbs.iter().all(|v| READ_VERBS.contains(v))
            {
                assert!(
                    role_name.ends_with("-secrets-write")
                        || role_name.ends_with("-namespace-write"),
                    "{role_name} writes Secrets"
                );
            }
        }
    }
    assert!(roles.keys().any(|n| n.ends_with("-read")));
    assert!(roles.keys().any(|n| n.ends_with("-write")));
    assert_controller_permissions(&docs, true);

    // Every binding points at a role the chart renders (or the documented fallback) and at the chart's
    // ServiceAccount.
    for binding in docs
        .iter()
        .filter(|d| d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding")
    {
        let role = binding["roleRef"]["name"].as_str().expect("roleRef.name");
        assert!(
            roles.contains_key(role),
            "{} refers to missing {role}",
            name(binding)
        );
        assert_eq!(binding["subjects"][0]["namespace"], NS);
    }
    assert_eq!(of_kind(&docs, "ServiceAccount").len(), 1);

    // Turning impersonation off removes that right.
    let without = render(&["rbac.sync.impersonate=false"]);
    assert!(!allowed(&without, "", "serviceaccounts", "impersonate"));
}

#[test]
fn secret_writes_can_be_limited_to_some_namespaces() {
    let docs = render(&["rbac.secretWriteNamespaces={apps,payments}"]);
    let secret_bindings: Vec<&Value> = docs
        .iter()
        .filter(|d| d["roleRef"]["name"] == "sigil-secrets-write")
        .collect();
    let mut namespaces: Vec<&str> = secret_bindings
        .iter()
        .map(|b| {
            assert_eq!(b["kind"], "RoleBinding", "not cluster-wide");
            b["metadata"]["namespace"].as_str().expect("namespace")
        })
        .collect();
    namespaces.sort_unstable();
    assert_eq!(namespaces, ["apps", "payments"]);
    // The sealing keys in the release namespace stay writable.
    assert!(allowed(&docs, "", "secrets", "create"));
    let default = render(&[]);
    assert!(default.iter().any(
        |d| d["kind"] == "ClusterRoleBinding" && d["roleRef"]["name"] == "sigil-secrets-write"
    ));
}

#[test]
fn namespaced_switch_renders_roles_and_rolebindings_only() {
    let docs = render(&["rbac.namespaced=true"]);
    assert!(of_kind(&docs, "ClusterRole").is_empty(), "no ClusterRole");
    assert!(
        of_kind(&docs, "ClusterRoleBinding").is_empty(),
        "no ClusterRoleBinding"
    );
    let roles = of_kind(&docs, "Role");
    let bindings = of_kind(&docs, "RoleBinding");
    assert!(
        roles.len() >= 4,
        "read, write, namespace-read, namespace-write"
    );
    assert_eq!(roles.len(), bindings.len());
    for object in roles.iter().chain(&bindings) {
        assert_eq!(object["metadata"]["namespace"], NS, "{}", name(object));
    }
    for role in &roles {
        for rule in role["rules"].as_array().expect("rules") {
            let resources = strings(&rule["resources"]);
            assert!(
                !resources
                    .iter()
                    .any(|r| r.starts_with("clustersecretstores") || *r == "namespaces")
            );
            assert!(!strings(&rule["verbs"]).contains(&"*"));
        }
    }
    assert_controller_permissions(&docs, false);
    let fallback = render(&["rbac.namespaced=true", "rbac.sync.fallbackClusterRole=edit"]);
    assert!(of_kind(&fallback, "ClusterRoleBinding").is_empty());
    assert!(
        of_kind(&fallback, "RoleBinding")
            .iter()
            .any(|b| b["roleRef"]["kind"] == "ClusterRole" && b["roleRef"]["name"] == "edit")
    );
    // Its Roles cover one namespace, so the controller must watch only that one.
    assert!(controller_args(&docs).contains(&format!("--watch-namespace={NS}")));
}

#[test]
fn sync_fallback_rights_come_only_from_values() {
    let docs = render(&[
        "rbac.sync.fallbackRules[0].apiGroups={apps}",
        "rbac.sync.fallbackRules[0].resources={deployments}",
        "rbac.sync.fallbackRules[0].verbs={get,create,patch}",
        "rbac.sync.fallbackClusterRole=edit",
    ]);
    assert!(allowed(&docs, "apps", "deployments", "create"));
    assert!(
        of_kind(&docs, "ClusterRoleBinding")
            .iter()
            .any(|b| b["roleRef"]["name"] == "edit" && b["subjects"][0]["name"] == "sigil")
    );
    let default = render(&[]);
    assert!(!allowed(&default, "apps", "deployments", "create"));
    assert!(!default.iter().any(|d| d["roleRef"]["name"] == "edit"));
}

#[test]
fn service_and_optional_objects_follow_their_switches() {
    let docs = render(&[]);
    let services = of_kind(&docs, "Service");
    assert_eq!(services.len(), 1);
    assert_eq!(services[0]["spec"]["ports"][0]["name"], "http");
    assert_eq!(services[0]["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(of_kind(&docs, "PodDisruptionBudget").len(), 1);
    assert!(of_kind(&docs, "ServiceMonitor").is_empty());
    assert!(of_kind(&docs, "NetworkPolicy").is_empty());

    let all = render(&[
        "serviceMonitor.enabled=true",
        "networkPolicy.enabled=true",
        "podDisruptionBudget.enabled=false",
    ]);
    let monitors = of_kind(&all, "ServiceMonitor");
    assert_eq!(monitors.len(), 1);
    assert_eq!(monitors[0]["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitors[0]["spec"]["endpoints"][0]["path"], "/metrics");
    let policies = of_kind(&all, "NetworkPolicy");
    assert_eq!(policies.len(), 1);
    assert_eq!(
        policies[0]["spec"]["ingress"][0]["ports"][0]["port"],
        "http"
    );
    assert!(of_kind(&all, "PodDisruptionBudget").is_empty());

    // Pods, Service, PDB, ServiceMonitor and NetworkPolicy all select the same pods.
    let pod_labels = &the_deployment(&all)["spec"]["template"]["metadata"]["labels"];
    let selectors = [
        &services[0]["spec"]["selector"],
        &monitors[0]["spec"]["selector"]["matchLabels"],
        &policies[0]["spec"]["podSelector"]["matchLabels"],
        &of_kind(&docs, "PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"],
    ];
    for selector in selectors {
        for (key, value) in selector.as_object().expect("selector") {
            assert_eq!(&pod_labels[key], value, "pods carry {key}");
        }
    }
}

#[test]
fn values_schema_refuses_mistakes() {
    for (set, complaint) in [
        ("replicaCount=0", "replicaCount"),
        ("unknownKey=1", "unknownKey"),
        ("rbac.namespaced=maybe", "namespaced"),
        ("controller.keyRenewPeriod=30days", "keyRenewPeriod"),
        ("controller.logFormat=xml", "logFormat"),
        (
            "controller.recoveryRecipients={not-a-recipient}",
            "recoveryRecipients",
        ),
        (
            "rbac.sync.fallbackRules[0].apiGroups={apps}",
            "fallbackRules",
        ),
    ] {
        let output = try_render(&[set]);
        assert!(!output.status.success(), "helm accepted {set}");
        assert!(
            text(&output).contains(complaint),
            "{set}: {}",
            text(&output)
        );
    }
    let wildcard = try_render(&[
        "rbac.sync.fallbackRules[0].apiGroups={apps}",
        "rbac.sync.fallbackRules[0].resources={*}",
        "rbac.sync.fallbackRules[0].verbs={get}",
    ]);
    assert!(!wildcard.status.success(), "a * resource is refused");

    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json"))
            .expect("values.schema.json"),
    )
    .expect("schema is JSON");
    assert_eq!(
        schema["properties"]["controller"]["properties"]["keyRenewPeriod"]["pattern"],
        sigil::api::duration::DURATION_PATTERN,
        "keyRenewPeriod takes the durations sigil parses"
    );
}

#[test]
fn notes_tell_how_to_fetch_the_key_and_seal_a_first_secret() {
    let chart = chart_dir();
    let output = helm(&[
        "install",
        RELEASE,
        chart.to_str().expect("UTF-8 path"),
        "--namespace",
        NS,
        "--dry-run=client",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let out = text(&output);
    let notes = out.split("NOTES:").nth(1).expect("NOTES section");
    assert!(
        notes.contains(&format!("sigil fetch-key --controller-namespace {NS}")),
        "{notes}"
    );
    assert!(notes.contains("| sigil seal --recipients-file"), "{notes}");
    assert!(notes.contains("/v1/recipients"), "{notes}");
}

#[test]
fn chart_versions_match_the_crate() {
    let chart: Value = sigil::yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml is YAML");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "sigil");
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "appVersion is the crate version"
    );
    assert!(
        chart["kubeVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with(">=1.29"))
    );
}

/// `cargo metadata` of this package: bin target names, features, rust-version.
fn package_metadata() -> Value {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(repo().join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(output.status.success(), "cargo metadata: {}", text(&output));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata JSON");
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == env!("CARGO_PKG_NAME"))
        .expect("this package")
        .clone()
}

/// The value following `flag` (`--flag v` or `--flag=v`) in every place it occurs.
fn flag_values(words: &[&str], flags: &[&str]) -> Vec<String> {
    let mut values = Vec::new();
    for (i, word) in words.iter().enumerate() {
        for flag in flags {
            if word == flag {
                values.extend(words.get(i + 1).map(|v| v.to_string()));
            } else if let Some(value) = word.strip_prefix(&format!("{flag}=")) {
                values.push(value.to_string());
            }
        }
    }
    values
}

fn version_tuple(version: &str) -> Vec<u64> {
    version
        .split('.')
        .map(|p| p.parse().expect("numeric version"))
        .collect()
}

#[test]
fn dockerfile_builds_the_crates_binary_with_features_that_exist() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let joined = dockerfile.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let package = package_metadata();
    let bins: Vec<&str> = package["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter(|t| strings(&t["kind"]).contains(&"bin"))
        .map(|t| t["name"].as_str().expect("target name"))
        .collect();
    let features: Vec<&String> = package["features"]
        .as_object()
        .expect("features")
        .keys()
        .collect();

    let build = lines
        .iter()
        .find(|l| l.contains("cargo build"))
        .expect("a cargo build step");
    let words: Vec<&str> = build.split_whitespace().collect();
    assert!(words.contains(&"--release"), "release build: {build}");
    assert!(
        words.contains(&"--locked"),
        "built from Cargo.lock: {build}"
    );
    let built = flag_values(&words, &["--bin"]);
    assert_eq!(built, ["sigil"], "builds only the sigil binary: {build}");
    assert!(
        bins.contains(&built[0].as_str()),
        "`{}` is a bin target of the crate: {bins:?}",
        built[0]
    );
    for feature in flag_values(&words, &["--features", "-F"])
        .iter()
        .flat_map(|list| list.split(','))
    {
        assert!(
            features.iter().any(|f| *f == feature),
            "feature {feature} exists: {features:?}"
        );
    }
    assert!(
        build.contains("target/release/sigil"),
        "copies the built binary: {build}"
    );

    // Runtime stage: distroless, non-root, the binary as entrypoint, nothing run inside it.
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    let runtime = &lines[last_from..];
    assert!(
        lines[last_from].contains("distroless"),
        "{}",
        lines[last_from]
    );
    assert!(
        lines.iter().filter(|l| l.starts_with("FROM ")).count() >= 2,
        "multi-stage"
    );
    assert!(runtime.contains(&"USER 65532:65532"), "non-root user");
    assert!(
        runtime.contains(&r#"ENTRYPOINT ["/sigil"]"#),
        "exec-form entrypoint"
    );
    assert!(
        !runtime.iter().any(|l| l.starts_with("RUN ")),
        "no shell needed at run time"
    );
    assert!(
        runtime
            .iter()
            .any(|l| l.starts_with("COPY --from=") && l.ends_with(" /sigil")),
        "the binary lands at /sigil"
    );

    // The builder's toolchain is at least the crate's rust-version.
    let rust = lines
        .iter()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .expect("ARG RUST_VERSION");
    let required = package["rust_version"]
        .as_str()
        .expect("rust-version in Cargo.toml");
    assert!(
        version_tuple(rust) >= version_tuple(required),
        "builder Rust {rust} < rust-version {required}"
    );
}
