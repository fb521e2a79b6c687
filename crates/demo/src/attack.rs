//! The injected attacks: stolen instance credentials in seven variations, and what the
//! attackers do next — a permission-enumeration script that also sprays unused regions, a
//! read of the honey backup bucket, a Lambda function created to run as another team's admin
//! role — and a leaked CI key. Each writes its calls and its truth entries.

use credwarden_core::EventTime;

use crate::company::{ci_key, Company, Delivery, Fleet, InstanceIdentity, DEMO_CANARY_BUCKET};
use crate::delivery::{slot_time, SLOT_MS};
use crate::generate::Generator;
use crate::record::{Api, ApiError, Call, Caller, Origin, Place, UserKey, VpcEndpoint};
use crate::rng::Rng;
use crate::truth::{AttackLabel, CredentialUse, Novel, TruthEntry};
use crate::workload::UA_CLI;

/// The name of the SSRF thefts; the first one's credential runs the enumeration script.
const SSRF_CREDENTIAL_THEFT: &str = "ssrf-credential-theft";
/// The theft of a worker's sibling credential; it reads the honey bucket and passes a role.
const STOLEN_SIBLING_CREDENTIAL: &str = "stolen-sibling-credential";

const UA_ENUMERATE: &str = "Boto3/1.34.11 Python/3.11.8 Linux/6.5.0 Botocore/1.34.11 enumerate-iam";

/// Where an attacker calls from.
#[derive(Clone, Debug)]
pub(crate) struct Attacker {
    pub ip: String,
    /// A VPC endpoint in the attacker's own account.
    pub vpc_endpoint: Option<AttackerEndpoint>,
}

/// A VPC endpoint the attacker owns, which calls from inside AWS go through.
#[derive(Clone, Debug)]
pub(crate) struct AttackerEndpoint {
    pub id: String,
    pub account: String,
}

/// An instance's credential taken (by SSRF, from a snapshot, …) and used by an attacker.
#[derive(Clone, Debug)]
pub(crate) struct CredentialTheft {
    /// Index into the company's instances.
    pub instance: usize,
    /// Which of the instance's two sibling credentials is taken.
    pub credential: Delivery,
    pub attacker: Attacker,
    pub name: &'static str,
    pub description: &'static str,
    /// The credential taken, once the attack has run.
    pub stolen_key: Option<String>,
}

impl CredentialTheft {
    fn new(
        instance: usize,
        credential: Delivery,
        attacker: Attacker,
        name: &'static str,
        description: &'static str,
    ) -> CredentialTheft {
        CredentialTheft {
            instance,
            credential,
            attacker,
            name,
            description,
            stolen_key: None,
        }
    }
}

