//! A loopback `sshd` serving Git over ssh with a test host key, one authorized client key and
//! the matching known_hosts line. Killed (by pid) when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    pub port: u16,
    /// The client's private key (OpenSSH format).
    pub client_key: String,
    /// `[127.0.0.1]:PORT ssh-ed25519 ...` for the server's host key.
    pub known_hosts: String,
    /// A known_hosts line with another key for the same host (to prove verification).
    pub wrong_known_hosts: String,
    pub user: String,
    child: Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new(super::tools::tool("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen failed");
}

/// sshd from `$SIGIL_TEST_BIN` (scripts/install-tools.sh) or the system; absolute, as sshd
/// requires to re-execute itself.
fn find_sshd() -> Option<PathBuf> {
    let from_cache = std::env::var_os("SIGIL_TEST_BIN").map(|bin| PathBuf::from(bin).join("sshd"));
    from_cache
        .into_iter()
        .chain(["/usr/sbin/sshd", "/usr/bin/sshd", "/sbin/sshd"].map(PathBuf::from))
        .find(|p| p.exists())
        .and_then(|p| std::fs::canonicalize(p).ok())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Sshd {
    /// Starts sshd in `dir`, or says why it cannot run.
    pub fn start(dir: &Path) -> Result<Self, String> {
        let sshd = find_sshd().ok_or("sshd is not installed (apt-get install openssh-server)")?;
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let host_key = dir.join("host_ed25519");
        let client_key = dir.join("client_ed25519");
        let other_key = dir.join("other_ed25519");
        keygen(&host_key);
        keygen(&client_key);
        keygen(&other_key);
        let read = |p: PathBuf| std::fs::read_to_string(p).map_err(|e| e.to_string());
        std::fs::write(
            dir.join("authorized_keys"),
            read(client_key.with_extension("pub"))?,
        )
        .map_err(|e| e.to_string())?;
        let port = free_port();
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "root".to_string());
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nAllowUsers {user}\nLogLevel ERROR\n",
            host = host_key.display(),
            dir = dir.display(),
        );
        std::fs::write(dir.join("sshd_config"), config).map_err(|e| e.to_string())?;
        // sshd refuses to start without its privilege-separation folder.
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new(&sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", sshd.display()))?;
        let host_pub = read(host_key.with_extension("pub"))?;
        let other_pub = read(other_key.with_extension("pub"))?;
        let line = |public: &str| {
            let mut parts = public.split_whitespace();
            format!(
                "[127.0.0.1]:{port} {} {}\n",
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default()
            )
        };
        let mut server = Sshd {
            port,
            client_key: read(client_key)?,
            known_hosts: line(&host_pub),
            wrong_known_hosts: line(&other_pub),
            user,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut err) = server.child.stderr.take() {
                    use std::io::Read;
                    let _ = err.read_to_string(&mut stderr);
                }
                return Err(format!("sshd exited with {status}: {stderr}"));
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err("sshd did not listen within 10 s".to_string());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ssh://USER@127.0.0.1:PORT/ABSOLUTE/PATH`.
    pub fn url(&self, repo: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.display()
        )
    }
}
