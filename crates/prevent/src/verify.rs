//! Tables of request contexts with the decision each must get.

use iam::{Decision, NamedPolicy, Policy, PolicySet, RequestContext};
use serde::Serialize;

/// What a case requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// An inside call: must be allowed.
    Allowed,
    /// An outside call: must be denied (explicitly or implicitly).
    Denied,
}

/// One labelled request.
#[derive(Clone, Debug)]
pub struct Case {
    pub label: String,
    pub expect: Expect,
    pub context: RequestContext,
}

/// A case and what the evaluator decided.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub label: String,
    pub expect: Expect,
    pub decision: Decision,
    pub ok: bool,
    pub statements: Vec<String>,
}

impl Case {
    pub fn new(
        label: &str,
        expect: Expect,
        action: &str,
        resource: &str,
        keys: &[(&str, &str)],
    ) -> Case {
        let mut context = RequestContext::new(action, resource).expect("cases use service:action");
        for (k, v) in keys {
            context.add(k, *v);
        }
        Case {
            label: label.to_owned(),
            expect,
            context,
        }
    }
}

/// Decide every case against `policy` as an identity policy, next to `beside` (e.g. an
/// allow-everything policy, so the table isolates what `policy` denies). With `probes`
/// (action, resource), each case is decided once per probe in place of its own action and
/// resource, and its row reports the first probe decided wrongly: a lock must hold for every
/// action, not only for the one a table happens to name.
pub fn run(
    policy: &Policy,
    name: &str,
    beside: &[(&str, &Policy)],
    cases: &[Case],
    probes: &[(&str, &str)],
) -> Vec<Outcome> {
    let mut identity = vec![NamedPolicy { name, policy }];
    identity.extend(
        beside
            .iter()
            .map(|(n, p)| NamedPolicy { name: n, policy: p }),
    );
    let set = PolicySet {
        identity,
        ..Default::default()
    };
    cases
        .iter()
        .map(|c| {
            let mut contexts = vec![c.context.clone()];
            if !probes.is_empty() {
                contexts = probes
                    .iter()
                    .map(|(action, resource)| {
                        let mut ctx = c.context.clone();
                        ctx.action = (*action).to_owned();
                        ctx.resource = (*resource).to_owned();
                        ctx
                    })
                    .collect();
            }
            let decided: Vec<(String, iam::Evaluation)> = contexts
                .iter()
                .map(|ctx| (ctx.action.clone(), set.evaluate(ctx)))
                .collect();
            let wrong = |e: &iam::Evaluation| match c.expect {
                Expect::Allowed => e.decision != Decision::Allow,
                Expect::Denied => e.decision == Decision::Allow,
            };
            let (label, e, ok) = match decided.iter().find(|(_, e)| wrong(e)) {
                Some((action, e)) if decided.len() > 1 => {
                    (format!("{} [{action}]", c.label), e, false)
                }
                Some((_, e)) => (c.label.clone(), e, false),
                None => (c.label.clone(), &decided[0].1, true),
            };
            let statements = e
                .statements
                .iter()
                .map(|s| {
                    format!(
                        "{}#{}",
                        s.policy,
                        s.sid.clone().unwrap_or_else(|| s.index.to_string())
                    )
                })
                .collect();
            Outcome {
                label,
                expect: c.expect,
                decision: e.decision,
                ok,
                statements,
            }
        })
        .collect()
}

/// Both checks a policy meant to sit beside others needs: alone (does it grant what it
/// should?) and beside an allow-everything policy (do its denials hold whatever else the
/// principal has?). A row is ok only when both are.
pub fn run_alone_and_beside_everything(
    policy: &Policy,
    name: &str,
    cases: &[Case],
) -> Vec<Outcome> {
    let everything = allow_everything();
    let alone = run(policy, name, &[], cases, &[]);
    let beside = run(
        policy,
        name,
        &[("allow-everything", &everything)],
        cases,
        &[],
    );
    alone
        .into_iter()
        .zip(beside)
        .map(|(a, b)| match (a.ok, b.ok) {
            (true, false) => Outcome {
                label: format!("{} (beside allow-everything)", b.label),
                ..b
            },
            _ => a,
        })
        .collect()
}

/// An identity policy allowing everything: the background a lock is verified against.
pub fn allow_everything() -> Policy {
    Policy::parse(r#"{"Version":"2012-10-17","Statement":[{"Sid":"Everything","Effect":"Allow","Action":"*","Resource":"*"}]}"#).expect("constant policy")
}

/// A plain table for humans.
pub fn render(outcomes: &[Outcome]) -> String {
    let width = outcomes.iter().map(|o| o.label.len()).max().unwrap_or(0);
    let mut s = String::new();
    for o in outcomes {
        let decision = match o.decision {
            Decision::Allow => "allow",
            Decision::ExplicitDeny => "explicit-deny",
            Decision::ImplicitDeny => "implicit-deny",
        };
        let want = match o.expect {
            Expect::Allowed => "must allow",
            Expect::Denied => "must deny",
        };
        s.push_str(&format!(
            "{} {:<width$}  {:<13}  ({want})\n",
            if o.ok { "ok  " } else { "FAIL" },
            o.label,
            decision
        ));
    }
    s
}
