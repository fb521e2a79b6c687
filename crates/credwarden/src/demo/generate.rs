//! The demo company and its CloudTrail, written as AWS delivers it.
//!
//! Three accounts, five (account, region) networks. Each network has a NAT gateway with two
//! addresses, a VPC endpoint, a web fleet (SSM agent, calls S3/DynamoDB through the
//! endpoint), a worker fleet, two instances with their own public address, and an idle
//! instance; one network has dual-stack (IPv6) instances. Around them: console users whose
//! clicks fan out across regions, Lambda functions and ECS tasks with their own temporary
//! credentials, a CI user with a static key, AWS services calling on principals' behalf
//! (`AWS Internal`, `invokedBy`), an operator moving an Elastic IP, hourly credential
//! refresh with two sibling credentials per instance (ec2RoleDelivery 1.0 and 2.0), and
//! instances whose credentials were issued before the logs begin.
//!
//! Delivery is CloudTrail's: `AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/` files of
//! one `{"Records":[…]}` object each, gzip, one per 5-minute slot (split above 500 records),
//! records shuffled inside a file, 20 % delivered one slot late, 0.1 % delivered twice, and
//! hourly digest files beside them. Generation streams: memory holds two slots of records,
//! whatever `--records` asks for.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cloudtrail::EventTime;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Serialize;

use super::event::{sts_expiration, Call, Who};
use super::rng::Rng;

pub const START: &str = "2026-03-02T00:00:00Z";
const SLOT_MS: i64 = 5 * EventTime::MINUTE;
/// The shortest window: every injected attack happens within it.
const MIN_SLOTS: u64 = 72;
/// At most this many records per slot; more records make a longer window, not a denser one,
/// so memory and detector state stay flat as the data grows.
const MAX_PER_SLOT: u64 = 2_500;
const MAX_PER_FILE: usize = 500;

const UA_JAVA: &str = "aws-sdk-java/2.20.162 Linux/5.10.205-195.807.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.9+8-LTS Java/17.0.9 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/legacy";
const UA_BOTO: &str = "Boto3/1.34.11 md/Botocore#1.34.11 ua/2.0 os/linux#5.10.205-195.807.amzn2.x86_64 md/arch#x86_64 lang/python#3.11.6 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.11";
const UA_GO: &str = "aws-sdk-go-v2/1.24.0 os/linux lang/go#1.21.5 md/GOOS#linux md/GOARCH#amd64 api/dynamodb#1.26.6";
const UA_SSM: &str = "aws-sdk-go/1.44.260 (go1.20.11; linux; amd64) amazon-ssm-agent/3.2.1705.0";
const UA_CONSOLE: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36";
const UA_CLI: &str =
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1014-aws exe/x86_64.ubuntu.22 prompt/off";
const UA_CI: &str = "aws-cli/2.13.0 Python/3.11.4 Linux/5.15.0-1051-azure exe/x86_64.ubuntu.22 prompt/off command/cloudformation.deploy";

/// The synthetic company's AWS address space, written to the demo's ip-ranges.json.
pub const AWS_PREFIXES_V4: &[&str] = &[
    "52.0.0.0/10",
    "54.144.0.0/12",
    "3.208.0.0/12",
    "18.204.0.0/14",
];
pub const AWS_PREFIXES_V6: &[&str] = &["2600:1f00::/24"];

/// One injected attack: the credential and the source a detector must report.
#[derive(Clone, Debug, Serialize)]
pub struct TruthEntry {
    /// `attack`, or `hygiene` for a finding that is expected but is not an attack (a static
    /// key in daily use must be reported so that it gets retired).
    pub kind: &'static str,
    pub attack: &'static str,
    pub detector: &'static str,
    pub account: String,
    pub region: String,
    pub instance_id: String,
    pub access_key_id: String,
    pub source_ip: String,
    pub vpc_endpoint: Option<String>,
    pub time: String,
    pub description: &'static str,
}

pub struct Generated {
    pub records: u64,
    pub files: u64,
    pub digest_files: u64,
    pub gz_bytes: u64,
    pub truth: Vec<TruthEntry>,
    pub logs: PathBuf,
}

struct Net {
    account: usize,
    region: &'static str,
    nat: Vec<String>,
    vpce: String,
    private_prefix: String,
    v6_prefix: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Web,
    Worker,
    Public,
    DualStack,
    Idle,
}

struct Creds {
    k1: String,
    k2: String,
    created: EventTime,
}

struct Instance {
    id: String,
    net: usize,
    kind: Kind,
    role: String,
    role_id: String,
    private_ip: String,
    public_ip: String,
    v6: String,
    launch: EventTime,
    launched: bool,
    creds: Option<Creds>,
    next_refresh: EventTime,
    /// The NAT address of this instance's first call through the NAT. A NAT gateway spreads
    /// connections over its addresses, so across a fleet every address is some instance's first.
    first_nat: usize,
    nat_used: bool,
}

struct Account {
    id: &'static str,
    nets: Vec<usize>,
}

/// A scheduled attack: at `slot`, the attacker uses one of `instance`'s credentials.
struct Attack {
    slot: u64,
    instance: usize,
    use_sibling: bool,
    ip: String,
    vpce: Option<(String, String)>,
    name: &'static str,
    description: &'static str,
    /// The credential taken, once the attack has run.
    stolen_key: Option<String>,
}

struct DeliveryWriter {
    logs: PathBuf,
    pending: BTreeMap<(u64, String, &'static str), Vec<String>>,
    rng: Rng,
    files: u64,
    digests: u64,
    gz_bytes: u64,
    records: u64,
    seen_streams: BTreeMap<(String, &'static str), ()>,
    last_digest: Option<EventTime>,
}

fn slot_time(slot: u64) -> EventTime {
    EventTime::parse(START)
        .expect("constant")
        .plus_millis(slot as i64 * SLOT_MS)
}

fn stamp(t: EventTime) -> String {
    let (y, mo, d, h, mi, _) = t.to_parts();
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}Z")
}

impl DeliveryWriter {
    fn add(&mut self, account: &str, region: &'static str, time: EventTime, json: String) {
        let slot = ((time.millis() - slot_time(0).millis()) / SLOT_MS).max(0) as u64;
        let delay = u64::from(self.rng.chance(0.2));
        if self.rng.chance(0.001) {
            self.pending
                .entry((slot + delay + 1, account.to_owned(), region))
                .or_default()
                .push(json.clone());
        }
        self.pending
            .entry((slot + delay, account.to_owned(), region))
            .or_default()
            .push(json);
    }

    /// Write every file due at or before `slot`.
    fn flush(&mut self, upto: u64) -> Result<()> {
        let due: Vec<_> = self
            .pending
            .range(..(upto + 1, String::new(), ""))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let mut records = self.pending.remove(&key).expect("listed");
            let (slot, account, region) = key;
            // Records inside a delivery file are not in event-time order.
            for i in (1..records.len()).rev() {
                records.swap(i, self.rng.below(i as u64 + 1) as usize);
            }
            let delivered = slot_time(slot + 1);
            let (y, mo, d, ..) = delivered.to_parts();
            let dir = self.logs.join(format!(
                "AWSLogs/{account}/CloudTrail/{region}/{y:04}/{mo:02}/{d:02}"
            ));
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            for chunk in records.chunks(MAX_PER_FILE) {
                let name = format!(
                    "{account}_CloudTrail_{region}_{}_{}.json.gz",
                    stamp(delivered),
                    self.rng.alnum(16)
                );
                let mut body =
                    String::with_capacity(chunk.iter().map(|r| r.len() + 1).sum::<usize>() + 16);
                body.push_str("{\"Records\":[");
                for (i, r) in chunk.iter().enumerate() {
                    if i > 0 {
                        body.push(',');
                    }
                    body.push_str(r);
                }
                body.push_str("]}");
                self.gz_bytes += write_gz(&dir.join(name), body.as_bytes())?;
                self.files += 1;
                self.records += chunk.len() as u64;
            }
            self.seen_streams.insert((account.clone(), region), ());
            if delivered.millis() % EventTime::HOUR == 0 && self.last_digest != Some(delivered) {
                self.last_digest = Some(delivered);
                self.write_digests(delivered)?;
            }
        }
        Ok(())
    }

