//! The fuzz targets: one function per area, each taking the raw input and driving the real
//! library entry points with it. A target panics only when the library did (or when an
//! invariant the library promises does not hold); every `Err` the library returns is a pass.
//! Each returns an *outcome*: a hash of what the input made the library do, the engine's only
//! feedback.

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::engine::fnv;

/// A named target, its dictionary of tokens, and the largest input it is given.
pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&[u8]) -> u64,
    pub dictionary: &'static [&'static str],
    pub max_len: usize,
}

/// Every target, in the order `all` runs them.
pub static TARGETS: &[Target] = &[
    Target {
        name: "cloudtrail",
        about: "CloudTrail splitter and decoder (every delivery form, gzip, read boundaries)",
        run: cloudtrail,
        dictionary: &[
            "\"Records\"",
            "\"Records\":[",
            "{\"Records\":[",
            "\"eventTime\":\"2024-01-01T00:00:00Z\"",
            "\"eventSource\":\"sts.amazonaws.com\"",
            "\"eventName\":\"AssumeRole\"",
            "\"userIdentity\":{",
            "\"sourceIPAddress\":\"",
            "\"detail\":",
            "\"detail-type\":\"AWS API Call via CloudTrail\"",
            "\"Events\":[",
            "\"CloudTrailEvent\":\"",
            "\"digestPublicKeyFingerprint\"",
            "\"resources\":[{\"ARN\":\"",
            "\"responseElements\":{\"credentials\":{",
            "\"accessKeyId\":\"ASIA",
            "\"eventType\":\"AwsCloudTrailInsight\"",
            "\\\"",
            "\x1f\u{8b}",
        ],
        max_len: 256 * 1024,
    },
    Target {
        name: "policy",
        about: "IAM policy parser, normaliser and evaluator",
        run: policy,
        dictionary: &[
            "\"Version\":\"2012-10-17\"",
            "\"Statement\":[",
            "\"Effect\":\"Allow\"",
            "\"Effect\":\"Deny\"",
            "\"Action\":",
            "\"NotAction\":",
            "\"Resource\":",
            "\"NotResource\":",
            "\"Principal\":",
            "\"NotPrincipal\":",
            "{\"AWS\":\"",
            "\"Condition\":{",
            "\"StringLike\":{",
            "\"ForAllValues:StringEquals\":",
            "\"ForAnyValue:StringLike\":",
            "\"IpAddress\":{\"aws:SourceIp\":",
            "\"NotIpAddress\":",
            "\"DateGreaterThan\":",
            "\"NumericLessThanEquals\":",
            "\"ArnLike\":",
            "\"BinaryEquals\":",
            "\"Null\":",
            "IfExists",
            "\"Bool\":{\"aws:SecureTransport\":",
            "${aws:username}",
            "${*}",
            "${?}",
            "${$}",
            "${aws:PrincipalTag/team, 'x'}",
            "arn:aws:s3:::",
            "arn:aws:iam::111122223333:role/",
            "10.0.0.0/8",
            "::/0",
            "s3:*",
            "*:*",
            "%7B",
            "%22",
            "\n--\n",
            "aws:SourceIp=",
            "aws:PrincipalArn=",
        ],
        max_len: 64 * 1024,
    },
    Target {
        name: "jwt",
        about: "broker JWKS parsing and JWT verification (raw tokens and signed claims)",
        run: jwt,
        dictionary: &[
            "{\"keys\":[",
            "\"kty\":\"RSA\"",
            "\"kty\":\"EC\"",
            "\"crv\":\"P-256\"",
            "\"use\":\"sig\"",
            "\"use\":\"enc\"",
            "\"kid\":\"k1\"",
            "\"n\":\"",
            "\"e\":\"AQAB\"",
            "\"x\":\"",
            "\"alg\":\"ES256\"",
            "\"alg\":\"RS256\"",
            "\"alg\":\"none\"",
            "\"crit\":[",
            "\"iss\":\"https://idp.example\"",
            "\"aud\":\"credwarden\"",
            "\"aud\":[",
            "\"exp\":",
            "\"nbf\":",
            "\"sub\":\"alice\"",
            "\"email\":\"a@example.com\"",
            "\"email_verified\":true",
            "\"groups\":",
            "eyJ",
            ".",
            "=",
            "-",
            "_",
            "https://",
            "http://127.0.0.1/",
            "http://[::1]:8/",
            "user:pw@",
        ],
        max_len: 32 * 1024,
    },
    Target {
        name: "imds-proxy",
        about: "the metadata proxy's request handling (raw HTTP through hyper, in memory)",
        run: imds_proxy,
        dictionary: IMDS_TOKENS,
        max_len: 32 * 1024,
    },
    Target {
        name: "imds-serve",
        about: "`imds serve`'s request handling (raw HTTP through hyper, in memory)",
        run: imds_serve,
        dictionary: IMDS_TOKENS,
        max_len: 32 * 1024,
    },
    Target {
        name: "config",
        about: "TOML configs: the broker's and credwarden.toml",
        run: config,
        dictionary: &[
            "[auth]\n",
            "mode = \"jwt\"\n",
            "mode = \"header\"\n",
            "[[networks]]\n",
            "name = \"vpn\"\n",
            "clients = [\"10.8.0.0/16\"]\n",
            "egress = [\"198.51.100.10/32\"]\n",
            "egress = [\"0.0.0.0/0\"]\n",
            "egress = [\"::/0\"]\n",
            "vpcs = [\"vpc-0a1b2c3d\"]\n",
            "[[endpoints]]\nid = \"vpce-1\"\nvpc = \"vpc-2\"\n",
            "jwks_url = \"",
            "trusted_proxies = [",
            "max_duration_seconds = ",
            "[detect]\n",
            "egress_cidrs = [",
            "known_accounts = [",
            "canaries = [",
            "[detect.ownership]\n",
            "lateness_minutes = ",
            "threads = ",
            "'''",
            "\"\"\"",
            "=",
            "[",
            "]",
            "#",
            "\\U0010FFFF",
            "1979-05-27T07:32:00Z",
            "inf",
            "nan",
            "0x7f",
        ],
        max_len: 64 * 1024,
    },
];

