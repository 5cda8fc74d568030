//! The `ssh` command gix runs for `ssh://` remotes: only our key, only the known_hosts of the
//! Secret, strict host key checking, no user or system ssh config, no agent, no prompts.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// A private folder holding the key and known_hosts for one fetch; removed on drop.
pub(crate) struct SshFiles {
    dir: PathBuf,
}

impl SshFiles {
    /// Writes the key (mode 0600) and known_hosts into a new 0700 folder under `parent`.
    pub(crate) fn write(
        parent: &Path,
        identity: &[u8],
        known_hosts: &str,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(parent)?;
        let dir = parent.join(format!("ssh-{}", uuid::Uuid::new_v4().simple()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let files = SshFiles { dir };
        let mut key = Zeroizing::new(identity.to_vec());
        if !key.ends_with(b"\n") {
            // OpenSSH refuses a PEM key without its final newline.
            key.push(b'\n');
        }
        write_private(&files.identity_path(), &key)?;
        write_private(&files.known_hosts_path(), known_hosts.as_bytes())?;
        Ok(files)
    }

    fn identity_path(&self) -> PathBuf {
        self.dir.join("identity")
    }

    fn known_hosts_path(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// The command line gix runs (through `sh -c`, with host and command appended).
    pub(crate) fn command(&self) -> OsString {
        let mut cmd = String::from("ssh -F /dev/null");
        cmd.push_str(" -i ");
        cmd.push_str(&shell_quote(&self.identity_path().to_string_lossy()));
        cmd.push_str(" -o UserKnownHostsFile=");
        cmd.push_str(&shell_quote(&self.known_hosts_path().to_string_lossy()));
        for option in [
            "GlobalKnownHostsFile=/dev/null",
            "StrictHostKeyChecking=yes",
            "IdentitiesOnly=yes",
            "IdentityAgent=none",
            "BatchMode=yes",
            "PasswordAuthentication=no",
            "KbdInteractiveAuthentication=no",
            "ConnectTimeout=20",
            "LogLevel=ERROR",
        ] {
            cmd.push_str(" -o ");
            cmd.push_str(option);
        }
        // Keep ssh's own messages (host key and auth failures) for the error; gix does not.
        cmd.push_str(" 2>>");
        cmd.push_str(&shell_quote(&self.stderr_path().to_string_lossy()));
        cmd.into()
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.join("stderr")
    }

    /// What ssh (and the remote `git upload-pack`) wrote on stderr, at most 4 KiB.
    pub(crate) fn stderr(&self) -> String {
        let text = std::fs::read(self.stderr_path()).unwrap_or_default();
        let start = text.len().saturating_sub(4096);
        String::from_utf8_lossy(&text[start..])
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Drop for SshFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

/// Quotes a word for `sh`.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_is_private_and_removed_on_drop() {
        let parent = std::env::temp_dir().join(format!("sigil-ssh-test-{}", uuid::Uuid::new_v4()));
        let files =
            SshFiles::write(&parent, b"KEY", "[127.0.0.1]:2222 ssh-ed25519 AAAA").expect("writes");
        let mode = std::fs::metadata(files.identity_path())
            .expect("key exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read(files.identity_path()).expect("reads"),
            b"KEY\n"
        );
        let command = files.command().into_string().expect("UTF-8");
        assert!(command.contains("StrictHostKeyChecking=yes"), "{command}");
        assert!(command.contains("UserKnownHostsFile='"), "{command}");
        let dir = files.dir.clone();
        drop(files);
        assert!(!dir.exists());
        let _ = std::fs::remove_dir_all(parent);
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
