//! The record model. A CloudTrail record has hundreds of possible fields; detectors read a
//! few dozen. [`RawRecord`] borrows those few from the input bytes (no copy unless a string
//! holds escapes); [`Record`] is the owned, compact form that crosses threads to the engine.
//! Every string field is read leniently: a wrong type (a number where a string belongs,
//! an object in place of null) becomes "absent" instead of losing the whole record.

use std::borrow::Cow;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::address::SourceAddress;
use crate::time::EventTime;
use credwarden_core::fasthash::FastState;

pub use crate::text::Text;

/// A string field that tolerates any JSON type: strings are kept, anything else is `None`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Lenient<'a>(pub Option<Cow<'a, str>>);

impl<'a> Lenient<'a> {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
    fn text(&self) -> Option<Text> {
        self.0.as_deref().map(Into::into)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Lenient<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Lenient<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Lenient(Some(Cow::Owned(v))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                // `mfaAuthenticated` and `sessionCredentialFromConsole` appear as both
                // booleans and strings; keep the spelling.
                Ok(Lenient(Some(Cow::Borrowed(if v {
                    "true"
                } else {
                    "false"
                }))))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// An object field that tolerates a wrong type (string, number, array): it becomes `None`.
/// The object is parsed in place, in the same pass as the record (no re-parse of raw text).
fn lenient_object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            while a.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// The fields of a record (or of an envelope around one) that credwarden reads, borrowed.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRecord<'a> {
    #[serde(rename = "eventVersion", borrow)]
    pub event_version: Lenient<'a>,
    #[serde(rename = "eventTime", borrow)]
    pub event_time: Lenient<'a>,
    #[serde(rename = "eventSource", borrow)]
    pub event_source: Lenient<'a>,
    #[serde(rename = "eventName", borrow)]
    pub event_name: Lenient<'a>,
    #[serde(rename = "awsRegion", borrow)]
    pub aws_region: Lenient<'a>,
    #[serde(rename = "sourceIPAddress", borrow)]
    pub source_ip_address: Lenient<'a>,
    #[serde(rename = "userAgent", borrow)]
    pub user_agent: Lenient<'a>,
    #[serde(rename = "eventID", borrow)]
    pub event_id: Lenient<'a>,
    #[serde(rename = "eventType", borrow)]
    pub event_type: Lenient<'a>,
    #[serde(rename = "errorCode", borrow)]
    pub error_code: Lenient<'a>,
    #[serde(rename = "recipientAccountId", borrow)]
    pub recipient_account_id: Lenient<'a>,
    #[serde(rename = "vpcEndpointId", borrow)]
    pub vpc_endpoint_id: Lenient<'a>,
    #[serde(rename = "vpcEndpointAccountId", borrow)]
    pub vpc_endpoint_account_id: Lenient<'a>,
    #[serde(rename = "userIdentity", borrow, deserialize_with = "lenient_object")]
    pub user_identity: Option<RawIdentity<'a>>,
    #[serde(rename = "requestParameters", borrow)]
    pub request_parameters: Option<&'a RawValue>,
    #[serde(borrow)]
    pub resources: Option<&'a RawValue>,
    #[serde(rename = "responseElements", borrow)]
    pub response_elements: Option<&'a RawValue>,

    // Envelope and non-record shapes, recognised so they can be unwrapped or skipped.
    #[serde(rename = "detail-type", borrow)]
    pub detail_type: Lenient<'a>,
    #[serde(borrow)]
    pub detail: Option<&'a RawValue>,
    #[serde(rename = "Type", borrow)]
    pub notification_type: Lenient<'a>,
    #[serde(rename = "digestStartTime")]
    pub digest_start_time: Option<IgnoredAny>,
    #[serde(rename = "Events", borrow)]
    pub lookup_events: Option<&'a RawValue>,
    /// A whole delivery object met as one value (a line of JSON lines holding one).
    #[serde(rename = "Records", borrow)]
    pub records: Option<&'a RawValue>,
    #[serde(rename = "CloudTrailEvent", borrow)]
    pub cloudtrail_event: Lenient<'a>,
    #[serde(rename = "s3ObjectKey")]
    pub s3_object_key: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawIdentity<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Lenient<'a>,
    #[serde(rename = "principalId", borrow)]
    pub principal_id: Lenient<'a>,
    #[serde(borrow)]
    pub arn: Lenient<'a>,
    #[serde(rename = "accountId", borrow)]
    pub account_id: Lenient<'a>,
    #[serde(rename = "accessKeyId", borrow)]
    pub access_key_id: Lenient<'a>,
    #[serde(rename = "userName", borrow)]
    pub user_name: Lenient<'a>,
    #[serde(rename = "invokedBy", borrow)]
    pub invoked_by: Lenient<'a>,
    #[serde(rename = "sessionContext", borrow, deserialize_with = "lenient_object")]
    pub session_context: Option<RawSessionContext<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawSessionContext<'a> {
    #[serde(rename = "sessionIssuer", borrow, deserialize_with = "lenient_object")]
    pub session_issuer: Option<RawIssuer<'a>>,
    #[serde(rename = "ec2RoleDelivery", borrow)]
    pub ec2_role_delivery: Lenient<'a>,
    #[serde(rename = "sourceIdentity", borrow)]
    pub source_identity: Lenient<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawIssuer<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Lenient<'a>,
    #[serde(borrow)]
    pub arn: Lenient<'a>,
}

/// The caller, as CloudTrail's `userIdentity` describes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Identity {
    /// `Root`, `IAMUser`, `AssumedRole`, `FederatedUser`, `AWSService`, `AWSAccount`, …
    pub kind: Option<Text>,
    pub principal_id: Option<Text>,
    pub arn: Option<Text>,
    pub account_id: Option<Text>,
    pub access_key_id: Option<Text>,
    pub user_name: Option<Text>,
    /// Set when an AWS service made the call on the principal's behalf.
    pub invoked_by: Option<Text>,
    pub session_issuer_arn: Option<Text>,
    pub session_issuer_kind: Option<Text>,
    /// `1.0` or `2.0` on credentials EC2 delivered to an instance (since 2020).
    pub ec2_role_delivery: Option<Text>,
    pub source_identity: Option<Text>,
}

/// A change to a role's permissions, from an IAM event's `requestParameters`. Boxed in
/// [`Record`]: one record in thousands carries one.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// `roleName`: the role whose inline or attached policies changed (absent for a new
    /// version of a managed policy, which changes every role it is attached to).
    pub role_name: Option<Text>,
    /// `policyName` (inline policies).
    pub policy_name: Option<Text>,
    /// `policyArn` (managed policies and their versions).
    pub policy_arn: Option<Text>,
}

