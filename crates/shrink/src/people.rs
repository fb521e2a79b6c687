//! One role per person, bound to the person: for a role many people share, a role for each
//! person fitted to what that person used ([`crate::per_person`]), whose trust policy lets only
//! that person's sessions assume it, created through IAM and recorded so it can be undone.
//!
//! The binding is `sts:SourceIdentity`. The broker assumes roles with the user (injectively
//! encoded) as source identity, and a source identity, once set, stays on every session chained
//! from it and cannot be changed. So a trust that requires `sts:SourceIdentity = alice` and names
//! as principal only what the broker runs as (or what the shared role trusted) admits alice's
//! sessions and nobody else's. Setting a source identity needs `sts:SetSourceIdentity` in the
//! trust, so the bound statements allow it beside `sts:AssumeRole`.
//!
//! Only statements that let AWS principals assume the role carry over: a service (EC2, Lambda,
//! CodeBuild) or a federated identity provider has no person's source identity, and `"*"` or
//! `NotPrincipal` would admit more than the shared role's principals. Deny statements carry
//! over unchanged. What is dropped is said in the proposal's notes.

use serde::Serialize;
use serde_json::{json, Map, Value};

use aws::Session;
use store::{CreatedRole, Store};

use crate::plan::{per_person, PlanError, PlanOptions};
use crate::Usage;

/// The inline policy each person's role gets.
pub const POLICY_NAME: &str = "credwarden-per-user";
/// Tag: the shared role (ARN) a person's role was fitted from.
pub const TAG_SOURCE: &str = "credwarden:per-user-of";
/// Tag: the person (their source identity).
pub const TAG_PERSON: &str = "credwarden:person";

#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("role {role}: {reason}")]
    Trust { role: String, reason: String },
}

/// A person's proposed role, bound to them.
#[derive(Clone, Debug, Serialize)]
pub struct BoundRole {
    /// The person as CloudTrail showed them (source identity, else session name).
    pub person: String,
    /// The `sts:SourceIdentity` the trust requires.
    pub source_identity: String,
    /// False when the person was seen by session name only: their sessions so far carried no
    /// source identity, so only sessions that set it (the broker's) can use the new role.
    pub seen_with_source_identity: bool,
    pub name: String,
    pub trust: Value,
    /// `None` when nothing the shared role grants was used by the person.
    pub policy: Option<Value>,
    pub used: Vec<String>,
}

/// The proposals for one shared role.
#[derive(Clone, Debug, Serialize)]
pub struct Proposal {
    pub shared_role: String,
    pub shared_arn: String,
    pub roles: Vec<BoundRole>,
    /// What of the shared role's trust did not carry over, and why.
    pub notes: Vec<String>,
}

/// Fit and bind one role per person who used `role` in the window. `principal`: the ARN that
/// may assume the new roles (the broker's role); default: the AWS principals the shared
/// role's trust names.
pub fn propose(
    inv: &aws::Inventory,
    usage: &Usage,
    role: &str,
    opts: &PlanOptions,
    principal: Option<&str>,
) -> Result<Proposal, PeopleError> {
    let shared = inv
        .role(role)
        .ok_or_else(|| PlanError::UnknownRole(role.to_owned()))?;
    let shared_trust: Option<Value> = shared
        .trust
        .as_ref()
        .map(|t| serde_json::from_str(&t.to_compact_json()).expect("policy JSON"));
    let with_source_identity: std::collections::BTreeSet<&str> = usage
        .source_identity_use
        .keys()
        .filter(|(_, r)| *r == shared.arn)
        .map(|(si, _)| si.as_str())
        .collect();
    let mut notes = Vec::new();
    let mut roles = Vec::new();
    for p in per_person(inv, usage, role, opts)? {
        let (trust, dropped) =
            bind_trust(shared_trust.as_ref(), principal, &p.person).map_err(|reason| {
                PeopleError::Trust {
                    role: shared.name.clone(),
                    reason,
                }
            })?;
        // Every person's trust drops the same statements: say it once.
        if notes.is_empty() {
            notes = dropped;
        }
        roles.push(BoundRole {
            seen_with_source_identity: with_source_identity.contains(p.person.as_str()),
            source_identity: p.person.clone(),
            person: p.person,
            name: p.suggested_name,
            trust,
            policy: p.policy,
            used: p.used,
        });
    }
    Ok(Proposal {
        shared_role: shared.name.clone(),
        shared_arn: shared.arn.clone(),
        roles,
        notes,
    })
}

