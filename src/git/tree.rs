//! The files under a folder of a commit, straight from the object database (no checkout).
//!
//! Hidden folders (`.git`, `.github`, ...) are not entered. Symlinks are resolved inside the
//! commit's tree only: one pointing outside it (absolute, or climbing above the root) is never
//! followed. Caps bound a single file, the sum of the files and their number; a symlink loop
//! runs into the depth or count cap.

use std::path::Path;

use gix::ObjectId;
use gix::objs::tree::EntryKind;

use super::TreeError;
use super::error::chain;

/// Size caps for one read.
#[derive(Clone, Copy, Debug)]
pub struct TreeLimits {
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    pub max_files: usize,
}

impl Default for TreeLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 4 << 20,
            max_total_bytes: 64 << 20,
            max_files: 10_000,
        }
    }
}

/// One file read from the tree; `path` is relative to the repository root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeFile {
    pub path: String,
    pub content: Vec<u8>,
}

const MAX_SYMLINK_HOPS: usize = 16;
const MAX_DEPTH: usize = 48;

/// Reads every file under `folder` of `commit` whose repository-relative path `select` accepts,
/// in path order.
pub fn read_folder(
    repo_dir: &Path,
    commit: &str,
    folder: &str,
    select: &dyn Fn(&str) -> bool,
    limits: TreeLimits,
) -> Result<Vec<TreeFile>, TreeError> {
    // A repository the cache never fetched (a new process, an emptied cache) holds no commit
    // yet: the caller fetches it, as for any commit the cache lacks.
    if !repo_dir.exists() {
        return Err(TreeError::MissingCommit {
            commit: commit.to_string(),
        });
    }
    let repo =
        gix::open_opts(repo_dir, gix::open::Options::isolated()).map_err(|e| TreeError::Open {
            path: repo_dir.display().to_string(),
            message: chain(&e),
        })?;
    let commit_id =
        ObjectId::from_hex(commit.as_bytes()).map_err(|_| TreeError::MissingCommit {
            commit: commit.to_string(),
        })?;
    let root = repo
        .find_commit(commit_id)
        .map_err(|_| TreeError::MissingCommit {
            commit: commit.to_string(),
        })?
        .tree_id()
        .map_err(|e| TreeError::Corrupt {
            commit: commit.to_string(),
            message: chain(&e),
        })?
        .detach();
    let reader = Reader {
        repo: &repo,
        commit,
        root,
        limits,
        select,
        folder: folder.to_string(),
    };
    let components = normalize_folder(folder)?;
    let folder_id = if components.is_empty() {
        root
    } else {
        match reader.resolve(components.clone(), folder)? {
            Resolved::Tree(id, _) => id,
            _ => {
                return Err(TreeError::PathNotFound {
                    path: folder.to_string(),
                    commit: commit.to_string(),
                });
            }
        }
    };
    let mut state = WalkState::default();
    reader.walk(folder_id, &components, &components, 0, &mut state)?;
    state.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(state.files)
}

/// `./clusters/dev/` → `["clusters", "dev"]`; `..` and absolute paths are refused.
fn normalize_folder(folder: &str) -> Result<Vec<String>, TreeError> {
    if folder.starts_with('/') {
        return Err(TreeError::InvalidPath {
            path: folder.to_string(),
            message: "must be relative to the repository root, not absolute".to_string(),
        });
    }
    let mut out = Vec::new();
    for part in folder.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(TreeError::InvalidPath {
                    path: folder.to_string(),
                    message: "must not contain `..`".to_string(),
                });
            }
            name => out.push(name.to_string()),
        }
    }
    Ok(out)
}

#[derive(Default)]
struct WalkState {
    files: Vec<TreeFile>,
    total: u64,
}

enum Resolved {
    Tree(ObjectId, Vec<String>),
    Blob(ObjectId),
    Missing,
    /// A submodule or anything that is not a file or a folder.
    Other,
}

struct Reader<'a> {
    repo: &'a gix::Repository,
    commit: &'a str,
    root: ObjectId,
    limits: TreeLimits,
    select: &'a dyn Fn(&str) -> bool,
    folder: String,
}

