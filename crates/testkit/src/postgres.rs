//! A real PostgreSQL server for a test: `initdb` in a temporary directory, `pg_ctl start` on a
//! free loopback port, stopped (immediate mode) and removed when dropped.
//!
//! Debian's server binaries live in `/usr/lib/postgresql/VERSION/bin` (not on `PATH`); the
//! newest installed is used unless `PG_BIN` names a directory. PostgreSQL refuses to run as
//! root, so under root the server runs as the `postgres` user (Debian's package creates it)
//! through `runuser`, in a directory handed to that user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// A running server with one database, `credwarden`, owned by the user `credwarden`, who may
/// connect over 127.0.0.1 without a password (trust on loopback: a test server only).
pub struct Postgres {
    dir: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// `postgres://credwarden@127.0.0.1:PORT/credwarden`.
    pub url: String,
    as_postgres: bool,
}

fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql (apt-get install postgresql)")
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL server version under /usr/lib/postgresql")
        .1
}

fn is_root() -> bool {
    // The effective uid as `id -u` reports it: no libc binding for one check.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    /// Start a server; panics with the server's log if it does not come up.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let as_postgres = is_root();
        let base = std::env::temp_dir().join(format!(
            "credwarden-pg-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&base).unwrap();
        let data = base.join("data");
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:", base.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(status.success(), "chown of the test database directory");
        }
        let mut pg = Postgres {
            dir: base.clone(),
            data: data.clone(),
            bin,
            port: 0,
            url: String::new(),
            as_postgres,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "credwarden",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let port = free_port();
        pg.port = port;
        pg.restart();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        pg.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "credwarden",
                "credwarden",
            ],
        );
        pg.url = format!("postgres://credwarden@127.0.0.1:{port}/credwarden");
        pg
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// Stop the server now (immediate shutdown: what a crash looks like to clients).
    pub fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Start the server (again, after [`Postgres::stop`]) on its port: TCP on loopback only,
    /// the socket in the test's own directory (not /var/run).
    pub fn restart(&self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c fsync=on -c max_connections=50",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                self.dir.join("log").to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// The data directory (for tests that look at file modes).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
