//! The right-sizing plan: per role, the permissions granted minus those not used, under
//! rules that never remove what the evidence cannot show is unused.
//!
//! Evidence per granted action (SHRINK-NOTES "Evidence model", in order): used by the role in
//! the window → keep; action-level Access Advisor; the trail's own configuration proves the
//! call would have been recorded ([`crate::trail`]) and the role made none → remove; no session
//! of the role in the window and IAM's `RoleLastUsed` agrees → remove everything; a complete
//! service-level Access Advisor report without the service → remove; others' calls to the
//! action in the account's CloudTrail → remove; otherwise unknown → keep. Every removal carries
//! its proof; grants younger than the grace period are kept.
//!
//! Rewriting keeps every `Deny`, `Resource`, `Condition` and unknown pattern unchanged; an
//! `Allow` pattern stays as written when everything it covers is kept, and becomes the exact
//! list of kept actions otherwise (a wildcard is never widened). Statements left empty are
//! dropped, and so are policies. A managed policy is never edited: when something must go,
//! the role gets its own inline copy of what stays and the managed policy is detached.

use std::collections::{BTreeMap, BTreeSet};

use aws::{Inventory, Principal};
use iam::wildcard::glob_match_ignore_case;
use iam::{Catalogue, Effect, Patterns, Policy, Statement};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use credwarden_core::EventTime;

use crate::usage::Usage;

const UNLOGGED: &str = include_str!("../data/unlogged-actions.txt");

/// IAM's limit on a role's inline policies, in characters without whitespace.
pub const INLINE_LIMIT: usize = 10_240;

/// Services that take a role: `iam:PassRole` stays while the role keeps any of these.
const ROLE_CONSUMERS: &[&str] = &[
    "ec2:RunInstances",
    "ec2:AssociateIamInstanceProfile",
    "ec2:ReplaceIamInstanceProfileAssociation",
    "lambda:CreateFunction",
    "lambda:UpdateFunctionConfiguration",
    "ecs:RegisterTaskDefinition",
    "ecs:RunTask",
    "cloudformation:CreateStack",
    "cloudformation:UpdateStack",
    "glue:CreateJob",
    "glue:UpdateJob",
    "sagemaker:CreateTrainingJob",
    "codebuild:CreateProject",
    "states:CreateStateMachine",
    "events:PutTargets",
    "ecs:CreateService",
    "ecs:UpdateService",
    "glue:CreateDevEndpoint",
    "sagemaker:CreateProcessingJob",
    "sagemaker:CreateModel",
    "sagemaker:CreateNotebookInstance",
    "cloudformation:CreateStackSet",
    "batch:CreateComputeEnvironment",
    "batch:RegisterJobDefinition",
    "elasticmapreduce:RunJobFlow",
    "eks:CreateNodegroup",
    "eks:CreateCluster",
    "datapipeline:CreatePipeline",
    "ssm:CreateAssociation",
];

pub use crate::advisor::AccessAdvisor;

/// Knobs of a plan.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    pub window_days: i64,
    /// The end of the window (ms); the newest event in the logs by default.
    pub now_ms: i64,
    /// A role with this tag set to `never` (or `false`, `off`) is not touched.
    pub opt_out_tag: String,
    /// Role names or ARNs never touched.
    pub never_touch: Vec<String>,
    /// Plan even if the CloudTrail does not span the window or had input errors. Off by
    /// default: what was not read cannot show use, so a partial trail would remove
    /// permissions that are in use.
    pub allow_partial_cloudtrail: bool,
    /// The trails' configuration: what proves that an action not seen was not called.
    pub trails: crate::trail::TrailConfig,
    /// Permissions granted within this many days (`PutRolePolicy`, `AttachRolePolicy`,
    /// `CreatePolicyVersion` … in the CloudTrail) are never removed.
    pub grace_days: i64,
}

/// Why no plan was made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the CloudTrail spans {oldest} .. {newest}, not the {window_days}-day window {since} .. {until}: what was not read cannot show use (give the whole window, or --allow-partial-cloudtrail)")]
    TrailDoesNotSpanWindow {
        oldest: String,
        newest: String,
        window_days: i64,
        since: EventTime,
        until: EventTime,
    },
    #[error("{0} CloudTrail input error(s): records that could not be read may show use (fix the input, or --allow-partial-cloudtrail)")]
    TrailInputErrors(u64),
    #[error("role {0} is not in the inventory")]
    UnknownRole(String),
    #[error("attached managed policy {0} is not in the inventory")]
    MissingManagedPolicy(String),
}

