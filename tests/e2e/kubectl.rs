//! The real `kubectl` (v1.35) and `helm` (v4) against `sigil dev` started as a process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::dev::DevProcess;
use crate::support::tools::tool;

struct Kubectl<'a> {
    dev: &'a DevProcess,
    bin: PathBuf,
}

impl<'a> Kubectl<'a> {
    fn new(dev: &'a DevProcess) -> Self {
        let bin = tool("kubectl");
        let kubectl = Kubectl { dev, bin };
        let version = kubectl.ok(&["version", "-o", "json"]);
        let v: Value = serde_json::from_str(&version).expect("kubectl version JSON");
        assert_eq!(
            v["clientVersion"]["minor"],
            "35",
            "{} is not kubectl v1.35: run scripts/install-tools.sh",
            kubectl.bin.display()
        );
        assert_eq!(v["serverVersion"]["gitVersion"], "v1.35.0");
        kubectl
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("KUBECONFIG", &self.dev.kubeconfig)
            .env("HOME", self.dev.home())
            .env_remove("KUBECTL_EXTERNAL_DIFF");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run kubectl")
    }

    /// Runs kubectl, expecting success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}\n--- sigil dev log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.dev.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl, expecting failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail, printed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("kubectl JSON output")
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write manifest");
    path.display().to_string()
}

const SETTINGS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: demo\ndata:\n  mode: fast\n";
const SETTINGS_OTHER: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: demo\ndata:\n  mode: slow\n";

fn deployment(image: &str, env: &[(&str, &str)]) -> String {
    let env: String = env
        .iter()
        .map(|(k, v)| format!("        - name: {k}\n          value: \"{v}\"\n"))
        .collect();
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: demo\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: {image}\n        env:\n{env}"
    )
}

#[test]
fn kubectl_drives_sigil_dev() {
    let mut dev = DevProcess::start(&["--no-controller"]);
    assert!(
        dev.output().contains("export KUBECONFIG="),
        "{}",
        dev.output()
    );
    let k = Kubectl::new(&dev);
    let dir = dev.home().to_path_buf();

    assert!(
        k.ok(&["create", "namespace", "demo"])
            .contains("namespace/demo created")
    );
    assert!(
        k.ok(&["get", "ns"])
            .lines()
            .any(|l| l.starts_with("demo ") && l.contains("Active"))
    );
    assert!(
        k.ok(&["api-resources"]).contains("sealedsecrets"),
        "sigil's CRDs are served"
    );

    // create, get, merge and strategic patches
    k.ok(&[
        "-n",
        "demo",
        "create",
        "configmap",
        "app",
        "--from-literal=a=1",
    ]);
    let yaml = k.ok(&["-n", "demo", "get", "configmap", "app", "-o", "yaml"]);
    assert!(
        yaml.contains("a: \"1\"") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    assert!(
        k.ok(&[
            "-n",
            "demo",
            "patch",
            "configmap",
            "app",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"b":"2"}}"#
        ])
        .contains("patched")
    );
    k.ok(&[
        "-n",
        "demo",
        "patch",
        "configmap",
        "app",
        "-p",
        r#"{"data":{"c":"3"}}"#,
    ]);
    let data = k.json(&["-n", "demo", "get", "configmap", "app"])["data"].clone();
    assert_eq!(data, serde_json::json!({"a": "1", "b": "2", "c": "3"}));

    // server-side apply, conflicts between managers, force
    let settings = write(&dir, "settings.yaml", SETTINGS);
    assert!(
        k.ok(&["apply", "--server-side", "-f", &settings])
            .contains("configmap/settings serverside-applied")
    );
    let other = write(&dir, "settings-other.yaml", SETTINGS_OTHER);
    let conflict = k.fails(&[
        "apply",
        "--server-side",
        "--field-manager",
        "someone-else",
        "-f",
        &other,
    ]);
    assert!(conflict.contains("conflict"), "{conflict}");
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "someone-else",
        "--force-conflicts",
        "-f",
        &other,
    ]);
    assert_eq!(
        k.json(&["-n", "demo", "get", "configmap", "settings"])["data"]["mode"],
        "slow"
    );

    // replace with a stale resourceVersion
    let stale = k.ok(&["-n", "demo", "get", "configmap", "app", "-o", "json"]);
    k.ok(&[
        "-n",
        "demo",
        "patch",
        "configmap",
        "app",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"d":"4"}}"#,
    ]);
    let stale_file = write(&dir, "stale.json", &stale.replace("\"1\"", "\"one\""));
    let refused = k.fails(&["replace", "-f", &stale_file]);
    assert!(
        refused.contains("the object has been modified"),
        "{refused}"
    );
    let mut fresh: Value =
        serde_json::from_str(&k.ok(&["-n", "demo", "get", "configmap", "app", "-o", "json"]))
            .expect("json");
    fresh["data"]["a"] = "one".into();
    let fresh_file = write(&dir, "fresh.json", &fresh.to_string());
    assert!(k.ok(&["replace", "-f", &fresh_file]).contains("replaced"));

    // watch prints a change
    let mut watch = k
        .command()
        .args([
            "-n",
            "demo",
            "get",
            "configmap",
            "app",
            "--watch",
            "--output-watch-events",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get --watch");
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = watch.stdout.take().expect("watch stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |what: &str, pred: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => continue,
                Err(_) => panic!("kubectl --watch printed no {what}"),
            }
        }
    };
    wait_for("initial row", &|l: &str| {
        l.contains("ADDED") && l.contains("app")
    });
    k.ok(&["-n", "demo", "label", "configmap", "app", "watched=yes"]);
    wait_for("change", &|l: &str| {
        l.contains("MODIFIED") && l.contains("app")
    });
    let _ = watch.kill();
    let _ = watch.wait();

    // client-side apply (strategic merge patch computed by kubectl)
    let deploy = write(
        &dir,
        "deploy.yaml",
        &deployment("nginx:1.27", &[("A", "1"), ("B", "2")]),
    );
    assert!(
        k.ok(&["apply", "-f", &deploy])
            .contains("deployment.apps/web created")
    );
    let deploy2 = write(
        &dir,
        "deploy2.yaml",
        &deployment("nginx:1.28", &[("A", "1")]),
    );
    assert!(
        k.ok(&["apply", "-f", &deploy2])
            .contains("deployment.apps/web configured")
    );
    let d = k.json(&["-n", "demo", "get", "deployment", "web"]);
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.28");
    assert_eq!(
        container["env"],
        serde_json::json!([{"name": "A", "value": "1"}]),
        "the env var dropped from the manifest is removed"
    );
    assert_eq!(d["metadata"]["generation"], 2);
    assert!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    // kubectl validates with the server (fieldValidation=Strict)
    let typo = write(
        &dir,
        "typo.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\n  namespace: demo\ndatta:\n  a: \"1\"\n",
    );
    let refused = k.fails(&["apply", "-f", &typo]);
    assert!(refused.contains("unknown field \"datta\""), "{refused}");

    // explain reads the OpenAPI v3 documents
    let explained = k.ok(&["explain", "configmap"]);
    assert!(
        explained.contains("ConfigMap holds configuration data"),
        "{explained}"
    );
    let explained = k.ok(&["explain", "sealedsecrets.spec"]);
    assert!(explained.contains("encryptedData"), "{explained}");

    // delete waits for the object to go
    assert!(
        k.ok(&["-n", "demo", "delete", "configmap", "app"])
            .contains("configmap \"app\" deleted")
    );
    let missing = k.fails(&["-n", "demo", "get", "configmap", "app"]);
    assert!(missing.contains("NotFound"), "{missing}");
    k.ok(&["delete", "namespace", "demo", "--timeout=30s"]);
    let gone = k.fails(&["get", "namespace", "demo"]);
    assert!(gone.contains("NotFound"), "{gone}");

    assert!(
        dev.terminate(),
        "sigil dev stops cleanly on SIGTERM:\n{}",
        dev.log()
    );
    assert!(
        !dev.kubeconfig.exists(),
        "the kubeconfig is removed on a clean stop"
    );
}

