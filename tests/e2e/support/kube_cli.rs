//! The real `kubectl` and `helm` pointed at a test API server, with caches in a temp home.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::tools::tool;

/// Runs `kubectl` or `helm` with `KUBECONFIG` and a home of its own.
pub struct KubeCli {
    kubectl: PathBuf,
    helm: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl KubeCli {
    pub fn new(kubeconfig: &Path, home: &Path) -> Self {
        KubeCli {
            kubectl: tool("kubectl"),
            helm: tool("helm"),
            kubeconfig: kubeconfig.to_path_buf(),
            home: home.to_path_buf(),
        }
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .env("HELM_CACHE_HOME", self.home.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.home.join("helm/config"))
            .env("HELM_DATA_HOME", self.home.join("helm/data"))
            .env_remove("KUBECTL_EXTERNAL_DIFF");
        cmd
    }

    pub fn kubectl_output(&self, args: &[&str]) -> Output {
        self.command(&self.kubectl)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl, expecting success; returns stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        succeeded("kubectl", args, self.kubectl_output(args))
    }

    /// Runs kubectl with `-o json`, expecting success.
    pub fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&all)).expect("kubectl JSON output")
    }

    /// Runs kubectl, expecting failure; returns stderr.
    pub fn kubectl_fails(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail, printed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs helm; returns what it did, success or not.
    pub fn helm_output(&self, args: &[&str]) -> Output {
        self.command(&self.helm)
            .args(args)
            .output()
            .expect("run helm")
    }

    /// Runs helm, expecting success; returns stdout.
    pub fn helm(&self, args: &[&str]) -> String {
        succeeded("helm", args, self.helm_output(args))
    }
}

fn succeeded(program: &str, args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The repository's chart.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/charts/sigil")
}

/// `helm template sigil CHART -n sigil-system --set ...` as parsed documents (no cluster needed).
pub fn helm_template(set: &[&str]) -> Vec<Value> {
    let home = tempfile::tempdir().expect("temp dir");
    let cli = KubeCli::new(&home.path().join("no-cluster.kubeconfig"), home.path());
    let chart = chart_dir();
    let mut args = vec![
        "template",
        "sigil",
        chart.to_str().expect("UTF-8 path"),
        "--namespace",
        "sigil-system",
    ];
    for value in set {
        args.extend(["--set", value]);
    }
    sigil::yaml::documents(&cli.helm(&args)).expect("helm template renders YAML")
}
