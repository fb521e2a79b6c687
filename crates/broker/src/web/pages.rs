//! The pages: my roles, console sign-in, access requests, approvals, the audit log. Every
//! dynamic string is escaped with [`escape`]; every form that changes something carries the
//! session's CSRF token and is checked by [`Web::form`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use credwarden_core::EventTime;

use super::html::{escape, page};
use super::{html_response, problem, refused, see_other, Signed, Web};
use crate::http::request_id;

fn query(req: &Request) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn when(ms: i64) -> String {
    EventTime(ms).to_string()
}

/// The hidden CSRF field of a form.
fn csrf(s: &Signed) -> String {
    format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        escape(&s.session.csrf)
    )
}

/// An ARN's account and role name (the last part of its path).
fn account_and_name(arn: &str) -> (&str, &str) {
    let account = credwarden_core::account::arn_account(arn).unwrap_or("");
    let name = arn.rsplit('/').next().unwrap_or(arn);
    (account, name)
}

/// `GET /`: the roles the user may use now, filtered by `?q=`; the recently used ones
/// (from the audit); per role a console button and the `credential_process` line.
pub(super) async fn roles(State(w): State<Arc<Web>>, req: Request) -> Response {
    let q = query(&req).remove("q").unwrap_or_default();
    let (parts, _) = req.into_parts();
    let s = match w.signed_in(&parts).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let roles = match w.broker.roles_for(&s.caller).await {
        Ok(r) => r,
        Err(r) => return refused(Some(&s.viewer()), &r),
    };
    // The roles this user was last granted, newest first, that they may still use.
    let mut recent: Vec<String> = Vec::new();
    if let Ok(entries) = w
        .broker
        .audit_entries(Some(s.caller.user.clone()), 200)
        .await
    {
        for e in entries {
            if let Some(role) = e.role.filter(|_| e.decision == "granted") {
                if roles.contains(&role) && !recent.contains(&role) && recent.len() < 5 {
                    recent.push(role);
                }
            }
        }
    }
    let needle = q.trim().to_lowercase();
    // The filter matches the role's ARN and its account's name.
    let shown: Vec<&String> = roles
        .iter()
        .filter(|r| {
            needle.is_empty()
                || r.to_lowercase().contains(&needle)
                || w.broker
                    .account_label(account_and_name(r).0)
                    .to_lowercase()
                    .contains(&needle)
        })
        .collect();
    let mut body = format!(
        r#"<form method="get" action="/" role="search"><label for="q">Filter roles</label>
<input type="search" id="q" name="q" value="{}"> <button type="submit">Search</button></form>
"#,
        escape(&q)
    );
    if !recent.is_empty() {
        body.push_str(
            r#"<section aria-labelledby="recent"><h2 id="recent">Recently used</h2><ul>"#,
        );
        for r in &recent {
            let (account, name) = account_and_name(r);
            body.push_str(&format!(
                "<li>{} <small>({})</small></li>",
                escape(name),
                escape(&w.broker.account_label(account))
            ));
        }
        body.push_str("</ul></section>\n");
    }
    body.push_str(r#"<section aria-labelledby="all"><h2 id="all">Roles</h2>"#);
    if shown.is_empty() {
        body.push_str(if roles.is_empty() {
            r#"<p>You may use no role yet. <a href="/request">Request access</a>.</p>"#
        } else {
            "<p>No role matches the filter.</p>"
        });
    } else {
        body.push_str(
            "<table><thead><tr><th scope=\"col\">Role</th><th scope=\"col\">Account</th><th scope=\"col\">Console</th><th scope=\"col\">CLI (~/.aws/config)</th></tr></thead><tbody>",
        );
        for arn in shown {
            let (account, name) = account_and_name(arn);
            // The CLI takes a role name when it is unique among the user's roles.
            let unique = roles
                .iter()
                .filter(|r| account_and_name(r).1 == name)
                .count()
                == 1;
            let cli_role = if unique { name } else { arn.as_str() };
            body.push_str(&format!(
                r#"<tr><td>{name}<br><small>{arn}</small></td><td>{account}</td>
<td><form method="post" action="/console">{csrf}<input type="hidden" name="role" value="{arn}"><button type="submit" aria-label="Open the AWS console as {name}">Console</button></form></td>
<td><pre>[profile {name}]
credential_process = credwarden creds {cli_role} --process</pre></td></tr>
"#,
                name = escape(name),
                arn = escape(arn),
                account = escape(&w.broker.account_label(account)),
                csrf = csrf(&s),
                cli_role = escape(cli_role),
            ));
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section>");
    html_response(StatusCode::OK, page("My roles", Some(&s.viewer()), &body))
}

/// `POST /console`: a console sign-in for `role`, issued and audited as the API's, and the
/// browser sent to it.
pub(super) async fn console(State(w): State<Arc<Web>>, req: Request) -> Response {
    let (s, parts, f) = match w.form(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(role) = f.get("role").filter(|r| !r.is_empty()) else {
        return problem(400, Some(&s.viewer()), "no role named");
    };
    let rid = request_id();
    let result = async {
        let client = w.client_ip(&s, &parts)?;
        w.broker
            .console(&s.caller, client, role, None, None, &rid)
            .await
    }
    .await;
    match result {
        Ok(login) => see_other(&login.url),
        Err(r) => refused(Some(&s.viewer()), &r),
    }
}

/// Membership lengths offered, within `membership_max_seconds`.
fn durations(max: i64) -> Vec<(i64, &'static str)> {
    [
        (3600, "1 hour"),
        (4 * 3600, "4 hours"),
        (8 * 3600, "8 hours"),
        (86_400, "1 day"),
        (7 * 86_400, "7 days"),
    ]
    .into_iter()
    .filter(|(s, _)| *s <= max)
    .collect()
}

/// `GET /request`: the form, and the user's own requests.
pub(super) async fn request_form(State(w): State<Arc<Web>>, req: Request) -> Response {
    let sent = query(&req).contains_key("sent");
    let (parts, _) = req.into_parts();
    let s = match w.signed_in(&parts).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut body = String::new();
    if sent {
        body.push_str(
            r#"<p class="notice" role="status">Your request was sent to its approvers.</p>"#,
        );
    }
    let options: String = durations(w.broker.config().membership_max_seconds)
        .into_iter()
        .map(|(secs, label)| format!(r#"<option value="{secs}">{label}</option>"#))
        .collect();
    body.push_str(&format!(
        r#"<form method="post" action="/request">{csrf}
<p>Name a group, or a role (the group that opens it is asked for).</p>
<label for="group">Group</label><input type="text" id="group" name="group" autocomplete="off">
<label for="role">Role (instead of a group)</label><input type="text" id="role" name="role" autocomplete="off">
<label for="reason">Reason</label><textarea id="reason" name="reason" rows="3" cols="60" required></textarea>
<label for="duration">For how long</label><select id="duration" name="duration">{options}</select>
<p><button type="submit">Request access</button></p></form>
"#,
        csrf = csrf(&s)
    ));
    if let Ok(all) = w.broker.access_requests(&s.caller, None).await {
        let mine: Vec<_> = all
            .into_iter()
            .filter(|r| r.user == s.caller.user)
            .collect();
        if !mine.is_empty() {
            body.push_str(r#"<section aria-labelledby="mine"><h2 id="mine">Your requests</h2><table><thead><tr><th scope="col">Group</th><th scope="col">Reason</th><th scope="col">Asked</th><th scope="col">Status</th><th scope="col">Decided by</th><th scope="col">Comment</th></tr></thead><tbody>"#);
            for r in mine {
                body.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&r.group),
                    escape(&r.reason),
                    when(r.created_ms),
                    escape(&r.status),
                    escape(r.decided_by.as_deref().unwrap_or("")),
                    escape(r.comment.as_deref().unwrap_or("")),
                ));
            }
            body.push_str("</tbody></table></section>");
        }
    }
    html_response(
        StatusCode::OK,
        page("Request access", Some(&s.viewer()), &body),
    )
}

/// `POST /request`: through the same checks, audit and notification as the API.
pub(super) async fn request(State(w): State<Arc<Web>>, req: Request) -> Response {
    let (s, parts, f) = match w.form(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let field = |k: &str| f.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let duration = match field("duration").map(str::parse::<i64>) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(_)) => return problem(400, Some(&s.viewer()), "the duration is not a number"),
    };
    let rid = request_id();
    let result = async {
        let group = match (field("group"), field("role")) {
            (Some(g), None) => g.to_owned(),
            (None, Some(role)) => w.broker.group_for_role(role).await?,
            _ => {
                return Err(crate::Refusal::new(
                    400,
                    "bad-request",
                    "name either a group or a role to ask for",
                ))
            }
        };
        let client = w.client_ip(&s, &parts)?;
        let reason = f.get("reason").map(String::as_str).unwrap_or("");
        w.broker
            .request_access(&s.caller, client, &group, reason, duration, &rid)
            .await
    }
    .await;
    match result {
        Ok(_) => see_other("/request?sent=1"),
        Err(r) => refused(Some(&s.viewer()), &r),
    }
}

/// `GET /approvals`: the pending requests this user may decide (never their own).
pub(super) async fn approvals(State(w): State<Arc<Web>>, req: Request) -> Response {
    let done = query(&req).remove("done");
    let (parts, _) = req.into_parts();
    let s = match w.signed_in(&parts).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let pending = match w
        .broker
        .access_requests(&s.caller, Some("pending".into()))
        .await
    {
        Ok(p) => p,
        Err(r) => return refused(Some(&s.viewer()), &r),
    };
    let mut body = String::new();
    match done.as_deref() {
        Some("approved") => body.push_str(
            r#"<p class="notice" role="status">Approved: the membership holds from now.</p>"#,
        ),
        Some("denied") => body.push_str(r#"<p class="notice" role="status">Denied.</p>"#),
        _ => {}
    }
    let theirs: Vec<_> = pending
        .into_iter()
        .filter(|r| r.user != s.caller.user)
        .collect();
    if theirs.is_empty() {
        body.push_str("<p>Nothing waits for your decision.</p>");
    }
    for r in theirs {
        let id = escape(&r.id);
        body.push_str(&format!(
            r#"<section class="request" aria-labelledby="h-{id}"><h2 id="h-{id}">{user} asks for {group}</h2>
<dl><dt>Reason</dt><dd>{reason}</dd><dt>For</dt><dd>{secs} seconds</dd><dt>Asked</dt><dd>{asked}</dd></dl>
<form method="post" action="/approvals/{id}">{csrf}
<label for="comment-{id}">Comment</label><textarea id="comment-{id}" name="comment" rows="2" cols="60"></textarea>
<p><button type="submit" name="decision" value="approve">Approve</button> <button type="submit" name="decision" value="deny">Deny</button></p></form></section>
"#,
            user = escape(&r.user),
            group = escape(&r.group),
            reason = escape(&r.reason),
            secs = r.duration_seconds,
            asked = when(r.created_ms),
            csrf = csrf(&s),
        ));
    }
    html_response(StatusCode::OK, page("Approvals", Some(&s.viewer()), &body))
}

/// `POST /approvals/{id}`: approve or deny, with the API's rules (an approver of the group,
/// never the requester, a pending request only, once).
pub(super) async fn decide(
    State(w): State<Arc<Web>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (s, parts, f) = match w.form(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let decision = match f.get("decision").map(String::as_str) {
        Some("approve") => store::Decision::Approve,
        Some("deny") => store::Decision::Deny,
        _ => return problem(400, Some(&s.viewer()), "decide approve or deny"),
    };
    let comment = f.get("comment").map(String::as_str).unwrap_or("");
    let rid = request_id();
    let result = async {
        let client = w.client_ip(&s, &parts)?;
        w.broker
            .decide_access(&s.caller, client, &id, decision, comment, &rid)
            .await
    }
    .await;
    match (result, decision) {
        (Ok(_), store::Decision::Approve) => see_other("/approvals?done=approved"),
        (Ok(_), store::Decision::Deny) => see_other("/approvals?done=denied"),
        (Err(r), _) => refused(Some(&s.viewer()), &r),
    }
}

/// `GET /audit?user=`: the audit log, newest first, for the admin groups only.
pub(super) async fn audit(State(w): State<Arc<Web>>, req: Request) -> Response {
    let user = query(&req)
        .remove("user")
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty());
    let (parts, _) = req.into_parts();
    let s = match w.signed_in(&parts).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !s.admin {
        return problem(
            403,
            Some(&s.viewer()),
            "the audit log is for the admin groups",
        );
    }
    let entries = match w.broker.audit_entries(user.clone(), 200).await {
        Ok(e) => e,
        Err(r) => return refused(Some(&s.viewer()), &r),
    };
    let mut body = format!(
        r#"<form method="get" action="/audit" role="search"><label for="user">User</label>
<input type="text" id="user" name="user" value="{}"> <button type="submit">Filter</button></form>
<table><thead><tr><th scope="col">Time</th><th scope="col">User</th><th scope="col">Role</th><th scope="col">Decision</th><th scope="col">Reason</th><th scope="col">Client</th></tr></thead><tbody>
"#,
        escape(user.as_deref().unwrap_or(""))
    );
    for e in entries {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            when(e.time_ms),
            escape(&e.user),
            escape(e.role.as_deref().unwrap_or("")),
            escape(&e.decision),
            escape(&e.reason),
            escape(&e.client_ip),
        ));
    }
    body.push_str("</tbody></table>");
    html_response(StatusCode::OK, page("Audit", Some(&s.viewer()), &body))
}

/// `GET /findings?detector=&user=`: the broker's findings (anomalies, access requests and
/// decisions), newest first, for the admin groups only.
pub(super) async fn findings(State(w): State<Arc<Web>>, req: Request) -> Response {
    let mut q = query(&req);
    let detector = q
        .remove("detector")
        .map(|d| d.trim().to_owned())
        .unwrap_or_default();
    let user = q
        .remove("user")
        .map(|u| u.trim().to_owned())
        .unwrap_or_default();
    let (parts, _) = req.into_parts();
    let s = match w.signed_in(&parts).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !s.admin {
        return problem(
            403,
            Some(&s.viewer()),
            "the findings are for the admin groups",
        );
    }
    let findings = match w.broker.recent_findings(500) {
        None => {
            return problem(
                404,
                Some(&s.viewer()),
                "this broker writes no findings file (findings = FILE in its configuration)",
            )
        }
        Some(Err(r)) => return refused(Some(&s.viewer()), &r),
        Some(Ok(f)) => f,
    };
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_owned();
    let mut body = format!(
        r#"<form method="get" action="/findings" role="search"><label for="detector">Detector</label>
<input type="text" id="detector" name="detector" value="{}"> <label for="fuser">User or principal</label>
<input type="text" id="fuser" name="user" value="{}"> <button type="submit">Filter</button></form>
<table><thead><tr><th scope="col">Time</th><th scope="col">Detector</th><th scope="col">Severity</th><th scope="col">Principal</th><th scope="col">Summary</th></tr></thead><tbody>
"#,
        escape(&detector),
        escape(&user)
    );
    for f in findings.iter().filter(|f| {
        (detector.is_empty() || text(f, "detector") == detector)
            && (user.is_empty() || text(f, "principal").contains(&user))
    }) {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&text(f, "time")),
            escape(&text(f, "detector")),
            escape(&text(f, "severity")),
            escape(&text(f, "principal")),
            escape(&text(f, "summary")),
        ));
    }
    body.push_str("</tbody></table>");
    html_response(StatusCode::OK, page("Findings", Some(&s.viewer()), &body))
}
