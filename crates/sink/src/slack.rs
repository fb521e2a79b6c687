//! Findings as people read them in Slack: an incoming-webhook message with the summary,
//! severity, detector, account (its registry name when known), principal and the
//! remediation.
//!
//! Every text comes from CloudTrail, which an attacker writes in part (user agents, session
//! names, resource names), so it is escaped for Slack's markup (`&`, `<`, `>`): a finding
//! cannot carry a link or a mention. The remediation is sent without links.

use serde_json::{json, Value};

/// Slack's markup escapes: `<` and `>` delimit links and mentions, `&` starts an entity.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Words that are URLs are dropped.
fn without_links(text: &str) -> String {
    text.split(' ')
        .filter(|w| !w.contains("://"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Cut to `max` characters (Slack limits a section's text).
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}

/// The Slack message for a finding given as its JSON line; `None` when it is not one.
pub fn render(finding_json: &str) -> Option<String> {
    let f: Value = serde_json::from_str(finding_json).ok()?;
    let field = |k: &str| f[k].as_str().map(escape);
    let severity = field("severity")?.to_uppercase();
    let detector = field("detector")?;
    let summary = cut(&field("summary").unwrap_or_default(), 2_500);
    let account = match (field("account_name"), field("account")) {
        (Some(name), Some(id)) => format!("{name} ({id})"),
        (None, Some(id)) => id,
        (Some(name), None) => name,
        (None, None) => "-".to_owned(),
    };
    let owner = field("account_owner")
        .map(|o| format!(", owner {o}"))
        .unwrap_or_default();
    let principal = field("principal").unwrap_or_else(|| "-".to_owned());
    let remediation = cut(
        &escape(&without_links(f["remediation"].as_str().unwrap_or(""))),
        2_500,
    );
    let id = field("id").unwrap_or_default();
    let text = format!("[{severity}] {detector} in {account}: {summary}");
    Some(
        json!({
            "text": cut(&text, 3_000),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn",
                    "text": format!("*[{severity}] {detector}*\n{summary}")}},
                {"type": "section", "fields": [
                    {"type": "mrkdwn", "text": format!("*Account*\n{account}{owner}")},
                    {"type": "mrkdwn", "text": format!("*Principal*\n{}", cut(&principal, 500))},
                ]},
                {"type": "section", "text": {"type": "mrkdwn",
                    "text": format!("*What to do*\n{remediation}")}},
                {"type": "context", "elements": [{"type": "mrkdwn",
                    "text": format!("credwarden finding {id}")}]},
            ]
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_escaped_and_link_free() {
        let finding = json!({"id": "abc", "detector": "static-key-use", "severity": "high",
            "account": "111122223333", "account_name": "payments-prod",
            "account_owner": "payments-team",
            "principal": "arn:aws:iam::111122223333:user/<!channel>",
            "summary": "Key used from 5.188.10.20 by <https://evil.example|click here>",
            "remediation": "Rotate the key. See https://docs.aws.amazon.com/x for how."});
        let msg: Value = serde_json::from_str(&render(&finding.to_string()).unwrap()).unwrap();
        let all = msg.to_string();
        assert!(msg["text"]
            .as_str()
            .unwrap()
            .starts_with("[HIGH] static-key-use in payments-prod (111122223333)"));
        assert!(!all.contains("<https"), "{all}");
        assert!(!all.contains("<!channel>"), "{all}");
        assert!(all.contains("&lt;!channel&gt;"), "{all}");
        assert!(
            !all.contains("docs.aws.amazon.com"),
            "remediation without links: {all}"
        );
        assert!(all.contains("payments-team"));
        assert_eq!(render("not json"), None);
    }
}
