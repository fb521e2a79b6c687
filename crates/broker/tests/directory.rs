//! The broker and its directory file: dated memberships are read, each membership's first
//! sighting is recorded in the audit store (the age `access prune` judges by), and the audit
//! keeps the identity provider's groups apart from the directory's.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use broker::Broker;

#[test]
fn directory_memberships_are_recorded_and_idp_groups_audited_apart() {
    let dir = tempfile::tempdir().unwrap();
    let directory = dir.path().join("directory.json");
    std::fs::write(
        &directory,
        r#"{"users": {"alice": ["payments", {"group": "search", "since": "2026-01-05T00:00:00Z"}]}}"#,
    )
    .unwrap();
    let audit = dir.path().join("audit.sqlite");
    let cfg = broker::config::parse(&format!(
        r#"audit = "{}"
directory = "{}"
read_role_tags = false
[[approvers]]
group = "wiki"
approvers = ["wiki-leads"]
[auth]
mode = "header"
trusted_proxies = ["10.0.0.5/32"]
groups_header = "x-authenticated-groups"
[[networks]]
name = "vpn"
clients = ["10.8.0.0/16"]
egress = ["198.51.100.0/24"]
[aws]
region = "us-east-1"
"#,
        audit.display(),
        directory.display()
    ))
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let b = rt.block_on(Broker::new(cfg)).unwrap();
    let headers = |name: &str| match name {
        "x-authenticated-user" => vec!["alice".to_owned()],
        "x-authenticated-groups" => vec!["okta-admins".to_owned()],
        _ => Vec::new(),
    };
    let before = credwarden_core::clock::now_millis();
    let caller = rt
        .block_on(b.authenticate(&headers, "10.0.0.5".parse().unwrap()))
        .unwrap();
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(caller.groups, set(&["okta-admins", "payments", "search"]));
    assert_eq!(caller.idp_groups, set(&["okta-admins"]));
    // The audit row of a request keeps the provider's groups apart.
    rt.block_on(b.request_access(
        &caller,
        "10.8.0.9".parse().unwrap(),
        "wiki",
        "docs",
        None,
        "req-1",
    ))
    .unwrap();
    let store = store::Store::open(&audit).unwrap();
    let row = &store.audit_entries(Some("alice"), 1).unwrap()[0];
    assert_eq!(row.idp_groups.as_deref(), Some("okta-admins"));
    assert_eq!(row.groups, "okta-admins,payments,search");
    // The load was recorded (off the request's path, on a blocking thread: wait for it while
    // the broker's runtime is still there to run it — a busy machine may start it late).
    let key = broker::directory::tracking_key(&directory);
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let seen = store.memberships_seen(&key).unwrap();
        if seen.len() == 2 || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let after = credwarden_core::clock::now_millis();
    drop(b);
    drop(rt);
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (m, s) in &seen {
        assert!((before..=after).contains(&s.first_seen_ms), "{m:?}: {s:?}");
        assert!(!s.appeared, "first load: there when tracking began");
    }
}
