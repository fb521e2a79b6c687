//! Regression tests for the broker items of the security review (issue 12), against the real
//! server on loopback: group names kept whole, refusals that do not say whether a role
//! exists, rate limits that keep the audit and findings from flooding, owner-only files,
//! errors without server internals, a server that slow or many clients cannot starve, the
//! JWKS read again when a key rotates, and the proxy's shared secret in header mode.
//!
//! None of these needs STS: role grants come from the config (`read_role_tags = false`) and
//! every credential request here is refused before the broker would call AWS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use broker::auth::testing::TestIdp;
use broker::Broker;
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.test";
const ADMIN_ROLE: &str = "arn:aws:iam::123456789012:role/admin";
const PAYMENTS_ROLE: &str = "arn:aws:iam::123456789012:role/payments-api";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Server {
    addr: SocketAddr,
    url: String,
    dir: tempfile::TempDir,
}

/// The configuration every test starts from: `top` adds top-level keys, `auth` is the
/// `[auth]` table, `tables` adds more tables at the end.
fn config(dir: &std::path::Path, top: &str, auth: &str, tables: &str) -> String {
    format!(
        r#"audit = "{audit}"
findings = "{findings}"
read_role_tags = false
admin_groups = ["security"]
{top}
[[roles]]
arn = "{ADMIN_ROLE}"
groups = ["admins"]
[[roles]]
arn = "{PAYMENTS_ROLE}"
groups = ["payments"]
[auth]
{auth}
[[networks]]
name = "lab"
clients = ["127.0.0.0/8", "10.8.0.0/16"]
egress = ["198.51.100.0/24"]
[aws]
region = "us-east-1"
endpoint_url = "http://127.0.0.1:9"
{tables}
"#,
        audit = dir.join("audit.sqlite").display(),
        findings = dir.join("findings.jsonl").display(),
    )
}

const HEADER_AUTH: &str = r#"mode = "header"
groups_header = "x-authenticated-groups"
trusted_proxies = ["127.0.0.1/32"]"#;

fn jwt_auth(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "mode = \"jwt\"\njwks_file = \"{}\"\nissuer = \"{ISSUER}\"\n\
         audience = \"credwarden\"\n{extra}",
        dir.join("jwks.json").display()
    )
}

mod common;
use common::aws_env;

/// Start the broker (plain HTTP on loopback, the same bounded server as TLS).
fn start(dir: tempfile::TempDir, config: String) -> Server {
    let addr = common::serve(broker::config::parse(&config).unwrap());
    Server {
        addr,
        url: format!("http://{addr}"),
        dir,
    }
}

/// Build a broker without serving it: the error, if it refuses to start.
fn start_error(config: String) -> String {
    aws_env();
    let cfg = broker::config::parse(&config).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match rt.block_on(Broker::new(cfg)) {
        Ok(_) => "started".into(),
        Err(e) => e.to_string(),
    }
}

impl Server {
    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, v, _) = common::call(&self.url, method, path, headers, body);
        (status, v)
    }

    /// (decision, reason) of every audit row of `user`, oldest first.
    fn audit(&self, user: &str) -> Vec<(String, String)> {
        let c = rusqlite::Connection::open(self.dir.path().join("audit.sqlite")).unwrap();
        let mut s = c
            .prepare("SELECT decision, reason FROM broker_audit WHERE user = ?1 ORDER BY seq")
            .unwrap();
        s.query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn findings(&self, kind: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join("findings.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|f| f["details"]["kind"] == kind)
            .count()
    }
}

fn as_user<'a>(user: &'a str, groups: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("x-authenticated-user", user),
        ("x-authenticated-groups", groups),
        ("x-forwarded-for", "10.8.0.7"),
    ]
}