const IMDS_TOKENS: &[&str] = &[
    "GET ",
    "PUT ",
    "HEAD ",
    "POST ",
    "CONNECT ",
    " HTTP/1.1\r\n",
    " HTTP/1.0\r\n",
    "\r\n",
    "\r\n\r\n",
    "Host: 169.254.169.254\r\n",
    "Host: 127.0.0.1:9911\r\n",
    "Host: evil.example\r\n",
    "User-Agent: Botocore/1.34.0 Python/3.12\r\n",
    "User-Agent: aws-sdk-rust/1.1\r\n",
    "User-Agent: curl/8.0\r\n",
    "User-Agent: Cloud-Init/23.4\r\n",
    "X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n",
    "X-aws-ec2-metadata-token: ",
    "X-Forwarded-For: 1.2.3.4\r\n",
    "X_Forwarded_For: 1.2.3.4\r\n",
    "Authorization: fuzz-ecs-token-0123456789\r\n",
    "X-Amz-Date: 20240101T000000Z\r\n",
    "Content-Length: 5\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Connection: close\r\n",
    "/latest/api/token",
    "/latest/meta-data/",
    "/latest/meta-data/iam/security-credentials/",
    "/latest/meta-data/iam/security-credentials/fuzz-role",
    "/latest/meta-data/iam/info",
    "/latest/dynamic/instance-identity/document",
    "/latest/dynamic/instance-identity/pkcs7",
    "/latest/user-data",
    "/v2/credentials/fuzz",
    "/2021-07-15/meta-data/identity-credentials/ec2/security-credentials/ec2-instance",
    "http://169.254.169.254/",
    "/../",
    "/./",
    "//",
    "%2e%2e",
    "%2F",
    "\\",
    ";",
    "?a=b",
    "#frag",
];

