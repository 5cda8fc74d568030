//! `sigil dev`: the embedded API server with the controller running against it.

use std::net::SocketAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

use crate::cli::controller::shutdown_signal;
use crate::controller::{self, Options};
use kube_devserver::{DevError, DevOptions, DevServer};

/// Arguments of `sigil dev`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address the API server listens on (6443 is kube-apiserver's port; use port 0 for any free port).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Where to write the kubeconfig for the server (removed again on a clean stop).
    #[arg(long, default_value = "sigil-dev.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Serve the API only; do not run the sigil controller.
    #[arg(long)]
    pub no_controller: bool,
    /// Do not install sigil's CRDs (with --no-controller: an empty cluster to `helm install` into).
    #[arg(long, requires = "no_controller")]
    pub no_crds: bool,
    /// Namespace the in-process controller keeps its keys and recipients in (created if missing).
    #[arg(long, short = 'n', default_value = "sigil-system")]
    pub namespace: String,
    /// The in-process controller's HTTP port (health, metrics, recipients, webhooks).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub controller_http_listen: SocketAddr,
}

/// Why `sigil dev` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DevCliError {
    #[error(transparent)]
    Server(#[from] DevError),
    #[error("cannot create namespace {namespace}: {source}")]
    Namespace {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Controller(#[from] controller::Error),
}

/// Starts the embedded API server (with sigil's CRDs), writes the kubeconfig,
/// runs the controller unless `--no-controller`, and stops on Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> Result<(), DevCliError> {
    let server = DevServer::start(DevOptions {
        listen: args.listen,
        install_crds: if args.no_crds {
            Vec::new()
        } else {
            crate::api::crds()
        },
        ..DevOptions::default()
    })
    .await?;
    let stop = CancellationToken::new();
    let controller = if args.no_controller {
        None
    } else {
        let client = server.client().await?;
        ensure_namespace(&client, &args.namespace).await?;
        let options = Options {
            namespace: args.namespace.clone(),
            http_listen: args.controller_http_listen,
            ..Options::default()
        };
        let token = stop.clone();
        Some(tokio::spawn(crate::operator::run(
            client,
            options,
            async move { token.cancelled().await },
        )))
    };
    server.write_kubeconfig(&args.kubeconfig)?;
    let shown = std::path::absolute(&args.kubeconfig).unwrap_or_else(|_| args.kubeconfig.clone());
    println!(
        "sigil dev: Kubernetes API server on https://{} ({})\n\
         Use it with:\n\n  export KUBECONFIG={}\n  kubectl get ns\n\n\
         Stop with Ctrl-C; the state is kept in memory only.",
        server.addr(),
        if args.no_controller {
            "API only"
        } else {
            "sigil controller running"
        },
        shown.display()
    );

    let outcome = match controller {
        Some(mut task) => {
            tokio::select! {
                () = shutdown_signal() => {
                    stop.cancel();
                    task.await.unwrap_or(Ok(()))
                }
                finished = &mut task => finished.unwrap_or(Ok(())),
            }
        }
        None => {
            shutdown_signal().await;
            Ok(())
        }
    };
    tracing::info!("stopping the embedded API server");
    server.shutdown().await;
    let _ = std::fs::remove_file(&args.kubeconfig);
    outcome.map_err(DevCliError::from)
}

async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<(), DevCliError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(source) => Err(DevCliError::Namespace {
            namespace: name.to_string(),
            source,
        }),
    }
}
