//! The operator table: every vector in `tests/data/conditions.json` (taken from the examples
//! and stated rules of AWS's IAM documentation; each names its page) decided by the evaluator.
//! A vector is a Condition block, a request context and the documented outcome; it is run
//! both as an Allow (must allow exactly when expected) and as a Deny (must deny exactly then).

use iam::{Decision, NamedPolicy, Policy, PolicySet, RequestContext};
use serde_json::{json, Value};

#[test]
fn every_documented_condition_vector() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/conditions.json"
    ))
    .unwrap();
    let vectors: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(
        vectors.len() >= 80,
        "the table has {} vectors",
        vectors.len()
    );
    let mut failures = Vec::new();
    let mut operators = std::collections::BTreeSet::new();
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        for op in v["condition"].as_object().unwrap().keys() {
            operators.insert(op.clone());
        }
        let mut ctx = RequestContext::new("s3:GetObject", "arn:aws:s3:::bucket/key").unwrap();
        for (k, vals) in v["context"].as_object().unwrap() {
            ctx.set(
                k,
                vals.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_owned()),
            );
        }
        let expected = v["expected"].as_bool().unwrap();
        for effect in ["Allow", "Deny"] {
            let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": effect, "Action": "*", "Resource": "*", "Condition": v["condition"]}]});
            let policy = match Policy::from_value(&doc) {
                Ok(p) => p,
                Err(e) => {
                    failures.push(format!("{name}: policy refused: {e}"));
                    break;
                }
            };
            let allow_all =
                Policy::parse(r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#)
                    .unwrap();
            let mut set = PolicySet {
                identity: vec![NamedPolicy {
                    name: "under-test",
                    policy: &policy,
                }],
                ..Default::default()
            };
            if effect == "Deny" {
                set.identity.push(NamedPolicy {
                    name: "allow-all",
                    policy: &allow_all,
                });
            }
            let got = set.evaluate(&ctx).decision;
            let want = match (effect, expected) {
                ("Allow", true) => Decision::Allow,
                ("Allow", false) => Decision::ImplicitDeny,
                (_, true) => Decision::ExplicitDeny,
                (_, false) => Decision::Allow,
            };
            if got != want {
                failures.push(format!(
                    "{name} ({effect}): got {got:?}, documented outcome means {want:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The table must exercise every operator family at least once.
    for family in [
        "String",
        "Numeric",
        "Date",
        "Bool",
        "BinaryEquals",
        "IpAddress",
        "Arn",
        "Null",
        "IfExists",
        "ForAnyValue:",
        "ForAllValues:",
    ] {
        assert!(
            operators.iter().any(|o| o.contains(family)),
            "no vector uses {family}"
        );
    }
}