/// Folds what happened into the outcome hash.
#[derive(Default)]
struct Outcome(Vec<u8>);

impl Outcome {
    fn add(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        self.0.extend_from_slice(bytes.as_ref());
        self.0.push(0xff);
        self
    }
    /// An error's kind without the parts that name input (digits and quoted text dropped).
    fn kind(&mut self, text: &str) -> &mut Self {
        let first = text.lines().next().unwrap_or("");
        let shape: String = first
            .split(['"', '`', '\''])
            .step_by(2)
            .flat_map(|s| s.chars().filter(|c| !c.is_ascii_digit()))
            .take(48)
            .collect();
        self.add(shape)
    }
    fn done(&self) -> u64 {
        fnv(&self.0)
    }
}

// ---------------------------------------------------------------------------------------
// CloudTrail

/// What the splitter handed over, for comparing two reads of the same bytes.
#[derive(Debug, Default, PartialEq)]
struct Collected {
    values: Vec<(u64, Vec<u8>)>,
    errors: Vec<(Option<u64>, u64, String)>,
}

impl cloudtrail::split::Sink for Collected {
    fn value(&mut self, index: u64, bytes: &[u8]) -> Result<(), String> {
        self.values.push((index, bytes.to_vec()));
        serde_json::from_slice::<&serde_json::value::RawValue>(bytes)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn error(&mut self, record: Option<u64>, line: u64, reason: String) {
        self.errors.push((record, line, reason));
    }
}

/// Hands out the bytes a few at a time, as a socket or a gzip stream would.
struct Dribble<'a> {
    data: &'a [u8],
    step: usize,
    reads: usize,
}

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        let n = (1 + (self.reads * 7919 + self.step) % self.step.max(1))
            .min(buf.len())
            .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Decode the input as a CloudTrail file; split it whole and in dribs, which must agree.
pub fn cloudtrail(data: &[u8]) -> u64 {
    let mut out = Outcome::default();
    let mut records = 0u64;
    let mut split_records = Vec::new();
    let report = cloudtrail::decode_bytes("fuzz", data, &mut |r| {
        records += 1;
        let _ = (r.resource_arns(), r.account(), r.made_by_aws_for_caller());
        let _ = r.source.is_private();
        split_records.push(r);
    });
    // The one-pass delivery parser either gives up or gives exactly what the splitter gave,
    // with nothing for the splitter to report.
    let mut whole_records = Vec::new();
    if cloudtrail::delivery::parse_delivery(data, &mut whole_records) {
        assert!(
            whole_records == split_records && report.error_count() == 0 && report.skipped == 0,
            "the one-pass parser took a delivery the splitter reads differently: {report:?}"
        );
    }
    out.add(records.min(4).to_le_bytes())
        .add(report.skipped.min(4).to_le_bytes())
        .add(report.error_count().min(4).to_le_bytes());
    for e in report.errors.iter().take(3) {
        out.kind(&e.reason);
    }
    for n in &report.notes {
        out.add(n);
    }

    let mut whole = Collected::default();
    let _ = cloudtrail::split::split(data, &mut whole);
    let mut dribbled = Collected::default();
    // Reads of 1 to `step` bytes, a few dozen per input at most: each read costs the splitter
    // a 256 KiB buffer resize, and fuzzing speed matters more than one-byte reads of a big input.
    let step = 1 + (fnv(data) % 13) as usize + data.len() / 32;
    let _ = cloudtrail::split::split(
        Dribble {
            data,
            step,
            reads: 0,
        },
        &mut dribbled,
    );
    assert!(
        whole == dribbled,
        "the splitter's output depends on read boundaries: whole {whole:?}, dribbled {dribbled:?}"
    );

    if data.starts_with(&[0x1f, 0x8b]) {
        // A damaged gzip delivery: the error must come after the records before the damage.
        // Capped: a small input may be a large decompression.
        let gz = flate2::read::MultiGzDecoder::new(data).take(4 << 20);
        let mut got = Collected::default();
        out.add([u8::from(cloudtrail::split::split(gz, &mut got).is_ok())]);
    }
    out.done()
}

