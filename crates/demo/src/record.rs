//! Writing CloudTrail records as AWS does: the field names, nesting and value formats of
//! real management events (eventVersion 1.09/1.10), at realistic sizes (~1.2 kB).

use std::fmt::Write;

use credwarden_core::EventTime;

/// An API operation: the service's event source and the event name.
#[derive(Clone, Copy, Debug)]
pub struct Api<'a> {
    /// `eventSource`, e.g. `s3.amazonaws.com`.
    pub source: &'a str,
    /// `eventName`, e.g. `GetObject`.
    pub name: &'a str,
}

impl<'a> Api<'a> {
    pub const fn new(source: &'a str, name: &'a str) -> Api<'a> {
        Api { source, name }
    }
}

/// The error a call got: `errorCode` and `errorMessage`.
#[derive(Clone, Copy, Debug)]
pub struct ApiError<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

/// A VPC endpoint a call went through, and the account that owns it.
#[derive(Clone, Copy, Debug)]
pub struct VpcEndpoint<'a> {
    pub id: &'a str,
    pub account: &'a str,
}

/// The account and region a call is recorded in.
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    /// `recipientAccountId` (and the account of every listed resource).
    pub account: &'a str,
    /// `awsRegion`.
    pub region: &'a str,
}

/// Where a call came from: its source address, user agent and VPC endpoint, if any.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    pub ip: &'a str,
    pub user_agent: &'a str,
    pub vpc_endpoint: Option<VpcEndpoint<'a>>,
}

impl<'a> Origin<'a> {
    /// A call from `ip`, not through a VPC endpoint.
    pub fn new(ip: &'a str, user_agent: &'a str) -> Origin<'a> {
        Origin {
            ip,
            user_agent,
            vpc_endpoint: None,
        }
    }
}

/// A record's `eventID` and `requestID`.
#[derive(Clone, Debug)]
pub struct RecordIds {
    pub event_id: String,
    pub request_id: String,
}

/// A role session: instance credentials, console federation, Lambda, ECS tasks. Fields left
/// out of a literal (`..Default::default()`) are a plain session: no `ec2RoleDelivery`, not
/// from the console, not invoked by a service.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoleSession<'a> {
    pub account: &'a str,
    pub role: &'a str,
    pub role_id: &'a str,
    pub session: &'a str,
    pub key: &'a str,
    pub created: EventTime,
    /// `ec2RoleDelivery`: `1.0` or `2.0` for instance credentials.
    pub delivery: Option<&'a str>,
    /// Console federation (`mfaAuthenticated`, `sessionCredentialFromConsole`).
    pub console: bool,
    /// The AWS service that made the call on the session's behalf.
    pub invoked_by: Option<&'a str>,
}

/// An IAM user's long-lived key.
#[derive(Clone, Copy, Debug)]
pub struct UserKey<'a> {
    pub account: &'a str,
    pub user: &'a str,
    pub user_id: &'a str,
    pub key: &'a str,
}

/// Who made a call.
#[derive(Clone, Copy, Debug)]
pub enum Caller<'a> {
    Role(RoleSession<'a>),
    User(UserKey<'a>),
    /// An AWS service acting for itself (issuing credentials, for example).
    Service {
        invoked_by: &'a str,
    },
}

impl Caller<'_> {
    /// The call was made by AWS (a service for itself, or on a principal's behalf).
    pub fn is_service(&self) -> bool {
        matches!(
            self,
            Caller::Service { .. }
                | Caller::Role(RoleSession {
                    invoked_by: Some(_),
                    ..
                })
        )
    }

    /// The principal's ARN (the role for a role session), if a principal made the call.
    pub fn principal_arn(&self) -> Option<String> {
        match self {
            Caller::Role(s) => Some(format!("arn:aws:iam::{}:role/{}", s.account, s.role)),
            Caller::User(u) => Some(format!("arn:aws:iam::{}:user/{}", u.account, u.user)),
            Caller::Service { .. } => None,
        }
    }
}

/// One management event, built with [`Call::new`] and the builder methods.
#[derive(Clone, Debug)]
pub struct Call<'a> {
    pub time: EventTime,
    pub api: Api<'a>,
    pub place: Place<'a>,
    pub caller: Caller<'a>,
    pub origin: Origin<'a>,
    pub ids: &'a RecordIds,
    pub read_only: bool,
    /// Raw JSON objects (or `None` for null).
    pub request: Option<&'a str>,
    pub response: Option<&'a str>,
    pub error: Option<ApiError<'a>>,
    /// ARNs for the `resources` array.
    pub resources: &'a [&'a str],
}

