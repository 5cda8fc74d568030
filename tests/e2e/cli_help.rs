//! Every command documents itself with at least one example, and completions work.

use std::process::Command;

fn sigil(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(args)
        .output()
        .expect("sigil runs");
    assert!(
        output.status.success(),
        "sigil {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

fn commands() -> Vec<String> {
    let help = sigil(&["--help"]);
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "help")
        .collect()
}

#[test]
fn every_command_has_an_example() {
    let commands = commands();
    assert!(commands.len() >= 4, "commands found: {commands:?}");
    for command in commands {
        let help = sigil(&[&command, "--help"]);
        assert!(
            help.contains("Examples:\n  sigil "),
            "`sigil {command} --help` shows no example:\n{help}"
        );
    }
}

#[test]
fn completions_cover_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let script = sigil(&["completions", shell]);
        for command in commands() {
            assert!(
                script.contains(&command),
                "{shell} completion lacks {command}"
            );
        }
    }
}