// ---------------------------------------------------------------------------------------
// Policies

fn allow_everything() -> &'static iam::Policy {
    static P: OnceLock<iam::Policy> = OnceLock::new();
    P.get_or_init(|| {
        iam::Policy::parse(concat!(
            r#"{"Version":"2012-10-17","#,
            r#""Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#
        ))
        .expect("the allow-everything policy parses")
    })
}

/// The requests every policy is evaluated against.
fn fixed_contexts() -> Vec<iam::RequestContext> {
    let mut out = Vec::new();
    let mut c = iam::RequestContext::new("s3:GetObject", "arn:aws:s3:::bucket/home/alice/key")
        .expect("valid action");
    c.add("aws:SourceIp", "203.0.113.5")
        .add("aws:PrincipalArn", "arn:aws:iam::111122223333:role/app")
        .add("aws:PrincipalAccount", "111122223333")
        .add("aws:username", "alice")
        .add("aws:userid", "AIDAEXAMPLE")
        .add("aws:CurrentTime", "2024-01-01T00:00:00Z")
        .add("aws:EpochTime", "1704067200")
        .add("aws:SecureTransport", "true")
        .add("aws:MultiFactorAuthAge", "300")
        .add("aws:PrincipalTag/team", "payments")
        .add("aws:TagKeys", "a")
        .add("aws:TagKeys", "b")
        .add("aws:SourceVpce", "vpce-1")
        .add("aws:SourceVpc", "vpc-2")
        .add("s3:prefix", "home/alice/");
    out.push(c);
    let mut c = iam::RequestContext::new("iam:PassRole", "arn:aws:iam::111122223333:role/x")
        .expect("valid action");
    c.add("iam:PassedToService", "ec2.amazonaws.com")
        .add("aws:SourceIp", "2001:db8::1")
        .add("aws:ViaAWSService", "false");
    out.push(c);
    out.push(iam::RequestContext::new("ec2:RunInstances", "*").expect("valid action"));
    out.push(iam::RequestContext::new("*", "").expect("valid action"));
    out
}

/// `action\nresource\nKEY=VALUE…` after a `\n--\n` line in the input.
fn fuzzed_context(text: &str) -> Option<iam::RequestContext> {
    let mut lines = text.lines();
    let action = lines.next()?;
    let resource = lines.next().unwrap_or("*");
    let mut ctx = iam::RequestContext::new(action, resource).ok()?;
    for pair in lines {
        let _ = ctx.add_pair(pair);
    }
    Some(ctx)
}

