//! `detect s3://…` on the moto server through the AWS SDK for Rust: an organisation trail's
//! delivery (`AWSLogs/o-…/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/`) gives the same findings, in
//! the same order, as the same files on disk; `--accounts/--regions/--since/--until` read
//! exactly their part; with `--state` an object is read once.

use std::path::Path;
use std::process::Output;

use testkit::{Moto, BOTO3_KW};

const UPLOAD: &str = r#"
import boto3, os, sys
s3 = boto3.client("s3", **KW)
s3.create_bucket(Bucket="org-trail")
root = sys.argv[1]
n = 0
for folder, _, files in os.walk(root):
    for name in files:
        path = os.path.join(folder, name)
        rel = os.path.relpath(path, root)
        parts = rel.split(os.sep)
        if parts[0] != "AWSLogs":
            continue
        key = "org/AWSLogs/o-abc123def4/" + "/".join(parts[1:])
        s3.upload_file(path, "org-trail", key)
        n += 1
s3.put_object(Bucket="org-trail", Key="org/AWSLogs/o-abc123def4/README.txt", Body=b"not a trail")
# A folder marker, as the S3 console makes them: not an object anyone means to read.
s3.put_object(Bucket="org-trail", Key="org/AWSLogs/o-abc123def4/", Body=b"")
print(n)
"#;

