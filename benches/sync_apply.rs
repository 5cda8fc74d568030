//! Applies 1,000 objects to the embedded API server, then resyncs with nothing changed, and
//! prints how long each took and how many writes the no-op resync made (it must be 0).
//!
//! Two measurements:
//! * the apply engine alone (plan → server-side apply, as a Sync run does after reading Git);
//! * the whole loop: a Git repository of 1,000 files (made with `git`), a GitSource and a Sync
//!   run by the controllers, timed until `Ready` names the commit, then a forced resync.
//!
//! Writes are counted by the server's own record: every object's `resourceVersion` is listed
//! before and after the resync; any that moved was written.
//!
//! `cargo bench --bench sync_apply` (add `--profile dev` to skip the optimized build).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use sigil::api::sync::ManifestSync;
use sigil::manifests::apply::{ApplyOptions, Mode, apply_plan};
use sigil::manifests::parse::parse_files;
use sigil::manifests::pipeline::{self, Rendered};
use sigil::manifests::source::SourceFile;
use sigil::manifests::substitute::Variables;
use sigil::manifests::{Owner, PlanOptions, Resolver, Target};

const OBJECTS: usize = 1_000;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn configmap(namespace: &str, index: usize) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{index:04}\n  namespace: {namespace}\n  labels:\n    app: bench\ndata:\n  index: \"{index}\"\n  payload: \"{}\"\n",
        "x".repeat(64)
    )
}

async fn create_namespace(client: &kube::Client, name: &str) -> BenchResult<()> {
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// name → resourceVersion of every ConfigMap in the namespace.
async fn versions(client: &kube::Client, namespace: &str) -> BenchResult<BTreeMap<String, String>> {
    let list = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|cm| Some((cm.metadata.name?, cm.metadata.resource_version?)))
        .collect())
}

