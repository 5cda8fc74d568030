//! Fetching a Git repository and reading a revision's tree, with gix.
//!
//! * [`fetch`]: one shallow (depth 1) fetch of a branch, tag or commit into a bare cache
//!   repository, skipped when the remote ref did not move. `https://` (token or basic auth),
//!   `ssh://` / `git@host:path` (private key, verified known_hosts) and `file://`.
//! * [`tree`]: the files under a folder of a commit, read from the object database without
//!   a checkout, with caps on file and tree size; symlinks never leave the tree.
//! * [`Cache`]: where the bare repositories live, one per source, with a lock per repository.
//!
//! Everything here is blocking (gix's blocking client); [`Cache`] runs it on tokio's blocking pool.

mod cache;
pub mod credentials;
mod error;
pub mod fetch;
mod ssh;
pub mod tree;

pub use cache::Cache;
pub use credentials::{Auth, Credentials};
pub use error::{FetchError, TreeError};
pub use fetch::{FetchRequest, Fetched};
pub use tree::{TreeFile, TreeLimits};

use std::fmt;

/// What to fetch: the first set wins in the order commit, tag, branch (as the API documents).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Branch(String),
    Tag(String),
    /// A full 40-hex SHA-1.
    Commit(String),
}

impl Reference {
    /// The reference a `GitSource` asks for (default: branch `main`).
    pub fn from_spec(git_ref: Option<&crate::api::git_source::GitRef>) -> Self {
        let Some(git_ref) = git_ref else {
            return Reference::Branch("main".to_string());
        };
        if let Some(commit) = git_ref.commit.as_deref().filter(|c| !c.is_empty()) {
            return Reference::Commit(commit.to_ascii_lowercase());
        }
        if let Some(tag) = git_ref.tag.as_deref().filter(|t| !t.is_empty()) {
            return Reference::Tag(tag.to_string());
        }
        Reference::Branch(
            git_ref
                .branch
                .as_deref()
                .filter(|b| !b.is_empty())
                .unwrap_or("main")
                .to_string(),
        )
    }

    /// The artifact revision for `commit`: `<branch or tag>@sha1:<commit>`, or `sha1:<commit>`
    /// for a commit reference.
    pub fn revision(&self, commit: &str) -> String {
        match self {
            Reference::Branch(name) | Reference::Tag(name) => format!("{name}@sha1:{commit}"),
            Reference::Commit(_) => format!("sha1:{commit}"),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Branch(name) => write!(f, "branch {name:?}"),
            Reference::Tag(name) => write!(f, "tag {name:?}"),
            Reference::Commit(sha) => write!(f, "commit {sha}"),
        }
    }
}

/// The commit SHA-1 of a revision (`main@sha1:<hex>` or `sha1:<hex>`), if it has one.
pub fn commit_of_revision(revision: &str) -> Option<&str> {
    let (_, hex) = revision.rsplit_once("sha1:")?;
    (hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::git_source::GitRef;

    #[test]
    fn reference_precedence_is_commit_tag_branch() {
        assert_eq!(Reference::from_spec(None), Reference::Branch("main".into()));
        let all = GitRef {
            branch: Some("dev".into()),
            tag: Some("v1".into()),
            commit: Some("ABCDEF0123456789abcdef0123456789abcdef01".into()),
        };
        assert_eq!(
            Reference::from_spec(Some(&all)),
            Reference::Commit("abcdef0123456789abcdef0123456789abcdef01".into())
        );
        let tag = GitRef {
            branch: Some("dev".into()),
            tag: Some("v1".into()),
            commit: None,
        };
        assert_eq!(
            Reference::from_spec(Some(&tag)),
            Reference::Tag("v1".into())
        );
    }

    #[test]
    fn revisions_name_the_commit() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let rev = Reference::Branch("main".into()).revision(sha);
        assert_eq!(rev, format!("main@sha1:{sha}"));
        assert_eq!(commit_of_revision(&rev), Some(sha));
        assert_eq!(
            Reference::Commit(sha.into()).revision(sha),
            format!("sha1:{sha}")
        );
        assert_eq!(commit_of_revision("main@sha1:xyz"), None);
    }
}
