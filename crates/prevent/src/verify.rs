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
    pub fn new(label: &str, expect: Expect, action: &str, resource: &str, keys: &[(&str, &str)]) -> Case {
        let mut context = RequestContext::new(action, resource).expect("cases use service:action");
        for (k, v) in keys {
            context.add(k, *v);
        }
        Case { label: label.to_owned(), expect, context }
    }
}

/// Decide every case against `policy` as an identity policy, next to `beside` (e.g. an
/// allow-everything policy, so the table isolates what `policy` denies).
pub fn run(policy: &Policy, name: &str, beside: &[(&str, &Policy)], cases: &[Case]) -> Vec<Outcome> {
    let mut identity = vec![NamedPolicy { name, policy }];
    identity.extend(beside.iter().map(|(n, p)| NamedPolicy { name: n, policy: p }));
    let set = PolicySet { identity, ..Default::default() };
    cases
        .iter()
        .map(|c| {
            let e = set.evaluate(&c.context);
            let ok = match c.expect {
                Expect::Allowed => e.decision == Decision::Allow,
                Expect::Denied => e.decision != Decision::Allow,
            };
            let statements = e.statements.iter().map(|s| format!("{}#{}", s.policy, s.sid.clone().unwrap_or_else(|| s.index.to_string()))).collect();
            Outcome { label: c.label.clone(), expect: c.expect, decision: e.decision, ok, statements }
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
        s.push_str(&format!("{} {:<width$}  {:<13}  ({want})\n", if o.ok { "ok  " } else { "FAIL" }, o.label, decision));
    }
    s
}
