//! The `credwarden` command as users run it: exit codes, the input-error contract, stdin,
//! state across runs, the third-party corpora, `ip-ranges fetch` against a loopback server.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_credwarden"))
}

fn corpora() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora")
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("credwarden runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn findings(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

#[test]
fn stratus_logs_run_cleanly_with_jsonl_output_when_not_a_terminal() {
    let dir = corpora().join("stratus-red-team/detonation-logs");
    let out = run(&["detect", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("35 file(s), 310 records"), "{err}");
    assert!(err.contains("0 input error(s)"), "{err}");
    let found = findings(&out);
    // The two AccessDenied bursts of the detonations (see expected_findings.jsonl).
    assert_eq!(
        found
            .iter()
            .filter(|f| f["detector"] == "enumeration-burst")
            .count(),
        2
    );
    for f in found {
        assert!(
            [
                "off-instance-credential-use",
                "enumeration-burst",
                "static-key-use",
                "recon-call",
                "canary-resource",
                "new-role-behaviour",
                "unused-service",
                "unused-region"
            ]
            .contains(&f["detector"].as_str().unwrap()),
            "{f}"
        );
        for key in [
            "id",
            "severity",
            "time",
            "account",
            "region",
            "principal",
            "access_key_id",
            "source",
            "event_ids",
            "summary",
            "details",
            "remediation",
        ] {
            assert!(f.get(key).is_some(), "finding lacks {key}: {f}");
        }
    }
}

#[test]
fn input_errors_are_named_counted_and_strict_exits_2() {
    let dir = corpora().join("aws-cloudtrail-processing-library");
    let out = run(&["detect", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    let bad = dir.join("SerializerTestFileBadJsonFormat.json");
    assert!(
        err.contains(&format!("error: {}:0: malformed JSON", bad.display())),
        "{err}"
    );
    assert!(
        err.contains("SerializerAllFieldsNull.json:0: field `eventTime` is missing"),
        "{err}"
    );
    assert!(
        err.contains("note: ") && err.contains("notification"),
        "{err}"
    );
    let strict = run(&["detect", "--strict", dir.to_str().unwrap()]);
    assert_eq!(strict.status.code(), Some(2));
}

#[test]
fn usage_and_config_errors_exit_1() {
    assert_eq!(run(&["detect"]).status.code(), Some(1));
    assert_eq!(run(&["no-such-command"]).status.code(), Some(1));
    let missing = run(&["detect", "/nonexistent/trail"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("/nonexistent/trail"));
    let stratus = corpora().join("stratus-red-team/detonation-logs");
    let s = stratus.to_str().unwrap();
    let bad_cidr = run(&["detect", "--egress", "10.0.0.0/40", s]);
    assert_eq!(bad_cidr.status.code(), Some(1));
    assert!(text(&bad_cidr.stderr).contains("10.0.0.0/40"));
    let bad_detector = run(&["detect", "--detectors", "nope", s]);
    assert_eq!(bad_detector.status.code(), Some(1));
    assert!(text(&bad_detector.stderr).contains("unknown detector"));
    let follow = run(&["detect", "--follow", "--state", "/tmp/x.sqlite", "-"]);
    assert_eq!(follow.status.code(), Some(1));
    assert!(text(&follow.stderr).contains("stdin"));
    assert_eq!(run(&["--help"]).status.code(), Some(0));
}

fn instance_call(minute: u32, id: &str, ip: &str) -> String {
    format!(
        r#"{{"eventTime":"2024-05-01T10:{minute:02}:00Z","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","eventID":"{id}","awsRegion":"us-east-1","sourceIPAddress":"{ip}","userAgent":"aws-sdk-go","recipientAccountId":"111122223333","userIdentity":{{"type":"AssumedRole","accountId":"111122223333","accessKeyId":"ASIASTDINEXAMPLE","arn":"arn:aws:sts::111122223333:assumed-role/app/i-0abcdef1234567890","sessionContext":{{"sessionIssuer":{{"type":"Role","arn":"arn:aws:iam::111122223333:role/app"}},"ec2RoleDelivery":"2.0"}}}}}}"#
    )
}

#[test]
fn reads_json_lines_and_eventbridge_from_stdin() {
    let eventbridge = format!(
        r#"{{"version":"0","detail-type":"AWS API Call via CloudTrail","source":"aws.ec2","detail":{}}}"#,
        instance_call(40, "e3", "198.51.100.77")
    );
    let input = format!(
        "{}\n{}\n{}\n",
        instance_call(1, "e1", "54.1.2.3"),
        instance_call(2, "e2", "54.1.2.3"),
        eventbridge
    );
    let mut child = bin()
        .args(["detect", "-", "--format", "jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let f = findings(&out);
    assert_eq!(f.len(), 1, "{}", text(&out.stdout));
    assert_eq!(f[0]["source"]["ip"], "198.51.100.77");
    assert_eq!(f[0]["event_ids"], serde_json::json!(["e1", "e3"]));
}

#[test]
fn a_folder_of_several_days_is_read_day_by_day_as_one_run() {
    // A delivery tree over two days: the folder is handed to the engine one day at a time,
    // and what the detectors learned on the first day decides on the second.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("AWSLogs/111122223333/CloudTrail/us-east-1");
    let at = |time: &str, id: &str, ip: &str| {
        instance_call(0, id, ip).replace("2024-05-01T10:00:00Z", time)
    };
    for (day, stamp, records) in [
        (
            "2024/05/02",
            "20240502T0010Z",
            vec![at("2024-05-02T00:05:00Z", "e2", "54.1.2.3")],
        ),
        (
            "2024/05/01",
            "20240501T2355Z",
            vec![at("2024-05-01T23:50:00Z", "e1", "54.1.2.3")],
        ),
        (
            "2024/05/02",
            "20240502T0025Z",
            vec![at("2024-05-02T00:20:00Z", "e3", "198.51.100.77")],
        ),
    ] {
        let folder = root.join(day);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join(format!("111122223333_CloudTrail_us-east-1_{stamp}_x.json")),
            format!(r#"{{"Records":[{}]}}"#, records.join(",")),
        )
        .unwrap();
    }
    let state = dir.path().join("state.sqlite");
    let args = [
        "detect",
        dir.path().to_str().unwrap(),
        "--format",
        "jsonl",
        "--state",
        state.to_str().unwrap(),
    ];
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let f = findings(&out);
    let off: Vec<_> = f
        .iter()
        .filter(|f| f["detector"] == "off-instance-credential-use")
        .collect();
    assert_eq!(off.len(), 1, "{}", text(&out.stdout));
    assert_eq!(off[0]["source"]["ip"], "198.51.100.77");
    assert!(
        text(&out.stderr).contains("3 file(s), 3 records"),
        "{}",
        text(&out.stderr)
    );
    // Again: every day skipped, said once for the whole run.
    let again = run(&args);
    let err = text(&again.stderr);
    assert_eq!(
        err.matches("already processed by an earlier run").count(),
        1,
        "{err}"
    );
    assert!(err.contains("3 file(s) already processed"), "{err}");
}

#[test]
fn state_file_suppresses_findings_already_emitted() {
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("trail.jsonl");
    std::fs::write(
        &trail,
        format!(
            "{}\n{}\n",
            instance_call(1, "e1", "54.1.2.3"),
            instance_call(30, "e2", "198.51.100.77")
        ),
    )
    .unwrap();
    let state = dir.path().join("state.sqlite");
    let sink = dir.path().join("findings.jsonl");
    let args = [
        "detect",
        trail.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--format",
        "jsonl",
        "--output",
        sink.to_str().unwrap(),
    ];
    let first = run(&args);
    assert_eq!(findings(&first).len(), 1, "{}", text(&first.stderr));
    assert_eq!(
        std::fs::read_to_string(&sink).unwrap(),
        text(&first.stdout),
        "--output holds what stdout showed"
    );
    // The same file again: skipped, it was processed.
    let second = run(&args);
    assert_eq!(second.status.code(), Some(0));
    assert!(findings(&second).is_empty());
    assert!(
        text(&second.stderr).contains("1 file(s) already processed by an earlier run"),
        "{}",
        text(&second.stderr)
    );
    // The file rewritten (new modification time): read again; its records are known
    // duplicates (the duplicate filter's memory is part of the state) and nothing repeats.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(
        &trail,
        format!(
            "{}\n{}\n",
            instance_call(1, "e1", "54.1.2.3"),
            instance_call(30, "e2", "198.51.100.77")
        ),
    )
    .unwrap();
    let third = run(&args);
    assert!(findings(&third).is_empty());
    let err3 = text(&third.stderr);
    assert!(
        err3.contains("changed since an earlier run") && err3.contains("2 duplicate(s)"),
        "{err3}"
    );
    assert_eq!(
        std::fs::read_to_string(&sink).unwrap().lines().count(),
        1,
        "appended, and nothing twice"
    );
    std::fs::write(
        &state,
        b"not a database, definitely not one, just some words to fill a header",
    )
    .unwrap();
    let broken = run(&args);
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        text(&broken.stderr).contains("state file"),
        "{}",
        text(&broken.stderr)
    );
}

/// Permiso's console sessions are real, benign and noisy: one click fans out into dozens of
/// calls across services and regions. With a console identity and office addresses added,
/// they must not produce an off-instance finding.
#[test]
fn permiso_console_sessions_with_an_identity_are_not_off_instance() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = corpora().join("permiso-cloudconsolecartographer/sessions");
    let mut files = 0;
    for entry in std::fs::read_dir(&sessions).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".events.jsonl") {
            continue;
        }
        let mut out = String::new();
        for (i, line) in std::fs::read_to_string(&path).unwrap().lines().enumerate() {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["userIdentity"] = serde_json::json!({"type": "AssumedRole", "accountId": "111122223333", "accessKeyId": format!("ASIACONSOLE{files:05}"),
                "arn": "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_0123/alice@example.com",
                "sessionContext": {"sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::111122223333:role/AWSReservedSSO_Admin_0123"}}});
            v["sourceIPAddress"] = serde_json::json!(if i % 3 == 0 {
                "203.0.113.10"
            } else {
                "198.51.100.20"
            });
            v["recipientAccountId"] = serde_json::json!("111122223333");
            out.push_str(&v.to_string());
            out.push('\n');
        }
        std::fs::write(dir.path().join(name), out).unwrap();
        files += 1;
    }
    assert_eq!(files, 32);
    let out = run(&["detect", dir.path().to_str().unwrap(), "--format", "jsonl"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("9226 records"),
        "{}",
        text(&out.stderr)
    );
    // Every session was given the same identity here, months apart: only the detectors whose
    // question survives that merge are asked here (the baselines would see one principal's
    // habits change over half a year, which the merge made up; their console grouping is
    // tested in the detect crate).
    let asked = [
        "off-instance-credential-use",
        "enumeration-burst",
        "static-key-use",
        "canary-resource",
    ];
    let detectors = findings(&out)
        .into_iter()
        .map(|f| f["detector"].as_str().unwrap().to_owned())
        .filter(|d| asked.contains(&d.as_str()))
        .collect::<Vec<_>>();
    assert!(detectors.is_empty(), "{}", text(&out.stdout));
}

/// A one-shot HTTP server on loopback that answers every request with `status` and `body`.
fn serve_once(status: &'static str, body: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ip-ranges.json", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut req = [0u8; 4096];
        let _ = conn.read(&mut req);
        let head = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(&body).unwrap();
    });
    (url, handle)
}