fn moved(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> usize {
    after
        .iter()
        .filter(|(name, rv)| before.get(*name) != Some(*rv))
        .count()
}

fn rate(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64()
}

async fn engine(client: &kube::Client) -> BenchResult<()> {
    let namespace = "bench-engine";
    create_namespace(client, namespace).await?;
    let files: Vec<SourceFile> = (0..OBJECTS)
        .map(|i| SourceFile {
            path: format!("apps/config-{i:04}.yaml"),
            content: configmap(namespace, i).into_bytes(),
        })
        .collect();
    let owner = Owner {
        namespace: namespace.to_string(),
        name: "bench".to_string(),
    };
    let resolver = Resolver::new(client.clone());
    let target = Target::new(client.clone());
    let options = PlanOptions {
        default_namespace: namespace.to_string(),
        owner: Some(owner.clone()),
        ..Default::default()
    };
    let apply = ApplyOptions {
        owner: Some(&owner),
        mode: Mode::Apply,
        concurrency: 16,
        crd_timeout: Duration::from_secs(30),
    };

    let rendered = Rendered::plain(files);
    let started = Instant::now();
    let planned =
        pipeline::desired(&rendered, &Variables::default(), None, &resolver, &options).await?;
    let report = apply_plan(&target, &resolver, &planned, apply).await;
    let took = started.elapsed();
    if !report.failures.is_empty() {
        return Err(report.failure_message().into());
    }
    let counts = report.counts();
    println!(
        "engine  apply  {OBJECTS} objects: {:>8.1} ms  ({:.0} objects/s; {} created)",
        took.as_secs_f64() * 1e3,
        rate(OBJECTS, took),
        counts.created
    );

    let before = versions(client, namespace).await?;
    let started = Instant::now();
    let planned =
        pipeline::desired(&rendered, &Variables::default(), None, &resolver, &options).await?;
    let report = apply_plan(&target, &resolver, &planned, apply).await;
    let took = started.elapsed();
    let after = versions(client, namespace).await?;
    let counts = report.counts();
    println!(
        "engine  no-op resync:        {:>8.1} ms  ({:.0} objects/s; {} unchanged, {} dry runs; writes: {} reported, {} seen by the server)",
        took.as_secs_f64() * 1e3,
        rate(OBJECTS, took),
        counts.unchanged,
        counts.dry_runs,
        counts.writes(),
        moved(&before, &after)
    );
    if counts.writes() != 0 || moved(&before, &after) != 0 {
        return Err("the no-op resync wrote".into());
    }
    Ok(())
}

fn git(dir: &std::path::Path, args: &[&str]) -> BenchResult<String> {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@sigil.dev")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@sigil.dev")
        .output()?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned().into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Fetch and tree read alone, for the share of Git in the whole loop.
async fn git_alone(repo: &std::path::Path, commit: &str) -> BenchResult<()> {
    let cache = sigil::git::Cache::temporary();
    let url = format!("file://{}", repo.display());
    let dir = cache.repo_dir("bench", "bench", &url);
    let started = Instant::now();
    cache
        .fetch(
            dir.clone(),
            url,
            sigil::git::Reference::Branch("main".into()),
            sigil::git::Credentials::default(),
            Duration::from_secs(120),
        )
        .await?;
    let fetched = started.elapsed();
    let started = Instant::now();
    let files = cache
        .read_folder(
            dir,
            commit.to_string(),
            "apps".to_string(),
            sigil::manifests::source::is_manifest_path,
            sigil::git::TreeLimits::default(),
        )
        .await?;
    let read = started.elapsed();
    let started = Instant::now();
    let sources: Vec<SourceFile> = files.into_iter().map(SourceFile::from).collect();
    let (manifests, _) = parse_files(&sources);
    println!(
        "git     fetch {:.1} ms, read {} files {:.1} ms, parse {} documents {:.1} ms",
        fetched.as_secs_f64() * 1e3,
        sources.len(),
        read.as_secs_f64() * 1e3,
        manifests.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

async fn wait_sync(
    api: &Api<ManifestSync>,
    what: &str,
    check: impl Fn(&ManifestSync) -> bool,
) -> BenchResult<ManifestSync> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let sync = api.get("bench").await?;
        if check(&sync) {
            return Ok(sync);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}: {:?}", sync.status).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn whole_loop(client: &kube::Client) -> BenchResult<()> {
    let namespace = "bench-loop";
    create_namespace(client, namespace).await?;
    let repo = tempfile::tempdir()?;
    git(repo.path(), &["init", "-q", "-b", "main"])?;
    std::fs::create_dir_all(repo.path().join("apps"))?;
    for i in 0..OBJECTS {
        std::fs::write(
            repo.path().join(format!("apps/config-{i:04}.yaml")),
            configmap(namespace, i),
        )?;
    }
    git(repo.path(), &["add", "-A"])?;
    git(repo.path(), &["commit", "-q", "-m", "1000 objects"])?;
    let commit = git(repo.path(), &["rev-parse", "HEAD"])?;
    git_alone(repo.path(), &commit).await?;

    let ctx = Arc::new(sigil::controller::Context::new(
        client.clone(),
        sigil::controller::Options::default(),
    ));
    let controllers = tokio::spawn(sigil::operator::run_gitops(ctx.clone()));
    let source: sigil::api::GitSource = sigil::yaml::from_str(&format!(
        "apiVersion: sigil.dev/v1alpha1\nkind: GitSource\nmetadata:\n  name: bench\nspec:\n  url: file://{}\n  interval: 1h\n",
        repo.path().display()
    ))?;
    let sync: ManifestSync = sigil::yaml::from_str(
        "apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: bench\nspec:\n  sourceRef:\n    name: bench\n  path: apps\n  interval: 1h\n  prune: true\n",
    )?;
    let syncs = Api::<ManifestSync>::namespaced(client.clone(), namespace);
    let started = Instant::now();
    Api::<sigil::api::GitSource>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &source)
        .await?;
    syncs.create(&PostParams::default(), &sync).await?;
    let revision = format!("main@sha1:{commit}");
    wait_sync(&syncs, "the first apply", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_applied_revision.as_deref())
            == Some(revision.as_str())
    })
    .await?;
    let took = started.elapsed();
    println!(
        "sync    apply  {OBJECTS} objects: {:>8.1} ms  ({:.0} objects/s; fetch + read + parse + apply, until Ready)",
        took.as_secs_f64() * 1e3,
        rate(OBJECTS, took)
    );

    let before = versions(client, namespace).await?;
    let started = Instant::now();
    syncs
        .patch(
            "bench",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"sigil.dev/reconcile-requested-at": "resync"}}})),
        )
        .await?;
    let sync = wait_sync(&syncs, "the no-op resync", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_handled_reconcile_at.as_deref())
            == Some("resync")
    })
    .await?;
    let took = started.elapsed();
    let after = versions(client, namespace).await?;
    let message = sync
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message)
        .unwrap_or_default();
    println!(
        "sync    no-op resync:        {:>8.1} ms  ({:.0} objects/s; writes seen by the server: {}; {message})",
        took.as_secs_f64() * 1e3,
        rate(OBJECTS, took),
        moved(&before, &after)
    );
    ctx.shutdown.cancel();
    let _ = controllers.await;
    if moved(&before, &after) != 0 {
        return Err("the no-op resync wrote".into());
    }
    Ok(())
}

async fn dev_server() -> BenchResult<(kube_devserver::DevServer, kube::Client)> {
    let server = kube_devserver::DevServer::start(kube_devserver::DevOptions {
        install_crds: sigil::api::crds(),
        ..Default::default()
    })
    .await?;
    let client = server.client().await?;
    Ok((server, client))
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` and test listers don't, and get nothing.
    if !std::env::args().any(|arg| arg == "--bench") {
        return Ok(());
    }
    sigil::tls::install_crypto_provider();
    // A fresh server for each part, so neither measures the other's objects.
    let (server, client) = dev_server().await?;
    engine(&client).await?;
    server.shutdown().await;
    let (server, client) = dev_server().await?;
    whole_loop(&client).await?;
    server.shutdown().await;
    Ok(())
}
