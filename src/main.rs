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
    #[cfg(feature = "dev")]
    Dev(cli::dev::Args),
    /// Print sigil's CustomResourceDefinitions as multi-document YAML.
    #[command(
        after_help = "Examples:\n  sigil crds | kubectl apply --server-side -f -\n  sigil crds --output-dir crds/"
    )]
    Crds(cli::crds::Args),
    /// Seal a Secret manifest into a SealedSecret (or one value with --raw).
    #[command(
        after_help = "Examples:\n  sigil seal < secret.yaml > sealed.yaml\n  kubectl create secret generic db --from-literal=password=s3cret --dry-run=client -o yaml | sigil seal | kubectl apply -f -\n  sigil seal -f secret.yaml --recipient age1... --recipient age1... --scope namespace -o json\n  sigil seal -f more.yaml --merge-into sealed.yaml\n  sigil seal --raw --namespace prod --name db --from-file password.txt"
    )]
    Seal(cli::seal::Args),
    /// Seal a value read from stdin into an existing SealedSecret file, under KEY.
    #[command(
        after_help = "Examples:\n  sigil set sealed.yaml tls.crt < cert.pem\n  printf %s \"$PASSWORD\" | sigil set sealed.yaml password\n  sigil seal --raw --envelope-only --namespace prod --name db < value | age -a -r age1... | sigil set --sealed sealed.yaml password"
    )]
    Set(cli::set::Args),
    /// Print the recipients the cluster wants values sealed to.
    #[command(
        after_help = "Examples:\n  sigil fetch-key > recipients.txt\n  sigil seal --recipients-file recipients.txt < secret.yaml"
    )]
    FetchKey(cli::fetch_key::Args),
    /// Open SealedSecrets or SOPS files with an identity file (disaster recovery).
    #[command(
        after_help = "Examples:\n  sigil unseal --identity recovery.key < sealed.yaml\n  sigil unseal -i recovery.key -f sealed.yaml -o json\n  sigil unseal -i age.agekey -f secret.sops.yaml"
    )]
    Unseal(cli::unseal::Args),
    /// Re-seal SealedSecret files to the current recipients, keeping each value's scope.
    #[command(
        after_help = "Examples:\n  sigil reencrypt sealed/*.yaml\n  sigil reencrypt --identity recovery.key --recipients-file recipients.txt sealed.yaml"
    )]
    Reencrypt(cli::reencrypt::Args),
    /// Check that the cluster (or an identity) can open SealedSecrets (prints no value).
    #[command(
        after_help = "Examples:\n  sigil validate sealed.yaml\n  sigil validate --identity recovery.key sealed/*.yaml"
    )]
    Validate(cli::validate::Args),
    /// Make a new age identity (for recovery or offline use).
    #[command(
        after_help = "Examples:\n  sigil keygen -o recovery.key\n  sigil controller --recovery-recipient \"$(grep -o 'age1.*' recovery.key)\""
    )]
    Keygen(cli::keygen::Args),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  sigil completions bash > /etc/bash_completion.d/sigil\n  sigil completions zsh > \"${fpath[1]}/_sigil\"\n  sigil completions fish > ~/.config/fish/completions/sigil.fish"
    )]
    Completions(cli::completions::Args),
    /// Show what applying a folder would change in the cluster (Secret values masked).
    #[command(
        after_help = "Examples:\n  sigil diff --path clusters/dev\n  sigil diff --path clusters/prod -n gitops --sync prod --exit-code"
    )]
    Diff(cli::diff::Args),
    /// Report plaintext Secrets in manifests; fails when it finds one.
    #[command(
        after_help = "Prints `file:line Secret/name` per plaintext Secret (data/stringData in a kind: Secret).\n\nExamples:\n  sigil scan .\n  sigil scan clusters/ apps/db.yaml\n  # .pre-commit-config.yaml: {id: sigil-scan, entry: sigil scan, language: system, files: '\\.(ya?ml|json)$'}"
    )]
    Scan(cli::scan::Args),
    /// Show sigil's objects with their Ready state, revision, key or last refresh, and age.
    #[command(after_help = GET_HELP)]
    Get(cli::status::get::Args),
    /// Show a Sync's inventory as a tree, with each object's health.
    #[command(after_help = TREE_HELP)]
    Tree(cli::status::tree::Args),
    /// Ask the controller to reconcile a Sync or GitSource now, and wait for the result.
    #[command(after_help = RECONCILE_HELP)]
    Reconcile(cli::status::reconcile::Args),
    /// Stop a Sync or GitSource from reconciling (spec.suspend: true).
    #[command(after_help = SUSPEND_HELP)]
    Suspend(cli::status::suspend::Args),
    /// Let a suspended Sync or GitSource reconcile again, and wait for its next run.
    #[command(after_help = RESUME_HELP)]
    Resume(cli::status::suspend::Args),
}