    /// Hourly digest files (integrity digests: no records; detect must skip them quietly).
    fn write_digests(&mut self, at: EventTime) -> Result<()> {
        let streams: Vec<_> = self.seen_streams.keys().cloned().collect();
        for (account, region) in streams {
            let (y, mo, d, ..) = at.to_parts();
            let dir = self.logs.join(format!(
                "AWSLogs/{account}/CloudTrail-Digest/{region}/{y:04}/{mo:02}/{d:02}"
            ));
            fs::create_dir_all(&dir)?;
            let start = at.plus_millis(-EventTime::HOUR);
            let body = format!(
                r#"{{"awsAccountId":"{account}","digestStartTime":"{start}","digestEndTime":"{at}","digestS3Bucket":"corp-cloudtrail","digestS3Object":"AWSLogs/{account}/CloudTrail-Digest/{region}/{y:04}/{mo:02}/{d:02}/{account}_CloudTrail-Digest_{region}_org-trail_{region}_{}.json.gz","digestPublicKeyFingerprint":"{}","digestSignatureAlgorithm":"SHA256withRSA","logFiles":[]}}"#,
                stamp(at),
                self.rng.hex(32)
            );
            write_gz(
                &dir.join(format!(
                    "{account}_CloudTrail-Digest_{region}_org-trail_{region}_{}.json.gz",
                    stamp(at)
                )),
                body.as_bytes(),
            )?;
            self.digests += 1;
        }
        Ok(())
    }
}

fn write_gz(path: &Path, body: &[u8]) -> Result<u64> {
    let file =
        fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut gz = GzEncoder::new(std::io::BufWriter::new(file), Compression::new(4));
    gz.write_all(body)?;
    let mut inner = gz.finish()?;
    inner.flush()?;
    Ok(inner.get_ref().metadata().map_or(0, |m| m.len()))
}

struct World {
    accounts: Vec<Account>,
    nets: Vec<Net>,
    instances: Vec<Instance>,
    attacks: Vec<Attack>,
    rng: Rng,
}

fn role_id(rng: &mut Rng) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut s = String::from("AROA");
    s.extend((0..17).map(|_| char::from(alphabet[rng.below(32) as usize])));
    s
}

impl World {
    fn build(seed: u64) -> World {
        let mut rng = Rng::new(seed);
        let layout: [(&'static str, &[&'static str]); 3] = [
            ("318294751063", &["us-east-1", "eu-west-1"]),
            ("540912836471", &["us-west-2"]),
            ("729104658213", &["us-east-1", "us-west-2"]),
        ];
        let mut accounts = Vec::new();
        let mut nets = Vec::new();
        for (ai, (id, regions)) in layout.iter().enumerate() {
            let mut acct = Account {
                id,
                nets: Vec::new(),
            };
            for region in regions.iter() {
                let n = nets.len();
                nets.push(Net {
                    account: ai,
                    region,
                    nat: (0..2)
                        .map(|_| {
                            format!(
                                "52.{}.{}.{}",
                                rng.below(60) + 1,
                                rng.below(256),
                                rng.below(254) + 1
                            )
                        })
                        .collect(),
                    vpce: format!("vpce-0{}", rng.hex(16)),
                    private_prefix: format!("10.{}.{}", 10 * (ai + 1) + n, rng.below(200) + 10),
                    v6_prefix: format!(
                        "2600:1f18:{:x}:{:x}",
                        rng.below(0xfffe) + 1,
                        rng.below(0xffe) + 1
                    ),
                });
                acct.nets.push(n);
            }
            accounts.push(acct);
        }
        let start = slot_time(0);
        let mut instances = Vec::new();
        for (ni, net) in nets.iter().enumerate() {
            let mut kinds: Vec<(Kind, &str)> = Vec::new();
            kinds.extend(std::iter::repeat_n((Kind::Web, "web-frontend"), 6));
            kinds.extend(std::iter::repeat_n((Kind::Worker, "queue-worker"), 4));
            kinds.extend(std::iter::repeat_n((Kind::Public, "ingest-gateway"), 2));
            kinds.push((Kind::Idle, "nightly-batch"));
            if ni == 0 {
                kinds.extend(std::iter::repeat_n((Kind::DualStack, "api-v6"), 3));
            }
            let mut role_ids: BTreeMap<&str, String> = BTreeMap::new();
            for (k, (kind, role)) in kinds.into_iter().enumerate() {
                let rid = role_ids
                    .entry(role)
                    .or_insert_with(|| role_id(&mut rng))
                    .clone();
                // Most instances were running before the logs begin (their current
                // credentials' issuance is not in the data); some launch during the window.
                let launch = if kind == Kind::Idle {
                    start.plus_millis(2 * SLOT_MS)
                } else if rng.chance(0.7) {
                    start.plus_millis(-(rng.below(50) as i64 + 5) * EventTime::MINUTE)
                } else {
                    start.plus_millis(
                        (rng.below(20) as i64 + 1) * SLOT_MS + rng.below(SLOT_MS as u64) as i64,
                    )
                };
                let host = rng.below(250) + 2;
                instances.push(Instance {
                    id: format!("i-0{}", rng.hex(16)),
                    net: ni,
                    kind,
                    role: format!("{}-{}", net_name(&accounts, net), role),
                    role_id: rid,
                    private_ip: format!("{}.{}", net.private_prefix, host),
                    public_ip: format!(
                        "54.{}.{}.{}",
                        144 + rng.below(16),
                        rng.below(256),
                        rng.below(254) + 1
                    ),
                    v6: format!(
                        "{}:{:x}:{:x}::{:x}",
                        net.v6_prefix,
                        rng.below(0xfffe) + 1,
                        rng.below(0xfe) + 1,
                        rng.below(0xffe) + 1
                    ),
                    launch,
                    launched: false,
                    creds: None,
                    next_refresh: launch,
                    first_nat: k % net.nat.len(),
                    nat_used: false,
                });
            }
        }
        let mut w = World {
            accounts,
            nets,
            instances,
            attacks: Vec::new(),
            rng,
        };
        w.plan_attacks();
        w
    }

    fn find(&self, net: usize, kind: Kind, nth: usize) -> usize {
        self.instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.net == net && i.kind == kind)
            .nth(nth)
            .map(|(ix, _)| ix)
            .expect("world layout has this instance")
    }

    fn plan_attacks(&mut self) {
        let mut r = self.rng.fork(1);
        let outside = |r: &mut Rng, base: &str| format!("{base}.{}", r.below(250) + 2);
        // A mid-stream credential: force this instance to predate the logs, so its first
        // credential's issuance is not in the data.
        let mid = self.find(2, Kind::Web, 3);
        self.instances[mid].launch = slot_time(0).plus_millis(-20 * EventTime::MINUTE);
        let plans = [
            (
                26,
                self.find(0, Kind::Web, 2),
                false,
                outside(&mut r, "185.220.101"),
                None,
                "ssrf-credential-theft",
                "SSRF on a web instance: its credentials used from a VPS after the instance locked its NAT",
            ),
            (
                36,
                self.find(4, Kind::Worker, 1),
                true,
                outside(&mut r, "45.155.205"),
                None,
                "stolen-sibling-credential",
                "the sibling credential (ec2RoleDelivery 1.0) the instance never uses, used by the attacker",
            ),
            (
                18,
                self.find(2, Kind::Idle, 0),
                false,
                outside(&mut r, "91.243.44"),
                None,
                "idle-instance-first-user",
                "an idle instance's credentials, first ever used by the attacker (caught by the outside-AWS signal)",
            ),
            (
                48,
                self.find(1, Kind::Web, 0),
                false,
                format!("3.216.{}.{}", r.below(250), r.below(250) + 2),
                None,
                "attacker-inside-aws",
                "credentials replayed from the attacker's own EC2 instance (inside AWS's ranges)",
            ),
            (
                32,
                self.find(3, Kind::Public, 0),
                false,
                format!("172.31.{}.{}", r.below(250), r.below(250) + 2),
                Some((format!("vpce-0{}", r.hex(16)), "999988887777".to_owned())),
                "attacker-vpc-endpoint",
                "credentials used through a VPC endpoint in the attacker's account",
            ),
            (3, mid, false, outside(&mut r, "185.107.56"), None, "mid-stream-credential", "a credential issued before the logs begin, used by the attacker"),
            (
                60,
                self.find(0, Kind::DualStack, 1),
                false,
                format!("2a01:4f8:c17:{:x}::2", r.below(0xfffe) + 1),
                None,
                "ipv6-exfiltration",
                "a dual-stack instance's credentials used from an IPv6 address outside AWS",
            ),
            (
                66,
                self.find(3, Kind::Web, 4),
                false,
                outside(&mut r, "193.42.33"),
                None,
                "ssrf-credential-theft",
                "SSRF on a web instance: its credentials used from a VPS after the instance locked its NAT",
            ),
        ];
        for (slot, instance, use_sibling, ip, vpce, name, description) in plans {
            self.attacks.push(Attack {
                slot,
                instance,
                use_sibling,
                ip,
                vpce,
                name,
                description,
                stolen_key: None,
            });
        }
    }
}