/// The CloudTrail must be whole for the window before its silence counts as evidence.
fn check_trail(usage: &Usage, opts: &PlanOptions, since: i64) -> Result<(), PlanError> {
    if opts.allow_partial_cloudtrail {
        return Ok(());
    }
    if !usage.covers(since, opts.now_ms) {
        let span = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), |t| EventTime(t).to_string());
        return Err(PlanError::TrailDoesNotSpanWindow {
            oldest: span(usage.oldest_ms),
            newest: span(usage.newest_ms),
            window_days: opts.window_days,
            since: EventTime(since),
            until: EventTime(opts.now_ms),
        });
    }
    if usage.input_errors > 0 {
        return Err(PlanError::TrailInputErrors(usage.input_errors));
    }
    Ok(())
}

/// The verdict for one role.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Some permissions go.
    Shrink,
    /// Nothing was used: every permission goes.
    ToZero,
    Unchanged,
    Skipped,
}

/// A role's policies at one moment: inline documents and attached managed ARNs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PolicyState {
    /// Inline documents, normalised: what is compared and diffed.
    pub inline: BTreeMap<String, Value>,
    pub attached: Vec<String>,
    /// The exact text IAM returned for each inline document (URL-decoded), when read live:
    /// what a rollback writes back, so the restored document is the original byte for byte.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inline_text: BTreeMap<String, String>,
    /// Customer managed policies the plan creates (ARN → document, normalised), attached like
    /// the others (their ARNs are in `attached`): right-sized permissions over the inline
    /// limit ([`crate::split`]). Empty in a state read from IAM.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub created: BTreeMap<String, Value>,
}

/// Two states are the same when their documents mean the same and the same managed policies
/// are attached; how a document was spelled does not matter.
impl PartialEq for PolicyState {
    fn eq(&self, other: &PolicyState) -> bool {
        self.inline == other.inline && self.attached == other.attached
    }
}

impl PolicyState {
    /// Inline documents as normalised text, for diffs.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (name, doc) in &self.inline {
            let text = Policy::from_value(doc)
                .map(|p| p.to_pretty_json())
                .unwrap_or_else(|_| format!("{doc:#}\n"));
            s.push_str(&format!("# inline {name}\n{text}"));
        }
        for arn in &self.attached {
            match self.created.get(arn) {
                Some(doc) => {
                    let text = Policy::from_value(doc)
                        .map(|p| p.to_pretty_json())
                        .unwrap_or_else(|_| format!("{doc:#}\n"));
                    s.push_str(&format!("# created and attached {arn}\n{text}"));
                }
                None => s.push_str(&format!("# attached {arn}\n")),
            }
        }
        s
    }

    pub fn from_policies(inline: &BTreeMap<String, Policy>, attached: &[String]) -> PolicyState {
        PolicyState {
            inline: inline
                .iter()
                .map(|(n, p)| (n.clone(), normalised(p)))
                .collect(),
            attached: attached.to_vec(),
            inline_text: BTreeMap::new(),
            created: BTreeMap::new(),
        }
    }

    /// A state read live from IAM, keeping each inline document's exact text.
    pub fn from_live(
        inline: &BTreeMap<String, aws::InlinePolicy>,
        attached: &[String],
    ) -> PolicyState {
        PolicyState {
            inline: inline
                .iter()
                .map(|(n, p)| (n.clone(), normalised(&p.policy)))
                .collect(),
            attached: attached.to_vec(),
            inline_text: inline
                .iter()
                .map(|(n, p)| (n.clone(), p.text.clone()))
                .collect(),
            created: BTreeMap::new(),
        }
    }

    /// The text to create managed policy `arn` with, when the plan creates it.
    pub fn created_text(&self, arn: &str) -> Option<String> {
        let doc = self.created.get(arn)?;
        Some(
            Policy::from_value(doc)
                .map(|p| p.to_compact_json())
                .unwrap_or_else(|_| doc.to_string()),
        )
    }

    /// The text to write for inline policy `name`: the exact text recorded, else the
    /// normalised document.
    pub fn document_text(&self, name: &str) -> Option<String> {
        if let Some(text) = self.inline_text.get(name) {
            return Some(text.clone());
        }
        let doc = self.inline.get(name)?;
        Some(
            Policy::from_value(doc)
                .map(|p| p.to_compact_json())
                .unwrap_or_else(|_| doc.to_string()),
        )
    }
}

