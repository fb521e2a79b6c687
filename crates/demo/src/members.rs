//! The organisation shape's member accounts: many accounts × regions whose trails fill the
//! delivery files a real organisation's bucket holds. Their traffic is what AWS services do
//! in an account on their own or on a role's behalf (CloudTrail writing its logs through
//! KMS, Auto Scaling and Config describing resources, Lambda writing logs), so it is
//! realistic in size and field mix but holds nothing any detector must report: novelty
//! detectors and the ground truth both leave service calls alone, and no call is denied,
//! names a canary or passes a role.

use credwarden_core::EventTime;

use crate::delivery::slot_time;
use crate::generate::Generator;
use crate::record::{Api, Call, Caller, Origin, Place, RoleSession};
use crate::rng::Rng;

/// Regions member accounts run in (the trail's home region first).
pub const MEMBER_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
    "ap-northeast-1",
];

/// One member account and the regions it runs workloads in, with each (account, region)
/// stream's share of the members' traffic.
pub struct Member {
    pub id: String,
    pub regions: Vec<&'static str>,
    /// Relative traffic of each region (busy and quiet accounts alike, as in a real org).
    pub weights: Vec<u64>,
}

/// `count` member accounts drawn from `rng`: 1–3 regions each, stream weights spread over
/// two orders of magnitude.
pub fn members(rng: &mut Rng, count: usize) -> Vec<Member> {
    (0..count)
        .map(|_| {
            let id = format!("{:012}", 100_000_000_000 + rng.below(899_999_999_999));
            let n = 1 + rng.below(3) as usize;
            let mut regions: Vec<&'static str> = vec![MEMBER_REGIONS[0]];
            while regions.len() < n {
                let r = *rng.pick(MEMBER_REGIONS);
                if !regions.contains(&r) {
                    regions.push(r);
                }
            }
            let weights = regions.iter().map(|_| 1 + rng.below(100)).collect();
            Member {
                id,
                regions,
                weights,
            }
        })
        .collect()
}

/// The service-made calls the members' trails hold.
#[derive(Clone, Copy)]
enum ServiceCall {
    TrailKms,
    AutoScalingDescribe,
    ConfigBucketAcl,
    LambdaLogs,
    EksNetworkInterfaces,
}

const CALLS: [ServiceCall; 5] = [
    ServiceCall::TrailKms,
    ServiceCall::AutoScalingDescribe,
    ServiceCall::ConfigBucketAcl,
    ServiceCall::LambdaLogs,
    ServiceCall::EksNetworkInterfaces,
];

impl Generator {
    /// `budget` calls of the member accounts in slot `slot`.
    pub(crate) fn member_traffic(&mut self, slot: u64, budget: u64) {
        let members = std::mem::take(&mut self.members);
        let streams: Vec<(usize, usize)> = members
            .iter()
            .enumerate()
            .flat_map(|(m, member)| (0..member.regions.len()).map(move |r| (m, r)))
            .collect();
        let total: u64 = streams.iter().map(|&(m, r)| members[m].weights[r]).sum();
        for _ in 0..budget {
            let mut x = self.rng.below(total.max(1));
            let &(m, r) = streams
                .iter()
                .find(|&&(m, r)| {
                    let w = members[m].weights[r];
                    if x < w {
                        true
                    } else {
                        x -= w;
                        false
                    }
                })
                .unwrap_or(&streams[0]);
            let account = members[m].id.as_str();
            let region = members[m].regions[r];
            let time = self.time_in_slot(slot);
            let what = *self.rng.pick(&CALLS);
            self.member_call(slot, time, Place { account, region }, what);
        }
        self.members = members;
    }