fn net_name(accounts: &[Account], net: &Net) -> &'static str {
    match accounts[net.account].id {
        "318294751063" => "prod",
        "540912836471" => "staging",
        _ => "data",
    }
}

/// One instance call: what it is.
struct Action {
    source: &'static str,
    name: &'static str,
    read_only: bool,
    request: &'static str,
    endpoint_ok: bool,
}

const WEB_ACTIONS: &[Action] = &[
    Action {
        source: "s3.amazonaws.com",
        name: "GetObject",
        read_only: true,
        request: r#"{"bucketName":"corp-web-assets","key":"static/app.js","Host":"corp-web-assets.s3.amazonaws.com"}"#,
        endpoint_ok: true,
    },
    Action {
        source: "dynamodb.amazonaws.com",
        name: "GetItem",
        read_only: true,
        request: r#"{"tableName":"sessions","key":{"pk":"HIDDEN_DUE_TO_SECURITY_REASONS"},"consistentRead":false}"#,
        endpoint_ok: true,
    },
    Action {
        source: "kms.amazonaws.com",
        name: "Decrypt",
        read_only: true,
        request: r#"{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{"app":"web"}}"#,
        endpoint_ok: false,
    },
    Action {
        source: "sqs.amazonaws.com",
        name: "SendMessage",
        read_only: false,
        request: r#"{"queueUrl":"https://sqs.amazonaws.com/queue/jobs","messageBody":"HIDDEN_DUE_TO_SECURITY_REASONS"}"#,
        endpoint_ok: false,
    },
    Action {
        source: "secretsmanager.amazonaws.com",
        name: "GetSecretValue",
        read_only: true,
        request: r#"{"secretId":"web/db-password"}"#,
        endpoint_ok: false,
    },
    Action {
        source: "monitoring.amazonaws.com",
        name: "PutMetricData",
        read_only: false,
        request: r#"{"namespace":"Web","metricData":[{"metricName":"Latency","unit":"Milliseconds"}]}"#,
        endpoint_ok: false,
    },
];
const WORKER_ACTIONS: &[Action] = &[
    Action {
        source: "sqs.amazonaws.com",
        name: "ReceiveMessage",
        read_only: true,
        request: r#"{"queueUrl":"https://sqs.amazonaws.com/queue/jobs","maxNumberOfMessages":10,"waitTimeSeconds":20}"#,
        endpoint_ok: false,
    },
    Action {
        source: "sqs.amazonaws.com",
        name: "DeleteMessage",
        read_only: false,
        request: r#"{"queueUrl":"https://sqs.amazonaws.com/queue/jobs","receiptHandle":"HIDDEN"}"#,
        endpoint_ok: false,
    },
    Action {
        source: "s3.amazonaws.com",
        name: "PutObject",
        read_only: false,
        request: r#"{"bucketName":"corp-job-results","key":"results/part-0001.parquet","Host":"corp-job-results.s3.amazonaws.com"}"#,
        endpoint_ok: true,
    },
    Action {
        source: "dynamodb.amazonaws.com",
        name: "UpdateItem",
        read_only: false,
        request: r#"{"tableName":"jobs","key":{"pk":"HIDDEN_DUE_TO_SECURITY_REASONS"}}"#,
        endpoint_ok: true,
    },
];
const SSM_ACTION: Action = Action {
    source: "ssm.amazonaws.com",
    name: "UpdateInstanceInformation",
    read_only: false,
    request: r#"{"agentVersion":"3.2.1705.0","agentStatus":"Active","platformType":"Linux","platformName":"Amazon Linux","platformVersion":"2023"}"#,
    endpoint_ok: false,
};
const CONSOLE_ACTIONS: &[(&str, &str)] = &[
    ("ec2.amazonaws.com", "DescribeInstances"),
    ("ec2.amazonaws.com", "DescribeSecurityGroups"),
    ("ec2.amazonaws.com", "DescribeVpcs"),
    ("ec2.amazonaws.com", "DescribeAddresses"),
    ("cloudwatch.amazonaws.com", "DescribeAlarms"),
    ("monitoring.amazonaws.com", "GetMetricData"),
    ("health.amazonaws.com", "DescribeEventAggregates"),
    (
        "elasticloadbalancing.amazonaws.com",
        "DescribeLoadBalancers",
    ),
    ("autoscaling.amazonaws.com", "DescribeAutoScalingGroups"),
    ("s3.amazonaws.com", "ListBuckets"),
    ("iam.amazonaws.com", "ListRoles"),
    ("lambda.amazonaws.com", "ListFunctions20150331"),
];

/// One attacker call: event source, event name, and the error it gets, if any.
type AttackStep = (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
);

/// Which novelty detectors a call must trip.
#[derive(Clone, Copy, Default)]
struct Expect {
    recon: bool,
    new_action: bool,
    new_service: bool,
    new_region: bool,
}

impl std::ops::BitOrAssign for Expect {
    fn bitor_assign(&mut self, o: Expect) {
        self.recon |= o.recon;
        self.new_action |= o.new_action;
        self.new_service |= o.new_service;
        self.new_region |= o.new_region;
    }
}

/// An earlier attack's stolen credential and its instance.
struct Stolen {
    key: String,
    ip: String,
    id: String,
    role: String,
    role_id: String,
    created: EventTime,
    region: &'static str,
    account: &'static str,
}

struct Gen<'w> {
    w: &'w mut World,
    out: DeliveryWriter,
    rng: Rng,
    truth: Vec<TruthEntry>,
    buf: String,
    /// Each principal's first call, and the recon calls each has made: to know which of an
    /// attacker's first steps the recon-call detector must report.
    principal_first: std::collections::HashMap<String, EventTime>,
    made: std::collections::HashSet<(String, String)>,
}

/// The demo company's canary: an old backup bucket nothing legitimate reads.
pub const DEMO_CANARY_BUCKET: &str = "arn:aws:s3:::corp-backup-archive-2019";

