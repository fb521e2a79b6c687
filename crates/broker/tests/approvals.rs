//! Access requests end to end on moto's STS: a request, the approvers' decision (never the
//! requester's own, never a non-approver's), the expiring membership effective at the next
//! request, the notifications in the findings file and on a webhook, the audit of every
//! decision; and on PostgreSQL, two replicas approving at once make one membership.

use std::time::{Duration, Instant};

use broker::auth::testing::TestIdp;
use serde_json::{json, Value};
use testkit::postgres::Postgres;
use testkit::webhook::Webhook;
use testkit::{Moto, Recorder};

mod common;

const ISSUER: &str = "https://idp.test";
const ROLE: &str = "arn:aws:iam::123456789012:role/payments-api";

/// moto with the payments role, and a recorder in front of it; the IdP whose JWKS the broker
/// reads from `dir`.
fn aws(dir: &std::path::Path) -> (Moto, Recorder, TestIdp) {
    let (moto, recorder) = common::moto_with_role("payments-api");
    let idp = TestIdp::new("test");
    std::fs::write(dir.join("jwks.json"), &idp.jwks).unwrap();
    (moto, recorder, idp)
}

fn config(dir: &std::path::Path, audit: &str, endpoint: &str, top: &str) -> String {
    format!(
        r#"
audit = "{audit}"
{top}
admin_groups = ["security"]
access_requests_per_hour = 4
membership_max_seconds = 86400
read_role_tags = false
[[approvers]]
group = "payments"
approvers = ["payments-leads"]
[[approvers]]
group = "search"
approvers = ["search-leads"]
[[roles]]
arn = "{ROLE}"
groups = ["payments"]
[auth]
mode = "jwt"
jwks_file = "{jwks}"
issuer = "{ISSUER}"
audience = "credwarden"
[[networks]]
name = "loopback-lab"
clients = ["127.0.0.0/8"]
egress = ["198.51.100.0/24"]
[aws]
endpoint_url = "{endpoint}"
region = "us-east-1"
"#,
        jwks = dir.join("jwks.json").display(),
    )
}

fn token(idp: &TestIdp, user: &str, groups: &[&str]) -> String {
    idp.sign(
        json!({"alg": "ES256", "kid": "test"}),
        json!({"iss": ISSUER, "aud": "credwarden", "sub": user, "groups": groups, "exp": common::now() + 600}),
    )
}

fn call(base: &str, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (status, v, _) = common::call(base, method, path, &[("Authorization", &auth)], body);
    (status, v)
}

fn replica(config: &str) -> String {
    format!(
        "http://{}",
        common::serve(broker::config::parse(config).unwrap())
    )
}

