//! # credwarden-testkit
//!
//! What the integration tests share: the moto server started on a free loopback port
//! (`python3 -m moto.server`, installed by `scripts/test`), boto3 one-liners to seed or check
//! an account, and a recording relay that sits between a client and moto so tests can assert
//! what was actually sent to AWS (e.g. the session policy inside an `AssumeRole`). Tests
//! only ever talk to loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running moto server; killed on drop.
pub struct Moto {
    child: Child,
    pub url: String,
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound and released; good enough for a test server started next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    /// Start moto on a free port and wait until it accepts connections.
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server starts (pip install 'moto[server]')");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start on {url}");
            std::thread::sleep(Duration::from_millis(200));
        }
        Moto { child, url, port }
    }

    /// `program` with the AWS environment of a test against this server: fixed test
    /// credentials and region, no profile files, no instance metadata — so nothing of the
    /// machine's own AWS set-up is used or printed.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/credwarden-test")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/credwarden-test",
            )
            .env_remove("AWS_PROFILE")
            .env("CREDWARDEN_TEST_MOTO", &self.url);
        c
    }

    /// Run a python script with `ENDPOINT` set to this server; returns its stdout.
    pub fn python(&self, script: &str, args: &[&str]) -> String {
        python(script, &[("ENDPOINT", &self.url)], args)
    }
}

/// Run `python3 -c script args…` with extra environment; panics with stderr on failure.
pub fn python(script: &str, env: &[(&str, &str)], args: &[&str]) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The boto3 keyword arguments for a client of the moto server at `os.environ["ENDPOINT"]`.
pub const BOTO3_KW: &str = r#"dict(endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")"#;

/// One HTTP request as the relay saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub head: String,
    pub body: Vec<u8>,
}

/// A loopback HTTP/1.1 relay that records every request and forwards it to `upstream`.
/// One request per connection (it answers with `Connection: close`), which every HTTP
/// client handles by reconnecting.
pub struct Recorder {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    pub fn start(upstream_port: u16) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let _ = relay(conn, upstream_port, &seen);
                });
            }
        });
        Recorder { url, requests }
    }

    /// Bodies of recorded requests, as text.
    pub fn bodies(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect()
    }
}

fn read_message(r: &mut BufReader<TcpStream>) -> std::io::Result<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let len = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok((head, body))
}

fn relay(conn: TcpStream, upstream_port: u16, seen: &Mutex<Vec<Recorded>>) -> std::io::Result<()> {
    let mut client = BufReader::new(conn);
    let (head, body) = read_message(&mut client)?;
    seen.lock().unwrap().push(Recorded {
        head: head.clone(),
        body: body.clone(),
    });
    let head: String = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
    let mut up = TcpStream::connect(("127.0.0.1", upstream_port))?;
    up.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())?;
    up.write_all(&body)?;
    let mut up = BufReader::new(up);
    let (rhead, rbody) = read_message(&mut up)?;
    let rhead: String = rhead
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
    let mut out = client.into_inner();
    out.write_all(format!("{rhead}Connection: close\r\n\r\n").as_bytes())?;
    out.write_all(&rbody)?;
    out.flush()
}
