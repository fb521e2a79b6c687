//! Right-sized permissions too large for a role's inline policies, split into customer
//! managed policies.
//!
//! IAM limits the inline policies of a role to 10,240 characters together, and a managed
//! policy to 6,144. A plan that narrows `ReadOnlyAccess` or `s3:*` to the exact actions a role
//! used can exceed the first: skipping such a role would leave its broadest grants in place, so
//! the statements are packed into as few managed policies as fit, each created by the plan's
//! apply under [`CREATED_PATH`] — the mark by which a rollback knows which policies it may
//! delete. Splitting never changes meaning: statements are unions, and a statement whose
//! `Action` list alone is too large becomes several statements with the same effect, resources
//! and conditions. A `NotAction` statement cannot be split that way, and more policies than a
//! role may attach cannot be attached: then the role is skipped, as before.

use std::collections::{BTreeMap, BTreeSet};

use iam::{Patterns, Policy, Statement};

/// IAM's limit on one customer managed policy, in characters without whitespace.
pub const MANAGED_LIMIT: usize = 6_144;

/// Managed policies a role may have attached (IAM's default quota).
pub const ATTACHED_LIMIT: usize = 10;

/// The IAM path of the managed policies a plan creates. Only policies under it are ever
/// deleted by credwarden, and only once nothing is attached to them.
pub const CREATED_PATH: &str = "/credwarden-shrink/";

/// Why a role's right-sized statements cannot be put into managed policies.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SplitError {
    #[error("a statement ({0}) is over IAM's {MANAGED_LIMIT}-character managed policy limit and cannot be split")]
    Unsplittable(String),
    #[error("{needed} managed policies would be needed besides the {attached} attached; a role may have {ATTACHED_LIMIT}")]
    TooMany { needed: usize, attached: usize },
    #[error("{0} is not a role ARN")]
    NotRoleArn(String),
}

/// The ARN of the `n`th (from 1) policy created for the role `role_arn`.
fn created_arn(role_arn: &str, n: usize) -> Result<String, SplitError> {
    let not_role = || SplitError::NotRoleArn(role_arn.to_owned());
    let parts = iam::wildcard::arn_parts(role_arn).ok_or_else(not_role)?;
    let name = parts[5].strip_prefix("role/").ok_or_else(not_role)?;
    let name = name.rsplit('/').next().unwrap_or(name);
    Ok(format!(
        "arn:{}:iam::{}:policy{CREATED_PATH}{name}-{n}",
        parts[1], parts[4]
    ))
}

/// Whether `arn` is a policy credwarden created (under [`CREATED_PATH`]).
pub fn is_created(arn: &str) -> bool {
    iam::wildcard::arn_parts(arn).is_some_and(|p| {
        p[5].strip_prefix("policy")
            .is_some_and(|rest| rest.starts_with(CREATED_PATH))
    })
}

/// The size IAM counts: the compact JSON (no whitespace outside strings; a space inside a
/// string is counted, so this never under-counts).
fn size(statements: &[Statement]) -> usize {
    document(statements.to_vec()).to_compact_json().len()
}

fn document(statements: Vec<Statement>) -> Policy {
    Policy {
        version: Some(iam::policy::VERSION_2012.into()),
        id: None,
        statements,
    }
}

/// `s` as statements that each fit one managed policy: its `Action` list halved until each
/// part fits.
fn fitting(s: Statement, out: &mut Vec<Statement>) -> Result<(), SplitError> {
    if size(std::slice::from_ref(&s)) <= MANAGED_LIMIT {
        out.push(s);
        return Ok(());
    }
    match &s.action {
        Patterns::Only(actions) if actions.len() > 1 => {
            let (a, b) = actions.split_at(actions.len() / 2);
            for half in [a, b] {
                let mut part = s.clone();
                part.action = Patterns::Only(half.to_vec());
                fitting(part, out)?;
            }
            Ok(())
        }
        // A statement applies when any of its resources matches: a resource list splits the
        // same way, for Allow and Deny alike.
        _ if matches!(&s.resource, Some(Patterns::Only(r)) if r.len() > 1) => {
            let Some(Patterns::Only(resources)) = &s.resource else {
                unreachable!("matched above")
            };
            let (a, b) = resources.split_at(resources.len() / 2);
            for half in [a, b] {
                let mut part = s.clone();
                part.resource = Some(Patterns::Only(half.to_vec()));
                fitting(part, out)?;
            }
            Ok(())
        }
        _ => Err(SplitError::Unsplittable(s.sid.clone().unwrap_or_else(
            || s.action.items().join(",").chars().take(60).collect(),
        ))),
    }
}

/// Give every statement of one document a distinct `Sid`: IAM refuses duplicates, and split
/// or merged statements may share one. Sids are alphanumeric, so the suffix is a number.
fn distinct_sids(statements: &mut [Statement]) {
    let mut seen = BTreeSet::new();
    for s in statements {
        if let Some(sid) = &s.sid {
            let mut candidate = sid.clone();
            let mut n = 2;
            while !seen.insert(candidate.clone()) {
                candidate = format!("{sid}{n}");
                n += 1;
            }
            s.sid = Some(candidate);
        }
    }
}

