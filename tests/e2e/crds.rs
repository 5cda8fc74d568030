//! `crds/` must hold exactly what `sigil crds` prints.

use std::collections::BTreeMap;
use std::path::Path;

fn checked_in(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .expect("crds/ exists")
        .map(|entry| {
            let path = entry.expect("readable entry").path();
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            (
                name,
                std::fs::read_to_string(&path).expect("readable CRD file"),
            )
        })
        .collect()
}

#[test]
fn crds_folder_matches_generated_crds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let generated: BTreeMap<String, String> = sigil::api::rendered_crds()
        .expect("CRDs render")
        .into_iter()
        .map(|crd| (crd.file_name, crd.yaml))
        .collect();
    assert_eq!(generated.len(), 7, "seven kinds");
    assert_eq!(
        checked_in(&dir),
        generated,
        "crds/ is stale: run `sigil crds --output-dir crds` (cargo run -- crds --output-dir crds)"
    );
}

#[test]
fn sigil_crds_prints_the_same_documents() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .arg("crds")
        .output()
        .expect("sigil runs");
    assert!(
        output.status.success(),
        "sigil crds failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).expect("UTF-8");
    let expected: String = sigil::api::rendered_crds()
        .expect("CRDs render")
        .into_iter()
        .map(|crd| crd.yaml)
        .collect();
    assert_eq!(printed, expected);
    let docs = sigil::yaml::documents(&printed).expect("valid YAML");
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d["spec"]["names"]["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "SealedSecret",
            "ExternalSecret",
            "SecretStore",
            "ClusterSecretStore",
            "GitSource",
            "Sync",
            "VaultDynamicSecret"
        ]
    );
    for doc in &docs {
        // Generators (External Secrets Operator's shape) are read, never reconciled:
        // no status, nothing to be Ready.
        if doc["spec"]["names"]["categories"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == "sigil-generators"))
        {
            assert!(doc["spec"]["versions"][0]["subresources"]["status"].is_null());
            continue;
        }
        let version = &doc["spec"]["versions"][0];
        assert!(
            version["subresources"]["status"].is_object(),
            "status subresource on {}",
            doc["metadata"]["name"]
        );
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .expect("printer columns")
            .iter()
            .map(|c| c["name"].as_str().expect("column name"))
            .collect();
        for column in ["Ready", "Reason", "Age"] {
            assert!(
                columns.contains(&column),
                "{column} column on {}",
                doc["metadata"]["name"]
            );
        }
    }
}
