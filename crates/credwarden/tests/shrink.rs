//! Right-sizing end to end on the moto server: roles with broad policies, CloudTrail that
//! shows what they used, a plan, apply through the IAM API, the new policies read back, a
//! rollback that finds the originals; the unused role ends at zero.

use std::process::Output;

use testkit::{Moto, BOTO3_KW};

fn credwarden(moto: &Moto, args: &[&str]) -> Output {
    moto.command(env!("CARGO_BIN_EXE_credwarden"))
        .args(args)
        .output()
        .unwrap()
}

/// The inline documents of `role` as IAM returns them (URL-decoded), through the AWS SDK.
fn exact_inline_texts(moto: &Moto, role: &str) -> std::collections::BTreeMap<String, String> {
    // Each nextest test is a process of its own: the SDK's credential chain reads these.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let session = aws::Session::connect(&aws::LiveOptions {
        endpoint_url: Some(moto.url.clone()),
        region: Some("us-east-1".into()),
        regions: Vec::new(),
    })
    .unwrap();
    let (inline, _) = session.role_state(role).unwrap();
    inline.into_iter().map(|(n, p)| (n, p.text)).collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const SEED: &str = r#"
import boto3, json, os
iam = boto3.client("iam", **KW)
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
doc = lambda *stmts: json.dumps({"Version": "2012-10-17", "Statement": list(stmts)})
shared = iam.create_policy(PolicyName="shared-read", PolicyDocument=doc({"Effect": "Allow", "Action": ["s3:ListAllMyBuckets", "s3:GetBucketLocation", "s3:GetObject"], "Resource": "*"}))["Policy"]["Arn"]
iam.create_role(RoleName="app", AssumeRolePolicyDocument=trust)
iam.put_role_policy(RoleName="app", PolicyName="app-inline", PolicyDocument=doc(
    {"Sid": "Work", "Effect": "Allow", "Action": ["ec2:DescribeInstances", "ec2:TerminateInstances", "ec2:DescribeVolumes", "sqs:SendMessage", "iam:PassRole"], "Resource": "*"},
    {"Sid": "NeverProd", "Effect": "Deny", "Action": "ec2:TerminateInstances", "Resource": "arn:aws:ec2:*:*:instance/i-prod*"}))
iam.attach_role_policy(RoleName="app", PolicyArn=shared)
iam.create_role(RoleName="idle", AssumeRolePolicyDocument=trust)
iam.put_role_policy(RoleName="idle", PolicyName="idle-inline", PolicyDocument=doc({"Effect": "Allow", "Action": ["ec2:DescribeInstances", "s3:ListAllMyBuckets", "s3:GetObject"], "Resource": "*"}))
iam.create_role(RoleName="keep-me", AssumeRolePolicyDocument=trust, Tags=[{"Key": "credwarden:shrink", "Value": "never"}])
iam.put_role_policy(RoleName="keep-me", PolicyName="k", PolicyDocument=doc({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}))
"#;

const STATE: &str = r#"
import boto3, json, os, sys
iam = boto3.client("iam", **KW)
role = sys.argv[1]
inline = {n: iam.get_role_policy(RoleName=role, PolicyName=n)["PolicyDocument"] for n in iam.list_role_policies(RoleName=role)["PolicyNames"]}
attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]]
print(json.dumps({"inline": inline, "attached": attached}, sort_keys=True))
"#;

