//! `detect --sqs` on the moto server through the AWS SDK for Rust: notifications in every form
//! production sends (S3 event, SNS-wrapped, EventBridge, CloudTrail's SNS notification) give
//! the same findings as the files on disk; test events are noted and deleted, unreadable
//! messages are left on the queue; `kill -9` mid-run loses and repeats nothing in `--output`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{Moto, BOTO3_KW};

/// Upload data/AWSLogs under org/AWSLogs/o-…/ and announce every object: the first few as
/// S3 event notifications (one direct, one through SNS, one EventBridge), the rest in
/// CloudTrail's own notifications, ten keys each; plus a test event, an unreadable message
/// and a digest. Prints the queue URL.
const SEED: &str = r#"
import boto3, json, os, sys, urllib.parse
s3 = boto3.client("s3", **KW)
sqs = boto3.client("sqs", **KW)
s3.create_bucket(Bucket="org-trail")
url = sqs.create_queue(QueueName=sys.argv[2])["QueueUrl"]
root = os.path.join(sys.argv[1], "AWSLogs")
keys = []
for folder, _, files in os.walk(root):
    for name in files:
        path = os.path.join(folder, name)
        key = "org/AWSLogs/o-abc123def4/" + os.path.relpath(path, root)
        s3.upload_file(path, "org-trail", key)
        keys.append(key)
trail = sorted(k for k in keys if "/CloudTrail/" in k)
digest = next(k for k in keys if "/CloudTrail-Digest/" in k)
def s3_event(key):
    obj = s3.head_object(Bucket="org-trail", Key=key)
    return json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "org-trail"}, "object": {"key": urllib.parse.quote_plus(key, safe="/"),
        "size": obj["ContentLength"], "eTag": obj["ETag"].strip('"')}}}]})
send = lambda body: sqs.send_message(QueueUrl=url, MessageBody=body)
send(s3_event(trail[0]))
send(json.dumps({"Type": "Notification", "Message": s3_event(trail[1])}))
send(json.dumps({"source": "aws.s3", "detail-type": "Object Created",
    "detail": {"bucket": {"name": "org-trail"}, "object": {"key": trail[2]}}}))
rest = trail[3:]
for i in range(0, len(rest), 10):
    send(json.dumps({"Type": "Notification",
        "Message": json.dumps({"s3Bucket": "org-trail", "s3ObjectKey": rest[i:i + 10]})}))
send(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "org-trail"}))
send(s3_event(digest))
send("this is not a notification")
# Someone who can write to the queue names a bucket of their own: it must not be read.
send(json.dumps({"s3Bucket": "attacker-bucket", "s3ObjectKey": [trail[0]]}))
print(url)
"#;

const QUEUE_LEFT: &str = r#"
import boto3, os, sys
sqs = boto3.client("sqs", **KW)
a = sqs.get_queue_attributes(QueueUrl=sys.argv[1], AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
print(int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"]))
"#;

fn credwarden(moto: &Moto) -> Command {
    moto.command(env!("CARGO_BIN_EXE_credwarden"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ids_in(lines: &str) -> Vec<String> {
    lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn seed(moto: &Moto, data: &Path, queue: &str) -> String {
    moto.python(
        &SEED.replace("KW)", &format!("{BOTO3_KW})")),
        &[data.to_str().unwrap(), queue],
    )
    .trim()
    .to_owned()
}

fn queue_left(moto: &Moto, url: &str) -> u64 {
    moto.python(&QUEUE_LEFT.replace("KW)", &format!("{BOTO3_KW})")), &[url])
        .trim()
        .parse()
        .unwrap()
}

fn sqs_args<'a>(moto: &'a Moto, url: &'a str, ranges: &'a str) -> Vec<&'a str> {
    vec![
        "detect",
        "--sqs",
        url,
        "--endpoint-url",
        &moto.url,
        "--sqs-wait",
        "1",
        "--sqs-bucket",
        "org-trail",
        "--aws-ip-ranges",
        ranges,
    ]
}

#[test]
fn notifications_in_every_form_give_the_findings_of_the_files() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let generated = demo::write_dataset(&data, 11, 4_000).unwrap();
    let url = seed(&moto, &data, "trail-queue");
    let ranges = data.join("aws-ip-ranges.json");
    let ranges = ranges.to_str().unwrap();

    let local = credwarden(&moto)
        .args([
            "detect",
            generated.logs.to_str().unwrap(),
            "--aws-ip-ranges",
            ranges,
            "-q",
        ])
        .output()
        .unwrap();
    assert_eq!(local.status.code(), Some(0), "{}", text(&local.stderr));
    let local_ids = ids_in(&text(&local.stdout));
    assert!(local_ids.len() >= 5, "{}", local_ids.len());

    let state = dir.path().join("state.sqlite");
    let output = dir.path().join("findings.jsonl");
    let mut args = sqs_args(&moto, &url, ranges);
    args.extend([
        "--state",
        state.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    let out = credwarden(&moto).args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        ids_in(&text(&out.stdout)),
        local_ids,
        "same findings, same order"
    );
    let err = text(&out.stderr);
    assert!(err.contains("1 S3 test event(s)"), "{err}");
    assert!(err.contains("left on the queue"), "{err}");
    assert!(err.contains("digests or not CloudTrail"), "{err}");
    assert!(err.contains("names bucket \"attacker-bucket\""), "{err}");
    // Everything read was deleted; the unreadable message and the stranger's wait for the
    // redrive policy.
    assert_eq!(queue_left(&moto, &url), 2);
    assert_eq!(
        std::fs::read_to_string(&output).unwrap().lines().count(),
        local_ids.len()
    );
}

#[test]
fn kill_9_during_an_sqs_run_loses_and_repeats_nothing() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    demo::write_dataset(&data, 5, 8_000).unwrap();
    let url = seed(&moto, &data, "kill-queue");
    let ranges = data.join("aws-ip-ranges.json");
    let ranges = ranges.to_str().unwrap();
    // The uninterrupted run, on a second queue announcing the same objects.
    let reference_url = seed(&moto, &data, "reference-queue");
    let reference = credwarden(&moto)
        .args(sqs_args(&moto, &reference_url, ranges))
        .args(["-q"])
        .output()
        .unwrap();
    assert_eq!(
        reference.status.code(),
        Some(0),
        "{}",
        text(&reference.stderr)
    );
    let expected = ids_in(&text(&reference.stdout));
    assert!(expected.len() >= 5);

    let state = dir.path().join("state.sqlite");
    let output = dir.path().join("findings.jsonl");
    let mut args = sqs_args(&moto, &url, ranges);
    args.extend([
        "--state",
        state.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--checkpoint-every",
        "7",
        "--sqs-visibility",
        "2",
        "--threads",
        "2",
        "-q",
    ]);
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    for delay_ms in [700u64, 1100, 1500, 1900] {
        let mut child = credwarden(&moto)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let _ = child.wait();
        // Messages the killed run received come back once their visibility ends.
        std::thread::sleep(Duration::from_millis(2100));
        assert!(Instant::now() < deadline);
    }
    assert!(kills > 0, "no run was interrupted: the test proves nothing");
    let last = credwarden(&moto).args(&args).output().unwrap();
    assert_eq!(last.status.code(), Some(0), "{}", text(&last.stderr));
    let mut got = ids_in(&std::fs::read_to_string(&output).unwrap());
    let mut want = expected.clone();
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "every finding exactly once in --output after {kills} kill(s)"
    );
    assert_eq!(
        queue_left(&moto, &url),
        2,
        "only the unreadable and the stranger\'s are left"
    );
}