/// Strings of a policy element that is a string or a list of strings.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The trust of a person's role: the shared trust's Deny statements as written, and each of
/// its statements that lets AWS principals assume the role (or one for `principal`), limited to
/// sessions whose source identity is `identity`. `Err` when no statement admits anyone.
/// Returns the trust and what was dropped.
pub fn bind_trust(
    shared: Option<&Value>,
    principal: Option<&str>,
    identity: &str,
) -> Result<(Value, Vec<String>), String> {
    let statements: Vec<Value> = match shared.and_then(|t| t.get("Statement")) {
        Some(Value::Array(a)) => a.clone(),
        Some(one @ Value::Object(_)) => vec![one.clone()],
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    let mut dropped = Vec::new();
    let bound = |sid: Option<&Value>, aws: Value, condition: Map<String, Value>| {
        let mut st = json!({
            "Effect": "Allow",
            "Principal": {"AWS": aws},
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
            "Condition": condition,
        });
        if let Some(sid) = sid {
            st["Sid"] = sid.clone();
        }
        st
    };
    let only_identity = || {
        let mut c = Map::new();
        c.insert(
            "StringEquals".into(),
            json!({"sts:SourceIdentity": identity}),
        );
        c
    };
    for (i, st) in statements.iter().enumerate() {
        let name = st
            .get("Sid")
            .and_then(Value::as_str)
            .map(|s| format!("statement {s:?}"))
            .unwrap_or_else(|| format!("statement {}", i + 1));
        if st.get("Effect").and_then(Value::as_str) == Some("Deny") {
            out.push(st.clone());
            continue;
        }
        if principal.is_some() {
            dropped.push(format!("{name}: replaced by the principal given"));
            continue;
        }
        if st.get("NotPrincipal").is_some() || st.get("NotAction").is_some() {
            dropped.push(format!(
                "{name}: NotPrincipal/NotAction admit more than can be bound to a person"
            ));
            continue;
        }
        let actions = strings(st.get("Action"));
        if !actions
            .iter()
            .any(|a| iam::wildcard::glob_match_ignore_case(a, "sts:AssumeRole"))
        {
            dropped.push(format!(
                "{name}: does not allow sts:AssumeRole ({})",
                actions.join(", ")
            ));
            continue;
        }
        let p = st.get("Principal");
        let aws = match p {
            Some(Value::Object(o)) => o.get("AWS").cloned(),
            _ => None,
        };
        if let Some(Value::Object(o)) = p {
            for (kind, who) in o.iter().filter(|(k, _)| *k != "AWS") {
                dropped.push(format!(
                    "{name}: {kind} principal {} (its sessions are no person's)",
                    strings(Some(who)).join(", ")
                ));
            }
        }
        let Some(aws) = aws else {
            if !matches!(p, Some(Value::Object(_))) {
                dropped.push(format!(
                    "{name}: principal {} is not an AWS principal list",
                    p.map(Value::to_string).unwrap_or_default()
                ));
            }
            continue;
        };
        if strings(Some(&aws)).iter().any(|a| a == "*") {
            dropped.push(format!(
                "{name}: AWS principal \"*\" would admit anyone with this source identity"
            ));
            continue;
        }
        let mut condition = match st.get("Condition") {
            Some(Value::Object(c)) => c.clone(),
            _ => Map::new(),
        };
        let equals = condition
            .entry("StringEquals")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(equals) = equals else {
            return Err(format!("{name}: StringEquals is not an object"));
        };
        let existing: Vec<String> = equals
            .keys()
            .filter(|k| k.eq_ignore_ascii_case("sts:SourceIdentity"))
            .cloned()
            .collect();
        let mut admits = true;
        for k in existing {
            admits &= strings(equals.get(&k)).iter().any(|v| v == identity);
            equals.remove(&k);
        }
        if !admits {
            dropped.push(format!(
                "{name}: its source identity condition does not admit {identity}"
            ));
            continue;
        }
        equals.insert("sts:SourceIdentity".into(), Value::from(identity));
        out.push(bound(st.get("Sid"), aws, condition));
    }
    if let Some(principal) = principal {
        out.push(bound(None, Value::from(principal), only_identity()));
    }
    if !out
        .iter()
        .any(|s| s.get("Effect").and_then(Value::as_str) == Some("Allow"))
    {
        return Err(format!(
            "no statement of its trust lets an AWS principal assume it, so no person's sessions can be bound to a copy ({}); name the broker's role with --broker-principal",
            if dropped.is_empty() { "no trust policy".to_owned() } else { dropped.join("; ") }
        ));
    }
    let trust = json!({"Version": iam::policy::VERSION_2012, "Statement": out});
    // What IAM will be given must be a policy the evaluator reads the same way.
    iam::Policy::from_value(&trust).map_err(|e| format!("the bound trust does not parse: {e}"))?;
    Ok((trust, dropped))
}

/// The ARN of the role `name` in the account (and partition) of `shared_arn`: where a person's
/// role is created.
pub fn role_arn_beside(shared_arn: &str, name: &str) -> String {
    let account = credwarden_core::account::arn_account(shared_arn).unwrap_or_default();
    let partition = shared_arn.split(':').nth(1).unwrap_or("aws");
    format!("arn:{partition}:iam::{account}:role/{name}")
}

/// What happened to one person's role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    Created {
        arn: String,
    },
    /// A role of that name exists with exactly this content already.
    AlreadyThere {
        arn: String,
        ours: bool,
    },
    /// A role of that name exists with other content: left as it is.
    Refused {
        reason: String,
    },
    /// The person used nothing the shared role grants: no role to create.
    NothingToGrant,
}

