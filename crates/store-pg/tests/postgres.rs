//! The PostgreSQL store against a real server (`testkit::Postgres`: initdb and pg_ctl in a
//! temporary directory, loopback only).

use std::collections::BTreeSet;

use store::AuditEntry;
use store_pg::{PgError, PgStore};
use testkit::postgres::Postgres;

fn entry(user: &str, role: &str, decision: &str, t: i64) -> AuditEntry {
    AuditEntry {
        time_ms: t,
        request_id: format!("r-{t}"),
        user: user.into(),
        groups: "dev".into(),
        client_ip: "10.0.0.1".into(),
        network: Some("office".into()),
        role: Some(role.into()),
        decision: decision.into(),
        reason: "ok".into(),
        idp_groups: Some("dev".into()),
        ..Default::default()
    }
}

#[test]
fn audit_sightings_and_rate_windows_are_shared_by_two_connections() {
    let pg = Postgres::start();
    // Two replicas: two connections migrating at once migrate once.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| PgStore::connect(&pg.url).unwrap());
        let b = s.spawn(|| PgStore::connect(&pg.url).unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    let (mut a, mut b) = (a, b);
    assert_eq!(a.schema_version().unwrap(), store_pg::SCHEMA_VERSION);

    a.audit_append_batch(&[
        entry("alice", "arn:r/app", "granted", 1),
        entry("bob", "arn:r/app", "refused", 2),
    ])
    .unwrap();
    b.audit_append_batch(&[entry("alice", "arn:r/db", "granted", 3)])
        .unwrap();
    // Each replica sees every replica's rows, newest first.
    let all = b.audit_entries(None, 10).unwrap();
    assert_eq!(all.iter().map(|e| e.time_ms).collect::<Vec<_>>(), [3, 2, 1]);
    assert_eq!(
        all[2],
        entry("alice", "arn:r/app", "granted", 1),
        "every field round-trips"
    );
    assert_eq!(a.audit_entries(Some("alice"), 1).unwrap()[0].time_ms, 3);
    assert!(a
        .audit_exists("alice", Some("arn:r/db"), None, Some("granted"))
        .unwrap());
    assert!(!a
        .audit_exists("alice", Some("arn:r/db"), Some("home"), None)
        .unwrap());
    assert_eq!(
        b.audit_count("alice", None, None, Some("granted"), 2)
            .unwrap(),
        1
    );
    assert_eq!(b.audit_count("alice", None, None, None, 0).unwrap(), 2);

    // Directory sightings: the first observation cannot tell new from old; a later one can.
    let m = |pairs: &[(&str, &str)]| -> BTreeSet<(String, String)> {
        pairs
            .iter()
            .map(|(u, g)| (u.to_string(), g.to_string()))
            .collect()
    };
    let first = a
        .observe_memberships("dir", &m(&[("alice", "dev")]), 100)
        .unwrap();
    assert!(!first[&("alice".into(), "dev".into())].appeared);
    let second = b
        .observe_memberships("dir", &m(&[("alice", "dev"), ("bob", "ops")]), 200)
        .unwrap();
    let bob = second[&("bob".into(), "ops".into())];
    assert!(bob.appeared && bob.new && bob.first_seen_ms == 200);
    assert_eq!(second[&("alice".into(), "dev".into())].first_seen_ms, 100);
    // Removed, then added back: new again.
    a.observe_memberships("dir", &m(&[("bob", "ops")]), 300)
        .unwrap();
    let back = b
        .observe_memberships("dir", &m(&[("alice", "dev"), ("bob", "ops")]), 400)
        .unwrap();
    assert_eq!(back[&("alice".into(), "dev".into())].first_seen_ms, 400);

    // Rate windows count across connections; old windows of the user are dropped.
    assert_eq!(a.rate_hit("alice", "credentials", 60_000, 0).unwrap(), 1);
    assert_eq!(b.rate_hit("alice", "credentials", 60_000, 0).unwrap(), 2);
    assert_eq!(a.rate_hit("bob", "credentials", 60_000, 0).unwrap(), 1);
    assert_eq!(
        a.rate_hit("alice", "credentials", 120_000, 120_000)
            .unwrap(),
        1
    );
    assert_eq!(
        b.rate_hit("alice", "credentials", 60_000, 0).unwrap(),
        1,
        "the old window was dropped"
    );
}

#[test]
fn a_remote_server_is_refused_without_contacting_it_and_a_dead_one_fails_with_its_name() {
    for url in [
        "postgres://u:hunter2@db.example.com/credwarden",
        "postgres://u:hunter2@10.0.0.5:5432/credwarden",
        "host=db.example.com user=u password=hunter2",
        "host=localhost hostaddr=10.0.0.5 user=u password=hunter2",
        "postgres://u:hunter2@localhost/credwarden?hostaddr=192.0.2.1",
    ] {
        let e = PgStore::connect(url).err().expect(url);
        let text = e.to_string();
        assert!(matches!(e, PgError::Config(_)), "{url}: {text}");
        assert!(
            text.contains("only a loopback address or a Unix socket"),
            "{text}"
        );
        assert!(
            !text.contains("hunter2"),
            "the password is never shown: {text}"
        );
    }
    assert!(matches!(
        PgStore::connect("not a url ://"),
        Err(PgError::Config(_))
    ));

    let pg = Postgres::start();
    let mut store = PgStore::connect(&pg.url).unwrap();
    pg.stop();
    let e = store
        .audit_append_batch(&[entry("alice", "arn:r/app", "granted", 1)])
        .unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("127.0.0.1:{}/credwarden", pg.port)),
        "{e}"
    );
    // Back up: the next operation reconnects by itself.
    pg.restart();
    store
        .audit_append_batch(&[entry("alice", "arn:r/app", "granted", 2)])
        .unwrap();
    assert_eq!(store.audit_count("alice", None, None, None, 0).unwrap(), 1);
    pg.stop();
    let url = pg.url.replace("credwarden@", "credwarden:s3cret@");
    let e = PgStore::connect(&url).err().unwrap();
    assert!(!e.to_string().contains("s3cret"), "{e}");
}

