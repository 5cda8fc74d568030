//! Where the real programs the tests drive (age, sshd, kubectl, helm, moto_server, bao, postgres, ...) are.
//! `scripts/install-tools.sh` puts them in `~/.cache/sigil-test/bin`; `scripts/test.sh` exports that
//! directory as `SIGIL_TEST_BIN`.

use std::path::{Path, PathBuf};

/// The path of the program `name`: from `$SIGIL_TEST_BIN`, then the install script's cache
/// (`$SIGIL_TEST_CACHE/bin`, default `~/.cache/sigil-test/bin`), then `PATH`.
///
/// Panics, telling how to install it, when it is nowhere.
pub fn tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(bin) = std::env::var_os("SIGIL_TEST_BIN") {
        dirs.push(PathBuf::from(bin));
    }
    if let Some(cache) = std::env::var_os("SIGIL_TEST_CACHE") {
        dirs.push(Path::new(&cache).join("bin"));
    } else if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cache/sigil-test/bin"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| {
            panic!(
                "test tool `{name}` not found in $SIGIL_TEST_BIN, ~/.cache/sigil-test/bin or PATH: \
                 run scripts/install-tools.sh"
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
