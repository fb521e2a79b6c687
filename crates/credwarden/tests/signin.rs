//! Issue 15, items 1–3, end to end on loopback: `credwarden login` against the test kit's
//! OIDC provider (device authorization, and authorization code with PKCE with an HTTP client
//! playing the browser), the real broker (`credwarden broker serve`) verifying the provider's
//! tokens on moto's STS, the credential cache of `creds` (AssumeRole counted through the
//! recording relay), refresh after the ID token expired, and `console` through the test
//! kit's federation endpoint, which checks with moto that the session it was sent is the one
//! moto's STS issued. Then the attacks: a forged state, an injected code, a replayed code, a
//! wrong PKCE verifier, a symbolic link or a group-readable file in the cache, an issuer over
//! plain http, a mixed-up discovery document, errors that could show tokens.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::federation::{moto_caller_arn, FederationServer};
use testkit::oidc::{OidcOptions, OidcProvider};
use testkit::{free_port, Moto, Recorder, BOTO3_KW};

const CLIENT: &str = "credwarden-cli";

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The world of one test: moto behind a recorder, the provider, the federation endpoint, the
/// broker, and a user's home with its cache.
struct World {
    _moto: Moto,
    recorder: Recorder,
    idp: OidcProvider,
    fed: FederationServer,
    broker: String,
    dir: tempfile::TempDir,
    _serve: Option<Killed>,
}

impl World {
    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// `credwarden` as the user runs it: their cache, this broker and provider, no token.
    fn cli(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_credwarden"));
        c.env("CREDWARDEN_CACHE_DIR", self.cache())
            .env(
                "CREDWARDEN_CLIENT_CONFIG",
                self.dir.path().join("none.toml"),
            )
            .env("CREDWARDEN_BROKER", &self.broker)
            .env("CREDWARDEN_ISSUER", &self.idp.issuer)
            .env("CREDWARDEN_CLIENT_ID", CLIENT)
            .env("HOME", self.dir.path())
            .env_remove("CREDWARDEN_TOKEN")
            .env_remove("BROWSER")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cli().args(args).output().unwrap()
    }

    fn assume_roles(&self) -> usize {
        self.recorder.count_action("AssumeRole")
    }