/// The IAM events that grant a role something new. Only successful ones count; the caller
/// checks `errorCode`.
const GRANT_EVENTS: &[&str] = &[
    "PutRolePolicy",
    "AttachRolePolicy",
    "CreatePolicyVersion",
    "SetDefaultPolicyVersion",
    "PutRolePermissionsBoundary",
    "DeleteRolePermissionsBoundary",
];

fn grant_of(event_name: &str, request: Option<&RawValue>) -> Option<Box<Grant>> {
    if !GRANT_EVENTS.contains(&event_name) {
        return None;
    }
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(rename = "roleName", borrow, default)]
        role_name: Lenient<'a>,
        #[serde(rename = "policyName", borrow, default)]
        policy_name: Lenient<'a>,
        #[serde(rename = "policyArn", borrow, default)]
        policy_arn: Lenient<'a>,
    }
    let p: Params = serde_json::from_str(request?.get()).ok()?;
    let grant = Grant {
        role_name: p.role_name.text(),
        policy_name: p.policy_name.text(),
        policy_arn: p.policy_arn.text(),
    };
    (grant.role_name.is_some() || grant.policy_arn.is_some()).then(|| Box::new(grant))
}

/// A temporary credential that an STS call in this record issued.
#[derive(Clone, Debug, PartialEq)]
pub struct Issuance {
    pub access_key_id: Text,
    pub expiration: Option<EventTime>,
    pub role_arn: Option<Text>,
    pub session_name: Option<Text>,
}

