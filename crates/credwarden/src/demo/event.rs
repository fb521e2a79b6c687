//! Writing CloudTrail records as AWS does: the field names, nesting and value formats of
//! real management events (eventVersion 1.09/1.10), at realistic sizes (~1.2 kB).

use cloudtrail::EventTime;
use std::fmt::Write;

/// Who made a call.
pub enum Who<'a> {
    /// A role session: instance credentials, console federation, Lambda, ECS tasks.
    Role {
        account: &'a str,
        role: &'a str,
        role_id: &'a str,
        session: &'a str,
        key: &'a str,
        created: EventTime,
        delivery: Option<&'a str>,
        console: bool,
        invoked_by: Option<&'a str>,
    },
    /// An IAM user's long-lived key.
    User {
        account: &'a str,
        user: &'a str,
        user_id: &'a str,
        key: &'a str,
    },
    /// An AWS service acting for itself (issuing credentials, for example).
    Service { invoked_by: &'a str },
}

pub struct Call<'a> {
    pub time: EventTime,
    pub source: &'a str,
    pub name: &'a str,
    pub region: &'a str,
    pub ip: &'a str,
    pub user_agent: &'a str,
    pub who: Who<'a>,
    pub account: &'a str,
    pub read_only: bool,
    /// Raw JSON objects (or `None` for null).
    pub request: Option<&'a str>,
    pub response: Option<&'a str>,
    pub vpce: Option<(&'a str, &'a str)>,
    pub error: Option<(&'a str, &'a str)>,
    pub event_id: &'a str,
    pub request_id: &'a str,
    /// ARNs for the `resources` array.
    pub resources: &'a [&'a str],
}

fn q(buf: &mut String, s: &str) {
    buf.push('"');
    for c in s.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => buf.push(c),
        }
    }
    buf.push('"');
}

fn field(buf: &mut String, key: &str, value: &str) {
    q(buf, key);
    buf.push(':');
    q(buf, value);
    buf.push(',');
}

fn host_for(source: &str, region: &str) -> String {
    let service = source.trim_end_matches(".amazonaws.com");
    match service {
        "iam" | "sts" if region == "us-east-1" => format!("{service}.amazonaws.com"),
        _ => format!("{service}.{region}.amazonaws.com"),
    }
}

impl Call<'_> {
    pub fn write_json(&self, buf: &mut String) {
        buf.push('{');
        field(buf, "eventVersion", "1.09");
        q(buf, "userIdentity");
        buf.push_str(":{");
        match &self.who {
            Who::Role {
                account,
                role,
                role_id,
                session,
                key,
                created,
                delivery,
                console,
                invoked_by,
            } => {
                field(buf, "type", "AssumedRole");
                field(buf, "principalId", &format!("{role_id}:{session}"));
                field(
                    buf,
                    "arn",
                    &format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
                );
                field(buf, "accountId", account);
                field(buf, "accessKeyId", key);
                if let Some(by) = invoked_by {
                    field(buf, "invokedBy", by);
                }
                buf.push_str("\"sessionContext\":{\"sessionIssuer\":{");
                field(buf, "type", "Role");
                field(buf, "principalId", role_id);
                field(buf, "arn", &format!("arn:aws:iam::{account}:role/{role}"));
                field(buf, "accountId", account);
                q(buf, "userName");
                buf.push(':');
                q(buf, role);
                buf.push_str("},\"attributes\":{");
                field(buf, "creationDate", &created.to_string());
                buf.push_str(&format!(
                    "\"mfaAuthenticated\":\"{}\"}}",
                    if *console { "true" } else { "false" }
                ));
                if let Some(d) = delivery {
                    buf.push_str(",\"ec2RoleDelivery\":");
                    q(buf, d);
                }
                buf.push('}');
            }
            Who::User {
                account,
                user,
                user_id,
                key,
            } => {
                field(buf, "type", "IAMUser");
                field(buf, "principalId", user_id);
                field(buf, "arn", &format!("arn:aws:iam::{account}:user/{user}"));
                field(buf, "accountId", account);
                field(buf, "accessKeyId", key);
                q(buf, "userName");
                buf.push(':');
                q(buf, user);
            }
            Who::Service { invoked_by } => {
                field(buf, "type", "AWSService");
                q(buf, "invokedBy");
                buf.push(':');
                q(buf, invoked_by);
            }
        }
        buf.push_str("},");
        field(buf, "eventTime", &self.time.to_string());
        field(buf, "eventSource", self.source);
        field(buf, "eventName", self.name);
        field(buf, "awsRegion", self.region);
        field(buf, "sourceIPAddress", self.ip);
        field(buf, "userAgent", self.user_agent);
        if let Some((code, message)) = self.error {
            field(buf, "errorCode", code);
            field(buf, "errorMessage", message);
        }
        buf.push_str("\"requestParameters\":");
        buf.push_str(self.request.unwrap_or("null"));
        buf.push_str(",\"responseElements\":");
        buf.push_str(self.response.unwrap_or("null"));
        buf.push(',');
        field(buf, "requestID", self.request_id);
        field(buf, "eventID", self.event_id);
        buf.push_str(if self.read_only {
            "\"readOnly\":true,"
        } else {
            "\"readOnly\":false,"
        });
        if !self.resources.is_empty() {
            buf.push_str("\"resources\":[");
            for (i, arn) in self.resources.iter().enumerate() {
                if i > 0 {
                    buf.push(',');
                }
                buf.push_str("{\"ARN\":");
                q(buf, arn);
                buf.push_str(",\"accountId\":");
                q(buf, self.account);
                buf.push('}');
            }
            buf.push_str("],");
        }
        field(buf, "eventType", "AwsApiCall");
        buf.push_str("\"managementEvent\":true,");
        field(buf, "recipientAccountId", self.account);
        if let Some((id, owner)) = self.vpce {
            field(buf, "vpcEndpointId", id);
            field(buf, "vpcEndpointAccountId", owner);
        }
        field(buf, "eventCategory", "Management");
        if !matches!(self.who, Who::Service { .. }) {
            buf.push_str("\"tlsDetails\":{");
            field(buf, "tlsVersion", "TLSv1.3");
            field(buf, "cipherSuite", "TLS_AES_128_GCM_SHA256");
            q(buf, "clientProvidedHostHeader");
            buf.push(':');
            q(buf, &host_for(self.source, self.region));
            buf.push_str("},");
        }
        if let Who::Role { console: true, .. } = self.who {
            buf.push_str("\"sessionCredentialFromConsole\":\"true\",");
        }
        buf.pop();
        buf.push('}');
    }
}