/// Parse the input as a policy (plain and URL-encoded), normalise it, and evaluate it in
/// every role a policy can play.
pub fn policy(data: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(data);
    let (doc, ctx_text) = match text.split_once("\n--\n") {
        Some((d, c)) => (d, Some(c)),
        None => (&*text, None),
    };
    let mut out = Outcome::default();
    let _ = iam::policy::decode_document(doc);
    let encoded = iam::Policy::parse_encoded(doc);
    let parsed = iam::Policy::parse(doc);
    let policy = match (parsed, encoded) {
        (Ok(p), _) | (Err(_), Ok(p)) => p,
        (Err(e), Err(_)) => {
            out.add("err").kind(&e.to_string());
            return out.done();
        }
    };
    let compact = policy.to_compact_json();
    let _ = policy.to_pretty_json();
    let again = iam::Policy::parse(&compact)
        .unwrap_or_else(|e| panic!("the normalised policy does not parse again: {e}: {compact}"));
    assert_eq!(
        again.to_compact_json(),
        compact,
        "normalising a normalised policy changed it"
    );
    out.add([u8::from(policy.variables_enabled())]);

    let mut contexts = fixed_contexts();
    contexts.extend(ctx_text.and_then(fuzzed_context));
    let me = iam::NamedPolicy {
        name: "fuzz",
        policy: &policy,
    };
    let all = iam::NamedPolicy {
        name: "allow-everything",
        policy: allow_everything(),
    };
    for ctx in &contexts {
        let alone = iam::PolicySet {
            identity: vec![me],
            ..Default::default()
        }
        .evaluate(ctx);
        let as_boundary = iam::PolicySet {
            identity: vec![all],
            boundary: Some(me),
            ..Default::default()
        }
        .evaluate(ctx);
        let beside = iam::PolicySet {
            identity: vec![all, me],
            ..Default::default()
        }
        .evaluate(ctx);
        let sets = [
            iam::PolicySet {
                identity: vec![all],
                session: vec![me],
                scp: vec![me],
                ..Default::default()
            },
            iam::PolicySet {
                resource: Some(me),
                ..Default::default()
            },
            iam::PolicySet {
                identity: vec![all],
                resource: Some(me),
                ..Default::default()
            },
        ];
        for s in &sets {
            out.add(format!("{:?}", s.evaluate(ctx).decision));
        }
        out.add(format!("{:?}{:?}", alone.decision, as_boundary.decision));
        // What the policy allows alone, it allows as a boundary of an allow-everything
        // identity; what it denies explicitly, it denies beside one.
        if alone.decision == iam::Decision::Allow {
            assert_eq!(
                as_boundary.decision,
                iam::Decision::Allow,
                "allowed alone but not as a boundary: {ctx:?}"
            );
        }
        if alone.decision == iam::Decision::ExplicitDeny {
            assert_eq!(
                beside.decision,
                iam::Decision::ExplicitDeny,
                "denied alone but not beside an allow: {ctx:?}"
            );
        }
    }
    out.done()
}

// ---------------------------------------------------------------------------------------
// JWT / JWKS

struct Idp {
    idp: broker::auth::testing::TestIdp,
    jwks: broker::auth::Jwks,
    /// A valid token for the test identity provider.
    token: String,
}

fn idp() -> &'static Idp {
    static IDP: OnceLock<Idp> = OnceLock::new();
    IDP.get_or_init(|| {
        let idp = broker::auth::testing::TestIdp::new("k1");
        let jwks = broker::auth::Jwks::parse(&idp.jwks).expect("the test JWKS parses");
        let token = idp.sign(
            serde_json::json!({"alg": "ES256", "kid": "k1"}),
            serde_json::json!({"iss": "https://idp.example", "aud": "credwarden",
                "exp": NOW + 600, "sub": "alice", "groups": ["payments"]}),
        );
        Idp { idp, jwks, token }
    })
}

const NOW: i64 = 1_700_000_000;

fn rules(user_claim: &str, delimiter: Option<&str>) -> broker::auth::JwtRules {
    broker::auth::JwtRules {
        issuer: "https://idp.example".into(),
        audience: "credwarden".into(),
        user_claim: user_claim.into(),
        groups_claim: "groups".into(),
        groups_delimiter: delimiter.map(str::to_owned),
        leeway_seconds: 60,
    }
}

