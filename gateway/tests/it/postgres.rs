//! A PostgreSQL cluster of its own for a test (initdb in a temporary directory), with a small
//! schema: `customers` and `financials`.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

use crate::common::*;

/// A PostgreSQL cluster of its own (initdb in a temporary directory), logging every statement.
pub struct Postgres {
    _dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    log: PathBuf,
    /// Log bytes written by the set-up, which mentions every table.
    setup_log: usize,
    child: Child,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, so the backends go with the postmaster.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-QUIT", &pid.to_string()])
                .status();
        }
    }
}

fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed by `cargo xtask setup` (Debian's postgresql package)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

/// Runs a PostgreSQL program as the `postgres` user when we are root (it refuses root).
fn as_postgres(program: &Path) -> Command {
    let root = is_root();
    if root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// A cluster where every login is trusted.
    pub async fn start() -> Postgres {
        Self::start_with(None).await
    }

    /// With `password`: logins over TCP need it (SCRAM) for the `postgres` role.
    pub async fn start_with(password: Option<&str>) -> Postgres {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let root = is_root();
        if root {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb.args(["-U", "postgres", "--no-sync", "--auth-local=trust"]);
        if let Some(password) = password {
            let file = dir.path().join("pwfile");
            std::fs::write(&file, password).unwrap();
            if root {
                let status = std::process::Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(&file)
                    .status()
                    .unwrap();
                assert!(status.success());
            }
            initdb
                .arg("--auth-host=scram-sha-256")
                .arg(format!("--pwfile={}", file.display()));
        } else {
            initdb.arg("--auth-host=trust");
        }
        let out = initdb.arg("-D").arg(&data).output().await.unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let log = dir.path().join("statements.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut child = as_postgres(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "log_statement=all",
            ])
            .arg("-k")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child).await;
        let mut pg = Postgres {
            _dir: dir,
            port,
            bin,
            log,
            setup_log: 0,
            child,
        };
        // The server may accept before it accepts logins: retry the schema for a few seconds.
        let schema = "CREATE TABLE customers (id int PRIMARY KEY, name text);\
                      CREATE TABLE financials (customer_id int REFERENCES customers(id), revenue numeric);\
                      INSERT INTO customers VALUES (1, 'Ada Lovelace'), (2, 'Alan Turing');\
                      INSERT INTO financials VALUES (1, 1000000), (2, 2500000);";
        for attempt in 0.. {
            let out = Command::new(pg.bin.join("psql"))
                .env("PGPASSWORD", password.unwrap_or_default())
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &pg.port.to_string(),
                    "-U",
                    "postgres",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    schema,
                ])
                .output()
                .await
                .unwrap();
            if out.status.success() {
                break;
            }
            assert!(
                attempt < 50,
                "psql: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pg.setup_log = std::fs::metadata(&pg.log).unwrap().len() as usize;
        pg
    }

    /// What PostgreSQL logged since the set-up.
    pub fn statements(&self) -> String {
        let all = std::fs::read(&self.log).unwrap();
        String::from_utf8_lossy(&all[self.setup_log.min(all.len())..]).into_owned()
    }
}

impl Postgres {
    /// Runs `sql` with psql over TCP as `postgres`, with `password` or none.
    pub async fn psql_as_client(&self, password: Option<&str>, sql: &str) -> std::process::Output {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.env_remove("PGPASSWORD");
        if let Some(p) = password {
            cmd.env("PGPASSWORD", p);
        }
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-w",
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
    }
}