impl<'a> Call<'a> {
    /// A successful write with null request and response and no resources; the builder
    /// methods say otherwise.
    pub fn new(
        time: EventTime,
        api: Api<'a>,
        place: Place<'a>,
        caller: Caller<'a>,
        origin: Origin<'a>,
        ids: &'a RecordIds,
    ) -> Call<'a> {
        Call {
            time,
            api,
            place,
            caller,
            origin,
            ids,
            read_only: false,
            request: None,
            response: None,
            error: None,
            resources: &[],
        }
    }

    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    pub fn request(mut self, json: &'a str) -> Self {
        self.request = Some(json);
        self
    }

    pub fn response(mut self, json: &'a str) -> Self {
        self.response = Some(json);
        self
    }

    pub fn error(mut self, error: Option<ApiError<'a>>) -> Self {
        self.error = error;
        self
    }

    pub fn resources(mut self, arns: &'a [&'a str]) -> Self {
        self.resources = arns;
        self
    }
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

fn write_role_session(buf: &mut String, s: &RoleSession<'_>) {
    let RoleSession {
        account,
        role,
        role_id,
        session,
        key,
        created,
        delivery,
        console,
        invoked_by,
    } = s;
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

impl Call<'_> {
    pub fn write_json(&self, buf: &mut String) {
        buf.push('{');
        field(buf, "eventVersion", "1.09");
        q(buf, "userIdentity");
        buf.push_str(":{");
        match &self.caller {
            Caller::Role(session) => write_role_session(buf, session),
            Caller::User(UserKey {
                account,
                user,
                user_id,
                key,
            }) => {
                field(buf, "type", "IAMUser");
                field(buf, "principalId", user_id);
                field(buf, "arn", &format!("arn:aws:iam::{account}:user/{user}"));
                field(buf, "accountId", account);
                field(buf, "accessKeyId", key);
                q(buf, "userName");
                buf.push(':');
                q(buf, user);
            }
            Caller::Service { invoked_by } => {
                field(buf, "type", "AWSService");
                q(buf, "invokedBy");
                buf.push(':');
                q(buf, invoked_by);
            }
        }
        buf.push_str("},");
        field(buf, "eventTime", &self.time.to_string());
        field(buf, "eventSource", self.api.source);
        field(buf, "eventName", self.api.name);
        field(buf, "awsRegion", self.place.region);
        field(buf, "sourceIPAddress", self.origin.ip);
        field(buf, "userAgent", self.origin.user_agent);
        if let Some(ApiError { code, message }) = self.error {
            field(buf, "errorCode", code);
            field(buf, "errorMessage", message);
        }
        buf.push_str("\"requestParameters\":");
        buf.push_str(self.request.unwrap_or("null"));
        buf.push_str(",\"responseElements\":");
        buf.push_str(self.response.unwrap_or("null"));
        buf.push(',');
        field(buf, "requestID", &self.ids.request_id);
        field(buf, "eventID", &self.ids.event_id);
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
                q(buf, self.place.account);
                buf.push('}');
            }
            buf.push_str("],");
        }
        field(buf, "eventType", "AwsApiCall");
        buf.push_str("\"managementEvent\":true,");
        field(buf, "recipientAccountId", self.place.account);
        if let Some(VpcEndpoint { id, account }) = self.origin.vpc_endpoint {
            field(buf, "vpcEndpointId", id);
            field(buf, "vpcEndpointAccountId", account);
        }
        field(buf, "eventCategory", "Management");
        if !matches!(self.caller, Caller::Service { .. }) {
            buf.push_str("\"tlsDetails\":{");
            field(buf, "tlsVersion", "TLSv1.3");
            field(buf, "cipherSuite", "TLS_AES_128_GCM_SHA256");
            q(buf, "clientProvidedHostHeader");
            buf.push(':');
            q(buf, &host_for(self.api.source, self.place.region));
            buf.push_str("},");
        }
        if let Caller::Role(RoleSession { console: true, .. }) = self.caller {
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
        let ids = RecordIds {
            event_id: "e".into(),
            request_id: "r".into(),
        };
        let caller = Caller::Role(RoleSession {
            account: "111122223333",
            role: "web",
            role_id: "AROAX",
            session: "i-0123456789abcdef0",
            key: "ASIAX",
            created: EventTime(0),
            delivery: Some("2.0"),
            ..Default::default()
        });
        let origin = Origin {
            vpc_endpoint: Some(VpcEndpoint {
                id: "vpce-1",
                account: "111122223333",
            }),
            ..Origin::new("10.0.0.1", "ua \"quoted\"")
        };
        let place = Place {
            account: "111122223333",
            region: "us-east-1",
        };
        let time = EventTime::parse("2026-03-02T00:00:00Z").unwrap();
        Call::new(
            time,
            Api::new("s3.amazonaws.com", "GetObject"),
            place,
            caller,
            origin,
            &ids,
        )
        .read_only(true)
        .request(r#"{"bucketName":"b"}"#)
        .resources(&["arn:aws:s3:::b"])
        .write_json(&mut buf);
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
