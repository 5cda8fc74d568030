//! The `sigil` command line: argument parsing only; every command lives in `sigil::cli`.
#![forbid(unsafe_code)]

use clap::{CommandFactory, Parser, Subcommand};
use sigil::cli;

/// GitOps for Kubernetes with no plaintext secret in Git.
///
/// sigil seals secrets with age, fetches external secrets from AWS Secrets Manager
/// and Vault, and keeps a cluster equal to a Git repository.
#[derive(Parser)]
#[command(name = "sigil", version, propagate_version = true)]
struct Cli {
    /// Log format on stderr. Levels come from RUST_LOG (default: info).
    #[arg(long, global = true, value_enum, default_value_t = cli::LogFormat::Text, env = "SIGIL_LOG_FORMAT")]
    log_format: cli::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator: sealed secrets, external secrets and sync controllers.
    #[command(
        after_help = "Examples:\n  sigil controller --namespace sigil-system\n  sigil controller --kubeconfig ~/.kube/config --http-listen 127.0.0.1:8080 --key-renew-period 720h"
    )]
    Controller(cli::controller::Args),
    /// Run an embedded Kubernetes API server with the controller, for trying sigil locally.
    #[command(
        after_help = "Examples:\n  sigil dev\n  sigil dev --listen 127.0.0.1:6443 --kubeconfig /tmp/sigil.kubeconfig --no-controller"
    )]
    Dev(cli::dev::Args),
    /// Print sigil's CustomResourceDefinitions as multi-document YAML.
    #[command(
        after_help = "Examples:\n  sigil crds | kubectl apply --server-side -f -\n  sigil crds --output-dir crds/"
    )]
    Crds(cli::crds::Args),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  sigil completions bash > /etc/bash_completion.d/sigil\n  sigil completions zsh > \"${fpath[1]}/_sigil\"\n  sigil completions fish > ~/.config/fish/completions/sigil.fish"
    )]
    Completions(cli::completions::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sigil::tls::install_crypto_provider();
    let cli = Cli::parse();
    cli::init_tracing(cli.log_format);
    match cli.command {
        Command::Controller(args) => cli::controller::run(args).await?,
        Command::Dev(args) => cli::dev::run(args).await?,
        Command::Crds(args) => cli::crds::run(args)?,
        Command::Completions(args) => cli::completions::run(args, Cli::command()),
    }
    Ok(())
}