/// One CloudTrail record, owned and compact.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub event_time: EventTime,
    pub event_source: Text,
    pub event_name: Text,
    pub event_id: Option<Text>,
    pub event_type: Option<Text>,
    pub aws_region: Option<Text>,
    pub source: SourceAddress,
    pub user_agent: Option<Text>,
    pub error_code: Option<Text>,
    pub recipient_account_id: Option<Text>,
    pub vpc_endpoint_id: Option<Text>,
    pub vpc_endpoint_account_id: Option<Text>,
    pub identity: Identity,
    /// Present on STS calls that return a credential (AssumeRole and friends).
    pub issuance: Option<Issuance>,
    /// Instances that an EC2 call names and whose public address it may change
    /// (AssociateAddress, AttachNetworkInterface, StartInstances).
    pub instances_named: Vec<Text>,
    /// Roles (or instance profiles) this call hands to a service — what `iam:PassRole` was
    /// checked for: `RunInstances` with an instance profile, Lambda functions, ECS task
    /// definitions, CloudFormation stacks, Glue, SageMaker, CodeBuild, Step Functions.
    pub passed_roles: Vec<Text>,
    /// A change to what an IAM role may do (`PutRolePolicy`, `AttachRolePolicy`,
    /// `CreatePolicyVersion` …): what right-sizing's grace for new grants reads.
    pub grant: Option<Box<Grant>>,
    /// The record's `resources` array as raw JSON (one copy, parsed only by the detectors that
    /// need it; most never do). `None` when absent, null or empty.
    pub resources_json: Option<Text>,
    /// `event_id` hashed with [`event_id_hasher`], on the decoder that made the record. The
    /// engine's duplicate check runs on the one serial consumer for every record; hashing
    /// there meant reading the id's heap bytes on a core that never had them in cache.
    event_id_hash: u64,
    /// [`is_console_agent`] of the user agent, asked once, on the decoder (two novelty
    /// detectors ask it of every record, on the serial consumer).
    console: bool,
}

/// The keyed hash [`Record::event_id_hash`] uses: one random key per process (so nobody can
/// precompute eventIDs that collide), the same for every decoder.
pub fn event_id_hasher() -> &'static FastState {
    static STATE: OnceLock<FastState> = OnceLock::new();
    STATE.get_or_init(FastState::default)
}

impl Record {
    /// Made by the AWS console on a person's behalf ([`is_console_agent`]).
    pub fn from_console(&self) -> bool {
        self.console
    }

    /// The event id and its hash under [`event_id_hasher`], if the record has an id.
    pub fn event_id_hash(&self) -> Option<(&str, u64)> {
        self.event_id.as_deref().map(|id| (id, self.event_id_hash))
    }

    /// ARNs named in `resources` (parsed on demand).
    pub fn resource_arns(&self) -> Vec<String> {
        #[derive(Deserialize)]
        struct Resource {
            #[serde(rename = "ARN", default)]
            arn: Option<String>,
        }
        let Some(raw) = self.resources_json.as_deref() else {
            return Vec::new();
        };
        serde_json::from_str::<Vec<Resource>>(raw)
            .map(|v| v.into_iter().filter_map(|r| r.arn).collect())
            .unwrap_or_default()
    }

    /// The account the record belongs to: the recipient account, else the caller's.
    pub fn account(&self) -> Option<&str> {
        self.recipient_account_id
            .as_deref()
            .or(self.identity.account_id.as_deref())
    }

    /// True when AWS made this call on the caller's behalf, so its source address is AWS's
    /// and says nothing of where the caller is: `invokedBy` set, a source that is a service
    /// name or `AWS Internal`, or a console backend or AWS-internal client (`[S3Console/0.4,
    /// aws-internal/3 …]`) calling from a private address without a VPC endpoint (the
    /// console fleet). The user agent alone is never trusted: a caller may send any user
    /// agent, but not a private source address without a VPC endpoint. Every detector that
    /// asks "where did this credential come from" asks here.
    pub fn made_by_aws_for_caller(&self) -> bool {
        if self.identity.invoked_by.is_some() || self.source.is_aws_service() {
            return true;
        }
        self.vpc_endpoint_id.is_none()
            && self.source.is_private()
            && is_aws_internal_agent(self.user_agent.as_deref())
    }
}

/// Calls made by the AWS console on a person's behalf: a browser, a console backend
/// (`console.amazonaws.com`), an AWS-internal client.
pub fn is_console_agent(user_agent: Option<&str>) -> bool {
    user_agent.is_some_and(|ua| {
        ua.starts_with("Mozilla/")
            || ua.contains("console.amazonaws.com")
            || ua.contains("console.aws.amazon.com")
            || ua.contains("aws-internal")
            || ua.starts_with("AWS Internal")
    })
}

