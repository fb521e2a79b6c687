//! `credwarden policy …` and `credwarden iam …`: evaluate, normalise, generate and verify
//! policies; list and map actions.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use iam::{Catalogue, EventMap, NamedPolicy, Policy, PolicySet, RequestContext};
use prevent::lock::{cases as lock_cases, lock_policy, PROBES};
use prevent::passrole::{report, Lockdown};
use prevent::verify::{allow_everything, render, run, run_alone_and_beside_everything, Outcome};
use prevent::{Environment, LockForm};
use serde_json::json;

use crate::inventory::{InventoryArgs, Reach};

/// Exit code when a verification table fails (0 ran and passed, 1 usage/config error).
pub const VERIFY_FAILED: u8 = 3;

/// The largest policy file read: AWS's own limits are far lower (20 KB for resource policies).
const MAX_POLICY_BYTES: u64 = 1 << 20;

pub fn read_policy(path: &Path) -> Result<Policy> {
    use std::io::Read;
    // Read at most one byte past the limit: a FIFO or /dev/zero reports no size up front.
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        bail!(
            "{}: larger than any IAM policy ({MAX_POLICY_BYTES} bytes at most here)",
            path.display()
        );
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", path.display()))?;
    Policy::parse_encoded(&text).with_context(|| format!("{}", path.display()))
}

#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    /// Identity policy files (inline and managed together).
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub policy: Vec<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub session_policy: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub boundary: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub resource_policy: Option<PathBuf>,
    /// Service control policies, one file per level of the organisation (each must allow).
    #[arg(long, value_name = "FILE")]
    pub scp: Vec<PathBuf>,
    /// The action, e.g. s3:GetObject.
    #[arg(long)]
    pub action: String,
    /// The resource ARN (or *).
    #[arg(long, default_value = "*")]
    pub resource: String,
    /// Condition keys, KEY=VALUE; a key given twice is multi-valued. aws:CurrentTime and aws:EpochTime default to now.
    #[arg(long, value_name = "KEY=VALUE")]
    pub context: Vec<String>,
}

/// `policy evaluate`: one JSON object on stdout (DESIGN contract).
pub fn evaluate(args: &EvaluateArgs, out: &mut dyn Write) -> Result<()> {
    let load = |p: &PathBuf| read_policy(p).map(|pol| (p.display().to_string(), pol));
    let identity = args.policy.iter().map(load).collect::<Result<Vec<_>>>()?;
    let session = args.session_policy.as_ref().map(load).transpose()?;
    let boundary = args.boundary.as_ref().map(load).transpose()?;
    let resource = args.resource_policy.as_ref().map(load).transpose()?;
    let scps = args.scp.iter().map(load).collect::<Result<Vec<_>>>()?;
    let mut ctx = RequestContext::new(&args.action, &args.resource)?;
    for pair in &args.context {
        ctx.add_pair(pair)?;
    }
    if ctx.get("aws:currenttime").is_none() {
        let now = credwarden_core::clock::now();
        ctx.set("aws:CurrentTime", [now.to_string()]);
        if ctx.get("aws:epochtime").is_none() {
            ctx.set("aws:EpochTime", [(now.millis() / 1000).to_string()]);
        }
    }
    fn named(p: &(String, Policy)) -> NamedPolicy<'_> {
        NamedPolicy {
            name: &p.0,
            policy: &p.1,
        }
    }
    let set = PolicySet {
        identity: identity.iter().map(named).collect(),
        session: session.iter().map(named).collect(),
        boundary: boundary.as_ref().map(named),
        resource: resource.as_ref().map(named),
        scp: scps.iter().map(named).collect(),
    };
    let e = set.evaluate(&ctx);
    serde_json::to_writer(
        &mut *out,
        &json!({"decision": e.decision, "statements": e.statements, "reason": e.reason}),
    )?;
    writeln!(out)?;
    Ok(())
}