fn normalised(p: &Policy) -> Value {
    serde_json::from_str(&p.to_compact_json()).expect("policy JSON")
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolePlan {
    pub role: String,
    pub arn: String,
    pub verdict: Verdict,
    pub reason: String,
    /// Actions removed (canonical names).
    pub removed: Vec<String>,
    /// Actions kept without proof of use, and why.
    pub kept_unknown: BTreeMap<String, String>,
    /// For each removed action, the proof that removed it.
    #[serde(default)]
    pub proofs: BTreeMap<String, String>,
    pub before: PolicyState,
    pub after: PolicyState,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub catalogue: String,
    pub window_days: i64,
    pub window_end: String,
    pub roles: Vec<RolePlan>,
    /// Set by `shrink schedule`: the plan was announced to the owners and may be applied from
    /// this time on (RFC 3339), exactly as announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Set by `shrink schedule --state`: the announcement recorded in that state file, which
    /// `shrink apply` checks (a cancelled schedule's plan is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
}

enum Evidence {
    Used,
    /// Unused, and the proof that says so.
    Unused(String),
    Unknown(String),
}

/// How CloudTrail records each action where it is not a plain management event
/// (`data/unlogged-actions.txt`).
struct Overlay {
    never: Vec<String>,
    data: Vec<(String, String)>,
    data_services: Vec<String>,
}

/// What an action's call would be in CloudTrail, by the overlay.
enum ActionKind<'a> {
    Never,
    Data(&'a str),
    /// A service with data events the overlay does not list action by action.
    UnlistedDataService,
    Management,
}

impl Overlay {
    fn get() -> &'static Overlay {
        static OVERLAY: std::sync::OnceLock<Overlay> = std::sync::OnceLock::new();
        OVERLAY.get_or_init(|| {
            let mut o = Overlay {
                never: Vec::new(),
                data: Vec::new(),
                data_services: Vec::new(),
            };
            for line in UNLOGGED.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut words = line.split_whitespace();
                match (words.next(), words.next()) {
                    (Some("data-service"), Some(prefix)) => o.data_services.push(prefix.into()),
                    (Some(action), Some(ty)) => o.data.push((action.into(), ty.into())),
                    (Some(action), None) => o.never.push(action.into()),
                    _ => {}
                }
            }
            o
        })
    }

    fn kind(&self, action: &str) -> ActionKind<'_> {
        if self.never.iter().any(|p| glob_match_ignore_case(p, action)) {
            return ActionKind::Never;
        }
        if let Some((_, ty)) = self
            .data
            .iter()
            .find(|(p, _)| glob_match_ignore_case(p, action))
        {
            return ActionKind::Data(ty);
        }
        let prefix = action.split_once(':').map_or(action, |(p, _)| p);
        if self
            .data_services
            .iter()
            .any(|s| s.eq_ignore_ascii_case(prefix))
        {
            return ActionKind::UnlistedDataService;
        }
        ActionKind::Management
    }

    /// CloudTrail may not show this action's calls, whatever the trail: a per-person role
    /// keeps it.
    fn maybe_unrecorded(&self, action: &str) -> bool {
        !matches!(self.kind(action), ActionKind::Management)
    }
}

/// The event source CloudTrail names for a service prefix, where it matters (the two
/// sources a selector may exclude); otherwise `PREFIX.amazonaws.com`.
fn event_source(prefix: &str) -> String {
    match prefix {
        "rds-data" => "rdsdata.amazonaws.com".into(),
        other => format!("{other}.amazonaws.com"),
    }
}

struct Judge<'a> {
    usage: &'a Usage,
    advisor: Option<&'a AccessAdvisor>,
    trails: &'a crate::trail::TrailConfig,
    role_arn: &'a str,
    account: String,
    since_ms: i64,
    /// The role had no session in the window (and IAM agrees): the proof, once per role.
    no_session: Option<String>,
    /// The trust policy as text (`None`: not in the inventory): who can use the role.
    trust: Option<String>,
}

/// Permission-only actions a service checks when it acts as the role: unusable unless that
/// service may assume the role. (Action pattern, the service principal that must be trusted.)
const SERVICE_CONSUMED: &[(&str, &str)] = &[
    ("s3:Replicate*", "s3.amazonaws.com"),
    ("s3:ObjectOwnerOverrideToBucketOwner", "s3.amazonaws.com"),
];

