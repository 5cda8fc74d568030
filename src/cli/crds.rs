//! `sigil crds`: prints the CustomResourceDefinitions.

use std::io::Write;
use std::path::PathBuf;

use crate::api::rendered_crds;
use crate::yaml::YamlError;

/// Arguments of `sigil crds`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write one file per CRD into this folder instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

/// Why `sigil crds` failed.
#[derive(Debug, thiserror::Error)]
pub enum CrdsError {
    #[error(transparent)]
    Yaml(#[from] YamlError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Prints every CRD as multi-document YAML, or writes them into `--output-dir`.
pub fn run(args: Args) -> Result<(), CrdsError> {
    let crds = rendered_crds()?;
    match args.output_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|source| CrdsError::Write {
                path: dir.clone(),
                source,
            })?;
            for crd in crds {
                let path = dir.join(&crd.file_name);
                std::fs::write(&path, crd.yaml)
                    .map_err(|source| CrdsError::Write { path, source })?;
            }
        }
        None => {
            let text: String = crds.into_iter().map(|crd| crd.yaml).collect();
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|source| CrdsError::Write {
                    path: "stdout".into(),
                    source,
                })?;
        }
    }
    Ok(())
}