/// Documents equal as JSON (IAM may reorder nothing but whitespace; compare the values).
fn same_document(a: &str, b: &Value) -> bool {
    serde_json::from_str::<Value>(a).is_ok_and(|a| &a == b)
}

/// Create each proposed role in `session` (the shared role's account), recording it in `store`
/// before creating it so that undo knows it. Idempotent: a role already there as proposed is
/// left; one with other content is refused, never overwritten.
pub fn create(
    session: &Session,
    store: &Store,
    proposal: &Proposal,
    now_ms: i64,
) -> Result<Vec<(String, Created)>, PeopleError> {
    let mut out = Vec::new();
    for r in &proposal.roles {
        let Some(policy) = &r.policy else {
            out.push((r.name.clone(), Created::NothingToGrant));
            continue;
        };
        let outcome = match session.get_role(&r.name)? {
            Some(found) => {
                let (inline, attached) = session.role_state(&r.name)?;
                let same_trust = same_document(&found.trust, &r.trust);
                let same_policy = attached.is_empty()
                    && inline.len() == 1
                    && inline
                        .get(POLICY_NAME)
                        .is_some_and(|p| same_document(&p.text, policy));
                if same_trust && same_policy {
                    let ours = store
                        .created_roles(Some(&proposal.shared_arn))?
                        .iter()
                        .any(|c| c.arn == found.arn);
                    Created::AlreadyThere {
                        arn: found.arn,
                        ours,
                    }
                } else {
                    let what = match (same_trust, same_policy) {
                        (false, false) => "trust policy and permissions",
                        (false, true) => "trust policy",
                        _ => "permissions",
                    };
                    Created::Refused {
                        reason: format!(
                            "a role of that name exists with another {what}: not overwritten"
                        ),
                    }
                }
            }
            None => create_one(session, store, proposal, r, policy, now_ms)?,
        };
        out.push((r.name.clone(), outcome));
    }
    Ok(out)
}

fn create_one(
    session: &Session,
    store: &Store,
    proposal: &Proposal,
    r: &BoundRole,
    policy: &Value,
    now_ms: i64,
) -> Result<Created, PeopleError> {
    let arn = role_arn_beside(&proposal.shared_arn, &r.name);
    let trust = r.trust.to_string();
    let policy_text = policy.to_string();
    // Recorded first: a role created but not recorded could not be undone.
    store.created_role_record(&CreatedRole {
        arn: arn.clone(),
        name: r.name.clone(),
        source_role: proposal.shared_arn.clone(),
        person: r.source_identity.clone(),
        trust: trust.clone(),
        policy_name: POLICY_NAME.into(),
        policy: policy_text.clone(),
        created_ms: now_ms,
    })?;
    // Tag values take letters, digits, spaces and _.:/=+-@ only: a comma (allowed in a source
    // identity) becomes a space; the trust holds the exact identity.
    let tags = vec![
        (TAG_SOURCE.to_owned(), proposal.shared_arn.clone()),
        (TAG_PERSON.to_owned(), r.source_identity.replace(',', " ")),
    ];
    let description = format!(
        "{} for {} only (credwarden shrink per-user)",
        proposal.shared_role, r.source_identity
    );
    let description: String = description.chars().take(1000).collect();
    let created = match session.create_role(&r.name, &trust, &description, &tags) {
        Ok(created) => created,
        Err(e) => {
            // Not created (a role of that name may have appeared meanwhile): not ours to undo.
            store.created_role_forget(&arn)?;
            return Err(e.into());
        }
    };
    if let Err(e) = session.put_role_policy(&r.name, POLICY_NAME, &policy_text) {
        // A role without its policy grants nothing; it stays recorded so undo removes it.
        return Err(e.into());
    }
    Ok(Created::Created {
        arn: if created.is_empty() { arn } else { created },
    })
}