impl Reader<'_> {
    fn corrupt(&self, e: &gix::Error) -> TreeError {
        TreeError::Corrupt {
            commit: self.commit.to_string(),
            message: chain(e),
        }
    }

    fn entries(&self, tree: ObjectId) -> Result<Vec<gix::objs::tree::Entry>, TreeError> {
        let tree = self.repo.find_tree(tree).map_err(|e| self.corrupt(&e))?;
        let decoded = tree.decode().map_err(|e| self.corrupt(&e))?;
        let owned: gix::objs::Tree = decoded.into();
        Ok(owned.entries)
    }

    fn blob(&self, id: ObjectId) -> Result<Vec<u8>, TreeError> {
        let object = self.repo.find_object(id).map_err(|e| self.corrupt(&e))?;
        Ok(object.detach().data)
    }

    /// Follows `path` (components from the root) through the tree, resolving symlinks that
    /// stay inside it. `shown` names the path in errors.
    fn resolve(&self, path: Vec<String>, shown: &str) -> Result<Resolved, TreeError> {
        let mut pending = path;
        let mut hops = 0;
        'restart: loop {
            let mut current = self.root;
            let mut walked: Vec<String> = Vec::new();
            for (index, name) in pending.iter().enumerate() {
                let entries = self.entries(current)?;
                let Some(entry) = entries.iter().find(|e| e.filename == name.as_str()) else {
                    return Ok(Resolved::Missing);
                };
                let last = index + 1 == pending.len();
                match entry.mode.kind() {
                    EntryKind::Tree => {
                        current = entry.oid;
                        walked.push(name.clone());
                        if last {
                            return Ok(Resolved::Tree(current, walked));
                        }
                    }
                    EntryKind::Blob | EntryKind::BlobExecutable => {
                        return Ok(if last {
                            Resolved::Blob(entry.oid)
                        } else {
                            Resolved::Missing
                        });
                    }
                    EntryKind::Link => {
                        hops += 1;
                        let target = String::from_utf8_lossy(&self.blob(entry.oid)?).into_owned();
                        if hops > MAX_SYMLINK_HOPS {
                            return Err(TreeError::SymlinkDangling {
                                path: shown.to_string(),
                                target,
                            });
                        }
                        let mut next = join_link(&walked, &target).ok_or_else(|| {
                            TreeError::SymlinkEscapes {
                                path: shown.to_string(),
                                target: target.clone(),
                            }
                        })?;
                        next.extend(pending[index + 1..].iter().cloned());
                        pending = next;
                        if pending.is_empty() {
                            return Ok(Resolved::Tree(self.root, Vec::new()));
                        }
                        continue 'restart;
                    }
                    EntryKind::Commit => return Ok(Resolved::Other),
                }
            }
            return Ok(Resolved::Tree(current, walked));
        }
    }

    /// Walks the folder `tree`, shown as `shown` and really at `real` (they differ below a
    /// symlinked folder).
    fn walk(
        &self,
        tree: ObjectId,
        shown: &[String],
        real: &[String],
        depth: usize,
        state: &mut WalkState,
    ) -> Result<(), TreeError> {
        if depth > MAX_DEPTH {
            return Err(TreeError::InvalidPath {
                path: shown.join("/"),
                message: format!("more than {MAX_DEPTH} nested folders (a symlink loop?)"),
            });
        }
        for entry in self.entries(tree)? {
            let name = entry.filename.to_string();
            if name.starts_with('.') {
                continue;
            }
            let shown_path = join(shown, &name);
            let shown_child: Vec<String> = shown.iter().cloned().chain([name.clone()]).collect();
            let real_child: Vec<String> = real.iter().cloned().chain([name.clone()]).collect();
            match entry.mode.kind() {
                EntryKind::Tree => {
                    self.walk(entry.oid, &shown_child, &real_child, depth + 1, state)?
                }
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    if (self.select)(&shown_path) {
                        self.read(entry.oid, shown_path, state)?;
                    }
                }
                EntryKind::Link => {
                    let selected = (self.select)(&shown_path);
                    match self.resolve(real_child.clone(), &shown_path) {
                        Ok(Resolved::Tree(id, resolved)) => {
                            self.walk(id, &shown_child, &resolved, depth + 1, state)?
                        }
                        Ok(Resolved::Blob(id)) if selected => self.read(id, shown_path, state)?,
                        Ok(Resolved::Missing) if selected => {
                            let target =
                                String::from_utf8_lossy(&self.blob(entry.oid)?).into_owned();
                            return Err(TreeError::SymlinkDangling {
                                path: shown_path,
                                target,
                            });
                        }
                        Err(err @ TreeError::SymlinkEscapes { .. })
                        | Err(err @ TreeError::SymlinkDangling { .. })
                            if selected =>
                        {
                            return Err(err);
                        }
                        // Not a manifest name: an escaping or dangling link is simply not followed.
                        Ok(_)
                        | Err(TreeError::SymlinkEscapes { .. })
                        | Err(TreeError::SymlinkDangling { .. }) => {}
                        Err(err) => return Err(err),
                    }
                }
                EntryKind::Commit => {}
            }
        }
        Ok(())
    }

    fn read(&self, id: ObjectId, path: String, state: &mut WalkState) -> Result<(), TreeError> {
        if state.files.len() >= self.limits.max_files {
            return Err(TreeError::TooManyFiles {
                path: self.folder.clone(),
                limit: self.limits.max_files,
            });
        }
        let size = self
            .repo
            .find_header(id)
            .map_err(|e| self.corrupt(&e))?
            .size();
        if size > self.limits.max_file_bytes {
            return Err(TreeError::FileTooLarge {
                path,
                size,
                limit: self.limits.max_file_bytes,
            });
        }
        state.total += size;
        if state.total > self.limits.max_total_bytes {
            return Err(TreeError::TreeTooLarge {
                path: self.folder.clone(),
                limit: self.limits.max_total_bytes,
            });
        }
        let content = self.blob(id)?;
        state.files.push(TreeFile { path, content });
        Ok(())
    }
}

fn join(parent: &[String], name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", parent.join("/"))
    }
}

/// The path a symlink inside folder `parent` points to, or None when it leaves the tree.
fn join_link(parent: &[String], target: &str) -> Option<Vec<String>> {
    if target.starts_with('/') || target.is_empty() {
        return None;
    }
    let mut out: Vec<String> = parent.to_vec();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            name => out.push(name.to_string()),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_stay_inside_the_tree() {
        let parent = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            join_link(&parent, "../c/x.yaml"),
            Some(vec!["a".into(), "c".into(), "x.yaml".into()])
        );
        assert_eq!(join_link(&parent, "../../x"), Some(vec!["x".into()]));
        assert_eq!(join_link(&parent, "../../../x"), None);
        assert_eq!(join_link(&parent, "/etc/passwd"), None);
    }

    #[test]
    fn folders_are_normalized() {
        assert_eq!(
            normalize_folder("./clusters//dev/").expect("valid"),
            vec!["clusters".to_string(), "dev".to_string()]
        );
        assert!(normalize_folder("a/../../b").is_err());
        assert!(normalize_folder("..").is_err());
        assert!(normalize_folder("/etc").is_err());
        assert!(normalize_folder("/").is_err());
        assert!(normalize_folder("").expect("root").is_empty());
    }
}
