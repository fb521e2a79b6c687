//! One role per person, for real: `shrink per-user --apply` on the moto server creates a role for
//! each person who used a shared role, whose trust admits only that person's sessions (checked
//! with the built-in evaluator) and whose policy holds what they used; it refuses to overwrite,
//! prints the broker's grants, and `--undo` deletes only what it created, only unchanged.

use std::process::{Command, Output};

use testkit::{Moto, BOTO3_KW};

const ACCOUNT: &str = "123456789012";
const BROKER: &str = "arn:aws:iam::123456789012:role/broker";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A CloudTrail record of a `deployer` session whose source identity is `person`.
fn call(person: &str, source: &str, name: &str, minute: usize) -> serde_json::Value {
    serde_json::json!({
        "eventVersion": "1.08", "eventTime": format!("2027-05-15T10:{minute:02}:00Z"), "eventSource": source, "eventName": name,
        "awsRegion": "us-east-1", "sourceIPAddress": "10.0.0.5", "userAgent": "aws-cli/2", "eventID": format!("e-{minute}"), "eventType": "AwsApiCall",
        "recipientAccountId": ACCOUNT,
        "userIdentity": {"type": "AssumedRole", "principalId": format!("AROA:{person}"), "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/deployer/{person}"),
            "accountId": ACCOUNT, "accessKeyId": "ASIAEXAMPLE",
            "sessionContext": {"sourceIdentity": person, "sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{ACCOUNT}:role/deployer"), "accountId": ACCOUNT, "userName": "deployer"}}}
    })
}

const SEED: &str = r#"
import boto3, json, os
iam = boto3.client("iam", **KW)
doc = lambda *s: json.dumps({"Version": "2012-10-17", "Statement": list(s)})
iam.create_role(RoleName="broker", AssumeRolePolicyDocument=doc({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}))
iam.create_role(RoleName="deployer", AssumeRolePolicyDocument=doc(
    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/broker"}, "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"]},
    {"Effect": "Allow", "Principal": {"Service": "codebuild.amazonaws.com"}, "Action": "sts:AssumeRole"}))
iam.put_role_policy(RoleName="deployer", PolicyName="deploy", PolicyDocument=doc(
    {"Sid": "Work", "Effect": "Allow", "Action": ["ec2:RunInstances", "ec2:DescribeInstances", "ec2:DescribeVolumes", "s3:ListAllMyBuckets", "s3:GetObject"], "Resource": "*"},
    {"Sid": "NeverProd", "Effect": "Deny", "Action": "ec2:RunInstances", "Resource": "arn:aws:ec2:*:*:subnet/subnet-prod*"}))
"#;

/// A role read back through the AWS SDK: ARN, trust, tags, inline policies (name → text).
type Read = (
    String,
    serde_json::Value,
    std::collections::BTreeMap<String, String>,
    std::collections::BTreeMap<String, String>,
);

fn session(moto: &Moto) -> aws::Session {
    // Each nextest test is a process of its own: the SDK's credential chain reads these.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    aws::Session::connect(&aws::LiveOptions {
        endpoint_url: Some(moto.url.clone()),
        region: Some("us-east-1".into()),
        regions: Vec::new(),
    })
    .unwrap()
}

fn read(s: &aws::Session, name: &str) -> Option<Read> {
    let found = s.get_role(name).unwrap()?;
    let (inline, attached) = s.role_state(name).unwrap();
    assert!(attached.is_empty(), "{name}: {attached:?}");
    Some((
        found.arn,
        serde_json::from_str(&found.trust).unwrap(),
        found.tags,
        inline.into_iter().map(|(n, p)| (n, p.text)).collect(),
    ))
}

/// May a session of the broker's role with source identity `who` assume `role` under `trust`?
fn may_assume(trust: &serde_json::Value, role: &str, who: &str) -> iam::eval::Decision {
    let policy = iam::Policy::from_value(trust).unwrap();
    let set = iam::eval::PolicySet {
        resource: Some(iam::eval::NamedPolicy {
            name: "trust",
            policy: &policy,
        }),
        ..Default::default()
    };
    let mut ctx = iam::RequestContext::new("sts:AssumeRole", role).unwrap();
    ctx.add("aws:PrincipalArn", BROKER)
        .add("aws:PrincipalAccount", ACCOUNT)
        .add("sts:SourceIdentity", who);
    set.evaluate(&ctx).decision
}