/// What undo did with one created role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Undone {
    Deleted,
    /// Gone already (deleted by someone else): forgotten.
    AlreadyGone,
    /// Changed since it was created: left in place (and still recorded).
    Changed {
        what: String,
    },
}

/// Delete the roles `create` made from `shared_arn`, each only if it is still exactly as
/// created (trust, its one inline policy, nothing attached).
pub fn undo(
    session: &Session,
    store: &Store,
    shared_arn: &str,
) -> Result<Vec<(CreatedRole, Undone)>, PeopleError> {
    let mut out = Vec::new();
    for c in store.created_roles(Some(shared_arn))? {
        let Some(found) = session.get_role(&c.name)? else {
            store.created_role_forget(&c.arn)?;
            out.push((c, Undone::AlreadyGone));
            continue;
        };
        let (inline, attached) = session.role_state(&c.name)?;
        let policy: Value = serde_json::from_str(&c.policy).unwrap_or(Value::Null);
        let trust: Value = serde_json::from_str(&c.trust).unwrap_or(Value::Null);
        let mut changed = Vec::new();
        if found.arn != c.arn {
            changed.push(format!("its ARN is {}", found.arn));
        }
        if !same_document(&found.trust, &trust) {
            changed.push("trust policy".to_owned());
        }
        if !attached.is_empty() {
            changed.push(format!("attached {}", attached.join(", ")));
        }
        for (name, p) in &inline {
            if name != &c.policy_name || !same_document(&p.text, &policy) {
                changed.push(format!("inline policy {name}"));
            }
        }
        if !changed.is_empty() {
            out.push((
                c,
                Undone::Changed {
                    what: changed.join(", "),
                },
            ));
            continue;
        }
        if inline.contains_key(&c.policy_name) {
            session.delete_role_policy(&c.name, &c.policy_name)?;
        }
        session.delete_role(&c.name)?;
        store.created_role_forget(&c.arn)?;
        out.push((c, Undone::Deleted));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust(statements: Value) -> Value {
        json!({"Version": "2012-10-17", "Statement": statements})
    }

    #[test]
    fn the_trust_admits_only_the_persons_sessions() {
        let shared = trust(json!([
            {"Sid": "Broker", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/broker", "Service": "codebuild.amazonaws.com"},
             "Action": ["sts:AssumeRole", "sts:TagSession"], "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}},
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"},
            {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
        ]));
        let (bound, dropped) = bind_trust(Some(&shared), None, "alice").unwrap();
        assert_eq!(
            bound["Statement"][0],
            json!({"Sid": "Broker", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/broker"},
                   "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
                   "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}, "StringEquals": {"sts:SourceIdentity": "alice"}}})
        );
        assert_eq!(
            bound["Statement"][1], shared["Statement"][2],
            "Deny statements carry over as written"
        );
        assert_eq!(bound["Statement"].as_array().unwrap().len(), 2);
        assert_eq!(dropped.len(), 2, "{dropped:?}");
        assert!(dropped[0].contains("Service principal codebuild.amazonaws.com"));
        assert!(dropped[1].contains("statement 2: Service principal ec2.amazonaws.com"));
    }

    #[test]
    fn a_given_principal_replaces_the_shared_ones() {
        let shared = trust(
            json!([{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]),
        );
        assert!(bind_trust(Some(&shared), None, "bob")
            .unwrap_err()
            .contains("--broker-principal"));
        let (bound, _) =
            bind_trust(Some(&shared), Some("arn:aws:iam::1:role/broker"), "bob").unwrap();
        assert_eq!(
            bound["Statement"],
            json!([{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/broker"},
                    "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
                    "Condition": {"StringEquals": {"sts:SourceIdentity": "bob"}}}])
        );
    }

    #[test]
    fn wider_or_contradicting_statements_are_dropped() {
        let shared = trust(json!([
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"},
            {"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::1:root"}, "Action": "sts:AssumeRole"},
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "sts:AssumeRole",
             "Condition": {"StringEquals": {"sts:sourceidentity": ["carol", "dave"]}}},
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "sts:Assume*",
             "Condition": {"StringEquals": {"sts:SourceIdentity": ["alice", "dave"]}}}
        ]));
        let (bound, dropped) = bind_trust(Some(&shared), None, "alice").unwrap();
        assert_eq!(dropped.len(), 3, "{dropped:?}");
        assert!(dropped[2].contains("does not admit alice"));
        assert_eq!(
            bound["Statement"][0]["Condition"],
            json!({"StringEquals": {"sts:SourceIdentity": "alice"}}),
            "an existing source identity condition is narrowed to the person"
        );
    }
}
