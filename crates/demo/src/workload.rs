//! The company's benign traffic: instance fleets launching, getting and refreshing
//! credentials and calling AWS (through the NAT, a VPC endpoint, their own public or IPv6
//! address), and around them ECS tasks, Lambda functions, console users whose clicks fan
//! out across regions, a CI user with a static key, AWS services calling on principals'
//! behalf (`AWS Internal`, `invokedBy`) and an operator moving an Elastic IP.

use credwarden_core::EventTime;

use crate::company::{ci_key, Delivery, Fleet, InstanceCredentials, CI_RUNNER_IP};
use crate::delivery::slot_time;
use crate::generate::Generator;
use crate::record::{
    sts_expiration, Api, ApiError, Call, Caller, Origin, Place, RecordIds, RoleSession, UserKey,
    VpcEndpoint,
};
use crate::rng::Rng;

pub(crate) const UA_JAVA: &str = concat!(
    "aws-sdk-java/2.20.162 Linux/5.10.205-195.807.amzn2.x86_64 ",
    "OpenJDK_64-Bit_Server_VM/17.0.9+8-LTS Java/17.0.9 vendor/Amazon.com_Inc. io/sync ",
    "http/Apache cfg/retry-mode/legacy"
);
pub(crate) const UA_BOTO: &str = concat!(
    "Boto3/1.34.11 md/Botocore#1.34.11 ua/2.0 os/linux#5.10.205-195.807.amzn2.x86_64 ",
    "md/arch#x86_64 lang/python#3.11.6 md/pyimpl#CPython cfg/retry-mode#legacy ",
    "Botocore/1.34.11"
);
pub(crate) const UA_GO: &str = concat!(
    "aws-sdk-go-v2/1.24.0 os/linux lang/go#1.21.5 md/GOOS#linux md/GOARCH#amd64 ",
    "api/dynamodb#1.26.6"
);
pub(crate) const UA_SSM: &str =
    "aws-sdk-go/1.44.260 (go1.20.11; linux; amd64) amazon-ssm-agent/3.2.1705.0";
pub(crate) const UA_CONSOLE: &str = concat!(
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 ",
    "(KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36"
);
pub(crate) const UA_CLI: &str =
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1014-aws exe/x86_64.ubuntu.22 prompt/off";
pub(crate) const UA_CI: &str = concat!(
    "aws-cli/2.13.0 Python/3.11.4 Linux/5.15.0-1051-azure exe/x86_64.ubuntu.22 prompt/off ",
    "command/cloudformation.deploy"
);

/// One kind of call an instance makes.
struct Action {
    api: Api<'static>,
    read_only: bool,
    request: &'static str,
    /// The service has a gateway endpoint: the call may go through the VPC endpoint.
    endpoint_ok: bool,
}

