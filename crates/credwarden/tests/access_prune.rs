//! `credwarden access prune` end to end: a membership made five minutes ago stays, an old
//! unused one goes, one nobody saw before stays and is recorded, and a group from the identity
//! provider is reported and never written into the directory.

use std::path::Path;
use std::process::{Command, Output};

const DAY: i64 = 86_400_000;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn when(ms: i64) -> String {
    cloudtrail::EventTime(ms).to_string()
}

#[test]
fn young_memberships_stay_old_unused_ones_go_and_idp_groups_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let now = credwarden_core::clock::now_millis();
    let directory = serde_json::json!({"users": {
        // payments used last week; search granted five minutes ago, never used yet.
        "alice": ["payments", {"group": "search", "since": when(now - 5 * 60_000)}],
        // Granted 200 days ago (the directory says), last used 300 days ago: unused.
        "bob": [{"group": "payments", "since": when(now - 200 * DAY)}],
        // Nothing known about it: not seen before.
        "carol": ["search"],
        // Seen by the broker 200 days ago, never used, no date in the file.
        "dave": ["search"],
        // Old, used through a broker session in CloudTrail last week.
        "erin": [{"group": "search", "since": when(now - 365 * DAY)}]
    }, "note": "kept by IT"});
    std::fs::write(p("directory.json"), directory.to_string()).unwrap();
    std::fs::write(
        p("broker.toml"),
        format!(
            r#"audit = "{}"
directory = "{}"
[[roles]]
arn = "arn:aws:iam::111122223333:role/payments-api"
groups = ["payments"]
[[roles]]
arn = "arn:aws:iam::444455556666:role/search-admin"
groups = ["search"]
[[roles]]
arn = "arn:aws:iam::111122223333:role/admin"
groups = ["okta-admins"]
[auth]
mode = "header"
trusted_proxies = ["127.0.0.1/32"]
[[networks]]
name = "vpn"
clients = ["10.8.0.0/16"]
egress = ["198.51.100.0/24"]
"#,
            p("audit.sqlite"),
            p("directory.json")
        ),
    )
    .unwrap();
    let mut store = store::Store::open(Path::new(&p("audit.sqlite"))).unwrap();
    let grant =
        |user: &str, t: i64, role: &str, groups: &str, idp: Option<&str>| store::AuditEntry {
            time_ms: t,
            request_id: format!("r-{user}-{t}"),
            user: user.into(),
            groups: groups.into(),
            idp_groups: idp.map(str::to_owned),
            client_ip: "10.8.0.5".into(),
            role: Some(role.into()),
            decision: "granted".into(),
            reason: "test".into(),
            ..Default::default()
        };
    store
        .audit_append_batch(&[
            grant(
                "alice",
                now - 5 * DAY,
                "arn:aws:iam::111122223333:role/payments-api",
                "okta-admins,payments",
                Some("okta-admins"),
            ),
            grant(
                "alice",
                now - 2 * DAY,
                "arn:aws:iam::111122223333:role/admin",
                "okta-admins,payments",
                Some("okta-admins"),
            ),
            grant(
                "bob",
                now - 300 * DAY,
                "arn:aws:iam::111122223333:role/payments-api",
                "payments",
                Some(""),
            ),
        ])
        .unwrap();
    // The broker began watching the directory 200 days ago; alice's search and carol's
    // memberships were not there yet.
    let tracking = broker::directory::tracking_key(Path::new(&p("directory.json")));
    let then = [
        ("alice", "payments"),
        ("bob", "payments"),
        ("dave", "search"),
        ("erin", "search"),
    ]
    .iter()
    .map(|(u, g)| (u.to_string(), g.to_string()))
    .collect();
    store
        .observe_memberships(&tracking, &then, now - 200 * DAY)
        .unwrap();
    drop(store);
    let mut r = serde_json::json!({
        "eventVersion": "1.08", "eventTime": when(now - 6 * DAY), "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets",
        "awsRegion": "us-east-1", "sourceIPAddress": "10.0.0.5", "userAgent": "aws-cli/2", "eventID": "e-1", "eventType": "AwsApiCall",
        "recipientAccountId": "444455556666",
        "userIdentity": {"type": "AssumedRole", "principalId": "AROA:erin", "arn": "arn:aws:sts::444455556666:assumed-role/search-admin/erin",
            "accountId": "444455556666", "accessKeyId": "ASIAEXAMPLE",
            "sessionContext": {"sourceIdentity": "erin", "sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::444455556666:role/search-admin", "accountId": "444455556666", "userName": "search-admin"}}}
    });
    r["eventTime"] = when(now - 6 * DAY).into();
    std::fs::write(
        p("trail.json"),
        serde_json::json!({"Records": [r]}).to_string(),
    )
    .unwrap();
    let (config, trail) = (p("broker.toml"), p("trail.json"));
    let run = |apply: bool| -> Output {
        let mut args = vec![
            "access",
            "prune",
            "--broker-config",
            &config,
            "--cloudtrail",
            &trail,
        ];
        if apply {
            args.push("--apply");
        }
        Command::new(env!("CARGO_BIN_EXE_credwarden"))
            .args(&args)
            .output()
            .unwrap()
    };
    let out = run(false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let lines = |prefix: &str| s.lines().filter(|l| l.starts_with(prefix)).count();
    assert!(
        s.contains("remove bob from payments (last used")
            && s.contains("(directory); unused for 90 days)")
            && s.contains("remove dave from search (never used; member since")
            && s.contains("(first seen); unused for 90 days)"),
        "{s}"
    );
    assert_eq!(lines("remove "), 2, "{s}");
    assert!(
        s.contains("keep alice in search: younger than 90 days"),
        "the five-minute-old membership stays: {s}"
    );
    assert!(
        s.contains(
            "keep carol in search: not seen before, its age is unknown; recorded as first seen now"
        ),
        "{s}"
    );
    assert!(!s.contains("erin"), "erin used search last week: {s}");
    assert!(
        s.contains("identity provider: alice in okta-admins (last used ")
            && s.contains("remove it in the identity provider"),
        "{s}"
    );
    assert_eq!(lines("identity provider: "), 1, "{s}");
    assert_eq!(
        std::fs::read_to_string(p("directory.json")).unwrap(),
        directory.to_string(),
        "nothing written without --apply"
    );

    let out = run(true);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("keep carol in search: younger than 90 days") && s.contains("(first seen)"),
        "carol's first sighting was recorded by the first run: {s}"
    );
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("directory.json")).unwrap()).unwrap();
    assert_eq!(d["users"]["alice"], directory["users"]["alice"]);
    assert_eq!(d["users"]["bob"], serde_json::json!([]));
    assert_eq!(d["users"]["carol"], serde_json::json!(["search"]));
    assert_eq!(d["users"]["dave"], serde_json::json!([]));
    assert_eq!(d["users"]["erin"], directory["users"]["erin"]);
    assert_eq!(d["note"], "kept by IT");
    assert!(
        !d.to_string().contains("okta-admins"),
        "the provider's group is never written: {d}"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("before-prune")),
        "the old directory is kept"
    );
    // dave is added back: his membership is new, not 200 days old.
    let mut again = d.clone();
    again["users"]["dave"] = serde_json::json!(["search"]);
    std::fs::write(p("directory.json"), again.to_string()).unwrap();
    let out = run(false);
    let s = text(&out.stdout);
    assert!(
        s.contains("keep dave in search: not seen before") && !s.contains("remove dave"),
        "{s}"
    );
    // Judged from a month ahead, every sighting would pass for a month older: refused.
    let future = when(now + 30 * DAY);
    let out = Command::new(env!("CARGO_BIN_EXE_credwarden"))
        .args([
            "access",
            "prune",
            "--broker-config",
            &config,
            "--now",
            &future,
            "--apply",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is in the future"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(p("directory.json")).unwrap(),
        again.to_string()
    );
}