fn credwarden(moto: &Moto, args: &[&str]) -> Output {
    moto.command(env!("CARGO_BIN_EXE_credwarden"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ids(out: &Output) -> Vec<String> {
    text(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn stats(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn files_under(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            n += files_under(&p);
        } else if p.to_string_lossy().ends_with(".json.gz") {
            n += 1;
        }
    }
    n
}

#[test]
fn an_organisation_trail_in_s3_gives_the_same_findings_as_its_files() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let generated = demo::write_dataset(&data, 11, 6_000).unwrap();
    let uploaded: usize = moto
        .python(
            &UPLOAD.replace("KW)", &format!("{BOTO3_KW})")),
            &[data.to_str().unwrap()],
        )
        .trim()
        .parse()
        .unwrap();
    assert!(uploaded > 50, "{uploaded}");
    let ranges = data.join("aws-ip-ranges.json");
    let ranges = ranges.to_str().unwrap();

    let local = credwarden(
        &moto,
        &[
            "detect",
            generated.logs.to_str().unwrap(),
            "--aws-ip-ranges",
            ranges,
            "-q",
        ],
    );
    assert_eq!(local.status.code(), Some(0), "{}", text(&local.stderr));
    let local_ids = ids(&local);
    assert!(
        local_ids.len() >= 10,
        "the demo's attacks are found: {}",
        local_ids.len()
    );

    let from_s3 = credwarden(
        &moto,
        &[
            "detect",
            "s3://org-trail/org",
            "--endpoint-url",
            &moto.url,
            "--aws-ip-ranges",
            ranges,
        ],
    );
    assert_eq!(from_s3.status.code(), Some(0), "{}", text(&from_s3.stderr));
    assert_eq!(ids(&from_s3), local_ids, "same findings, same order");
    let err = text(&from_s3.stderr);
    assert!(
        err.contains("1 file(s)") && err.contains("README.txt"),
        "the object that is not a trail is named, folder markers are not: {err}"
    );

    // One account, one region, one day: only those prefixes are read.
    let account_dir = std::fs::read_dir(&generated.logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let account = account_dir
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let region_dir = account_dir.join("CloudTrail/us-east-1");
    let day_dir = {
        let mut d = region_dir.clone();
        for _ in 0..3 {
            d = std::fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .min()
                .unwrap();
        }
        d
    };
    let day = {
        let rel = day_dir
            .strip_prefix(&region_dir)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        rel.replace('/', "-")
    };
    let stats_file = dir.path().join("narrow.json");
    let narrow = credwarden(
        &moto,
        &[
            "detect",
            "s3://org-trail/org/",
            "--endpoint-url",
            &moto.url,
            "--accounts",
            &account,
            "--regions",
            "us-east-1",
            "--since",
            &day,
            "--until",
            &day,
            "--stats-json",
            stats_file.to_str().unwrap(),
            "-q",
        ],
    );
    assert_eq!(narrow.status.code(), Some(0), "{}", text(&narrow.stderr));
    assert_eq!(
        stats(&stats_file)["files"].as_u64().unwrap() as usize,
        files_under(&day_dir),
        "exactly the day's delivery files of {account} in us-east-1"
    );

    // With --state an object is read once: the second run reads nothing and reports nothing.
    let state = dir.path().join("state.sqlite");
    let output = dir.path().join("findings.jsonl");
    let run = |stats_name: &str| {
        let stats_file = dir.path().join(stats_name);
        let out = credwarden(
            &moto,
            &[
                "detect",
                "s3://org-trail/org",
                "--endpoint-url",
                &moto.url,
                "--aws-ip-ranges",
                ranges,
                "--state",
                state.to_str().unwrap(),
                "--output",
                output.to_str().unwrap(),
                "--stats-json",
                stats_file.to_str().unwrap(),
                "-q",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        (ids(&out), stats(&stats_file))
    };
    let (first, _) = run("first.json");
    assert_eq!(first.len(), local_ids.len());
    let (second, second_stats) = run("second.json");
    assert!(second.is_empty(), "{second:?}");
    assert_eq!(second_stats["files"], 0);
    assert_eq!(
        std::fs::read_to_string(&output).unwrap().lines().count(),
        first.len()
    );

    // Local paths and s3:// do not mix; a scope needs an s3:// location.
    let mixed = credwarden(&moto, &["detect", "s3://org-trail/org", ranges]);
    assert_eq!(mixed.status.code(), Some(1));
    let scoped = credwarden(&moto, &["detect", ranges, "--accounts", "111122223333"]);
    assert_eq!(scoped.status.code(), Some(1));
}

const PUT: &str = r#"
import boto3, os, sys
s3 = boto3.client("s3", **KW)
if sys.argv[1] == "create":
    s3.create_bucket(Bucket="ahead")
    for name in ["a", "b", "c", "d"]:
        s3.put_object(Bucket="ahead", Key=name, Body=name.encode() * 1000)
elif sys.argv[1] == "put":
    s3.put_object(Bucket="ahead", Key=sys.argv[2], Body=sys.argv[2].encode() * int(sys.argv[3]))
else:
    s3.delete_object(Bucket="ahead", Key=sys.argv[2])
"#;

/// An object's bytes, through `open` (fetched ahead, or streamed).
fn read_all(o: &aws::S3Object) -> Vec<u8> {
    use cloudtrail::RemoteInput;
    use std::io::Read;
    let mut body = Vec::new();
    o.open().unwrap().read_to_end(&mut body).unwrap();
    body
}

/// An S3 reader of the test credentials at `url` (moto, or a relay in front of it).
fn reader_at(url: &str) -> aws::S3Reader {
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    aws::S3Reader::connect(&aws::LiveOptions {
        endpoint_url: Some(url.to_owned()),
        region: Some("us-east-1".into()),
        regions: Vec::new(),
    })
    .unwrap()
}

/// Delivery files are fetched whole ahead of the decode workers within the reader's byte
/// budget: what is fetched ahead holds its share of the budget until the decoder is done
/// with it; what did not fit is fetched when there is room; an object that grew since it
/// was listed is read the ordinary way (never buffered past its listed size); a GET's error
/// is the error `open` gives, naming the object. (Every step is decided by the budget's
/// accounting, never by how fast moto answers.)
#[test]
fn objects_are_fetched_ahead_within_a_byte_budget() {
    use std::io::Read;
    use std::sync::Arc;

    use cloudtrail::RemoteInput;

    let moto = Moto::start();
    let put = PUT.replace("KW)", &format!("{BOTO3_KW})"));
    moto.python(&put, &["create"]);
    let reader = reader_at(&moto.url).with_prefetch_budget(2_500);
    let reader = Arc::new(reader);
    let listed = reader.list("ahead", "").unwrap();
    assert_eq!(listed.len(), 4);
    let objects: Vec<aws::S3Object> = listed
        .into_iter()
        .map(|info| aws::S3Object::new(reader.clone(), "ahead", info))
        .collect();
    let [a, b, c, d] = &objects[..] else {
        unreachable!()
    };

    // b grows after the listing; d disappears.
    moto.python(&put, &["put", "b", "3000"]);
    moto.python(&put, &["delete", "d"]);

    // a and c fit the budget (1,000 listed bytes each); d does not, nor does asking twice.
    for o in [a, c, d, a] {
        o.prefetch();
    }
    assert_eq!(reader.bytes_ahead(), 2_000);

    // a's bytes hold their share until the decoder drops them.
    let mut body = a.open().unwrap();
    let mut got = Vec::new();
    body.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"a".repeat(1000));
    assert_eq!(reader.bytes_ahead(), 2_000);
    drop(body);
    assert_eq!(reader.bytes_ahead(), 1_000);

    // b's background GET finds more than was listed: it gives its share back and b is read
    // whole the ordinary way.
    b.prefetch();
    assert_eq!(read_all(b), b"b".repeat(3000));
    assert_eq!(reader.bytes_ahead(), 1_000);

    // Now d fits; its GET's error is the error `open` gives, naming the object.
    d.prefetch();
    let err = d.open().err().expect("d is gone").to_string();
    assert!(
        err.contains("s3://ahead/d") && err.contains("NoSuchKey"),
        "{err}"
    );
    assert_eq!(reader.bytes_ahead(), 1_000);

    assert_eq!(read_all(c), b"c".repeat(1000));
    assert_eq!(reader.bytes_ahead(), 0);

    // An opened object is not fetched again.
    a.prefetch();
    assert_eq!(reader.bytes_ahead(), 0);
}

/// A GET that does not answer is asked again and the first answer taken: an S3 server that
/// hangs on one request (the relay holds the first GET of `c`, prefetched, and of `a`,
/// opened as a stream) neither hangs the run nor costs the object. Without the hedge both
/// reads would wait for ever; the guard below fails the test instead of hanging it.
#[test]
fn a_get_that_hangs_is_asked_again() {
    use std::sync::Arc;

    use cloudtrail::RemoteInput;

    let moto = Moto::start();
    let put = PUT.replace("KW)", &format!("{BOTO3_KW})"));
    moto.python(&put, &["create"]);
    let port: u16 = moto.url.rsplit(':').next().unwrap().parse().unwrap();
    let relay = testkit::Recorder::holding_first(port, &["GET /ahead/c", "GET /ahead/a"]);
    let reader = reader_at(&relay.url)
        .with_prefetch_budget(1_500)
        .with_hedge_after(std::time::Duration::from_millis(300));
    let reader = Arc::new(reader);
    let objects: Vec<aws::S3Object> = reader
        .list("ahead", "")
        .unwrap()
        .into_iter()
        .map(|info| aws::S3Object::new(reader.clone(), "ahead", info))
        .collect();
    let objects = Arc::new(objects);
    let (tx, rx) = std::sync::mpsc::channel();
    let reading = objects.clone();
    std::thread::spawn(move || {
        let [a, b, c, _] = &reading[..] else {
            unreachable!()
        };
        // c is fetched ahead (its share of the budget taken); a does not fit and is streamed.
        c.prefetch();
        a.prefetch();
        let _ = tx.send((read_all(c), read_all(a), read_all(b)));
    });
    let (c, a, b) = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("a hung GET was not asked again");
    assert_eq!(c, b"c".repeat(1000));
    assert_eq!(a, b"a".repeat(1000));
    assert_eq!(b, b"b".repeat(1000));
    // The held GETs and their hedges; the budget is whole again.
    assert_eq!(relay.count_requests("GET /ahead/c"), 2);
    assert_eq!(relay.count_requests("GET /ahead/a"), 2);
    assert!(reader.hedged_gets() >= 2, "{}", reader.hedged_gets());
    assert_eq!(reader.bytes_ahead(), 0);
}

const TWO_DAYS: &str = r#"
import boto3, os, sys, json
s3 = boto3.client("s3", **KW)
s3.create_bucket(Bucket="days")
root = "AWSLogs/111122223333/CloudTrail/us-east-1/"
for day, stamp, body in json.loads(sys.argv[1]):
    key = root + day + "/111122223333_CloudTrail_us-east-1_" + stamp + "_x.json"
    s3.put_object(Bucket="days", Key=key, Body=body.encode())
"#;

/// `detect` through a relay that never answers the first GET of one object: the run still
/// completes, with the same findings, and says how many GETs it asked again (stderr and
/// `--stats-json`); a run over files reports no such count.
#[test]
fn detect_says_how_many_slow_gets_it_asked_again() {
    let moto = Moto::start();
    let record = r#"{"Records":[{"eventTime":"2024-05-01T10:00:00Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity","eventID":"e1","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2","recipientAccountId":"111122223333","userIdentity":{"type":"IAMUser","accountId":"111122223333","accessKeyId":"AKIAEXAMPLEKEY00001","arn":"arn:aws:iam::111122223333:user/ci"}}]}"#;
    let files = serde_json::json!([["2024/05/01", "20240501T1005Z", record]]);
    moto.python(
        &TWO_DAYS.replace("KW)", &format!("{BOTO3_KW})")),
        &[&files.to_string()],
    );
    let port: u16 = moto.url.rsplit(':').next().unwrap().parse().unwrap();
    let relay = testkit::Recorder::holding_first(port, &["GET /days/AWSLogs/"]);
    let dir = tempfile::tempdir().unwrap();
    let stats_file = dir.path().join("stats.json");
    let run = |endpoint: &str| {
        credwarden(
            &moto,
            &[
                "detect",
                "s3://days",
                "--endpoint-url",
                endpoint,
                "--format",
                "jsonl",
                "--stats-json",
                stats_file.to_str().unwrap(),
            ],
        )
    };
    let direct = run(&moto.url);
    assert_eq!(direct.status.code(), Some(0), "{}", text(&direct.stderr));
    assert_eq!(stats(&stats_file)["hedged_gets"], 0);
    let slow = run(&relay.url);
    assert_eq!(slow.status.code(), Some(0), "{}", text(&slow.stderr));
    assert_eq!(ids(&slow), ids(&direct));
    assert!(!ids(&slow).is_empty());
    assert_eq!(relay.count_requests("GET /days/AWSLogs/"), 2);
    assert_eq!(stats(&stats_file)["hedged_gets"], 1);
    assert!(
        text(&slow.stderr).contains("1 S3 GET(s) had no answer"),
        "{}",
        text(&slow.stderr)
    );
    let local = dir.path().join("local.json");
    std::fs::write(&local, record).unwrap();
    let out = credwarden(
        &moto,
        &[
            "detect",
            local.to_str().unwrap(),
            "--format",
            "jsonl",
            "--stats-json",
            stats_file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stats(&stats_file)["hedged_gets"].is_null());
}

/// Moto with bucket `days`: an instance credential used from the instance on 1 May (23:50)
/// and 2 May (00:05), and from elsewhere on 2 May (00:20), delivered out of order.
fn two_days() -> Moto {
    let moto = Moto::start();
    let call = |time: &str, id: &str, ip: &str| {
        format!(
            r#"{{"Records":[{{"eventTime":"{time}","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","eventID":"{id}","awsRegion":"us-east-1","sourceIPAddress":"{ip}","userAgent":"aws-sdk-go","recipientAccountId":"111122223333","userIdentity":{{"type":"AssumedRole","accountId":"111122223333","accessKeyId":"ASIASTDINEXAMPLE","arn":"arn:aws:sts::111122223333:assumed-role/app/i-0abcdef1234567890","sessionContext":{{"sessionIssuer":{{"type":"Role","arn":"arn:aws:iam::111122223333:role/app"}},"ec2RoleDelivery":"2.0"}}}}}}]}}"#
        )
    };
    let files = serde_json::json!([
        [
            "2024/05/02",
            "20240502T0025Z",
            call("2024-05-02T00:20:00Z", "e3", "198.51.100.77")
        ],
        [
            "2024/05/01",
            "20240501T2355Z",
            call("2024-05-01T23:50:00Z", "e1", "54.1.2.3")
        ],
        [
            "2024/05/02",
            "20240502T0010Z",
            call("2024-05-02T00:05:00Z", "e2", "54.1.2.3")
        ],
    ]);
    moto.python(
        &TWO_DAYS.replace("KW)", &format!("{BOTO3_KW})")),
        &[&files.to_string()],
    );
    moto
}

/// The findings of a run over [`two_days`], checked to hold its one off-instance finding
/// (the use from 198.51.100.77).
fn the_one_off_instance_finding(out: &Output) -> Vec<serde_json::Value> {
    let findings: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let off: Vec<_> = findings
        .iter()
        .filter(|f| f["detector"] == "off-instance-credential-use")
        .collect();
    assert_eq!(off.len(), 1, "{}", text(&out.stdout));
    assert_eq!(off[0]["source"]["ip"], "198.51.100.77");
    findings
}

const EXTRAS: &str = r#"
import boto3, os, sys
s3 = boto3.client("s3", **KW)
for key, body in [
    ("AWSLogs/111122223333/CloudTrail/us-east-1/notes.txt", "not a trail"),
    ("AWSLogs/111122223333/CloudTrail/us-east-1/backup/111122223333_CloudTrail_us-east-1_20240430T1200Z_b.json", sys.argv[1]),
    ("AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/05/01/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20240501T000000Z.json.gz", "signature"),
]:
    s3.put_object(Bucket="days", Key=key, Body=body.encode())
"#;

/// Without `--since`, a bucket is still read one delivery day at a time: its day folders are
/// found with delimiter listings, each day listed on its own, and nothing is listed whole.
/// What lies outside the day folders is still read (a trail file in a stray folder) or named
/// (an object that is not a trail's); digest folders are not listed at all.
#[test]
fn a_bucket_without_days_in_the_scope_is_read_one_day_at_a_time() {
    let moto = two_days();
    let stray = r#"{"Records":[{"eventTime":"2024-04-30T12:00:00Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity","eventID":"s1","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2","recipientAccountId":"111122223333","userIdentity":{"type":"IAMUser","accountId":"111122223333","accessKeyId":"AKIAEXAMPLEKEY00001","arn":"arn:aws:iam::111122223333:user/ci"}}]}"#;
    moto.python(&EXTRAS.replace("KW)", &format!("{BOTO3_KW})")), &[stray]);
    let port: u16 = moto.url.rsplit(':').next().unwrap().parse().unwrap();
    let relay = testkit::Recorder::start(port);
    let dir = tempfile::tempdir().unwrap();
    let stats_file = dir.path().join("stats.json");
    let out = credwarden(
        &moto,
        &[
            "detect",
            "s3://days",
            "--endpoint-url",
            &relay.url,
            "--format",
            "jsonl",
            "--stats-json",
            stats_file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let findings = the_one_off_instance_finding(&out);
    assert!(
        findings.iter().any(|f| f["detector"] == "static-key-use"),
        "the trail file in a stray folder is read: {}",
        text(&out.stdout)
    );
    assert_eq!(stats(&stats_file)["files"], 4);
    let err = text(&out.stderr);
    assert!(err.contains("notes.txt"), "{err}");
    assert!(!err.contains("Digest"), "{err}");
    // Listings: each day on its own; nothing under the region or the bucket listed whole;
    // nothing under the digest folder.
    let lists: Vec<String> = relay
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.head.lines().next().unwrap_or("").to_owned())
        .filter(|l| l.contains("list-type=2"))
        .collect();
    let flat = |l: &&String| !l.contains("delimiter=");
    let day_listing = |day: &str| {
        lists
            .iter()
            .filter(flat)
            .any(|l| l.contains(&format!("us-east-1%2F{day}%2F")))
    };
    assert!(
        day_listing("2024%2F05%2F01") && day_listing("2024%2F05%2F02"),
        "{lists:#?}"
    );
    let whole = |l: &&String| {
        !l.contains("prefix=")
            || ["prefix=&", "prefix= ", "us-east-1%2F&", "us-east-1%2F "]
                .iter()
                .any(|p| l.contains(p))
    };
    assert!(
        !lists.iter().filter(flat).any(|l| whole(&l)),
        "a flat listing of a region or the bucket: {lists:#?}"
    );
    assert!(
        !lists
            .iter()
            .any(|l| l.contains("CloudTrail-Digest%2Fus-east-1")),
        "{lists:#?}"
    );
}

/// With days in the scope the bucket is listed one delivery day at a time, and the engine
/// carries what it learned on one day into the next: an instance credential first used from
/// the instance late on 1 May and from elsewhere early on 2 May is one finding.
#[test]
fn days_of_a_bucket_are_read_one_after_another_as_one_run() {
    let moto = two_days();
    let dir = tempfile::tempdir().unwrap();
    let stats_file = dir.path().join("stats.json");
    let out = credwarden(
        &moto,
        &[
            "detect",
            "s3://days",
            "--endpoint-url",
            &moto.url,
            "--since",
            "2024-05-01",
            "--until",
            "2024-05-03",
            "--format",
            "jsonl",
            "--stats-json",
            stats_file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    the_one_off_instance_finding(&out);
    assert_eq!(stats(&stats_file)["files"], 3);
}