const WEB_ACTIONS: &[Action] = &[
    Action {
        api: Api::new("s3.amazonaws.com", "GetObject"),
        read_only: true,
        request: concat!(
            r#"{"bucketName":"corp-web-assets","key":"static/app.js","#,
            r#""Host":"corp-web-assets.s3.amazonaws.com"}"#
        ),
        endpoint_ok: true,
    },
    Action {
        api: Api::new("dynamodb.amazonaws.com", "GetItem"),
        read_only: true,
        request: concat!(
            r#"{"tableName":"sessions","key":{"pk":"HIDDEN_DUE_TO_SECURITY_REASONS"},"#,
            r#""consistentRead":false}"#
        ),
        endpoint_ok: true,
    },
    Action {
        api: Api::new("kms.amazonaws.com", "Decrypt"),
        read_only: true,
        request: r#"{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{"app":"web"}}"#,
        endpoint_ok: false,
    },
    Action {
        api: Api::new("sqs.amazonaws.com", "SendMessage"),
        read_only: false,
        request: concat!(
            r#"{"queueUrl":"https://sqs.amazonaws.com/queue/jobs","#,
            r#""messageBody":"HIDDEN_DUE_TO_SECURITY_REASONS"}"#
        ),
        endpoint_ok: false,
    },
    Action {
        api: Api::new("secretsmanager.amazonaws.com", "GetSecretValue"),
        read_only: true,
        request: r#"{"secretId":"web/db-password"}"#,
        endpoint_ok: false,
    },
    Action {
        api: Api::new("monitoring.amazonaws.com", "PutMetricData"),
        read_only: false,
        request: concat!(
            r#"{"namespace":"Web","#,
            r#""metricData":[{"metricName":"Latency","unit":"Milliseconds"}]}"#
        ),
        endpoint_ok: false,
    },
];
const WORKER_ACTIONS: &[Action] = &[
    Action {
        api: Api::new("sqs.amazonaws.com", "ReceiveMessage"),
        read_only: true,
        request: concat!(
            r#"{"queueUrl":"https://sqs.amazonaws.com/queue/jobs","maxNumberOfMessages":10,"#,
            r#""waitTimeSeconds":20}"#
        ),
        endpoint_ok: false,
    },
    Action {
        api: Api::new("sqs.amazonaws.com", "DeleteMessage"),
        read_only: false,
        request: r#"{"queueUrl":"https://sqs.amazonaws.com/queue/jobs","receiptHandle":"HIDDEN"}"#,
        endpoint_ok: false,
    },
    Action {
        api: Api::new("s3.amazonaws.com", "PutObject"),
        read_only: false,
        request: concat!(
            r#"{"bucketName":"corp-job-results","key":"results/part-0001.parquet","#,
            r#""Host":"corp-job-results.s3.amazonaws.com"}"#
        ),
        endpoint_ok: true,
    },
    Action {
        api: Api::new("dynamodb.amazonaws.com", "UpdateItem"),
        read_only: false,
        request: r#"{"tableName":"jobs","key":{"pk":"HIDDEN_DUE_TO_SECURITY_REASONS"}}"#,
        endpoint_ok: true,
    },
];
/// The SSM agent's heartbeat, made with the instance's 1.0 credential.
const SSM_ACTION: Action = Action {
    api: Api::new("ssm.amazonaws.com", "UpdateInstanceInformation"),
    read_only: false,
    request: concat!(
        r#"{"agentVersion":"3.2.1705.0","agentStatus":"Active","platformType":"Linux","#,
        r#""platformName":"Amazon Linux","platformVersion":"2023"}"#
    ),
    endpoint_ok: false,
};
/// What a console page load calls.
const CONSOLE_ACTIONS: &[Api<'static>] = &[
    Api::new("ec2.amazonaws.com", "DescribeInstances"),
    Api::new("ec2.amazonaws.com", "DescribeSecurityGroups"),
    Api::new("ec2.amazonaws.com", "DescribeVpcs"),
    Api::new("ec2.amazonaws.com", "DescribeAddresses"),
    Api::new("cloudwatch.amazonaws.com", "DescribeAlarms"),
    Api::new("monitoring.amazonaws.com", "GetMetricData"),
    Api::new("health.amazonaws.com", "DescribeEventAggregates"),
    Api::new(
        "elasticloadbalancing.amazonaws.com",
        "DescribeLoadBalancers",
    ),
    Api::new("autoscaling.amazonaws.com", "DescribeAutoScalingGroups"),
    Api::new("s3.amazonaws.com", "ListBuckets"),
    Api::new("iam.amazonaws.com", "ListRoles"),
    Api::new("lambda.amazonaws.com", "ListFunctions20150331"),
];

/// The company's traffic besides its instances, one call at a time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    /// ECS tasks: task-role credentials (session = task id), calls via the NAT.
    EcsTask,
    /// Lambda: per-function credentials, calls from Lambda's (AWS) addresses that vary per
    /// call.
    LambdaFunction,
    /// Console users browsing: one click fans out across services and regions.
    ConsoleUser,
    /// CI deploys with a static key.
    CiDeploy,
}

impl Workload {
    /// The workload of the next call: 30 % ECS, 20 % Lambda, 30 % console, 20 % CI.
    fn pick(rng: &mut Rng) -> Workload {
        match rng.below(10) {
            0..=2 => Workload::EcsTask,
            3..=4 => Workload::LambdaFunction,
            5..=7 => Workload::ConsoleUser,
            _ => Workload::CiDeploy,
        }
    }
}

