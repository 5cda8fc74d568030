//! `sigil completions`: shell completion scripts.

use clap_complete::Shell;

/// Arguments of `sigil completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the completion script for `command` (the whole `sigil` CLI) to stdout.
pub fn run(args: Args, mut command: clap::Command) {
    let name = command.get_name().to_string();
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
}
