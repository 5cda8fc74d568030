//! `sigil suspend` / `sigil resume KIND/NAME`: sets `spec.suspend`; resuming also asks for a
//! run and waits for it (unless `--no-wait`), as `flux resume` does.

use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::reconcile::request_and_wait;
use super::{Connection, display_name, parse_reference};

/// Arguments of `sigil suspend` and `sigil resume`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `sync/NAME` or `gitsource/NAME`.
    pub reference: String,
    /// Resume only: do not wait for the run that resuming starts.
    #[arg(long)]
    pub no_wait: bool,
    /// Resume only: how long to wait for that run.
    #[arg(long, default_value = "5m", value_parser = crate::api::duration::parse)]
    pub timeout: Duration,
    #[command(flatten)]
    pub connection: Connection,
}

/// Sets `spec.suspend` to `suspend`; on resume, waits for the next run unless told not to.
pub async fn run(args: Args, suspend: bool) -> anyhow::Result<()> {
    let (client, namespace) = args.connection.connect().await?;
    let (kind, name) = parse_reference(&args.reference)?;
    anyhow::ensure!(
        kind.suspendable,
        "{} has no spec.suspend; only gitsource and sync can be suspended",
        kind.kind()
    );
    let patch = json!({"spec": {"suspend": suspend}});
    kind.api(&client, Some(&namespace))
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| match e {
            kube::Error::Api(status) if status.code == 404 => {
                anyhow::anyhow!("{} {namespace}/{name} not found", kind.kind())
            }
            other => anyhow::anyhow!("cannot patch {} {namespace}/{name}: {other}", kind.kind()),
        })?;
    let shown = display_name(&kind, &name);
    if suspend {
        println!("{shown} suspended");
        return Ok(());
    }
    if args.no_wait {
        println!("{shown} resumed");
        return Ok(());
    }
    let deadline = Instant::now() + args.timeout;
    let message = request_and_wait(&client, &kind, &namespace, &name, deadline).await?;
    println!("{shown} resumed: {message}");
    Ok(())
}
