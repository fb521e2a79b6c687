//! `foreign-role-pass`: passing a role another application owns.

mod common;

use cloudtrail::EventTime;
use common::{records, run_detector};
use detect::{Finding, ForeignRolePassConfig, ForeignRolePassDetector, OwnershipMap, Severity};
use serde_json::json;

fn pass(
    min: i64,
    id: &str,
    caller_role: &str,
    source: &str,
    name: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    let t = EventTime::parse("2024-11-01T00:00:00Z")
        .unwrap()
        .plus_millis(min * 60_000);
    json!({"eventTime": t.to_string(), "eventSource": source, "eventName": name, "eventID": id, "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.9", "recipientAccountId": "111122223333", "requestParameters": params,
        "userIdentity": {"type": "AssumedRole", "accessKeyId": "ASIAX", "arn": format!("arn:aws:sts::111122223333:assumed-role/{caller_role}/s"),
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::111122223333:role/{caller_role}")}}}})
}

fn run(values: &[serde_json::Value]) -> Vec<Finding> {
    let map = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let ownership = OwnershipMap {
        roles: map(&[
            ("arn:aws:iam::*:role/payments-*", "payments"),
            ("arn:aws:iam::*:instance-profile/payments-*", "payments"),
            ("arn:aws:iam::*:role/web-*", "web"),
        ]),
        principals: map(&[
            ("arn:aws:iam::*:role/payments-*", "payments"),
            ("arn:aws:iam::*:role/web-*", "web"),
            ("arn:aws:iam::*:role/deployer", "*"),
        ]),
    };
    run_detector(
        Box::new(ForeignRolePassDetector::new(ForeignRolePassConfig {
            ownership,
            lateness_ms: 15 * 60_000,
        })),
        &records(values),
    )
}

#[test]
fn passing_another_applications_role_is_high_and_once_per_pair() {
    let lambda = |min, id| {
        pass(
            min,
            id,
            "web-frontend",
            "lambda.amazonaws.com",
            "CreateFunction20150331",
            json!({"functionName": "x", "role": "arn:aws:iam::111122223333:role/payments-core"}),
        )
    };
    let f = run(&[lambda(0, "a"), lambda(1, "b")]);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::High);
    assert_eq!(f[0].details["role_owner"], "payments");
    assert_eq!(f[0].details["caller_application"], "web");
    assert_eq!(f[0].event_ids, vec!["a"]);
}

#[test]
fn instance_profiles_task_roles_and_stacks_are_passes_too() {
    let f = run(&[
        pass(
            0,
            "i",
            "web-frontend",
            "ec2.amazonaws.com",
            "RunInstances",
            json!({"iamInstanceProfile": {"arn": "arn:aws:iam::111122223333:instance-profile/payments-batch"}}),
        ),
        pass(
            1,
            "t",
            "web-frontend",
            "ecs.amazonaws.com",
            "RegisterTaskDefinition",
            json!({"family": "x", "taskRoleArn": "arn:aws:iam::111122223333:role/payments-tasks"}),
        ),
    ]);
    assert_eq!(f.len(), 2, "{f:#?}");
}

#[test]
fn own_roles_deployers_and_unowned_roles_are_fine() {
    let f = run(&[
        pass(
            0,
            "own",
            "web-frontend",
            "lambda.amazonaws.com",
            "CreateFunction20150331",
            json!({"role": "arn:aws:iam::111122223333:role/web-thumbs"}),
        ),
        pass(
            1,
            "ci",
            "deployer",
            "cloudformation.amazonaws.com",
            "CreateStack",
            json!({"stackName": "s", "roleARN": "arn:aws:iam::111122223333:role/payments-core"}),
        ),
        pass(
            2,
            "none",
            "web-frontend",
            "lambda.amazonaws.com",
            "CreateFunction20150331",
            json!({"role": "arn:aws:iam::111122223333:role/legacy-thing"}),
        ),
        pass(
            3,
            "read",
            "web-frontend",
            "lambda.amazonaws.com",
            "GetFunction",
            json!({"role": "arn:aws:iam::111122223333:role/payments-core"}),
        ),
    ]);
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn an_unknown_caller_passing_an_owned_role_is_medium() {
    let f = run(&[pass(
        0,
        "u",
        "mystery",
        "glue.amazonaws.com",
        "CreateDevEndpoint",
        json!({"roleArn": "arn:aws:iam::111122223333:role/payments-etl"}),
    )]);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Medium);
}
