//! The real chart installed with the real `helm` into `sigil dev`, then the controller run with
//! exactly the arguments and the RBAC the chart gives it.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use serde_json::Value;

use crate::support::controller::{ControllerProcess, client};
use kube_devserver::testing::assert_api_error;

use crate::support::dev::DevProcess;
use crate::support::kube_cli::{KubeCli, chart_dir};
use crate::support::objects::{
    create_namespace, create_sealed_secret, wait_for_recipients, wait_for_secret,
};
use crate::support::readme::{doc_programs, path_with, run};

const NS: &str = "sigil-system";
const SERVICE_ACCOUNT: &str = "system:serviceaccount:sigil-system:sigil";

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn crd_names() -> Vec<String> {
    sigil::api::crds()
        .into_iter()
        .filter_map(|crd| crd.metadata.name)
        .collect()
}

/// A kubeconfig for the same server that acts as `user` (impersonation), so the API server
/// authorizes every request with that user's RBAC.
fn impersonating_kubeconfig(dev: &DevProcess, user: &str) -> std::path::PathBuf {
    let mut config =
        kube::config::Kubeconfig::read_from(&dev.kubeconfig).expect("read the dev kubeconfig");
    for auth in &mut config.auth_infos {
        if let Some(info) = auth.auth_info.as_mut() {
            info.impersonate = Some(user.to_string());
        }
    }
    let path = dev.home().join("service-account.kubeconfig");
    std::fs::write(
        &path,
        sigil::yaml::to_string(&config).expect("kubeconfig YAML"),
    )
    .expect("write kubeconfig");
    path
}

/// What the chart's Deployment runs: its container's arguments, without the subcommand.
fn deployment_args(deployment: &Value) -> Vec<String> {
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert_eq!(
        args.first().map(String::as_str),
        Some("controller"),
        "{args:?}"
    );
    args[1..].to_vec()
}

/// The indented command lines of the NOTES paragraph that starts with `heading`, joined (a line
/// ending in `\` continues on the next).
fn notes_block(notes: &str, heading: &str) -> Vec<String> {
    let after = notes
        .split_once(heading)
        .unwrap_or_else(|| panic!("NOTES have {heading:?}:\n{notes}"))
        .1;
    let mut commands: Vec<String> = Vec::new();
    let mut continued = false;
    for line in after.lines().skip(1).skip_while(|l| l.trim().is_empty()) {
        if !line.starts_with("  ") {
            break;
        }
        if continued {
            if let Some(last) = commands.last_mut() {
                last.push('\n');
                last.push_str(line);
            }
        } else {
            commands.push(line.trim().to_string());
        }
        continued = line.ends_with('\\');
    }
    commands
}

/// Runs what the chart's NOTES tell a user to do first, against the running controller:
/// fetch the recipients, seal a Secret with them, apply it, and look at the result.
async fn notes_commands_work(notes: &str, dev: &DevProcess) {
    let fetch = notes_block(notes, "1. Fetch");
    assert!(fetch[0].starts_with("sigil fetch-key"), "{fetch:?}");
    let seal = notes_block(notes, "2. Seal");
    let (look, act): (Vec<String>, Vec<String>) =
        seal.into_iter().partition(|c| c.contains(" get "));
    assert!(!act.is_empty() && !look.is_empty(), "{notes}");
    let work = tempfile::tempdir().expect("temp dir");
    let env = vec![
        (
            "KUBECONFIG",
            dev.kubeconfig.to_str().expect("UTF-8 path").to_string(),
        ),
        ("PATH", path_with(&doc_programs())),
    ];
    let run_notes = |commands: Vec<String>| {
        let dir = work.path().to_path_buf();
        let env = env.clone();
        tokio::task::spawn_blocking(move || run(&commands, &dir, &env, Duration::from_secs(60)))
    };
    run_notes([vec![fetch[0].clone()], act].concat())
        .await
        .expect("NOTES commands");
    let recipients =
        std::fs::read_to_string(work.path().join("sigil-recipients.txt")).expect("recipients");
    assert!(recipients.contains("age1"), "{recipients}");
    let admin = client(&dev.kubeconfig).await;
    wait_for_secret(&admin, "default", "db-credentials", Duration::from_secs(30)).await;
    let looked = run_notes(look).await.expect("NOTES commands");
    assert!(
        looked.contains("db-credentials") && looked.contains("True"),
        "{looked}"
    );
}