/// One injected attack.
#[derive(Clone, Debug)]
pub(crate) enum Attack {
    /// An instance's credential used from elsewhere: found by off-instance.
    CredentialTheft(CredentialTheft),
    /// An enumeration script run with the credential the named theft took, then a spray of
    /// unused regions: found by the burst detector.
    PermissionEnumeration { with: &'static str },
    /// The named theft's credential reads the honey backup bucket: found by the canary.
    HoneyBucketRead { with: &'static str },
    /// The named theft's credential creates a Lambda function running as another team's
    /// admin role: found by foreign-role-pass.
    ForeignRolePass { with: &'static str },
    /// The first account's CI key, leaked in a build log, used from a VPS: found by
    /// static-key.
    LeakedStaticKey,
}

/// An attack and the delivery slot it happens in.
#[derive(Clone, Debug)]
pub(crate) struct ScheduledAttack {
    pub slot: u64,
    pub attack: Attack,
}

/// The attacks, in the order they run when two share a slot. Draws the attackers' addresses
/// from a generator forked off `rng`, and makes one instance's credential predate the logs.
pub(crate) fn plan(company: &mut Company, rng: &mut Rng) -> Vec<ScheduledAttack> {
    let mut r = rng.fork(1);
    let outside = |r: &mut Rng, base: &str| format!("{base}.{}", r.below(250) + 2);
    let from = |ip: String| Attacker {
        ip,
        vpc_endpoint: None,
    };
    // A mid-stream credential: force this instance to predate the logs, so its first
    // credential's issuance is not in the data.
    let mid = company.find(2, Fleet::Web, 3);
    company.instances[mid].launch = slot_time(0).plus_millis(-20 * EventTime::MINUTE);
    let ssrf = "SSRF on a web instance: its credentials used from a VPS after the instance \
                locked its NAT";
    let thefts = [
        (
            26,
            CredentialTheft::new(
                company.find(0, Fleet::Web, 2),
                Delivery::V2,
                from(outside(&mut r, "185.220.101")),
                SSRF_CREDENTIAL_THEFT,
                ssrf,
            ),
        ),
        (
            36,
            CredentialTheft::new(
                company.find(4, Fleet::Worker, 1),
                Delivery::V1,
                from(outside(&mut r, "45.155.205")),
                STOLEN_SIBLING_CREDENTIAL,
                "the sibling credential (ec2RoleDelivery 1.0) the instance never uses, used \
                 by the attacker",
            ),
        ),
        (
            18,
            CredentialTheft::new(
                company.find(2, Fleet::Idle, 0),
                Delivery::V2,
                from(outside(&mut r, "91.243.44")),
                "idle-instance-first-user",
                "an idle instance's credentials, first ever used by the attacker (caught by \
                 the outside-AWS signal)",
            ),
        ),
        (
            48,
            CredentialTheft::new(
                company.find(1, Fleet::Web, 0),
                Delivery::V2,
                from(format!("3.216.{}.{}", r.below(250), r.below(250) + 2)),
                "attacker-inside-aws",
                "credentials replayed from the attacker's own EC2 instance (inside AWS's \
                 ranges)",
            ),
        ),
        (
            32,
            CredentialTheft::new(
                company.find(3, Fleet::Public, 0),
                Delivery::V2,
                Attacker {
                    ip: format!("172.31.{}.{}", r.below(250), r.below(250) + 2),
                    vpc_endpoint: Some(AttackerEndpoint {
                        id: format!("vpce-0{}", r.hex(16)),
                        account: "999988887777".into(),
                    }),
                },
                "attacker-vpc-endpoint",
                "credentials used through a VPC endpoint in the attacker's account",
            ),
        ),
        (
            3,
            CredentialTheft::new(
                mid,
                Delivery::V2,
                from(outside(&mut r, "185.107.56")),
                "mid-stream-credential",
                "a credential issued before the logs begin, used by the attacker",
            ),
        ),
        (
            60,
            CredentialTheft::new(
                company.find(0, Fleet::DualStack, 1),
                Delivery::V2,
                from(format!("2a01:4f8:c17:{:x}::2", r.below(0xfffe) + 1)),
                "ipv6-exfiltration",
                "a dual-stack instance's credentials used from an IPv6 address outside AWS",
            ),
        ),
        (
            66,
            CredentialTheft::new(
                company.find(3, Fleet::Web, 4),
                Delivery::V2,
                from(outside(&mut r, "193.42.33")),
                SSRF_CREDENTIAL_THEFT,
                ssrf,
            ),
        ),
    ];
    let mut plan: Vec<ScheduledAttack> = thefts
        .into_iter()
        .map(|(slot, theft)| ScheduledAttack {
            slot,
            attack: Attack::CredentialTheft(theft),
        })
        .collect();
    plan.extend([
        ScheduledAttack {
            slot: 28,
            attack: Attack::PermissionEnumeration {
                with: SSRF_CREDENTIAL_THEFT,
            },
        },
        ScheduledAttack {
            slot: 44,
            attack: Attack::LeakedStaticKey,
        },
        ScheduledAttack {
            slot: 40,
            attack: Attack::HoneyBucketRead {
                with: STOLEN_SIBLING_CREDENTIAL,
            },
        },
        ScheduledAttack {
            slot: 42,
            attack: Attack::ForeignRolePass {
                with: STOLEN_SIBLING_CREDENTIAL,
            },
        },
    ]);
    plan
}

/// One attacker call: the operation, and the error it gets, if any.
struct Step {
    api: Api<'static>,
    error: Option<ApiError<'static>>,
}

impl Step {
    /// A call that succeeds.
    const fn ok(source: &'static str, name: &'static str) -> Step {
        Step {
            api: Api::new(source, name),
            error: None,
        }
    }
}

/// An earlier theft's credential, as the attacker holding it uses it.
struct Stolen {
    key: String,
    ip: String,
    /// The instance's session (with its current credentials' issue time).
    identity: InstanceIdentity,
}

impl Stolen {
    /// What a finding on this credential names.
    fn used(&self) -> CredentialUse {
        CredentialUse {
            account: self.identity.account,
            region: self.identity.region.to_owned(),
            instance_id: self.identity.instance_id.clone(),
            access_key_id: self.key.clone(),
            source_ip: self.ip.clone(),
            vpc_endpoint: None,
        }
    }

    fn place(&self) -> Place<'static> {
        Place {
            account: self.identity.account,
            region: self.identity.region,
        }
    }
}

impl Generator {
    /// Run scheduled attack number `a`.
    pub(crate) fn run_attack(&mut self, a: usize) {
        match self.attacks[a].attack.clone() {
            Attack::CredentialTheft(theft) => self.credential_theft(a, theft),
            Attack::PermissionEnumeration { with } => self.enumeration(self.attacks[a].slot, with),
            Attack::HoneyBucketRead { with } => self.honey_bucket_read(self.attacks[a].slot, with),
            Attack::ForeignRolePass { with } => self.foreign_role_pass(self.attacks[a].slot, with),
            Attack::LeakedStaticKey => self.leaked_static_key(self.attacks[a].slot),
        }
    }

    /// The credential the first theft named `theft` took, if it has run.
    fn stolen(&self, theft: &str) -> Option<Stolen> {
        let t = self.attacks.iter().find_map(|a| match &a.attack {
            Attack::CredentialTheft(t) if t.name == theft => Some(t),
            _ => None,
        })?;
        Some(Stolen {
            key: t.stolen_key.clone()?,
            ip: t.attacker.ip.clone(),
            identity: self.company.identity(t.instance)?,
        })
    }

    /// The attacker tries the credential: whoami, listings, a denied IAM call, a secret
    /// listing and an object read, a minute or so apart.
    fn credential_theft(&mut self, a: usize, theft: CredentialTheft) {
        let slot = self.attacks[a].slot;
        let identity = self
            .company
            .identity(theft.instance)
            .expect("attacked instances are running");
        let key = self.company.instances[theft.instance]
            .credentials
            .as_ref()
            .expect("attacked instances are running")
            .key(theft.credential)
            .to_owned();
        let steps = [
            Step::ok("sts.amazonaws.com", "GetCallerIdentity"),
            Step::ok("s3.amazonaws.com", "ListBuckets"),
            Step {
                api: Api::new("iam.amazonaws.com", "ListUsers"),
                error: Some(ApiError {
                    code: "AccessDenied",
                    message: "User is not authorized to perform: iam:ListUsers",
                }),
            },
            Step::ok("ec2.amazonaws.com", "DescribeInstances"),
            Step::ok("secretsmanager.amazonaws.com", "ListSecrets"),
            Step::ok("s3.amazonaws.com", "GetObject"),
        ];
        let place = Place {
            account: identity.account,
            region: identity.region,
        };
        let vpc_endpoint = theft.attacker.vpc_endpoint.as_ref().map(|e| VpcEndpoint {
            id: &e.id,
            account: &e.account,
        });
        let mut first = None;
        let mut novel = Novel::default();
        for (i, Step { api, error }) in steps.into_iter().enumerate() {
            let time =
                slot_time(slot).plus_millis(i as i64 * 70_000 + self.rng.below(30_000) as i64);
            first.get_or_insert(time);
            let ids = self.fresh_ids();
            let session = identity.session(&key, theft.credential);
            let ua = format!("{UA_CLI} command/{}", api.name.to_ascii_lowercase());
            let origin = Origin {
                vpc_endpoint,
                ..Origin::new(&theft.attacker.ip, &ua)
            };
            let call = Call::new(time, api, place, Caller::Role(session), origin, &ids)
                .read_only(true)
                .request("{}")
                .error(error);
            novel |= self.emit(&call);
        }
        if let Attack::CredentialTheft(t) = &mut self.attacks[a].attack {
            t.stolen_key = Some(key.clone());
        }
        let label = AttackLabel {
            attack: theft.name,
            detector: detect::off_instance::NAME,
            description: theft.description,
        };
        let used = CredentialUse {
            account: identity.account,
            region: identity.region.to_owned(),
            instance_id: identity.instance_id.clone(),
            access_key_id: key,
            source_ip: theft.attacker.ip,
            vpc_endpoint: theft.attacker.vpc_endpoint.map(|e| e.id),
        };
        self.truth
            .push(TruthEntry::attack(label, used, first.expect("steps")));
        self.expect_novelty(novel);
    }

    /// The attacker behind the first SSRF runs an enumeration script with the stolen
    /// credential (still valid, even if the instance has refreshed since): dozens of calls
    /// across services, most denied, in two minutes.
    fn enumeration(&mut self, slot: u64, with: &str) {
        let Some(stolen) = self.stolen(with) else {
            return;
        };
        const PROBES: &[Api<'static>] = &[
            Api::new("iam.amazonaws.com", "ListUsers"),
            Api::new("iam.amazonaws.com", "ListRoles"),
            Api::new("iam.amazonaws.com", "ListPolicies"),
            Api::new("iam.amazonaws.com", "GetAccountAuthorizationDetails"),
            Api::new("s3.amazonaws.com", "ListBuckets"),
            Api::new("ec2.amazonaws.com", "DescribeSnapshots"),
            Api::new("ec2.amazonaws.com", "DescribeVolumes"),
            Api::new("rds.amazonaws.com", "DescribeDBInstances"),
            Api::new("lambda.amazonaws.com", "ListFunctions20150331"),
            Api::new("secretsmanager.amazonaws.com", "ListSecrets"),
            Api::new("kms.amazonaws.com", "ListKeys"),
            Api::new("dynamodb.amazonaws.com", "ListTables"),
            Api::new("sns.amazonaws.com", "ListTopics"),
            Api::new("organizations.amazonaws.com", "DescribeOrganization"),
            Api::new("cloudtrail.amazonaws.com", "DescribeTrails"),
            Api::new("guardduty.amazonaws.com", "ListDetectors"),
        ];
        let session = stolen.identity.session(&stolen.key, Delivery::V2);
        let origin = Origin::new(&stolen.ip, UA_ENUMERATE);
        let mut first = None;
        let mut novel = Novel::default();
        for (i, api) in PROBES.iter().cycle().take(40).enumerate() {
            let time = slot_time(slot).plus_millis(i as i64 * 3_000 + self.rng.below(2_000) as i64);
            first.get_or_insert(time);
            let code = match api.source {
                "ec2.amazonaws.com" => "Client.UnauthorizedOperation",
                "s3.amazonaws.com" | "iam.amazonaws.com" | "sns.amazonaws.com" => "AccessDenied",
                _ => "AccessDeniedException",
            };
            let error = (api.name != "ListBuckets").then_some(ApiError {
                code,
                message: "not authorized to perform this operation",
            });
            let ids = self.fresh_ids();
            let call = Call::new(
                time,
                *api,
                stolen.place(),
                Caller::Role(session),
                origin,
                &ids,
            )
            .read_only(true)
            .request("{}")
            .error(error);
            novel |= self.emit(&call);
        }
        // ... and sprays regions the company never uses, looking for forgotten resources.
        let sprayed = ["eu-north-1", "ap-south-1", "sa-east-1", "me-south-1"];
        for (i, region) in sprayed.into_iter().enumerate() {
            let time = slot_time(slot).plus_millis(125_000 + i as i64 * 2_000);
            let ids = self.fresh_ids();
            let place = Place {
                region,
                ..stolen.place()
            };
            let api = Api::new("ec2.amazonaws.com", "DescribeInstances");
            let call = Call::new(time, api, place, Caller::Role(session), origin, &ids)
                .read_only(true)
                .request("{}")
                .error(Some(ApiError {
                    code: "Client.UnauthorizedOperation",
                    message: "You are not authorized to perform this operation.",
                }));
            novel |= self.emit(&call);
        }
        let label = AttackLabel {
            attack: "permission-enumeration",
            detector: detect::burst::NAME,
            description: "an enumeration script run with the stolen credential: 40 calls \
                          across 16 services in two minutes, most denied",
        };
        self.truth.push(TruthEntry::attack(
            label,
            stolen.used(),
            first.expect("probes"),
        ));
        self.expect_novelty(novel);
    }

    /// The attacker holding the stolen sibling credential tries the company's old backup
    /// bucket — a canary nobody legitimate touches.
    fn honey_bucket_read(&mut self, slot: u64, with: &str) {
        let Some(stolen) = self.stolen(with) else {
            return;
        };
        let time = slot_time(slot).plus_millis(self.rng.below(SLOT_MS as u64 / 2) as i64);
        let ids = self.fresh_ids();
        let object = format!("{DEMO_CANARY_BUCKET}/db/prod-dump-2019-11.sql.gz");
        let request = format!(
            r#"{{"bucketName":"{}","key":"db/prod-dump-2019-11.sql.gz"}}"#,
            DEMO_CANARY_BUCKET.trim_start_matches("arn:aws:s3:::")
        );
        let session = stolen.identity.session(&stolen.key, Delivery::V1);
        let api = Api::new("s3.amazonaws.com", "GetObject");
        let origin = Origin::new(&stolen.ip, UA_CLI);
        let resources = [object.as_str(), DEMO_CANARY_BUCKET];
        let call = Call::new(
            time,
            api,
            stolen.place(),
            Caller::Role(session),
            origin,
            &ids,
        )
        .read_only(true)
        .request(&request)
        .resources(&resources);
        let novel = self.emit(&call);
        let label = AttackLabel {
            attack: "honey-bucket-read",
            detector: detect::canary::NAME,
            description: "the stolen credential reads the old backup bucket, a canary",
        };
        self.truth
            .push(TruthEntry::attack(label, stolen.used(), time));
        self.expect_novelty(novel);
    }

    /// The attacker holding the worker's sibling credential creates a Lambda function that
    /// runs as the platform team's admin-automation role: privilege escalation by PassRole.
    fn foreign_role_pass(&mut self, slot: u64, with: &str) {
        let Some(stolen) = self.stolen(with) else {
            return;
        };
        let time = slot_time(slot).plus_millis(self.rng.below(SLOT_MS as u64 / 2) as i64);
        let ids = self.fresh_ids();
        let admin = format!(
            "arn:aws:iam::{}:role/data-admin-automation",
            stolen.identity.account
        );
        let request = format!(
            concat!(
                r#"{{"functionName":"log-rotate","runtime":"python3.12","role":"{}","#,
                r#""handler":"index.handler","timeout":900}}"#
            ),
            admin
        );
        let session = stolen.identity.session(&stolen.key, Delivery::V1);
        let api = Api::new("lambda.amazonaws.com", "CreateFunction20150331");
        let origin = Origin::new(&stolen.ip, UA_CLI);
        let call = Call::new(
            time,
            api,
            stolen.place(),
            Caller::Role(session),
            origin,
            &ids,
        )
        .request(&request);
        let novel = self.emit(&call);
        let label = AttackLabel {
            attack: "foreign-role-pass",
            detector: detect::foreign_role::NAME,
            description: "the stolen worker credential creates a Lambda function running as \
                          the platform's admin role",
        };
        self.truth
            .push(TruthEntry::attack(label, stolen.used(), time));
        self.expect_novelty(novel);
    }

    /// The first account's CI key leaks (a build log) and is used from a VPS.
    fn leaked_static_key(&mut self, slot: u64) {
        let account = self.company.accounts[0].id;
        let key = ci_key(0);
        let ip = format!("45.137.21.{}", self.rng.below(250) + 2);
        let steps = [
            Api::new("sts.amazonaws.com", "GetCallerIdentity"),
            Api::new("s3.amazonaws.com", "ListBuckets"),
            Api::new("s3.amazonaws.com", "GetObject"),
            Api::new("s3.amazonaws.com", "GetObject"),
        ];
        let caller = Caller::User(UserKey {
            account,
            user: "ci-deployer",
            user_id: "AIDACIDEPLOYEREXAMPLE",
            key: &key,
        });
        let place = Place {
            account,
            region: "us-east-1",
        };
        let mut first = None;
        let mut novel = Novel::default();
        for (i, api) in steps.into_iter().enumerate() {
            let time =
                slot_time(slot).plus_millis(i as i64 * 45_000 + self.rng.below(10_000) as i64);
            first.get_or_insert(time);
            let ids = self.fresh_ids();
            let call = Call::new(time, api, place, caller, Origin::new(&ip, UA_CLI), &ids)
                .read_only(true)
                .request("{}");
            novel |= self.emit(&call);
        }
        let label = AttackLabel {
            attack: "leaked-static-key",
            detector: detect::static_key::NAME,
            description: "the CI user's long-lived key, leaked in a build log, used from a VPS",
        };
        let used = CredentialUse {
            account,
            region: "us-east-1".to_owned(),
            instance_id: "-".to_owned(),
            access_key_id: key,
            source_ip: ip,
            vpc_endpoint: None,
        };
        self.truth
            .push(TruthEntry::attack(label, used, first.expect("calls")));
        self.expect_novelty(novel);
    }
}
