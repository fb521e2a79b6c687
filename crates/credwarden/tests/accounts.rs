//! The account registry on the moto server: `accounts sync --live` reads AWS Organizations
//! (accounts, OU path, owner and environment tags) through the AWS SDK for Rust; findings of
//! `detect --state` carry the account's name and owner.

use std::process::Output;

use testkit::{Moto, BOTO3_KW};

const ORG: &str = r#"
import boto3, json, os
org = boto3.client("organizations", **KW)
org.create_organization(FeatureSet="ALL")
root = org.list_roots()["Roots"][0]["Id"]
prod = org.create_organizational_unit(ParentId=root, Name="Prod")["OrganizationalUnit"]["Id"]
status = org.create_account(Email="pay@example.com", AccountName="payments-prod",
    Tags=[{"Key": "owner", "Value": "payments-team"}, {"Key": "environment", "Value": "prod"}])
acct = status["CreateAccountStatus"]["AccountId"]
org.move_account(AccountId=acct, SourceParentId=root, DestinationParentId=prod)
# A nested OU: its path is walked once and shared by the accounts in it.
cards = org.create_organizational_unit(ParentId=prod, Name="Cards")["OrganizationalUnit"]["Id"]
nested = []
for name in ["cards-a", "cards-b"]:
    n = org.create_account(Email=name + "@example.com", AccountName=name)["CreateAccountStatus"]["AccountId"]
    org.move_account(AccountId=n, SourceParentId=root, DestinationParentId=cards)
    nested.append(n)
print(acct)
print(" ".join(nested))
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

#[test]
fn organization_accounts_name_the_findings() {
    let moto = Moto::start();
    let seeded = moto.python(&ORG.replace("KW)", &format!("{BOTO3_KW})")), &[]);
    let mut lines = seeded.lines();
    let account = lines.next().unwrap().trim().to_owned();
    let nested: Vec<String> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.sqlite");
    let state = state.to_str().unwrap();
    let out = credwarden(
        &moto,
        &[
            "accounts",
            "sync",
            "--state",
            state,
            "--live",
            "--endpoint-url",
            &moto.url,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed = credwarden(&moto, &["accounts", "list", "--state", state, "--json"]);
    let rows: Vec<serde_json::Value> = text(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let row = rows.iter().find(|r| r["id"] == account.as_str()).unwrap();
    assert_eq!(row["name"], "payments-prod");
    assert_eq!(row["owner"], "payments-team");
    assert_eq!(row["environment"], "prod");
    assert_eq!(row["ou"], "Root/Prod");
    for id in &nested {
        let row = rows.iter().find(|r| r["id"] == id.as_str()).unwrap();
        assert_eq!(row["ou"], "Root/Prod/Cards", "{row}");
    }

    // A long-lived key used in that account: the finding names the account and its owner.
    let trail = dir.path().join("trail.json");
    let record = serde_json::json!({"Records": [{"eventVersion": "1.08",
        "eventTime": "2026-12-01T10:00:00Z", "eventSource": "s3.amazonaws.com",
        "eventName": "ListBuckets", "awsRegion": "us-east-1", "eventID": "e-1",
        "sourceIPAddress": "203.0.113.9", "userAgent": "aws-cli/2.15", "recipientAccountId": account,
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "accountId": account,
            "arn": format!("arn:aws:iam::{account}:user/ci"), "accessKeyId": "AKIAEXAMPLEKEY000001",
            "userName": "ci"}}]});
    std::fs::write(&trail, record.to_string()).unwrap();
    let found = credwarden(
        &moto,
        &[
            "detect",
            trail.to_str().unwrap(),
            "--state",
            state,
            "--detectors",
            "static-key-use",
        ],
    );
    assert_eq!(found.status.code(), Some(0), "{}", text(&found.stderr));
    let finding: serde_json::Value =
        serde_json::from_str(text(&found.stdout).lines().next().expect("a finding")).unwrap();
    assert_eq!(finding["account"], account.as_str());
    assert_eq!(finding["account_name"], "payments-prod");
    assert_eq!(finding["account_owner"], "payments-team");

    // Names stand for ids where accounts are given; an unknown name is refused.
    let unknown = credwarden(
        &moto,
        &[
            "detect",
            "s3://b/p",
            "--state",
            state,
            "--accounts",
            "nope",
            "--endpoint-url",
            &moto.url,
        ],
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr).contains("neither an account id nor a name"),
        "{}",
        text(&unknown.stderr)
    );
}