impl Generator {
    /// EC2 issues an instance its two sibling credentials (`AssumeRole` by the EC2 service,
    /// once per credential).
    pub(crate) fn issue_instance_credentials(&mut self, ix: usize, at: EventTime) {
        let (v1_key, v2_key) = (self.rng.key_id("ASIA"), self.rng.key_id("ASIA"));
        let inst = &self.company.instances[ix];
        let network = self.company.network_of(ix);
        let account = self.company.account_of(ix);
        let role_arn = format!("arn:aws:iam::{account}:role/{}", inst.role);
        let request_id = self.rng.uuid();
        let place = Place {
            account,
            region: network.region,
        };
        let (id, role, role_id) = (inst.id.clone(), inst.role.clone(), inst.role_id.clone());
        for key in [&v1_key, &v2_key] {
            let token = format!("IQoJb3JpZ2luX2VjE{}", self.rng.alnum(180));
            let expiration = sts_expiration(at.plus_millis(6 * EventTime::HOUR));
            let response = format!(
                concat!(
                    r#"{{"credentials":{{"accessKeyId":"{key}","sessionToken":"{token}","#,
                    r#""expiration":"{expiration}"}},"assumedRoleUser":{{"#,
                    r#""assumedRoleId":"{role_id}:{id}","#,
                    r#""arn":"arn:aws:sts::{account}:assumed-role/{role}/{id}"}}}}"#
                ),
                key = key,
                token = token,
                expiration = expiration,
                role_id = role_id,
                id = id,
                account = account,
                role = role,
            );
            let request = format!(r#"{{"roleArn":"{role_arn}","roleSessionName":"{id}"}}"#);
            let ids = RecordIds {
                event_id: self.rng.uuid(),
                request_id: request_id.clone(),
            };
            let ec2 = "ec2.amazonaws.com";
            let caller = Caller::Service { invoked_by: ec2 };
            let api = Api::new("sts.amazonaws.com", "AssumeRole");
            let call = Call::new(at, api, place, caller, Origin::new(ec2, ec2), &ids)
                .read_only(true)
                .request(&request)
                .response(&response);
            self.emit(&call);
        }
        self.company.instances[ix].credentials = Some(InstanceCredentials {
            v1_key,
            v2_key,
            created: at,
        });
    }

    /// An instance starts: Auto Scaling's `RunInstances`, then its first credentials. An
    /// instance running before the logs begin just has credentials.
    pub(crate) fn launch(&mut self, ix: usize) {
        self.company.instances[ix].launched = true;
        let launch = self.company.instances[ix].launch;
        if launch < slot_time(0) {
            // Running before the logs begin: credentials exist, their issuance is not in
            // the data.
            let (v1_key, v2_key) = (self.rng.key_id("ASIA"), self.rng.key_id("ASIA"));
            let inst = &mut self.company.instances[ix];
            inst.credentials = Some(InstanceCredentials {
                v1_key,
                v2_key,
                created: launch,
            });
            inst.next_refresh = launch.plus_millis(EventTime::HOUR);
            return;
        }
        let inst = &self.company.instances[ix];
        let account = self.company.account_of(ix);
        let place = Place {
            account,
            region: self.company.network_of(ix).region,
        };
        let request = format!(
            concat!(
                r#"{{"instancesSet":{{"items":[{{"imageId":"ami-0c101f26f147fa7fd","#,
                r#""minCount":1,"maxCount":1}}]}},"instanceType":"m6i.large","#,
                r#""iamInstanceProfile":{{"arn":"arn:aws:iam::{}:instance-profile/{}"}}}}"#
            ),
            account, inst.role
        );
        let response = format!(
            r#"{{"instancesSet":{{"items":[{{"instanceId":"{}","privateIpAddress":"{}"}}]}}}}"#,
            inst.id, inst.private_ip
        );
        let ids = self.fresh_ids();
        let autoscaling = "autoscaling.amazonaws.com";
        let caller = Caller::Role(RoleSession {
            account,
            role: "AWSServiceRoleForAutoScaling",
            role_id: "AROAAUTOSCALINGSERVICE",
            session: "AutoScaling",
            key: "ASIAAUTOSCALINGINTERNAL",
            created: launch.plus_millis(-EventTime::HOUR),
            invoked_by: Some(autoscaling),
            ..Default::default()
        });
        let api = Api::new("ec2.amazonaws.com", "RunInstances");
        let origin = Origin::new(autoscaling, autoscaling);
        let call = Call::new(
            launch.plus_millis(-30_000),
            api,
            place,
            caller,
            origin,
            &ids,
        )
        .request(&request)
        .response(&response);
        self.emit(&call);
        self.issue_instance_credentials(ix, launch);
        self.company.instances[ix].next_refresh = launch.plus_millis(EventTime::HOUR);
    }

    /// One call by an instance's application (or its SSM agent), and now and then the KMS
    /// `Decrypt` S3 makes on its behalf.
    pub(crate) fn instance_call(&mut self, ix: usize, time: EventTime) {
        let inst = &self.company.instances[ix];
        let network = self.company.network_of(ix);
        let account = self.company.account_of(ix);
        let credentials = inst
            .credentials
            .as_ref()
            .expect("launched instances have credentials");
        let ssm_turn = inst.fleet == Fleet::Web && self.rng.chance(0.15);
        let action = if ssm_turn {
            &SSM_ACTION
        } else if inst.fleet == Fleet::Worker {
            self.rng.pick(WORKER_ACTIONS)
        } else {
            self.rng.pick(WEB_ACTIONS)
        };
        let (delivery, ua) = if ssm_turn {
            (Delivery::V1, UA_SSM)
        } else {
            (Delivery::V2, *self.rng.pick(&[UA_JAVA, UA_BOTO, UA_GO]))
        };
        let key = credentials.key(delivery).to_owned();
        let through_endpoint =
            action.endpoint_ok && inst.fleet != Fleet::Public && self.rng.chance(0.6);
        let ip = if through_endpoint {
            inst.private_ip.clone()
        } else {
            match inst.fleet {
                Fleet::Public => inst.public_ip.clone(),
                Fleet::DualStack if self.rng.chance(0.5) => inst.v6.clone(),
                _ if !inst.nat_used => network.nat[inst.first_nat].clone(),
                _ => self.rng.pick(&network.nat).clone(),
            }
        };
        let vpc_endpoint_id = network.vpc_endpoint.clone();
        let place = Place {
            account,
            region: network.region,
        };
        let identity = self.company.identity(ix).expect("launched");
        let ids = self.fresh_ids();
        let session = identity.session(&key, delivery);
        let origin = Origin {
            vpc_endpoint: through_endpoint.then_some(VpcEndpoint {
                id: &vpc_endpoint_id,
                account,
            }),
            ..Origin::new(&ip, ua)
        };
        let call = Call::new(time, action.api, place, Caller::Role(session), origin, &ids)
            .read_only(action.read_only)
            .request(action.request);
        self.emit(&call);
        let inst = &mut self.company.instances[ix];
        if !through_endpoint
            && matches!(inst.fleet, Fleet::Web | Fleet::Worker | Fleet::DualStack)
            && !ip.contains(':')
        {
            inst.nat_used = true;
        }
        // S3 with SSE-KMS: KMS logs a Decrypt that S3 made on the caller's behalf.
        if action.api.source == "s3.amazonaws.com" && self.rng.chance(0.3) {
            let (event_id, internal) = (self.rng.uuid(), self.rng.chance(0.5));
            let ids = RecordIds { event_id, ..ids };
            let caller = Caller::Role(RoleSession {
                invoked_by: (!internal).then_some("s3.amazonaws.com"),
                ..session
            });
            let ip = if internal {
                "AWS Internal"
            } else {
                "s3.amazonaws.com"
            };
            let api = Api::new("kms.amazonaws.com", "Decrypt");
            let call = Call::new(time, api, place, caller, Origin::new(ip, ip), &ids)
                .read_only(true)
                .request(concat!(
                    r#"{"encryptionContext":{"#,
                    r#""aws:s3:arn":"arn:aws:s3:::corp-web-assets/static/app.js"},"#,
                    r#""encryptionAlgorithm":"SYMMETRIC_DEFAULT"}"#
                ));
            self.emit(&call);
        }
    }

    /// `budget` calls of the company's other workloads in slot `slot`, spread over the
    /// accounts.
    pub(crate) fn background(&mut self, slot: u64, budget: u64) {
        let accounts: Vec<(&'static str, Vec<usize>)> = self
            .company
            .accounts
            .iter()
            .map(|a| (a.id, a.networks.clone()))
            .collect();
        for n in 0..budget {
            let account_ix = (n as usize + slot as usize) % accounts.len();
            let (account, networks) = &accounts[account_ix];
            let network = networks[self.rng.below(networks.len() as u64) as usize];
            let network = &self.company.networks[network];
            let (region, nat) = (network.region, network.nat.clone());
            let time = self.time_in_slot(slot);
            let ids = self.fresh_ids();
            let created = slot_time(slot).plus_millis(-20 * EventTime::MINUTE);
            let place = Place { account, region };
            match Workload::pick(&mut self.rng) {
                Workload::EcsTask => {
                    let task = format!("{:032x}", (slot / 12) * 7 + (n % 5));
                    let key = format!("ASIAECSTASK{:09}", (slot / 12) * 10 + (n % 5));
                    let ip = self.rng.pick(&nat).clone();
                    let caller = Caller::Role(RoleSession {
                        account,
                        role: "orders-api-task",
                        role_id: "AROAECSTASKROLEEXAMPLE",
                        session: &task,
                        key: &key,
                        created,
                        ..Default::default()
                    });
                    let api = Api::new("dynamodb.amazonaws.com", "Query");
                    let call = Call::new(time, api, place, caller, Origin::new(&ip, UA_GO), &ids)
                        .read_only(true)
                        .request(r#"{"tableName":"orders","keyConditionExpression":"pk = :pk"}"#);
                    self.emit(&call);
                }
                Workload::LambdaFunction => {
                    let function =
                        *self
                            .rng
                            .pick(&["thumbnailer", "audit-forwarder", "nightly-report"]);
                    let key = format!("ASIALAMBDA{:010}", (slot / 12) * 3 + n % 3);
                    let ip = format!(
                        "3.{}.{}.{}",
                        208 + self.rng.below(16),
                        self.rng.below(256),
                        self.rng.below(254) + 1
                    );
                    let caller = Caller::Role(RoleSession {
                        account,
                        role: function,
                        role_id: "AROALAMBDAEXECUTIONEX",
                        session: function,
                        key: &key,
                        created,
                        ..Default::default()
                    });
                    let api = Api::new("s3.amazonaws.com", "PutObject");
                    let origin = Origin::new(&ip, UA_BOTO);
                    let call = Call::new(time, api, place, caller, origin, &ids)
                        .request(r#"{"bucketName":"corp-reports","key":"out.json"}"#);
                    self.emit(&call);
                }
                Workload::ConsoleUser => {
                    let user = *self.rng.pick(&[
                        "alice@corp.example",
                        "bob@corp.example",
                        "carol@corp.example",
                    ]);
                    let key = format!("ASIACONSOLE{:09}", (slot / 24) * 3 + n % 3);
                    let ip = format!("198.51.100.{}", 10 + self.rng.below(5));
                    let api = *self.rng.pick(CONSOLE_ACTIONS);
                    let regions = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"];
                    let region = *self.rng.pick(&regions);
                    // Read-only users are now and then denied a page's call: scattered noise
                    // that must not look like enumeration.
                    let error = self.rng.chance(0.01).then_some(ApiError {
                        code: "AccessDenied",
                        message: "User is not authorized to perform this action",
                    });
                    let caller = Caller::Role(RoleSession {
                        account,
                        role: "AWSReservedSSO_ReadOnly_5f2e9c1a",
                        role_id: "AROACONSOLEREADONLYEX",
                        session: user,
                        key: &key,
                        created,
                        console: true,
                        ..Default::default()
                    });
                    let place = Place { account, region };
                    let origin = Origin::new(&ip, UA_CONSOLE);
                    let call = Call::new(time, api, place, caller, origin, &ids)
                        .read_only(true)
                        .request("{}")
                        .error(error);
                    self.emit(&call);
                }
                Workload::CiDeploy => {
                    let key = ci_key(account_ix);
                    let caller = Caller::User(UserKey {
                        account,
                        user: "ci-deployer",
                        user_id: "AIDACIDEPLOYEREXAMPLE",
                        key: &key,
                    });
                    let api = Api::new("cloudformation.amazonaws.com", "DescribeStacks");
                    let origin = Origin::new(CI_RUNNER_IP, UA_CI);
                    let call = Call::new(time, api, place, caller, origin, &ids)
                        .read_only(true)
                        .request(r#"{"stackName":"web-frontend"}"#);
                    self.emit(&call);
                }
            }
        }
    }

    /// An operator moves an Elastic IP onto an instance: its public address changes, which
    /// the detector must accept.
    pub(crate) fn move_elastic_ip(&mut self, slot: u64) {
        let ix = self.company.find(0, Fleet::Public, 1);
        let time = self.time_in_slot(slot);
        let new_ip = format!(
            "54.{}.{}.{}",
            144 + self.rng.below(16),
            self.rng.below(256),
            self.rng.below(254) + 1
        );
        let account = self.company.account_of(ix);
        let request = format!(
            r#"{{"instanceId":"{}","allocationId":"eipalloc-0{}","allowReassociation":true}}"#,
            self.company.instances[ix].id,
            self.rng.hex(16)
        );
        let ids = self.fresh_ids();
        let caller = Caller::Role(RoleSession {
            account,
            role: "AWSReservedSSO_Operator_7a1b2c3d",
            role_id: "AROACONSOLEOPERATOREX",
            session: "dave@corp.example",
            key: "ASIACONSOLEDAVE00001",
            created: time,
            console: true,
            ..Default::default()
        });
        let place = Place {
            account,
            region: self.company.network_of(ix).region,
        };
        let api = Api::new("ec2.amazonaws.com", "AssociateAddress");
        let origin = Origin::new("198.51.100.14", UA_CONSOLE);
        let call = Call::new(time, api, place, caller, origin, &ids)
            .request(&request)
            .response(r#"{"_return":true}"#);
        self.emit(&call);
        self.company.instances[ix].public_ip = new_ip;
    }
}
