//! A PostgreSQL cluster of the test's own (initdb in a temporary
//! directory, on a free loopback port), so a test may stop and start the
//! database under a running server. The shared server that
//! `SWARMBRIDGE_TEST_PG` names is never stopped: others' tests use it.
//!
//! Needs PostgreSQL's server binaries (`initdb`, `pg_ctl`): from
//! `SWARMBRIDGE_TEST_PG_BIN`, `pg_config --bindir`, or
//! `/usr/lib/postgresql/*/bin`. PostgreSQL refuses to run as root, so
//! under root the cluster runs as the `postgres` user (`runuser`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// A private PostgreSQL cluster, stopped (immediately) when dropped.
pub struct OwnCluster {
    dir: TempDir,
    bin: PathBuf,
    run_as_postgres: bool,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

/// The directory holding `initdb` and `pg_ctl`, if there is one.
fn server_bin_dir() -> Option<PathBuf> {
    let has_initdb = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(d) = std::env::var("SWARMBRIDGE_TEST_PG_BIN") {
        return Some(PathBuf::from(d)).filter(|d| has_initdb(d));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_initdb(&d) {
            return Some(d);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| has_initdb(d))
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl OwnCluster {
    /// Creates and starts a cluster, or returns None after printing why
    /// the calling test is skipped.
    pub fn start_new(test: &str) -> Option<OwnCluster> {
        let Some(bin) = server_bin_dir() else {
            eprintln!("skipped {test}: no PostgreSQL server binaries (initdb, pg_ctl) here");
            return None;
        };
        let run_as_postgres = is_root();
        let dir = tempfile::tempdir().expect("tempdir");
        if run_as_postgres {
            let chown = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status();
            if !chown.is_ok_and(|s| s.success()) {
                eprintln!("skipped {test}: running as root and cannot hand a directory to the postgres user");
                return None;
            }
        }
        let port = super::child::free_port();
        let cluster = OwnCluster {
            dir,
            bin,
            run_as_postgres,
            port,
        };
        let data = cluster.data_dir();
        let init = cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        cluster.start();
        Some(cluster)
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-l",
                &log,
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server the way an operator's restart does (`-m fast`:
    /// sessions are ended, the port is closed), and waits until it is down.
    pub fn stop(&self) {
        let out = self.run(
            "pg_ctl",
            &["-D", &self.data_dir(), "-m", "fast", "-w", "stop"],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"],
        );
    }
}