    /// `credwarden login` with the device flow; the test approves the code at the provider's
    /// verification page, as the person would. Returns the command's stderr.
    fn device_login(&self) -> String {
        let mut child = self
            .cli()
            .arg("login")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        let code = loop {
            let mut line = String::new();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "no code shown: {said}"
            );
            said.push_str(&line);
            if let Some((_, code)) = line.split_once("enter the code ") {
                break code.trim().to_owned();
            }
        };
        let activate = format!("{}/activate", self.idp.issuer);
        ureq::post(&activate)
            .send_form(&[("user_code", &code), ("decision", "approve")])
            .unwrap();
        err.read_to_string(&mut said).unwrap();
        assert!(child.wait().unwrap().success(), "{said}");
        said
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// Moto with the role, the relay, the provider, the federation endpoint; the broker when
/// `with_broker`.
fn world(with_broker: bool, opts: OidcOptions) -> World {
    let moto = Moto::start();
    moto.python(
        &format!(
            r#"
import boto3, json, os
iam = boto3.client("iam", **{BOTO3_KW})
trust = json.dumps({{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::123456789012:root"}}, "Action": "sts:AssumeRole"}}]}})
iam.create_role(RoleName="payments-api", AssumeRolePolicyDocument=trust, Tags=[{{"Key": "credwarden:groups", "Value": "payments"}}])
iam.create_role(RoleName="admin", AssumeRolePolicyDocument=trust, Tags=[{{"Key": "credwarden:groups", "Value": "security"}}])
"#
        ),
        &[],
    );
    let recorder = Recorder::start(moto.port);
    let idp = OidcProvider::start(opts);
    let moto_url = moto.url.clone();
    // AWS accepts only sessions its STS issued: moto says whose these are.
    let fed = FederationServer::start(move |s| {
        let arn = moto_caller_arn(&moto_url, s)?;
        if arn.ends_with(":assumed-role/payments-api/alice") {
            Ok(())
        } else {
            Err(format!("not a session of payments-api for alice: {arn}"))
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = format!("http://127.0.0.1:{port}");
    let mut w = World {
        _moto: moto,
        recorder,
        idp,
        fed,
        broker,
        dir,
        _serve: None,
    };
    if with_broker {
        let p = |n: &str| w.dir.path().join(n).display().to_string();
        let config = format!(
            r#"listen = "127.0.0.1:{port}"
audit = "{audit}"
[auth]
mode = "jwt"
jwks_url = "{issuer}/jwks"
issuer = "{issuer}"
audience = "{CLIENT}"
leeway_seconds = 0
[[networks]]
name = "loopback"
clients = ["127.0.0.0/8"]
egress = ["198.51.100.0/24"]
[aws]
endpoint_url = "{relay}"
region = "us-east-1"
[console]
federation_url = "{fed}"
issuer = "https://broker.example.com/"
"#,
            audit = p("audit.sqlite"),
            issuer = w.idp.issuer,
            relay = w.recorder.url,
            fed = w.fed.url,
        );
        std::fs::write(p("broker.toml"), config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_credwarden"))
            .args(["broker", "serve", "--config", &p("broker.toml")])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/credwarden-test")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/credwarden-test",
            )
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening"), "{line}");
        w._serve = Some(Killed(child));
    }
    w
}

fn opts() -> OidcOptions {
    OidcOptions::new(CLIENT, "alice", &["payments"])
}

fn entries(w: &World) -> Vec<PathBuf> {
    match std::fs::read_dir(w.cache().join("credentials")) {
        Ok(d) => d.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn key_id(o: &Output) -> String {
    assert!(o.status.success(), "{}", stderr(o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["AccessKeyId"].as_str().unwrap().to_owned()
}

#[test]
fn device_sign_in_cached_credentials_and_refresh() {
    let w = world(true, opts());
    // Before signing in: a clear message, and no broker call.
    let o = w.run(&["creds", "payments-api", "--process"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not signed in: run `credwarden login`"),
        "{}",
        stderr(&o)
    );

    let said = w.device_login();
    assert!(said.contains("Signed in as alice"), "{said}");
    let login = w.cache().join("login.json");
    assert_eq!(mode(&login), 0o600);
    assert_eq!(mode(&w.cache()), 0o700);
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&login).unwrap()).unwrap();
    let id_token = kept["id_token"].as_str().unwrap().to_owned();
    let refresh = kept["refresh_token"].as_str().unwrap().to_owned();
    assert!(!said.contains(&id_token) && !said.contains(&refresh));
    assert!(w.idp.token_requests("device_code") >= 1);

    // A shell loop of credential_process calls: STS once.
    let first = key_id(&w.run(&["creds", "payments-api", "--process"]));
    for _ in 0..19 {
        assert_eq!(
            key_id(&w.run(&["creds", "payments-api", "--process"])),
            first
        );
    }
    assert_eq!(w.assume_roles(), 1);
    let cached = entries(&w);
    assert_eq!(cached.len(), 1);
    assert_eq!(mode(&cached[0]), 0o600);
    assert_eq!(mode(&w.cache().join("credentials")), 0o700);
    // The other formats come from the same entry.
    let o = w.run(&["creds", "payments-api"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("AWS_ACCESS_KEY_ID={first}")));
    assert_eq!(key_id(&w.run(&["creds", "payments-api", "--json"])), first);
    assert_eq!(w.assume_roles(), 1);

    // --no-cache asks again and leaves the cache as it was.
    let fresh = key_id(&w.run(&["creds", "payments-api", "--process", "--no-cache"]));
    assert_ne!(fresh, first);
    assert_eq!(w.assume_roles(), 2);
    assert_eq!(
        key_id(&w.run(&["creds", "payments-api", "--process"])),
        first
    );

    // Four minutes left: inside the five-minute margin, fetched again and replaced.
    let entry = &cached[0];
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(entry).unwrap()).unwrap();
    let soon = credwarden_core::EventTime(credwarden_core::clock::now_millis() + 240_000);
    v["Expiration"] = soon.to_string().into();
    std::fs::write(entry, v.to_string()).unwrap();
    let renewed = key_id(&w.run(&["creds", "payments-api", "--process"]));
    assert_ne!(renewed, first);
    assert_eq!(w.assume_roles(), 3);

    // A damaged entry is ignored and replaced, not fatal.
    std::fs::write(entry, "{not json").unwrap();
    let o = w.run(&["creds", "payments-api", "--process"]);
    key_id(&o);
    assert!(stderr(&o).contains("damaged"), "{}", stderr(&o));
    assert_eq!(w.assume_roles(), 4);
    assert!(serde_json::from_slice::<serde_json::Value>(&std::fs::read(entry).unwrap()).is_ok());

    // A group-readable entry is not trusted: ignored, replaced by a 0600 one.
    std::fs::set_permissions(entry, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = w.run(&["creds", "payments-api", "--process"]);
    key_id(&o);
    assert!(stderr(&o).contains("readable by others"), "{}", stderr(&o));
    assert_eq!(w.assume_roles(), 5);
    assert_eq!(mode(entry), 0o600);

    // creds --clear empties the cache.
    let o = w.run(&["creds", "--clear"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(entries(&w).is_empty());
    key_id(&w.run(&["creds", "payments-api", "--process"]));
    assert_eq!(w.assume_roles(), 6);

    // The ID token expires (the broker allows no leeway here): the next call renews it
    // with the refresh token, and the broker takes the new one.
    w.idp.set_options(|o| o.token_seconds = 2);
    w.run(&["logout"]);
    w.device_login();
    w.idp.set_options(|o| o.token_seconds = 600);
    std::thread::sleep(Duration::from_secs(3));
    let stale: serde_json::Value = serde_json::from_slice(&std::fs::read(&login).unwrap()).unwrap();
    let stale_token = stale["id_token"].as_str().unwrap().to_owned();
    let o = w
        .cli()
        .args(["creds", "payments-api", "--process", "--no-cache"])
        .env("CREDWARDEN_TOKEN", &stale_token)
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("401"),
        "the broker must refuse it: {}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains(&stale_token));
    let refreshes = w.idp.token_requests("refresh_token");
    key_id(&w.run(&["creds", "payments-api", "--process", "--no-cache"]));
    assert_eq!(w.idp.token_requests("refresh_token"), refreshes + 1);
    let renewed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&login).unwrap()).unwrap();
    assert_ne!(renewed["id_token"], stale["id_token"]);
    assert_ne!(renewed["refresh_token"], stale["refresh_token"], "rotated");
    assert_eq!(mode(&login), 0o600);

    // The provider revoked the session: expired and not renewable says so, without tokens.
    w.idp.revoke_refresh_tokens();
    let mut v = renewed.clone();
    v["expires_at"] = 0.into();
    std::fs::write(&login, v.to_string()).unwrap();
    let o = w.run(&["creds", "payments-api", "--process", "--no-cache"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("run `credwarden login`"), "{e}");
    assert!(
        !e.contains(renewed["refresh_token"].as_str().unwrap()),
        "{e}"
    );

    // logout removes the sign-in and the cached credentials.
    let o = w.run(&["logout"]);
    assert!(o.status.success());
    assert!(!login.exists());
    assert!(entries(&w).is_empty());
    let o = w.run(&["creds", "payments-api", "--process"]);
    assert!(stderr(&o).contains("not signed in"), "{}", stderr(&o));
}

/// Starts `login --browser --no-open`; returns the child, its stderr, and the sign-in URL.
fn browser_login(w: &World) -> (Child, BufReader<std::process::ChildStderr>, String) {
    let mut child = w
        .cli()
        .args(["login", "--browser", "--no-open", "--timeout", "60"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "no sign-in URL");
        if let Some(u) = line.trim().strip_prefix("http://") {
            break format!("http://{u}");
        }
    };
    (child, err, url)
}

/// The browser: ask the authorization endpoint, get the redirect (not followed).
fn authorize(url: &str) -> String {
    let r = ureq::AgentBuilder::new()
        .redirects(0)
        .build()
        .get(url)
        .call()
        .unwrap();
    assert_eq!(r.status(), 302);
    r.header("location").unwrap().to_owned()
}

fn finish(mut child: Child, mut err: BufReader<std::process::ChildStderr>) -> (bool, String) {
    let mut said = String::new();
    err.read_to_string(&mut said).unwrap();
    (child.wait().unwrap().success(), said)
}

fn query(url: &str) -> std::collections::BTreeMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

#[test]
fn browser_sign_in_with_pkce_and_its_attacks() {
    let w = world(true, opts());

    // A forged answer (wrong state) ends the sign-in; the real code is never redeemed.
    let (child, err, url) = browser_login(&w);
    let redirect = authorize(&url);
    let q = query(&redirect);
    let forged = redirect.replace(&format!("state={}", q["state"]), "state=forged");
    let r = ureq::get(&forged).call();
    assert!(matches!(r, Err(ureq::Error::Status(400, _))));
    let (ok, said) = finish(child, err);
    assert!(!ok && said.contains("wrong state"), "{said}");
    assert_eq!(w.idp.token_requests("authorization_code"), 0);
    assert!(!w.cache().join("login.json").exists());

    // An injected code (the attacker's own, from a sign-in with another PKCE challenge)
    // with the right state: the provider refuses it for the missing verifier.
    let (child, err, url) = browser_login(&w);
    let victim = query(&url);
    let mut attacker = url::Url::parse(&url).unwrap();
    attacker.query_pairs_mut().clear();
    for (k, v) in &victim {
        let v = if k == "code_challenge" {
            "A".repeat(43)
        } else {
            v.clone()
        };
        attacker.query_pairs_mut().append_pair(k, &v);
    }
    let injected = authorize(attacker.as_str());
    ureq::get(&injected).call().unwrap();
    let (ok, said) = finish(child, err);
    assert!(!ok && said.contains("refused the sign-in code"), "{said}");
    assert!(w
        .idp
        .refusals()
        .iter()
        .any(|r| r.contains("PKCE verifier mismatch")));
    assert!(!w.cache().join("login.json").exists());
    // The code of that attempt is spent: replaying it with any verifier fails.
    let code = query(&injected)["code"].clone();
    let replay = ureq::post(&format!("{}/token", w.idp.issuer)).send_form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", &victim["redirect_uri"]),
        ("client_id", CLIENT),
        ("code_verifier", &"v".repeat(43)),
    ]);
    assert!(matches!(replay, Err(ureq::Error::Status(400, _))));
    assert!(w
        .idp
        .refusals()
        .iter()
        .any(|r| r.contains("unknown or used code")));

    // The real thing: the browser follows the redirect back to the CLI.
    let (child, err, url) = browser_login(&w);
    let redirect = authorize(&url);
    let page = ureq::get(&redirect).call().unwrap().into_string().unwrap();
    assert!(page.contains("You can close this tab"));
    let (ok, said) = finish(child, err);
    assert!(ok && said.contains("Signed in as alice"), "{said}");
    assert_eq!(mode(&w.cache().join("login.json")), 0o600);
    // The code it used cannot be used again.
    let code = query(&redirect)["code"].clone();
    let replay = ureq::post(&format!("{}/token", w.idp.issuer)).send_form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", &query(&url)["redirect_uri"]),
        ("client_id", CLIENT),
        ("code_verifier", &"v".repeat(43)),
    ]);
    assert!(matches!(replay, Err(ureq::Error::Status(400, _))));
    key_id(&w.run(&["creds", "payments-api", "--process"]));
    assert_eq!(w.assume_roles(), 1);
}

#[test]
fn console_sign_in_through_the_federation_endpoint() {
    let w = world(true, opts());
    w.device_login();
    let o = w.run(&["console", "payments-api", "--print"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let url = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert!(url.starts_with(&format!("{}?", w.fed.url)), "{url}");
    let q = query(&url);
    assert_eq!(q["Action"], "login");
    assert_eq!(q["Issuer"], "https://broker.example.com/");
    assert_eq!(q["Destination"], "https://console.aws.amazon.com/");
    // The token is one the federation endpoint issued, for the session the broker's STS
    // call made (moto confirmed whose it is before the token was issued).
    let requests = w.fed.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.status), ("GET", 200), "{}", r.why);
    assert_eq!(r.query["Action"], "getSigninToken");
    assert_eq!(r.query["SessionDuration"], "3600");
    let session = r.session.clone().unwrap();
    assert_eq!(
        w.fed.token_session(&q["SigninToken"]),
        Some(session.session_id.clone())
    );
    assert_eq!(w.assume_roles(), 1);
    let assumed = &w.recorder.action_requests("AssumeRole")[0];
    assert!(
        assumed["Policy"].contains("198.51.100.0/24"),
        "the session policy"
    );
    // Audited as a console sign-in, with the session's key id; no secret in the audit.
    let db = rusqlite::Connection::open(w.dir.path().join("audit.sqlite")).unwrap();
    let (reason, key): (String, String) = db
        .query_row(
            "SELECT reason, access_key_id FROM broker_audit WHERE decision = 'granted'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(reason.starts_with("console sign-in:"), "{reason}");
    assert_eq!(key, session.session_id);
    let dump: String = db
        .prepare("SELECT * FROM broker_audit")
        .unwrap()
        .query_map([], |r| {
            Ok((0..r.as_ref().column_count())
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect::<String>())
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for secret in [
        &session.session_key,
        &session.session_token,
        &q["SigninToken"],
    ] {
        assert!(!dump.contains(secret.as_str()));
    }
    assert!(!stderr(&o).contains(&q["SigninToken"]));
    // The URL signs the browser in once, and goes where it said.
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let r = agent.get(&url).call().unwrap();
    assert_eq!(
        r.header("location"),
        Some("https://console.aws.amazon.com/")
    );
    assert!(matches!(
        agent.get(&url).call(),
        Err(ureq::Error::Status(400, _))
    ));

    // Without --print: the browser gets it ($BROWSER), the terminal does not.
    let seen = w.dir.path().join("browser-saw");
    let browser = w.dir.path().join("browser.sh");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\necho \"$1\" > {}\n", seen.display()),
    )
    .unwrap();
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o700)).unwrap();
    let o = w
        .cli()
        .args(["console", "payments-api"])
        .env("BROWSER", &browser)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let opened = std::fs::read_to_string(&seen).unwrap();
    assert!(query(opened.trim()).contains_key("SigninToken"));
    assert!(!stderr(&o).contains("SigninToken"));

    // A destination off the AWS console domains is refused before any session is made.
    let before = w.assume_roles();
    let o = w.run(&[
        "console",
        "payments-api",
        "--print",
        "--destination",
        "https://evil.example/",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad-destination"), "{}", stderr(&o));
    // A role the caller may not use: refused like /v1/credentials, nothing sent to AWS.
    let o = w.run(&["console", "admin", "--print"]);
    assert!(stderr(&o).contains("not-authorised"), "{}", stderr(&o));
    assert_eq!(w.assume_roles(), before);
    // Two getSigninToken and two logins so far; the refusals sent the endpoint nothing.
    let actions: Vec<String> = w
        .fed
        .requests()
        .iter()
        .map(|r| r.query["Action"].clone())
        .collect();
    assert_eq!(
        actions,
        ["getSigninToken", "login", "login", "getSigninToken"]
    );
}

#[test]
fn sign_in_refuses_what_it_cannot_trust() {
    let w = world(
        false,
        OidcOptions {
            slow_down_first: true,
            ..opts()
        },
    );
    // An issuer over plain http off loopback is refused before it is contacted.
    let o = w.run(&["login", "--issuer", "http://10.255.255.1/"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("https://"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("cannot read"), "{}", stderr(&o));

    // slow_down is honoured: the next poll waits five seconds more, and is not early again.
    let started = Instant::now();
    w.device_login();
    assert!(started.elapsed() >= Duration::from_secs(6));
    let slow: Vec<String> = w
        .idp
        .refusals()
        .into_iter()
        .filter(|r| r.starts_with("slow_down"))
        .collect();
    assert_eq!(slow, ["slow_down: slow down"], "{:?}", w.idp.refusals());

    // A group-readable sign-in, or one that is a link to another file, is refused.
    let login = w.cache().join("login.json");
    let broker = ["--broker", "http://127.0.0.1:1"];
    std::fs::set_permissions(&login, std::fs::Permissions::from_mode(0o640)).unwrap();
    let o = w.run(&[&["creds", "payments-api"][..], &broker].concat());
    assert!(stderr(&o).contains("readable by others"), "{}", stderr(&o));
    let elsewhere = w.dir.path().join("elsewhere.json");
    std::fs::rename(&login, &elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &login).unwrap();
    let o = w.run(&[&["creds", "payments-api"][..], &broker].concat());
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("cannot reach"), "{}", stderr(&o));
    // Signing in again replaces the link, not the file it points to.
    let before = std::fs::read(&elsewhere).unwrap();
    w.idp.set_options(|o| o.slow_down_first = false);
    w.device_login();
    assert_eq!(std::fs::read(&elsewhere).unwrap(), before);
    assert!(std::fs::symlink_metadata(&login).unwrap().is_file());

    // The user refuses at the provider; a code left unused expires.
    let mut child = w.cli().arg("login").stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let code = line
        .split_once("enter the code ")
        .unwrap()
        .1
        .trim()
        .to_owned();
    assert!(w.idp.deny(&code));
    let (ok, said) = finish(child, err);
    assert!(!ok && said.contains("refused"), "{said}");
    w.idp.set_options(|o| o.device_seconds = 2);
    let o = w.run(&["login", "--timeout", "30"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("expired"), "{}", stderr(&o));

    // A discovery document that claims another issuer is not believed.
    w.idp
        .set_options(|o| o.discovery_issuer = Some("https://idp.evil.example".into()));
    let o = w.run(&["login"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("refusing it"), "{}", stderr(&o));
}