#[test]
fn ip_ranges_fetch_checks_what_it_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("ip-ranges.json");
    let good = br#"{"syncToken":"1700000000","createDate":"2024-01-01-00-00-00","prefixes":[{"ip_prefix":"3.5.140.0/22","region":"ap-northeast-2","service":"AMAZON","network_border_group":"ap-northeast-2"}],"ipv6_prefixes":[{"ipv6_prefix":"2600:1f00::/24","region":"us-east-1","service":"AMAZON","network_border_group":"us-east-1"}]}"#.to_vec();
    let (url, h) = serve_once("200 OK", good.clone());
    let ok = run(&[
        "ip-ranges",
        "fetch",
        "--url",
        &url,
        "--output",
        out_file.to_str().unwrap(),
    ]);
    h.join().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("saved 2 prefixes (syncToken 1700000000"));
    assert_eq!(std::fs::read(&out_file).unwrap(), good);

    for (status, body, expect) in [
        (
            "200 OK",
            b"<html>captive portal</html>".to_vec(),
            "not an AWS ip-ranges.json",
        ),
        ("500 Internal Server Error", b"oops".to_vec(), "HTTP 500"),
    ] {
        let (url, h) = serve_once(status, body);
        let bad = run(&[
            "ip-ranges",
            "fetch",
            "--url",
            &url,
            "--output",
            out_file.to_str().unwrap(),
        ]);
        h.join().unwrap();
        assert_eq!(bad.status.code(), Some(1));
        assert!(text(&bad.stderr).contains(expect), "{}", text(&bad.stderr));
        assert_eq!(
            std::fs::read(&out_file).unwrap(),
            good,
            "a failed fetch must leave the old file alone"
        );
    }
}