#[test]
fn per_user_roles_are_bound_created_and_undone_on_moto() {
    let moto = Moto::start();
    moto.python(&SEED.replace("**KW", &format!("**{BOTO3_KW}")), &[]);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    std::fs::write(
        p("trail.json"),
        serde_json::json!({"Records": [
            call("alice", "ec2.amazonaws.com", "RunInstances", 1),
            call("alice", "ec2.amazonaws.com", "DescribeInstances", 2),
            call("bob", "s3.amazonaws.com", "ListBuckets", 3),
        ]})
        .to_string(),
    )
    .unwrap();
    let (trail, state) = (p("trail.json"), p("state.sqlite"));
    let run = |extra: &[&str]| -> Output {
        moto.command(env!("CARGO_BIN_EXE_credwarden"))
            .args([
                "shrink",
                "per-user",
                "deployer",
                "--live",
                "--endpoint-url",
                &moto.url,
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let apply = || {
        run(&[
            "--cloudtrail",
            &trail,
            "--apply",
            "--state",
            &state,
            "--output-dir",
            &p("roles"),
        ])
    };
    let out = apply();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let e = text(&out.stderr);
    for who in ["alice", "bob"] {
        assert!(
            s.contains(&format!("created arn:aws:iam::{ACCOUNT}:role/deployer-{who} (undo: credwarden shrink per-user arn:aws:iam::{ACCOUNT}:role/deployer --undo")),
            "{s}"
        );
        assert!(
            s.contains(&format!(
                "[[roles]]\narn = \"arn:aws:iam::{ACCOUNT}:role/deployer-{who}\"\ngroups = [\"per-user:deployer-{who}\"]\n# directory: add \"per-user:deployer-{who}\" to the groups of \"{who}\""
            )),
            "the broker's grant of {who}'s role: {s}"
        );
    }
    assert!(
        e.contains("trust of deployer: not carried over: statement 2: Service principal codebuild.amazonaws.com"),
        "{e}"
    );

    let aws = session(&moto);
    let (alice_arn, alice_trust, alice_tags, alice_inline) = read(&aws, "deployer-alice").unwrap();
    let (bob_arn, bob_trust, bob_tags, bob_inline) = read(&aws, "deployer-bob").unwrap();
    // Bound to the person, through the shared role's AWS principal only.
    assert_eq!(
        alice_trust["Statement"],
        serde_json::json!([{"Effect": "Allow", "Principal": {"AWS": BROKER},
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
            "Condition": {"StringEquals": {"sts:SourceIdentity": "alice"}}}])
    );
    assert_eq!(
        alice_tags.get("credwarden:per-user-of").map(String::as_str),
        Some("arn:aws:iam::123456789012:role/deployer")
    );
    assert_eq!(
        bob_tags.get("credwarden:person").map(String::as_str),
        Some("bob")
    );
    // What each used, and the guard as written.
    let alice_policy = &alice_inline["credwarden-per-user"];
    assert!(
        alice_policy.contains("ec2:RunInstances")
            && alice_policy.contains("ec2:DescribeInstances")
            && alice_policy.contains("NeverProd"),
        "{alice_policy}"
    );
    assert!(
        !alice_policy.contains("s3:ListAllMyBuckets") && !alice_policy.contains("DescribeVolumes"),
        "{alice_policy}"
    );
    let bob_policy = &bob_inline["credwarden-per-user"];
    assert!(
        bob_policy.contains("s3:ListAllMyBuckets")
            && !bob_policy.contains("DescribeInstances")
            && !bob_policy.contains("DescribeVolumes"),
        "{bob_policy}"
    );
    // A data event the trail may not record cannot show it unused: both keep it.
    assert!(
        alice_policy.contains("s3:GetObject") && bob_policy.contains("s3:GetObject"),
        "{bob_policy}"
    );
    assert_eq!(alice_inline.len(), 1);
    // The evaluator: each person's session may assume their own role, not the other's.
    use iam::eval::Decision::{Allow, ImplicitDeny};
    assert_eq!(may_assume(&alice_trust, &alice_arn, "alice"), Allow);
    assert_eq!(may_assume(&alice_trust, &alice_arn, "bob"), ImplicitDeny);
    assert_eq!(may_assume(&bob_trust, &bob_arn, "bob"), Allow);
    assert_eq!(may_assume(&bob_trust, &bob_arn, "alice"), ImplicitDeny);

    // Again: nothing changes.
    let out = apply();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("{alice_arn}: already there as proposed\n")),
        "{}",
        text(&out.stdout)
    );
    // Someone widens alice's role: apply refuses to overwrite it, undo refuses to delete it.
    let widen = format!(
        "import boto3, json, os\nboto3.client('iam', **{BOTO3_KW}).put_role_policy(RoleName='deployer-alice', PolicyName='extra', PolicyDocument=json.dumps({{'Version': '2012-10-17', 'Statement': [{{'Effect': 'Allow', 'Action': 's3:*', 'Resource': '*'}}]}}))"
    );
    moto.python(&widen, &[]);
    let out = apply();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(
            "deployer-alice: a role of that name exists with another permissions: not overwritten"
        ),
        "{}",
        text(&out.stdout)
    );
    assert!(read(&aws, "deployer-alice")
        .unwrap()
        .3
        .contains_key("extra"));
    let undo = || run(&["--undo", "--state", &state]);
    let out = undo();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains(&format!("deleted {bob_arn}"))
            && s.contains(&format!(
                "{alice_arn}: changed since it was created (inline policy extra): left in place"
            )),
        "{s}"
    );
    assert!(read(&aws, "deployer-bob").is_none());
    assert!(read(&aws, "deployer-alice").is_some());
    // Put back as created: now undo removes it, and only the created roles went.
    moto.python(
        &format!("import boto3, os\nboto3.client('iam', **{BOTO3_KW}).delete_role_policy(RoleName='deployer-alice', PolicyName='extra')"),
        &[],
    );
    let out = undo();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("deleted {alice_arn}")));
    assert!(read(&aws, "deployer-alice").is_none());
    assert!(read(&aws, "deployer").is_some(), "the shared role stays");
    assert!(read(&aws, "broker").is_some());
    let out = undo();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("records no role created from deployer"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn per_user_from_files_needs_a_principal_that_can_carry_a_person() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let data = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/authorization-details.json");
    // The fixture's deployer (account 111122223333) trusts CodeBuild only.
    let mut alice = call("alice", "ec2.amazonaws.com", "RunInstances", 1);
    let mut bob = call("bob", "ec2.amazonaws.com", "DescribeInstances", 2);
    // alice is known by session name only, bob by source identity.
    alice["userIdentity"]["sessionContext"]
        .as_object_mut()
        .unwrap()
        .remove("sourceIdentity");
    bob["userIdentity"]["sessionContext"]["sourceIdentity"] = "bob@example.com".into();
    for r in [&mut alice, &mut bob] {
        r["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"] =
            "arn:aws:iam::111122223333:role/deployer".into();
    }
    std::fs::write(
        p("trail.json"),
        serde_json::json!({"Records": [alice, bob]}).to_string(),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_credwarden"))
            .args([
                "shrink",
                "per-user",
                "deployer",
                "--inventory",
                data.to_str().unwrap(),
                "--cloudtrail",
                &p("trail.json"),
                "--output-dir",
                &p("roles"),
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("Service principal codebuild.amazonaws.com (its sessions are no person's)")
            && text(&out.stderr).contains("--broker-principal"),
        "{}",
        text(&out.stderr)
    );
    let broker = "arn:aws:iam::111122223333:role/credwarden-broker";
    let out = run(&["--broker-principal", broker]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("alice: 2 action(s) used → proposed role deployer-alice, assumable only by sessions with source identity alice")
            && s.contains("bob@example.com: 1 action(s) used → proposed role deployer-bob@example.com"),
        "{s}"
    );
    assert!(
        text(&out.stderr).contains("alice: seen by session name only"),
        "{}",
        text(&out.stderr)
    );
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("roles/deployer-bob@example.com.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        file["AssumeRolePolicyDocument"]["Statement"],
        serde_json::json!([{"Effect": "Allow", "Principal": {"AWS": broker},
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
            "Condition": {"StringEquals": {"sts:SourceIdentity": "bob@example.com"}}}])
    );
    assert!(
        !file["PolicyDocument"].to_string().contains("RunInstances"),
        "{file}"
    );
    assert!(
        s.contains("# directory: add \"per-user:deployer-bob@example.com\" to the groups of \"bob@example.com\""),
        "{s}"
    );
}
