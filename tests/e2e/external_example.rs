//! Runs the walk-throughs of examples/external-secret-aws/README.md (Secrets
//! Manager and Parameter Store, against moto_server) and
//! examples/external-secret-vault/README.md (against OpenBao) in the embedded
//! cluster with a live controller, as a user would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::moto::{self, Moto, aws_stand_in};
use crate::support::openbao::OpenBao;
use crate::support::readme;
use crate::support::sealed::Bed;
use crate::support::tools::tool;

fn example(name: &str) -> (PathBuf, Vec<String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let text = std::fs::read_to_string(dir.join("README.md")).expect("README");
    let blocks = readme::shell_blocks(&text);
    assert!(
        !blocks.iter().any(|b| b.contains("sigil dev")),
        "the `sigil dev` block is marked not run"
    );
    (dir, blocks)
}

fn copy_files(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("example dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
        }
    }
}

#[test]
fn aws_walk_through_runs() {
    let (dir, blocks) = example("external-secret-aws");
    assert!(blocks.len() >= 6, "found {} sh blocks", blocks.len());
    let bed = Bed::start(|o| o.reload_debounce = Duration::from_secs(1));
    let moto = bed.block_on(Moto::start());
    let work = tempfile::tempdir().expect("temp dir");
    copy_files(&dir, work.path());
    let aws = aws_stand_in(&work.path().join("bin"));
    let path = readme::path_with(&[
        aws,
        PathBuf::from(env!("CARGO_BIN_EXE_sigil")),
        tool("kubectl"),
    ]);
    let stdout = readme::run(
        &blocks,
        work.path(),
        &[
            ("PATH", path),
            ("KUBECONFIG", bed.kubeconfig.display().to_string()),
            ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", moto::SECRET_ACCESS_KEY.to_string()),
            ("AWS_DEFAULT_REGION", moto::REGION.to_string()),
        ],
        Duration::from_secs(240),
    );
    assert!(
        stdout.contains("postgres://shop:correct-horse@db.internal:5432/shop"),
        "the templated url:\n{stdout}"
    );
    assert!(stdout.contains("password now: battery-staple"), "{stdout}");
    let fingerprint = stdout
        .lines()
        .find_map(|l| l.strip_prefix("restarted with fingerprint: "))
        .unwrap_or_default();
    assert_eq!(
        fingerprint.len(),
        64,
        "the Deployment was restarted:\n{stdout}"
    );
    assert!(stdout.contains("SecretSynced"), "{stdout}");
    assert!(
        stdout.contains("api-key currency shop_prod_flags_checkout shop_prod_flags_search_fuzzy"),
        "the Parameter Store Secret's keys:\n{stdout}"
    );
    assert!(
        stdout.contains("\nEUR\n"),
        "a JSON property of a parameter:\n{stdout}"
    );
    assert!(stdout.contains("api key rotated: yes"), "{stdout}");
    let metrics = bed.block_on(async {
        crate::support::http::get(format!("{}/metrics", bed.http_url()))
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text")
    });
    assert!(
        metrics.contains(r#"sigil_backend_calls_total{store="ClusterSecretStore/aws",provider="aws",outcome="success"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sigil_backend_calls_total{store="ClusterSecretStore/aws-ssm",provider="aws-ssm",outcome="success"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sigil_reconciles_total{controller="externalsecret"}"#),
        "{metrics}"
    );
    bed.assert_no_plaintext(&[
        b"correct-horse",
        b"battery-staple",
        b"tr0ub4dor-ssm",
        b"c0rrect-ssm",
    ]);
}

#[test]
fn vault_walk_through_runs() {
    let (dir, blocks) = example("external-secret-vault");
    assert!(blocks.len() >= 4, "found {} sh blocks", blocks.len());
    let bed = Bed::start(|_| {});
    let vault = bed.block_on(OpenBao::start());
    let work = tempfile::tempdir().expect("temp dir");
    copy_files(&dir, work.path());
    let path = readme::path_with(&[PathBuf::from(env!("CARGO_BIN_EXE_sigil")), tool("kubectl")]);
    let stdout = readme::run(
        &blocks,
        work.path(),
        &[
            ("PATH", path),
            ("KUBECONFIG", bed.kubeconfig.display().to_string()),
            ("VAULT_ADDR", vault.address.clone()),
            ("VAULT_TOKEN", vault.root_token.clone()),
        ],
        Duration::from_secs(240),
    );
    assert!(stdout.contains("https://api.example"), "{stdout}");
    assert!(stdout.contains("token rotated: yes"), "{stdout}");
    assert!(stdout.contains("SecretSynced"), "{stdout}");
    bed.assert_no_plaintext(&[b"s3cr3t-api-token", b"rotated-api-token"]);
}
