//! The policy evaluator: AWS's documented evaluation logic for a request in one account.
//!
//! 1. An explicit `Deny` in any policy that applies (identity, session, permissions
//!    boundary, resource) decides: explicit deny.
//! 2. A resource policy that allows the principal: for the same account, a grant naming the
//!    exact user (or session) or anyone (`*`) allows on its own; one naming the role is still
//!    limited by a permissions boundary and a session policy; one naming only the account
//!    delegates to IAM, so the identity policies must allow too. Across accounts both sides
//!    must allow.
//! 3. Otherwise an identity policy must allow, and so must the permissions boundary and the
//!    session policy when present.
//! 4. Nothing allows: implicit deny, with the layer that lacked an allow.
//!
//! Service control policies take part when given (`scp`): each one stands for one level of
//! the organisation, so every one must allow, and no resource policy gets around them.
//! Resource control policies are not modelled.

use serde::Serialize;

use crate::context::RequestContext;
use crate::policy::{Effect, Patterns, Policy, Principals, Statement};
use crate::variables::{substitute, Substituted};
use crate::wildcard::{arn_match, arn_match_escaped, arn_parts, glob_match_ignore_case};

/// A policy and the name it is reported under (usually its file name or ARN).
#[derive(Clone, Copy, Debug)]
pub struct NamedPolicy<'a> {
    pub name: &'a str,
    pub policy: &'a Policy,
}

/// Every policy that takes part in one decision.
#[derive(Clone, Debug, Default)]
pub struct PolicySet<'a> {
    /// The principal's identity policies (inline and managed) together.
    pub identity: Vec<NamedPolicy<'a>>,
    /// Session policies passed at AssumeRole / GetFederationToken.
    pub session: Vec<NamedPolicy<'a>>,
    pub boundary: Option<NamedPolicy<'a>>,
    pub resource: Option<NamedPolicy<'a>>,
    /// Service control policies, one per level of the organisation (each must allow).
    pub scp: Vec<NamedPolicy<'a>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

/// A statement that took part in a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatementRef {
    pub policy: String,
    pub sid: Option<String>,
    pub index: usize,
}

/// The decision, the statements that decided it, and a sentence saying why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub decision: Decision,
    pub statements: Vec<StatementRef>,
    pub reason: String,
}

/// How a resource policy's `Principal` named the caller; decides what else must allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Named {
    /// Only through the account (`123456789012`, `arn:aws:iam::123456789012:root`).
    Account,
    /// The role whose session is calling.
    Role,
    /// `*`, or the exact user / session / service / federated identity.
    Exactly,
}

