//! Access requests, their approval, and the memberships approved ones become.
//!
//! A user asks for a group (with a reason and a duration within `membership_max_seconds`); the
//! group's approvers (`[[approvers]]`) and the admin groups may approve or deny it, never the
//! requester, even an admin. An approval is a membership in the store until it expires, which
//! the broker adds to the user's groups at their next request on any replica (read from the
//! store on every request: no cache to outlive a revocation or to delay a grant). The
//! request, each decision, and the refusals are audited; the request notifies the approvers and
//! the decision the requester, through the broker's findings delivery.

use std::collections::BTreeSet;
use std::net::IpAddr;

use credwarden_core::{finding_id, EventTime, Finding, FindingSource, Severity};
use store::{AccessRequest, AuditEntry, Decided, Decision, Membership, RequestScope, MAX_REASON};

use super::{caller_entry, now_ms, Broker, Limited, Refusal};
use crate::auth::Caller;

/// The longest group name a request may name.
const MAX_GROUP: usize = 128;
/// The shortest membership a request may ask for (seconds).
const MIN_MEMBERSHIP_SECONDS: i64 = 60;
/// Requests listed at most.
const LIST_LIMIT: usize = 500;

/// A request id: 32 lowercase hex digits, as the broker makes them. Anything else (a path
/// trick, another encoding of the same id) names no request.
pub fn is_request_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn new_request_id() -> String {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("system randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Free text (a reason, a comment) fit to keep and show: within `MAX_REASON` bytes, no control
/// characters but newlines and tabs (they would garble the audit and the notifications).
fn free_text(what: &str, text: &str, required: bool) -> Result<(), Refusal> {
    if required && text.trim().is_empty() {
        return Err(Refusal::new(
            400,
            "bad-request",
            format!("{what} is required"),
        ));
    }
    if text.len() > MAX_REASON {
        return Err(Refusal::new(
            400,
            "bad-request",
            format!("{what} is at most {MAX_REASON} bytes"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Refusal::new(
            400,
            "bad-request",
            format!("{what} holds control characters"),
        ));
    }
    Ok(())
}

/// `seconds` as people say it: "1h", "90m", "2d".
fn span(seconds: i64) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl Broker {
    /// Groups `user` holds through approved, unexpired memberships in the store. Read on every
    /// request: an approval counts at once on every replica, and an expiry the moment it comes.
    pub(super) async fn granted_groups(
        &self,
        user: &str,
        request_id: &str,
    ) -> Result<BTreeSet<String>, Refusal> {
        let user = user.to_owned();
        self.store(move |s| s.memberships_of(&user, now_ms()))
            .await
            .map(|ms| ms.into_iter().map(|m| m.group).collect())
            // A store that cannot be read cannot audit either: refuse rather than answer
            // with fewer (or, from some cache, revoked) groups.
            .map_err(|e| self.audit_unavailable(request_id, &e, ""))
    }

    /// The groups whose approvers may decide requests for `group`, and whether any exist.
    fn approver_groups(&self, group: &str) -> BTreeSet<String> {
        self.cfg
            .approvers
            .iter()
            .filter(|a| a.group == group)
            .flat_map(|a| a.approvers.iter().cloned())
            .chain(self.cfg.admin_groups.iter().cloned())
            .collect()
    }

    /// May `caller` decide requests for `group` (their own excepted, always)?
    fn may_approve(&self, caller: &Caller, group: &str) -> bool {
        self.is_admin(caller) || !self.approver_groups(group).is_disjoint(&caller.groups)
    }

    /// The groups whose requests `caller` decides; `None`: every group (an admin).
    fn approves(&self, caller: &Caller) -> Option<Vec<String>> {
        if self.is_admin(caller) {
            return None;
        }
        Some(
            self.cfg
                .approvers
                .iter()
                .filter(|a| a.approvers.iter().any(|g| caller.groups.contains(g)))
                .map(|a| a.group.clone())
                .collect(),
        )
    }

    fn network_of(&self, client: IpAddr) -> Option<String> {
        self.networks
            .iter()
            .find(|n| n.clients.iter().any(|c| c.contains(client)))
            .map(|n| n.name.clone())
    }

    /// The group a request for `role` (ARN or name) asks for: the one group that may use the
    /// role and has `[[approvers]]`. None or several: refused with the same words either way,
    /// so that a request does not tell whether a role exists or which groups open it.
    pub async fn group_for_role(&self, role: &str) -> Result<String, Refusal> {
        let groups = self.role_groups().await?;
        let approved: BTreeSet<&String> = self.cfg.approvers.iter().map(|a| &a.group).collect();
        let candidates: BTreeSet<&String> = groups
            .iter()
            .filter(|(arn, _)| arn.as_str() == role || arn.rsplit('/').next() == Some(role))
            .flat_map(|(_, g)| g.iter())
            .filter(|g| approved.contains(g))
            .collect();
        match candidates.into_iter().collect::<Vec<_>>().as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(Refusal::new(
                400,
                "role-unresolved",
                "name the group to ask for: a request for a role needs it to be opened by exactly one group with approvers",
            )),
        }
    }

    /// Ask to be added to `group` for `duration_seconds` (default and most:
    /// `membership_max_seconds`): a pending request in the store with its audit row, and a
    /// notification to the group's approvers.
    pub async fn request_access(
        &self,
        caller: &Caller,
        client: IpAddr,
        group: &str,
        reason: &str,
        duration_seconds: Option<i64>,
        request_id: &str,
    ) -> Result<AccessRequest, Refusal> {
        if group.is_empty() || group.len() > MAX_GROUP || group.chars().any(char::is_control) {
            return Err(Refusal::new(
                400,
                "bad-request",
                format!(
                    "group (1–{MAX_GROUP} characters, no control characters) and reason (at most {MAX_REASON}) are required"
                ),
            ));
        }
        free_text("reason", reason, true)?;
        let max = self.cfg.membership_max_seconds;
        let duration = duration_seconds.unwrap_or(max);
        if !(MIN_MEMBERSHIP_SECONDS..=max).contains(&duration) {
            return Err(Refusal::new(
                400,
                "bad-duration",
                format!("duration_seconds must be within {MIN_MEMBERSHIP_SECONDS}..={max}"),
            ));
        }
        if caller.groups.contains(group) {
            return Err(Refusal::new(
                409,
                "already-member",
                format!("you are already in {group}"),
            ));
        }
        let approvers = self.approver_groups(group);
        if approvers.is_empty() {
            return Err(Refusal::new(
                400,
                "no-approver",
                format!("nobody approves requests for {group}: the broker names no approvers for it and no admin groups"),
            ));
        }
        let entry = AuditEntry {
            network: self.network_of(client),
            role: Some(format!("group:{group}")),
            decision: "access-requested".into(),
            duration_seconds: Some(duration),
            ..caller_entry(caller, client, request_id)
        };
        // Each request is a row, an audit entry and a notification: a user gets a few an hour.
        self.limit(Limited::AccessRequests, &entry).await?;
        let request = AccessRequest {
            id: new_request_id(),
            user: caller.user.clone(),
            group: group.to_owned(),
            reason: reason.to_owned(),
            duration_seconds: duration,
            status: "pending".into(),
            created_ms: entry.time_ms,
            decided_by: None,
            decided_ms: None,
            comment: None,
        };
        let entry = AuditEntry {
            reason: format!("request {}: {reason}", request.id),
            ..entry
        };
        let (r, e) = (request.clone(), entry.clone());
        self.store(move |s| s.access_request_create(&r, &e))
            .await
            .map_err(|e| self.audit_unavailable(request_id, &e, "; nothing was requested"))?;
        let approvers: Vec<String> = approvers.into_iter().collect();
        self.notify(
            "access-request",
            &request,
            &entry,
            format!(
                "{} asks for {} for {}: {} (approvers: {})",
                request.user,
                request.group,
                span(duration),
                reason,
                approvers.join(", ")
            ),
            serde_json::json!({"approver_groups": approvers}),
            format!(
                "A member of {} (not {}) approves or denies it: POST /v1/access-requests/{}/approve or /deny.",
                approvers.join(" or "),
                request.user,
                request.id
            ),
        );
        Ok(request)
    }

    /// The requests `caller` may see: those they may decide (every group's for an admin) and
    /// their own, newest first; `status` filters (`pending`, `approved`, `denied`).
    pub async fn access_requests(
        &self,
        caller: &Caller,
        status: Option<String>,
    ) -> Result<Vec<AccessRequest>, Refusal> {
        if status
            .as_deref()
            .is_some_and(|s| !matches!(s, "pending" | "approved" | "denied"))
        {
            return Err(Refusal::new(
                400,
                "bad-request",
                "status is pending, approved or denied",
            ));
        }
        let approves = self.approves(caller);
        let user = caller.user.clone();
        self.store(move |s| {
            let scope = match &approves {
                None => RequestScope::All,
                Some(groups) => RequestScope::Visible {
                    user: &user,
                    groups,
                },
            };
            s.access_requests(scope, status.as_deref(), LIST_LIMIT)
        })
        .await
        .map_err(|e| self.audit_unavailable("", &e, ""))
    }

    /// Approve or deny request `id` as `caller`: only a pending request, only an approver of
    /// its group, never one's own. The decision is one conditional update in the store, so
    /// approvers on two replicas make one decision; the loser is told it was decided already.
    pub async fn decide_access(
        &self,
        caller: &Caller,
        client: IpAddr,
        id: &str,
        decision: Decision,
        comment: &str,
        request_id: &str,
    ) -> Result<(AccessRequest, Option<Membership>), Refusal> {
        let mut entry = AuditEntry {
            network: self.network_of(client),
            decision: "refused".into(),
            ..caller_entry(caller, client, request_id)
        };
        if !is_request_id(id) {
            entry.role = Some("access-request".into());
            return Err(self
                .refuse(
                    entry,
                    Refusal::new(404, "not-found", "no such access request"),
                )
                .await);
        }
        entry.role = Some(format!("access-request:{id}"));
        if let Err(r) = free_text("comment", comment, false) {
            return Err(self.refuse(entry, r).await);
        }
        let wanted = id.to_owned();
        let found = self
            .store(move |s| s.access_request(&wanted))
            .await
            .map_err(|e| self.audit_unavailable(request_id, &e, "; nothing was decided"))?;
        let Some(request) = found else {
            return Err(self
                .refuse(
                    entry,
                    Refusal::new(404, "not-found", "no such access request"),
                )
                .await);
        };
        entry.role = Some(format!("group:{}", request.group));
        if request.user == caller.user {
            return Err(self
                .refuse(
                    entry,
                    Refusal::new(
                        403,
                        "own-request",
                        "nobody decides their own access request; another approver must",
                    )
                    .detail(format!("tried to decide their own request {id}")),
                )
                .await);
        }
        if !self.may_approve(caller, &request.group) {
            return Err(self
                .refuse(
                    entry,
                    Refusal::new(
                        403,
                        "not-approver",
                        "you do not approve requests for that group",
                    )
                    .detail(format!(
                        "not an approver of {} (request {id} of {})",
                        request.group, request.user
                    )),
                )
                .await);
        }
        let now = now_ms();
        entry.time_ms = now;
        entry.decision = match decision {
            Decision::Approve => "access-approved",
            Decision::Deny => "access-denied",
        }
        .into();
        entry.duration_seconds = Some(request.duration_seconds);
        if decision == Decision::Approve {
            let until = now.saturating_add(request.duration_seconds.saturating_mul(1000));
            entry.expiration = Some(EventTime(until).to_string());
        }
        entry.reason = format!(
            "request {id} of {} for {} ({}): {comment}",
            request.user,
            request.group,
            span(request.duration_seconds)
        );
        let (by, what, e) = (caller.user.clone(), comment.to_owned(), entry.clone());
        let wanted = id.to_owned();
        let decided = self
            .store(move |s| s.access_request_decide(&wanted, decision, &by, &what, now, &e))
            .await
            .map_err(|e| self.audit_unavailable(request_id, &e, "; nothing was decided"))?;
        match decided {
            Decided::Done {
                request,
                membership,
            } => {
                let until = membership
                    .as_ref()
                    .map(|m| format!(" until {}", EventTime(m.expires_ms)))
                    .unwrap_or_default();
                self.notify(
                    "access-decision",
                    &request,
                    &entry,
                    format!(
                        "{} {} {}'s request for {}{until}{}",
                        caller.user,
                        request.status,
                        request.user,
                        request.group,
                        if comment.is_empty() {
                            String::new()
                        } else {
                            format!(": {comment}")
                        }
                    ),
                    serde_json::json!({"expires": membership.as_ref().map(|m| EventTime(m.expires_ms).to_string())}),
                    match decision {
                        Decision::Approve => format!(
                            "{} is in {} until the membership expires; the broker audits every use.",
                            request.user, request.group
                        ),
                        Decision::Deny => "Nothing to do; the user may ask again with more context.".into(),
                    },
                );
                Ok((request, membership))
            }
            Decided::Unchanged(now) => {
                let refusal = Refusal::new(
                    409,
                    "already-decided",
                    format!("the request is {} already", now.status),
                );
                entry.decision = "refused".into();
                entry.reason = String::new();
                Err(self.refuse(entry, refusal).await)
            }
            Decided::Missing => Err(self
                .refuse(
                    entry,
                    Refusal::new(404, "not-found", "no such access request"),
                )
                .await),
        }
    }

    /// A notification about `request` through the findings delivery (file, webhook): its own
    /// detector name, the requester as principal, never a credential.
    fn notify(
        &self,
        detector: &'static str,
        request: &AccessRequest,
        entry: &AuditEntry,
        summary: String,
        extra: serde_json::Value,
        remediation: String,
    ) {
        let Some(out) = &self.findings else { return };
        let mut details = serde_json::json!({
            // `kind` as broker-anomaly findings have it, for filters written for those.
            "kind": detector,
            "request": request.id,
            "group": request.group,
            "user": request.user,
            "reason": request.reason,
            "duration_seconds": request.duration_seconds,
            "status": request.status,
            "decided_by": request.decided_by,
            "comment": request.comment,
        });
        if let (Some(d), Some(extra)) = (details.as_object_mut(), extra.as_object()) {
            d.extend(extra.clone());
        }
        let f = Finding {
            id: finding_id(detector, &[&request.id, &request.status]),
            detector,
            severity: Severity::Low,
            time: EventTime(entry.time_ms).to_string(),
            account: None,
            account_name: None,
            account_owner: None,
            region: None,
            principal: Some(request.user.clone()),
            access_key_id: None,
            source: FindingSource {
                ip: Some(entry.client_ip.clone()),
                vpc_endpoint: None,
                user_agent: None,
            },
            event_ids: vec![entry.request_id.clone()],
            summary,
            details,
            remediation,
        };
        if let Err(err) = out.deliver(&f) {
            eprintln!("broker: cannot deliver notification {}: {err}", f.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_exactly_what_the_broker_makes() {
        let id = new_request_id();
        assert!(is_request_id(&id), "{id}");
        assert_ne!(id, new_request_id());
        for bad in [
            "",
            "../../etc/passwd",
            &id.to_uppercase(),
            &format!("{id}/approve"),
            &id[..31],
            &format!("{}%2e", &id[..29]),
        ] {
            assert!(!is_request_id(bad), "{bad}");
        }
    }

    #[test]
    fn free_text_is_bounded_and_printable() {
        assert!(free_text("reason", "on call\nthis week", true).is_ok());
        assert_eq!(free_text("reason", "  ", true).unwrap_err().status, 400);
        assert!(free_text("comment", "", false).is_ok());
        assert!(free_text("reason", &"x".repeat(MAX_REASON + 1), true).is_err());
        assert!(free_text("reason", "a\u{1b}[2Jb", true).is_err());
        assert_eq!(span(3600), "1h");
        assert_eq!(span(90 * 60), "90m");
        assert_eq!(span(86_400 * 2), "2d");
    }
}
