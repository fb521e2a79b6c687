//! Delivery lockdown: a principal may pass only the roles its own application owns.
//!
//! Passing a role (`iam:PassRole`) is how a deployment gives a workload its permissions —
//! and how an attacker with a deploy credential borrows someone else's. The policy allows
//! `iam:PassRole` only when the role's owner tag equals the caller's application tag
//! (`iam:ResourceTag/<owner>` = `${aws:PrincipalTag/<app>}`) and only to the services the
//! account's roles are meant for (`iam:PassedToService`), and explicitly denies every other
//! pass. An untagged role or an untagged caller matches nothing, so both are denied: fail
//! closed.

use std::collections::BTreeSet;

use aws::{Inventory, Principal};
use iam::{Decision, NamedPolicy, Policy, PolicySet, Principals, RequestContext};
use serde::Serialize;
use serde_json::json;

use crate::verify::{Case, Expect};

/// What the lockdown keys on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lockdown {
    /// Tag on roles naming the owning application.
    pub owner_tag: String,
    /// Tag on principals naming their application.
    pub app_tag: String,
    /// Services roles may be passed to; empty = any service.
    pub services: Vec<String>,
}

impl Lockdown {
    /// Defaults from the inventory: the services that the account's roles trust.
    pub fn new(owner_tag: &str, app_tag: &str, services: Vec<String>, inv: &Inventory) -> Lockdown {
        let services = if services.is_empty() {
            trusted_services(inv)
        } else {
            services
        };
        Lockdown {
            owner_tag: owner_tag.to_owned(),
            app_tag: app_tag.to_owned(),
            services,
        }
    }