type Generated = (aws::Inventory, Environment, Policy, Option<Reach>);

/// Which lock, for which environment: shared by `policy lock` and `policy verify`.
#[derive(clap::Args, Debug)]
pub struct LockTarget {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// network: NAT addresses, VPCs and VPC endpoints (the seeds' form); instance: bind EC2 instance credentials to their instance's VPC and address.
    #[arg(long, value_enum, default_value = "network")]
    pub form: Form,
    /// Extra egress addresses or CIDRs that count as ours (IPv4 or IPv6), beside the NAT gateways.
    #[arg(long, value_name = "CIDR")]
    pub egress: Vec<String>,
}

impl LockTarget {
    /// The inventory, our environment from it, the generated lock, and the accounts read.
    fn generate(&self, err: &mut dyn Write) -> Result<Generated> {
        let (inv, reach) = self.inventory.load_reached(err)?;
        let env = Environment::from_inventory(&inv, &self.egress)?;
        let policy = lock_policy(&env, self.form.into())?;
        Ok((inv, env, policy, reach))
    }
}

#[derive(clap::Args, Debug)]
pub struct LockArgs {
    #[command(flatten)]
    pub target: LockTarget,
    /// Roles that serve external subnets (public addresses not known in advance): listed, never locked.
    #[arg(long, value_name = "ROLE")]
    pub external: Vec<String>,
    /// Tag marking a role as serving external subnets (any value but "false").
    #[arg(long, default_value = "credwarden:external")]
    pub external_tag: String,
    /// Attach the lock as an inline policy to these roles through the IAM API.
    #[arg(long, value_name = "ROLE", num_args = 1..)]
    pub apply: Vec<String>,
    /// With --apply: print what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Name of the inline policy --apply writes.
    #[arg(long, default_value = "credwarden-environment-lock")]
    pub policy_name: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Network,
    Instance,
}

impl From<Form> for LockForm {
    fn from(f: Form) -> LockForm {
        match f {
            Form::Network => LockForm::Network,
            Form::Instance => LockForm::Instance,
        }
    }
}

