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
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
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