    pub fn policy(&self) -> Policy {
        let owner_key = format!("iam:ResourceTag/{}", self.owner_tag);
        let app_key = format!("aws:PrincipalTag/{}", self.app_tag);
        let app_var = format!("${{{app_key}}}");
        let mut allow_cond = json!({"StringEquals": {&owner_key: &app_var}});
        if !self.services.is_empty() {
            allow_cond["StringEquals"]["iam:PassedToService"] = json!(self.services);
        }
        let mut statements = vec![
            json!({"Sid": "PassOnlyRolesOurApplicationOwns", "Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::*:role/*", "Condition": allow_cond}),
            // The denials hold whatever else the principal is granted. Missing tags are denied
            // by statements of their own rather than through an unresolvable variable.
            json!({"Sid": "DenyPassingRolesOfOtherApplications", "Effect": "Deny", "Action": "iam:PassRole", "Resource": "*",
                   "Condition": {"StringNotEquals": {&owner_key: &app_var}}}),
            json!({"Sid": "DenyPassingRolesWithoutOwner", "Effect": "Deny", "Action": "iam:PassRole", "Resource": "*", "Condition": {"Null": {&owner_key: "true"}}}),
            json!({"Sid": "DenyPassingWithoutApplicationTag", "Effect": "Deny", "Action": "iam:PassRole", "Resource": "*", "Condition": {"Null": {&app_key: "true"}}}),
            // Whoever may pass roles must not be able to move the tags the decision rests on.
            json!({"Sid": "DenyChangingOwnershipTags", "Effect": "Deny", "Action": ["iam:TagRole", "iam:UntagRole", "iam:TagUser", "iam:UntagUser"], "Resource": "*",
                   "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": [&self.owner_tag, &self.app_tag]}}}),
        ];
        if !self.services.is_empty() {
            statements.insert(
                4,
                json!({"Sid": "DenyPassingToOtherServices", "Effect": "Deny", "Action": "iam:PassRole", "Resource": "*", "Condition": {"StringNotEquals": {"iam:PassedToService": self.services}}}),
            );
        }
        Policy::from_value(&json!({"Version": "2012-10-17", "Statement": statements}))
            .expect("generated lockdown policies are valid")
    }

    /// Inside and outside passes, with application names from the inventory's own tags.
    pub fn cases(&self, inv: &Inventory) -> Vec<Case> {
        let owners: BTreeSet<&str> = inv
            .roles
            .iter()
            .filter_map(|r| r.tags.get(&self.owner_tag))
            .map(String::as_str)
            .collect();
        let mut names = owners.iter().copied();
        let own = names.next().unwrap_or("payments").to_owned();
        let other = names
            .next()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{own}-other"));
        let service = self
            .services
            .first()
            .cloned()
            .unwrap_or_else(|| "ec2.amazonaws.com".to_owned());
        let role = "arn:aws:iam::111122223333:role/probe";
        let owner_key = format!("iam:ResourceTag/{}", self.owner_tag);
        let app_key = format!("aws:PrincipalTag/{}", self.app_tag);
        let case = |label: &str, expect: Expect, keys: &[(&str, &str)]| {
            Case::new(label, expect, "iam:PassRole", role, keys)
        };
        let mut v = vec![
            case(
                "own application's role",
                Expect::Allowed,
                &[
                    (&app_key, &own),
                    (&owner_key, &own),
                    ("iam:PassedToService", &service),
                ],
            ),
            case(
                "another application's role",
                Expect::Denied,
                &[
                    (&app_key, &own),
                    (&owner_key, &other),
                    ("iam:PassedToService", &service),
                ],
            ),
            case(
                "a role with no owner tag",
                Expect::Denied,
                &[(&app_key, &own), ("iam:PassedToService", &service)],
            ),
            case(
                "a caller with no application tag",
                Expect::Denied,
                &[(&owner_key, &own), ("iam:PassedToService", &service)],
            ),
        ];
        // Tag values compare case-sensitively: "Payments" does not own "payments"' roles.
        let recased = if own.to_uppercase() != own {
            own.to_uppercase()
        } else {
            own.to_lowercase()
        };
        if recased != own {
            v.push(case(
                "owner differing only in case",
                Expect::Denied,
                &[
                    (&app_key, &own),
                    (&owner_key, &recased),
                    ("iam:PassedToService", &service),
                ],
            ));
        }
        v.push(Case::new(
            "change a role's owner tag",
            Expect::Denied,
            "iam:TagRole",
            role,
            &[(&app_key, &own), ("aws:TagKeys", &self.owner_tag)],
        ));
        v.push(Case::new(
            "remove its own application tag",
            Expect::Denied,
            "iam:UntagUser",
            "arn:aws:iam::111122223333:user/deployer",
            &[(&app_key, &own), ("aws:TagKeys", &self.app_tag)],
        ));
        if !self.services.is_empty() {
            let foreign_service = [
                "glue.amazonaws.com",
                "sagemaker.amazonaws.com",
                "codebuild.amazonaws.com",
            ]
            .into_iter()
            .find(|s| !self.services.iter().any(|x| x == s))
            .unwrap_or("example.amazonaws.com");
            v.push(case(
                "own role, to a service not listed",
                Expect::Denied,
                &[
                    (&app_key, &own),
                    (&owner_key, &own),
                    ("iam:PassedToService", foreign_service),
                ],
            ));
        }
        v
    }
}

/// Services named as `Service` principals in the account's trust policies.
pub fn trusted_services(inv: &Inventory) -> Vec<String> {
    let mut out = BTreeSet::new();
    for r in &inv.roles {
        for s in r.trust.iter().flat_map(|t| t.statements.iter()) {
            if let Some((Principals::Listed(map), false)) = &s.principal {
                out.extend(map.get("Service").into_iter().flatten().cloned());
            }
        }
    }
    out.into_iter().collect()
}

/// What the inventory says about passing roles today.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PassRoleReport {
    /// Roles without the owner tag: nobody can pass them under the lockdown.
    pub roles_without_owner: Vec<String>,
    /// Principals whose policies let them pass a role their application does not own.
    pub can_pass_any_role: Vec<PassAny>,
    /// Principals that could not be judged, and why (a managed policy missing from the inventory).
    pub unknown: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PassAny {
    pub principal: String,
    pub statements: Vec<String>,
    /// The roles it could pass (the untagged probe role first when it can pass anything).
    pub roles: Vec<String>,
}

