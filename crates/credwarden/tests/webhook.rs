//! `detect --webhook` never jams: a finding the endpoint refuses for good, or one past the
//! retry limit, goes to the state file's dead letters, and every finding behind it is posted.
//! The endpoint is a real HTTP server on loopback.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_credwarden"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("credwarden runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn stratus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpora/stratus-red-team/detonation-logs")
}

fn findings(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

type Answer = Arc<Mutex<Box<dyn Fn(&serde_json::Value) -> u16 + Send>>>;

/// A loopback endpoint answering each posted finding with the status `answer` gives it;
/// returns its URL and the ids of the findings it accepted (2xx), in order.
fn endpoint(answer: Answer) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let acc = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let body = loop {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(h) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= h + 4 + len {
                    break Some(buf[h + 4..h + 4 + len].to_vec());
                }
            };
            let Some(body) = body else { continue };
            let finding: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let status = (answer.lock().unwrap())(&finding);
            if (200..300).contains(&status) {
                // A finding is recorded by its id; any other body (a Slack message) whole.
                acc.lock().unwrap().push(
                    finding["id"]
                        .as_str()
                        .map_or_else(|| finding.to_string(), str::to_owned),
                );
            }
            let _ = conn.write_all(
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (url, accepted)
}

fn ids_of(found: &[serde_json::Value], detector: Option<&str>) -> Vec<String> {
    found
        .iter()
        .filter(|f| detector.is_none_or(|d| f["detector"] == d))
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn dead_letter_ids(state: &str) -> Vec<serde_json::Value> {
    let listed = run(&["webhook", "dead-letters", "--state", state, "--json"]);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
    findings(&listed)
}

#[test]
fn a_refused_finding_goes_to_the_dead_letters_and_the_rest_is_posted() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.sqlite");
    let state = state.to_str().unwrap();
    let trail = stratus();
    let answer: Answer = Arc::new(Mutex::new(Box::new(|f: &serde_json::Value| {
        if f["detector"] == "enumeration-burst" {
            400
        } else {
            200
        }
    })));
    let (url, accepted) = endpoint(answer.clone());
    let first = run(&[
        "detect",
        trail.to_str().unwrap(),
        "--state",
        state,
        "--webhook",
        &url,
        "--webhook-wait",
        "60",
    ]);
    let err = text(&first.stderr);
    assert_eq!(first.status.code(), Some(0), "{err}");
    let found = findings(&first);
    let refused = ids_of(&found, Some("enumeration-burst"));
    let others = ids_of(&found, Some("static-key-use"));
    assert_eq!((refused.len(), others.len()), (2, 32), "{err}");
    // Every finding the endpoint takes is posted, though the very first one is refused.
    assert_eq!(
        sorted(accepted.lock().unwrap().clone()),
        sorted(others.clone())
    );
    assert!(err.contains("note: webhook: 32 finding(s) posted"), "{err}");
    assert!(err.contains("2 in the dead letters of"), "{err}");
    assert!(!err.contains("wait in the spool"), "{err}");
    assert!(
        !err.contains("\"detector\""),
        "no finding body on stderr: {err}"
    );

    // Listed, with the endpoint's status.
    let dead = dead_letter_ids(state);
    assert_eq!(
        sorted(
            dead.iter()
                .map(|d| d["id"].as_str().unwrap().to_owned())
                .collect()
        ),
        sorted(refused.clone())
    );
    for d in &dead {
        assert_eq!(d["status"], 400, "{d}");
        assert_eq!(d["attempts"], 1, "{d}");
        assert_eq!(d["finding"]["detector"], "enumeration-burst", "{d}");
        assert!(d["reason"].as_str().unwrap().starts_with("HTTP 400"), "{d}");
    }
    let table = run(&["webhook", "dead-letters", "--state", state]);
    let table = text(&table.stdout);
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(
        table.contains(&refused[0]) && table.contains("enumeration-burst"),
        "{table}"
    );

    // A later run does not send the dead letters again by itself.
    let again = run(&[
        "detect",
        trail.to_str().unwrap(),
        "--state",
        state,
        "--webhook",
        &url,
        "--webhook-wait",
        "5",
    ]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert!(findings(&again).is_empty());
    assert_eq!(accepted.lock().unwrap().len(), 32);
    assert_eq!(dead_letter_ids(state).len(), 2);

    // An id that is not a dead letter is refused, and nothing moves.
    let unknown = run(&["webhook", "resend", "--state", state, "--id", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("nope"));
    assert_eq!(dead_letter_ids(state).len(), 2);

    // The endpoint is fixed. One goes back to the spool; the next run posts it.
    *answer.lock().unwrap() = Box::new(|_: &serde_json::Value| 200);
    let back = run(&["webhook", "resend", "--state", state, "--id", &refused[1]]);
    assert_eq!(back.status.code(), Some(0), "{}", text(&back.stderr));
    assert!(text(&back.stdout).contains("1 finding(s) moved back to the spool"));
    assert_eq!(dead_letter_ids(state).len(), 1);
    let third = run(&[
        "detect",
        trail.to_str().unwrap(),
        "--state",
        state,
        "--webhook",
        &url,
        "--webhook-wait",
        "20",
    ]);
    assert!(text(&third.stderr).contains("note: webhook: 1 finding(s) posted"));
    assert_eq!(accepted.lock().unwrap().last(), Some(&refused[1]));

    // The rest is posted at once by `resend --url`.
    let now = run(&["webhook", "resend", "--state", state, "--url", &url]);
    let out = text(&now.stdout);
    assert_eq!(now.status.code(), Some(0), "{}", text(&now.stderr));
    assert!(out.contains("1 finding(s) sent again: 1 posted"), "{out}");
    assert_eq!(accepted.lock().unwrap().last(), Some(&refused[0]));
    assert_eq!(accepted.lock().unwrap().len(), 34);
    assert!(dead_letter_ids(state).is_empty());
}

#[test]
fn a_finding_failing_past_the_retry_limit_stops_blocking_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.sqlite");
    let state = state.to_str().unwrap();
    let trail = stratus();
    // Learn the first finding's id (delivered in order, it blocks everything behind it).
    let dry = run(&["detect", trail.to_str().unwrap()]);
    let all = ids_of(&findings(&dry), None);
    let stuck = all[0].clone();
    let s = stuck.clone();
    let answer: Answer = Arc::new(Mutex::new(Box::new(move |f: &serde_json::Value| {
        if f["id"] == s.as_str() {
            503
        } else {
            200
        }
    })));
    let (url, accepted) = endpoint(answer);
    let out = run(&[
        "detect",
        trail.to_str().unwrap(),
        "--state",
        state,
        "--webhook",
        &url,
        "--webhook-wait",
        "60",
        "--webhook-max-attempts",
        "3",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        accepted.lock().unwrap().clone(),
        all[1..].to_vec(),
        "the others, in order"
    );
    assert!(err.contains("33 finding(s) posted"), "{err}");
    assert!(err.contains("1 in the dead letters"), "{err}");
    let dead = dead_letter_ids(state);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"], stuck.as_str());
    assert_eq!(dead[0]["status"], 503);
    assert_eq!(dead[0]["attempts"], 3);
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(reason.contains("gave up after 3 attempt(s)") && reason.contains("HTTP 503"));
    assert!(
        !reason.contains("127.0.0.1"),
        "no URL in the reason: {reason}"
    );
}

/// Issue 12: `shrink schedule` posted each notice once, without retry. Its notices now go
/// through the same spooled webhook: a refused notice is a dead letter, the others are
/// posted, and nothing is lost when the endpoint refuses.
#[test]
fn shrink_schedule_notices_go_through_the_spooled_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let role = |name: &str| {
        serde_json::json!({"role": name, "arn": format!("arn:aws:iam::111122223333:role/{name}"),
            "verdict": "shrink", "reason": "unused", "removed": ["ec2:TerminateInstances"],
            "kept_unknown": {}, "before": {"inline": {}, "attached": []},
            "after": {"inline": {}, "attached": []}})
    };
    let doc = serde_json::json!({"catalogue": "test", "window_days": 90,
        "window_end": "2027-06-01T00:00:00Z", "roles": [role("app"), role("batch")],
        "not_before": null});
    std::fs::write(&plan, doc.to_string()).unwrap();
    let answer: Answer = Arc::new(Mutex::new(Box::new(|f: &serde_json::Value| {
        if f["principal"].as_str().unwrap().ends_with("/batch") {
            400
        } else {
            200
        }
    })));
    let (url, accepted) = endpoint(answer);
    let state = dir.path().join("notices.sqlite");
    let state = state.to_str().unwrap();
    let out = run(&[
        "shrink",
        "schedule",
        "--plan",
        plan.to_str().unwrap(),
        "--days",
        "7",
        "--now",
        "2027-06-01T00:00:00Z",
        "--output",
        dir.path().join("announced.json").to_str().unwrap(),
        "--webhook",
        &url,
        "--state",
        state,
        "--webhook-wait",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let notices = findings(&out);
    assert_eq!(notices.len(), 2);
    let app = ids_of(&notices, None)
        .into_iter()
        .find(|id| {
            notices
                .iter()
                .any(|n| n["id"] == *id && n["summary"].as_str().unwrap().starts_with("app"))
        })
        .unwrap();
    assert_eq!(*accepted.lock().unwrap(), vec![app]);
    let dead = dead_letter_ids(state);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["status"], 400);
    assert!(
        text(&out.stderr).contains("1 finding(s) in the dead letters"),
        "{}",
        text(&out.stderr)
    );

    // --webhook without a state file to spool in is refused before anything is announced.
    let out = run(&[
        "shrink",
        "schedule",
        "--plan",
        plan.to_str().unwrap(),
        "--output",
        dir.path().join("x.json").to_str().unwrap(),
        "--webhook",
        &url,
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!dir.path().join("x.json").exists());
}

/// Issue 12: `imds proxy` printed its findings to stdout only. They now also go to an
/// owner-only findings file and a spooled webhook.
#[cfg(unix)]
#[test]
fn the_metadata_proxy_delivers_findings_to_a_file_and_the_webhook() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let answer: Answer = Arc::new(Mutex::new(Box::new(|_: &serde_json::Value| 200)));
    let (url, accepted) = endpoint(answer);
    let port = testkit::free_port();
    let file = dir.path().join("proxy-findings.jsonl");
    let state = dir.path().join("proxy.sqlite");
    let proxy = bin()
        .args([
            "imds",
            "proxy",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            "http://127.0.0.1:9",
            "--findings",
            file.to_str().unwrap(),
            "--webhook",
            &url,
            "--state",
            state.to_str().unwrap(),
            "--webhook-wait",
            "5",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut conn = None;
    for _ in 0..100 {
        if let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            conn = Some(c);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut conn = conn.expect("the proxy listens");
    conn.write_all(
        b"GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\
          User-Agent: curl/8.5.0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    for _ in 0..100 {
        if !accepted.lock().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-INT", &proxy.id().to_string()])
        .status();
    let out = proxy.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(accepted.lock().unwrap().len(), 1, "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written.lines().count(), 1);
    assert!(
        written.contains("\"detector\":\"imds-proxy-blocked\""),
        "{written}"
    );
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout still gets the finding: {stdout}"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// Issue 14: notifications people read. With `--webhook-format slack` the spooled findings are
/// posted as Slack incoming-webhook messages, attacker-controlled text escaped.
#[test]
fn findings_reach_slack_as_messages() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.sqlite");
    let answer: Answer = Arc::new(Mutex::new(Box::new(|_: &serde_json::Value| 200)));
    let (url, accepted) = endpoint(answer);
    let trail = stratus();
    let out = run(&[
        "detect",
        trail.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--webhook",
        &url,
        "--webhook-format",
        "slack",
        "--webhook-wait",
        "20",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let found = findings(&out);
    let posted = accepted.lock().unwrap().clone();
    assert_eq!(posted.len(), found.len());
    for body in &posted {
        let msg: serde_json::Value = serde_json::from_str(body).unwrap();
        let text = msg["text"].as_str().unwrap();
        assert!(text.starts_with('['), "{text}");
        assert!(
            msg["blocks"].as_array().is_some_and(|b| b.len() == 4),
            "{msg}"
        );
        assert!(!body.contains("<http"), "{body}");
    }
}

/// A loopback endpoint answering every post with `status`.
fn endpoint_answering(status: u16) -> (String, Arc<Mutex<Vec<String>>>, Answer) {
    let answer: Answer = Arc::new(Mutex::new(Box::new(move |_: &serde_json::Value| status)));
    let (url, accepted) = endpoint(answer.clone());
    (url, accepted, answer)
}

/// A loopback URL nothing listens on: connections are refused.
fn refusing_url() -> String {
    format!("http://127.0.0.1:{}/hook", testkit::free_port())
}

/// The registry `accounts sync --file` reads (`aws organizations list-accounts` output): two
/// of the Stratus accounts owned by the payments team, three by platform, the rest unknown.
const ACCOUNTS: &str = r#"{"Accounts": [
    {"Id": "457448411975", "Name": "payments-prod", "Tags": [{"Key": "owner", "Value": "payments-team"}]},
    {"Id": "321848314756", "Name": "payments-dev", "Tags": [{"Key": "owner", "Value": "payments-team"}]},
    {"Id": "165109126369", "Name": "platform-a", "Tags": [{"Key": "owner", "Value": "platform"}]},
    {"Id": "903144391865", "Name": "platform-b", "Tags": [{"Key": "owner", "Value": "platform"}]},
    {"Id": "847129010505", "Name": "platform-c", "Tags": [{"Key": "owner", "Value": "platform"}]}
]}"#;

/// A `[[notify.route]]` entry.
fn route(name: &str, url: &str, extra: &str) -> String {
    format!("[[notify.route]]\nname = {name:?}\nurl = {url:?}\n{extra}\n")
}

/// Issue 14 (organisation, item 6): findings routed by account owner and by detector from
/// credwarden.toml. Each finding goes to every route that matches it, in order, in the
/// route's own format; the catch-all gets everything.
#[test]
fn findings_are_routed_by_account_owner_and_detector() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.sqlite");
    let state = state.to_str().unwrap();
    let accounts = dir.path().join("accounts.json");
    std::fs::write(&accounts, ACCOUNTS).unwrap();
    let synced = run(&[
        "accounts",
        "sync",
        "--state",
        state,
        "--file",
        accounts.to_str().unwrap(),
    ]);
    assert_eq!(synced.status.code(), Some(0), "{}", text(&synced.stderr));

    let (payments_url, payments, _) = endpoint_answering(200);
    let (platform_url, platform, _) = endpoint_answering(200);
    let (bursts_url, bursts, _) = endpoint_answering(200);
    let (all_url, all, _) = endpoint_answering(200);
    let cfg = dir.path().join("credwarden.toml");
    std::fs::write(
        &cfg,
        [
            // Owners compare case-insensitively with the registry's tag.
            route("payments", &payments_url, "owners = [\"Payments-Team\"]"),
            route(
                "platform",
                &platform_url,
                "owners = [\"platform\"]\nformat = \"slack\"",
            ),
            route(
                "bursts",
                &bursts_url,
                "detectors = [\"enumeration-burst\"]\nmin_severity = \"medium\"",
            ),
            route(
                "criticals",
                &refusing_url(),
                "detectors = [\"static-key-use\"]\nmin_severity = \"critical\"",
            ),
            route("all", &all_url, ""),
        ]
        .concat(),
    )
    .unwrap();
    let out = run(&[
        "detect",
        stratus().to_str().unwrap(),
        "--state",
        state,
        "--config",
        cfg.to_str().unwrap(),
        "--webhook-wait",
        "60",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let found = findings(&out);
    assert_eq!(found.len(), 34, "{err}");
    let of = |pick: &dyn Fn(&serde_json::Value) -> bool| -> Vec<String> {
        found
            .iter()
            .filter(|f| pick(f))
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let expect_payments = of(&|f| f["account_owner"] == "payments-team");
    assert_eq!(expect_payments.len(), 4, "the registry names the owners");
    // Every route receives its findings in the order they were delivered.
    assert_eq!(*payments.lock().unwrap(), expect_payments);
    assert_eq!(
        *bursts.lock().unwrap(),
        of(&|f| f["detector"] == "enumeration-burst")
    );
    assert_eq!(*all.lock().unwrap(), of(&|_| true));
    // The platform route posts Slack messages, naming the owner.
    let messages = platform.lock().unwrap().clone();
    assert_eq!(messages.len(), 3);
    for m in &messages {
        let m: serde_json::Value = serde_json::from_str(m).unwrap();
        assert!(m["blocks"].to_string().contains("owner platform"), "{m}");
    }
    // Nothing matched the critical-only route, so its dead endpoint held nothing up.
    assert!(
        err.contains("note: webhook: 4 finding(s) posted (route payments)"),
        "{err}"
    );
    assert!(
        err.contains("note: webhook: 3 finding(s) posted (route platform)"),
        "{err}"
    );
    assert!(
        err.contains("note: webhook: 0 finding(s) posted (route criticals)"),
        "{err}"
    );
    assert!(
        err.contains("note: webhook: 34 finding(s) posted (route all)"),
        "{err}"
    );
    assert!(!err.contains("wait in the spool"), "{err}");
    assert!(!err.contains("127.0.0.1"), "no URL on stderr: {err}");
}

/// One endpoint refusing connections and another answering 500 never hold up a third, which
/// receives everything in order. The refused findings wait in their route's queue and reach
/// the route's endpoint after a restart; the 500s are dead letters carrying the route's name,
/// listed and sent again per route.
#[test]
fn a_failing_endpoint_never_holds_up_the_other_routes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.sqlite");
    let state = state.to_str().unwrap();
    let (good_url, good, _) = endpoint_answering(200);
    let (flaky_url, flaky, flaky_answer) = endpoint_answering(500);
    let picky_answer: Answer = Arc::new(Mutex::new(Box::new(|f: &serde_json::Value| {
        if f["detector"] == "enumeration-burst" {
            400
        } else {
            200
        }
    })));
    let (picky_url, picky) = endpoint(picky_answer);
    let cfg = dir.path().join("credwarden.toml");
    let write_cfg = |down_url: &str| {
        std::fs::write(
            &cfg,
            [
                route("down", down_url, ""),
                route("flaky", &flaky_url, ""),
                route("picky", &picky_url, ""),
                route("good", &good_url, ""),
            ]
            .concat(),
        )
        .unwrap();
    };
    write_cfg(&refusing_url());
    let detect = || {
        run(&[
            "detect",
            stratus().to_str().unwrap(),
            "--state",
            state,
            "--config",
            cfg.to_str().unwrap(),
            "--webhook-max-attempts",
            "1",
            "--webhook-wait",
            "5",
        ])
    };
    let first = detect();
    let err = text(&first.stderr);
    assert_eq!(first.status.code(), Some(0), "{err}");
    let all = ids_of(&findings(&first), None);
    assert_eq!(all.len(), 34);
    assert_eq!(*good.lock().unwrap(), all, "everything, in order");
    assert_eq!(picky.lock().unwrap().len(), 32);
    assert!(flaky.lock().unwrap().is_empty());
    assert!(
        err.contains(
            "34 finding(s) wait in the spool of {state} (route down) and will be posted by the \
             next run (the endpoint is failing)"
                .replace("{state}", state)
                .as_str()
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "note: webhook: 34 finding(s) in the dead letters from this run (route flaky)"
        ),
        "{err}"
    );
    assert!(
        err.contains("note: webhook: 2 finding(s) in the dead letters from this run (route picky)"),
        "{err}"
    );
    assert!(!err.contains("127.0.0.1"), "no URL on stderr: {err}");

    // The dead letters carry their route.
    let dead = dead_letter_ids(state);
    assert_eq!(dead.len(), 36);
    assert!(dead
        .iter()
        .all(|d| d["route"] == "flaky" || d["route"] == "picky"));
    assert!(dead
        .iter()
        .filter(|d| d["route"] == "flaky")
        .all(|d| d["status"] == 500));
    let table = text(
        &run(&[
            "webhook",
            "dead-letters",
            "--state",
            state,
            "--route",
            "picky",
        ])
        .stdout,
    );
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.lines().next().unwrap().contains("ROUTE"), "{table}");
    assert!(
        table
            .lines()
            .skip(1)
            .all(|l| l.split('\t').nth(1) == Some("picky")),
        "{table}"
    );

    // Restart: the route "down" is up now (at another address). What it missed reaches it,
    // in order; nothing reaches the others twice.
    let (down_url, down, _) = endpoint_answering(200);
    write_cfg(&down_url);
    let second = detect();
    let err = text(&second.stderr);
    assert_eq!(second.status.code(), Some(0), "{err}");
    assert!(findings(&second).is_empty());
    assert_eq!(*down.lock().unwrap(), all);
    assert_eq!(good.lock().unwrap().len(), 34);
    assert!(
        err.contains("note: webhook: 34 finding(s) posted (route down)"),
        "{err}"
    );

    // One URL is one route's: with dead letters of two routes, --url needs --route.
    *flaky_answer.lock().unwrap() = Box::new(|_: &serde_json::Value| 200);
    let ambiguous = run(&["webhook", "resend", "--state", state, "--url", &flaky_url]);
    assert_eq!(ambiguous.status.code(), Some(1));
    let e = text(&ambiguous.stderr);
    assert!(
        e.contains("routes flaky, picky") && !e.contains("127.0.0.1"),
        "{e}"
    );
    assert_eq!(dead_letter_ids(state).len(), 36, "nothing moved");

    // Per route, by the configuration's URL: one of flaky's.
    let first_flaky = all[0].clone();
    let one = run(&[
        "webhook",
        "resend",
        "--state",
        state,
        "--config",
        cfg.to_str().unwrap(),
        "--route",
        "flaky",
        "--id",
        &first_flaky,
    ]);
    let out = text(&one.stdout);
    assert_eq!(one.status.code(), Some(0), "{}", text(&one.stderr));
    assert!(out.contains("route flaky: 1 posted"), "{out}");
    assert_eq!(*flaky.lock().unwrap(), [first_flaky]);
    // Per route, to a URL given now.
    let rest = run(&[
        "webhook", "resend", "--state", state, "--route", "flaky", "--url", &flaky_url,
    ]);
    assert_eq!(rest.status.code(), Some(0), "{}", text(&rest.stderr));
    assert!(text(&rest.stdout).contains("33 finding(s) sent again: 33 posted"));
    assert_eq!(*flaky.lock().unwrap(), all, "in order");
    // picky's are still dead letters, and still picky's.
    let dead = dead_letter_ids(state);
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|d| d["route"] == "picky"));
    // All of them (here: picky's, back to its queue, posted by the next run).
    let back = run(&["webhook", "resend", "--state", state]);
    assert!(
        text(&back.stdout).contains("2 finding(s) moved back"),
        "{}",
        text(&back.stdout)
    );
    assert!(dead_letter_ids(state).is_empty());
}

/// Mistakes in the routes are refused before anything is read, naming the route and never
/// showing its URL (a Slack URL is a credential).
#[test]
fn route_mistakes_are_refused_naming_the_route() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.sqlite");
    let state = state.to_str().unwrap();
    let cfg = dir.path().join("credwarden.toml");
    let secret = "https://hooks.slack.com/services/T0/B0/s3cr3tt0ken";
    let detect = |extra: &[&str]| {
        let mut args = vec![
            "detect",
            stratus().to_str().unwrap().to_owned().leak(),
            "--state",
            state,
            "--config",
            cfg.to_str().unwrap().to_owned().leak(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    for (toml, expect) in [
        (
            route("ops", secret, "colour = \"red\""),
            "unknown field `colour`",
        ),
        (
            [route("ops", secret, ""), route("ops", secret, "")].concat(),
            "two notify routes are named \"ops\"",
        ),
        (
            route("ops", &secret.replace("https://", "http://"), ""),
            "notify route ops: plain http:// is only allowed to a loopback address or \
             localhost; use https:// (host hooks.slack.com)",
        ),
        (
            // The url's string is not closed: the parser's report would quote the line.
            format!("[[notify.route]]\nname = \"ops\"\nurl = \"{secret}\n"),
            "line 3",
        ),
        (
            route(
                "ops",
                secret,
                "owners = [\"payments\"]\ndetectors = [\"static-key\"]",
            ),
            "notify route ops: unknown detector \"static-key\"",
        ),
    ] {
        std::fs::write(&cfg, &toml).unwrap();
        let out = detect(&[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{toml}: {err}");
        assert!(err.contains(expect), "{expect}: {err}");
        assert!(!err.contains("s3cr3t"), "the URL is shown: {err}");
        assert!(findings(&out).is_empty());
    }
    // --webhook is the route "webhook": checked the same way, and its name is taken.
    std::fs::write(&cfg, route("ops", secret, "")).unwrap();
    let out = detect(&["--webhook", "http://10.1.2.3/s3cr3tt0ken"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--webhook: notify route webhook: plain http://"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t"), "{err}");
    std::fs::write(&cfg, route("webhook", secret, "")).unwrap();
    let out = detect(&["--webhook", "http://127.0.0.1:9/"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("route named \"webhook\""),
        "{}",
        text(&out.stderr)
    );
    // Refused before the state file was even opened: nothing was read or remembered.
    assert!(!std::path::Path::new(state).exists());
}

/// The services route too: `shrink schedule --config` posts its notices (detector
/// `shrink-scheduled`) to the routes that want them, and refuses routes without a state file.
#[test]
fn shrink_schedule_notices_follow_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let role = |name: &str| {
        serde_json::json!({"role": name, "arn": format!("arn:aws:iam::111122223333:role/{name}"),
            "verdict": "shrink", "reason": "unused", "removed": ["ec2:TerminateInstances"],
            "kept_unknown": {}, "before": {"inline": {}, "attached": []},
            "after": {"inline": {}, "attached": []}})
    };
    let doc = serde_json::json!({"catalogue": "test", "window_days": 90,
        "window_end": "2027-06-01T00:00:00Z", "roles": [role("app"), role("batch")],
        "not_before": null});
    std::fs::write(&plan, doc.to_string()).unwrap();
    let (notices_url, notices, _) = endpoint_answering(200);
    let (keys_url, keys, _) = endpoint_answering(200);
    let cfg = dir.path().join("credwarden.toml");
    std::fs::write(
        &cfg,
        [
            route(
                "notices",
                &notices_url,
                "detectors = [\"shrink-scheduled\"]",
            ),
            route("keys", &keys_url, "detectors = [\"static-key-use\"]"),
        ]
        .concat(),
    )
    .unwrap();
    let state = dir.path().join("notices.sqlite");
    let schedule = |with_state: bool| {
        let mut args = vec![
            "shrink".to_owned(),
            "schedule".into(),
            "--plan".into(),
            plan.to_str().unwrap().into(),
            "--now".into(),
            "2027-06-01T00:00:00Z".into(),
            "--output".into(),
            dir.path().join("announced.json").to_str().unwrap().into(),
            "--config".into(),
            cfg.to_str().unwrap().into(),
            "--webhook-wait".into(),
            "10".into(),
        ];
        if with_state {
            args.extend(["--state".into(), state.to_str().unwrap().into()]);
        }
        bin().args(&args).output().unwrap()
    };
    let refused = schedule(false);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("notify routes of --config need --state"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!dir.path().join("announced.json").exists());
    let out = schedule(true);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(*notices.lock().unwrap(), ids_of(&findings(&out), None));
    assert_eq!(notices.lock().unwrap().len(), 2);
    assert!(keys.lock().unwrap().is_empty());
    assert!(
        err.contains("note: webhook: 2 finding(s) posted (route notices)"),
        "{err}"
    );
}