/// Item 1 (high): `Former admins` is not `admins`, and `acme:security` is not `security`.
#[test]
fn group_names_keep_their_spaces_and_colons() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "", HEADER_AUTH, "");
    let s = start(dir, cfg);

    let (status, v) = s.call(
        "GET",
        "/v1/roles",
        &as_user("mallory", "Former admins"),
        None,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["groups"], json!(["Former admins"]));
    assert_eq!(
        v["roles"],
        json!([]),
        "a role granted to admins is not Former admins'"
    );
    let (status, v) = s.call(
        "POST",
        "/v1/credentials",
        &as_user("mallory", "Former admins"),
        Some(json!({"role": "admin"})),
    );
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("not-authorised")),
        "{v}"
    );

    let (status, v) = s.call(
        "GET",
        "/v1/audit",
        &as_user("mallory", "acme:security"),
        None,
    );
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("not-admin")),
        "{v}"
    );
    let (status, v) = s.call(
        "GET",
        "/v1/audit",
        &as_user("mallory", "acme:security, sec"),
        None,
    );
    assert_eq!(status, 403, "{v}");

    // The real members still get in; a comma separates groups in the header.
    let (_, v) = s.call(
        "GET",
        "/v1/roles",
        &as_user("root", "Former admins, admins"),
        None,
    );
    assert_eq!(v["roles"], json!([ADMIN_ROLE]));
    let (status, _) = s.call(
        "GET",
        "/v1/audit",
        &as_user("carol", "acme:security,security"),
        None,
    );
    assert_eq!(status, 200);
}