/// User agents of AWS's own clients acting for a caller: console backends (`S3Console/…`,
/// `console.amazonaws.com`) and the `aws-internal` SDK marker.
pub fn is_aws_internal_agent(user_agent: Option<&str>) -> bool {
    let Some(ua) = user_agent else {
        return false;
    };
    contains_ignore_case(ua, "aws-internal")
        || contains_ignore_case(ua, "console.amazonaws.com")
        || contains_ignore_case(ua, "console.aws.amazon.com")
        || ua
            .trim_start_matches('[')
            .split(['/', ' ', ','])
            .next()
            .is_some_and(|product| {
                product.len() >= 7
                    && product.as_bytes()[product.len() - 7..].eq_ignore_ascii_case(b"console")
            })
}

/// `hay` contains `needle` (ASCII, lowercase), ignoring ASCII case, without a lowercased copy.
fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    hay.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// What a JSON value turned out to be.
// The record is held by value, not boxed: every record passes through here once, and a box
// was one more allocation, free and copy per record on the hot path; the enum is only ever
// returned and matched at once, never stored.
#[allow(clippy::large_enum_variant)]
pub enum Classified<'a> {
    Record(Record),
    /// An EventBridge envelope; the record is in `detail`.
    EventBridge(&'a RawValue),
    /// `aws cloudtrail lookup-events` output: records are JSON strings under `Events[].CloudTrailEvent`.
    LookupEvents(&'a RawValue),
    /// A delivery object `{"Records":[…]}` met as one value.
    Records(&'a RawValue),
    /// Not a record, not an error: a digest file, an SNS/SQS delivery notification, an Insights event.
    Skip(&'static str),
    /// Not a CloudTrail record; the reason names the field.
    Invalid(String),
}

/// Input quoted in an error message, cut short: errors are kept and printed, and a hostile
/// file must not make them large.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Parse one JSON value (a record, or an envelope around records) from bytes.
pub fn parse_value(bytes: &[u8]) -> Result<RawRecord<'_>, String> {
    // serde would also read a struct from a JSON array (by position): refuse that up front.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("not a JSON object".to_owned());
    }
    // Check UTF-8 once for the whole record (a fast pass over mostly-ASCII bytes) and parse
    // it as text: parsing bytes would check every string and every kept raw value again,
    // one short call at a time. Bytes that are not UTF-8 go the byte way, for its error.
    let parsed = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str::<RawRecord>(text),
        Err(_) => serde_json::from_slice::<RawRecord>(bytes),
    };
    parsed.map_err(|e| {
        let msg = e.to_string();
        if e.is_data() && msg.starts_with("invalid type") {
            "not a JSON object".to_owned()
        } else {
            format!("malformed JSON: {msg}")
        }
    })
}