#[test]
fn a_schema_newer_than_this_build_is_refused() {
    let pg = Postgres::start();
    let mut store = PgStore::connect(&pg.url).unwrap();
    drop(store.schema_version());
    let mut raw = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    raw.execute(
        "UPDATE credwarden_meta SET value = '99' WHERE key = 'schema_version'",
        &[],
    )
    .unwrap();
    let e = PgStore::connect(&pg.url).err().unwrap();
    assert!(matches!(e, PgError::TooNew { found: 99, .. }), "{e}");
}

fn access_request(id: &str, user: &str, group: &str) -> store::AccessRequest {
    store::AccessRequest {
        id: id.into(),
        user: user.into(),
        group: group.into(),
        reason: "on call".into(),
        duration_seconds: 3600,
        status: "pending".into(),
        created_ms: 1_000,
        decided_by: None,
        decided_ms: None,
        comment: None,
    }
}

/// Two replicas approving one request at once make one decision, one membership and one audit
/// row; the requester decides nothing; memberships expire and are removed only unchanged.
#[test]
fn approvals_are_decided_once_across_connections() {
    use store::{Decided, Decision, RequestScope};
    let pg = Postgres::start();
    let mut a = PgStore::connect(&pg.url).unwrap();
    let mut b = PgStore::connect(&pg.url).unwrap();
    a.access_request_create(
        &access_request("r1", "alice", "payments"),
        &entry("alice", "group:payments", "access-requested", 1),
    )
    .unwrap();
    b.access_request_create(
        &access_request("r2", "dave", "search"),
        &entry("dave", "group:search", "access-requested", 2),
    )
    .unwrap();
    let own = a
        .access_request_decide(
            "r1",
            Decision::Approve,
            "alice",
            "",
            5_000,
            &entry("alice", "group:payments", "access-approved", 3),
        )
        .unwrap();
    assert!(
        matches!(&own, Decided::Unchanged(r) if r.status == "pending"),
        "{own:?}"
    );

    // Both connections approve at once, from two threads: exactly one decides.
    let url = pg.url.clone();
    let results: Vec<Decided> = std::thread::scope(|s| {
        let handles: Vec<_> = ["carol", "erin"]
            .into_iter()
            .map(|who| {
                let url = url.clone();
                s.spawn(move || {
                    PgStore::connect(&url)
                        .unwrap()
                        .access_request_decide(
                            "r1",
                            Decision::Approve,
                            who,
                            "ok",
                            5_000,
                            &entry(who, "group:payments", "access-approved", 4),
                        )
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let done = results
        .iter()
        .filter(|d| matches!(d, Decided::Done { .. }))
        .count();
    assert_eq!(done, 1, "{results:?}");
    assert!(results
        .iter()
        .any(|d| matches!(d, Decided::Unchanged(r) if r.status == "approved")));
    let approved_rows = b
        .audit_entries(None, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.decision == "access-approved")
        .count();
    assert_eq!(approved_rows, 1, "one audit row for the one decision");
    let held = b.memberships_of("alice", 5_001).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].expires_ms, 5_000 + 3_600_000);
    assert!(b
        .memberships_of("alice", held[0].expires_ms)
        .unwrap()
        .is_empty());
    assert_eq!(
        a.access_request_decide(
            "missing",
            Decision::Deny,
            "carol",
            "",
            6_000,
            &entry("carol", "g", "access-denied", 5)
        )
        .unwrap(),
        Decided::Missing
    );

    // Listing: an approver of search sees dave's; alice her own; everyone's for all.
    let ids = |s: &mut PgStore, scope, status| {
        s.access_requests(scope, status, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    let search = ["search".to_owned()];
    assert_eq!(
        ids(
            &mut a,
            RequestScope::Visible {
                user: "carol",
                groups: &search
            },
            Some("pending")
        ),
        ["r2"]
    );
    assert_eq!(
        ids(
            &mut a,
            RequestScope::Visible {
                user: "alice",
                groups: &[]
            },
            None
        ),
        ["r1"]
    );
    assert_eq!(
        ids(&mut b, RequestScope::All, None),
        ["r1", "r2"],
        "ties in time by id"
    );
    assert_eq!(a.access_request("r2").unwrap().unwrap().status, "pending");

    // Removal only of what was read: extended since, it stays.
    let read = a.memberships().unwrap();
    let mut extended = read[0].clone();
    extended.expires_ms += 1;
    b.membership_grant(&extended).unwrap();
    assert_eq!(a.memberships_remove(&read).unwrap(), 0);
    assert_eq!(a.memberships_remove(&[extended]).unwrap(), 1);
    assert!(a.memberships().unwrap().is_empty());
}