/// STS's human expiration format: `Mar 2, 2026, 6:30:22 AM`.
pub fn sts_expiration(t: EventTime) -> String {
    let (y, mo, d, h, mi, s) = t.to_parts();
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (h12, ampm) = match h {
        0 => (12, "AM"),
        1..=11 => (h, "AM"),
        12 => (12, "PM"),
        _ => (h - 12, "PM"),
    };
    format!(
        "{} {d}, {y}, {h12}:{mi:02}:{s:02} {ampm}",
        MONTHS[(mo - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_round_trips_through_the_parser() {
        for t in [
            "2026-03-02T06:30:22Z",
            "2026-03-02T00:05:00Z",
            "2026-03-02T12:00:59Z",
            "2026-12-31T23:59:59Z",
        ] {
            let t = EventTime::parse(t).unwrap();
            assert_eq!(EventTime::parse_expiration(&sts_expiration(t)), Some(t));
        }
    }

    #[test]
    fn written_records_parse_as_cloudtrail() {
        let mut buf = String::new();
        let call = Call {
            time: EventTime::parse("2026-03-02T00:00:00Z").unwrap(),
            source: "s3.amazonaws.com",
            name: "GetObject",
            region: "us-east-1",
            ip: "10.0.0.1",
            user_agent: "ua \"quoted\"",
            who: Who::Role {
                account: "111122223333",
                role: "web",
                role_id: "AROAX",
                session: "i-0123456789abcdef0",
                key: "ASIAX",
                created: EventTime(0),
                delivery: Some("2.0"),
                console: false,
                invoked_by: None,
            },
            account: "111122223333",
            read_only: true,
            request: Some(r#"{"bucketName":"b"}"#),
            response: None,
            vpce: Some(("vpce-1", "111122223333")),
            error: None,
            event_id: "e",
            request_id: "r",
            resources: &["arn:aws:s3:::b"],
        };
        call.write_json(&mut buf);
        let v: serde_json::Value = serde_json::from_str(&buf).unwrap();
        assert_eq!(
            v["userIdentity"]["sessionContext"]["ec2RoleDelivery"],
            "2.0"
        );
        assert_eq!(v["userAgent"], "ua \"quoted\"");
        assert_eq!(v["vpcEndpointId"], "vpce-1");
        assert_eq!(v["resources"][0]["ARN"], "arn:aws:s3:::b");
    }
}
