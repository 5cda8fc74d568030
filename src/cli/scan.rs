//! `sigil scan`: finds plaintext Secrets in manifests, the way a Sync would refuse them.
//!
//! Walks folders like the Sync walks a Git tree (`*.yaml`, `*.yml`, `*.json`, hidden folders
//! skipped); a file named on the command line is read whatever its name, so it works as a
//! pre-commit hook that passes the staged files. Prints `file:line Secret/name` per finding on
//! stdout and fails when there is any, or when a file cannot be read or parsed (a file that
//! does not parse could hide one).

use std::io::Write;
use std::path::PathBuf;

use crate::git::TreeLimits;
use crate::manifests::parse::parse_files;
use crate::manifests::plaintext;
use crate::manifests::source::{SourceError, read_local};

/// Arguments of `sigil scan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or folders to scan.
    #[arg(default_value = ".")]
    pub paths: Vec<PathBuf>,
}

/// Why the scan failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Read(#[from] SourceError),
    #[error("cannot write the report: {0}")]
    Write(#[from] std::io::Error),
    #[error(
        "found {count} plaintext Secret(s); seal them with `sigil seal` (or reference them with an ExternalSecret)"
    )]
    PlaintextFound { count: usize },
    #[error("{count} file(s) could not be parsed; they may hide a plaintext Secret")]
    Unparsable { count: usize },
}

/// What a scan found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub plaintext: Vec<String>,
    pub unparsable: Vec<String>,
}

fn shown(path: String) -> String {
    path.strip_prefix("./").map(str::to_string).unwrap_or(path)
}

/// Scans the paths; findings go to `out`, parse errors to `err`.
pub fn scan(
    paths: &[PathBuf],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Findings, ScanError> {
    let mut files = Vec::new();
    for path in paths {
        files.extend(read_local(path, TreeLimits::default())?);
    }
    for file in &mut files {
        file.path = shown(std::mem::take(&mut file.path));
    }
    let (manifests, errors) = parse_files(&files);
    let mut findings = Findings::default();
    for error in errors {
        writeln!(err, "{error}")?;
        findings.unparsable.push(error.file);
    }
    for secret in plaintext::find(&manifests) {
        let line = secret.to_string();
        writeln!(out, "{line}")?;
        findings.plaintext.push(line);
    }
    Ok(findings)
}

/// Runs `sigil scan`.
pub fn run(args: Args) -> Result<(), ScanError> {
    let findings = scan(&args.paths, &mut std::io::stdout(), &mut std::io::stderr())?;
    if !findings.plaintext.is_empty() {
        return Err(ScanError::PlaintextFound {
            count: findings.plaintext.len(),
        });
    }
    if !findings.unparsable.is_empty() {
        return Err(ScanError::Unparsable {
            count: findings.unparsable.len(),
        });
    }
    Ok(())
}