fn assert_exists(cli: &KubeCli, args: &[&str]) -> Value {
    let object = cli.kubectl_json(args);
    assert_eq!(
        object["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm",
        "{args:?} belongs to the release"
    );
    object
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_upgrades_and_uninstalls_the_chart_in_sigil_dev() {
    let dev = DevProcess::start(&["--no-controller", "--no-crds"]);
    let cli = KubeCli::new(&dev.kubeconfig, dev.home());
    let chart = chart_dir();
    let chart = chart.to_str().expect("UTF-8 path");
    assert!(
        !cli.kubectl(&["api-resources"]).contains("sealedsecrets"),
        "the cluster starts without sigil's CRDs"
    );

    let notes = cli.helm(&["install", "sigil", chart, "-n", NS, "--create-namespace"]);
    assert!(
        notes.contains("STATUS: deployed") && notes.contains("sigil fetch-key"),
        "{notes}"
    );

    // The objects of the release.
    let deployment = assert_exists(&cli, &["-n", NS, "get", "deployment", "sigil"]);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = deployment_args(&deployment);
    assert!(args.contains(&"--leader-elect".to_string()), "{args:?}");
    assert_exists(&cli, &["-n", NS, "get", "serviceaccount", "sigil"]);
    let service = assert_exists(&cli, &["-n", NS, "get", "service", "sigil"]);
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
    assert_eq!(service["spec"]["ports"][0]["name"], "http");
    assert_exists(&cli, &["-n", NS, "get", "poddisruptionbudget", "sigil"]);
    for role in ["sigil-namespace-read", "sigil-namespace-write"] {
        assert_exists(&cli, &["-n", NS, "get", "role", role]);
        assert_exists(&cli, &["-n", NS, "get", "rolebinding", role]);
    }
    for role in ["sigil-read", "sigil-write", "sigil-secrets-write"] {
        assert_exists(&cli, &["get", "clusterrole", role]);
        assert_exists(&cli, &["get", "clusterrolebinding", role]);
    }
    for crd in crd_names() {
        let object = assert_exists(&cli, &["get", "crd", &crd]);
        assert_eq!(
            object["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{crd}"
        );
        let established = object["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        assert!(established, "{crd} is established: {object}");
    }
    let resources = cli.kubectl(&["api-resources", "--api-group", "sigil.dev"]);
    for kind in [
        "sealedsecrets",
        "externalsecrets",
        "secretstores",
        "clustersecretstores",
        "gitsources",
        "syncs",
    ] {
        assert!(resources.contains(kind), "{kind} served:\n{resources}");
    }

    // Least privilege, as the API server sees it.
    let can = |verb: &str, resource: &str, namespace: &str| {
        cli.kubectl_output(&[
            "auth",
            "can-i",
            verb,
            resource,
            "-n",
            namespace,
            "--as",
            SERVICE_ACCOUNT,
        ])
        .status
        .success()
    };
    assert!(can("watch", "sealedsecrets.sigil.dev", "apps"));
    assert!(can("create", "leases.coordination.k8s.io", NS));
    assert!(!can("create", "leases.coordination.k8s.io", "apps"));
    assert!(!can("delete", "customresourcedefinitions", "default"));
    assert!(!can(
        "create",
        "clusterroles.rbac.authorization.k8s.io",
        "default"
    ));
    assert!(!can("delete", "sealedsecrets.sigil.dev", "apps"));

    // The controller, run with the Deployment's arguments and authorized as the chart's
    // ServiceAccount, does its job and is never refused.
    let admin = client(&dev.kubeconfig).await;
    create_namespace(&admin, "apps").await;
    let (namespace_arg, rest): (Vec<String>, Vec<String>) =
        args.into_iter().partition(|a| a.starts_with("--namespace"));
    assert_eq!(namespace_arg, [format!("--namespace={NS}")]);
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let as_chart = impersonating_kubeconfig(&dev, SERVICE_ACCOUNT);
    let refused = Api::<Namespace>::all(client(&as_chart).await)
        .delete("apps", &Default::default())
        .await;
    // The kubeconfig acts as the ServiceAccount.
    assert_api_error(refused, 403, "Forbidden");
    let controller = ControllerProcess::start("sigil-0", &as_chart, dev.home(), &rest).await;
    wait_for_recipients(&admin, Duration::from_secs(30)).await;
    create_sealed_secret(&admin, &dev.kubeconfig, "apps", "db", "s3cret").await;
    wait_for_secret(&admin, "apps", "db", Duration::from_secs(30)).await;
    let ready = cli.kubectl(&[
        "-n",
        "apps",
        "wait",
        "sealedsecret/db",
        "--for=condition=Ready",
        "--timeout=30s",
    ]);
    assert!(ready.contains("condition met"), "{ready}");
    notes_commands_work(&notes, &dev).await;
    let events = cli.kubectl_json(&["-n", "apps", "get", "events.events.k8s.io"]);
    assert!(
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["regarding"]["name"] == "db" && e["reportingController"] == "sigil"),
        "the controller may publish Events: {events}"
    );
    let log = controller.log();
    assert!(
        !log.contains("forbidden") && !log.contains("Forbidden") && !log.contains(" 403"),
        "the chart's RBAC refused the controller something:\n{log}"
    );
    drop(controller);

    // Upgrade: values change the Deployment, add a NetworkPolicy, and split it into two
    // shards (two Deployments replace the one); CRDs stay.
    cli.helm(&[
        "upgrade",
        "sigil",
        chart,
        "-n",
        NS,
        "--set",
        "replicaCount=3",
        "--set",
        "controller.keyRenewPeriod=240h",
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "sharding.shards=2",
    ]);
    for shard in 0..2 {
        let name = format!("sigil-shard-{shard}");
        let deployment = cli.kubectl_json(&["-n", NS, "get", "deployment", &name]);
        assert_eq!(deployment["spec"]["replicas"], 3);
        let args = deployment_args(&deployment);
        for expected in [
            "--key-renew-period=240h".to_string(),
            format!("--shard={shard}"),
            "--shards=2".to_string(),
        ] {
            assert!(args.contains(&expected), "{name}: {args:?}");
        }
        assert_exists(&cli, &["-n", NS, "get", "poddisruptionbudget", &name]);
    }
    let replaced = cli.kubectl_fails(&["-n", NS, "get", "deployment", "sigil"]);
    assert!(replaced.contains("NotFound"), "{replaced}");
    assert_exists(&cli, &["-n", NS, "get", "networkpolicy", "sigil"]);
    for crd in crd_names() {
        cli.kubectl(&["get", "crd", &crd]);
    }
    let history = cli.helm(&["history", "sigil", "-n", NS]);
    assert!(
        history
            .lines()
            .filter(|l| l.starts_with(char::is_numeric))
            .count()
            == 2
            && history.contains("deployed"),
        "{history}"
    );

    // Uninstall: everything goes except the CRDs (and so the users' objects).
    let uninstalled = cli.helm(&["uninstall", "sigil", "-n", NS]);
    assert!(uninstalled.contains("uninstalled"), "{uninstalled}");
    for args in [
        vec!["-n", NS, "get", "deployment", "sigil-shard-0"],
        vec!["-n", NS, "get", "networkpolicy", "sigil"],
        vec!["-n", NS, "get", "serviceaccount", "sigil"],
        vec!["-n", NS, "get", "service", "sigil"],
        vec!["-n", NS, "get", "role", "sigil-namespace-write"],
        vec!["get", "clusterrole", "sigil-read"],
        vec!["get", "clusterrolebinding", "sigil-secrets-write"],
    ] {
        let gone = cli.kubectl_fails(&args);
        assert!(gone.contains("NotFound"), "{args:?}: {gone}");
    }
    for crd in crd_names() {
        cli.kubectl(&["get", "crd", &crd]);
    }
    cli.kubectl(&["-n", "apps", "get", "sealedsecret", "db"]);
}

/// The README's other path: CRDs applied first with `sigil crds | kubectl apply --server-side -f -`,
/// then the chart. helm refuses to adopt CRDs a release did not create, so that install needs
/// `--set crds.install=false`, as the README says.
#[test]
fn helm_install_after_sigil_crds_needs_crds_install_false() {
    let dev = DevProcess::start(&["--no-controller", "--no-crds"]);
    let cli = KubeCli::new(&dev.kubeconfig, dev.home());
    let chart = chart_dir();
    let chart = chart.to_str().expect("UTF-8 path");
    let crds = std::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .arg("crds")
        .output()
        .expect("run sigil crds");
    assert!(crds.status.success(), "sigil crds failed");
    let file = dev.home().join("crds.yaml");
    std::fs::write(&file, &crds.stdout).expect("write crds.yaml");
    cli.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        file.to_str().expect("UTF-8 path"),
    ]);

    let refused = cli.helm_output(&["install", "sigil", chart, "-n", NS, "--create-namespace"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("cannot be imported into the current release"),
        "helm refuses to adopt the CRDs:\n{stderr}"
    );
    let notes = cli.helm(&[
        "install",
        "sigil",
        chart,
        "-n",
        NS,
        "--create-namespace",
        "--set",
        "crds.install=false",
    ]);
    assert!(notes.contains("STATUS: deployed"), "{notes}");
    assert_exists(&cli, &["-n", NS, "get", "deployment", "sigil"]);
    for crd in crd_names() {
        let object = cli.kubectl_json(&["get", "crd", &crd]);
        assert!(
            object["metadata"]["labels"]["app.kubernetes.io/managed-by"] != "Helm",
            "{crd} stays outside the release"
        );
    }
}