/// `policy lock`: print the lock (verified first), list the roles it must not lock, and
/// optionally apply it.
pub fn lock(args: &LockArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8> {
    let (inv, env, policy, reach) = args.target.generate(err)?;
    let outcomes = run(
        &policy,
        "lock",
        &[("allow-everything", &allow_everything())],
        &lock_cases(&env, args.target.form.into()),
        &PROBES,
    );
    if outcomes.iter().any(|o| !o.ok) {
        write!(err, "{}", render(&outcomes))?;
        bail!("the generated lock failed its own verification table; not printing or applying it");
    }
    let text = policy.to_pretty_json();
    writeln!(
        err,
        "environment: {} egress address(es), {} VPC(s), {} VPC endpoint(s); verified on {} request contexts",
        env.egress.len(),
        env.vpcs.len(),
        env.vpc_endpoints.len(),
        outcomes.len()
    )?;
    let is_external = |name: &str| {
        args.external
            .iter()
            .any(|e| e == name || inv.role(e).is_some_and(|r| r.name == name))
            || inv.role(name).is_some_and(|r| {
                r.tags
                    .get(&args.external_tag)
                    .is_some_and(|v| !v.eq_ignore_ascii_case("false"))
            })
    };
    let external: Vec<&str> = inv
        .roles
        .iter()
        .map(|r| r.name.as_str())
        .filter(|n| is_external(n))
        .chain(
            args.external
                .iter()
                .map(String::as_str)
                .filter(|e| inv.role(e).is_none()),
        )
        .collect();
    for e in &external {
        writeln!(err, "not locked (serves external subnets; its source addresses are not known in advance): {e}")?;
    }
    if args.apply.is_empty() {
        if args.dry_run {
            bail!("--dry-run goes with --apply ROLE…");
        }
        write!(out, "{text}")?;
        return Ok(0);
    }
    if !inv.unread_regions.is_empty() || !inv.unread_accounts.is_empty() {
        let unread: Vec<&str> = inv
            .unread_accounts
            .iter()
            .map(|a| a.as_str())
            .chain(inv.unread_regions.iter().map(|r| r.as_str()))
            .collect();
        bail!(
            "not applying: the inventory could not read {}, so the lock would deny their \
             traffic; fix access to them or narrow with --regions / --accounts",
            unread.join(", ")
        );
    }
    let reach = match reach {
        Some(reach) => reach,
        None => args
            .target
            .inventory
            .members
            .reach(&args.target.inventory.aws, &[])?,
    };
    let members = args.target.inventory.members.is_set();
    for role in &args.apply {
        if is_external(role) {
            writeln!(out, "{role}: skipped, serves external subnets")?;
            continue;
        }
        for (target, name) in reach.role_targets(&inv, role)? {
            let who = if members {
                format!("{} {name}", target.label)
            } else {
                role.clone()
            };
            let session = &target.session;
            let current = session
                .role_policy(&name, &args.policy_name)?
                .map(|p| p.to_pretty_json())
                .unwrap_or_default();
            if current == text {
                writeln!(out, "{who}: {} already up to date", args.policy_name)?;
                continue;
            }
            if args.dry_run {
                writeln!(
                    out,
                    "--- {who} inline policy {} (current{})\n+++ {who} inline policy {} (lock)",
                    args.policy_name,
                    if current.is_empty() { ": none" } else { "" },
                    args.policy_name
                )?;
                write!(out, "{}", prevent::diff::line_diff(&current, &text))?;
            } else {
                session.put_role_policy(&name, &args.policy_name, &policy.to_compact_json())?;
                writeln!(
                    out,
                    "{who}: {} {}",
                    args.policy_name,
                    if current.is_empty() {
                        "attached"
                    } else {
                        "updated"
                    }
                )?;
            }
        }
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: LockTarget,
    /// Verify this lock policy instead of the generated one (e.g. the one you run today).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Print the table as JSON lines.
    #[arg(long)]
    pub json: bool,
}

pub fn verify(args: &VerifyArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8> {
    let (_, env, generated, _) = args.target.generate(err)?;
    let (name, policy) = match &args.policy {
        Some(p) => (p.display().to_string(), read_policy(p)?),
        None => ("generated lock".to_owned(), generated),
    };
    let outcomes = run(
        &policy,
        &name,
        &[("allow-everything", &allow_everything())],
        &lock_cases(&env, args.target.form.into()),
        &PROBES,
    );
    print_outcomes(&outcomes, args.json, out)
}

fn print_outcomes(outcomes: &[Outcome], as_json: bool, out: &mut dyn Write) -> Result<u8> {
    if as_json {
        for o in outcomes {
            serde_json::to_writer(&mut *out, o)?;
            writeln!(out)?;
        }
    } else {
        write!(out, "{}", render(outcomes))?;
    }
    let failed = outcomes.iter().filter(|o| !o.ok).count();
    if failed > 0 {
        if !as_json {
            writeln!(
                out,
                "{failed} of {} cases FAILED: an outside call is allowed or an inside call denied",
                outcomes.len()
            )?;
        }
        return Ok(VERIFY_FAILED);
    }
    if !as_json {
        writeln!(out, "all {} cases decided as required", outcomes.len())?;
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct PassRoleArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// Tag on roles naming the application that owns them.
    #[arg(long, default_value = "owner")]
    pub owner_tag: String,
    /// Tag on principals naming their application.
    #[arg(long, default_value = "app")]
    pub app_tag: String,
    /// Services roles may be passed to (default: every service the account's roles trust).
    #[arg(long, value_name = "SERVICE")]
    pub service: Vec<String>,
    /// Write the policy here instead of stdout (the table and report still go to stdout).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn passrole(args: &PassRoleArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8> {
    let inv = args.inventory.load(err)?;
    if !inv.has_iam {
        bail!("passrole needs IAM inventory: get-account-authorization-details output (--inventory) or --live");
    }
    let lock = Lockdown::new(&args.owner_tag, &args.app_tag, args.service.clone(), &inv);
    let policy = lock.policy();
    let outcomes = run_alone_and_beside_everything(&policy, "passrole", &lock.cases(&inv));
    match &args.output {
        Some(path) => std::fs::write(path, policy.to_pretty_json())
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => write!(out, "{}", policy.to_pretty_json())?,
    }
    writeln!(out, "\nverification:")?;
    let code = print_outcomes(&outcomes, false, out)?;
    let r = report(&inv, &lock);
    writeln!(
        out,
        "\nroles without an {:?} tag ({}): nobody can pass them under this policy",
        args.owner_tag,
        r.roles_without_owner.len()
    )?;
    for role in &r.roles_without_owner {
        writeln!(out, "  {role}")?;
    }
    writeln!(
        out,
        "principals allowed to pass roles their application does not own, today ({}):",
        r.can_pass_any_role.len()
    )?;
    for p in &r.can_pass_any_role {
        writeln!(
            out,
            "  {}  via {}  ({} role(s), e.g. {})",
            p.principal,
            p.statements.join(", "),
            p.roles.len(),
            p.roles[0]
        )?;
    }
    if !r.unknown.is_empty() {
        writeln!(out, "not judged ({}):", r.unknown.len())?;
        for u in &r.unknown {
            writeln!(out, "  {u}")?;
        }
    }
    Ok(code)
}

/// `policy fmt FILE`: the normalised form.
pub fn fmt(path: &Path, out: &mut dyn Write) -> Result<()> {
    write!(out, "{}", read_policy(path)?.to_pretty_json())?;
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ActionsArgs {
    /// Action patterns, e.g. 's3:Get*' (quote them from the shell).
    pub patterns: Vec<String>,
    /// List what this policy grants instead.
    #[arg(long, value_name = "POLICY.json", conflicts_with = "patterns")]
    pub used_by: Option<PathBuf>,
}

/// `iam actions`: one action per line with its access level.
pub fn actions(args: &ActionsArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let c = Catalogue::builtin();
    let list: Vec<String> = match (&args.used_by, args.patterns.is_empty()) {
        (Some(path), _) => {
            let g = c.granted_by(&read_policy(path)?);
            for u in &g.unknown_patterns {
                writeln!(
                    err,
                    "warning: {u} matches no action in the catalogue ({} {}); kept as unknown",
                    c.source.package, c.source.version
                )?;
            }
            g.actions
        }
        (None, true) => bail!("give action patterns (e.g. 's3:Get*') or --used-by POLICY.json"),
        (None, false) => {
            let mut v = Vec::new();
            for p in &args.patterns {
                let found = c.expand(p);
                if found.is_empty() {
                    writeln!(err, "warning: {p} matches no action in the catalogue")?;
                }
                v.extend(found);
            }
            v.sort();
            v.dedup();
            v
        }
    };
    for a in &list {
        let level = c.lookup(a).map(|(_, i)| i.level.as_str()).unwrap_or("?");
        writeln!(out, "{a}\t{level}")?;
    }
    Ok(())
}

/// `iam event SOURCE NAME`: the action(s) a CloudTrail event exercised.
pub fn event(source: &str, name: &str, out: &mut dyn Write) -> Result<()> {
    let m = EventMap::builtin().map(Catalogue::builtin(), source, name);
    serde_json::to_writer(&mut *out, &m)?;
    writeln!(out)?;
    Ok(())
}

/// `--version`: the build and the catalogue it carries.
pub fn version_text() -> String {
    let s = Catalogue::builtin_source();
    format!(
        "{} (action catalogue: {} {}, data {})",
        env!("CARGO_PKG_VERSION"),
        s.package,
        s.version,
        s.updated
    )
}