fn findings(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_request_approved_by_another_is_a_membership_at_once_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, recorder, idp) = aws(dir.path());
    let hook = Webhook::start();
    let audit = dir.path().join("audit.sqlite");
    let findings_file = dir.path().join("findings.jsonl");
    let top = format!(
        "findings = \"{}\"\nfindings_webhook = \"{}\"\nfindings_webhook_format = \"slack\"",
        findings_file.display(),
        hook.url
    );
    let base = replica(&config(
        dir.path(),
        audit.to_str().unwrap(),
        &recorder.url,
        &top,
    ));
    let alice = token(&idp, "alice", &["dev"]);
    let bob = token(&idp, "bob", &["dev"]);
    let carol = token(&idp, "carol", &["payments-leads"]);
    let dave = token(&idp, "dave", &["search-leads"]);
    let sam = token(&idp, "sam", &["security"]);
    let creds = |t: &str| {
        call(
            &base,
            "POST",
            "/v1/credentials",
            t,
            Some(json!({"role": "payments-api"})),
        )
    };
    assert_eq!(creds(&alice).0, 403, "not in payments yet");

    // Alice asks for payments for an hour.
    let (status, made) = call(
        &base,
        "POST",
        "/v1/access-requests",
        &alice,
        Some(json!({"group": "payments", "reason": "incident 4711", "duration_seconds": 3600})),
    );
    assert_eq!(status, 202, "{made}");
    assert_eq!(made["status"], "pending");
    let id = made["id"].as_str().unwrap().to_owned();
    let approve = |t: &str, id: &str, comment: &str| {
        call(
            &base,
            "POST",
            &format!("/v1/access-requests/{id}/approve"),
            t,
            Some(json!({"comment": comment})),
        )
    };

    // Who may see it: carol (approver) and alice (her own); not bob, not dave.
    let listed = |t: &str| -> Vec<String> {
        let (status, v) = call(&base, "GET", "/v1/access-requests?status=pending", t, None);
        assert_eq!(status, 200, "{v}");
        v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(listed(&carol), [id.as_str()]);
    assert_eq!(listed(&alice), [id.as_str()]);
    assert!(listed(&bob).is_empty());
    assert!(listed(&dave).is_empty());
    assert_eq!(listed(&sam), [id.as_str()], "admins see every group's");
    assert_eq!(
        call(
            &base,
            "GET",
            "/v1/access-requests?status=../x",
            &carol,
            None
        )
        .0,
        400
    );

    // Nobody decides their own; a non-approver, or another group's approver, cannot.
    let (status, v) = approve(&alice, &id, "me");
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("own-request")),
        "{v}"
    );
    let (status, v) = approve(&bob, &id, "");
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("not-approver")),
        "{v}"
    );
    let (status, v) = approve(&dave, &id, "");
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("not-approver")),
        "{v}"
    );
    // Path tricks and other spellings of an id name no request.
    for bad in [
        "..%2F..%2Fv1%2Faudit".to_owned(),
        id.to_uppercase(),
        format!("{id}%00"),
        format!("{id}%20"),
        id[..31].to_owned(),
    ] {
        let (status, v) = approve(&carol, &bad, "");
        // The approval handler's answer (audited), not the router's "no such endpoint".
        assert_eq!(
            (status, v["error"].as_str()),
            (404, Some("no such access request")),
            "{bad}: {v}"
        );
    }
    let (status, v) = approve(&carol, &"0".repeat(32), "");
    assert_eq!(status, 404, "{v}");
    assert_eq!(creds(&alice).0, 403, "still pending");

    // Carol approves: Alice has the role at her very next request.
    let before = common::now() * 1000;
    let (status, decided) = approve(&carol, &id, "ok for the incident");
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["request"]["status"], "approved");
    assert_eq!(decided["request"]["decided_by"], "carol");
    let expires = decided["membership"]["expires_ms"].as_i64().unwrap();
    assert!(
        (before + 3_600_000..=(common::now() + 1) * 1000 + 3_600_000).contains(&expires),
        "{decided}"
    );
    let (status, issued) = creds(&alice);
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["RoleArn"], ROLE);
    let (_, roles) = call(&base, "GET", "/v1/roles", &alice, None);
    assert!(roles["groups"]
        .as_array()
        .unwrap()
        .contains(&json!("payments")));
    // Decided once: a second approval, or a denial after it, changes nothing.
    let (status, v) = approve(&carol, &id, "again");
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("already-decided")),
        "{v}"
    );
    let (status, _) = call(
        &base,
        "POST",
        &format!("/v1/access-requests/{id}/deny"),
        &sam,
        None,
    );
    assert_eq!(status, 409);
    assert_eq!(creds(&alice).0, 200, "still a member");

    // An admin cannot approve their own either.
    let (status, own) = call(
        &base,
        "POST",
        "/v1/access-requests",
        &sam,
        Some(json!({"group": "payments", "reason": "break glass", "duration_seconds": 900})),
    );
    assert_eq!(status, 202, "{own}");
    let (status, v) = approve(&sam, own["id"].as_str().unwrap(), "");
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("own-request")),
        "{v}"
    );
    assert_eq!(creds(&sam).0, 403);

    // Deny path: dave denies Alice's search request; she gets nothing.
    let (status, search) = call(
        &base,
        "POST",
        "/v1/access-requests",
        &alice,
        Some(json!({"group": "search", "reason": "curious", "duration_seconds": 600})),
    );
    assert_eq!(status, 202, "{search}");
    let sid = search["id"].as_str().unwrap();
    let (status, v) = call(
        &base,
        "POST",
        &format!("/v1/access-requests/{sid}/deny"),
        &dave,
        Some(json!({"comment": "not needed"})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["request"]["status"], "denied");
    assert!(v["membership"].is_null());
    let (_, roles) = call(&base, "GET", "/v1/roles", &alice, None);
    assert!(!roles["groups"]
        .as_array()
        .unwrap()
        .contains(&json!("search")));

    // A role instead of a group: the one group with approvers that opens it. A role nobody
    // approves for, or none of that name, is refused in the same words.
    let fay = token(&idp, "fay", &["dev"]);
    let (status, by_role) = call(
        &base,
        "POST",
        "/v1/access-requests",
        &fay,
        Some(json!({"role": "payments-api", "reason": "deploy", "duration_seconds": 900})),
    );
    assert_eq!(status, 202, "{by_role}");
    assert_eq!(by_role["request"]["group"], "payments");
    let (status, unknown) = call(
        &base,
        "POST",
        "/v1/access-requests",
        &fay,
        Some(json!({"role": "no-such-role", "reason": "x"})),
    );
    assert_eq!(
        (status, unknown["code"].as_str()),
        (400, Some("role-unresolved")),
        "{unknown}"
    );
    let (status, _) = call(
        &base,
        "POST",
        "/v1/access-requests",
        &fay,
        Some(json!({"role": "payments-api", "group": "payments", "reason": "x"})),
    );
    assert_eq!(status, 400, "a group or a role, not both");

    // Bad requests: an oversized reason, a duration past the maximum, control characters.
    for body in [
        json!({"group": "payments", "reason": "x".repeat(1025)}),
        json!({"group": "payments", "reason": "ok", "duration_seconds": 86401}),
        json!({"group": "payments", "reason": "ok", "duration_seconds": 10}),
        json!({"group": "pay\u{1b}ments", "reason": "ok"}),
        json!({"group": "payments", "reason": ""}),
    ] {
        let (status, v) = call(
            &base,
            "POST",
            "/v1/access-requests",
            &bob,
            Some(body.clone()),
        );
        assert_eq!(status, 400, "{body}: {v}");
    }
    // A flood: four an hour, then 429 (Bob's refused bad requests above did not count).
    let codes: Vec<u16> = (0..6)
        .map(|i| {
            call(
                &base,
                "POST",
                "/v1/access-requests",
                &bob,
                Some(json!({"group": "payments", "reason": format!("please {i}")})),
            )
            .0
        })
        .collect();
    assert_eq!(codes, [202, 202, 202, 202, 429, 429]);

    // Expiry: Alice's membership as if granted two hours ago for one hour. Refused from then.
    {
        let mut s = store::Store::open(&audit).unwrap();
        let held = s.memberships_of("alice", common::now() * 1000).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(s.memberships_remove(&held).unwrap(), 1);
        let past = common::now() * 1000 - 3_600_000;
        s.membership_grant(&store::Membership {
            since_ms: past - 3_600_000,
            expires_ms: past,
            ..held[0].clone()
        })
        .unwrap();
    }
    let (status, v) = creds(&alice);
    assert_eq!(status, 403, "expired: {v}");

    // Notifications: the request (to approvers) and each decision (to the requester), in the
    // findings file and on the webhook in Slack's format; no credential in any.
    let all = findings(&findings_file);
    let of = |detector: &str, rid: &str| {
        all.iter()
            .filter(|f| f["detector"] == detector && f["details"]["request"] == rid)
            .count()
    };
    assert_eq!(of("access-request", &id), 1);
    assert_eq!(of("access-decision", &id), 1);
    assert_eq!(of("access-decision", sid), 1);
    let request_note = all
        .iter()
        .find(|f| f["detector"] == "access-request" && f["details"]["request"] == id.as_str())
        .unwrap();
    assert_eq!(request_note["principal"], "alice");
    assert_eq!(
        request_note["details"]["approver_groups"],
        json!(["payments-leads", "security"])
    );
    let file_text = std::fs::read_to_string(&findings_file).unwrap();
    for secret in [
        issued["SecretAccessKey"].as_str().unwrap(),
        issued["SessionToken"].as_str().unwrap(),
        &alice,
    ] {
        assert!(!file_text.contains(secret), "a secret in the findings");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let texts = loop {
        let texts: Vec<String> = hook
            .posts()
            .iter()
            .map(|p| p["text"].as_str().unwrap_or_default().to_owned())
            .collect();
        let requests = texts
            .iter()
            .filter(|t| t.contains("access-request"))
            .count();
        let decisions = texts
            .iter()
            .filter(|t| t.contains("access-decision"))
            .count();
        // Alice's two, Sam's, Fay's, Bob's four; Carol's approval and Dave's denial.
        if (requests, decisions) == (8, 2) || Instant::now() > deadline {
            break texts;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let count = |what: &str| texts.iter().filter(|t| t.contains(what)).count();
    assert_eq!(
        (count("access-request"), count("access-decision")),
        (8, 2),
        "{texts:?}"
    );
    // Slack's format: blocks, and the text escaped for Slack's markup.
    assert!(hook.posts().iter().all(|p| p["blocks"].is_array()));
    assert!(
        texts.iter().any(|t| t.contains("carol approved alice")),
        "{texts:?}"
    );

    // The audit has every decision and every refused attempt.
    let (status, rows) = call(&base, "GET", "/v1/audit?limit=1000", &sam, None);
    assert_eq!(status, 200);
    let rows = rows["entries"].as_array().unwrap().clone();
    let has = |user: &str, decision: &str, text: &str| {
        rows.iter().any(|r| {
            r["user"] == user
                && r["decision"] == decision
                && r["reason"].as_str().unwrap_or("").contains(text)
        })
    };
    assert!(has("carol", "access-approved", &id));
    assert!(has("dave", "access-denied", sid));
    assert!(has("alice", "access-requested", &id));
    assert!(has("alice", "refused", "own-request"));
    assert!(has("sam", "refused", "own-request"));
    assert!(has("bob", "refused", "not an approver of payments"));
    assert!(has("dave", "refused", "not an approver of payments"));
    assert!(has("carol", "refused", "already-decided"));
}

/// Two replicas on one PostgreSQL: an approval on one is a membership on the other at once,
/// and two approvers approving at once through both make one decision and one membership.
#[test]
fn two_replicas_approving_at_once_make_one_membership() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start();
    let (_moto, recorder, idp) = aws(dir.path());
    let cfg = config(dir.path(), &pg.url, &recorder.url, "");
    let a = replica(&cfg);
    let b = replica(&cfg);
    let alice = token(&idp, "alice", &["dev"]);
    let carol = token(&idp, "carol", &["payments-leads"]);
    let erin = token(&idp, "erin", &["payments-leads"]);
    let (status, made) = call(
        &a,
        "POST",
        "/v1/access-requests",
        &alice,
        Some(json!({"group": "payments", "reason": "on call", "duration_seconds": 3600})),
    );
    assert_eq!(status, 202, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    // Replica b lists what replica a recorded.
    let (_, listed) = call(
        &b,
        "GET",
        "/v1/access-requests?status=pending",
        &carol,
        None,
    );
    assert_eq!(listed["requests"][0]["id"], id.as_str(), "{listed}");

    let results: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = [(&a, &carol), (&b, &erin)]
            .into_iter()
            .map(|(base, t)| {
                let path = format!("/v1/access-requests/{id}/approve");
                s.spawn(move || call(base, "POST", &path, t, None))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut codes: Vec<u16> = results.iter().map(|r| r.0).collect();
    codes.sort();
    assert_eq!(codes, [200, 409], "{results:?}");

    // Effective at once on both replicas.
    for base in [&a, &b] {
        let (status, v) = call(
            base,
            "POST",
            "/v1/credentials",
            &alice,
            Some(json!({"role": "payments-api"})),
        );
        assert_eq!(status, 200, "{base}: {v}");
    }
    let mut raw = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    let mut count = |sql: &str| -> i64 { raw.query_one(sql, &[]).unwrap().get(0) };
    assert_eq!(count("SELECT count(*) FROM granted_memberships"), 1);
    assert_eq!(
        count("SELECT count(*) FROM broker_audit WHERE decision = 'access-approved'"),
        1,
        "one decision audited"
    );
    assert_eq!(
        count("SELECT count(*) FROM broker_audit WHERE decision = 'refused' AND reason LIKE 'already-decided%'"),
        1,
        "the loser's attempt audited as refused"
    );
}