#[test]
fn config_example_is_valid_and_used() {
    let example = run(&["config", "example"]);
    assert_eq!(example.status.code(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("credwarden.toml");
    // Declare the "foreign" address as egress: the finding disappears.
    std::fs::write(
        &cfg,
        text(&example.stdout).replace("\"203.0.113.0/24\"", "\"198.51.100.0/24\""),
    )
    .unwrap();
    let trail = dir.path().join("t.jsonl");
    std::fs::write(
        &trail,
        format!(
            "{}\n{}\n",
            instance_call(1, "e1", "54.1.2.3"),
            instance_call(30, "e2", "198.51.100.77")
        ),
    )
    .unwrap();
    let without = run(&["detect", trail.to_str().unwrap()]);
    assert_eq!(findings(&without).len(), 1);
    let with = run(&[
        "detect",
        trail.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(with.status.code(), Some(0), "{}", text(&with.stderr));
    assert!(findings(&with).is_empty());
    std::fs::write(&cfg, "[detect]\nlateness = 3\n").unwrap();
    let bad = run(&[
        "detect",
        trail.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("lateness"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn a_truncated_gzip_keeps_the_records_before_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::from("{\"Records\":[");
    for i in 0..2000 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&instance_call(
            (i % 50) as u32,
            &format!("e{i}"),
            "54.1.2.3",
        ));
    }
    body.push_str("]}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let full = gz.finish().unwrap();
    let path = dir.path().join("cut.json.gz");
    std::fs::write(&path, &full[..full.len() / 2]).unwrap();
    let out = run(&["detect", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("error: {}: read failed after", path.display()))
            && err.contains("truncated"),
        "{err}"
    );
    let kept: u64 = err
        .split(" records (")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(kept > 500 && kept < 2000, "kept {kept} records: {err}");
}

#[test]
fn follow_picks_up_files_as_they_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let incoming = dir.path().join("incoming");
    std::fs::create_dir(&incoming).unwrap();
    let out = dir.path().join("found.jsonl");
    let mut child = bin()
        .args([
            "detect",
            incoming.to_str().unwrap(),
            "--follow",
            "--poll",
            "1",
            "--output",
            out.to_str().unwrap(),
            "--format",
            "jsonl",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Delivered after the watcher started: the lock, the foreign use, and later traffic that
    // moves event time past the decision point.
    let trail = format!(
        "{}\n{}\n{}\n",
        instance_call(1, "e1", "54.1.2.3"),
        instance_call(30, "e2", "198.51.100.77"),
        instance_call(59, "e3", "54.1.2.3")
    );
    std::fs::write(
        incoming.join("111122223333_CloudTrail_us-east-1_20240501T1100Z_a.json"),
        trail,
    )
    .unwrap();
    let mut found = String::new();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        found = std::fs::read_to_string(&out).unwrap_or_default();
        if !found.is_empty() {
            break;
        }
    }
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(still_running, "--follow keeps running");
    assert_eq!(found.lines().count(), 1, "{found}");
    assert!(found.contains("198.51.100.77"));
}

#[test]
fn one_run_at_a_time_per_state_file_and_unread_files_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    // A delivery file cut short: read again by the next run rather than marked done.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(
        format!("{{\"Records\":[{}]}}", instance_call(1, "e1", "54.1.2.3"))
            .repeat(50)
            .as_bytes(),
    )
    .unwrap();
    let full = gz.finish().unwrap();
    std::fs::write(logs.join("cut.json.gz"), &full[..full.len() / 2]).unwrap();
    let state = dir.path().join("s.sqlite");
    let args = [
        "detect",
        logs.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ];
    for _ in 0..2 {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0));
        assert!(
            text(&o.stderr).contains("read failed"),
            "tried again: {}",
            text(&o.stderr)
        );
    }
    // A second run while one holds the state file is refused.
    let mut holder = bin()
        .args([
            "detect",
            logs.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--follow",
            "--poll",
            "1",
            "-q",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let second = run(&args);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        text(&second.stderr).contains("another credwarden run is using the state file"),
        "{}",
        text(&second.stderr)
    );
}

#[test]
fn baseline_build_makes_history_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let call = |min: u32, id: &str, source: &str, name: &str, region: &str| {
        let t = format!(
            "2024-05-0{}T{:02}:{:02}:00Z",
            1 + min / 1440,
            (min / 60) % 24,
            min % 60
        );
        format!(
            r#"{{"eventTime":"{t}","eventSource":"{source}","eventName":"{name}","eventID":"{id}","awsRegion":"{region}","sourceIPAddress":"54.1.2.3","userAgent":"aws-sdk-go","recipientAccountId":"111122223333","userIdentity":{{"type":"AssumedRole","accessKeyId":"ASIAAPP","arn":"arn:aws:sts::111122223333:assumed-role/app/s","sessionContext":{{"sessionIssuer":{{"type":"Role","arn":"arn:aws:iam::111122223333:role/app"}}}}}}}}"#
        )
    };
    let history: String = (0..60)
        .map(|i| {
            call(
                i,
                &format!("h{i}"),
                "dynamodb.amazonaws.com",
                "GetItem",
                "us-east-1",
            ) + "\n"
        })
        .collect();
    let mut today: String = (0..30)
        .map(|i| {
            call(
                1500 + i,
                &format!("t{i}"),
                "dynamodb.amazonaws.com",
                "GetItem",
                "us-east-1",
            ) + "\n"
        })
        .collect();
    today.push_str(&(call(1531, "x1", "s3.amazonaws.com", "ListBuckets", "eu-north-1") + "\n"));
    today.extend((0..40).map(|i| {
        call(
            1535 + i,
            &format!("u{i}"),
            "dynamodb.amazonaws.com",
            "GetItem",
            "us-east-1",
        ) + "\n"
    }));
    let (hist, new) = (
        dir.path().join("history.jsonl"),
        dir.path().join("today.jsonl"),
    );
    std::fs::write(&hist, history).unwrap();
    std::fs::write(&new, today).unwrap();
    let novelty = |out: &Output| {
        let mut d: Vec<String> = findings(out)
            .iter()
            .map(|f| f["detector"].as_str().unwrap().to_owned())
            .filter(|d| {
                [
                    "recon-call",
                    "new-role-behaviour",
                    "unused-service",
                    "unused-region",
                ]
                .contains(&d.as_str())
            })
            .collect();
        d.sort();
        d
    };
    // Without a baseline the role is still being learned: nothing is new yet.
    let cold = run(&[
        "detect",
        new.to_str().unwrap(),
        "--state",
        dir.path().join("cold.sqlite").to_str().unwrap(),
    ]);
    assert_eq!(cold.status.code(), Some(0));
    assert!(novelty(&cold).is_empty(), "{}", text(&cold.stdout));
    // With yesterday as the baseline, today's first ListBuckets in a new region stands out.
    let state = dir.path().join("warm.sqlite");
    let built = run(&[
        "baseline",
        "build",
        hist.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    assert_eq!(built.status.code(), Some(0), "{}", text(&built.stderr));
    assert!(
        text(&built.stderr).contains("60 records"),
        "{}",
        text(&built.stderr)
    );
    let warm = run(&[
        "detect",
        new.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    assert_eq!(warm.status.code(), Some(0), "{}", text(&warm.stderr));
    assert_eq!(
        novelty(&warm),
        [
            "new-role-behaviour",
            "recon-call",
            "unused-region",
            "unused-service"
        ],
        "{}",
        text(&warm.stdout)
    );
}

/// A loopback HTTP endpoint that refuses its first `fail_first` posts with 500, then accepts,
/// recording each accepted body.
fn webhook_server(fail_first: usize) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let store = got.clone();
    std::thread::spawn(move || {
        let mut seen = 0;
        for conn in listener.incoming().take(50) {
            let Ok(mut conn) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some(h) = text.find("\r\n\r\n") {
                    let len: usize = text[..h]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= h + 4 + len {
                        break Some(String::from_utf8_lossy(&buf[h + 4..h + 4 + len]).into_owned());
                    }
                }
            };
            seen += 1;
            let status = if seen <= fail_first {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            if status.starts_with("200") {
                store.lock().unwrap().extend(body);
            }
            let _ = conn.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (url, got)
}

#[test]
fn webhook_delivery_survives_failures_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("t.jsonl");
    std::fs::write(
        &trail,
        format!(
            "{}\n{}\n",
            instance_call(1, "e1", "54.1.2.3"),
            instance_call(30, "e2", "198.51.100.77")
        ),
    )
    .unwrap();
    let state = dir.path().join("s.sqlite");
    // No --state: refused, a webhook needs the spool.
    let refused = run(&[
        "detect",
        trail.to_str().unwrap(),
        "--webhook",
        "http://127.0.0.1:9/",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    // The endpoint is down (nothing listens): the run ends anyway, the finding waits.
    let dead = format!("http://127.0.0.1:{}/hook", testkit::free_port());
    let first = run(&[
        "detect",
        trail.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--webhook",
        &dead,
        "--webhook-wait",
        "2",
    ]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert!(
        text(&first.stderr).contains("1 finding(s) wait in the spool"),
        "{}",
        text(&first.stderr)
    );
    assert_eq!(findings(&first).len(), 1);
    // Next run, the endpoint is up but fails twice: the finding arrives, once accepted.
    let (url, got) = webhook_server(2);
    let second = run(&[
        "detect",
        trail.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--webhook",
        &url,
        "--webhook-wait",
        "20",
    ]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    assert!(findings(&second).is_empty(), "stdout does not repeat it");
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let posted: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(posted["source"]["ip"], "198.51.100.77");
    assert!(
        !text(&second.stderr).contains("wait in the spool"),
        "{}",
        text(&second.stderr)
    );
}

#[test]
fn a_live_stdin_stream_yields_findings_before_it_ends() {
    let mut child = bin()
        .args(["detect", "-", "--format", "jsonl", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in [
        instance_call(1, "e1", "54.1.2.3"),
        instance_call(30, "e2", "198.51.100.77"),
        instance_call(59, "e3", "54.1.2.3"),
    ] {
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    // The stream is still open; the finding must come out anyway.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        use std::io::BufRead;
        let _ = stdout.read_line(&mut first);
        let _ = tx.send(first);
    });
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("a finding while stdin is still open");
    drop(stdin);
    child.wait().unwrap();
    assert!(first.contains("198.51.100.77"), "{first}");
}

#[test]
fn role_ownership_from_inventory_tags() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("auth.json");
    std::fs::write(
        &inventory,
        serde_json::json!({"RoleDetailList": [
            {"RoleName": "web-frontend", "Arn": "arn:aws:iam::111122223333:role/web-frontend", "Tags": [{"Key": "application", "Value": "web"}], "InstanceProfileList": []},
            {"RoleName": "ops-admin", "Arn": "arn:aws:iam::111122223333:role/ops-admin", "Tags": [{"Key": "application", "Value": "platform"}],
             "InstanceProfileList": [{"Arn": "arn:aws:iam::111122223333:instance-profile/ops-admin"}]}
        ], "UserDetailList": []})
        .to_string(),
    )
    .unwrap();
    let pass = |id: &str, role: &str| {
        format!(
            r#"{{"eventTime":"2024-05-01T10:00:00Z","eventSource":"lambda.amazonaws.com","eventName":"CreateFunction20150331","eventID":"{id}","awsRegion":"us-east-1","sourceIPAddress":"54.1.2.3","recipientAccountId":"111122223333","requestParameters":{{"functionName":"f","role":"{role}"}},"userIdentity":{{"type":"AssumedRole","accessKeyId":"ASIAWEB","arn":"arn:aws:sts::111122223333:assumed-role/web-frontend/s","sessionContext":{{"sessionIssuer":{{"type":"Role","arn":"arn:aws:iam::111122223333:role/web-frontend"}}}}}}}}"#
        )
    };
    let trail = dir.path().join("t.jsonl");
    std::fs::write(
        &trail,
        format!(
            "{}\n{}\n",
            pass("own", "arn:aws:iam::111122223333:role/web-frontend"),
            pass("foreign", "arn:aws:iam::111122223333:role/ops-admin")
        ),
    )
    .unwrap();
    let out = run(&[
        "detect",
        trail.to_str().unwrap(),
        "--inventory",
        inventory.to_str().unwrap(),
        "--detectors",
        "foreign-role-pass",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let f = findings(&out);
    assert_eq!(f.len(), 1, "{}", text(&out.stdout));
    assert_eq!(f[0]["event_ids"][0], "foreign");
    assert_eq!(f[0]["details"]["role_owner"], "platform");
    // The AWS CLI's own example and a real account's export read cleanly (they carry no tags).
    for name in [
        "get-account-authorization-details.awscli-example.json",
        "get-account-authorization-details.cloudmapper-demo.json",
    ] {
        let inv = corpora().join("iam").join(name);
        let o = run(&[
            "detect",
            trail.to_str().unwrap(),
            "--inventory",
            inv.to_str().unwrap(),
            "--detectors",
            "foreign-role-pass",
        ]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o.stderr));
    }
    let bogus = run(&[
        "detect",
        trail.to_str().unwrap(),
        "--inventory",
        trail.to_str().unwrap(),
        "--detectors",
        "foreign-role-pass",
    ]);
    assert_eq!(bogus.status.code(), Some(1));
}

/// An error that already quotes its cause is not followed by the same cause again, and a
/// file that is not what a command reads says what was expected.
#[test]
fn errors_name_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("accounts.json");
    std::fs::write(&bad, "[[[[").unwrap();
    let state = dir.path().join("s.sqlite");
    let out = run(&[
        "accounts",
        "sync",
        "--state",
        state.to_str().unwrap(),
        "--file",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.matches("EOF while parsing").count(), 1, "{err}");
    std::fs::write(&bad, r#"{"Roles": []}"#).unwrap();
    let out = run(&[
        "accounts",
        "sync",
        "--state",
        state.to_str().unwrap(),
        "--file",
        bad.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("not an accounts file"), "{err}");
}