impl Judge<'_> {
    /// SHRINK-NOTES' evidence model, in order: action-level Access Advisor; CloudTrail under a
    /// trail that provably records the action; no session at all; service-level Access
    /// Advisor; what CloudTrail shows of others' calls. Anything else is unknown.
    fn evidence(&self, action: &str) -> Evidence {
        if self.usage.used_since(self.role_arn, action, self.since_ms) {
            return Evidence::Used;
        }
        let since = EventTime(self.since_ms);
        let advisor = self.advisor.filter(|a| a.complete);
        if let Some(last) = advisor.and_then(|a| a.action_last(action)) {
            return match last {
                Some(t) if t >= self.since_ms => Evidence::Used,
                Some(t) => Evidence::Unused(format!(
                    "Access Advisor (action level): last used {}",
                    EventTime(t)
                )),
                None => Evidence::Unused(
                    "Access Advisor (action level): not used in its tracking period".into(),
                ),
            };
        }
        let mut why = match self.trail_proof(action) {
            Ok(proof) => return Evidence::Unused(proof),
            Err(why) => why,
        };
        if let (Some((_, service)), Some(trust)) = (
            SERVICE_CONSUMED
                .iter()
                .find(|(p, _)| glob_match_ignore_case(p, action)),
            &self.trust,
        ) {
            if !trust.contains(service) {
                return Evidence::Unused(format!(
                    "permission-only, checked when {service} acts as the role, and the role's trust policy does not let it"
                ));
            }
        }
        if let Some(proof) = &self.no_session {
            return Evidence::Unused(proof.clone());
        }
        let prefix = action.split_once(':').map_or(action, |(p, _)| p);
        match advisor.and_then(|a| a.service_last(prefix)) {
            // The service was used, but the report does not say which action: kept, and
            // the plan says why (it is not shown used either).
            Some(Some(last)) if last >= self.since_ms => {
                return Evidence::Unknown(format!(
                    "Access Advisor: the role used {prefix} at {}, without saying which action{}",
                    EventTime(last),
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!("; {why}")
                    }
                ))
            }
            Some(last) => {
                return Evidence::Unused(format!(
                    "Access Advisor: no use of {prefix} since {}",
                    last.map_or_else(
                        || "its tracking began".to_owned(),
                        |t| EventTime(t).to_string()
                    )
                ))
            }
            None => {}
        }
        if !matches!(Overlay::get().kind(action), ActionKind::Never)
            && self
                .usage
                .actions_seen
                .contains(&(self.account.clone(), action.to_owned()))
        {
            return Evidence::Unused(format!(
                "the CloudTrail records others' calls to it in account {} since {since}",
                self.account
            ));
        }
        if why.is_empty() {
            why = "no evidence either way".into();
        }
        Evidence::Unknown(why)
    }

    /// Proof that `pattern`, which the catalogue cannot expand (a retired or newer service),
    /// is unused as a whole: no session of the role in the window, or a complete Access
    /// Advisor report that lists its service unused since the window began.
    fn unknown_pattern_proof(&self, pattern: &str) -> Option<String> {
        if let Some(proof) = &self.no_session {
            return Some(proof.clone());
        }
        let (prefix, _) = pattern.split_once(':')?;
        if prefix.contains(['*', '?']) {
            return None;
        }
        match self.advisor.filter(|a| a.complete)?.service_last(prefix)? {
            Some(last) if last >= self.since_ms => None,
            last => Some(format!(
                "Access Advisor: no use of {prefix} since {} (a service the catalogue does not list)",
                last.map_or_else(|| "its tracking began".to_owned(), |t| EventTime(t).to_string())
            )),
        }
    }

    /// Unused by the trail's own configuration: it recorded this action's calls for the
    /// account throughout the window, and the role made none. `Err`: why that is not shown.
    fn trail_proof(&self, action: &str) -> Result<String, String> {
        let (prefix, name) = action.split_once(':').unwrap_or((action, ""));
        let data_type = match Overlay::get().kind(action) {
            ActionKind::Never => {
                return Err(
                    "never written as a CloudTrail event (permission-only or not logged)".into(),
                )
            }
            ActionKind::UnlistedDataService => {
                return Err(format!(
                    "{prefix} has data events not listed action by action: not provably recorded"
                ))
            }
            ActionKind::Data(ty) => Some(ty.to_owned()),
            ActionKind::Management => None,
        };
        if let Some((t, event)) = self
            .usage
            .trail_changes
            .iter()
            .find(|(t, _)| *t >= self.since_ms)
        {
            return Err(format!(
                "a trail changed inside the window ({event} at {}): today's configuration does not show what was recorded before",
                EventTime(*t)
            ));
        }
        if !self.usage.accounts_seen.contains(&self.account) {
            return Err(format!(
                "account {} has no record in this CloudTrail (is it the trail's delivery for the account?)",
                self.account
            ));
        }
        let read_only = Catalogue::builtin().lookup(action).map(|(_, info)| {
            matches!(
                info.level,
                iam::catalogue::AccessLevel::List | iam::catalogue::AccessLevel::Read
            )
        });
        let kind = crate::trail::EventKind {
            source: event_source(prefix),
            name: name.to_owned(),
            read_only,
            data_type: data_type.clone(),
        };
        let trail = self.trails.proves(&self.account, &kind, self.since_ms)?;
        Ok(format!(
            "trail {trail} records {} and the role made no such call since {}",
            match &data_type {
                Some(ty) => format!("{ty} data events"),
                None => "these management events".to_owned(),
            },
            EventTime(self.since_ms)
        ))
    }
}