fn record(
    role: &str,
    source: &str,
    name: &str,
    error: Option<&str>,
    id: usize,
) -> serde_json::Value {
    let mut r = serde_json::json!({
        "eventVersion": "1.08", "eventTime": format!("2027-05-15T10:{:02}:00Z", id % 60), "eventSource": source, "eventName": name,
        "awsRegion": "us-east-1", "sourceIPAddress": "10.0.0.5", "userAgent": "aws-cli/2", "eventID": format!("e-{id}"), "eventType": "AwsApiCall",
        "recipientAccountId": "123456789012",
        "userIdentity": {"type": "AssumedRole", "principalId": format!("AROA:{role}"), "arn": format!("arn:aws:sts::123456789012:assumed-role/{role}/i-1"),
            "accountId": "123456789012", "accessKeyId": "ASIAEXAMPLE",
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::123456789012:role/{role}"), "accountId": "123456789012", "userName": role}}}
    });
    if let Some(e) = error {
        r["errorCode"] = e.into();
    }
    r
}

#[test]
fn plan_apply_rollback_on_moto() {
    let moto = Moto::start();
    let kw = BOTO3_KW;
    moto.python(&SEED.replace("KW)", &format!("{kw})")), &[]);
    let state = |role: &str| -> serde_json::Value {
        serde_json::from_str(
            moto.python(&STATE.replace("KW)", &format!("{kw})")), &[role])
                .trim(),
        )
        .unwrap()
    };
    let original_app = state("app");
    let original_idle = state("idle");
    let original_app_text = exact_inline_texts(&moto, "app");
    let original_idle_text = exact_inline_texts(&moto, "idle");
    // The seeded documents are not in credwarden's normalised form, so a rollback that
    // wrote the normalised form back would differ in bytes.
    let normalised = iam::Policy::parse(&original_app_text["app-inline"])
        .unwrap()
        .to_compact_json();
    assert_ne!(original_app_text["app-inline"], normalised);

    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let records = vec![
        record("app", "ec2.amazonaws.com", "DescribeInstances", None, 1),
        record("app", "s3.amazonaws.com", "ListBuckets", None, 2),
        record(
            "app",
            "ec2.amazonaws.com",
            "TerminateInstances",
            Some("Client.UnauthorizedOperation"),
            3,
        ),
        record("ops", "s3.amazonaws.com", "GetBucketLocation", None, 4),
        record("ops", "ec2.amazonaws.com", "DescribeVolumes", None, 5),
    ];
    // The trail spans the whole window (the plan refuses a CloudTrail that does not).
    let mut records = records;
    for (i, t) in ["2027-03-03T12:00:00Z", "2027-05-31T12:00:00Z"]
        .iter()
        .enumerate()
    {
        let mut r = record(
            "ops",
            "sts.amazonaws.com",
            "GetCallerIdentity",
            None,
            10 + i,
        );
        r["eventTime"] = (*t).into();
        records.push(r);
    }
    std::fs::write(
        p("trail.json"),
        serde_json::json!({ "Records": records }).to_string(),
    )
    .unwrap();
    std::fs::write(
        p("idle-advisor.json"),
        r#"{"JobStatus": "COMPLETED", "IsTruncated": false, "ServicesLastAccessed": [
            {"ServiceName": "Amazon EC2", "ServiceNamespace": "ec2", "TotalAuthenticatedEntities": 0},
            {"ServiceName": "Amazon S3", "ServiceNamespace": "s3", "TotalAuthenticatedEntities": 0}]}"#,
    )
    .unwrap();

    let out = credwarden(
        &moto,
        &[
            "shrink",
            "plan",
            "--live",
            "--endpoint-url",
            &moto.url,
            "--cloudtrail",
            &p("trail.json"),
            "--now",
            "2027-06-01T00:00:00Z",
            "--access-advisor",
            &format!("idle={}", p("idle-advisor.json")),
            "--output",
            &p("plan.json"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("== app (shrink)")
            && shown.contains("== idle (to zero)")
            && shown.contains("== keep-me (skipped): opted out"),
        "{shown}"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with('-') && l.contains("ec2:TerminateInstances")),
        "{shown}"
    );
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("plan.json")).unwrap()).unwrap();
    let app = plan["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "app")
        .unwrap();
    let removed: Vec<&str> = app["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        removed,
        [
            "ec2:DescribeVolumes",
            "ec2:TerminateInstances",
            "iam:PassRole",
            "s3:GetBucketLocation"
        ],
        "denied calls are not use; PassRole follows its consumers"
    );
    assert!(
        app["kept_unknown"]["sqs:SendMessage"].is_string()
            && app["kept_unknown"]["s3:GetObject"].is_string(),
        "{app}"
    );

    // Announce it: one notice per affected role; the announced plan waits for its date.
    let out = credwarden(
        &moto,
        &[
            "shrink",
            "schedule",
            "--plan",
            &p("plan.json"),
            "--days",
            "7",
            "--now",
            "2027-06-01T00:00:00Z",
            "--output",
            &p("announced.json"),
            "--state",
            &p("state.sqlite"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let notices: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(notices.len(), 2, "app and idle: {notices:?}");
    assert!(notices.iter().all(|n| n["detector"] == "shrink-scheduled"
        && n["summary"].as_str().unwrap().contains("2027-06-08")));
    let early = credwarden(
        &moto,
        &[
            "shrink",
            "apply",
            "--plan",
            &p("announced.json"),
            "--state",
            &p("state.sqlite"),
            "--endpoint-url",
            &moto.url,
            "--now",
            "2027-06-02T00:00:00Z",
        ],
    );
    assert_eq!(early.status.code(), Some(1));
    assert!(
        text(&early.stderr).contains("may not be applied before"),
        "{}",
        text(&early.stderr)
    );

    // A second announcement of the same plan, withdrawn: listed as cancelled, and apply
    // refuses its plan even after the date.
    let out = credwarden(
        &moto,
        &[
            "shrink",
            "schedule",
            "--plan",
            &p("plan.json"),
            "--now",
            "2027-06-01T01:00:00Z",
            "--output",
            &p("withdrawn.json"),
            "--state",
            &p("state.sqlite"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let withdrawn: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("withdrawn.json")).unwrap()).unwrap();
    let withdrawn_id = withdrawn["schedule_id"].as_str().unwrap().to_owned();
    // An announced plan is not announced again.
    let again = credwarden(
        &moto,
        &[
            "shrink",
            "schedule",
            "--plan",
            &p("withdrawn.json"),
            "--output",
            &p("x.json"),
            "--state",
            &p("state.sqlite"),
        ],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("is already announced"),
        "{}",
        text(&again.stderr)
    );
    let cancel = |id: &str| {
        credwarden(
            &moto,
            &[
                "shrink",
                "schedule",
                "cancel",
                id,
                "--state",
                &p("state.sqlite"),
                "--reason",
                "owners asked for a quarter",
            ],
        )
    };
    let out = cancel(&withdrawn_id[..8]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("cancelled"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        cancel(&withdrawn_id[..8]).status.code(),
        Some(1),
        "only once"
    );
    let out = credwarden(
        &moto,
        &[
            "shrink",
            "apply",
            "--plan",
            &p("withdrawn.json"),
            "--state",
            &p("state.sqlite"),
            "--endpoint-url",
            &moto.url,
            "--now",
            "2027-06-09T00:00:00Z",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("schedule {withdrawn_id} was cancelled"))
            && text(&out.stderr).contains("owners asked for a quarter"),
        "{}",
        text(&out.stderr)
    );
    // Another state file does not know the schedule: refused, not applied unchecked.
    let out = credwarden(
        &moto,
        &[
            "shrink",
            "apply",
            "--plan",
            &p("announced.json"),
            "--state",
            &p("other.sqlite"),
            "--endpoint-url",
            &moto.url,
            "--now",
            "2027-06-09T00:00:00Z",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("which this state file does not record"),
        "{}",
        text(&out.stderr)
    );
    let list = |now: &str| {
        let out = credwarden(
            &moto,
            &[
                "shrink",
                "schedule",
                "list",
                "--state",
                &p("state.sqlite"),
                "--now",
                now,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let listed = list("2027-06-02T00:00:00Z");
    assert!(
        listed
            .lines()
            .any(|l| l.contains("\tpending\t") && l.contains("announced.json"))
            && listed.lines().any(|l| l.starts_with(&withdrawn_id[..12])
                && l.contains("cancelled 20")
                && l.contains("owners asked")),
        "{listed}"
    );

    // Eight days after the window: apply wants to see the use made since.
    let apply_at = |since: Option<&str>| {
        let mut args = vec![
            "shrink".to_owned(),
            "apply".into(),
            "--plan".into(),
            p("announced.json"),
            "--state".into(),
            p("state.sqlite"),
            "--endpoint-url".into(),
            moto.url.clone(),
            "--now".into(),
            "2027-06-09T00:00:00Z".into(),
        ];
        if let Some(f) = since {
            args.extend(["--cloudtrail".into(), p(f)]);
        }
        credwarden(&moto, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let unchecked = apply_at(None);
    assert_eq!(unchecked.status.code(), Some(1));
    assert!(
        text(&unchecked.stderr).contains("nothing shows what was used since the plan's window"),
        "{}",
        text(&unchecked.stderr)
    );
    // CloudTrail since the plan: from the window's last day to the day before apply.
    let since = |extra: Vec<serde_json::Value>, first: &str| {
        let mut rs = extra;
        for (i, t) in [first, "2027-06-08T20:00:00Z"].iter().enumerate() {
            let mut r = record(
                "ops",
                "sts.amazonaws.com",
                "GetCallerIdentity",
                None,
                20 + i,
            );
            r["eventTime"] = (*t).into();
            rs.push(r);
        }
        serde_json::json!({ "Records": rs }).to_string()
    };
    std::fs::write(p("gap.json"), since(Vec::new(), "2027-06-03T00:00:00Z")).unwrap();
    let gap = apply_at(Some("gap.json"));
    assert_eq!(gap.status.code(), Some(1));
    assert!(
        text(&gap.stderr).contains("starts at 2027-06-03T00:00:00Z, after the plan's window end"),
        "{}",
        text(&gap.stderr)
    );
    // The app started terminating instances after the plan, and the idle role was assumed:
    // both are left as they are.
    let mut terminate = record("app", "ec2.amazonaws.com", "TerminateInstances", None, 30);
    terminate["eventTime"] = "2027-06-05T08:00:00Z".into();
    let mut assumed = record("idle", "ec2.amazonaws.com", "DescribeRegions", None, 31);
    assumed["eventTime"] = "2027-06-06T08:00:00Z".into();
    std::fs::write(
        p("used-since.json"),
        since(vec![terminate, assumed], "2027-05-31T20:00:00Z"),
    )
    .unwrap();
    let kept = apply_at(Some("used-since.json"));
    assert_eq!(kept.status.code(), Some(0), "{}", text(&kept.stderr));
    let shown = text(&kept.stdout);
    assert!(
        shown
            .contains("app: skipped: it used ec2:TerminateInstances at 2027-06-05T08:00:00Z since")
            && shown.contains(
                "idle: skipped: a session of it was issued or used at 2027-06-06T08:00:00Z"
            ),
        "{shown}"
    );
    assert_eq!(state("app"), original_app, "nothing written");
    assert!(
        list("2027-06-09T00:00:00Z")
            .lines()
            .any(|l| l.contains("\tdue\t") && l.contains("announced.json")),
        "a run that changed nothing leaves the schedule due"
    );
    std::fs::write(p("since.json"), since(Vec::new(), "2027-05-31T20:00:00Z")).unwrap();

    // Apply: through the IAM API, previous policies recorded first.
    let out = apply_at(Some("since.json"));
    assert!(
        list("2027-06-09T00:00:00Z")
            .lines()
            .any(|l| l.contains("\tapplied 20") && l.contains("announced.json")),
        "the schedule shows as applied"
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let applied = text(&out.stdout);
    assert!(
        applied.contains("app: applied (4 permission(s) removed)")
            && applied.contains("idle: applied"),
        "{applied}"
    );
    let app_now = state("app");
    assert_eq!(
        app_now["attached"],
        serde_json::json!([]),
        "the shared managed policy is detached, never edited"
    );
    let work = app_now["inline"]["app-inline"]["Statement"]
        .as_array()
        .unwrap();
    let actions = work.iter().find(|s| s["Sid"] == "Work").unwrap()["Action"].to_string();
    assert!(
        actions.contains("ec2:DescribeInstances")
            && actions.contains("sqs:SendMessage")
            && !actions.contains("Terminate")
            && !actions.contains("PassRole"),
        "{actions}"
    );
    assert!(
        work.iter()
            .any(|s| s["Sid"] == "NeverProd" && s["Effect"] == "Deny"),
        "Deny statements stay"
    );
    let copy = app_now["inline"]["credwarden-shared-read"]["Statement"][0]["Action"].to_string();
    assert!(
        copy.contains("s3:ListAllMyBuckets")
            && copy.contains("s3:GetObject")
            && !copy.contains("GetBucketLocation"),
        "{copy}"
    );
    assert_eq!(
        state("idle"),
        serde_json::json!({"attached": [], "inline": {}}),
        "the unused role converges to zero"
    );
    // A second apply finds the roles changed since the plan and leaves them alone.
    let out = credwarden(
        &moto,
        &[
            "shrink",
            "apply",
            "--plan",
            &p("plan.json"),
            "--state",
            &p("state.sqlite"),
            "--endpoint-url",
            &moto.url,
        ],
    );
    assert!(
        text(&out.stdout).contains("app: skipped: its policies changed"),
        "{}",
        text(&out.stdout)
    );

    // Roll back: the originals, exactly.
    for role in ["app", "idle"] {
        let out = credwarden(
            &moto,
            &[
                "shrink",
                "rollback",
                role,
                "--state",
                &p("state.sqlite"),
                "--endpoint-url",
                &moto.url,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let norm = |v: serde_json::Value| -> serde_json::Value {
        // Compare documents by meaning: credwarden's normalised form of each.
        let inline: serde_json::Map<String, serde_json::Value> = v["inline"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, d)| {
                (
                    k.clone(),
                    serde_json::from_str(&iam::Policy::from_value(d).unwrap().to_compact_json())
                        .unwrap(),
                )
            })
            .collect();
        serde_json::json!({"inline": inline, "attached": v["attached"]})
    };
    assert_eq!(norm(state("app")), norm(original_app.clone()));
    assert_eq!(norm(state("idle")), norm(original_idle));
    // Lossless: the exact text IAM held before, byte for byte.
    assert_eq!(exact_inline_texts(&moto, "app"), original_app_text);
    assert_eq!(exact_inline_texts(&moto, "idle"), original_idle_text);
    // The notice's remedy works: once the owners tag the role, the announced plan leaves it alone.
    moto.python(
        &format!("import boto3, os\nboto3.client('iam', **{kw}).tag_role(RoleName='app', Tags=[{{'Key': 'credwarden:shrink', 'Value': 'never'}}])"),
        &[],
    );
    let out = credwarden(
        &moto,
        &[
            "shrink",
            "apply",
            "--plan",
            &p("announced.json"),
            "--state",
            &p("state.sqlite"),
            "--endpoint-url",
            &moto.url,
            "--now",
            "2027-06-09T00:00:00Z",
            "--cloudtrail",
            &p("since.json"),
        ],
    );
    assert!(
        text(&out.stdout).contains("app: skipped: opted out"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(norm(state("app")), norm(original_app));
    let out = credwarden(
        &moto,
        &["shrink", "history", "app", "--state", &p("state.sqlite")],
    );
    assert!(
        text(&out.stdout).lines().count() >= 2 && text(&out.stdout).contains("before shrink"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn static_keys_audit_and_reversible_deactivation_on_moto() {
    let moto = Moto::start();
    let kw = BOTO3_KW;
    let key = moto.python(
        &format!(
            r#"
import boto3, os
iam = boto3.client("iam", **{kw})
iam.create_user(UserName="ci")
print(iam.create_access_key(UserName="ci")["AccessKey"]["AccessKeyId"])
"#
        ),
        &[],
    );
    let key = key.trim();
    let status = || {
        moto.python(&format!("import boto3, os\nprint(boto3.client('iam', **{kw}).list_access_keys(UserName='ci')['AccessKeyMetadata'][0]['Status'])"), &[])
            .trim()
            .to_owned()
    };
    // Half a year on, the key was never used.
    let out = credwarden(
        &moto,
        &[
            "keys",
            "audit",
            "--live",
            "--endpoint-url",
            &moto.url,
            "--now",
            "2027-06-01T00:00:00Z",
            "--apply",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("ci key 1: ") && s.contains("never used") && s.contains("[deactivate]"),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "deactivated ci key {key} (undo: credwarden keys reactivate ci {key})"
        )),
        "{s}"
    );
    assert_eq!(status(), "Inactive");
    let out = credwarden(
        &moto,
        &["keys", "reactivate", "ci", key, "--endpoint-url", &moto.url],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(status(), "Active");
    // The documented AWS example has no Content: a clear error, not an empty audit.
    let example = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpora/iam/get-credential-report.awscli-example.json");
    let out = credwarden(
        &moto,
        &[
            "keys",
            "audit",
            "--credential-report",
            example.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no Content"),
        "{}",
        text(&out.stderr)
    );
}

/// `idle` in the credentials' own account and in a member account, each with a policy
/// nobody uses; run in the member through a role assumed in it (moto keeps accounts apart by
/// the credentials' account).
const MEMBER_IDLE: &str = r#"
import boto3, json, os, sys
kw = dict(KW)
if sys.argv[1] != "123456789012":
    c = boto3.client("sts", **kw).assume_role(RoleArn="arn:aws:iam::%s:role/credwarden-read" % sys.argv[1], RoleSessionName="seed")["Credentials"]
    kw.update(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
iam = boto3.client("iam", **kw)
if sys.argv[2] == "seed":
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName="idle", AssumeRolePolicyDocument=trust)
    iam.put_role_policy(RoleName="idle", PolicyName="idle-inline", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["ec2:DescribeInstances"], "Resource": "*"}]}))
print(json.dumps(iam.list_role_policies(RoleName="idle")["PolicyNames"]))
"#;

#[test]
fn shrink_in_member_accounts_keys_history_by_role_arn() {
    let moto = Moto::start();
    let script = MEMBER_IDLE.replace("dict(KW)", &format!("dict({BOTO3_KW})"));
    let member = "222233334444";
    for account in ["123456789012", member] {
        moto.python(&script, &[account, "seed"]);
    }
    let policies = |account: &str| moto.python(&script, &[account, "read"]).trim().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    // Both accounts are in the trail for the whole window; `ops` uses DescribeInstances in
    // each, `idle` only asks who it is (no permission needed).
    let mut records = Vec::new();
    for account in ["123456789012", member] {
        for (i, t) in [
            "2027-03-03T12:00:00Z",
            "2027-04-01T12:00:00Z",
            "2027-05-31T12:00:00Z",
        ]
        .iter()
        .enumerate()
        {
            let (source, name) = if i == 1 {
                ("ec2.amazonaws.com", "DescribeInstances")
            } else {
                ("sts.amazonaws.com", "GetCallerIdentity")
            };
            let who = if i == 2 { "idle" } else { "ops" };
            let mut r = record(who, source, name, None, i);
            r["eventTime"] = (*t).into();
            let text = r.to_string().replace("123456789012", account);
            records.push(serde_json::from_str::<serde_json::Value>(&text).unwrap());
        }
    }
    std::fs::write(
        p("trail.json"),
        serde_json::json!({ "Records": records }).to_string(),
    )
    .unwrap();
    let members = [
        "--endpoint-url",
        &moto.url,
        "--assume-role-name",
        "credwarden-read",
        "--accounts",
        "123456789012,222233334444",
    ];
    let out = credwarden(
        &moto,
        &[
            &["shrink", "plan", "--live", "--regions", "us-east-1"][..],
            &[
                "--cloudtrail",
                &p("trail.json"),
                "--output",
                &p("plan.json"),
            ],
            &members,
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan = std::fs::read_to_string(p("plan.json")).unwrap();
    for arn in [
        "arn:aws:iam::123456789012:role/idle",
        "arn:aws:iam::222233334444:role/idle",
    ] {
        assert!(plan.contains(arn), "{arn} missing from the plan");
    }

    // Applied with the credentials' own account only: the member's role is not written in
    // the wrong account, it is skipped.
    let apply = [
        "shrink",
        "apply",
        "--plan",
        &p("plan.json"),
        "--state",
        &p("s.sqlite"),
    ];
    let out = credwarden(
        &moto,
        &[&apply[..], &["--endpoint-url", &moto.url]].concat(),
    );
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        s.contains("idle: applied") && s.contains("idle: skipped: its account was not reached"),
        "{s}"
    );
    assert_eq!(policies(member), r#"["idle-inline"]"#);

    // Through the member's role: applied there, history keyed by ARN.
    let out = credwarden(&moto, &[&apply[..], &members].concat());
    let s = text(&out.stdout);
    assert!(
        s.contains("arn:aws:iam::222233334444:role/idle: applied")
            && s.contains(
                "(rollback: credwarden shrink rollback arn:aws:iam::222233334444:role/idle --to"
            ),
        "{s}"
    );
    assert_eq!(policies(member), "[]");
    assert_eq!(policies("123456789012"), "[]");

    // A name in two accounts' history is ambiguous; the ARN rolls back the member only.
    let rollback = ["shrink", "rollback", "--state", &p("s.sqlite")];
    let out = credwarden(&moto, &[&rollback[..], &["idle"], &members].concat());
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("idle names roles in several accounts")
            && e.contains("arn:aws:iam::222233334444:role/idle"),
        "{e}"
    );
    let out = credwarden(
        &moto,
        &[
            &rollback[..],
            &["arn:aws:iam::222233334444:role/idle"],
            &members,
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(policies(member), r#"["idle-inline"]"#);
    assert_eq!(policies("123456789012"), "[]");
}

/// The issue-13 scenario on moto: a trail that records every management event plus S3
/// object and SQS data events (advanced selectors), an application role with broad grants,
/// and a role nobody used. The plan proves each removal from the trail's own configuration.
/// moto dates every role and the trail's start of logging "now", so the window is placed
/// after that: CloudTrail for the 90 days from tomorrow, planned at the end of them.
const TRAIL_SCENARIO: &str = r#"
import boto3, json, os, sys, datetime
kw = KW
iam = boto3.client("iam", **kw)
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
doc = lambda *stmts: json.dumps({"Version": "2012-10-17", "Statement": list(stmts)})
iam.create_role(RoleName="app", AssumeRolePolicyDocument=trust)
iam.put_role_policy(RoleName="app", PolicyName="app", PolicyDocument=doc(
    {"Sid": "Broad", "Effect": "Allow", "Action": ["s3:*", "ec2:Describe*", "sqs:*", "ecs:RunTask", "ecs:DescribeTasks", "iam:PassRole"], "Resource": "*"},
    {"Sid": "Guard", "Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"}))
iam.create_role(RoleName="batch", AssumeRolePolicyDocument=trust)
iam.put_role_policy(RoleName="batch", PolicyName="batch", PolicyDocument=doc(
    {"Effect": "Allow", "Action": ["ec2:DescribeInstances", "s3:GetObject", "dynamodb:GetItem", "sqs:SendMessage", "kms:Decrypt", "logs:PutLogEvents", "sts:GetCallerIdentity"], "Resource": "*"}))
iam.create_role(RoleName="fresh", AssumeRolePolicyDocument=trust)
iam.put_role_policy(RoleName="fresh", PolicyName="fresh", PolicyDocument=doc(
    {"Effect": "Allow", "Action": ["ec2:DescribeVolumes"], "Resource": "*"}))
s3 = boto3.client("s3", **kw)
s3.create_bucket(Bucket="org-trail")
ct = boto3.client("cloudtrail", **kw)
ct.create_trail(Name="org", S3BucketName="org-trail", IsMultiRegionTrail=True, IncludeGlobalServiceEvents=True)
ct.put_event_selectors(TrailName="org", AdvancedEventSelectors=[
    {"Name": "management", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]},
    {"Name": "objects", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}]},
    {"Name": "queues", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::SQS::Queue"]}]}])
ct.start_logging(Name="org")
iso = lambda o: o.isoformat() if isinstance(o, datetime.datetime) else str(o)
out = sys.argv[1]
def save(name, value):
    value.pop("ResponseMetadata", None)
    with open(os.path.join(out, name), "w") as f:
        json.dump(value, f, default=iso)
save("describe-trails.json", ct.describe_trails())
save("event-selectors.json", ct.get_event_selectors(TrailName="org"))
save("trail-status.json", ct.get_trail_status(Name="org"))
"#;

#[test]
fn shrink_proves_removals_from_the_trails_configuration_and_sends_unused_roles_to_zero() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    moto.python(
        &TRAIL_SCENARIO.replace("kw = KW", &format!("kw = {BOTO3_KW}")),
        &[dir.path().to_str().unwrap()],
    );
    let original = exact_inline_texts(&moto, "app");
    let day = 86_400_000i64;
    let start = credwarden_core::clock::now_millis() + day;
    let at = |ms: i64| cloudtrail::EventTime(ms).to_string();
    // What `app` did in the window: 12 actions (ListObjectsV2 is s3:ListBucket; RunTask
    // passes the task role, so iam:PassRole is used too).
    let used = [
        ("s3.amazonaws.com", "GetObject"),
        ("s3.amazonaws.com", "PutObject"),
        ("s3.amazonaws.com", "ListObjectsV2"),
        ("ec2.amazonaws.com", "DescribeInstances"),
        ("ec2.amazonaws.com", "DescribeSubnets"),
        ("sqs.amazonaws.com", "SendMessage"),
        ("sqs.amazonaws.com", "ReceiveMessage"),
        ("sqs.amazonaws.com", "DeleteMessage"),
        ("sqs.amazonaws.com", "GetQueueUrl"),
        ("ecs.amazonaws.com", "DescribeTasks"),
    ];
    let mut records = Vec::new();
    for (i, (source, name)) in used.iter().enumerate() {
        let mut r = record("app", source, name, None, i);
        r["eventTime"] = at(start + (i as i64 + 1) * day).into();
        records.push(r);
    }
    let mut run = record("app", "ecs.amazonaws.com", "RunTask", None, 50);
    r#run["eventTime"] = at(start + 30 * day).into();
    r#run["requestParameters"] = serde_json::json!({"taskDefinition": "t", "overrides": {}, "taskRoleArn": "arn:aws:iam::123456789012:role/worker"});
    records.push(r#run);
    // Someone else at both ends of the window: the CloudTrail spans it.
    for (i, t) in [start, start + 89 * day + 3_600_000].iter().enumerate() {
        let mut r = record(
            "ops",
            "sts.amazonaws.com",
            "GetCallerIdentity",
            None,
            60 + i,
        );
        r["eventTime"] = at(*t).into();
        records.push(r);
    }
    // `fresh` was granted its policy two days before the window's end: grace.
    let mut grant = record("ops", "iam.amazonaws.com", "PutRolePolicy", None, 70);
    grant["eventTime"] = at(start + 88 * day).into();
    grant["requestParameters"] =
        serde_json::json!({"roleName": "fresh", "policyName": "fresh", "policyDocument": "{}"});
    records.push(grant);
    std::fs::write(
        p("trail.json"),
        serde_json::json!({ "Records": records }).to_string(),
    )
    .unwrap();
    let now = at(start + 90 * day);
    let plan_args = [
        "shrink",
        "plan",
        "--live",
        "--regions",
        "us-east-1",
        "--endpoint-url",
        &moto.url,
        "--cloudtrail",
        &p("trail.json"),
        "--now",
        &now,
        "--trail-config",
        &p("describe-trails.json"),
        &p("event-selectors.json"),
        "--trail-status",
        &format!("org={}", p("trail-status.json")),
        "--output",
        &p("plan.json"),
    ];
    let out = credwarden(&moto, &plan_args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("trail: org (multi-region, advanced selectors, logging since"),
        "{stderr}"
    );
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("plan.json")).unwrap()).unwrap();
    let role = |name: &str| {
        plan["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["role"] == name)
            .unwrap()
            .clone()
    };
    let app = role("app");
    assert_eq!(app["verdict"], "shrink", "{stdout}");
    let after = app["after"]["inline"]["app"].to_string();
    for kept in [
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket\"",
        "ec2:DescribeInstances",
        "ec2:DescribeSubnets",
        "sqs:SendMessage",
        "sqs:GetQueueUrl",
        "ecs:RunTask",
        "ecs:DescribeTasks",
        "iam:PassRole",
    ] {
        assert!(after.contains(kept), "{kept} missing from {after}");
    }
    // Exactly what was used: nothing else is left allowed, and the guard stays.
    let allowed: Vec<String> = serde_json::from_value(
        app["after"]["inline"]["app"]["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Effect"] == "Allow")
            .unwrap()["Action"]
            .clone(),
    )
    .unwrap();
    assert_eq!(
        allowed.len(),
        12,
        "{allowed:?}\nkept: {}",
        app["kept_unknown"]
    );
    assert!(
        after.contains("\"Deny\"") && after.contains("s3:DeleteBucket"),
        "{after}"
    );
    // Every removal names its proof.
    let proofs = app["proofs"].as_object().unwrap();
    assert_eq!(proofs.len(), app["removed"].as_array().unwrap().len());
    assert!(
        proofs["ec2:DescribeVolumes"]
            .as_str()
            .unwrap()
            .starts_with("trail org records these management events"),
        "{proofs:?}"
    );
    assert!(
        proofs["s3:DeleteObject"]
            .as_str()
            .unwrap()
            .contains("AWS::S3::Object data events"),
        "{proofs:?}"
    );
    assert!(
        proofs["s3:ReplicateObject"]
            .as_str()
            .unwrap()
            .contains("trust policy"),
        "{proofs:?}"
    );

    // The role nobody used: no session, IAM reports no use → nothing left, data events and
    // unlogged calls included.
    let batch = role("batch");
    assert_eq!(batch["verdict"], "to-zero", "{stdout}");
    assert!(
        batch["proofs"]["dynamodb:GetItem"]
            .as_str()
            .unwrap()
            .starts_with("no session of the role since"),
        "{}",
        batch["proofs"]
    );
    assert!(stdout.contains("== batch (to zero)"), "{stdout}");
    let fresh = role("fresh");
    assert_eq!(fresh["verdict"], "unchanged", "{stdout}");
    assert!(
        fresh["kept_unknown"]["ec2:DescribeVolumes"]
            .as_str()
            .unwrap()
            .starts_with("granted recently (PutRolePolicy at"),
        "{}",
        fresh["kept_unknown"]
    );

    // Without the trail's configuration the same CloudTrail proves far less.
    let without: Vec<&str> = plan_args
        .iter()
        .copied()
        .filter(|a| {
            !a.contains("trail-status")
                && !a.starts_with("org=")
                && !a.ends_with("describe-trails.json")
                && !a.ends_with("event-selectors.json")
                && *a != "--trail-config"
        })
        .collect();
    // With --live and no files, the trails are read through the CloudTrail API: the same
    // trail, the same proofs.
    let out = credwarden(&moto, &without);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("trail: org (multi-region, advanced selectors, logging since"),
        "{}",
        text(&out.stderr)
    );
    let live: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("plan.json")).unwrap()).unwrap();
    for name in ["app", "batch", "fresh"] {
        let from_api = live["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["role"] == name)
            .unwrap();
        assert_eq!(from_api["removed"], role(name)["removed"], "{name}");
        assert_eq!(from_api["proofs"], role(name)["proofs"], "{name}");
    }
    let without = [&without[..], &["--no-live-trails"]].concat();
    let out = credwarden(&moto, &without);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("warning: no trail configuration"));
    let weak: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("plan.json")).unwrap()).unwrap();
    let weak_app = weak["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "app")
        .unwrap();
    assert!(weak_app["removed"].as_array().unwrap().len() < proofs.len());
    std::fs::write(p("plan.json"), serde_json::to_string(&plan).unwrap()).unwrap();

    // Applied through the IAM API and rolled back byte for byte.
    let state = p("state.sqlite");
    let out = credwarden(
        &moto,
        &[
            "shrink",
            "apply",
            "--plan",
            &p("plan.json"),
            "--state",
            &state,
            "--now",
            &now,
            "--endpoint-url",
            &moto.url,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("batch: applied"),
        "{}",
        text(&out.stdout)
    );
    assert!(exact_inline_texts(&moto, "batch").is_empty());
    assert_ne!(exact_inline_texts(&moto, "app"), original);
    let out = credwarden(
        &moto,
        &[
            "shrink",
            "rollback",
            "app",
            "--state",
            &state,
            "--endpoint-url",
            &moto.url,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(exact_inline_texts(&moto, "app"), original);
}

/// `web` (granted S3 and EC2 actions) and `batch`, for the Access Advisor runs.
const ADVISOR_SEED: &str = r#"
import boto3, json, os
iam = boto3.client("iam", **KW)
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
doc = lambda actions: json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})
iam.create_role(RoleName="web", AssumeRolePolicyDocument=trust)
iam.put_role_policy(RoleName="web", PolicyName="web-inline", PolicyDocument=doc(["s3:CreateBucket", "s3:GetObject", "ec2:DescribeInstances", "ec2:DescribeVolumes"]))
iam.create_role(RoleName="batch", AssumeRolePolicyDocument=trust)
iam.put_role_policy(RoleName="batch", PolicyName="batch-inline", PolicyDocument=doc(["ec2:DescribeInstances"]))
"#;

#[test]
fn live_access_advisor_read_refused_and_stale() {
    use testkit::{AccessAdvisorServer, AdvisorService, Recorder};
    let moto = Moto::start();
    moto.python(&ADVISOR_SEED.replace("KW)", &format!("{BOTO3_KW})")), &[]);
    let web = "arn:aws:iam::123456789012:role/web";
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    // The trail spans the window; both roles work in it (EC2 only).
    let mut records = vec![
        record("web", "ec2.amazonaws.com", "DescribeInstances", None, 1),
        record("batch", "ec2.amazonaws.com", "DescribeInstances", None, 2),
    ];
    for (i, t) in ["2027-03-03T12:00:00Z", "2027-05-31T12:00:00Z"]
        .iter()
        .enumerate()
    {
        let mut r = record(
            "ops",
            "sts.amazonaws.com",
            "GetCallerIdentity",
            None,
            10 + i,
        );
        r["eventTime"] = (*t).into();
        records.push(r);
    }
    std::fs::write(
        p("trail.json"),
        serde_json::json!({ "Records": records }).to_string(),
    )
    .unwrap();
    // `batch` has a report file (service level, as the CLI prints it): it wins over live.
    std::fs::write(
        p("batch-advisor.json"),
        r#"{"JobStatus": "COMPLETED", "JobType": "SERVICE_LEVEL", "JobCreationDate": "2027-05-31T08:00:00+00:00", "IsTruncated": false, "ServicesLastAccessed": [
            {"ServiceName": "Amazon EC2", "ServiceNamespace": "ec2", "LastAuthenticated": "2027-05-15T10:02:00+00:00", "TotalAuthenticatedEntities": 1}]}"#,
    )
    .unwrap();
    // Five services on pages of two: three pages, after one IN_PROGRESS answer.
    let report = |created: &str| {
        AccessAdvisorServer::new(created).report(
            web,
            vec![
                AdvisorService::new(
                    "ec2",
                    "Amazon Elastic Compute Cloud",
                    Some("2027-05-15T10:01:00Z"),
                )
                .tracked(&[
                    ("DescribeInstances", Some("2027-05-15T10:01:00Z")),
                    ("DescribeVolumes", None),
                ]),
                AdvisorService::new("iam", "AWS Identity and Access Management", None),
                AdvisorService::new("lambda", "AWS Lambda", None),
                AdvisorService::new("s3", "Amazon Simple Storage Service", None)
                    .tracked(&[("CreateBucket", None)]),
                AdvisorService::new("sqs", "Amazon Simple Queue Service", None),
            ],
        )
    };
    let plan = |endpoint: &str, extra: &[&str], out: &str| {
        let o = credwarden(
            &moto,
            &[
                &[
                    "shrink",
                    "plan",
                    "--live",
                    "--regions",
                    "us-east-1",
                    "--endpoint-url",
                    endpoint,
                    "--cloudtrail",
                    &p("trail.json"),
                    "--now",
                    "2027-06-01T00:00:00Z",
                    "--output",
                    &p(out),
                ][..],
                extra,
            ]
            .concat(),
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let plan: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p(out)).unwrap()).unwrap();
        let web_plan = plan["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["role"] == "web")
            .cloned()
            .unwrap();
        (text(&o.stderr), web_plan)
    };
    let removed = |role: &serde_json::Value, action: &str| {
        role["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == action)
    };
    let batch_file = format!("batch={}", p("batch-advisor.json"));

    // Read live through the relay: generated at action level, polled past IN_PROGRESS, paged.
    let mut server = report("2027-05-31T23:00:00Z");
    server.page_size = 2;
    let relay = Recorder::with_access_advisor(moto.port, server);
    let (stderr, web_plan) = plan(&relay.url, &["--access-advisor", &batch_file], "read.json");
    assert!(!stderr.contains("Access Advisor unavailable"), "{stderr}");
    assert!(!stderr.contains("stale"), "{stderr}");
    assert!(
        stderr.contains("access advisor: 1 live report(s) read"),
        "{stderr}"
    );
    let generated = relay.action_requests("GenerateServiceLastAccessedDetails");
    assert_eq!(generated.len(), 1, "batch has its file: {generated:?}");
    assert_eq!(generated[0]["Arn"], web);
    assert_eq!(generated[0]["Granularity"], "ACTION_LEVEL");
    let gets = relay.action_requests("GetServiceLastAccessedDetails");
    assert_eq!(
        gets.len(),
        4,
        "one IN_PROGRESS answer, then three pages: {gets:?}"
    );
    assert!(gets.iter().all(|g| g["MaxItems"] == "1000"), "{gets:?}");
    assert_eq!(
        gets.iter().filter(|g| g.contains_key("Marker")).count(),
        2,
        "{gets:?}"
    );
    // The report (S3 never used, s3:CreateBucket tracked and unused) is what shows S3
    // unused: the trail cannot.
    assert!(removed(&web_plan, "s3:CreateBucket"), "{web_plan}");
    assert!(!removed(&web_plan, "ec2:DescribeInstances"), "{web_plan}");
    // Tracked at action level and unused: removed, and the plan says by which proof.
    assert_eq!(
        web_plan["proofs"]["ec2:DescribeVolumes"],
        "Access Advisor (action level): not used in its tracking period",
        "{web_plan}"
    );

    // --no-access-advisor: not asked.
    let (stderr, web_plan) = plan(&relay.url, &["--no-access-advisor"], "off.json");
    assert_eq!(relay.count_action("GenerateServiceLastAccessedDetails"), 1);
    assert!(!stderr.contains("access advisor:"), "{stderr}");
    assert!(!removed(&web_plan, "s3:CreateBucket"), "{web_plan}");

    // Refused (AccessDenied in IAM's XML): one warning for the run, asked no further, the
    // plan made without it — and without a report S3 is not shown unused.
    let mut server = report("2027-05-31T23:00:00Z");
    server.deny = true;
    let denied = Recorder::with_access_advisor(moto.port, server);
    let (stderr, web_plan) = plan(&denied.url, &[], "denied.json");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Access Advisor unavailable"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("AccessDenied") && warnings[0].ends_with("; planning without it"),
        "{stderr}"
    );
    assert_eq!(denied.count_action("GenerateServiceLastAccessedDetails"), 1);
    assert_eq!(denied.count_action("GetServiceLastAccessedDetails"), 0);
    assert!(!removed(&web_plan, "s3:CreateBucket"), "{web_plan}");

    // moto itself lacks the API (an HTML error page): refused the same way.
    let (stderr, _) = plan(&moto.url, &[], "moto.json");
    assert_eq!(
        stderr.matches("Access Advisor unavailable").count(),
        1,
        "{stderr}"
    );

    // A report created more than 5 days before the window's end is refused as stale.
    let stale = Recorder::with_access_advisor(moto.port, report("2027-05-20T00:00:00Z"));
    let (stderr, web_plan) = plan(&stale.url, &[], "stale.json");
    assert!(
        stderr.contains(&format!("{web}: Access Advisor report of 2027-05-20"))
            && stderr.contains("stale, planning without it"),
        "{stderr}"
    );
    assert!(!removed(&web_plan, "s3:CreateBucket"), "{web_plan}");
}

#[test]
fn live_access_advisor_asks_each_role_in_its_own_account() {
    use testkit::{AccessAdvisorServer, AdvisorService, Recorder};
    let moto = Moto::start();
    let script = MEMBER_IDLE.replace("dict(KW)", &format!("dict({BOTO3_KW})"));
    let accounts = ["123456789012", "222233334444"];
    for account in accounts {
        moto.python(&script, &[account, "seed"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let mut records = Vec::new();
    for account in accounts {
        for (i, t) in ["2027-03-03T12:00:00Z", "2027-05-31T12:00:00Z"]
            .iter()
            .enumerate()
        {
            let mut r = record("ops", "sts.amazonaws.com", "GetCallerIdentity", None, i);
            r["eventTime"] = (*t).into();
            let text = r.to_string().replace("123456789012", account);
            records.push(serde_json::from_str::<serde_json::Value>(&text).unwrap());
        }
    }
    std::fs::write(
        p("trail.json"),
        serde_json::json!({ "Records": records }).to_string(),
    )
    .unwrap();
    let arn = |account: &str| format!("arn:aws:iam::{account}:role/idle");
    let mut server = AccessAdvisorServer::new("2027-05-31T23:00:00Z");
    for account in accounts {
        server = server.report(
            &arn(account),
            vec![
                AdvisorService::new("ec2", "Amazon Elastic Compute Cloud", None)
                    .tracked(&[("DescribeInstances", None)]),
            ],
        );
    }
    let relay = Recorder::with_access_advisor(moto.port, server);
    let out = credwarden(
        &moto,
        &[
            "shrink",
            "plan",
            "--live",
            "--regions",
            "us-east-1",
            "--endpoint-url",
            &relay.url,
            "--assume-role-name",
            "credwarden-read",
            "--accounts",
            "123456789012,222233334444",
            "--cloudtrail",
            &p("trail.json"),
            "--now",
            "2027-06-01T00:00:00Z",
            "--output",
            &p("plan.json"),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("access advisor: 2 live report(s) read")
            && !stderr.contains("Access Advisor unavailable"),
        "{stderr}"
    );
    // Each role's job was generated with the credentials of the role assumed in its account.
    let signed_by: Vec<(String, String)> = relay
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| {
            String::from_utf8_lossy(&r.body).contains("Action=GenerateServiceLastAccessedDetails")
        })
        .map(|r| {
            let key = r
                .head
                .split("Credential=")
                .nth(1)
                .and_then(|c| c.split('/').next())
                .unwrap()
                .to_owned();
            let body = String::from_utf8_lossy(&r.body);
            let account = accounts
                .into_iter()
                .find(|a| body.contains(&format!("%3A{a}%3Arole%2Fidle")))
                .unwrap()
                .to_owned();
            (account, key)
        })
        .collect();
    assert_eq!(signed_by.len(), 2, "{signed_by:?}");
    assert_ne!(signed_by[0].0, signed_by[1].0, "{signed_by:?}");
    assert_ne!(signed_by[0].1, signed_by[1].1, "{signed_by:?}");
    // moto knows each key's account (it does not check signatures, so any secret will do).
    const KEY_ACCOUNT: &str = r#"
import boto3, os, sys
kw = dict(KW)
kw.update(aws_access_key_id=sys.argv[1], aws_secret_access_key="any")
print(boto3.client("sts", **kw).get_caller_identity()["Account"])
"#;
    let key_account = KEY_ACCOUNT.replace("dict(KW)", &format!("dict({BOTO3_KW})"));
    for (account, key) in &signed_by {
        assert_ne!(key, "testing");
        assert_eq!(moto.python(&key_account, &[key]).trim(), account, "{key}");
    }
    let plan = std::fs::read_to_string(p("plan.json")).unwrap();
    for account in accounts {
        assert!(plan.contains(&arn(account)), "{plan}");
    }
}

/// A statement's `Action`: one string or a list.
fn actions_of(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(a) => vec![a.clone()],
        other => serde_json::from_value(other.clone()).unwrap(),
    }
}

const AUDITOR_AND_WIDE: &str = r#"
import boto3, json, os
kw = KW
iam = boto3.client("iam", **kw)
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
iam.create_role(RoleName="auditor", AssumeRolePolicyDocument=trust)
iam.attach_role_policy(RoleName="auditor", PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")
iam.create_role(RoleName="wide", AssumeRolePolicyDocument=trust)
guarded = ["arn:aws:ec2:us-east-1:123456789012:instance/i-%017d" % i for i in range(90)]
iam.put_role_policy(RoleName="wide", PolicyName="wide", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
    {"Sid": "Look", "Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
    {"Sid": "Guard", "Effect": "Deny", "Action": "ec2:TerminateInstances", "Resource": guarded}]}))
"#;

/// The issue's auditor: AWS managed `ReadOnlyAccess` (thousands of actions), a dozen used.
/// And a role whose right-sized policy no longer fits inline: it goes into managed policies
/// the apply creates and the rollback deletes.
#[test]
fn the_auditor_loses_read_only_access_and_a_large_result_becomes_managed_policies() {
    let moto = Moto::start_with_env(&[("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")]);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    moto.python(
        &TRAIL_SCENARIO.replace("kw = KW", &format!("kw = {BOTO3_KW}")),
        &[dir.path().to_str().unwrap()],
    );
    moto.python(
        &AUDITOR_AND_WIDE.replace("kw = KW", &format!("kw = {BOTO3_KW}")),
        &[],
    );
    let original_wide = exact_inline_texts(&moto, "wide");
    let day = 86_400_000i64;
    let start = credwarden_core::clock::now_millis() + day;
    let at = |ms: i64| cloudtrail::EventTime(ms).to_string();
    let auditor_used = [
        (
            "ec2.amazonaws.com",
            "DescribeInstances",
            "ec2:DescribeInstances",
        ),
        (
            "ec2.amazonaws.com",
            "DescribeSecurityGroups",
            "ec2:DescribeSecurityGroups",
        ),
        ("iam.amazonaws.com", "ListRoles", "iam:ListRoles"),
        ("iam.amazonaws.com", "GetRole", "iam:GetRole"),
        ("s3.amazonaws.com", "ListBuckets", "s3:ListAllMyBuckets"),
        ("s3.amazonaws.com", "GetBucketPolicy", "s3:GetBucketPolicy"),
        (
            "cloudtrail.amazonaws.com",
            "DescribeTrails",
            "cloudtrail:DescribeTrails",
        ),
        (
            "rds.amazonaws.com",
            "DescribeDBInstances",
            "rds:DescribeDBInstances",
        ),
        ("kms.amazonaws.com", "ListKeys", "kms:ListKeys"),
        (
            "logs.amazonaws.com",
            "DescribeLogGroups",
            "logs:DescribeLogGroups",
        ),
        (
            "config.amazonaws.com",
            "DescribeConfigRules",
            "config:DescribeConfigRules",
        ),
        (
            "monitoring.amazonaws.com",
            "DescribeAlarms",
            "cloudwatch:DescribeAlarms",
        ),
    ];
    let mut records = Vec::new();
    for (i, (source, name, _)) in auditor_used.iter().enumerate() {
        let mut r = record("auditor", source, name, None, i);
        r["eventTime"] = at(start + (i as i64 + 1) * day).into();
        records.push(r);
    }
    // `wide` looks at nearly everything EC2 describes: 185 actions, listed one by one.
    let describes: Vec<String> = iam::Catalogue::builtin()
        .expand("ec2:Describe*")
        .into_iter()
        .take(185)
        .collect();
    for (i, action) in describes.iter().enumerate() {
        let name = action.trim_start_matches("ec2:");
        let mut r = record("wide", "ec2.amazonaws.com", name, None, 100 + i);
        r["eventTime"] = at(start + (i as i64 % 80 + 1) * day).into();
        records.push(r);
    }
    for (i, t) in [start, start + 89 * day + 3_600_000].iter().enumerate() {
        let mut r = record(
            "ops",
            "sts.amazonaws.com",
            "GetCallerIdentity",
            None,
            60 + i,
        );
        r["eventTime"] = at(*t).into();
        records.push(r);
    }
    std::fs::write(
        p("trail.json"),
        serde_json::json!({ "Records": records }).to_string(),
    )
    .unwrap();
    let now = at(start + 90 * day);
    // Access Advisor, as IAM reports a role with ReadOnlyAccess: every service it grants,
    // the nine the auditor used with their last access, the others never.
    let used_services: std::collections::BTreeSet<&str> = auditor_used
        .iter()
        .map(|(_, _, a)| a.split(':').next().unwrap())
        .collect();
    const GRANTED_PREFIXES: &str = r#"
import boto3, json, os
iam = boto3.client("iam", **KW)
arn = "arn:aws:iam::aws:policy/ReadOnlyAccess"
v = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
doc = iam.get_policy_version(PolicyArn=arn, VersionId=v)["PolicyVersion"]["Document"]
acts = [a for s in doc["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
print(json.dumps(sorted({a.split(":")[0] for a in acts})))
"#;
    // Every service ReadOnlyAccess grants, as IAM lists them, retired ones included.
    let granted_services: std::collections::BTreeSet<String> = serde_json::from_str(
        moto.python(
            &GRANTED_PREFIXES.replace("KW)", &format!("{BOTO3_KW})")),
            &[],
        )
        .trim(),
    )
    .unwrap();
    let last = at(start + 5 * day);
    let services = granted_services
        .iter()
        .map(|ns| {
            let used = used_services.contains(ns.as_str()).then_some(last.as_str());
            testkit::AdvisorService::new(ns, ns, used)
        })
        .collect();
    let advisor = testkit::AccessAdvisorServer::new(&at(start + 90 * day - 3_600_000))
        .report("arn:aws:iam::123456789012:role/auditor", services);
    let relay = testkit::Recorder::with_access_advisor(moto.port, advisor);
    let out = credwarden(
        &moto,
        &[
            "shrink",
            "plan",
            "--live",
            "--regions",
            "us-east-1",
            "--endpoint-url",
            &relay.url,
            "--cloudtrail",
            &p("trail.json"),
            "--now",
            &now,
            "--trail-config",
            &p("describe-trails.json"),
            &p("event-selectors.json"),
            "--trail-status",
            &format!("org={}", p("trail-status.json")),
            "--never-touch",
            "app",
            "--output",
            &p("plan.json"),
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("plan.json")).unwrap()).unwrap();
    let role = |name: &str| {
        plan["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["role"] == name)
            .unwrap()
            .clone()
    };

    // The auditor: ReadOnlyAccess detached; its inline copy allows the dozen reads it made
    // and, beside them, only what no proof reaches (each named in kept_unknown).
    let auditor = role("auditor");
    assert_eq!(auditor["verdict"], "shrink", "{stdout}");
    assert_eq!(auditor["after"]["attached"], serde_json::json!([]));
    let copy = &auditor["after"]["inline"]["credwarden-ReadOnlyAccess"];
    let allowed: Vec<String> = copy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| actions_of(&s["Action"]))
        .collect();
    let catalogue = iam::Catalogue::builtin();
    let kept: std::collections::BTreeSet<String> =
        allowed.iter().flat_map(|a| catalogue.expand(a)).collect();
    for (_, _, action) in &auditor_used {
        assert!(kept.contains(*action), "{action} not kept: {allowed:?}");
    }
    let unknown = auditor["kept_unknown"].as_object().unwrap();
    // Patterns of services the catalogue does not know went too: Access Advisor shows those
    // services unused as a whole.
    assert!(
        allowed.iter().all(|a| !catalogue.expand(a).is_empty()),
        "{allowed:?}"
    );
    assert!(
        auditor["proofs"]["codestar:Describe*"]
            .as_str()
            .unwrap()
            .contains("a service the catalogue does not list"),
        "{}",
        auditor["proofs"]
    );
    for a in &kept {
        assert!(
            auditor_used.iter().any(|(_, _, u)| u == a) || unknown.contains_key(a),
            "{a} kept without use or a reason: {allowed:?}"
        );
    }
    let removed = auditor["removed"].as_array().unwrap().len();
    assert!(
        removed > 20 * allowed.len(),
        "{removed} removed, {} kept",
        allowed.len()
    );

    // `wide`: 185 listed actions and the guard are over the inline limit.
    let wide = role("wide");
    assert_eq!(wide["verdict"], "shrink", "{stdout}");
    assert!(
        wide["reason"]
            .as_str()
            .unwrap()
            .contains("over the inline limit and goes into"),
        "{}",
        wide["reason"]
    );
    let created = wide["after"]["created"].as_object().unwrap();
    assert!(created.len() >= 2, "{created:?}");
    assert_eq!(wide["after"]["inline"], serde_json::json!({}));
    let mut granted: Vec<String> = Vec::new();
    let mut guard_resources = 0;
    for (arn, doc) in created {
        assert!(
            arn.starts_with("arn:aws:iam::123456789012:policy/credwarden-shrink/wide-"),
            "{arn}"
        );
        assert!(doc.to_string().len() <= 6_144);
        for s in doc["Statement"].as_array().unwrap() {
            if s["Effect"] == "Deny" {
                guard_resources += s["Resource"].as_array().map_or(1, Vec::len);
            } else {
                granted.extend(actions_of(&s["Action"]));
            }
        }
    }
    granted.sort();
    let mut expected = describes.clone();
    expected.sort();
    assert_eq!(granted, expected, "exactly the used describes");
    assert_eq!(guard_resources, 90, "the guard kept whole");

    // Applied: the policies are created and attached, the inline policy gone; rolled back:
    // the original inline text byte for byte, and the created policies deleted.
    let state = p("state.sqlite");
    let out = credwarden(
        &moto,
        &[
            "shrink",
            "apply",
            "--plan",
            &p("plan.json"),
            "--state",
            &state,
            "--now",
            &now,
            "--endpoint-url",
            &moto.url,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let applied = text(&out.stdout);
    assert!(
        applied.contains("wide: applied") && applied.contains("auditor: applied"),
        "{applied}"
    );
    assert!(exact_inline_texts(&moto, "wide").is_empty());
    const ATTACHED: &str = r#"
import boto3, json, os, sys
iam = boto3.client("iam", **KW)
role = sys.argv[1]
attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]]
local = [p["Arn"] for p in iam.list_policies(Scope="Local", PathPrefix="/credwarden-shrink/")["Policies"]]
print(json.dumps({"attached": sorted(attached), "created": sorted(local)}))
"#;
    let attached = |role: &str| -> serde_json::Value {
        serde_json::from_str(
            moto.python(&ATTACHED.replace("KW)", &format!("{BOTO3_KW})")), &[role])
                .trim(),
        )
        .unwrap()
    };
    let mut planned: Vec<&String> = created.keys().collect();
    planned.sort();
    let live = attached("wide");
    assert_eq!(live["attached"], serde_json::json!(planned));
    assert_eq!(live["created"], serde_json::json!(planned));
    assert_eq!(attached("auditor")["attached"], serde_json::json!([]));

    for role in ["wide", "auditor"] {
        let out = credwarden(
            &moto,
            &[
                "shrink",
                "rollback",
                role,
                "--state",
                &state,
                "--endpoint-url",
                &moto.url,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    assert_eq!(exact_inline_texts(&moto, "wide"), original_wide);
    assert_eq!(
        attached("wide"),
        serde_json::json!({"attached": [], "created": []}),
        "nothing of the shrink is left"
    );
    assert_eq!(
        attached("auditor")["attached"],
        serde_json::json!(["arn:aws:iam::aws:policy/ReadOnlyAccess"])
    );
    assert!(exact_inline_texts(&moto, "auditor").is_empty());
}