#[test]
fn a_directory_with_a_bad_since_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    std::fs::write(
        p("directory.json"),
        r#"{"users": {"alice": [{"group": "search", "since": "last tuesday"}]}}"#,
    )
    .unwrap();
    std::fs::write(
        p("broker.toml"),
        format!(
            "audit = \"{}\"\ndirectory = \"{}\"\n[auth]\nmode = \"header\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n[[networks]]\nname = \"vpn\"\nclients = [\"10.8.0.0/16\"]\negress = [\"198.51.100.0/24\"]\n",
            p("audit.sqlite"),
            p("directory.json")
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_credwarden"))
        .args(["access", "prune", "--broker-config", &p("broker.toml")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("directory.json")
            && e.contains("users.alice[0].since: \"last tuesday\" is not an RFC 3339 time"),
        "{e}"
    );
}

/// Memberships approved through the broker live in its store: prune removes the expired ones
/// and those unused and older than the window (by their approval time), keeps young and used
/// ones, and changes nothing without --apply. Works without a directory file.
#[test]
fn store_memberships_expired_or_unused_go_young_and_used_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let now = credwarden_core::clock::now_millis();
    std::fs::write(
        p("broker.toml"),
        format!(
            "audit = \"{}\"\n[[roles]]\narn = \"arn:aws:iam::111122223333:role/payments-api\"\ngroups = [\"payments\"]\n[auth]\nmode = \"header\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n[[networks]]\nname = \"vpn\"\nclients = [\"10.8.0.0/16\"]\negress = [\"198.51.100.0/24\"]\n",
            p("audit.sqlite")
        ),
    )
    .unwrap();
    let config = p("broker.toml");
    let run = |apply: bool| -> Output {
        let mut args = vec!["access", "prune", "--broker-config", &config];
        if apply {
            args.push("--apply");
        }
        Command::new(env!("CARGO_BIN_EXE_credwarden"))
            .args(args)
            .output()
            .unwrap()
    };
    // No directory and nothing approved: nothing to prune here, said so.
    store::Store::open(Path::new(&p("audit.sqlite"))).unwrap();
    let out = run(false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no approved memberships"),
        "{}",
        text(&out.stderr)
    );

    let mut s = store::Store::open(Path::new(&p("audit.sqlite"))).unwrap();
    let member = |user: &str, group: &str, since: i64, expires: i64| store::Membership {
        user: user.into(),
        group: group.into(),
        granted_by: "carol".into(),
        request_id: None,
        since_ms: since,
        expires_ms: expires,
    };
    for m in [
        member("ann", "payments", now - 200 * DAY, now + 10 * DAY),
        member("ben", "payments", now - 200 * DAY, now + 10 * DAY),
        member("cat", "payments", now - 5 * 60_000, now + 3_600_000),
        member("dan", "search", now - 2 * 3_600_000, now - 3_600_000),
    ] {
        s.membership_grant(&m).unwrap();
    }
    s.audit_append_batch(&[store::AuditEntry {
        time_ms: now - 5 * DAY,
        request_id: "r-ben".into(),
        user: "ben".into(),
        groups: "payments".into(),
        idp_groups: Some(String::new()),
        client_ip: "10.8.0.5".into(),
        role: Some("arn:aws:iam::111122223333:role/payments-api".into()),
        decision: "granted".into(),
        reason: "test".into(),
        ..Default::default()
    }])
    .unwrap();
    let held = |s: &store::Store| -> Vec<String> {
        s.memberships()
            .unwrap()
            .into_iter()
            .map(|m| m.user)
            .collect()
    };

    let out = run(false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(
        o.contains("store: remove ann from payments (never used"),
        "{o}"
    );
    assert!(
        o.contains("store: remove dan from search (approved by carol, expired"),
        "{o}"
    );
    assert!(
        o.contains("store: keep cat in payments: younger than 90 days"),
        "{o}"
    );
    assert!(!o.contains("ben"), "used last week: {o}");
    assert!(
        text(&out.stderr).contains("4 store membership(s): 1 expired, 1 unused"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        held(&s),
        ["ann", "ben", "cat", "dan"],
        "nothing without --apply"
    );

    let out = run(true);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("store: 2 membership(s) removed"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(held(&s), ["ben", "cat"]);
}