/// Who owns which roles in the demo company, for foreign-role-pass.
pub fn demo_ownership() -> detect::OwnershipMap {
    let pairs = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    detect::OwnershipMap {
        roles: pairs(&[
            ("arn:aws:iam::*:role/*-admin-automation", "platform"),
            ("arn:aws:iam::*:role/*-queue-worker", "worker"),
            ("arn:aws:iam::*:role/*-web-frontend", "web"),
        ]),
        principals: pairs(&[
            ("arn:aws:iam::*:role/*-queue-worker", "worker"),
            ("arn:aws:iam::*:role/*-web-frontend", "web"),
            ("arn:aws:iam::*:user/ci-deployer", "*"),
        ]),
    }
}

/// The recon-call learning window the demo runs with (its data spans six hours).
pub const DEMO_RECON_LEARNING_MS: i64 = EventTime::HOUR;

impl Gen<'_> {
    /// Write a record. Returns which novelty detectors must report it: the first of its
    /// kind for its principal or account, after the learning window (the same rules as the
    /// detectors, applied as the data is made).
    fn emit(&mut self, call: &Call<'_>) -> Expect {
        let by_service = call.ip.ends_with("amazonaws.com")
            || call.ip.starts_with("AWS Internal")
            || matches!(
                call.who,
                Who::Service { .. }
                    | Who::Role {
                        invoked_by: Some(_),
                        ..
                    }
            );
        let mut expect = Expect::default();
        if !by_service {
            let service = call.source.trim_end_matches(".amazonaws.com");
            let action = format!("{service}:{}", call.name);
            let principal = match &call.who {
                Who::Role { account, role, .. } => {
                    Some(format!("arn:aws:iam::{account}:role/{role}"))
                }
                Who::User { account, user, .. } => {
                    Some(format!("arn:aws:iam::{account}:user/{user}"))
                }
                Who::Service { .. } => None,
            };
            if let Some(p) = principal.filter(|_| !call.user_agent.starts_with("Mozilla/")) {
                let first = *self
                    .principal_first
                    .entry(p.clone())
                    .and_modify(|t| *t = (*t).min(call.time))
                    .or_insert(call.time);
                let learned = call.time >= first.plus_millis(DEMO_RECON_LEARNING_MS);
                if detect::recon::recon_index(call.source, call.name).is_some() {
                    expect.recon =
                        self.made.insert((p.clone(), format!("recon {action}"))) && learned;
                }
                expect.new_action = self.made.insert((p, action)) && learned;
            }
            let a = call.account.to_owned();
            let first = *self
                .principal_first
                .entry(format!("account {a}"))
                .and_modify(|t| *t = (*t).min(call.time))
                .or_insert(call.time);
            let learned = call.time >= first.plus_millis(DEMO_RECON_LEARNING_MS);
            expect.new_service = self
                .made
                .insert((format!("account {a}"), format!("service {service}")))
                && learned;
            if !detect::novelty::GLOBAL_SERVICES.contains(&service) {
                expect.new_region = self
                    .made
                    .insert((format!("account {a}"), format!("region {}", call.region)))
                    && learned;
            }
        }
        self.emit_record(call);
        expect
    }

    /// Truth entries for the novelty findings an attack's calls must produce, alongside the
    /// attack's main entry (the last one pushed).
    fn expect_novelty(&mut self, e: Expect) {
        let last = self.truth.last().expect("the attack's entry").clone();
        for (flag, detector, description) in [
            (
                e.recon,
                detect::recon::NAME,
                "the attacker's first whoami / listing calls, never made by this principal",
            ),
            (
                e.new_action,
                "new-role-behaviour",
                "the attacker's calls, never made by this principal",
            ),
            (
                e.new_service,
                "unused-service",
                "a service the account never used",
            ),
            (
                e.new_region,
                "unused-region",
                "regions the account never used",
            ),
        ] {
            if flag {
                self.truth.push(TruthEntry {
                    detector,
                    description,
                    ..last.clone()
                });
            }
        }
    }

    fn emit_record(&mut self, call: &Call<'_>) {
        self.buf.clear();
        call.write_json(&mut self.buf);
        let region: &'static str = match call.source {
            "iam.amazonaws.com" => "us-east-1",
            _ => region_static(call.region),
        };
        self.out
            .add(call.account, region, call.time, self.buf.clone());
    }

    fn time_in_slot(&mut self, slot: u64) -> EventTime {
        slot_time(slot).plus_millis(self.rng.below(SLOT_MS as u64) as i64)
    }

    fn issue_instance_creds(&mut self, ix: usize, at: EventTime) {
        let (k1, k2) = (self.rng.key_id("ASIA"), self.rng.key_id("ASIA"));
        let inst = &self.w.instances[ix];
        let net = &self.w.nets[inst.net];
        let account = self.w.accounts[net.account].id;
        let role_arn = format!("arn:aws:iam::{account}:role/{}", inst.role);
        let request_id = self.rng.uuid();
        let region = net.region;
        let (id, role_id) = (inst.id.clone(), inst.role_id.clone());
        for key in [&k1, &k2] {
            let token = format!("IQoJb3JpZ2luX2VjE{}", self.rng.alnum(180));
            let response = format!(
                r#"{{"credentials":{{"accessKeyId":"{key}","sessionToken":"{token}","expiration":"{}"}},"assumedRoleUser":{{"assumedRoleId":"{role_id}:{id}","arn":"arn:aws:sts::{account}:assumed-role/{}/{id}"}}}}"#,
                sts_expiration(at.plus_millis(6 * EventTime::HOUR)),
                self.w.instances[ix].role
            );
            let request = format!(r#"{{"roleArn":"{role_arn}","roleSessionName":"{id}"}}"#);
            let event_id = self.rng.uuid();
            self.emit(&Call {
                time: at,
                source: "sts.amazonaws.com",
                name: "AssumeRole",
                region,
                ip: "ec2.amazonaws.com",
                user_agent: "ec2.amazonaws.com",
                who: Who::Service {
                    invoked_by: "ec2.amazonaws.com",
                },
                account,
                read_only: true,
                request: Some(&request),
                response: Some(&response),
                vpce: None,
                error: None,
                event_id: &event_id,
                request_id: &request_id,
                resources: &[],
            });
        }
        self.w.instances[ix].creds = Some(Creds {
            k1,
            k2,
            created: at,
        });
    }

    fn launch(&mut self, ix: usize) {
        self.w.instances[ix].launched = true;
        let inst = &self.w.instances[ix];
        let launch = inst.launch;
        if launch < slot_time(0) {
            // Running before the logs begin: credentials exist, their issuance is not in the data.
            let (k1, k2) = (self.rng.key_id("ASIA"), self.rng.key_id("ASIA"));
            self.w.instances[ix].creds = Some(Creds {
                k1,
                k2,
                created: launch,
            });
            self.w.instances[ix].next_refresh = launch.plus_millis(EventTime::HOUR);
            return;
        }
        let net = &self.w.nets[inst.net];
        let account = self.w.accounts[net.account].id;
        let region = net.region;
        let request = format!(
            r#"{{"instancesSet":{{"items":[{{"imageId":"ami-0c101f26f147fa7fd","minCount":1,"maxCount":1}}]}},"instanceType":"m6i.large","iamInstanceProfile":{{"arn":"arn:aws:iam::{account}:instance-profile/{}"}}}}"#,
            inst.role
        );
        let response = format!(
            r#"{{"instancesSet":{{"items":[{{"instanceId":"{}","privateIpAddress":"{}"}}]}}}}"#,
            inst.id, inst.private_ip
        );
        let (event_id, request_id) = (self.rng.uuid(), self.rng.uuid());
        let created = launch.plus_millis(-EventTime::HOUR);
        self.emit(&Call {
            time: launch.plus_millis(-30_000),
            source: "ec2.amazonaws.com",
            name: "RunInstances",
            region,
            ip: "autoscaling.amazonaws.com",
            user_agent: "autoscaling.amazonaws.com",
            who: Who::Role {
                account,
                role: "AWSServiceRoleForAutoScaling",
                role_id: "AROAAUTOSCALINGSERVICE",
                session: "AutoScaling",
                key: "ASIAAUTOSCALINGINTERNAL",
                created,
                delivery: None,
                console: false,
                invoked_by: Some("autoscaling.amazonaws.com"),
            },
            account,
            read_only: false,
            request: Some(&request),
            response: Some(&response),
            vpce: None,
            error: None,
            event_id: &event_id,
            request_id: &request_id,
            resources: &[],
        });
        self.issue_instance_creds(ix, launch);
        self.w.instances[ix].next_refresh = launch.plus_millis(EventTime::HOUR);
    }

    fn instance_call(&mut self, ix: usize, time: EventTime) {
        let inst = &self.w.instances[ix];
        let net = &self.w.nets[inst.net];
        let account = self.w.accounts[net.account].id;
        let creds = inst
            .creds
            .as_ref()
            .expect("launched instances have credentials");
        let ssm_turn = inst.kind == Kind::Web && self.rng.chance(0.15);
        let action = if ssm_turn {
            &SSM_ACTION
        } else if inst.kind == Kind::Worker {
            self.rng.pick(WORKER_ACTIONS)
        } else {
            self.rng.pick(WEB_ACTIONS)
        };
        let (key, delivery, ua) = if ssm_turn {
            (creds.k1.clone(), "1.0", UA_SSM)
        } else {
            (
                creds.k2.clone(),
                "2.0",
                *self.rng.pick(&[UA_JAVA, UA_BOTO, UA_GO]),
            )
        };
        let through_endpoint =
            action.endpoint_ok && inst.kind != Kind::Public && self.rng.chance(0.6);
        let ip = if through_endpoint {
            inst.private_ip.clone()
        } else {
            match inst.kind {
                Kind::Public => inst.public_ip.clone(),
                Kind::DualStack if self.rng.chance(0.5) => inst.v6.clone(),
                _ if !inst.nat_used => net.nat[inst.first_nat].clone(),
                _ => self.rng.pick(&net.nat).clone(),
            }
        };
        let vpce_id = net.vpce.clone();
        let vpce = through_endpoint.then_some((vpce_id.as_str(), account));
        let (id, role, role_id, created, region) = (
            inst.id.clone(),
            inst.role.clone(),
            inst.role_id.clone(),
            creds.created,
            net.region,
        );
        let (event_id, request_id) = (self.rng.uuid(), self.rng.uuid());
        let who = Who::Role {
            account,
            role: &role,
            role_id: &role_id,
            session: &id,
            key: &key,
            created,
            delivery: Some(delivery),
            console: false,
            invoked_by: None,
        };
        self.emit(&Call {
            time,
            source: action.source,
            name: action.name,
            region,
            ip: &ip,
            user_agent: ua,
            who,
            account,
            read_only: action.read_only,
            request: Some(action.request),
            response: None,
            vpce,
            error: None,
            event_id: &event_id,
            request_id: &request_id,
            resources: &[],
        });
        if !through_endpoint
            && matches!(
                self.w.instances[ix].kind,
                Kind::Web | Kind::Worker | Kind::DualStack
            )
            && !ip.contains(':')
        {
            self.w.instances[ix].nat_used = true;
        }
        // S3 with SSE-KMS: KMS logs a Decrypt that S3 made on the caller's behalf.
        if action.source == "s3.amazonaws.com" && self.rng.chance(0.3) {
            let (event_id2, internal) = (self.rng.uuid(), self.rng.chance(0.5));
            let who = Who::Role {
                account,
                role: &role,
                role_id: &role_id,
                session: &id,
                key: &key,
                created,
                delivery: Some(delivery),
                console: false,
                invoked_by: (!internal).then_some("s3.amazonaws.com"),
            };
            let ip = if internal {
                "AWS Internal"
            } else {
                "s3.amazonaws.com"
            };
            self.emit(&Call {
                time,
                source: "kms.amazonaws.com",
                name: "Decrypt",
                region,
                ip,
                user_agent: ip,
                who,
                account,
                read_only: true,
                request: Some(r#"{"encryptionContext":{"aws:s3:arn":"arn:aws:s3:::corp-web-assets/static/app.js"},"encryptionAlgorithm":"SYMMETRIC_DEFAULT"}"#),
                response: None,
                vpce: None,
                error: None,
                event_id: &event_id2,
                request_id: &request_id,
                resources: &[],
            });
        }
    }

    fn background(&mut self, slot: u64, budget: u64) {
        let accounts: Vec<(&'static str, Vec<usize>)> = self
            .w
            .accounts
            .iter()
            .map(|a| (a.id, a.nets.clone()))
            .collect();
        for n in 0..budget {
            let account_ix = (n as usize + slot as usize) % accounts.len();
            let (account, nets) = &accounts[account_ix];
            let net = &self.w.nets[nets[self.rng.below(nets.len() as u64) as usize]];
            let (region, nat) = (net.region, net.nat.clone());
            let time = self.time_in_slot(slot);
            let (event_id, request_id) = (self.rng.uuid(), self.rng.uuid());
            let created = slot_time(slot).plus_millis(-20 * EventTime::MINUTE);
            match self.rng.below(10) {
                // ECS tasks: task-role credentials (session = task id), calls via the NAT.
                0..=2 => {
                    let task = format!("{:032x}", (slot / 12) * 7 + (n % 5));
                    let key = format!("ASIAECSTASK{:09}", (slot / 12) * 10 + (n % 5));
                    let ip = self.rng.pick(&nat).clone();
                    let who = Who::Role {
                        account,
                        role: "orders-api-task",
                        role_id: "AROAECSTASKROLEEXAMPLE",
                        session: &task,
                        key: &key,
                        created,
                        delivery: None,
                        console: false,
                        invoked_by: None,
                    };
                    self.emit(&Call {
                        time,
                        source: "dynamodb.amazonaws.com",
                        name: "Query",
                        region,
                        ip: &ip,
                        user_agent: UA_GO,
                        who,
                        account,
                        read_only: true,
                        request: Some(
                            r#"{"tableName":"orders","keyConditionExpression":"pk = :pk"}"#,
                        ),
                        response: None,
                        vpce: None,
                        error: None,
                        event_id: &event_id,
                        request_id: &request_id,
                        resources: &[],
                    });
                }
                // Lambda: per-function credentials, calls from Lambda's (AWS) addresses that vary per call.
                3..=4 => {
                    let f = *self
                        .rng
                        .pick(&["thumbnailer", "audit-forwarder", "nightly-report"]);
                    let key = format!("ASIALAMBDA{:010}", (slot / 12) * 3 + n % 3);
                    let ip = format!(
                        "3.{}.{}.{}",
                        208 + self.rng.below(16),
                        self.rng.below(256),
                        self.rng.below(254) + 1
                    );
                    let who = Who::Role {
                        account,
                        role: f,
                        role_id: "AROALAMBDAEXECUTIONEX",
                        session: f,
                        key: &key,
                        created,
                        delivery: None,
                        console: false,
                        invoked_by: None,
                    };
                    self.emit(&Call {
                        time,
                        source: "s3.amazonaws.com",
                        name: "PutObject",
                        region,
                        ip: &ip,
                        user_agent: UA_BOTO,
                        who,
                        account,
                        read_only: false,
                        request: Some(r#"{"bucketName":"corp-reports","key":"out.json"}"#),
                        response: None,
                        vpce: None,
                        error: None,
                        event_id: &event_id,
                        request_id: &request_id,
                        resources: &[],
                    });
                }
                // Console users browsing: one click fans out across services and regions.
                5..=7 => {
                    let user = *self.rng.pick(&[
                        "alice@corp.example",
                        "bob@corp.example",
                        "carol@corp.example",
                    ]);
                    let key = format!("ASIACONSOLE{:09}", (slot / 24) * 3 + n % 3);
                    let ip = format!("198.51.100.{}", 10 + self.rng.below(5));
                    let (source, name) = *self.rng.pick(CONSOLE_ACTIONS);
                    let region =
                        *self
                            .rng
                            .pick(&["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"]);
                    // Read-only users are now and then denied a page's call: scattered noise
                    // that must not look like enumeration.
                    let error = self.rng.chance(0.01).then_some((
                        "AccessDenied",
                        "User is not authorized to perform this action",
                    ));
                    let who = Who::Role {
                        account,
                        role: "AWSReservedSSO_ReadOnly_5f2e9c1a",
                        role_id: "AROACONSOLEREADONLYEX",
                        session: user,
                        key: &key,
                        created,
                        delivery: None,
                        console: true,
                        invoked_by: None,
                    };
                    self.emit(&Call {
                        time,
                        source,
                        name,
                        region,
                        ip: &ip,
                        user_agent: UA_CONSOLE,
                        who,
                        account,
                        read_only: true,
                        request: Some("{}"),
                        response: None,
                        vpce: None,
                        error,
                        event_id: &event_id,
                        request_id: &request_id,
                        resources: &[],
                    });
                }
                // CI deploys with a static key.
                _ => {
                    let key = ci_key(account_ix);
                    let who = Who::User {
                        account,
                        user: "ci-deployer",
                        user_id: "AIDACIDEPLOYEREXAMPLE",
                        key: &key,
                    };
                    self.emit(&Call {
                        time,
                        source: "cloudformation.amazonaws.com",
                        name: "DescribeStacks",
                        region,
                        ip: CI_RUNNER_IP,
                        user_agent: UA_CI,
                        who,
                        account,
                        read_only: true,
                        request: Some(r#"{"stackName":"web-frontend"}"#),
                        response: None,
                        vpce: None,
                        error: None,
                        event_id: &event_id,
                        request_id: &request_id,
                        resources: &[],
                    });
                }
            }
        }
    }

    /// An operator moves an Elastic IP onto an instance: its public address changes, which
    /// the detector must accept.
    fn move_elastic_ip(&mut self, slot: u64) {
        let ix = self.w.find(0, Kind::Public, 1);
        let time = self.time_in_slot(slot);
        let new_ip = format!(
            "54.{}.{}.{}",
            144 + self.rng.below(16),
            self.rng.below(256),
            self.rng.below(254) + 1
        );
        let inst = &self.w.instances[ix];
        let net = &self.w.nets[inst.net];
        let account = self.w.accounts[net.account].id;
        let request = format!(
            r#"{{"instanceId":"{}","allocationId":"eipalloc-0{}","allowReassociation":true}}"#,
            inst.id,
            self.rng.hex(16)
        );
        let (event_id, request_id) = (self.rng.uuid(), self.rng.uuid());
        let who = Who::Role {
            account,
            role: "AWSReservedSSO_Operator_7a1b2c3d",
            role_id: "AROACONSOLEOPERATOREX",
            session: "dave@corp.example",
            key: "ASIACONSOLEDAVE00001",
            created: time,
            delivery: None,
            console: true,
            invoked_by: None,
        };
        let region = net.region;
        self.emit(&Call {
            time,
            source: "ec2.amazonaws.com",
            name: "AssociateAddress",
            region,
            ip: "198.51.100.14",
            user_agent: UA_CONSOLE,
            who,
            account,
            read_only: false,
            request: Some(&request),
            response: Some(r#"{"_return":true}"#),
            vpce: None,
            error: None,
            event_id: &event_id,
            request_id: &request_id,
            resources: &[],
        });
        self.w.instances[ix].public_ip = new_ip;
    }

    /// The attacker behind the first SSRF runs an enumeration script with the stolen
    /// credential: dozens of calls across services, most denied, in two minutes.
    /// An earlier attack's stolen credential and the instance it belongs to, for the
    /// attacker's follow-up moves.
    fn stolen(&self, attack: &str) -> Option<Stolen> {
        let a = self.w.attacks.iter().find(|a| a.name == attack)?;
        let key = a.stolen_key.clone()?;
        let inst = &self.w.instances[a.instance];
        let net = &self.w.nets[inst.net];
        let creds = inst.creds.as_ref()?;
        Some(Stolen {
            key,
            ip: a.ip.clone(),
            id: inst.id.clone(),
            role: inst.role.clone(),
            role_id: inst.role_id.clone(),
            created: creds.created,
            region: net.region,
            account: self.w.accounts[net.account].id,
        })
    }

    fn enumeration_attack(&mut self, slot: u64) {
        // The credential stolen earlier: still valid, even if the instance has refreshed since.
        let Some(Stolen {
            key,
            ip,
            id,
            role,
            role_id,
            created,
            region,
            account,
        }) = self.stolen("ssrf-credential-theft")
        else {
            return;
        };
        const PROBES: &[(&str, &str)] = &[
            ("iam.amazonaws.com", "ListUsers"),
            ("iam.amazonaws.com", "ListRoles"),
            ("iam.amazonaws.com", "ListPolicies"),
            ("iam.amazonaws.com", "GetAccountAuthorizationDetails"),
            ("s3.amazonaws.com", "ListBuckets"),
            ("ec2.amazonaws.com", "DescribeSnapshots"),
            ("ec2.amazonaws.com", "DescribeVolumes"),
            ("rds.amazonaws.com", "DescribeDBInstances"),
            ("lambda.amazonaws.com", "ListFunctions20150331"),
            ("secretsmanager.amazonaws.com", "ListSecrets"),
            ("kms.amazonaws.com", "ListKeys"),
            ("dynamodb.amazonaws.com", "ListTables"),
            ("sns.amazonaws.com", "ListTopics"),
            ("organizations.amazonaws.com", "DescribeOrganization"),
            ("cloudtrail.amazonaws.com", "DescribeTrails"),
            ("guardduty.amazonaws.com", "ListDetectors"),
        ];
        let mut first = None;
        let mut recon = Expect::default();
        for (i, (source, name)) in PROBES.iter().cycle().take(40).enumerate() {
            let time = slot_time(slot).plus_millis(i as i64 * 3_000 + self.rng.below(2_000) as i64);
            first.get_or_insert(time);
            let code = match *source {
                "ec2.amazonaws.com" => "Client.UnauthorizedOperation",
                "s3.amazonaws.com" | "iam.amazonaws.com" | "sns.amazonaws.com" => "AccessDenied",
                _ => "AccessDeniedException",
            };
            let error = (*name != "ListBuckets")
                .then_some((code, "not authorized to perform this operation"));
            let (event_id, request_id) = (self.rng.uuid(), self.rng.uuid());
            let who = Who::Role {
                account,
                role: &role,
                role_id: &role_id,
                session: &id,
                key: &key,
                created,
                delivery: Some("2.0"),
                console: false,
                invoked_by: None,
            };
            let ua = "Boto3/1.34.11 Python/3.11.8 Linux/6.5.0 Botocore/1.34.11 enumerate-iam";
            recon |= self.emit(&Call {
                time,
                source,
                name,
                region,
                ip: &ip,
                user_agent: ua,
                who,
                account,
                read_only: true,
                request: Some("{}"),
                response: None,
                vpce: None,
                error,
                event_id: &event_id,
                request_id: &request_id,
                resources: &[],
            });
        }
        // ... and sprays regions the company never uses, looking for forgotten resources.
        for (i, spray_region) in ["eu-north-1", "ap-south-1", "sa-east-1", "me-south-1"]
            .into_iter()
            .enumerate()
        {
            let time = slot_time(slot).plus_millis(125_000 + i as i64 * 2_000);
            let (event_id, request_id) = (self.rng.uuid(), self.rng.uuid());
            let who = Who::Role {
                account,
                role: &role,
                role_id: &role_id,
                session: &id,
                key: &key,
                created,
                delivery: Some("2.0"),
                console: false,
                invoked_by: None,
            };
            recon |= self.emit(&Call {
                time,
                source: "ec2.amazonaws.com",
                name: "DescribeInstances",
                region: spray_region,
                ip: &ip,
                user_agent:
                    "Boto3/1.34.11 Python/3.11.8 Linux/6.5.0 Botocore/1.34.11 enumerate-iam",
                who,
                account,
                read_only: true,
                request: Some("{}"),
                response: None,
                vpce: None,
                error: Some((
                    "Client.UnauthorizedOperation",
                    "You are not authorized to perform this operation.",
                )),
                event_id: &event_id,
                request_id: &request_id,
                resources: &[],
            });
        }
        self.truth.push(TruthEntry {
            kind: "attack",
            attack: "permission-enumeration",
            detector: detect::burst::NAME,
            account: account.to_owned(),
            region: region.to_owned(),
            instance_id: id,
            access_key_id: key,
            source_ip: ip,
            vpc_endpoint: None,
            time: first.expect("probes").to_string(),
            description: "an enumeration script run with the stolen credential: 40 calls across 16 services in two minutes, most denied",
        });
        self.expect_novelty(recon);
    }

    /// The attacker holding the stolen sibling credential tries the company's old backup
    /// bucket — a canary nobody legitimate touches.
    fn honey_bucket_attack(&mut self, slot: u64) {
        let Some(Stolen {
            key,
            ip,
            id,
            role,
            role_id,
            created,
            region,
            account,
        }) = self.stolen("stolen-sibling-credential")
        else {
            return;
        };
        let time = slot_time(slot).plus_millis(self.rng.below(SLOT_MS as u64 / 2) as i64);
        let (event_id, request_id) = (self.rng.uuid(), self.rng.uuid());
        let object = format!("{DEMO_CANARY_BUCKET}/db/prod-dump-2019-11.sql.gz");
        let request = format!(
            r#"{{"bucketName":"{}","key":"db/prod-dump-2019-11.sql.gz"}}"#,
            DEMO_CANARY_BUCKET.trim_start_matches("arn:aws:s3:::")
        );
        let who = Who::Role {
            account,
            role: &role,
            role_id: &role_id,
            session: &id,
            key: &key,
            created,
            delivery: Some("1.0"),
            console: false,
            invoked_by: None,
        };
        let novelty = self.emit(&Call {
            time,
            source: "s3.amazonaws.com",
            name: "GetObject",
            region,
            ip: &ip,
            user_agent: UA_CLI,
            who,
            account,
            read_only: true,
            request: Some(&request),
            response: None,
            vpce: None,
            error: None,
            event_id: &event_id,
            request_id: &request_id,
            resources: &[&object, DEMO_CANARY_BUCKET],
        });
        self.truth.push(TruthEntry {
            kind: "attack",
            attack: "honey-bucket-read",
            detector: detect::canary::NAME,
            account: account.to_owned(),
            region: region.to_owned(),
            instance_id: id,
            access_key_id: key,
            source_ip: ip,
            vpc_endpoint: None,
            time: time.to_string(),
            description: "the stolen credential reads the old backup bucket, a canary",
        });
        self.expect_novelty(novelty);
    }

    /// The attacker holding the worker's sibling credential creates a Lambda function that
    /// runs as the platform team's admin-automation role: privilege escalation by PassRole.
    fn foreign_pass_attack(&mut self, slot: u64) {
        let Some(Stolen {
            key,
            ip,
            id,
            role,
            role_id,
            created,
            region,
            account,
        }) = self.stolen("stolen-sibling-credential")
        else {
            return;
        };
        let time = slot_time(slot).plus_millis(self.rng.below(SLOT_MS as u64 / 2) as i64);
        let (event_id, request_id) = (self.rng.uuid(), self.rng.uuid());
        let admin = format!("arn:aws:iam::{account}:role/data-admin-automation");
        let request = format!(
            r#"{{"functionName":"log-rotate","runtime":"python3.12","role":"{admin}","handler":"index.handler","timeout":900}}"#
        );
        let who = Who::Role {
            account,
            role: &role,
            role_id: &role_id,
            session: &id,
            key: &key,
            created,
            delivery: Some("1.0"),
            console: false,
            invoked_by: None,
        };
        let novelty = self.emit(&Call {
            time,
            source: "lambda.amazonaws.com",
            name: "CreateFunction20150331",
            region,
            ip: &ip,
            user_agent: UA_CLI,
            who,
            account,
            read_only: false,
            request: Some(&request),
            response: None,
            vpce: None,
            error: None,
            event_id: &event_id,
            request_id: &request_id,
            resources: &[],
        });
        self.truth.push(TruthEntry {
            kind: "attack",
            attack: "foreign-role-pass",
            detector: detect::foreign_role::NAME,
            account: account.to_owned(),
            region: region.to_owned(),
            instance_id: id,
            access_key_id: key,
            source_ip: ip,
            vpc_endpoint: None,
            time: time.to_string(),
            description: "the stolen worker credential creates a Lambda function running as the platform's admin role",
        });
        self.expect_novelty(novelty);
    }

    /// The first account's CI key leaks (a build log) and is used from a VPS.
    fn leaked_static_key(&mut self, slot: u64) {
        let account = self.w.accounts[0].id;
        let key = ci_key(0);
        let ip = format!("45.137.21.{}", self.rng.below(250) + 2);
        let mut first = None;
        let mut recon = Expect::default();
        for (i, (source, name)) in [
            ("sts.amazonaws.com", "GetCallerIdentity"),
            ("s3.amazonaws.com", "ListBuckets"),
            ("s3.amazonaws.com", "GetObject"),
            ("s3.amazonaws.com", "GetObject"),
        ]
        .into_iter()
        .enumerate()
        {
            let time =
                slot_time(slot).plus_millis(i as i64 * 45_000 + self.rng.below(10_000) as i64);
            first.get_or_insert(time);
            let (event_id, request_id) = (self.rng.uuid(), self.rng.uuid());
            let who = Who::User {
                account,
                user: "ci-deployer",
                user_id: "AIDACIDEPLOYEREXAMPLE",
                key: &key,
            };
            recon |= self.emit(&Call {
                time,
                source,
                name,
                region: "us-east-1",
                ip: &ip,
                user_agent: UA_CLI,
                who,
                account,
                read_only: true,
                request: Some("{}"),
                response: None,
                vpce: None,
                error: None,
                event_id: &event_id,
                request_id: &request_id,
                resources: &[],
            });
        }
        self.truth.push(TruthEntry {
            kind: "attack",
            attack: "leaked-static-key",
            detector: detect::static_key::NAME,
            account: account.to_owned(),
            region: "us-east-1".to_owned(),
            instance_id: "-".to_owned(),
            access_key_id: key,
            source_ip: ip,
            vpc_endpoint: None,
            time: first.expect("calls").to_string(),
            description: "the CI user's long-lived key, leaked in a build log, used from a VPS",
        });
        self.expect_novelty(recon);
    }

    fn attack(&mut self, a: usize) {
        let (slot, ix, use_sibling, ip, vpce, name, description) = {
            let a = &self.w.attacks[a];
            (
                a.slot,
                a.instance,
                a.use_sibling,
                a.ip.clone(),
                a.vpce.clone(),
                a.name,
                a.description,
            )
        };
        let inst = &self.w.instances[ix];
        let net = &self.w.nets[inst.net];
        let account = self.w.accounts[net.account].id;
        let creds = inst.creds.as_ref().expect("attacked instances are running");
        let (key, delivery) = if use_sibling {
            (creds.k1.clone(), "1.0")
        } else {
            (creds.k2.clone(), "2.0")
        };
        let (id, role, role_id, created, region) = (
            inst.id.clone(),
            inst.role.clone(),
            inst.role_id.clone(),
            creds.created,
            net.region,
        );
        let steps: [AttackStep; 6] = [
            ("sts.amazonaws.com", "GetCallerIdentity", None),
            ("s3.amazonaws.com", "ListBuckets", None),
            (
                "iam.amazonaws.com",
                "ListUsers",
                Some((
                    "AccessDenied",
                    "User is not authorized to perform: iam:ListUsers",
                )),
            ),
            ("ec2.amazonaws.com", "DescribeInstances", None),
            ("secretsmanager.amazonaws.com", "ListSecrets", None),
            ("s3.amazonaws.com", "GetObject", None),
        ];
        let mut first = None;
        let mut recon = Expect::default();
        for (i, (source, event, error)) in steps.into_iter().enumerate() {
            let time =
                slot_time(slot).plus_millis(i as i64 * 70_000 + self.rng.below(30_000) as i64);
            first.get_or_insert(time);
            let (event_id, request_id) = (self.rng.uuid(), self.rng.uuid());
            let who = Who::Role {
                account,
                role: &role,
                role_id: &role_id,
                session: &id,
                key: &key,
                created,
                delivery: Some(delivery),
                console: false,
                invoked_by: None,
            };
            let vp = vpce.as_ref().map(|(v, o)| (v.as_str(), o.as_str()));
            let ua = format!("{UA_CLI} command/{}", event.to_ascii_lowercase());
            recon |= self.emit(&Call {
                time,
                source,
                name: event,
                region,
                ip: &ip,
                user_agent: &ua,
                who,
                account,
                read_only: true,
                request: Some("{}"),
                response: None,
                vpce: vp,
                error,
                event_id: &event_id,
                request_id: &request_id,
                resources: &[],
            });
        }
        self.w.attacks[a].stolen_key = Some(key.clone());
        self.truth.push(TruthEntry {
            kind: "attack",
            attack: name,
            detector: detect::off_instance::NAME,
            account: account.to_owned(),
            region: region.to_owned(),
            instance_id: id,
            access_key_id: key,
            source_ip: ip,
            vpc_endpoint: vpce.map(|(v, _)| v),
            time: first.expect("steps").to_string(),
            description,
        });
        self.expect_novelty(recon);
    }
}

const CI_RUNNER_IP: &str = "203.0.113.50";

/// The CI user's long-lived key in account number `i`.
fn ci_key(i: usize) -> String {
    format!("AKIACIDEPLOYER{i:06}")
}

fn region_static(r: &str) -> &'static str {
    ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"]
        .into_iter()
        .find(|x| *x == r)
        .unwrap_or("us-east-1")
}

/// Generate about `records` records into `dir` (logs under `dir/AWSLogs`).
pub fn generate(dir: &Path, seed: u64, records: u64) -> Result<Generated> {
    let mut world = World::build(seed);
    let slots = MIN_SLOTS.max(records.div_ceil(MAX_PER_SLOT));
    let per_slot = (records / slots).max(1);
    let mut rng = world.rng.fork(2);
    let writer_rng = world.rng.fork(3);
    let mut g = Gen {
        w: &mut world,
        out: DeliveryWriter {
            logs: dir.to_path_buf(),
            pending: BTreeMap::new(),
            rng: writer_rng,
            files: 0,
            digests: 0,
            gz_bytes: 0,
            records: 0,
            seen_streams: BTreeMap::new(),
            last_digest: None,
        },
        rng: rng.fork(4),
        truth: Vec::new(),
        buf: String::with_capacity(4096),
        principal_first: Default::default(),
        made: Default::default(),
    };
    for slot in 0..slots {
        let slot_end = slot_time(slot + 1);
        for ix in 0..g.w.instances.len() {
            if !g.w.instances[ix].launched && g.w.instances[ix].launch < slot_end {
                g.launch(ix);
            }
            while g.w.instances[ix].launched && g.w.instances[ix].next_refresh < slot_end {
                let at = g.w.instances[ix].next_refresh;
                g.issue_instance_creds(ix, at.max(slot_time(slot)));
                g.w.instances[ix].next_refresh =
                    at.plus_millis(EventTime::HOUR + (rng.below(120) as i64 - 60) * 1000);
            }
        }
        let active: Vec<usize> = (0..g.w.instances.len())
            .filter(|&i| {
                g.w.instances[i].launched
                    && g.w.instances[i].kind != Kind::Idle
                    && g.w.instances[i].launch < slot_time(slot)
            })
            .collect();
        let instance_budget = per_slot * 7 / 10;
        let per_instance = instance_budget as f64 / active.len().max(1) as f64;
        for &ix in &active {
            let n = per_instance.floor() as u64 + u64::from(rng.chance(per_instance.fract()));
            // An instance's calls in event-time order, so "its first call through the NAT" is
            // first by event time too.
            let mut times: Vec<EventTime> = (0..n).map(|_| g.time_in_slot(slot)).collect();
            times.sort();
            for t in times {
                g.instance_call(ix, t);
            }
        }
        g.background(slot, per_slot - instance_budget);
        if slot == 36 {
            g.move_elastic_ip(slot);
        }
        for a in 0..g.w.attacks.len() {
            if g.w.attacks[a].slot == slot {
                g.attack(a);
            }
        }
        if slot == 28 {
            g.enumeration_attack(slot);
        }
        if slot == 44 {
            g.leaked_static_key(slot);
        }
        if slot == 40 {
            g.honey_bucket_attack(slot);
        }
        if slot == 42 {
            g.foreign_pass_attack(slot);
        }
        // A record is delivered at most one slot late: everything for slots < `slot` is final.
        if slot >= 1 {
            g.out.flush(slot - 1)?;
        }
    }
    g.out.flush(u64::MAX - 1)?;
    // Each account's CI key is in daily use from the CI runner: expected, not an attack.
    for (i, a) in g.w.accounts.iter().enumerate() {
        g.truth.push(TruthEntry {
            kind: "hygiene",
            attack: "static-key-in-use",
            detector: detect::static_key::NAME,
            account: a.id.to_owned(),
            region: "-".to_owned(),
            instance_id: "-".to_owned(),
            access_key_id: ci_key(i),
            source_ip: CI_RUNNER_IP.to_owned(),
            vpc_endpoint: None,
            time: String::new(),
            description:
                "a CI user's long-lived key in daily use: reported once, so it gets retired",
        });
    }
    Ok(Generated {
        records: g.out.records,
        files: g.out.files,
        digest_files: g.out.digests,
        gz_bytes: g.out.gz_bytes,
        truth: g.truth,
        logs: dir.join("AWSLogs"),
    })
}

/// The ip-ranges.json of the demo's world, in AWS's format.
pub fn aws_ip_ranges_json() -> String {
    let v4: Vec<_> = AWS_PREFIXES_V4
        .iter()
        .map(|p| serde_json::json!({"ip_prefix": p, "region": "GLOBAL", "service": "AMAZON", "network_border_group": "GLOBAL"}))
        .collect();
    let v6: Vec<_> = AWS_PREFIXES_V6
        .iter()
        .map(|p| serde_json::json!({"ipv6_prefix": p, "region": "GLOBAL", "service": "AMAZON", "network_border_group": "GLOBAL"}))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({"syncToken": "1772409600", "createDate": "2026-03-02-00-00-00", "prefixes": v4, "ipv6_prefixes": v6}))
        .expect("static JSON")
}