/// Item 6: a role that does not exist and a role the caller may not use are refused alike.
#[test]
fn refusals_do_not_say_whether_a_role_exists() {
    let dir = tempfile::tempdir().unwrap();
    let tables = r#"[[roles]]
arn = "arn:aws:iam::111111111111:role/shared"
groups = ["admins"]
[[roles]]
arn = "arn:aws:iam::222222222222:role/shared"
groups = ["admins"]"#;
    let cfg = config(dir.path(), "", HEADER_AUTH, "");
    // [[roles]] belong before [auth]: put the extra grants beside the others.
    let cfg = cfg.replacen("[auth]", &format!("{tables}\n[auth]"), 1);
    let s = start(dir, cfg);
    let ask = |role: &str| {
        let (status, v) = s.call(
            "POST",
            "/v1/credentials",
            &as_user("eve", "payments"),
            Some(json!({"role": role})),
        );
        (status, v["code"].clone(), v["error"].clone())
    };
    let unknown = ask("no-such-role");
    assert_eq!(unknown.0, 403, "{unknown:?}");
    for role in [
        "admin",
        ADMIN_ROLE,
        "arn:aws:iam::999999999999:role/admin",
        "shared",
    ] {
        assert_eq!(ask(role), unknown, "{role} is refused differently");
    }
    let said = unknown.2.as_str().unwrap();
    assert!(
        !said.contains("123456789012") && !said.contains("no-such-role"),
        "{said}"
    );
    // The audit still tells the two apart.
    let reasons: Vec<String> = s.audit("eve").into_iter().map(|(_, r)| r).collect();
    assert!(
        reasons[0].contains("not a role the broker knows"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains(ADMIN_ROLE), "{reasons:?}");
}

/// Item 7: access requests are rate-limited per user, and a streak of rate-limit refusals
/// is one audit row plus one row with the count.
#[test]
fn rate_limits_keep_the_audit_and_findings_small() {
    let dir = tempfile::tempdir().unwrap();
    let top = "rate_limit_per_minute = 30\naccess_requests_per_hour = 3\nrefusal_burst = 1000";
    let cfg = config(dir.path(), top, HEADER_AUTH, "");
    let s = start(dir, cfg);

    let codes: Vec<u16> = (0..20)
        .map(|i| {
            s.call(
                "POST",
                "/v1/access-requests",
                &as_user("flood", "payments"),
                Some(json!({"group": "admins", "reason": format!("please {i}")})),
            )
            .0
        })
        .collect();
    assert_eq!(codes[..3], [202, 202, 202], "{codes:?}");
    assert!(codes[3..].iter().all(|c| *c == 429), "{codes:?}");
    assert_eq!(s.findings("access-request"), 3);
    let rows = s.audit("flood");
    assert_eq!(
        rows.iter().filter(|(d, _)| d == "access-requested").count(),
        3
    );
    assert_eq!(
        rows.len(),
        4,
        "17 refusals are one row (the count comes later): {rows:?}"
    );

    // Credentials: 30 allowed per minute (refused here: no group), then a streak of 429s.
    let ask = || {
        s.call(
            "POST",
            "/v1/credentials",
            &as_user("greedy", "payments"),
            Some(json!({"role": "admin"})),
        )
        .0
    };
    let codes: Vec<u16> = (0..50).map(|_| ask()).collect();
    assert!(codes[..30].iter().all(|c| *c == 403), "{codes:?}");
    assert!(codes[30..].iter().all(|c| *c == 429), "{codes:?}");
    assert_eq!(
        s.audit("greedy").len(),
        31,
        "one row for the whole streak so far"
    );
    // The bucket refills (one request per two seconds): the streak ends with one row that
    // counts the refusals not written.
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(ask(), 403);
    let rows = s.audit("greedy");
    assert_eq!(rows.len(), 33, "{rows:?}");
    assert!(
        rows[31].1.contains("19 more credential requests refused"),
        "{:?}",
        rows[31]
    );
}

/// Item 9: the audit store, its WAL and shared memory, the findings and the directories the
/// broker creates are the owner's alone.
#[test]
fn audit_and_findings_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state/broker");
    let cfg = config(dir.path(), "", HEADER_AUTH, "").replace(
        &dir.path().join("audit.sqlite").display().to_string(),
        &state.join("audit.sqlite").display().to_string(),
    );
    // A findings file left world-readable by an older version is narrowed.
    std::fs::write(dir.path().join("findings.jsonl"), "").unwrap();
    std::fs::set_permissions(
        dir.path().join("findings.jsonl"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let s = start(dir, cfg);
    // One audited request, so the WAL is in use.
    let (status, _) = s.call(
        "POST",
        "/v1/access-requests",
        &as_user("alice", "payments"),
        Some(json!({"group": "admins", "reason": "on call"})),
    );
    assert_eq!(status, 202);
    let mode = |p: std::path::PathBuf| {
        std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    for name in ["audit.sqlite", "audit.sqlite-wal", "audit.sqlite-shm"] {
        assert_eq!(mode(state.join(name)), 0o600, "{name}");
    }
    assert_eq!(mode(s.dir.path().join("findings.jsonl")), 0o600);
    assert_eq!(mode(state.clone()), 0o700);
    assert_eq!(mode(s.dir.path().join("state")), 0o700);
}

/// Item 10: a failed audit write tells the client nothing about the server's files.
#[test]
fn audit_failures_do_not_show_server_paths() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "", HEADER_AUTH, "");
    let s = start(dir, cfg);
    let lock = rusqlite::Connection::open(s.dir.path().join("audit.sqlite")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (status, v) = s.call(
        "POST",
        "/v1/access-requests",
        &as_user("alice", "payments"),
        Some(json!({"group": "admins", "reason": "on call"})),
    );
    assert_eq!(
        (status, v["code"].as_str()),
        (503, Some("audit-unavailable")),
        "{v}"
    );
    let text = v.to_string();
    for leak in [
        s.dir.path().to_str().unwrap(),
        "sqlite",
        "locked",
        "state file",
    ] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    lock.execute_batch("ROLLBACK").unwrap();
}

/// A TCP connection from a given loopback address (127.0.0.0/8 is all this machine's).
fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(to).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
}

/// The status line of the response to `request`, sent on a new connection from `source`,
/// and how long it took; None when the server closed the connection without answering.
fn exchange(source: &str, to: SocketAddr, request: &str) -> (Option<String>, Duration) {
    let started = Instant::now();
    let mut c = connect_from(source, to);
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.write_all(request.as_bytes());
    let mut buf = [0u8; 512];
    let n = c.read(&mut buf).unwrap_or(0);
    let line = String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .map(str::to_owned)
        .filter(|l| !l.is_empty());
    (line, started.elapsed())
}

/// Seconds until the server closes `c` (it reads until EOF or reset; the client sends nothing).
fn closed_within(c: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    c.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return None,
            Err(_) => return Some(started.elapsed()),
        }
    }
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n";

