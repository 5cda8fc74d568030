//! A real PostgreSQL (Debian's `postgresql`, `scripts/install-tools.sh`) on a
//! free 127.0.0.1 port, and OpenBao's database secrets engine pointed at it.
//!
//! [`Postgres::start`] runs `initdb` (password auth over TCP, scram-sha-256)
//! and `pg_ctl start` as the `postgres` user in a temp dir of its own, and
//! stops the server by the pid in `postmaster.pid` when dropped, also when the
//! test fails. [`Postgres::can_log_in`] tries credentials with the real `psql`.
//! [`database_engine`] mounts `database/` in OpenBao with a connection `pg`
//! and a role issuing logins of the given TTLs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::controller::free_port;
use super::openbao::OpenBao;
use super::tools::tool;

/// The superuser OpenBao connects as.
pub const SUPERUSER: &str = "postgres";
const SUPERUSER_PASSWORD: &str = "sigil-test-superuser";

/// A running PostgreSQL server.
pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
}

/// A server program resolved past the tool cache's symlinks (under root's home,
/// which the `postgres` user cannot enter).
fn program(name: &str) -> PathBuf {
    std::fs::canonicalize(tool(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs a server program as `postgres` (PostgreSQL refuses to run as root).
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl Postgres {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let password_file = dir.path().join("superuser-password");
        std::fs::write(&password_file, SUPERUSER_PASSWORD).expect("password file");
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("-R").arg("postgres:postgres").arg(dir.path());
            run(chown, "chown the PostgreSQL dir");
        }
        let mut initdb = as_postgres(&program("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
            ])
            .arg(format!("--pwfile={}", password_file.display()))
            .args(["--no-sync", "-E", "UTF8"]);
        run(initdb, "initdb");
        let port = free_port();
        let mut start = as_postgres(&program("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                dir.path().display()
            ))
            .args(["-w", "-t", "30", "start"]);
        let server = Self { dir, port };
        let output = start.stdin(Stdio::null()).output().expect("pg_ctl start");
        assert!(
            output.status.success(),
            "pg_ctl start failed: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            server.log()
        );
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.can_log_in(SUPERUSER, SUPERUSER_PASSWORD) {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL on port {} refused the superuser for 30s: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Whether `user`/`password` log in over TCP (with `psql`, password in the environment).
    pub fn can_log_in(&self, user: &str, password: &str) -> bool {
        Command::new(tool("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", user, "-d", "postgres", "-w", "-tAc", "select 1"])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|out| {
                out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1"
            })
    }

    /// The connection URL template OpenBao's postgres plugin fills in.
    fn connection_url(&self) -> String {
        format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Stop the postmaster we started, by its pid (SIGQUIT: immediate shutdown), and wait.
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-QUIT", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Mounts the database secrets engine at `database/` with the connection `pg`
/// and the role `role` (logins of `ttl` seconds, renewable up to `max_ttl`).
pub async fn database_engine(bao: &OpenBao, pg: &Postgres, role: &str, ttl: u64, max_ttl: u64) {
    bao.root("POST", "sys/mounts/database", json!({"type": "database"}))
        .await;
    bao.root(
        "POST",
        "database/config/pg",
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": pg.connection_url(),
            "username": SUPERUSER,
            "password": SUPERUSER_PASSWORD,
            "allowed_roles": ["*"],
            "verify_connection": true,
        }),
    )
    .await;
    database_role(bao, role, ttl, max_ttl).await;
}

/// Adds (or replaces) a role of the `pg` connection.
pub async fn database_role(bao: &OpenBao, role: &str, ttl: u64, max_ttl: u64) {
    bao.root(
        "POST",
        &format!("database/roles/{role}"),
        json!({
            "db_name": "pg",
            "creation_statements": [
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
            ],
            "default_ttl": ttl,
            "max_ttl": max_ttl,
        }),
    )
    .await;
}

/// The ids of the leases OpenBao holds under `database/creds/{role}/`.
pub async fn leases(bao: &OpenBao, role: &str) -> Vec<String> {
    let (status, body) = bao
        .try_request(
            None,
            "LIST",
            &format!("sys/leases/lookup/database/creds/{role}/"),
            Value::Null,
        )
        .await;
    if status == http::StatusCode::NOT_FOUND {
        return Vec::new();
    }
    assert!(status.is_success(), "LIST leases: {status} {body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    answer["data"]["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k.as_str())
                .map(|k| format!("database/creds/{role}/{k}"))
                .collect()
        })
        .unwrap_or_default()
}