impl<'a> RawRecord<'a> {
    /// Decide what this value is and, for a record, build the owned [`Record`].
    pub fn classify(self) -> Classified<'a> {
        if let Some(detail) = self.detail {
            if self.event_name.0.is_none() {
                return match self.detail_type.as_deref() {
                    Some(t) if t.contains("CloudTrail") => Classified::EventBridge(detail),
                    Some(t) => Classified::Invalid(format!(
                        "EventBridge event of type {:?} does not carry a CloudTrail record",
                        clip(t)
                    )),
                    None => Classified::Invalid(
                        "field `detail` without `detail-type`: not an EventBridge event".into(),
                    ),
                };
            }
        }
        if self.event_name.0.is_none() {
            if let Some(events) = self.lookup_events {
                return Classified::LookupEvents(events);
            }
            if let Some(records) = self.records {
                return Classified::Records(records);
            }
            if self.digest_start_time.is_some() {
                return Classified::Skip("CloudTrail digest file (integrity digest, no records)");
            }
            if self.notification_type.as_deref() == Some("Notification")
                || self.s3_object_key.is_some()
            {
                return Classified::Skip(
                    "S3/SNS delivery notification (names log files, holds no records)",
                );
            }
        }
        if self.event_type.as_deref() == Some("AwsCloudTrailInsight") {
            return Classified::Skip("CloudTrail Insights event (statistics, not an API call)");
        }
        match self.into_record() {
            Ok(r) => Classified::Record(r),
            Err(e) => Classified::Invalid(e),
        }
    }

    fn into_record(self) -> Result<Record, String> {
        let raw_time = self
            .event_time
            .as_deref()
            .ok_or("field `eventTime` is missing or not a string")?;
        let event_time = EventTime::parse(raw_time)
            .ok_or_else(|| format!("field `eventTime` is not a time: {:?}", clip(raw_time)))?;
        let event_source: Text = self
            .event_source
            .text()
            .ok_or("field `eventSource` is missing or not a string")?;
        let event_name: Text = self
            .event_name
            .text()
            .ok_or("field `eventName` is missing or not a string")?;
        let identity = self
            .user_identity
            .map(RawIdentity::into_identity)
            .unwrap_or_default();
        let issuance = if &*event_source == "sts.amazonaws.com" {
            self.response_elements
                .and_then(|r| parse_issuance(r, self.request_parameters))
        } else {
            None
        };
        let instances_named = if &*event_source == "ec2.amazonaws.com" {
            instances_named(&event_name, self.request_parameters)
        } else {
            Vec::new()
        };
        let passed_roles = if passes_role(&event_source, &event_name) {
            roles_passed(self.request_parameters)
        } else {
            Vec::new()
        };
        let grant = if &*event_source == "iam.amazonaws.com" {
            grant_of(&event_name, self.request_parameters)
        } else {
            None
        };
        let event_id = self.event_id.text();
        let user_agent = self.user_agent.text();
        let console = is_console_agent(user_agent.as_deref());
        let event_id_hash = event_id
            .as_deref()
            .map_or(0, |id| event_id_hasher().hash_one(id));
        Ok(Record {
            event_time,
            event_source,
            event_name,
            event_id,
            event_id_hash,
            console,
            event_type: self.event_type.text(),
            aws_region: self.aws_region.text(),
            source: SourceAddress::classify(self.source_ip_address.as_deref()),
            user_agent,
            error_code: self.error_code.text(),
            recipient_account_id: self.recipient_account_id.text(),
            vpc_endpoint_id: self.vpc_endpoint_id.text(),
            vpc_endpoint_account_id: self.vpc_endpoint_account_id.text(),
            identity,
            issuance,
            instances_named,
            passed_roles,
            grant,
            resources_json: self
                .resources
                .map(RawValue::get)
                .filter(|r| r.starts_with('[') && *r != "[]")
                .map(Into::into),
        })
    }
}

impl RawIdentity<'_> {
    fn into_identity(self) -> Identity {
        let (issuer_arn, issuer_kind, delivery, source_identity) = match self.session_context {
            Some(sc) => {
                let (arn, kind) = sc
                    .session_issuer
                    .map(|i| (i.arn.text(), i.kind.text()))
                    .unwrap_or_default();
                (
                    arn,
                    kind,
                    sc.ec2_role_delivery.text(),
                    sc.source_identity.text(),
                )
            }
            None => (None, None, None, None),
        };
        Identity {
            kind: self.kind.text(),
            principal_id: self.principal_id.text(),
            arn: self.arn.text(),
            account_id: self.account_id.text(),
            access_key_id: self.access_key_id.text().filter(|k| !k.is_empty()),
            user_name: self.user_name.text(),
            invoked_by: self.invoked_by.text().filter(|s| !s.is_empty()),
            session_issuer_arn: issuer_arn,
            session_issuer_kind: issuer_kind,
            ec2_role_delivery: delivery,
            source_identity,
        }
    }
}