/// Item 3 (medium): many connections that promise a body and send one byte, slow headers and
/// idle connections do not keep `/healthz` from answering, and are cut off.
#[test]
fn slow_and_many_clients_cannot_starve_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let idp = TestIdp::new("test");
    std::fs::write(dir.path().join("jwks.json"), &idp.jwks).unwrap();
    let limits = "[limits]\nconnections = 64\nconnections_per_address = 8\nheader_seconds = 1\n\
                  body_seconds = 1\nunauthenticated_seconds = 2\nconnection_seconds = 30";
    let cfg = config(dir.path(), "", &jwt_auth(dir.path(), ""), limits);
    let s = start(dir, cfg);
    let token = idp.sign(
        json!({"alg": "ES256", "kid": "test"}),
        json!({"iss": ISSUER, "aud": "credwarden", "sub": "alice", "groups": ["payments"],
            "exp": now() + 600}),
    );

    // 100 connections from one address: a 16 kB body promised, one byte sent, held open.
    let promise = "POST /v1/credentials HTTP/1.1\r\nHost: broker\r\n\
                   content-type: application/json\r\nContent-Length: 16000\r\n\r\n{";
    let mut held: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut c = connect_from("127.0.0.1", s.addr);
            let _ = c.write_all(promise.as_bytes());
            c
        })
        .collect();
    // Slow headers from another address: never finished.
    let mut slow = connect_from("127.0.0.3", s.addr);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: broker\r\n")
        .unwrap();
    // And a connection that says nothing at all.
    let mut idle = connect_from("127.0.0.4", s.addr);

    // Another address is served at once.
    let (line, took) = exchange("127.0.0.2", s.addr, HEALTHZ);
    assert_eq!(
        line.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "healthz: {line:?}"
    );
    assert!(took < Duration::from_millis(1500), "healthz took {took:?}");

    // The unauthenticated requests were answered (401) without their bodies, so the
    // attacker's own address is served again within moments.
    let mut answered = 0;
    for c in held.iter_mut().take(8) {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = c.read(&mut buf) {
            answered += usize::from(buf[..n].starts_with(b"HTTP/1.1 401"));
        }
    }
    assert_eq!(
        answered, 8,
        "the admitted connections were answered without their body"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (line, _) = exchange("127.0.0.1", s.addr, HEALTHZ);
        if line.as_deref() == Some("HTTP/1.1 200 OK") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "127.0.0.1 is still locked out: {line:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(held);

    // An authenticated request whose body trickles gets 408 after body_seconds.
    let (line, took) = exchange(
        "127.0.0.5",
        s.addr,
        &format!(
            "POST /v1/credentials HTTP/1.1\r\nHost: broker\r\nAuthorization: Bearer {token}\r\n\
             content-type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        ),
    );
    assert_eq!(
        line.as_deref(),
        Some("HTTP/1.1 408 Request Timeout"),
        "{line:?}"
    );
    assert!(took < Duration::from_secs(4), "{took:?}");

    // The slow-header client and the silent one are cut off.
    let cut = closed_within(&mut slow, Duration::from_secs(4));
    assert!(
        cut.is_some(),
        "a client that never finishes its headers keeps its connection"
    );
    let cut = closed_within(&mut idle, Duration::from_secs(5));
    assert!(
        cut.is_some(),
        "a silent unauthenticated connection is kept open"
    );
}

fn merged_jwks(idps: &[&TestIdp]) -> String {
    let keys: Vec<Value> = idps
        .iter()
        .flat_map(|i| {
            serde_json::from_str::<Value>(&i.jwks).unwrap()["keys"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

fn token_of(idp: &TestIdp, kid: &str) -> String {
    idp.sign(
        json!({"alg": "ES256", "kid": kid}),
        json!({"iss": ISSUER, "aud": "credwarden", "sub": "alice", "groups": ["payments"],
            "exp": now() + 600}),
    )
}

/// Suspected: the JWKS was read once. A key the identity provider adds is fetched when a
/// token names it (at most once per `jwks_refetch_seconds`), and the set is read again
/// periodically, so a removed key stops working.
#[test]
fn the_jwks_follows_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (TestIdp::new("a"), TestIdp::new("b"), TestIdp::new("c"));
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, merged_jwks(&[&a])).unwrap();
    let cfg = config(dir.path(), "", &jwt_auth(dir.path(), ""), "");
    let s = start(dir, cfg);
    let roles = |t: &str| {
        s.call(
            "GET",
            "/v1/roles",
            &[("authorization", &format!("Bearer {t}"))],
            None,
        )
        .0
    };
    assert_eq!(roles(&token_of(&a, "a")), 200);
    // The provider rotates in key b: the first token signed with it is accepted.
    std::fs::write(&jwks, merged_jwks(&[&a, &b])).unwrap();
    assert_eq!(roles(&token_of(&b, "b")), 200);
    // An unknown key id makes one refetch; another right after does not.
    assert_eq!(roles(&token_of(&c, "c")), 401);
    std::fs::write(&jwks, merged_jwks(&[&a, &b, &c])).unwrap();
    assert_eq!(roles(&token_of(&c, "c")), 401, "refetches are rate-limited");

    // Periodic refresh: key a is withdrawn and stops working.
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, merged_jwks(&[&a, &b])).unwrap();
    let cfg = config(
        dir.path(),
        "",
        &jwt_auth(dir.path(), "jwks_refresh_seconds = 1"),
        "",
    );
    let s = start(dir, cfg);
    let roles = |t: &str| {
        s.call(
            "GET",
            "/v1/roles",
            &[("authorization", &format!("Bearer {t}"))],
            None,
        )
        .0
    };
    assert_eq!(roles(&token_of(&a, "a")), 200);
    std::fs::write(&jwks, merged_jwks(&[&b])).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while roles(&token_of(&a, "a")) == 200 {
        assert!(
            Instant::now() < deadline,
            "a withdrawn key is still accepted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(roles(&token_of(&b, "b")), 200);
}

/// Suspected: `jwks_url` accepted `http://` anywhere. TLS, or plain HTTP to loopback only.
#[test]
fn jwks_url_must_be_https_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "http://idp.example.com/jwks.json",
        "http://localhost@10.255.255.1/jwks.json",
        "ftp://idp.example.com/jwks.json",
    ] {
        let auth = format!(
            "mode = \"jwt\"\njwks_url = \"{url}\"\nissuer = \"{ISSUER}\"\naudience = \"credwarden\""
        );
        let e = start_error(config(dir.path(), "", &auth, ""));
        assert!(
            e.contains("jwks_url") && (e.contains("use https://") || e.contains("user name")),
            "{url}: {e}"
        );
    }
    // A loopback identity provider over plain HTTP is fine.
    let idp = TestIdp::new("test");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = idp.jwks.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let auth = format!(
        "mode = \"jwt\"\njwks_url = \"http://127.0.0.1:{port}/jwks.json\"\nissuer = \"{ISSUER}\"\n\
         audience = \"credwarden\""
    );
    let cfg = config(dir.path(), "", &auth, "");
    let s = start(dir, cfg);
    let (status, v) = s.call(
        "GET",
        "/v1/roles",
        &[(
            "authorization",
            &format!("Bearer {}", token_of(&idp, "test")),
        )],
        None,
    );
    assert_eq!(status, 200, "{v}");
}

/// Suspected: header mode trusted every process on the proxy's host. With `secret_file`,
/// a request without the proxy's secret is not authenticated.
#[test]
fn header_mode_can_require_the_proxys_secret() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("proxy-secret"),
        "s3cret-shared-with-the-proxy\n",
    )
    .unwrap();
    let auth = format!(
        "{HEADER_AUTH}\nsecret_file = \"{}\"",
        dir.path().join("proxy-secret").display()
    );
    let cfg = config(dir.path(), "", &auth, "");
    let s = start(dir, cfg);
    let with = |secret: Option<&str>| {
        let mut h = as_user("alice", "payments");
        if let Some(v) = secret {
            h.push(("x-credwarden-proxy-secret", v));
        }
        s.call("GET", "/v1/roles", &h, None)
    };
    let (status, v) = with(None);
    assert_eq!(
        (status, v["code"].as_str()),
        (401, Some("unauthenticated")),
        "{v}"
    );
    assert_eq!(with(Some("s3cret-shared-with-the-prox")).0, 401);
    assert_eq!(with(Some("s3cret-shared-with-the-proxy")).0, 200);
    // Too short a secret stops the broker from starting.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("proxy-secret"), "short").unwrap();
    let auth = format!(
        "{HEADER_AUTH}\nsecret_file = \"{}\"",
        dir.path().join("proxy-secret").display()
    );
    let e = start_error(config(dir.path(), "", &auth, ""));
    assert!(e.contains("at least 16"), "{e}");
}