#[test]
fn helm_installs_upgrades_and_uninstalls_against_sigil_dev() {
    let dev = DevProcess::start(&["--no-controller"]);
    let k = Kubectl::new(&dev);
    let home = dev.home().to_path_buf();
    let chart = home.join("chart");
    std::fs::create_dir_all(chart.join("templates")).expect("chart dir");
    write(
        &chart,
        "Chart.yaml",
        "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
    );
    write(&chart, "values.yaml", "greeting: hello\n");
    write(
        &chart.join("templates"),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
    );
    write(
        &chart.join("templates"),
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  selector:\n    app: demo\n  ports:\n  - name: http\n    port: 80\n",
    );
    let helm = |args: &[&str]| -> String {
        let out = Command::new(tool("helm"))
            .args(args)
            .env("KUBECONFIG", &dev.kubeconfig)
            .env("HOME", &home)
            .env("HELM_CACHE_HOME", home.join("helm/cache"))
            .env("HELM_CONFIG_HOME", home.join("helm/config"))
            .env("HELM_DATA_HOME", home.join("helm/data"))
            .output()
            .expect("run helm");
        assert!(
            out.status.success(),
            "helm {args:?} failed:\n{}\n--- sigil dev log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            dev.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let chart_path = chart.display().to_string();
    helm(&[
        "install",
        "demo",
        &chart_path,
        "-n",
        "web",
        "--create-namespace",
    ]);
    assert_eq!(
        k.json(&["-n", "web", "get", "configmap", "demo-greeting"])["data"]["greeting"],
        "hello"
    );
    let svc = k.json(&["-n", "web", "get", "service", "demo"]);
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.96.")),
        "{svc}"
    );
    assert!(helm(&["list", "-n", "web"]).contains("deployed"));
    helm(&[
        "upgrade",
        "demo",
        &chart_path,
        "-n",
        "web",
        "--set",
        "greeting=bonjour",
    ]);
    assert_eq!(
        k.json(&["-n", "web", "get", "configmap", "demo-greeting"])["data"]["greeting"],
        "bonjour"
    );
    let releases = k.json(&["-n", "web", "get", "secrets", "-l", "owner=helm"]);
    assert_eq!(
        releases["items"].as_array().map(Vec::len),
        Some(2),
        "one release Secret per revision"
    );
    helm(&["uninstall", "demo", "-n", "web"]);
    let gone = k.fails(&["-n", "web", "get", "configmap", "demo-greeting"]);
    assert!(gone.contains("NotFound"), "{gone}");
}

#[test]
fn kubectl_create_commands_send_protobuf_the_server_reads() {
    let dev = DevProcess::start(&["--no-controller"]);
    let k = Kubectl::new(&dev);
    let dir = dev.home().to_path_buf();
    k.ok(&["create", "namespace", "demo"]);
    k.ok(&[
        "-n",
        "demo",
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=user=admin",
        "--type=example.com/login",
    ]);
    let secret = k.json(&["-n", "demo", "get", "secret", "creds"]);
    assert_eq!(secret["data"]["user"], "YWRtaW4=");
    assert_eq!(secret["type"], "example.com/login");

    let blob = dir.join("blob");
    std::fs::write(&blob, [0xff_u8, 0x00, 0x01]).expect("binary file");
    k.ok(&[
        "-n",
        "demo",
        "create",
        "configmap",
        "bin",
        &format!("--from-file=blob={}", blob.display()),
        "--from-literal=text=hi",
    ]);
    let cm = k.json(&["-n", "demo", "get", "configmap", "bin"]);
    assert_eq!(cm["binaryData"]["blob"], "/wAB");
    assert_eq!(cm["data"]["text"], "hi");

    k.ok(&["-n", "demo", "create", "serviceaccount", "bot"]);
    k.ok(&[
        "-n",
        "demo",
        "create",
        "role",
        "reader",
        "--verb=get,list",
        "--resource=configmaps",
        "--resource-name=bin",
    ]);
    let role = k.json(&["-n", "demo", "get", "role", "reader"]);
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["bin"], "verbs": ["get", "list"]}])
    );
    k.ok(&[
        "create",
        "clusterrole",
        "health",
        "--verb=get",
        "--non-resource-url=/healthz",
    ]);
    assert_eq!(
        k.json(&["get", "clusterrole", "health"])["rules"][0]["nonResourceURLs"],
        serde_json::json!(["/healthz"])
    );
    k.ok(&[
        "create",
        "clusterrole",
        "combined",
        "--aggregation-rule=team=a",
    ]);
    let combined = k.json(&["get", "clusterrole", "combined"]);
    assert_eq!(
        combined["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]["team"],
        "a"
    );
    k.ok(&[
        "-n",
        "demo",
        "create",
        "rolebinding",
        "bot-reads",
        "--role=reader",
        "--serviceaccount=demo:bot",
        "--user=alice",
        "--group=devs",
    ]);
    let binding = k.json(&["-n", "demo", "get", "rolebinding", "bot-reads"]);
    assert_eq!(
        binding["roleRef"],
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"})
    );
    let subjects = binding["subjects"].as_array().expect("subjects");
    assert!(
        subjects.contains(
            &serde_json::json!({"kind": "ServiceAccount", "name": "bot", "namespace": "demo"})
        ),
        "{subjects:?}"
    );
    assert!(subjects.contains(&serde_json::json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"})), "{subjects:?}");
    assert!(subjects.contains(&serde_json::json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"})), "{subjects:?}");
    let can = k.run(&[
        "-n",
        "demo",
        "auth",
        "can-i",
        "get",
        "configmaps/bin",
        "--as=system:serviceaccount:demo:bot",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&can.stdout).trim(),
        "yes",
        "{}",
        String::from_utf8_lossy(&can.stderr)
    );
}

#[test]
fn kubectl_creates_deployments_and_services_over_protobuf() {
    let dev = DevProcess::start(&["--no-controller"]);
    let k = Kubectl::new(&dev);
    k.ok(&["create", "namespace", "demo"]);
    k.ok(&[
        "-n",
        "demo",
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--port=8080",
        "--replicas=2",
        "--",
        "nginx",
        "-g",
        "daemon off;",
    ]);
    let d = k.json(&["-n", "demo", "get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.27");
    assert_eq!(
        c["command"],
        serde_json::json!(["nginx", "-g", "daemon off;"])
    );
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(
        d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%",
        "defaulted by the server"
    );
    k.ok(&[
        "-n",
        "demo",
        "create",
        "service",
        "nodeport",
        "web",
        "--tcp=80:8080",
        "--node-port=30080",
    ]);
    let svc = k.json(&["-n", "demo", "get", "service", "web"]);
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30080);
    assert_eq!(svc["spec"]["selector"]["app"], "web");
    let table = k.ok(&["-n", "demo", "get", "service", "web"]);
    assert!(table.contains("80:30080/TCP"), "{table}");
}