/// Proof that a role used nothing in the window: no session of it (an `AssumeRole*`
/// management event the trail provably records, or any call of a session), and IAM's
/// `RoleLastUsed` older than the window (or empty, for a role older than the window). Both,
/// because each covers the other's blind spot: CloudTrail files that miss a region, and
/// IAM's tracking lag.
fn no_session_proof(
    role: &Principal,
    usage: &Usage,
    trails: &crate::trail::TrailConfig,
    account: &str,
    since: i64,
) -> Option<String> {
    if usage
        .sessions
        .get(&crate::usage::role_key(&role.arn))
        .is_some_and(|&t| t >= since)
    {
        return None;
    }
    let iam_says = match role.last_used {
        aws::LastUsed::NotReported => return None,
        aws::LastUsed::At(t) if t >= since => return None,
        aws::LastUsed::At(t) => format!("IAM last used {}", EventTime(t)),
        aws::LastUsed::Never => "IAM reports no use".to_owned(),
    };
    if usage.trail_changes.iter().any(|(t, _)| *t >= since)
        || !usage.accounts_seen.contains(account)
    {
        return None;
    }
    let assume = crate::trail::EventKind {
        source: "sts.amazonaws.com".into(),
        name: "AssumeRole".into(),
        // CloudTrail writes AssumeRole* with readOnly true.
        read_only: Some(true),
        data_type: None,
    };
    let trail = trails.proves(account, &assume, since).ok()?;
    Some(format!(
        "no session of the role since {} (trail {trail} records every AssumeRole), {iam_says}",
        EventTime(since)
    ))
}

/// Plan every role in the inventory; refused when the CloudTrail is not whole for the window
/// (unless `opts.allow_partial_cloudtrail`).
pub fn plan(
    inv: &Inventory,
    usage: &Usage,
    advisors: &BTreeMap<String, AccessAdvisor>,
    opts: &PlanOptions,
) -> Result<Plan, PlanError> {
    let since = opts.now_ms - opts.window_days * 86_400_000;
    check_trail(usage, opts, since)?;
    let source = &Catalogue::builtin().source;
    let roles = inv
        .roles
        .iter()
        .map(|r| {
            plan_role(
                inv,
                r,
                usage,
                advisors.get(&r.arn).or(advisors.get(&r.name)),
                opts,
                since,
            )
        })
        .collect();
    Ok(Plan {
        catalogue: format!("{} {} ({})", source.package, source.version, source.updated),
        window_days: opts.window_days,
        window_end: EventTime(opts.now_ms).to_string(),
        roles,
        not_before: None,
        schedule_id: None,
    })
}