const GET_HELP: &str = concat!(
    "Examples:\n  sigil get -A\n  sigil get sync -n gitops\n  sigil get sync/apps -o yaml\n  sigil get externalsecrets -A -o wide\n\n",
    "Exit codes:\n  0  listed\n  1  error: the cluster could not be reached, the object does not exist, the API refused\n  2  usage error"
);
const TREE_HELP: &str = concat!(
    "Health follows kstatus: rollouts, Jobs, claims, CRDs, load balancers, Ready/Stalled conditions.\n\n",
    "Examples:\n  sigil tree sync/apps -n gitops\n  sigil tree sync/apps -o json\n\n",
    "Exit codes:\n  0  every object is Current\n  1  error: the cluster could not be reached, the object does not exist, the API refused\n  2  usage error\n  3  an object is InProgress or Failed"
);
const RECONCILE_HELP: &str = concat!(
    "Examples:\n  sigil reconcile sync/apps -n gitops\n  sigil reconcile sync/apps --with-source --timeout 2m\n  sigil reconcile gitsource/fleet\n\n",
    "Exit codes:\n  0  reconciled and Ready\n  1  error: the cluster could not be reached, the object does not exist or is suspended\n  2  usage error\n  3  reconciled but not Ready (the message says why)\n  4  timed out waiting for the controller"
);
const SUSPEND_HELP: &str = concat!(
    "Examples:\n  sigil suspend sync/apps -n gitops\n  sigil suspend gitsource/fleet\n\n",
    "Exit codes:\n  0  suspended\n  1  error: the cluster could not be reached, the object does not exist\n  2  usage error"
);
const RESUME_HELP: &str = concat!(
    "Examples:\n  sigil resume sync/apps -n gitops\n  sigil resume gitsource/fleet --no-wait\n\n",
    "Exit codes:\n  0  resumed (and, unless --no-wait, reconciled and Ready)\n  1  error: the cluster could not be reached, the object does not exist\n  2  usage error\n  3  reconciled but not Ready\n  4  timed out waiting for the controller"
);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sigil::tls::install_crypto_provider();
    let cli = Cli::parse();
    cli::init_tracing(cli.log_format);
    match run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The whole chain on one line, never a backtrace: errors are for users.
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(cli::status::exit_code(&error))
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Controller(args) => cli::controller::run(args).await?,
        #[cfg(feature = "dev")]
        Command::Dev(args) => cli::dev::run(args).await?,
        Command::Crds(args) => cli::crds::run(args)?,
        Command::Seal(args) => cli::seal::run(args).await?,
        Command::Set(args) => cli::set::run(args).await?,
        Command::FetchKey(args) => cli::fetch_key::run(args).await?,
        Command::Unseal(args) => cli::unseal::run(args)?,
        Command::Reencrypt(args) => cli::reencrypt::run(args).await?,
        Command::Validate(args) => cli::validate::run(args).await?,
        Command::Keygen(args) => cli::keygen::run(args)?,
        Command::Completions(args) => cli::completions::run(args, Cli::command()),
        Command::Scan(args) => cli::scan::run(args)?,
        Command::Diff(args) => cli::diff::run(args).await?,
        Command::Get(args) => cli::status::get::run(args).await?,
        Command::Tree(args) => cli::status::tree::run(args).await?,
        Command::Reconcile(args) => cli::status::reconcile::run(args).await?,
        Command::Suspend(args) => cli::status::suspend::run(args, true).await?,
        Command::Resume(args) => cli::status::suspend::run(args, false).await?,
    }
    Ok(())
}