/// The input as a JWKS, as a token, as a header and claims that the test identity provider
/// signs (so verification reaches the claims), and as a JWKS URL and group lists.
pub fn jwt(data: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(data);
    let idp = idp();
    let mut out = Outcome::default();
    let plain = rules("sub", None);

    match broker::auth::Jwks::parse(&text) {
        Ok(keys) => {
            out.add("jwks");
            if let Err(e) = broker::auth::verify_jwt(&idp.token, &keys, &plain, NOW) {
                out.kind(&e.to_string());
            }
            // An RS256 token with a made-up signature, against whatever RSA key was given.
            let rs = format!(
                "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.{}",
                "QUJD".repeat(1 + data.len() % 200)
            );
            if let Err(e) = broker::auth::verify_jwt(&rs, &keys, &plain, NOW) {
                out.kind(&e.to_string());
            }
        }
        Err(e) => {
            out.kind(&e.to_string());
        }
    }

    let result = broker::auth::verify_jwt(text.trim(), &idp.jwks, &plain, NOW);
    out.add(format!("{:?}", result.map(|c| c.user.len())));

    if let Some((header, claims)) = text.split_once('\n') {
        if let (Ok(h), Ok(c)) = (
            serde_json::from_str::<serde_json::Value>(header),
            serde_json::from_str::<serde_json::Value>(claims),
        ) {
            let token = idp.idp.sign(h, c);
            for (claim, delimiter) in [("sub", None), ("email", Some(",")), ("groups", Some(""))] {
                match broker::auth::verify_jwt(&token, &idp.jwks, &rules(claim, delimiter), NOW) {
                    Ok(caller) => out.add(format!("ok{}", caller.groups.len().min(3))),
                    Err(e) => out.kind(&e.to_string()),
                };
            }
        }
    }

    let first = text.lines().next().unwrap_or("");
    out.add([u8::from(broker::keyring::JwksSource::url(first).is_ok())]);
    let _ = broker::auth::split_groups(&text, ",");
    let _ = broker::auth::tag_groups(&text, None);
    let _ = broker::auth::tag_groups(&text, Some("+"));
    out.done()
}

// ---------------------------------------------------------------------------------------
// The metadata server and proxy

/// The secret key the test servers hand out; the ECS endpoint's path and token.
const SECRET: &str = "fuzzSECRETfuzzSECRETfuzzSECRET";
const ECS_PATH: &str = "/v2/credentials/fuzz";
const ECS_TOKEN: &str = "fuzz-ecs-token-0123456789";

struct Rig {
    rt: tokio::runtime::Runtime,
    v2: imds::serve::MetadataServer,
    v1: imds::serve::MetadataServer,
    proxy: imds::proxy::MetadataProxy,
}

thread_local! {
    static RIG: RefCell<Option<Rig>> = const { RefCell::new(None) };
}

fn serve_config(ec2: imds::serve::Ec2Access) -> imds::serve::ServeConfig {
    let mut cfg = imds::serve::ServeConfig::new("fuzz-role");
    cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.ec2 = ec2;
    cfg.role_arn = Some("arn:aws:iam::111122223333:role/fuzz-role".into());
    cfg.ecs = Some(imds::serve::EcsEndpoint {
        path: ECS_PATH.into(),
        authorization_token: ECS_TOKEN.into(),
    });
    cfg.max_tokens = 64;
    cfg
}

/// The servers, built once per thread. They are bound to loopback port 0 only because
/// `bind` is the one constructor; nothing ever connects: every input arrives through an
/// in-memory pipe. The proxy's upstream is a loopback port nothing listens on, so a request
/// the proxy lets through ends in a refused connection and a 502 without leaving the host.
fn build_rig() -> Rig {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(1);
    let (v2, v1, proxy) = rt.block_on(async {
        let now = credwarden_core::EventTime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        );
        let creds = imds::creds::Credentials {
            access_key_id: "ASIAFUZZFUZZFUZZFUZZ".into(),
            secret_access_key: SECRET.into(),
            session_token: Some("fuzz-session".into()),
            expiration: now.plus_millis(3_600_000),
            last_updated: now,
        };
        let source: Arc<dyn imds::creds::CredentialSource> =
            Arc::new(imds::creds::StaticSource(creds));
        let log: Arc<dyn imds::log::LogSink> = Arc::new(imds::log::NullLog);
        let v2 = imds::serve::MetadataServer::bind(
            serve_config(imds::serve::Ec2Access::V2),
            source.clone(),
            log.clone(),
        )
        .await
        .expect("bind the V2 server");
        let v1 = imds::serve::MetadataServer::bind(
            serve_config(imds::serve::Ec2Access::V1AndV2),
            source,
            log.clone(),
        )
        .await
        .expect("bind the V1 server");
        let cfg = imds::proxy::ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream: format!("http://127.0.0.1:{closed_port}"),
            user_data_user_agents: vec![imds::proxy::CLOUD_INIT_USER_AGENT.into()],
            allowed_peers: vec![credwarden_core::Cidr::parse("10.0.0.0/8").expect("a CIDR")],
            upstream_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let findings: Arc<dyn imds::log::FindingSink> = Arc::new(|_f: credwarden_core::Finding| {});
        let proxy = imds::proxy::MetadataProxy::bind(cfg, log, findings)
            .await
            .expect("bind the proxy");
        // Let the refreshers fetch the static credentials.
        tokio::time::sleep(Duration::from_millis(20)).await;
        (v2, v1, proxy)
    });
    Rig { rt, v2, v1, proxy }
}