impl PolicySet<'_> {
    /// Decide one request.
    pub fn evaluate(&self, ctx: &RequestContext) -> Evaluation {
        let all = self
            .identity
            .iter()
            .chain(self.session.iter())
            .chain(self.boundary.iter())
            .chain(self.scp.iter());
        let mut denies: Vec<StatementRef> = all
            .flat_map(|p| matching(p, ctx, Effect::Deny, false))
            .map(|(r, _)| r)
            .collect();
        if let Some(rp) = &self.resource {
            denies.extend(matching(rp, ctx, Effect::Deny, true).map(|(r, _)| r));
        }
        if !denies.is_empty() {
            return Evaluation {
                decision: Decision::ExplicitDeny,
                statements: denies,
                reason: "an explicit Deny statement applies".into(),
            };
        }

        let implicit = |reason: &str| Evaluation {
            decision: Decision::ImplicitDeny,
            statements: Vec::new(),
            reason: reason.to_owned(),
        };
        let mut scp_allows = Vec::new();
        for scp in &self.scp {
            let allows: Vec<StatementRef> = matching(scp, ctx, Effect::Allow, false)
                .map(|(r, _)| r)
                .collect();
            if allows.is_empty() {
                return implicit(&format!(
                    "the service control policy {} does not allow the request",
                    scp.name
                ));
            }
            scp_allows.extend(allows);
        }
        let identity: Vec<StatementRef> = self
            .identity
            .iter()
            .flat_map(|p| matching(p, ctx, Effect::Allow, false))
            .map(|(r, _)| r)
            .collect();
        let boundary: Option<Vec<StatementRef>> = self.boundary.as_ref().map(|p| {
            matching(p, ctx, Effect::Allow, false)
                .map(|(r, _)| r)
                .collect()
        });
        let session: Option<Vec<StatementRef>> = (!self.session.is_empty()).then(|| {
            self.session
                .iter()
                .flat_map(|p| matching(p, ctx, Effect::Allow, false))
                .map(|(r, _)| r)
                .collect()
        });
        let resource: Vec<(StatementRef, Named)> = self
            .resource
            .iter()
            .flat_map(|p| matching(p, ctx, Effect::Allow, true))
            .collect();
        let limits_allow = boundary.as_ref().is_none_or(|b| !b.is_empty())
            && session.as_ref().is_none_or(|s| !s.is_empty());
        let mut limits: Vec<StatementRef> = boundary
            .iter()
            .chain(session.iter())
            .flatten()
            .cloned()
            .collect();

        let strongest = resource.iter().map(|(_, n)| *n).max();
        let cross_account = is_cross_account(ctx);
        if !cross_account {
            let by_resource = match strongest {
                Some(Named::Exactly) => true,
                Some(Named::Role) => limits_allow,
                _ => false,
            };
            if by_resource {
                let mut statements: Vec<StatementRef> =
                    resource.into_iter().map(|(r, _)| r).collect();
                if strongest == Some(Named::Role) {
                    statements.append(&mut limits);
                }
                statements.append(&mut scp_allows);
                return Evaluation {
                    decision: Decision::Allow,
                    statements,
                    reason: "the resource policy allows the principal".into(),
                };
            }
        }
        if identity.is_empty() {
            return implicit(if strongest.is_some() && cross_account {
                "the resource policy allows, but across accounts an identity policy must allow too and none does"
            } else {
                "no identity policy allows the request"
            });
        }
        if boundary.as_ref().is_some_and(Vec::is_empty) {
            return implicit("an identity policy allows, but the permissions boundary does not");
        }
        if session.as_ref().is_some_and(Vec::is_empty) {
            return implicit("an identity policy allows, but the session policy does not");
        }
        if cross_account && strongest.is_none() {
            return implicit(if self.resource.is_some() {
                "the resource is in another account and its resource policy does not allow the principal"
            } else {
                "the resource is in another account: its resource policy must allow too (give it with the resource policy)"
            });
        }
        let mut statements = identity;
        statements.append(&mut limits);
        statements.append(&mut scp_allows);
        if cross_account {
            statements.extend(resource.into_iter().map(|(r, _)| r));
        }
        Evaluation {
            decision: Decision::Allow,
            statements,
            reason: "allowed by identity policy".into(),
        }
    }
}

/// True when the caller's account (from `aws:PrincipalAccount` or the principal ARN) and the
/// resource's (`aws:ResourceAccount` or the resource ARN) are both known and differ.
fn is_cross_account(ctx: &RequestContext) -> bool {
    let principal = ctx
        .single("aws:principalaccount")
        .or_else(|| ctx.principal_arn().and_then(arn_parts).map(|p| p[4]));
    let resource = ctx.single("aws:resourceaccount").or_else(|| {
        arn_parts(&ctx.resource)
            .map(|p| p[4])
            .filter(|a| !a.is_empty())
    });
    matches!((principal, resource), (Some(p), Some(r)) if !p.is_empty() && p != r)
}

/// The statements of `p` with `effect` that apply to the request.
fn matching<'a>(
    p: &'a NamedPolicy<'a>,
    ctx: &'a RequestContext,
    effect: Effect,
    resource_policy: bool,
) -> impl Iterator<Item = (StatementRef, Named)> + 'a {
    let vars = p.policy.variables_enabled();
    p.policy
        .statements
        .iter()
        .enumerate()
        .filter(move |(_, s)| s.effect == effect)
        .filter_map(move |(index, s)| {
            let named = statement_applies(s, ctx, vars, resource_policy)?;
            Some((
                StatementRef {
                    policy: p.name.to_owned(),
                    sid: s.sid.clone(),
                    index,
                },
                named,
            ))
        })
}