/// Judge every role and user: can it pass a role its application does not own? Each
/// principal is tried against every role in the inventory owned by another application (or
/// by none) and an untagged probe role, for every service the lockdown names.
pub fn report(inv: &Inventory, lock: &Lockdown) -> PassRoleReport {
    let mut r = PassRoleReport {
        roles_without_owner: inv
            .roles
            .iter()
            .filter(|r| !r.tags.contains_key(&lock.owner_tag))
            .map(|r| r.arn.clone())
            .collect(),
        ..Default::default()
    };
    let services: Vec<&str> = if lock.services.is_empty() {
        vec!["ec2.amazonaws.com"]
    } else {
        lock.services.iter().map(String::as_str).collect()
    };
    for p in inv.roles.iter().chain(inv.users.iter()) {
        let mut docs: Vec<(String, &Policy)> = p
            .inline
            .iter()
            .map(|(n, d)| (format!("{} inline {n}", p.name), d))
            .collect();
        let mut missing: Vec<String> = p
            .unreadable
            .iter()
            .map(|n| format!("inline policy {n} unreadable"))
            .collect();
        let mut attached: Vec<&String> = p.attached.iter().collect();
        for g in &p.groups {
            match inv.groups.iter().find(|x| &x.name == g) {
                Some(g) => {
                    docs.extend(
                        g.inline
                            .iter()
                            .map(|(n, d)| (format!("group {} inline {n}", g.name), d)),
                    );
                    missing.extend(
                        g.unreadable
                            .iter()
                            .map(|n| format!("group {} inline policy {n} unreadable", g.name)),
                    );
                    attached.extend(g.attached.iter());
                }
                None => missing.push(format!("group {g} not in the inventory")),
            }
        }
        for arn in attached {
            match inv.managed(arn).and_then(|m| m.document.as_ref()) {
                Some(d) => docs.push((arn.clone(), d)),
                None => missing.push(format!("managed policy {arn} not in the inventory")),
            }
        }
        let set = PolicySet {
            identity: docs
                .iter()
                .map(|(n, d)| NamedPolicy { name: n, policy: d })
                .collect(),
            ..Default::default()
        };
        let app = p.tags.get(&lock.app_tag);
        let account = iam::wildcard::arn_parts(&p.arn)
            .map(|x| x[4])
            .unwrap_or("111122223333")
            .to_owned();
        let probe_role = (
            format!("arn:aws:iam::{account}:role/credwarden-probe-unowned"),
            None,
        );
        let foreign = inv
            .roles
            .iter()
            .filter(|role| role.tags.get(&lock.owner_tag) != app || app.is_none())
            .map(|role| (role.arn.clone(), role.tags.get(&lock.owner_tag)));
        let mut passable = Vec::new();
        let mut deciding = BTreeSet::new();
        for (role_arn, owner) in std::iter::once(probe_role).chain(foreign) {
            for service in &services {
                let e = set.evaluate(&probe(
                    p,
                    &role_arn,
                    owner.map(String::as_str),
                    service,
                    &lock.owner_tag,
                ));
                if e.decision == Decision::Allow {
                    passable.push(role_arn.clone());
                    deciding.extend(e.statements.iter().map(|s| {
                        format!(
                            "{}#{}",
                            s.policy,
                            s.sid.clone().unwrap_or_else(|| s.index.to_string())
                        )
                    }));
                    break;
                }
            }
        }
        if !passable.is_empty() {
            r.can_pass_any_role.push(PassAny {
                principal: p.arn.clone(),
                statements: deciding.into_iter().collect(),
                roles: passable,
            });
        }
        if !missing.is_empty() {
            r.unknown.push(format!("{}: {}", p.arn, missing.join("; ")));
        }
    }
    r
}

