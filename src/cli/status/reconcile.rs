//! `sigil reconcile KIND/NAME`: asks the controller for a run now (the
//! `sigil.dev/reconcile-requested-at` annotation, which the GitSource and Sync controllers and
//! the webhook receiver already use) and waits until the controller reports it handled that
//! request (`status.lastHandledReconcileAt`), like `flux reconcile`.

use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::{
    Connection, SigilKind, Verdict, as_value, display_name, observed_current, parse_reference,
    ready_of,
};
use crate::controller::git_source::REQUESTED_AT_ANNOTATION;

/// Arguments of `sigil reconcile`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `sync/NAME` or `gitsource/NAME`.
    pub reference: String,
    /// For a Sync: fetch its GitSource first, then apply what it fetched.
    #[arg(long)]
    pub with_source: bool,
    /// How long to wait for the controller (e.g. `90s`, `5m`).
    #[arg(long, default_value = "5m", value_parser = crate::api::duration::parse)]
    pub timeout: Duration,
    #[command(flatten)]
    pub connection: Connection,
}

/// Runs `sigil reconcile`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let (client, namespace) = args.connection.connect().await?;
    let (kind, name) = parse_reference(&args.reference)?;
    let deadline = Instant::now() + args.timeout;
    if args.with_source {
        anyhow::ensure!(
            kind.kind() == "Sync",
            "--with-source is for sync/NAME, not {}",
            args.reference
        );
        let sync = get_value(&client, &kind, &namespace, &name).await?;
        let source_name = sync
            .pointer("/spec/sourceRef/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let source_kind = super::find_kind("gitsource")?;
        request_and_wait(&client, &source_kind, &namespace, &source_name, deadline).await?;
    }
    let message = request_and_wait(&client, &kind, &namespace, &name, deadline).await?;
    println!("{} reconciled: {message}", display_name(&kind, &name));
    Ok(())
}

async fn get_value(
    client: &kube::Client,
    kind: &SigilKind,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Value> {
    match kind.api(client, Some(namespace)).get_opt(name).await {
        Ok(Some(object)) => Ok(as_value(&object)),
        Ok(None) => anyhow::bail!("{} {namespace}/{name} not found", kind.kind()),
        Err(e) => anyhow::bail!("cannot get {} {namespace}/{name}: {e}", kind.kind()),
    }
}

/// Sets the requested-at annotation and waits until the controller has handled it at the
/// current generation. Returns the Ready message, or a [`Verdict`] when not Ready or too late.
pub async fn request_and_wait(
    client: &kube::Client,
    kind: &SigilKind,
    namespace: &str,
    name: &str,
    deadline: Instant,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        kind.reconcilable,
        "{} objects are reconciled on their own; only gitsource and sync take a request",
        kind.kind()
    );
    let current = get_value(client, kind, namespace, name).await?;
    if current.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        anyhow::bail!(
            "{} {namespace}/{name} is suspended: run `sigil resume {}/{name}` first",
            kind.kind(),
            kind.short()
        );
    }
    let token = jiff::Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: token}}});
    kind.api(client, Some(namespace))
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| anyhow::anyhow!("cannot annotate {} {namespace}/{name}: {e}", kind.kind()))?;
    eprintln!(
        "► requested a reconcile of {} {namespace}/{name}, waiting",
        kind.kind()
    );
    loop {
        let object = get_value(client, kind, namespace, name).await?;
        let handled = object
            .pointer("/status/lastHandledReconcileAt")
            .and_then(Value::as_str)
            == Some(token.as_str());
        if handled && observed_current(&object) {
            let (status, reason, message) = ready_of(&object);
            if status == "True" {
                return Ok(message);
            }
            return Err(Verdict::not_ready(format!(
                "{} {namespace}/{name} is not Ready ({reason}): {message}",
                kind.kind()
            )));
        }
        if Instant::now() >= deadline {
            return Err(Verdict::timeout(format!(
                "timed out waiting for {} {namespace}/{name} to handle the reconcile request",
                kind.kind()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
