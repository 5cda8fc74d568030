//! Which files are manifests, and reading them from a local folder (for `sigil diff` and
//! `sigil scan`) with the same rules the Sync applies to a Git tree: `*.yaml`, `*.yml` and
//! `*.json`, hidden files and folders skipped, symlinks never followed out of the root, and the
//! same size caps.

use std::path::{Path, PathBuf};

use crate::git::{TreeFile, TreeLimits};

/// A manifest file: its path as shown in messages, and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    pub path: String,
    pub content: Vec<u8>,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, content: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            content: content.into(),
        }
    }
}

impl From<TreeFile> for SourceFile {
    fn from(file: TreeFile) -> Self {
        Self {
            path: file.path,
            content: file.content,
        }
    }
}

/// Whether a path names a manifest: a YAML or JSON extension, no hidden component.
pub fn is_manifest_path(path: &str) -> bool {
    let hidden = path
        .split('/')
        .any(|part| part.starts_with('.') && part != "." && part != "..");
    let lower = path.to_ascii_lowercase();
    !hidden
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| lower.ends_with(ext))
}

/// A local folder could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: symlink points outside {root}")]
    SymlinkEscapes { path: String, root: String },
    #[error("{path}: {size} bytes is more than the {limit}-byte limit per file")]
    FileTooLarge { path: String, size: u64, limit: u64 },
    #[error("the files under {path} exceed the {limit}-byte limit")]
    TreeTooLarge { path: String, limit: u64 },
    #[error("more than {limit} files under {path}")]
    TooManyFiles { path: String, limit: usize },
}

/// Reads `path`: a single file (whatever its name), or every manifest under a folder.
pub fn read_local(path: &Path, limits: TreeLimits) -> Result<Vec<SourceFile>, SourceError> {
    read_local_selected(path, limits, is_manifest_path)
}

/// Reads `path`: a single file, or every file under a folder whose name `select` accepts.
pub fn read_local_selected(
    path: &Path,
    limits: TreeLimits,
    select: fn(&str) -> bool,
) -> Result<Vec<SourceFile>, SourceError> {
    let io = |p: &Path| {
        let shown = p.display().to_string();
        move |source| SourceError::Io {
            path: shown,
            source,
        }
    };
    let meta = std::fs::metadata(path).map_err(io(path))?;
    let mut reader = LocalReader {
        root: std::fs::canonicalize(path).map_err(io(path))?,
        shown_root: path.display().to_string(),
        limits,
        select,
        files: Vec::new(),
        total: 0,
    };
    if meta.is_file() {
        reader.read(path)?;
    } else {
        reader.walk(path, 0)?;
    }
    reader.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(reader.files)
}

struct LocalReader {
    root: PathBuf,
    shown_root: String,
    limits: TreeLimits,
    select: fn(&str) -> bool,
    files: Vec<SourceFile>,
    total: u64,
}

impl LocalReader {
    fn walk(&mut self, dir: &Path, depth: usize) -> Result<(), SourceError> {
        let io = |source| SourceError::Io {
            path: dir.display().to_string(),
            source,
        };
        if depth > 48 {
            return Err(io(std::io::Error::other(
                "more than 48 nested folders (a symlink loop?)",
            )));
        }
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let file_type = entry.file_type().map_err(io)?;
            if file_type.is_symlink() {
                let target = std::fs::canonicalize(&path);
                match target {
                    Ok(target) if target.starts_with(&self.root) => {}
                    Ok(_) if !(self.select)(&name) => continue,
                    Ok(_) => {
                        return Err(SourceError::SymlinkEscapes {
                            path: path.display().to_string(),
                            root: self.shown_root.clone(),
                        });
                    }
                    // A dangling link is not followed.
                    Err(_) => continue,
                }
            }
            let meta = std::fs::metadata(&path).map_err(io)?;
            if meta.is_dir() {
                self.walk(&path, depth + 1)?;
            } else if meta.is_file() && (self.select)(&name) {
                self.read(&path)?;
            }
        }
        Ok(())
    }

    fn read(&mut self, path: &Path) -> Result<(), SourceError> {
        let shown = path.display().to_string();
        if self.files.len() >= self.limits.max_files {
            return Err(SourceError::TooManyFiles {
                path: self.shown_root.clone(),
                limit: self.limits.max_files,
            });
        }
        let size = std::fs::metadata(path)
            .map_err(|source| SourceError::Io {
                path: shown.clone(),
                source,
            })?
            .len();
        if size > self.limits.max_file_bytes {
            return Err(SourceError::FileTooLarge {
                path: shown,
                size,
                limit: self.limits.max_file_bytes,
            });
        }
        self.total += size;
        if self.total > self.limits.max_total_bytes {
            return Err(SourceError::TreeTooLarge {
                path: self.shown_root.clone(),
                limit: self.limits.max_total_bytes,
            });
        }
        let content = std::fs::read(path).map_err(|source| SourceError::Io {
            path: shown.clone(),
            source,
        })?;
        self.files.push(SourceFile {
            path: shown,
            content,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths() {
        assert!(is_manifest_path("clusters/dev/app.yaml"));
        assert!(is_manifest_path("a.YML"));
        assert!(is_manifest_path("./a/b.json"));
        assert!(!is_manifest_path("README.md"));
        assert!(!is_manifest_path(".github/workflows/ci.yaml"));
        assert!(!is_manifest_path("a/.hidden.yaml"));
    }

    #[test]
    fn local_folders_follow_the_same_rules() {
        let dir = std::env::temp_dir().join(format!("sigil-source-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("app/.git")).expect("dirs");
        std::fs::write(dir.join("app/a.yaml"), "a: 1\n").expect("write");
        std::fs::write(dir.join("app/.git/x.yaml"), "x: 1\n").expect("write");
        std::fs::write(dir.join("app/notes.txt"), "n\n").expect("write");
        std::os::unix::fs::symlink("/etc/hostname", dir.join("app/out.yaml")).expect("link");
        let err = read_local(&dir.join("app"), TreeLimits::default()).expect_err("escapes");
        assert!(matches!(err, SourceError::SymlinkEscapes { .. }), "{err}");
        std::fs::remove_file(dir.join("app/out.yaml")).expect("unlink");
        std::os::unix::fs::symlink("a.yaml", dir.join("app/b.yaml")).expect("link");
        let files = read_local(&dir.join("app"), TreeLimits::default()).expect("reads");
        let names: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        assert_eq!(
            names,
            [
                format!("{}/app/a.yaml", dir.display()),
                format!("{}/app/b.yaml", dir.display())
            ]
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