fn plan_role(
    inv: &Inventory,
    role: &Principal,
    usage: &Usage,
    advisor: Option<&AccessAdvisor>,
    opts: &PlanOptions,
    since: i64,
) -> RolePlan {
    let inline: BTreeMap<String, Policy> = role.inline.iter().cloned().collect();
    let before = PolicyState::from_policies(&inline, &role.attached);
    let skip = |reason: String| RolePlan {
        role: role.name.clone(),
        arn: role.arn.clone(),
        verdict: Verdict::Skipped,
        reason,
        removed: vec![],
        kept_unknown: BTreeMap::new(),
        proofs: BTreeMap::new(),
        before: before.clone(),
        after: before.clone(),
    };
    if role.path.starts_with("/aws-service-role/") {
        return skip("service-linked role: AWS manages its permissions".into());
    }
    if role.tags.get(&opts.opt_out_tag).is_some_and(|v| {
        matches!(
            v.to_ascii_lowercase().as_str(),
            "never" | "false" | "off" | "no"
        )
    }) {
        return skip(format!("opted out with tag {}", opts.opt_out_tag));
    }
    if opts
        .never_touch
        .iter()
        .any(|n| *n == role.name || *n == role.arn)
    {
        return skip("on the never-touch list".into());
    }
    if !role.unreadable.is_empty() {
        return skip(format!(
            "inline policies that cannot be read: {}",
            role.unreadable.join(", ")
        ));
    }
    match role.created.as_deref().and_then(iam::condition::parse_date) {
        Some(created) if created > since => {
            return skip(format!("younger than the {}-day window", opts.window_days))
        }
        None => {
            return skip(
                "creation date unknown: its age cannot be checked against the window".into(),
            )
        }
        _ => {}
    }
    let mut managed = Vec::new();
    for arn in &role.attached {
        match inv.managed(arn).and_then(|m| m.document.clone()) {
            Some(doc) => managed.push((arn.clone(), doc)),
            None => return skip(format!("attached managed policy {arn} is not in the inventory: its permissions are unknown")),
        }
    }
    let account = credwarden_core::account::arn_account(&role.arn)
        .unwrap_or_default()
        .to_owned();
    let judge = Judge {
        usage,
        advisor,
        trails: &opts.trails,
        role_arn: &role.arn,
        no_session: no_session_proof(role, usage, &opts.trails, &account, since),
        trust: role.trust.as_ref().map(Policy::to_compact_json),
        account,
        since_ms: since,
    };
    let graced = |doc: &Granted| grace(usage, role, doc, opts);
    // First decide every granted action except PassRole, which follows its consumers.
    let catalogue = Catalogue::builtin();
    let mut decided: BTreeMap<String, bool> = BTreeMap::new();
    let mut kept_unknown = BTreeMap::new();
    let mut proofs: BTreeMap<String, String> = BTreeMap::new();
    let all_docs: Vec<(Granted, &Policy)> = inline
        .iter()
        .map(|(n, p)| (Granted::Inline(n), p))
        .chain(managed.iter().map(|(a, p)| (Granted::Managed(a), p)))
        .collect();
    for (granted, doc) in &all_docs {
        let grace_reason = graced(granted);
        for s in doc.statements.iter().filter(|s| s.effect == Effect::Allow) {
            if let Patterns::Only(patterns) = &s.action {
                for p in patterns {
                    for a in catalogue.expand(p) {
                        if a == "iam:PassRole" || decided.get(&a) == Some(&true) {
                            continue;
                        }
                        let keep = match (judge.evidence(&a), &grace_reason) {
                            (Evidence::Used, _) => true,
                            (Evidence::Unused(_), Some(why)) => {
                                kept_unknown.insert(a.clone(), why.clone());
                                proofs.remove(&a);
                                true
                            }
                            (Evidence::Unused(proof), None) => {
                                proofs.insert(a.clone(), proof);
                                false
                            }
                            (Evidence::Unknown(why), _) => {
                                kept_unknown.insert(a.clone(), why);
                                true
                            }
                        };
                        decided.insert(a, keep);
                    }
                }
            }
        }
    }
    // Permission-only: kept while the role passes roles (seen) or keeps an action that does.
    let pass_role = usage.used_since(&role.arn, "iam:PassRole", since)
        || ROLE_CONSUMERS
            .iter()
            .any(|c| decided.get(*c) == Some(&true));
    if pass_role && !usage.used_since(&role.arn, "iam:PassRole", since) {
        kept_unknown.insert(
            "iam:PassRole".into(),
            "kept while the role keeps an action that passes a role".into(),
        );
    }
    kept_unknown.retain(|a, _| decided.get(a).copied().unwrap_or(pass_role));
    decided.insert("iam:PassRole".into(), pass_role);
    if !pass_role {
        proofs.insert(
            "iam:PassRole".into(),
            match &judge.no_session {
                Some(p) => p.clone(),
                None => {
                    "permission-only: no action that passes a role stays, and the role passed none"
                        .into()
                }
            },
        );
    }
    let keep = |a: &str| decided.get(a).copied().unwrap_or(true);
    // Names the role used that the catalogue does not know: a pattern covering one stays as written.
    let used_unknown: Vec<String> = usage
        .used
        .get(&crate::usage::role_key(&role.arn))
        .map(|m| {
            m.keys()
                .filter(|a| catalogue.lookup(a).is_none())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let pinned = |p: &str| used_unknown.iter().any(|a| glob_match_ignore_case(p, a));
    // Patterns the catalogue cannot expand (a retired or newer service): removed only as a
    // whole, when the whole service is shown unused; kept as written otherwise.
    let mut unknown_gone: BTreeSet<String> = BTreeSet::new();
    for (granted, doc) in &all_docs {
        if graced(granted).is_some() {
            continue;
        }
        for s in doc.statements.iter().filter(|s| s.effect == Effect::Allow) {
            let Patterns::Only(patterns) = &s.action else {
                continue;
            };
            for p in patterns {
                if !catalogue.expand(p).is_empty() || pinned(p) {
                    continue;
                }
                if let Some(proof) = judge.unknown_pattern_proof(p) {
                    proofs.insert(p.clone(), proof);
                    unknown_gone.insert(p.clone());
                }
            }
        }
    }
    let keep = |a: &str| !unknown_gone.contains(a) && keep(a);

    let mut removed = BTreeSet::new();
    let mut after_inline: BTreeMap<String, Policy> = BTreeMap::new();
    for (name, doc) in &inline {
        if let Some(p) = rewrite(doc, &keep, &pinned, &mut removed) {
            after_inline.insert(name.clone(), p);
        }
    }
    let mut after_attached = Vec::new();
    for (arn, doc) in &managed {
        let mut gone = BTreeSet::new();
        let rewritten = rewrite(doc, &keep, &pinned, &mut gone);
        if gone.is_empty() {
            after_attached.push(arn.clone());
            continue;
        }
        removed.extend(gone);
        if let Some(p) = rewritten {
            // A name of its own: never overwrite another inline policy or another copy.
            let short = arn.rsplit('/').next().unwrap_or(arn);
            let mut name: String = format!("credwarden-{short}").chars().take(120).collect();
            let base = name.clone();
            let mut n = 2;
            while after_inline.contains_key(&name) || inline.contains_key(&name) {
                name = format!("{base}-{n}");
                n += 1;
            }
            after_inline.insert(name, p);
        }
    }
    let grants_anything = after_inline
        .values()
        .chain(
            managed
                .iter()
                .filter(|(a, _)| after_attached.contains(a))
                .map(|(_, p)| p),
        )
        .any(|p| p.statements.iter().any(|s| s.effect == Effect::Allow));
    let size: usize = after_inline
        .values()
        .map(|p| p.to_compact_json().len())
        .sum();
    // Over the inline limit: the right-sized documents become customer managed policies.
    let mut created = BTreeMap::new();
    if size > INLINE_LIMIT {
        match crate::split::into_managed(&role.arn, &after_inline, after_attached.len()) {
            Ok(policies) => {
                after_inline.clear();
                for (arn, doc) in policies {
                    after_attached.push(arn.clone());
                    created.insert(arn, normalised(&doc));
                }
            }
            Err(e) => {
                return skip(format!(
                    "the right-sized inline policies would be {size} characters, over IAM's \
                     {INLINE_LIMIT}, and cannot be managed policies instead: {e}"
                ))
            }
        }
    }
    let mut after = PolicyState::from_policies(&after_inline, &after_attached);
    after.created = created;
    let mut plan = RolePlan {
        role: role.name.clone(),
        arn: role.arn.clone(),
        verdict: Verdict::Unchanged,
        reason: String::new(),
        proofs: removed
            .iter()
            .map(|a| {
                let proof = proofs
                    .get(a)
                    .cloned()
                    .unwrap_or_else(|| "unused (see the plan's evidence)".into());
                (a.clone(), proof)
            })
            .collect(),
        removed: removed.into_iter().collect(),
        kept_unknown,
        before: before.clone(),
        after,
    };
    (plan.verdict, plan.reason) = if plan.removed.is_empty() {
        (
            Verdict::Unchanged,
            "every granted permission was used or cannot be shown unused".into(),
        )
    } else if !grants_anything {
        (
            Verdict::ToZero,
            format!("nothing granted was used in {} days", opts.window_days),
        )
    } else {
        (
            Verdict::Shrink,
            format!(
                "{} permission(s) unused in {} days",
                plan.removed.len(),
                opts.window_days
            ),
        )
    };
    if !plan.after.created.is_empty() {
        plan.reason.push_str(&format!(
            "; what stays is over the inline limit and goes into {} new managed policies",
            plan.after.created.len()
        ));
    }
    plan
}

/// Where a role's permissions come from: one of its inline policies, or an attached one.
enum Granted<'a> {
    Inline(&'a str),
    Managed(&'a str),
}

/// Why the permissions of `doc` are in their grace period, if they are: granted to the role
/// (or, for a managed policy, given a new default version) within `opts.grace_days` of the
/// window's end. A new permissions boundary widens everything the role has.
fn grace(usage: &Usage, role: &Principal, doc: &Granted, opts: &PlanOptions) -> Option<String> {
    let from = opts.now_ms - opts.grace_days * 86_400_000;
    let key = crate::usage::role_key(&role.arn);
    usage
        .grants
        .iter()
        .filter(|g| g.at_ms >= from)
        .find(|g| {
            let this_role = g.role.as_deref() == Some(key.as_str());
            let boundary = g.event.contains("PermissionsBoundary");
            match doc {
                Granted::Inline(name) => {
                    this_role && (boundary || g.policy_name.as_deref() == Some(*name))
                }
                Granted::Managed(arn) => {
                    (this_role && boundary)
                        || (g.policy_arn.as_deref() == Some(*arn)
                            && (this_role || g.role.is_none()))
                }
            }
        })
        .map(|g| {
            format!(
                "granted recently ({} at {}): within the {}-day grace period",
                g.event,
                EventTime(g.at_ms),
                opts.grace_days
            )
        })
}

/// Rewrite one policy's Allow statements to what is kept; `None` when no statement is left
/// (Deny statements always stay: a guardrail policy is never dropped).
fn rewrite(
    doc: &Policy,
    keep: &dyn Fn(&str) -> bool,
    pinned: &dyn Fn(&str) -> bool,
    removed: &mut BTreeSet<String>,
) -> Option<Policy> {
    let catalogue = Catalogue::builtin();
    let mut statements: Vec<Statement> = Vec::new();
    for s in &doc.statements {
        let Patterns::Only(patterns) = &s.action else {
            // NotAction statements are kept as written: they cannot be narrowed without
            // enumerating every other action in AWS.
            statements.push(s.clone());
            continue;
        };
        if s.effect == Effect::Deny {
            statements.push(s.clone());
            continue;
        }
        let mut kept: Vec<String> = Vec::new();
        for p in patterns {
            let covered = catalogue.expand(p);
            if covered.is_empty() && !pinned(p) && !keep(p) {
                // A pattern of a service the catalogue does not know, shown unused as a whole.
                removed.insert(p.clone());
                continue;
            }
            if covered.is_empty() || pinned(p) {
                kept.push(p.clone());
                continue;
            }
            let (stay, go): (Vec<String>, Vec<String>) = covered.into_iter().partition(|a| keep(a));
            if go.is_empty() {
                kept.push(p.clone());
            } else {
                removed.extend(go);
                kept.extend(stay);
            }
        }
        kept.sort_by_key(|a| a.to_ascii_lowercase());
        kept.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        if !kept.is_empty() {
            statements.push(Statement {
                action: Patterns::Only(kept),
                ..s.clone()
            });
        }
    }
    if statements.is_empty() {
        return None;
    }
    Some(Policy {
        statements,
        ..doc.clone()
    })
}

/// One proposed role per person for a shared role: the role's own statements narrowed to
/// what that person did with it in the window (plus what CloudTrail cannot show).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PersonRole {
    pub person: String,
    pub suggested_name: String,
    pub used: Vec<String>,
    pub trust: Option<Value>,
    pub policy: Option<Value>,
}

/// Fit one role per person who used `role` (by source identity or session name).
pub fn per_person(
    inv: &Inventory,
    usage: &Usage,
    role: &str,
    opts: &PlanOptions,
) -> Result<Vec<PersonRole>, PlanError> {
    let r = inv
        .role(role)
        .ok_or_else(|| PlanError::UnknownRole(role.to_owned()))?;
    let since = opts.now_ms - opts.window_days * 86_400_000;
    let mut docs: Vec<Policy> = r.inline.iter().map(|(_, p)| p.clone()).collect();
    for arn in &r.attached {
        docs.push(
            inv.managed(arn)
                .and_then(|m| m.document.clone())
                .ok_or_else(|| PlanError::MissingManagedPolicy(arn.clone()))?,
        );
    }
    let mut people: Vec<(&String, &BTreeMap<String, i64>)> = usage
        .per_person
        .iter()
        .filter(|((arn, _), _)| *arn == r.arn)
        .map(|((_, person), used)| (person, used))
        .collect();
    people.sort_by_key(|(p, _)| p.to_owned());
    let mut out = Vec::new();
    for (person, used) in people {
        let used_now: BTreeSet<&str> = used
            .iter()
            .filter(|(_, &t)| t >= since)
            .map(|(a, _)| a.as_str())
            .collect();
        if used_now.is_empty() {
            continue;
        }
        let keep = |a: &str| used_now.contains(a) || Overlay::get().maybe_unrecorded(a);
        let mut gone = BTreeSet::new();
        let statements: Vec<Statement> = docs
            .iter()
            .filter_map(|d| rewrite(d, &keep, &|_| false, &mut gone))
            .flat_map(|p| p.statements)
            .collect();
        let policy = (!statements.is_empty()).then(|| {
            let p = Policy {
                version: Some(iam::policy::VERSION_2012.into()),
                id: None,
                statements,
            };
            serde_json::from_str(&p.to_compact_json()).expect("policy JSON")
        });
        let safe: String = person
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let mut name = format!("{}-{safe}", r.name);
        name.truncate(64);
        out.push(PersonRole {
            person: person.clone(),
            suggested_name: name,
            used: used_now.iter().map(|a| a.to_string()).collect(),
            trust: r
                .trust
                .as_ref()
                .map(|t| serde_json::from_str(&t.to_compact_json()).expect("policy JSON")),
            policy,
        });
    }
    Ok(out)
}

/// Announce a plan: one finding per role that will lose permissions (the owners' notice, as
/// Repokid sends before it repos), the time from which the plan may be applied, and the
/// schedule's id (over the announcement time, the date and the roles: the same plan
/// announced twice is two schedules) by which it is listed and cancelled.
pub fn schedule(plan: &mut Plan, now_ms: i64, days: i64) -> Vec<credwarden_core::Finding> {
    let when = EventTime(now_ms + days * 86_400_000).to_string();
    plan.not_before = Some(when.clone());
    let announced = EventTime(now_ms).to_string();
    let mut parts = vec![announced.as_str(), when.as_str(), plan.window_end.as_str()];
    parts.extend(plan.roles.iter().map(|r| r.arn.as_str()));
    let id = credwarden_core::finding_id("shrink-schedule", &parts);
    plan.schedule_id = Some(id.clone());
    let mut out = Vec::new();
    for r in plan
        .roles
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Shrink | Verdict::ToZero))
    {
        let what = if r.verdict == Verdict::ToZero {
            "all of its permissions".to_owned()
        } else {
            format!("{} unused permission(s)", r.removed.len())
        };
        out.push(credwarden_core::Finding {
            id: credwarden_core::finding_id("shrink-scheduled", &[&r.arn, &when]),
            detector: "shrink-scheduled",
            severity: credwarden_core::Severity::Low,
            time: EventTime(now_ms).to_string(),
            account: iam::wildcard::arn_parts(&r.arn).map(|p| p[4].to_owned()),
            account_name: None,
            account_owner: None,
            region: None,
            principal: Some(r.arn.clone()),
            access_key_id: None,
            source: credwarden_core::FindingSource::default(),
            event_ids: Vec::new(),
            summary: format!("{} will lose {what} on {when}", r.role),
            details: serde_json::json!({"removed": r.removed, "not_before": when, "reason": r.reason, "schedule_id": id}),
            remediation: "If the role needs them, tag it credwarden:shrink=never (apply checks the tag again) or ask for a new plan \
                once they are in use; after the change, `credwarden shrink rollback` restores the policies."
                .into(),
        });
    }
    out
}
