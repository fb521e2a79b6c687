//! Evaluation logic across policy types, from AWS's "Policy evaluation logic" pages.

use iam::{Decision, NamedPolicy, Policy, PolicySet, RequestContext};

fn p(json: &str) -> Policy {
    Policy::parse(json).unwrap()
}

fn ctx(action: &str, resource: &str, keys: &[(&str, &str)]) -> RequestContext {
    let mut c = RequestContext::new(action, resource).unwrap();
    for (k, v) in keys {
        c.add(k, *v);
    }
    c
}

const ROLE: &str = "arn:aws:iam::111122223333:role/app";
const SESSION: &str = "arn:aws:sts::111122223333:assumed-role/app/i-0abc";

#[test]
fn deny_beats_allow_and_silence_is_implicit_deny() {
    let allow = p(r#"{"Statement":{"Sid":"A","Effect":"Allow","Action":"s3:*","Resource":"*"}}"#);
    let deny = p(
        r#"{"Statement":[{"Sid":"X","Effect":"Allow","Action":"sqs:*","Resource":"*"},{"Sid":"D","Effect":"Deny","Action":"s3:Delete*","Resource":"*"}]}"#,
    );
    let set = PolicySet {
        identity: vec![
            NamedPolicy {
                name: "a.json",
                policy: &allow,
            },
            NamedPolicy {
                name: "d.json",
                policy: &deny,
            },
        ],
        ..Default::default()
    };
    let e = set.evaluate(&ctx("s3:DeleteObject", "arn:aws:s3:::b/k", &[]));
    assert_eq!(e.decision, Decision::ExplicitDeny);
    assert_eq!(e.statements.len(), 1);
    assert_eq!(
        (
            e.statements[0].policy.as_str(),
            e.statements[0].sid.as_deref(),
            e.statements[0].index
        ),
        ("d.json", Some("D"), 1)
    );
    let e = set.evaluate(&ctx("s3:getobject", "arn:aws:s3:::b/k", &[]));
    assert_eq!(
        e.decision,
        Decision::Allow,
        "action names are case-insensitive"
    );
    assert_eq!(e.statements[0].sid.as_deref(), Some("A"));
    assert_eq!(
        set.evaluate(&ctx("ec2:RunInstances", "*", &[])).decision,
        Decision::ImplicitDeny
    );
}

#[test]
fn boundary_and_session_policies_only_limit() {
    let identity =
        p(r#"{"Statement":{"Effect":"Allow","Action":["s3:*","iam:*"],"Resource":"*"}}"#);
    let boundary =
        p(r#"{"Statement":{"Effect":"Allow","Action":["s3:*","ec2:*"],"Resource":"*"}}"#);
    let session = p(r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}}"#);
    let set = PolicySet {
        identity: vec![NamedPolicy {
            name: "id",
            policy: &identity,
        }],
        boundary: Some(NamedPolicy {
            name: "boundary",
            policy: &boundary,
        }),
        session: vec![NamedPolicy {
            name: "session",
            policy: &session,
        }],
        ..Default::default()
    };
    let e = set.evaluate(&ctx("s3:GetObject", "arn:aws:s3:::b/k", &[]));
    assert_eq!(e.decision, Decision::Allow);
    assert_eq!(e.statements.len(), 3, "{e:?}");
    let e = set.evaluate(&ctx("s3:PutObject", "arn:aws:s3:::b/k", &[]));
    assert_eq!(e.decision, Decision::ImplicitDeny);
    assert!(e.reason.contains("session"), "{}", e.reason);
    let e = set.evaluate(&ctx("iam:ListRoles", "*", &[]));
    assert!(e.reason.contains("boundary"), "{}", e.reason);
    let e = set.evaluate(&ctx("ec2:RunInstances", "*", &[]));
    assert!(
        e.reason.contains("identity"),
        "a boundary never grants: {}",
        e.reason
    );
}

#[test]
fn resource_policies_by_how_they_name_the_principal() {
    let bucket = |principal: &str| {
        p(&format!(
            r#"{{"Statement":{{"Sid":"R","Effect":"Allow","Principal":{{"AWS":"{principal}"}},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}}}"#
        ))
    };
    let session_policy = p(r#"{"Statement":{"Effect":"Allow","Action":"sqs:*","Resource":"*"}}"#);
    let request = ctx(
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        &[
            ("aws:PrincipalArn", SESSION),
            ("aws:ResourceAccount", "111122223333"),
        ],
    );
    let role_grant = bucket(ROLE);
    let account_grant = bucket("111122223333");
    let eval = |resource: &Policy, with_session: bool| {
        let set = PolicySet {
            resource: Some(NamedPolicy {
                name: "bucket",
                policy: resource,
            }),
            session: if with_session {
                vec![NamedPolicy {
                    name: "session",
                    policy: &session_policy,
                }]
            } else {
                vec![]
            },
            ..Default::default()
        };
        set.evaluate(&request).decision
    };
    // Same account, role named: allowed without an identity policy …
    assert_eq!(eval(&role_grant, false), Decision::Allow);
    // … but a session policy that does not allow still limits a grant to the role.
    assert_eq!(eval(&role_grant, true), Decision::ImplicitDeny);
    // A grant to the account only delegates to IAM: the identity policy must allow.
    assert_eq!(eval(&account_grant, false), Decision::ImplicitDeny);
    // Someone else's role is not named.
    assert_eq!(
        eval(&bucket("arn:aws:iam::111122223333:role/other"), false),
        Decision::ImplicitDeny
    );
    // Cross-account: the resource policy alone is not enough.
    let foreign = ctx(
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        &[
            ("aws:PrincipalArn", SESSION),
            ("aws:ResourceAccount", "444455556666"),
        ],
    );
    let set = PolicySet {
        resource: Some(NamedPolicy {
            name: "bucket",
            policy: &role_grant,
        }),
        ..Default::default()
    };
    assert_eq!(set.evaluate(&foreign).decision, Decision::ImplicitDeny);
    let identity = p(r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}}"#);
    let set = PolicySet {
        identity: vec![NamedPolicy {
            name: "id",
            policy: &identity,
        }],
        resource: Some(NamedPolicy {
            name: "bucket",
            policy: &role_grant,
        }),
        ..Default::default()
    };
    assert_eq!(set.evaluate(&foreign).decision, Decision::Allow);
    let other_bucket = bucket("arn:aws:iam::444455556666:root");
    let set = PolicySet {
        identity: vec![NamedPolicy {
            name: "id",
            policy: &identity,
        }],
        resource: Some(NamedPolicy {
            name: "bucket",
            policy: &other_bucket,
        }),
        ..Default::default()
    };
    assert_eq!(set.evaluate(&foreign).decision, Decision::ImplicitDeny);
}

#[test]
fn resource_policy_deny_with_not_principal() {
    // AWS: NotPrincipal exempts only exact ARNs, and the account must be listed too; a role
    // ARN does not exempt its sessions.
    let bucket = p(&format!(
        r#"{{"Statement":[{{"Sid":"OnlyApp","Effect":"Deny","NotPrincipal":{{"AWS":["{SESSION}","arn:aws:iam::111122223333:root"]}},"Action":"s3:*","Resource":"*"}},
            {{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*"}}]}}"#
    ));
    let set = PolicySet {
        resource: Some(NamedPolicy {
            name: "bucket",
            policy: &bucket,
        }),
        ..Default::default()
    };
    let me = ctx(
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        &[("aws:PrincipalArn", SESSION)],
    );
    let other = ctx(
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        &[("aws:PrincipalArn", "arn:aws:iam::111122223333:user/bob")],
    );
    assert_eq!(set.evaluate(&me).decision, Decision::Allow);
    assert_eq!(set.evaluate(&other).decision, Decision::ExplicitDeny);
    let role_only = p(&format!(
        r#"{{"Statement":[{{"Effect":"Deny","NotPrincipal":{{"AWS":["{ROLE}","arn:aws:iam::111122223333:root"]}},"Action":"s3:*","Resource":"*"}}]}}"#
    ));
    let set = PolicySet {
        resource: Some(NamedPolicy {
            name: "bucket",
            policy: &role_only,
        }),
        ..Default::default()
    };
    assert_eq!(
        set.evaluate(&me).decision,
        Decision::ExplicitDeny,
        "a role ARN does not exempt its sessions"
    );
    let no_account = p(&format!(
        r#"{{"Statement":[{{"Effect":"Deny","NotPrincipal":{{"AWS":"{SESSION}"}},"Action":"s3:*","Resource":"*"}}]}}"#
    ));
    let set = PolicySet {
        resource: Some(NamedPolicy {
            name: "bucket",
            policy: &no_account,
        }),
        ..Default::default()
    };
    assert_eq!(
        set.evaluate(&me).decision,
        Decision::ExplicitDeny,
        "without the account listed the caller is not exempt"
    );
}

#[test]
fn cross_account_needs_a_resource_policy_and_scps_always_apply() {
    let identity = p(r#"{"Statement":{"Effect":"Allow","Action":"sqs:*","Resource":"*"}}"#);
    let set = PolicySet {
        identity: vec![NamedPolicy {
            name: "id",
            policy: &identity,
        }],
        ..Default::default()
    };
    let foreign = ctx(
        "sqs:SendMessage",
        "arn:aws:sqs:us-east-1:999999999999:q",
        &[("aws:PrincipalAccount", "111122223333")],
    );
    let e = set.evaluate(&foreign);
    assert_eq!(e.decision, Decision::ImplicitDeny);
    assert!(e.reason.contains("another account"), "{}", e.reason);
    let own = ctx(
        "sqs:SendMessage",
        "arn:aws:sqs:us-east-1:111122223333:q",
        &[("aws:PrincipalAccount", "111122223333")],
    );
    assert_eq!(set.evaluate(&own).decision, Decision::Allow);

    let scp = p(r#"{"Statement":{"Effect":"Allow","Action":["s3:*","sqs:*"],"Resource":"*"}}"#);
    let bucket = p(&format!(
        r#"{{"Statement":{{"Effect":"Allow","Principal":{{"AWS":"{SESSION}"}},"Action":"*","Resource":"*"}}}}"#
    ));
    let set = PolicySet {
        scp: vec![NamedPolicy {
            name: "scp",
            policy: &scp,
        }],
        resource: Some(NamedPolicy {
            name: "res",
            policy: &bucket,
        }),
        ..Default::default()
    };
    let call = |action: &str| ctx(action, "arn:aws:s3:::b/k", &[("aws:PrincipalArn", SESSION)]);
    assert_eq!(
        set.evaluate(&call("s3:GetObject")).decision,
        Decision::Allow
    );
    let e = set.evaluate(&call("kms:Decrypt"));
    assert_eq!(
        e.decision,
        Decision::ImplicitDeny,
        "a resource policy naming the session does not get around an SCP"
    );
    assert!(e.reason.contains("service control policy"), "{}", e.reason);
}

#[test]
fn substituted_text_is_literal_in_resources_and_arns() {
    let pol = p(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/${aws:username}${*}"},
        {"Effect":"Allow","Action":"sns:Publish","Resource":"*","Condition":{"ArnLike":{"aws:SourceArn":"arn:aws:sns:us-east-1:1:t${*}"}}}]}"#,
    );
    let set = PolicySet {
        identity: vec![NamedPolicy {
            name: "x",
            policy: &pol,
        }],
        ..Default::default()
    };
    assert_eq!(
        set.evaluate(&ctx(
            "s3:GetObject",
            "arn:aws:s3:::b/alice*",
            &[("aws:username", "alice")]
        ))
        .decision,
        Decision::Allow
    );
    assert_eq!(
        set.evaluate(&ctx(
            "s3:GetObject",
            "arn:aws:s3:::b/alice-other",
            &[("aws:username", "alice")]
        ))
        .decision,
        Decision::ImplicitDeny
    );
    assert_eq!(
        set.evaluate(&ctx(
            "s3:GetObject",
            "arn:aws:s3:::b/x",
            &[("aws:username", "*")]
        ))
        .decision,
        Decision::ImplicitDeny,
        "a value is never a wildcard"
    );
    assert_eq!(
        set.evaluate(&ctx(
            "sns:Publish",
            "*",
            &[("aws:SourceArn", "arn:aws:sns:us-east-1:1:t*")]
        ))
        .decision,
        Decision::Allow
    );
    assert_eq!(
        set.evaluate(&ctx(
            "sns:Publish",
            "*",
            &[("aws:SourceArn", "arn:aws:sns:us-east-1:1:t-other")]
        ))
        .decision,
        Decision::ImplicitDeny
    );
}

#[test]
fn statements_without_resource_fail_closed() {
    let pol = p(
        r#"{"Statement":[{"Effect":"Allow","Action":"s3:*"},{"Effect":"Allow","Action":"sqs:*","Resource":"*"},{"Effect":"Deny","Action":"sqs:DeleteQueue"}]}"#,
    );
    let set = PolicySet {
        identity: vec![NamedPolicy {
            name: "x",
            policy: &pol,
        }],
        ..Default::default()
    };
    assert_eq!(
        set.evaluate(&ctx("s3:GetObject", "arn:aws:s3:::b/k", &[]))
            .decision,
        Decision::ImplicitDeny
    );
    assert_eq!(
        set.evaluate(&ctx("sqs:DeleteQueue", "arn:aws:sqs:us-east-1:1:q", &[]))
            .decision,
        Decision::ExplicitDeny
    );
}

#[test]
fn variables_in_resources() {
    let doc = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${aws:username}/*"}}"#;
    let home = p(doc);
    let set = PolicySet {
        identity: vec![NamedPolicy {
            name: "home",
            policy: &home,
        }],
        ..Default::default()
    };
    assert_eq!(
        set.evaluate(&ctx(
            "s3:GetObject",
            "arn:aws:s3:::home/alice/x",
            &[("aws:username", "alice")]
        ))
        .decision,
        Decision::Allow
    );
    assert_eq!(
        set.evaluate(&ctx(
            "s3:GetObject",
            "arn:aws:s3:::home/bob/x",
            &[("aws:username", "alice")]
        ))
        .decision,
        Decision::ImplicitDeny
    );
    assert_eq!(
        set.evaluate(&ctx("s3:GetObject", "arn:aws:s3:::home/alice/x", &[]))
            .decision,
        Decision::ImplicitDeny,
        "unresolved variable matches nothing"
    );
    // Version 2008-10-17 treats ${…} as text.
    let old = p(&doc.replace("2012-10-17", "2008-10-17"));
    let set = PolicySet {
        identity: vec![NamedPolicy {
            name: "old",
            policy: &old,
        }],
        ..Default::default()
    };
    assert_eq!(
        set.evaluate(&ctx(
            "s3:GetObject",
            "arn:aws:s3:::home/alice/x",
            &[("aws:username", "alice")]
        ))
        .decision,
        Decision::ImplicitDeny
    );
    assert_eq!(
        set.evaluate(&ctx(
            "s3:GetObject",
            "arn:aws:s3:::home/${aws:username}/x",
            &[]
        ))
        .decision,
        Decision::Allow
    );
}

#[test]
fn not_action_and_not_resource() {
    let pol = p(
        r#"{"Statement":[{"Effect":"Allow","NotAction":"iam:*","NotResource":"arn:aws:s3:::secret/*"}]}"#,
    );
    let set = PolicySet {
        identity: vec![NamedPolicy {
            name: "x",
            policy: &pol,
        }],
        ..Default::default()
    };
    assert_eq!(
        set.evaluate(&ctx("s3:GetObject", "arn:aws:s3:::public/a", &[]))
            .decision,
        Decision::Allow
    );
    assert_eq!(
        set.evaluate(&ctx("s3:GetObject", "arn:aws:s3:::secret/a", &[]))
            .decision,
        Decision::ImplicitDeny
    );
    assert_eq!(
        set.evaluate(&ctx("IAM:CreateUser", "*", &[])).decision,
        Decision::ImplicitDeny
    );
}