/// Send `data` down an in-memory connection served by `serve`, read the answer to its end.
async fn exchange<F, Fut>(data: &[u8], serve: F) -> Vec<u8>
where
    F: FnOnce(tokio::io::DuplexStream) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (mut rx, mut tx) = tokio::io::split(client);
    let send = async move {
        let _ = tx.write_all(data).await;
        let _ = tx.shutdown().await;
    };
    let receive = async move {
        let mut answer = Vec::new();
        let _ = rx.read_to_end(&mut answer).await;
        answer
    };
    let ((), (), answer) = tokio::join!(serve(server), send, receive);
    answer
}

/// Status codes of the responses in `answer`, in order.
fn statuses(answer: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = answer;
    while let Some(i) = rest.windows(9).position(|w| w == b"HTTP/1.1 ") {
        out.extend_from_slice(rest.get(i + 9..i + 12).unwrap_or(b"???"));
        rest = &rest[i + 12.min(rest.len() - i)..];
    }
    out
}

/// An optional first byte 0x01..=0x04 chooses the peer; the rest is the raw request bytes.
fn peer_and_request(data: &[u8]) -> (SocketAddr, &[u8]) {
    let ip: IpAddr = match data.first() {
        Some(1) => [10, 1, 2, 3].into(),
        Some(2) => [192, 0, 2, 7].into(),
        Some(3) => std::net::Ipv6Addr::LOCALHOST.into(),
        Some(4) => [127, 0, 0, 2].into(),
        _ => return (SocketAddr::from(([127, 0, 0, 1], 40_000)), data),
    };
    (SocketAddr::new(ip, 40_000), &data[1..])
}

fn with_rig<T>(f: impl FnOnce(&Rig) -> T) -> T {
    RIG.with(|slot| {
        let mut slot = slot.borrow_mut();
        f(slot.get_or_insert_with(build_rig))
    })
}

/// Raw bytes to the metadata proxy, as if from a connection by a chosen peer.
pub fn imds_proxy(data: &[u8]) -> u64 {
    let (peer, request) = peer_and_request(data);
    let answer = with_rig(|rig| {
        rig.rt.block_on(exchange(request, |s| async move {
            let _ = rig.proxy.serve_stream(s, peer).await;
        }))
    });
    let mut out = Outcome::default();
    out.add(statuses(&answer))
        .add([data.first().copied().unwrap_or(0).min(5)]);
    out.done()
}

