//! `--live` and `--apply` against the moto server on loopback, through the official AWS SDK
//! for Rust. The harness starts moto on a free port, seeds an account with boto3 (a VPC, a
//! NAT gateway with an Elastic IP, an S3 gateway endpoint, tagged roles), and runs the
//! commands as a user would with `--endpoint-url`. Needs `pip install 'moto[server]'`
//! (`.ci/run` installs it); without it the test fails rather than pretending.

use std::process::{Command, Output};

use testkit::{free_port, Moto};

const SEED: &str = r#"
import boto3, json, os, sys
kw = dict(endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
ec2 = boto3.client("ec2", **kw)
iam = boto3.client("iam", **kw)
vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.1.0/24")["Subnet"]["SubnetId"]
eip = ec2.allocate_address(Domain="vpc")
nat = ec2.create_nat_gateway(SubnetId=subnet, AllocationId=eip["AllocationId"])["NatGateway"]["NatGatewayId"]
rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
vpce = ec2.create_vpc_endpoint(VpcId=vpc, ServiceName="com.amazonaws.us-east-1.s3", RouteTableIds=[rtb])["VpcEndpoint"]["VpcEndpointId"]
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
iam.create_role(RoleName="app", AssumeRolePolicyDocument=trust, Tags=[{"Key": "owner", "Value": "payments"}])
iam.create_role(RoleName="edge", AssumeRolePolicyDocument=trust, Tags=[{"Key": "credwarden:external", "Value": "true"}])
iam.put_role_policy(RoleName="edge", PolicyName="pass", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "PassAll", "Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]}))
# A second region with its own VPC and NAT: a lock built live must cover it too.
ec2w = boto3.client("ec2", **dict(kw, region_name="eu-west-1"))
vpc2 = ec2w.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
subnet2 = ec2w.create_subnet(VpcId=vpc2, CidrBlock="10.40.1.0/24")["Subnet"]["SubnetId"]
eip2 = ec2w.allocate_address(Domain="vpc")
ec2w.create_nat_gateway(SubnetId=subnet2, AllocationId=eip2["AllocationId"])
print(json.dumps({"vpc": vpc, "vpce": vpce, "nat": nat, "public_ip": eip["PublicIp"],
                  "vpc2": vpc2, "public_ip2": eip2["PublicIp"]}))
"#;

fn credwarden(moto: &Moto, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_credwarden"))
        .args(args)
        .args(["--endpoint-url", &moto.url])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/nonexistent/credwarden-test-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/credwarden-test-credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn live_inventory_lock_apply_and_passrole_against_moto() {
    let moto = Moto::start();
    let seeded: serde_json::Value = serde_json::from_str(moto.python(SEED, &[]).trim()).unwrap();
    let (vpc, vpce, ip) = (
        seeded["vpc"].as_str().unwrap(),
        seeded["vpce"].as_str().unwrap(),
        seeded["public_ip"].as_str().unwrap(),
    );

    // The lock is built from the live account, in every region (issue 14: the second
    // region's VPC and NAT address were left out, so its traffic would have been denied).
    let out = credwarden(&moto, &["policy", "lock", "--live"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lock = text(&out.stdout);
    let (vpc2, ip2) = (
        seeded["vpc2"].as_str().unwrap(),
        seeded["public_ip2"].as_str().unwrap(),
    );
    for needle in [vpc, vpce, ip, vpc2, ip2] {
        assert!(
            lock.contains(needle),
            "{needle} missing from the live lock:\n{lock}"
        );
    }
    assert!(
        text(&out.stderr).contains("not locked (serves external subnets")
            && text(&out.stderr).contains("edge"),
        "{}",
        text(&out.stderr)
    );

    // --regions narrows the network to the regions named.
    let out = credwarden(
        &moto,
        &["policy", "lock", "--live", "--regions", "us-east-1"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains(vpc2));
    assert!(
        text(&out.stderr).contains("1 region(s): us-east-1"),
        "{}",
        text(&out.stderr)
    );
    // A region that cannot be read is reported, and --apply refuses the incomplete lock.
    let out = credwarden(
        &moto,
        &[
            "policy",
            "lock",
            "--live",
            "--regions",
            "us-east-1,xx-nowhere-1",
            "--apply",
            "app",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("xx-nowhere-1"),
        "{}",
        text(&out.stderr)
    );

    let out = credwarden(&moto, &["policy", "verify", "--live"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // Dry run: a diff, nothing written.
    let out = credwarden(
        &moto,
        &["policy", "lock", "--live", "--apply", "app", "--dry-run"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let diff = text(&out.stdout);
    assert!(
        diff.contains("current: none")
            && diff.lines().any(|l| l.starts_with('+') && l.contains(vpce)),
        "{diff}"
    );
    let get = r#"
import boto3, os, sys
iam = boto3.client("iam", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
try:
    print(iam.get_role_policy(RoleName=sys.argv[1], PolicyName="credwarden-environment-lock")["PolicyDocument"])
except iam.exceptions.NoSuchEntityException:
    print("none")
"#;
    assert_eq!(
        moto.python(get, &["app"]).trim(),
        "none",
        "--dry-run must not write"
    );

    // Apply: written through the IAM API, skipped for the external role, idempotent.
    let out = credwarden(
        &moto,
        &["policy", "lock", "--live", "--apply", "app", "edge"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("app: credwarden-environment-lock attached") && s.contains("edge: skipped"),
        "{s}"
    );
    let stored = moto.python(get, &["app"]);
    assert!(
        stored.contains(vpce) && stored.contains("aws:ViaAWSService"),
        "{stored}"
    );
    assert_eq!(moto.python(get, &["edge"]).trim(), "none");
    let out = credwarden(&moto, &["policy", "lock", "--live", "--apply", "app"]);
    assert!(
        text(&out.stdout).contains("already up to date"),
        "{}",
        text(&out.stdout)
    );

    // Delivery lockdown from the live account.
    let out = credwarden(&moto, &["policy", "passrole", "--live"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let s = text(&out.stdout);
    assert!(s.contains("role/edge  via edge inline pass#PassAll"), "{s}");
    assert!(s.contains("roles without an \"owner\" tag (1)"), "{s}");
}

#[test]
fn live_without_a_reachable_endpoint_is_a_clear_error() {
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_credwarden"))
        .args([
            "policy",
            "lock",
            "--live",
            "--endpoint-url",
            &format!("http://127.0.0.1:{port}"),
        ])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    // The first call names itself and says why it failed.
    assert!(err.contains("ec2:DescribeRegions"), "{err}");
    assert!(err.to_lowercase().contains("connect"), "{err}");
    assert!(
        !err.contains("testing"),
        "credentials must never be printed: {err}"
    );
}

/// A member account, seeded through a role assumed in it (moto keeps each account apart by
/// the credentials' account): its own VPC, NAT gateway, a role `app` and a user with a key.
const MEMBER: &str = r#"
import boto3, json, os, sys
kw = dict(endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
c = boto3.client("sts", **kw).assume_role(RoleArn="arn:aws:iam::%s:role/credwarden-read" % sys.argv[1], RoleSessionName="seed")["Credentials"]
mk = dict(kw, aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
if sys.argv[2] == "seed":
    ec2 = boto3.client("ec2", **mk)
    vpc = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.60.1.0/24")["Subnet"]["SubnetId"]
    eip = ec2.allocate_address(Domain="vpc")
    ec2.create_nat_gateway(SubnetId=subnet, AllocationId=eip["AllocationId"])
    iam = boto3.client("iam", **mk)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName="app", AssumeRolePolicyDocument=trust)
    iam.create_role(RoleName="only-here", AssumeRolePolicyDocument=trust)
    iam.create_user(UserName="ci-bot")
    key = iam.create_access_key(UserName="ci-bot")["AccessKey"]["AccessKeyId"]
    print(json.dumps({"vpc": vpc, "public_ip": eip["PublicIp"], "key": key}))
elif sys.argv[2] == "key":
    iam = boto3.client("iam", **mk)
    print(iam.list_access_keys(UserName="ci-bot")["AccessKeyMetadata"][0]["Status"])
else:
    iam = boto3.client("iam", **mk)
    try:
        print(iam.get_role_policy(RoleName=sys.argv[3], PolicyName="credwarden-environment-lock")["PolicyDocument"])
    except iam.exceptions.NoSuchEntityException:
        print("none")
"#;

#[test]
fn member_accounts_through_an_assumed_role_make_one_lock_written_in_each() {
    let moto = Moto::start();
    let own: serde_json::Value = serde_json::from_str(moto.python(SEED, &[]).trim()).unwrap();
    let member = "222233334444";
    let seeded: serde_json::Value =
        serde_json::from_str(moto.python(MEMBER, &[member, "seed"]).trim()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let accounts = dir.path().join("accounts.json");
    std::fs::write(
        &accounts,
        r#"{"Accounts": [
            {"Id": "123456789012", "Name": "management", "Status": "ACTIVE"},
            {"Id": "222233334444", "Name": "payments-prod", "Status": "ACTIVE"},
            {"Id": "999988887777", "Name": "closed-one", "Status": "SUSPENDED"}]}"#,
    )
    .unwrap();
    let state = dir.path().join("state.sqlite");
    let state_arg = state.to_str().unwrap();
    let out = credwarden(
        &moto,
        &[
            "accounts",
            "sync",
            "--state",
            state_arg,
            "--file",
            accounts.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Every active account of the registry (the suspended one is not tried), one lock
    // covering both accounts' networks.
    let members = [
        "--assume-role-name",
        "credwarden-read",
        "--registry",
        state_arg,
    ];
    let out = credwarden(
        &moto,
        &[
            &["policy", "lock", "--live", "--regions", "us-east-1"][..],
            &members,
        ]
        .concat(),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lock = text(&out.stdout);
    for needle in [
        own["vpc"].as_str().unwrap(),
        own["public_ip"].as_str().unwrap(),
        seeded["vpc"].as_str().unwrap(),
        seeded["public_ip"].as_str().unwrap(),
    ] {
        assert!(lock.contains(needle), "{needle} missing:\n{lock}");
    }
    assert!(
        err.contains("123456789012 (management): network read")
            && err.contains("222233334444 (payments-prod): network read")
            && !err.contains("999988887777"),
        "{err}"
    );

    // A name from the registry narrows to that account; an unknown name is refused.
    let out = credwarden(
        &moto,
        &[
            &["policy", "lock", "--live", "--regions", "us-east-1"][..],
            &members,
            &["--accounts", "payments-prod"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains(own["vpc"].as_str().unwrap()));
    let out = credwarden(
        &moto,
        &[
            &["policy", "lock", "--live"][..],
            &members,
            &["--accounts", "nobody"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("\"nobody\" is neither"),
        "{}",
        text(&out.stderr)
    );
    // Member accounts are read live only, and need a list or a registry.
    let out = credwarden(
        &moto,
        &[
            "policy",
            "lock",
            "--assume-role-name",
            "r",
            "--inventory",
            "x.json",
        ],
    );
    assert!(
        text(&out.stderr).contains("add --live"),
        "{}",
        text(&out.stderr)
    );
    let out = credwarden(
        &moto,
        &["policy", "lock", "--live", "--assume-role-name", "r"],
    );
    assert!(
        text(&out.stderr).contains("--registry FILE"),
        "{}",
        text(&out.stderr)
    );

    // An unreadable region of a member account is named with its account, and nothing is
    // written.
    let out = credwarden(
        &moto,
        &[
            &[
                "policy",
                "lock",
                "--live",
                "--regions",
                "us-east-1,xx-nowhere-1",
            ][..],
            &members,
            &["--apply", "app"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("222233334444 (payments-prod)/xx-nowhere-1"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(moto.python(MEMBER, &[member, "get", "app"]).trim(), "none");

    // A role name is written in every account that has it; an ARN in its account only.
    let apply = [
        &["policy", "lock", "--live", "--regions", "us-east-1"][..],
        &members,
    ]
    .concat();
    let out = credwarden(&moto, &[&apply[..], &["--apply", "app"]].concat());
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        s.contains("123456789012 (management) app: credwarden-environment-lock attached")
            && s.contains("222233334444 (payments-prod) app: credwarden-environment-lock attached"),
        "{s}"
    );
    let written = moto.python(MEMBER, &[member, "get", "app"]);
    assert!(
        written.contains(seeded["vpc"].as_str().unwrap()),
        "{written}"
    );
    let out = credwarden(
        &moto,
        &[
            &apply[..],
            &["--apply", "arn:aws:iam::222233334444:role/only-here"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .contains("(payments-prod) only-here: credwarden-environment-lock attached"),
        "{}",
        text(&out.stdout)
    );
    assert_ne!(
        moto.python(MEMBER, &[member, "get", "only-here"]).trim(),
        "none"
    );
    let out = credwarden(&moto, &[&apply[..], &["--apply", "missing"]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing: no reached account has a role of that name"),
        "{}",
        text(&out.stderr)
    );

    // Static keys in every account: each account's own credential report, keys found unused
    // deactivated in their account, the undo naming it.
    let audit = [
        &["keys", "audit", "--live", "--now", "2031-01-01T00:00:00Z"][..],
        &members,
    ]
    .concat();
    let out = credwarden(&moto, &audit);
    let (s, e) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{e}");
    assert!(
        s.contains("222233334444 (payments-prod): ci-bot key 1") && e.contains("(management): "),
        "{s}{e}"
    );
    let out = credwarden(
        &moto,
        &[&audit[..], &["--apply", "--accounts", "payments-prod"]].concat(),
    );
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let key = seeded["key"].as_str().unwrap();
    assert!(
        s.contains(&format!(
            "deactivated ci-bot key {key} (undo: credwarden keys reactivate ci-bot {key} \
             --accounts 222233334444 --assume-role-name credwarden-read)"
        )),
        "{s}"
    );
    assert_eq!(moto.python(MEMBER, &[member, "key"]).trim(), "Inactive");
    let out = credwarden(
        &moto,
        &[
            &["keys", "reactivate", "ci-bot", key][..],
            &members,
            &["--accounts", "222233334444"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(moto.python(MEMBER, &[member, "key"]).trim(), "Active");
}