/// `Some(how the principal was named)` when the statement applies to the request.
fn statement_applies(
    s: &Statement,
    ctx: &RequestContext,
    vars: bool,
    resource_policy: bool,
) -> Option<Named> {
    let action_hit = |p: &String| glob_match_ignore_case(p, &ctx.action);
    let action = match &s.action {
        Patterns::Only(list) => list.iter().any(action_hit),
        Patterns::AllExcept(list) => !list.iter().any(action_hit),
    };
    if !action {
        return None;
    }
    let resource_hit = |p: &String| {
        if vars && p.contains("${") {
            // Substituted text, `${*}` and `${?}` are literal, not wildcards.
            match substitute(p, ctx, true) {
                Substituted::Value(v) => arn_match_escaped(&v, &ctx.resource),
                Substituted::Unresolved => false,
            }
        } else {
            arn_match(p, &ctx.resource)
        }
    };
    let resource = match &s.resource {
        // Trust policies have no Resource. Elsewhere AWS refuses such a statement; should one
        // reach us anyway, fail closed: a Deny covers everything, an Allow nothing.
        None => resource_policy || s.effect == Effect::Deny,
        Some(Patterns::Only(list)) => list.iter().any(resource_hit),
        Some(Patterns::AllExcept(list)) => !list.iter().any(resource_hit),
    };
    if !resource {
        return None;
    }
    let named = if resource_policy {
        match &s.principal {
            // A resource policy statement without a principal applies to nobody.
            None => return None,
            Some((principals, false)) => principal_named(principals, ctx)?,
            Some((principals, true)) => {
                if not_principal_exempts(principals, ctx) {
                    return None;
                }
                Named::Exactly
            }
        }
    } else {
        Named::Exactly
    };
    s.conditions
        .iter()
        .all(|c| c.matches(ctx, vars))
        .then_some(named)
}

/// How (if at all) a `Principal` element names the calling principal.
fn principal_named(p: &Principals, ctx: &RequestContext) -> Option<Named> {
    let map = match p {
        Principals::Anyone => return Some(Named::Exactly),
        Principals::Listed(map) => map,
    };
    let caller = ctx.principal_arn();
    let caller_parts = caller.and_then(arn_parts);
    let caller_account = ctx
        .single("aws:principalaccount")
        .or(caller_parts.map(|p| p[4]));
    let mut best: Option<Named> = None;
    let mut note = |n: Named| best = best.max(Some(n));
    for (kind, ids) in map {
        for id in ids {
            match kind.as_str() {
                "AWS" if id == "*" => note(Named::Exactly),
                "AWS" => {
                    if Some(id.as_str()) == caller {
                        let is_role = arn_parts(id).is_some_and(|p| p[5].starts_with("role/"));
                        note(if is_role { Named::Role } else { Named::Exactly });
                    } else if credwarden_core::account::is_account_id(id) {
                        if caller_account == Some(id.as_str()) {
                            note(Named::Account)
                        }
                    } else if let Some(parts) = arn_parts(id) {
                        if parts[5] == "root" && caller_account == Some(parts[4]) {
                            note(Named::Account)
                        } else if parts[5].starts_with("role/")
                            && is_session_of(caller_parts, parts)
                        {
                            note(Named::Role)
                        }
                    }
                }
                "Service" => {
                    if ctx.single("aws:principalservicename") == Some(id.as_str())
                        || caller == Some(id.as_str())
                    {
                        note(Named::Exactly)
                    }
                }
                _ => {
                    if caller == Some(id.as_str()) {
                        note(Named::Exactly)
                    }
                }
            }
        }
    }
    best
}

/// `NotPrincipal` exempts a caller only when it names the caller's exact ARN (a role session
/// by its session ARN, not by the role's) and the caller's account too, as AWS documents:
/// anything looser would let a Deny with `NotPrincipal` miss callers it must cover.
fn not_principal_exempts(p: &Principals, ctx: &RequestContext) -> bool {
    let Principals::Listed(map) = p else {
        return true;
    };
    let Some(caller) = ctx.principal_arn() else {
        return false;
    };
    let account = ctx
        .single("aws:principalaccount")
        .or(arn_parts(caller).map(|p| p[4]));
    let ids = map.get("AWS").map(Vec::as_slice).unwrap_or_default();
    let named = ids.iter().any(|id| id == caller);
    let account_named = account.is_some_and(|a| {
        ids.iter()
            .any(|id| id == a || *id == format!("arn:aws:iam::{a}:root"))
    });
    let service = map
        .get("Service")
        .is_some_and(|s| s.iter().any(|id| id == caller));
    service || (named && account_named)
}

/// True when `caller` is `arn:…:sts::ACCOUNT:assumed-role/NAME/SESSION` of role `role`.
fn is_session_of(caller: Option<[&str; 6]>, role: [&str; 6]) -> bool {
    let Some(c) = caller else { return false };
    let role_name = role[5].rsplit('/').next().unwrap_or("");
    c[2] == "sts"
        && c[4] == role[4]
        && c[5]
            .strip_prefix("assumed-role/")
            .and_then(|r| r.split('/').next())
            == Some(role_name)
}