/// A pass of `role` (owned by `owner`, if tagged) by `p` to `service`, with `p`'s own tags.
fn probe(
    p: &Principal,
    role: &str,
    owner: Option<&str>,
    service: &str,
    owner_tag: &str,
) -> RequestContext {
    let mut c = RequestContext::new("iam:PassRole", role).expect("constant action");
    c.add("aws:PrincipalArn", p.arn.clone())
        .add("iam:PassedToService", service);
    if let Some(o) = owner {
        c.add(&format!("iam:ResourceTag/{owner_tag}"), o);
    }
    for (k, v) in &p.tags {
        c.add(&format!("aws:PrincipalTag/{k}"), v.clone());
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::run_alone_and_beside_everything;
    use serde_json::json;

    fn inventory() -> Inventory {
        let mut inv = Inventory::default();
        inv.absorb_json(
            "auth.json",
            &json!({
                "RoleDetailList": [
                    {"RoleName": "payments-api", "Arn": "arn:aws:iam::111122223333:role/payments-api", "Tags": [{"Key": "owner", "Value": "payments"}],
                     "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}},
                    {"RoleName": "search-worker", "Arn": "arn:aws:iam::111122223333:role/search-worker", "Tags": [{"Key": "owner", "Value": "search"}],
                     "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": ["lambda.amazonaws.com"]}, "Action": "sts:AssumeRole"}]}},
                    {"RoleName": "legacy", "Arn": "arn:aws:iam::111122223333:role/legacy",
                     "RolePolicyList": [{"PolicyName": "deploy", "PolicyDocument": {"Version": "2012-10-17", "Statement": [{"Sid": "PassAnything", "Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]}}]}
                ],
                "UserDetailList": [
                    {"UserName": "deployer", "Arn": "arn:aws:iam::111122223333:user/deployer", "GroupList": ["ops"], "AttachedManagedPolicies": [{"PolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}]}
                ],
                "GroupDetailList": [{"GroupName": "ops", "Arn": "arn:aws:iam::111122223333:group/ops"}],
                "Policies": []
            }),
        )
        .unwrap();
        inv
    }

    #[test]
    fn lockdown_passes_its_table_and_catches_a_broken_policy() {
        let inv = inventory();
        let lock = Lockdown::new("owner", "app", vec![], &inv);
        assert_eq!(lock.services, ["ec2.amazonaws.com", "lambda.amazonaws.com"]);
        let cases = lock.cases(&inv);
        let out = run_alone_and_beside_everything(&lock.policy(), "passrole", &cases);
        assert!(out.iter().all(|o| o.ok), "{}", crate::verify::render(&out));
        assert!(out.len() >= 8);
        // Break it in ways that matter: the table must notice each.
        let text = lock.policy().to_pretty_json();
        for broken in [
            text.replace("iam:ResourceTag/owner", "iam:ResourceTag/nobody"),
            text.replace(
                "\"Sid\": \"DenyPassingToOtherServices\",\n      \"Effect\": \"Deny\"",
                "\"Sid\": \"DenyPassingToOtherServices\",\n      \"Effect\": \"Allow\"",
            ),
            text.replace("iam:TagRole", "iam:TagPolicy"),
        ] {
            assert_ne!(broken, text);
            let p = Policy::parse(&broken).unwrap();
            assert!(
                run_alone_and_beside_everything(&p, "passrole", &cases)
                    .iter()
                    .any(|o| !o.ok),
                "{broken}"
            );
        }
    }

    #[test]
    fn report_finds_untagged_roles_and_pass_anything() {
        let inv = inventory();
        let lock = Lockdown::new("owner", "app", vec![], &inv);
        let r = report(&inv, &lock);
        assert_eq!(
            r.roles_without_owner,
            ["arn:aws:iam::111122223333:role/legacy"]
        );
        assert_eq!(r.can_pass_any_role.len(), 1);
        assert_eq!(
            r.can_pass_any_role[0].principal,
            "arn:aws:iam::111122223333:role/legacy"
        );
        assert_eq!(
            r.can_pass_any_role[0].statements,
            ["legacy inline deploy#PassAnything"]
        );
        assert_eq!(
            r.can_pass_any_role[0].roles.len(),
            4,
            "the probe and every role its (absent) application does not own"
        );
        assert_eq!(r.unknown.len(), 1, "{:?}", r.unknown);
        assert!(r.unknown[0].contains("AdministratorAccess"));
    }
}
