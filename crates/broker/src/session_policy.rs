//! The session policy injected into every `AssumeRole`: credentials that only work from the
//! network the requester is on.
//!
//! A session policy intersects with the role's own permissions, so it is "allow everything"
//! (the role still limits) plus the environment lock's Deny for the requester's network: its
//! egress addresses, our VPCs and endpoints, AWS-service calls exempt. Each network's policy
//! is built once at start-up and verified with the IAM evaluator — as a session policy beside
//! an allow-everything role — on inside and outside calls for several actions; a network whose
//! policy fails, or is larger than STS accepts, stops the broker from starting.

use iam::{Decision, NamedPolicy, Policy, PolicySet};
use prevent::lock::{cases, lock_policy, PROBES};
use prevent::verify::{allow_everything, Expect};
use prevent::{Environment, LockForm};
use serde_json::json;

use crate::config::{BrokerConfig, NetworkConfig};
use crate::error::ConfigError;

/// STS refuses packed session policies above this many characters.
pub const MAX_PACKED: usize = 2048;

/// Build and verify the session policy for one network; returns the compact JSON STS gets.
pub fn build(cfg: &BrokerConfig, net: &NetworkConfig) -> Result<String, ConfigError> {
    let mut env = Environment {
        egress: net.egress.clone(),
        vpcs: cfg.vpcs.clone(),
        vpc_endpoints: cfg.endpoints.iter().map(|e| e.id.clone()).collect(),
        endpoint_routes: cfg
            .endpoints
            .iter()
            .map(|e| (e.id.clone(), e.vpc.clone()))
            .collect(),
        ..Default::default()
    };
    for e in &cfg.endpoints {
        if !env.vpcs.contains(&e.vpc) {
            env.vpcs.push(e.vpc.clone());
        }
    }
    for c in &net.egress {
        if credwarden_core::Cidr::parse(c).is_none() {
            return Err(ConfigError::Invalid(format!(
                "network {:?}: egress {c:?} is not an address or CIDR",
                net.name
            )));
        }
    }
    let lock = lock_policy(&env, LockForm::Network)
        .map_err(|e| ConfigError::Invalid(format!("network {:?}: {e}", net.name)))?;
    let mut statements =
        vec![json!({"Sid": "RoleLimitsApply", "Effect": "Allow", "Action": "*", "Resource": "*"})];
    statements.extend(
        serde_json::from_str::<serde_json::Value>(&lock.to_compact_json()).expect("policy JSON")
            ["Statement"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    let policy = Policy::from_value(&json!({"Version": "2012-10-17", "Statement": statements}))
        .expect("generated session policy is valid");
    verify(&policy, &env).map_err(|failures| ConfigError::Unverified {
        network: net.name.clone(),
        failures,
    })?;
    let packed = policy.to_compact_json();
    if packed.len() > MAX_PACKED {
        return Err(ConfigError::TooLarge {
            network: net.name.clone(),
            size: packed.len(),
        });
    }
    Ok(packed)
}

/// Decide the lock's table with `policy` as the session policy of an allow-everything role.
fn verify(policy: &Policy, env: &Environment) -> Result<(), String> {
    let role = allow_everything();
    let set = PolicySet {
        identity: vec![NamedPolicy {
            name: "role",
            policy: &role,
        }],
        session: vec![NamedPolicy {
            name: "session",
            policy,
        }],
        ..Default::default()
    };
    let mut failures = Vec::new();
    for case in cases(env, LockForm::Network) {
        for (action, resource) in PROBES {
            let mut ctx = case.context.clone();
            ctx.action = action.into();
            ctx.resource = resource.into();
            let d = set.evaluate(&ctx).decision;
            let ok = match case.expect {
                Expect::Allowed => d == Decision::Allow,
                Expect::Denied => d != Decision::Allow,
            };
            if !ok {
                failures.push(format!("{} [{action}]: {d:?}", case.label));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}