/// The statements of `inline` (every right-sized inline document of the role) as customer
/// managed policies for `role_arn`: ARN → document, in order, each within
/// [`MANAGED_LIMIT`]; `attached` managed policies stay attached beside them.
pub fn into_managed(
    role_arn: &str,
    inline: &BTreeMap<String, Policy>,
    attached: usize,
) -> Result<BTreeMap<String, Policy>, SplitError> {
    let mut statements = Vec::new();
    for doc in inline.values() {
        for s in &doc.statements {
            fitting(s.clone(), &mut statements)?;
        }
    }
    // First fit in order: statements of one source document stay together where they can.
    let mut chunks: Vec<Vec<Statement>> = Vec::new();
    for s in statements {
        let fits = chunks.last().is_some_and(|c| {
            let mut with = c.clone();
            with.push(s.clone());
            distinct_sids(&mut with);
            size(&with) <= MANAGED_LIMIT
        });
        match chunks.last_mut() {
            Some(c) if fits => c.push(s),
            _ => chunks.push(vec![s]),
        }
    }
    if chunks.len() + attached > ATTACHED_LIMIT {
        return Err(SplitError::TooMany {
            needed: chunks.len(),
            attached,
        });
    }
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            distinct_sids(&mut c);
            Ok((created_arn(role_arn, i + 1)?, document(c)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/team/auditor";

    fn allow(sid: Option<&str>, actions: Vec<String>) -> Statement {
        let p = Policy::parse(
            &serde_json::json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": actions, "Resource": "*"}]})
            .to_string(),
        )
        .unwrap();
        let mut s = p.statements[0].clone();
        s.sid = sid.map(str::to_owned);
        s
    }

    fn actions(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("ec2:DescribeThing{i:04}")).collect()
    }

    #[test]
    fn a_large_statement_is_split_into_policies_that_each_fit_and_grant_the_same() {
        let big = allow(Some("Reads"), actions(900));
        let inline = BTreeMap::from([("p".to_owned(), document(vec![big]))]);
        let out = into_managed(ROLE, &inline, 1).unwrap();
        assert!(out.len() > 1, "{} policies", out.len());
        let mut granted = Vec::new();
        for (i, (arn, doc)) in out.iter().enumerate() {
            assert_eq!(
                arn,
                &format!(
                    "arn:aws:iam::123456789012:policy/credwarden-shrink/auditor-{}",
                    i + 1
                )
            );
            assert!(is_created(arn));
            let text = doc.to_compact_json();
            assert!(text.len() <= MANAGED_LIMIT, "{}", text.len());
            // Valid IAM: it parses back, and Sids are distinct within the document.
            let back = Policy::parse(&text).unwrap();
            let sids: BTreeSet<_> = back.statements.iter().map(|s| s.sid.clone()).collect();
            assert_eq!(sids.len(), back.statements.len());
            for s in back.statements {
                granted.extend(s.action.items().to_vec());
            }
        }
        granted.sort();
        assert_eq!(
            granted,
            actions(900),
            "the union grants exactly what was right-sized"
        );
    }

    #[test]
    fn small_statements_share_a_policy_and_notaction_or_too_many_refuse() {
        let inline = BTreeMap::from([
            ("a".to_owned(), document(vec![allow(Some("S"), actions(3))])),
            ("b".to_owned(), document(vec![allow(Some("S"), actions(2))])),
        ]);
        let out = into_managed(ROLE, &inline, 0).unwrap();
        assert_eq!(out.len(), 1);
        let doc = out.values().next().unwrap();
        let sids: Vec<_> = doc
            .statements
            .iter()
            .map(|s| s.sid.clone().unwrap())
            .collect();
        assert_eq!(sids, ["S", "S2"]);

        // A Deny over many resources splits by resource, each part denying the same actions.
        let mut deny = allow(Some("Guard"), vec!["ec2:TerminateInstances".into()]);
        deny.effect = iam::Effect::Deny;
        let arns: Vec<String> = (0..200)
            .map(|i| format!("arn:aws:ec2:us-east-1:123456789012:instance/i-{i:017}"))
            .collect();
        deny.resource = Some(Patterns::Only(arns.clone()));
        let inline = BTreeMap::from([("p".to_owned(), document(vec![deny]))]);
        let out = into_managed(ROLE, &inline, 0).unwrap();
        assert!(out.len() > 1);
        let mut covered = Vec::new();
        for doc in out.values() {
            assert!(doc.to_compact_json().len() <= MANAGED_LIMIT);
            for s in &doc.statements {
                assert_eq!(s.effect, iam::Effect::Deny);
                assert_eq!(s.action.items(), ["ec2:TerminateInstances"]);
                covered.extend(s.resource.as_ref().unwrap().items().to_vec());
            }
        }
        assert_eq!(covered, arns);

        let mut not_action = allow(Some("Broad"), actions(900));
        not_action.action = Patterns::AllExcept(actions(900));
        let inline = BTreeMap::from([("p".to_owned(), document(vec![not_action]))]);
        assert_eq!(
            into_managed(ROLE, &inline, 0),
            Err(SplitError::Unsplittable("Broad".into()))
        );

        let inline = BTreeMap::from([("p".to_owned(), document(vec![allow(None, actions(900))]))]);
        assert!(matches!(
            into_managed(ROLE, &inline, 9),
            Err(SplitError::TooMany { attached: 9, .. })
        ));
        assert!(!is_created("arn:aws:iam::aws:policy/ReadOnlyAccess"));
        assert!(!is_created("arn:aws:iam::123456789012:policy/other/x"));
    }
}