    fn member_call(&mut self, slot: u64, time: EventTime, place: Place<'_>, what: ServiceCall) {
        let ids = self.fresh_ids();
        let Place { account, region } = place;
        // Service-linked role sessions: one credential per (account, role) and hour, as a
        // service refreshes its session, so detector state stays bounded.
        let hour = slot / 12;
        let created = slot_time(hour * 12);
        let n = self.rng.below(1_000_000);
        match what {
            ServiceCall::TrailKms => {
                let key_arn = format!(
                    "arn:aws:kms:{region}:{account}:key/{}",
                    uuid_of(account, "trail")
                );
                let request = format!(
                    concat!(
                        r#"{{"keySpec":"AES_256","encryptionContext":{{"#,
                        r#""aws:cloudtrail:arn":"arn:aws:cloudtrail:us-east-1:{acct}:trail/org-trail","#,
                        r#""aws:s3:arn":"arn:aws:s3:::corp-cloudtrail/AWSLogs/{acct}/CloudTrail/{region}/{t}"}},"#,
                        r#""keyId":"{key}"}}"#
                    ),
                    acct = account,
                    region = region,
                    t = time,
                    key = key_arn
                );
                let resources = [key_arn.as_str()];
                let caller = Caller::Service {
                    invoked_by: "cloudtrail.amazonaws.com",
                };
                let origin = Origin::new("cloudtrail.amazonaws.com", "cloudtrail.amazonaws.com");
                let api = Api::new("kms.amazonaws.com", "GenerateDataKey");
                let call = Call::new(time, api, place, caller, origin, &ids)
                    .read_only(true)
                    .request(&request)
                    .resources(&resources);
                self.emit(&call);
            }
            ServiceCall::AutoScalingDescribe => {
                let key = format!("ASIASVCAUTOSCALE{:04}", hour % 10_000);
                let request = format!(
                    r#"{{"instancesSet":{{"items":[{{"instanceId":"i-0{:016x}"}},{{"instanceId":"i-0{:016x}"}}]}},"filterSet":{{}},"includeAllInstances":false}}"#,
                    n,
                    n * 7 + 3
                );
                let caller = service_role(
                    account,
                    (
                        "AWSServiceRoleForAutoScaling",
                        "AROASERVICEAUTOSCALING",
                        "AutoScaling",
                    ),
                    &key,
                    created,
                    "autoscaling.amazonaws.com",
                );
                let origin = Origin::new("autoscaling.amazonaws.com", "autoscaling.amazonaws.com");
                let api = Api::new("ec2.amazonaws.com", "DescribeInstanceStatus");
                let call = Call::new(time, api, place, caller, origin, &ids)
                    .read_only(true)
                    .request(&request);
                self.emit(&call);
            }
            ServiceCall::ConfigBucketAcl => {
                let bucket = format!("{account}-{region}-app-assets");
                let arn = format!("arn:aws:s3:::{bucket}");
                let request = format!(
                    r#"{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com","acl":""}}"#
                );
                let key = format!("ASIASVCCONFIGREAD{:03}", hour % 1000);
                let caller = service_role(
                    account,
                    (
                        "AWSServiceRoleForConfig",
                        "AROASERVICECONFIGEXAM",
                        "AWSConfig-Describe",
                    ),
                    &key,
                    created,
                    "config.amazonaws.com",
                );
                let origin = Origin::new("config.amazonaws.com", "config.amazonaws.com");
                let api = Api::new("s3.amazonaws.com", "GetBucketAcl");
                let resources = [arn.as_str()];
                let call = Call::new(time, api, place, caller, origin, &ids)
                    .read_only(true)
                    .request(&request)
                    .resources(&resources);
                self.emit(&call);
            }
            ServiceCall::LambdaLogs => {
                let function = ["orders-sync", "image-resize", "audit-export"][(n % 3) as usize];
                let group = format!("/aws/lambda/{function}");
                let stream = format!(
                    "{}/[$LATEST]{:032x}",
                    &time.to_string()[..10].replace('-', "/"),
                    u128::from(n) * 0x9e37_79b9_7f4a_7c15
                );
                let request = format!(r#"{{"logGroupName":"{group}","logStreamName":"{stream}"}}"#);
                let arn = format!("arn:aws:logs:{region}:{account}:log-group:{group}");
                let caller = Caller::Service {
                    invoked_by: "lambda.amazonaws.com",
                };
                let origin = Origin::new("lambda.amazonaws.com", "lambda.amazonaws.com");
                let api = Api::new("logs.amazonaws.com", "CreateLogStream");
                let resources = [arn.as_str()];
                let call = Call::new(time, api, place, caller, origin, &ids)
                    .request(&request)
                    .resources(&resources);
                self.emit(&call);
            }
            ServiceCall::EksNetworkInterfaces => {
                let key = format!("ASIASVCEKSCLUSTER{:03}", hour % 1000);
                let request = format!(
                    concat!(
                        r#"{{"networkInterfaceIdSet":{{}},"filterSet":{{"items":["#,
                        r#"{{"name":"vpc-id","valueSet":{{"items":[{{"value":"vpc-0{:016x}"}}]}}}},"#,
                        r#"{{"name":"tag:cluster.k8s.amazonaws.com/name","valueSet":{{"items":[{{"value":"platform"}}]}}}}]}}}}"#
                    ),
                    n
                );
                let caller = service_role(
                    account,
                    (
                        "AWSServiceRoleForAmazonEKS",
                        "AROASERVICEEKSCLUSTER",
                        "AmazonEKS",
                    ),
                    &key,
                    created,
                    "eks.amazonaws.com",
                );
                let origin = Origin::new("eks.amazonaws.com", "eks.amazonaws.com");
                let api = Api::new("ec2.amazonaws.com", "DescribeNetworkInterfaces");
                let call = Call::new(time, api, place, caller, origin, &ids)
                    .read_only(true)
                    .request(&request);
                self.emit(&call);
            }
        }
    }
}

/// A service-linked role's session, `(role, role id, session name)`, calling for `by`.
fn service_role<'a>(
    account: &'a str,
    (role, role_id, session): (&'a str, &'a str, &'a str),
    key: &'a str,
    created: EventTime,
    by: &'a str,
) -> Caller<'a> {
    Caller::Role(RoleSession {
        account,
        role,
        role_id,
        session,
        key,
        created,
        invoked_by: Some(by),
        ..Default::default()
    })
}

/// A stable UUID-shaped id for an account's named key.
fn uuid_of(account: &str, what: &str) -> String {
    let h = account
        .bytes()
        .chain(what.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    let x = format!("{h:016x}{:016x}", h.rotate_left(17) ^ 0x5bd1_e995);
    format!(
        "{}-{}-4{}-a{}-{}",
        &x[..8],
        &x[8..12],
        &x[13..16],
        &x[17..20],
        &x[20..32]
    )
}