/// Raw bytes to `imds serve` (IMDSv2 only, or with an 0x01 first byte IMDSv1 as well); also
/// the input as `credential_process` output.
pub fn imds_serve(data: &[u8]) -> u64 {
    let _ = imds::creds::Credentials::from_process_json(data);
    let (v1, request) = match data.first() {
        Some(1) => (true, &data[1..]),
        _ => (false, data),
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
    let answer = with_rig(|rig| {
        let server = if v1 { &rig.v1 } else { &rig.v2 };
        rig.rt.block_on(exchange(request, |s| async move {
            let _ = server.serve_stream(s, peer).await;
        }))
    });
    // With IMDSv2 only, credentials need a session token (unknowable before the answer) or
    // the ECS endpoint's authorization token: without the latter in the request, no secret.
    if !v1 {
        let leaked = answer.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
        let has_ecs_token = request
            .windows(ECS_TOKEN.len())
            .any(|w| w == ECS_TOKEN.as_bytes());
        assert!(
            !leaked || has_ecs_token,
            "IMDSv2-only server handed out credentials without a token"
        );
    }
    let mut out = Outcome::default();
    out.add(statuses(&answer)).add([u8::from(v1)]);
    out.done()
}

// ---------------------------------------------------------------------------------------
// Configuration files

/// The input as a broker configuration (and the session policies it builds) and as
/// `credwarden.toml`.
pub fn config(data: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(data);
    let mut out = Outcome::default();
    match broker::config::parse(&text) {
        Ok(cfg) => {
            out.add("broker");
            for net in cfg.networks.iter().take(4) {
                for c in &net.clients {
                    out.add([u8::from(credwarden_core::Cidr::parse(c).is_some())]);
                }
                match broker::session_policy::build(&cfg, net) {
                    Ok(p) => {
                        let reparsed = iam::Policy::parse(&p);
                        assert!(
                            reparsed.is_ok(),
                            "a session policy the broker built does not parse: {p}"
                        );
                        out.add("policy");
                    }
                    Err(e) => {
                        out.kind(&e.to_string());
                    }
                }
            }
            if let broker::config::AuthConfig::Jwt {
                jwks_url: Some(u), ..
            } = &cfg.auth
            {
                out.add([u8::from(broker::keyring::JwksSource::url(u).is_ok())]);
            }
            if let broker::config::AuthConfig::Header {
                trusted_proxies, ..
            } = &cfg.auth
            {
                for p in trusted_proxies {
                    out.add([u8::from(credwarden_core::Cidr::parse(p).is_some())]);
                }
            }
        }
        Err(e) => {
            out.kind(&e.to_string());
        }
    }
    match toml::from_str::<crate::credwarden_config::Config>(&text) {
        Ok(cfg) => {
            out.add("credwarden");
            for c in &cfg.detect.egress_cidrs {
                out.add([u8::from(credwarden_core::Cidr::parse(c).is_some())]);
            }
        }
        Err(e) => {
            out.kind(&e.to_string());
        }
    }
    out.done()
}

/// Look a target up by name.
pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(proxy: bool, data: &[u8]) -> String {
        let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
        let bytes = with_rig(|rig| {
            rig.rt.block_on(exchange(data, |s| async move {
                let _ = if proxy {
                    rig.proxy.serve_stream(s, peer).await
                } else {
                    rig.v2.serve_stream(s, peer).await
                };
            }))
        });
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn the_rig_answers_like_the_real_servers() {
        let ecs = format!(
            "GET {ECS_PATH} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {ECS_TOKEN}\r\n\r\n"
        );
        let a = answer(false, ecs.as_bytes());
        assert!(a.starts_with("HTTP/1.1 200") && a.contains(SECRET), "{a}");
        let v1 = "GET /latest/meta-data/iam/security-credentials/fuzz-role HTTP/1.1\r\n\
                  Host: 169.254.169.254\r\n\r\n";
        assert!(answer(false, v1.as_bytes()).starts_with("HTTP/1.1 401"));
        let blocked = v1.replace("\r\n\r\n", "\r\nUser-Agent: curl/8.0\r\n\r\n");
        assert!(answer(true, blocked.as_bytes()).starts_with("HTTP/1.1 403"));
        let ordinary = "GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n";
        assert!(answer(true, ordinary.as_bytes()).starts_with("HTTP/1.1 502"));
        assert_eq!(
            statuses(b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 404 x"),
            b"200404"
        );
    }
}