fn parse_issuance(response: &RawValue, request: Option<&RawValue>) -> Option<Issuance> {
    #[derive(Deserialize)]
    struct Response<'a> {
        #[serde(borrow, default, deserialize_with = "lenient_object")]
        credentials: Option<Credentials<'a>>,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Credentials<'a> {
        #[serde(rename = "accessKeyId", borrow)]
        access_key_id: Lenient<'a>,
        #[serde(borrow)]
        expiration: Lenient<'a>,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Request<'a> {
        #[serde(rename = "roleArn", borrow)]
        role_arn: Lenient<'a>,
        #[serde(rename = "roleSessionName", borrow)]
        role_session_name: Lenient<'a>,
    }
    let resp: Response = serde_json::from_str(response.get()).ok()?;
    let creds = resp.credentials?;
    let key = creds.access_key_id.text()?;
    let req: Request = request
        .and_then(|r| serde_json::from_str(r.get()).ok())
        .unwrap_or_default();
    Some(Issuance {
        access_key_id: key,
        expiration: creds
            .expiration
            .as_deref()
            .and_then(EventTime::parse_expiration),
        role_arn: req.role_arn.text(),
        session_name: req.role_session_name.text(),
    })
}

/// Calls that pass a role to a service (and so required `iam:PassRole`).
pub fn passes_role(event_source: &str, event_name: &str) -> bool {
    let service = event_source
        .strip_suffix(".amazonaws.com")
        .unwrap_or(event_source);
    match service {
        "ec2" => matches!(
            event_name,
            "RunInstances" | "AssociateIamInstanceProfile" | "ReplaceIamInstanceProfileAssociation"
        ),
        "lambda" => {
            event_name.starts_with("CreateFunction")
                || event_name.starts_with("UpdateFunctionConfiguration")
        }
        "ecs" => event_name == "RegisterTaskDefinition",
        "cloudformation" => matches!(
            event_name,
            "CreateStack" | "UpdateStack" | "CreateStackSet" | "UpdateStackSet"
        ),
        "glue" => matches!(
            event_name,
            "CreateDevEndpoint" | "CreateJob" | "UpdateJob" | "CreateSession"
        ),
        "sagemaker" => matches!(
            event_name,
            "CreateNotebookInstance" | "CreateTrainingJob" | "CreateProcessingJob"
        ),
        "codebuild" => matches!(event_name, "CreateProject" | "UpdateProject"),
        "states" => matches!(event_name, "CreateStateMachine" | "UpdateStateMachine"),
        "datapipeline" => event_name == "CreatePipeline",
        _ => false,
    }
}

/// The role ARNs (or instance-profile ARNs / names) in a pass-role call's parameters.
fn roles_passed(request: Option<&RawValue>) -> Vec<Text> {
    const KEYS: &[&str] = &[
        "role",
        "roleArn",
        "roleARN",
        "RoleArn",
        "taskRoleArn",
        "executionRoleArn",
        "serviceRole",
        "executionRole",
    ];
    let Some(v) = request.and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
    else {
        return Vec::new();
    };
    let mut out: Vec<Text> = KEYS
        .iter()
        .filter_map(|k| v.get(*k).and_then(|x| x.as_str()))
        .map(Into::into)
        .collect();
    if let Some(p) = v.get("iamInstanceProfile") {
        if let Some(a) = p.get("arn").and_then(|x| x.as_str()) {
            out.push(a.into());
        } else if let Some(n) = p.get("name").and_then(|x| x.as_str()) {
            out.push(format!("instance-profile/{n}").into());
        }
    }
    out.sort();
    out.dedup();
    out
}

fn instances_named(event_name: &str, request: Option<&RawValue>) -> Vec<Text> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Request<'a> {
        #[serde(rename = "instanceId", borrow)]
        instance_id: Lenient<'a>,
        #[serde(rename = "instancesSet", borrow, deserialize_with = "lenient_object")]
        instances_set: Option<Set<'a>>,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Set<'a> {
        #[serde(borrow)]
        items: Vec<Item<'a>>,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Item<'a> {
        #[serde(rename = "instanceId", borrow)]
        instance_id: Lenient<'a>,
    }
    if !matches!(
        event_name,
        "AssociateAddress" | "AttachNetworkInterface" | "StartInstances"
    ) {
        return Vec::new();
    }
    let Some(req) = request.and_then(|r| serde_json::from_str::<Request>(r.get()).ok()) else {
        return Vec::new();
    };
    let mut out: Vec<Text> = req.instance_id.text().into_iter().collect();
    if let Some(set) = req.instances_set {
        out.extend(set.items.into_iter().filter_map(|i| i.instance_id.text()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn aws_internal_agents_are_recognised_in_any_case() {
        use super::is_aws_internal_agent as internal;
        assert!(internal(Some(
            "[S3Console/0.4, aws-internal/3 aws-sdk-java/1.11.1030]"
        )));
        assert!(internal(Some("AWS-Internal/3 aws-sdk-java")));
        assert!(internal(Some("signin.CONSOLE.amazonaws.com")));
        assert!(internal(Some("console.aws.amazon.com")));
        assert!(internal(Some("EC2Console/1.0")));
        assert!(!internal(Some("aws-cli/2.15.0 Python/3.11")));
        assert!(!internal(Some("Consoled/1.0")));
        assert!(!internal(Some("")));
        assert!(!internal(None));
    }

    use super::*;

    fn record(json: &str) -> Record {
        match parse_value(json.as_bytes()).unwrap().classify() {
            Classified::Record(r) => r,
            _ => panic!("not a record"),
        }
    }

    #[test]
    fn reads_an_instance_credential_issuance() {
        let r = record(
            r#"{"eventTime":"2024-01-01T00:00:00Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRole",
            "userIdentity":{"type":"AWSService","invokedBy":"ec2.amazonaws.com"},"sourceIPAddress":"ec2.amazonaws.com",
            "requestParameters":{"roleArn":"arn:aws:iam::111122223333:role/web","roleSessionName":"i-0abc"},
            "responseElements":{"credentials":{"accessKeyId":"ASIAEXAMPLE","expiration":"Jan 1, 2024, 6:00:00 AM","sessionToken":"secret"}}}"#,
        );
        let iss = r.issuance.unwrap();
        assert_eq!(&*iss.access_key_id, "ASIAEXAMPLE");
        assert_eq!(iss.session_name.as_deref(), Some("i-0abc"));
        assert_eq!(iss.expiration, EventTime::parse("2024-01-01T06:00:00Z"));
        assert_eq!(r.identity.invoked_by.as_deref(), Some("ec2.amazonaws.com"));
        assert!(r.source.is_aws_service());
    }

    #[test]
    fn wrong_types_lose_the_field_not_the_record() {
        let r = record(
            r#"{"eventTime":"2024-01-01 00:00:00","eventSource":"s3.amazonaws.com","eventName":"GetObject",
            "userAgent":42,"sourceIPAddress":["x"],"userIdentity":"weird","requestParameters":null,
            "responseElements":"also weird","errorCode":{"a":1}}"#,
        );
        assert_eq!(r.user_agent, None);
        assert_eq!(r.source, SourceAddress::Missing);
        assert_eq!(r.identity, Identity::default());
        assert_eq!(r.error_code, None);
    }

    #[test]
    fn names_the_missing_field() {
        let err = |j: &str| match parse_value(j.as_bytes()).unwrap().classify() {
            Classified::Invalid(e) => e,
            _ => panic!("expected invalid"),
        };
        assert!(err(r#"{"eventSource":"s3.amazonaws.com","eventName":"x"}"#).contains("eventTime"));
        assert!(
            err(r#"{"eventTime":"nope","eventSource":"s","eventName":"x"}"#).contains("\"nope\"")
        );
        assert!(
            err(r#"{"eventTime":"2024-01-01T00:00:00Z","eventName":"x"}"#).contains("eventSource")
        );
        assert!(parse_value(b"[1,2]")
            .unwrap_err()
            .contains("not a JSON object"));
        assert!(parse_value(b"{\"a\":")
            .unwrap_err()
            .contains("malformed JSON"));
    }

    #[test]
    fn recognises_non_records() {
        let kind = |j: &str| match parse_value(j.as_bytes()).unwrap().classify() {
            Classified::Skip(why) => why,
            Classified::EventBridge(_) => "eventbridge",
            Classified::LookupEvents(_) => "lookup",
            Classified::Record(_) => "record",
            Classified::Records(_) => "records",
            Classified::Invalid(_) => "invalid",
        };
        assert!(
            kind(r#"{"awsAccountId":"1","digestStartTime":"2024-01-01T00:00:00Z"}"#)
                .contains("digest")
        );
        assert!(kind(r#"{"Type":"Notification","Message":"{}"}"#).contains("notification"));
        assert!(kind(r#"{"s3Bucket":"b","s3ObjectKey":["k"]}"#).contains("notification"));
        assert_eq!(
            kind(r#"{"detail-type":"AWS API Call via CloudTrail","detail":{}}"#),
            "eventbridge"
        );
        assert_eq!(kind(r#"{"Events":[]}"#), "lookup");
        assert!(
            kind(r#"{"eventType":"AwsCloudTrailInsight","eventTime":"2024-01-01T00:00:00Z"}"#)
                .contains("Insights")
        );
        assert_eq!(
            kind(r#"{"detail-type":"EC2 Instance State-change Notification","detail":{}}"#),
            "invalid"
        );
    }

    #[test]
    fn names_instances_whose_address_may_change() {
        let r = record(
            r#"{"eventTime":"2024-01-01T00:00:00Z","eventSource":"ec2.amazonaws.com","eventName":"StartInstances",
            "requestParameters":{"instancesSet":{"items":[{"instanceId":"i-1"},{"instanceId":"i-2"}]}}}"#,
        );
        assert_eq!(
            r.instances_named,
            vec![Text::from("i-1"), Text::from("i-2")]
        );
    }
}
