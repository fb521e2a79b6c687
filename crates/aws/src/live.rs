//! Live access through the official AWS SDK for Rust.
//!
//! Credentials and region come from the SDK's usual chain (environment, profile, instance
//! metadata). `endpoint_url` overrides every service endpoint — how tests reach the moto
//! server on loopback, and how users reach a VPC endpoint or a local emulator. Every list
//! call is paginated to the end: a first page is not an inventory.

use aws_config::BehaviorVersion;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use serde_json::{json, Value};

use crate::error::AwsError;
use crate::inventory::Inventory;

/// Where and how to reach AWS.
#[derive(Clone, Debug, Default)]
pub struct LiveOptions {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    /// The regions an inventory reads its network from; empty: every region enabled for the
    /// account (`ec2:DescribeRegions`).
    pub regions: Vec<String>,
}

/// An inline policy as IAM holds it: its exact text (URL-decoded) and what it says.
#[derive(Clone, Debug)]
pub struct InlinePolicy {
    pub policy: iam::Policy,
    pub text: String,
}

/// A connected session: an async runtime and the loaded SDK configuration.
/// A customer managed policy read back from IAM.
#[derive(Clone, Debug)]
pub struct LivePolicy {
    /// The default version's document, URL-decoded.
    pub document: String,
    /// Users, groups and roles it is attached to.
    pub attachments: i32,
}

pub struct Session {
    /// Shared with the sessions assumed from this one (`assume_member`): one runtime per
    /// command, however many accounts it reads.
    rt: std::sync::Arc<tokio::runtime::Runtime>,
    config: aws_config::SdkConfig,
    regions: Vec<String>,
}

/// A failed SDK call as an [`AwsError`]: the service's error code and message when it
/// answered, else the whole cause chain ("dispatch failure: … connection refused"), never
/// credentials. Every SDK client of this crate reports through here.
pub(crate) fn call_error<E>(operation: &'static str, e: E) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error,
{
    let message = match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_owned(),
        _ => {
            let mut text = e.to_string();
            let mut cause = e.source();
            while let Some(c) = cause {
                text = format!("{text}: {c}");
                cause = c.source();
            }
            text
        }
    };
    AwsError::Call { operation, message }
}

/// The AWS SDK configuration every credwarden client uses (inventory, IAM writes, the
/// broker's STS): the SDK's credential and region chain, HTTPS through rustls on ring (the
/// workspace's one crypto library), and `endpoint_url` / `region` when given. Refused
/// without a region: a call to no region would fail later with a vaguer message.
pub async fn sdk_config(opts: &LiveOptions) -> Result<aws_config::SdkConfig, AwsError> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(url) = &opts.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = &opts.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(AwsError::NoRegion);
    }
    Ok(config)
}

impl Session {
    pub fn connect(opts: &LiveOptions) -> Result<Session, AwsError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AwsError::Runtime)?;
        let config = rt.block_on(sdk_config(opts))?;
        Ok(Session {
            rt: std::sync::Arc::new(rt),
            config,
            regions: opts.regions.clone(),
        })
    }

    fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.config)
    }

    /// Run a future on this session's runtime.
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub(crate) fn sdk_config(&self) -> &aws_config::SdkConfig {
        &self.config
    }

    /// Another session on this one's runtime and region list, with other credentials.
    pub(crate) fn with_config(&self, config: aws_config::SdkConfig) -> Session {
        Session {
            rt: self.rt.clone(),
            config,
            regions: self.regions.clone(),
        }
    }

    fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.config)
    }

    /// Collect NAT gateways, VPCs, VPC endpoints and the IAM authorization details. The SDK
    /// responses are turned into the AWS CLI's JSON shape and read by the same code as files,
    /// so `--live` and `--inventory` cannot drift apart.
    ///
    /// The network (NAT gateways, VPCs, endpoints) is read in every region enabled for the
    /// account, or in the configured regions: a lock built from one region would deny the
    /// others' traffic. A region that cannot be read is recorded in `unread_regions` and
    /// the inventory's problems; the rest is still read.
    pub fn inventory(&self) -> Result<Inventory, AwsError> {
        let mut inv = Inventory::default();
        let regions = if self.regions.is_empty() {
            self.enabled_regions()?
        } else {
            self.regions.clone()
        };
        let (mut nats, mut vpcs, mut endpoints) = (Vec::new(), Vec::new(), Vec::new());
        for region in &regions {
            match self.region_network(region) {
                Ok((n, v, e)) => {
                    nats.extend(n);
                    vpcs.extend(v);
                    endpoints.extend(e);
                    inv.network_regions.push(region.clone());
                }
                Err(e) => {
                    inv.problems
                        .push(format!("region {region} could not be read: {e}"));
                    inv.unread_regions.push(region.clone());
                }
            }
        }
        let iam = self.rt.block_on(self.authorization_details())?;
        let absorb = |inv: &mut Inventory, origin: &str, v: Value| {
            inv.absorb_json(origin, &v)
                .expect("built with a recognised key")
        };
        absorb(
            &mut inv,
            "live ec2:DescribeNatGateways",
            json!({ "NatGateways": nats }),
        );
        absorb(&mut inv, "live ec2:DescribeVpcs", json!({ "Vpcs": vpcs }));
        absorb(
            &mut inv,
            "live ec2:DescribeVpcEndpoints",
            json!({ "VpcEndpoints": endpoints }),
        );
        absorb(&mut inv, "live iam:GetAccountAuthorizationDetails", iam);
        Ok(inv)
    }

    /// The regions enabled for the account (opt-in regions only once opted in).
    fn enabled_regions(&self) -> Result<Vec<String>, AwsError> {
        self.rt.block_on(async {
            let out = self
                .ec2()
                .describe_regions()
                .send()
                .await
                .map_err(|e| call_error("ec2:DescribeRegions", e))?;
            let mut regions: Vec<String> = out
                .regions()
                .iter()
                .filter_map(|r| r.region_name().map(str::to_owned))
                .collect();
            regions.sort();
            Ok(regions)
        })
    }

    /// NAT gateways, VPCs and VPC endpoints of one region, in the CLI's JSON shape.
    #[allow(clippy::type_complexity)]
    fn region_network(
        &self,
        region: &str,
    ) -> Result<(Vec<Value>, Vec<Value>, Vec<Value>), AwsError> {
        self.rt.block_on(async {
            let conf = aws_sdk_ec2::config::Builder::from(&self.config)
                .region(aws_config::Region::new(region.to_owned()))
                .build();
            let ec2 = aws_sdk_ec2::Client::from_conf(conf);
            let mut nats = Vec::new();
            let mut token = None;
            loop {
                let page = ec2.describe_nat_gateways().set_next_token(token).send().await.map_err(|e| call_error("ec2:DescribeNatGateways", e))?;
                for n in page.nat_gateways() {
                    nats.push(json!({
                        "NatGatewayId": n.nat_gateway_id(), "VpcId": n.vpc_id(), "SubnetId": n.subnet_id(),
                        "State": n.state().map(|s| s.as_str()),
                        "NatGatewayAddresses": n.nat_gateway_addresses().iter().map(|a| json!({"PublicIp": a.public_ip(), "PrivateIp": a.private_ip()})).collect::<Vec<_>>(),
                    }));
                }
                token = page.next_token().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
            let mut vpcs = Vec::new();
            let mut token = None;
            loop {
                let page = ec2.describe_vpcs().set_next_token(token).send().await.map_err(|e| call_error("ec2:DescribeVpcs", e))?;
                for v in page.vpcs() {
                    vpcs.push(json!({
                        "VpcId": v.vpc_id(), "CidrBlock": v.cidr_block(), "IsDefault": v.is_default(),
                        "CidrBlockAssociationSet": v.cidr_block_association_set().iter().map(|c| json!({"CidrBlock": c.cidr_block()})).collect::<Vec<_>>(),
                        "Ipv6CidrBlockAssociationSet": v.ipv6_cidr_block_association_set().iter().map(|c| json!({"Ipv6CidrBlock": c.ipv6_cidr_block()})).collect::<Vec<_>>(),
                        "Tags": v.tags().iter().map(|t| json!({"Key": t.key(), "Value": t.value()})).collect::<Vec<_>>(),
                    }));
                }
                token = page.next_token().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
            let mut endpoints = Vec::new();
            let mut token = None;
            loop {
                let page = ec2.describe_vpc_endpoints().set_next_token(token).send().await.map_err(|e| call_error("ec2:DescribeVpcEndpoints", e))?;
                for e in page.vpc_endpoints() {
                    endpoints.push(json!({
                        "VpcEndpointId": e.vpc_endpoint_id(), "VpcId": e.vpc_id(), "ServiceName": e.service_name(),
                        "VpcEndpointType": e.vpc_endpoint_type().map(|t| t.as_str()), "State": e.state().map(|s| s.as_str()),
                    }));
                }
                token = page.next_token().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
            Ok::<_, AwsError>((nats, vpcs, endpoints))
        })
    }

    /// Every page of GetAccountAuthorizationDetails, in the CLI's JSON shape (documents left
    /// URL-encoded as the API returns them; the inventory reader decodes).
    async fn authorization_details(&self) -> Result<Value, AwsError> {
        let iam = self.iam();
        let (mut roles, mut users, mut groups, mut policies) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut marker = None;
        let tags = |t: &[aws_sdk_iam::types::Tag]| {
            t.iter()
                .map(|t| json!({"Key": t.key(), "Value": t.value()}))
                .collect::<Vec<_>>()
        };
        let attached = |a: &[aws_sdk_iam::types::AttachedPolicy]| {
            a.iter()
                .map(|p| json!({"PolicyName": p.policy_name(), "PolicyArn": p.policy_arn()}))
                .collect::<Vec<_>>()
        };
        loop {
            let page = iam
                .get_account_authorization_details()
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| call_error("iam:GetAccountAuthorizationDetails", e))?;
            for r in page.role_detail_list() {
                roles.push(json!({
                    "RoleName": r.role_name(), "Arn": r.arn(), "Path": r.path(),
                    "CreateDate": r.create_date().and_then(|d| d.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
                    "AssumeRolePolicyDocument": r.assume_role_policy_document(),
                    "RolePolicyList": r.role_policy_list().iter().map(|p| json!({"PolicyName": p.policy_name(), "PolicyDocument": p.policy_document()})).collect::<Vec<_>>(),
                    "AttachedManagedPolicies": attached(r.attached_managed_policies()),
                    "PermissionsBoundary": r.permissions_boundary().map(|b| json!({"PermissionsBoundaryArn": b.permissions_boundary_arn()})),
                    "InstanceProfileList": r.instance_profile_list().iter().map(|i| json!({"Arn": i.arn()})).collect::<Vec<_>>(),
                    "Tags": tags(r.tags()),
                    // Present even when empty: "never used" and "not reported" differ.
                    "RoleLastUsed": r.role_last_used().map(|u| json!({
                        "LastUsedDate": u.last_used_date().and_then(|d| d.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
                        "Region": u.region(),
                    })).unwrap_or_else(|| json!({})),
                }));
            }
            for u in page.user_detail_list() {
                users.push(json!({
                    "UserName": u.user_name(), "Arn": u.arn(),
                    "UserPolicyList": u.user_policy_list().iter().map(|p| json!({"PolicyName": p.policy_name(), "PolicyDocument": p.policy_document()})).collect::<Vec<_>>(),
                    "GroupList": u.group_list(),
                    "AttachedManagedPolicies": attached(u.attached_managed_policies()),
                    "PermissionsBoundary": u.permissions_boundary().map(|b| json!({"PermissionsBoundaryArn": b.permissions_boundary_arn()})),
                    "Tags": tags(u.tags()),
                }));
            }
            for g in page.group_detail_list() {
                groups.push(json!({
                    "GroupName": g.group_name(), "Arn": g.arn(),
                    "GroupPolicyList": g.group_policy_list().iter().map(|p| json!({"PolicyName": p.policy_name(), "PolicyDocument": p.policy_document()})).collect::<Vec<_>>(),
                    "AttachedManagedPolicies": attached(g.attached_managed_policies()),
                }));
            }
            for p in page.policies() {
                policies.push(json!({
                    "PolicyName": p.policy_name(), "Arn": p.arn(),
                    "PolicyVersionList": p.policy_version_list().iter().map(|v| json!({"Document": v.document(), "VersionId": v.version_id(), "IsDefaultVersion": v.is_default_version()})).collect::<Vec<_>>(),
                }));
            }
            if !page.is_truncated() {
                break;
            }
            marker = page.marker().map(str::to_owned);
            if marker.is_none() {
                break;
            }
        }
        Ok(
            json!({"RoleDetailList": roles, "UserDetailList": users, "GroupDetailList": groups, "Policies": policies}),
        )
    }

    /// The current inline policy `name` of `role`, if any (URL-decoded and parsed).
    pub fn role_policy(&self, role: &str, name: &str) -> Result<Option<iam::Policy>, AwsError> {
        self.rt.block_on(async {
            match self
                .iam()
                .get_role_policy()
                .role_name(role)
                .policy_name(name)
                .send()
                .await
            {
                Ok(out) => iam::Policy::parse_encoded(out.policy_document())
                    .map(Some)
                    .map_err(|e| AwsError::Call {
                        operation: "iam:GetRolePolicy",
                        message: format!("role {role} policy {name}: {e}"),
                    }),
                Err(e) if e.code() == Some("NoSuchEntity") => Ok(None),
                Err(e) => Err(call_error("iam:GetRolePolicy", e)),
            }
        })
    }

    /// A role's inline policies (name → document) and attached managed policy ARNs, as they
    /// are now.
    pub fn role_state(
        &self,
        role: &str,
    ) -> Result<
        (
            std::collections::BTreeMap<String, InlinePolicy>,
            Vec<String>,
        ),
        AwsError,
    > {
        self.rt.block_on(async {
            let iam = self.iam();
            let mut inline = std::collections::BTreeMap::new();
            let mut marker = None;
            loop {
                let page = iam
                    .list_role_policies()
                    .role_name(role)
                    .set_marker(marker)
                    .send()
                    .await
                    .map_err(|e| call_error("iam:ListRolePolicies", e))?;
                for name in page.policy_names() {
                    let doc = iam
                        .get_role_policy()
                        .role_name(role)
                        .policy_name(name)
                        .send()
                        .await
                        .map_err(|e| call_error("iam:GetRolePolicy", e))?;
                    let bad = |e: iam::PolicyError| AwsError::Call {
                        operation: "iam:GetRolePolicy",
                        message: format!("role {role} policy {name}: {e}"),
                    };
                    let text = iam::policy::decode_document(doc.policy_document()).map_err(bad)?;
                    let policy = iam::Policy::parse(&text).map_err(bad)?;
                    inline.insert(name.clone(), InlinePolicy { policy, text });
                }
                marker = page.marker().map(str::to_owned);
                if !page.is_truncated() || marker.is_none() {
                    break;
                }
            }
            let mut attached = Vec::new();
            let mut marker = None;
            loop {
                let page = iam
                    .list_attached_role_policies()
                    .role_name(role)
                    .set_marker(marker)
                    .send()
                    .await
                    .map_err(|e| call_error("iam:ListAttachedRolePolicies", e))?;
                attached.extend(
                    page.attached_policies()
                        .iter()
                        .filter_map(|p| p.policy_arn().map(str::to_owned)),
                );
                marker = page.marker().map(str::to_owned);
                if !page.is_truncated() || marker.is_none() {
                    break;
                }
            }
            attached.sort();
            Ok((inline, attached))
        })
    }

    /// A role's tags as they are now.
    pub fn role_tags(
        &self,
        role: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, AwsError> {
        self.rt.block_on(async {
            let out = self
                .iam()
                .list_role_tags()
                .role_name(role)
                .send()
                .await
                .map_err(|e| call_error("iam:ListRoleTags", e))?;
            Ok(out
                .tags()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect())
        })
    }

    pub fn delete_role_policy(&self, role: &str, name: &str) -> Result<(), AwsError> {
        self.rt.block_on(async {
            self.iam()
                .delete_role_policy()
                .role_name(role)
                .policy_name(name)
                .send()
                .await
                .map_err(|e| call_error("iam:DeleteRolePolicy", e))?;
            Ok(())
        })
    }

    pub fn attach_role_policy(&self, role: &str, arn: &str) -> Result<(), AwsError> {
        self.rt.block_on(async {
            self.iam()
                .attach_role_policy()
                .role_name(role)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| call_error("iam:AttachRolePolicy", e))?;
            Ok(())
        })
    }

    pub fn detach_role_policy(&self, role: &str, arn: &str) -> Result<(), AwsError> {
        self.rt.block_on(async {
            self.iam()
                .detach_role_policy()
                .role_name(role)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| call_error("iam:DetachRolePolicy", e))?;
            Ok(())
        })
    }

    /// A customer managed policy as it is now: its default version's document (URL-decoded
    /// text) and how many entities it is attached to; `None` when there is no such policy.
    pub fn managed_policy(&self, arn: &str) -> Result<Option<LivePolicy>, AwsError> {
        self.rt.block_on(async {
            let policy = match self.iam().get_policy().policy_arn(arn).send().await {
                Ok(out) => out.policy,
                Err(e) if e.code() == Some("NoSuchEntity") => return Ok(None),
                Err(e) => return Err(call_error("iam:GetPolicy", e)),
            };
            let Some(policy) = policy else {
                return Ok(None);
            };
            let version = policy.default_version_id().unwrap_or("v1").to_owned();
            let out = self
                .iam()
                .get_policy_version()
                .policy_arn(arn)
                .version_id(&version)
                .send()
                .await
                .map_err(|e| call_error("iam:GetPolicyVersion", e))?;
            let document = out
                .policy_version()
                .and_then(|v| v.document())
                .map(iam::policy::decode_document)
                .transpose()
                .map_err(|e| AwsError::Call {
                    operation: "iam:GetPolicyVersion",
                    message: format!("{arn}: {e}"),
                })?
                .unwrap_or_default();
            Ok(Some(LivePolicy {
                document,
                attachments: policy.attachment_count().unwrap_or(0),
            }))
        })
    }

    /// Create a customer managed policy at `path` (e.g. `/credwarden-shrink/`); its ARN.
    pub fn create_policy(
        &self,
        path: &str,
        name: &str,
        document: &str,
    ) -> Result<String, AwsError> {
        self.rt.block_on(async {
            let out = self
                .iam()
                .create_policy()
                .path(path)
                .policy_name(name)
                .policy_document(document)
                .description("created by credwarden shrink: a right-sized role's permissions")
                .send()
                .await
                .map_err(|e| call_error("iam:CreatePolicy", e))?;
            out.policy()
                .and_then(|p| p.arn())
                .map(str::to_owned)
                .ok_or(AwsError::Call {
                    operation: "iam:CreatePolicy",
                    message: format!("{name}: the answer names no policy ARN"),
                })
        })
    }

    /// Delete a customer managed policy (its non-default versions first, as IAM requires).
    pub fn delete_policy(&self, arn: &str) -> Result<(), AwsError> {
        self.rt.block_on(async {
            let versions = self
                .iam()
                .list_policy_versions()
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| call_error("iam:ListPolicyVersions", e))?;
            for v in versions.versions() {
                if !v.is_default_version() {
                    if let Some(id) = v.version_id() {
                        self.iam()
                            .delete_policy_version()
                            .policy_arn(arn)
                            .version_id(id)
                            .send()
                            .await
                            .map_err(|e| call_error("iam:DeletePolicyVersion", e))?;
                    }
                }
            }
            self.iam()
                .delete_policy()
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| call_error("iam:DeletePolicy", e))?;
            Ok(())
        })
    }

    /// The IAM credential report as CSV text: generated, waited for, decoded.
    pub fn credential_report(&self) -> Result<String, AwsError> {
        self.rt.block_on(async {
            let iam = self.iam();
            for _ in 0..30 {
                let state = iam
                    .generate_credential_report()
                    .send()
                    .await
                    .map_err(|e| call_error("iam:GenerateCredentialReport", e))?;
                if state.state().map(|s| s.as_str()) == Some("COMPLETE") {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            let report = iam
                .get_credential_report()
                .send()
                .await
                .map_err(|e| call_error("iam:GetCredentialReport", e))?;
            let bytes = report
                .content()
                .map(|b| b.as_ref().to_vec())
                .unwrap_or_default();
            String::from_utf8(bytes).map_err(|_| AwsError::Call {
                operation: "iam:GetCredentialReport",
                message: "the report is not UTF-8".into(),
            })
        })
    }

    /// A user's access keys in creation order: (id, status, created at ms).
    pub fn access_keys(&self, user: &str) -> Result<Vec<(String, String, i64)>, AwsError> {
        self.rt.block_on(async {
            let out = self
                .iam()
                .list_access_keys()
                .user_name(user)
                .send()
                .await
                .map_err(|e| call_error("iam:ListAccessKeys", e))?;
            let mut keys: Vec<_> = out
                .access_key_metadata()
                .iter()
                .map(|k| {
                    (
                        k.create_date().map(|d| d.secs() * 1000).unwrap_or(0),
                        k.access_key_id().unwrap_or_default().to_owned(),
                        k.status()
                            .map(|s| s.as_str().to_owned())
                            .unwrap_or_default(),
                    )
                })
                .collect();
            keys.sort();
            Ok(keys
                .into_iter()
                .map(|(created, id, status)| (id, status, created))
                .collect())
        })
    }

    /// Set an access key Active or Inactive (deactivation is reversible; nothing is deleted).
    pub fn set_access_key_status(
        &self,
        user: &str,
        key: &str,
        active: bool,
    ) -> Result<(), AwsError> {
        use aws_sdk_iam::types::StatusType;
        self.rt.block_on(async {
            let status = if active {
                StatusType::Active
            } else {
                StatusType::Inactive
            };
            self.iam()
                .update_access_key()
                .user_name(user)
                .access_key_id(key)
                .status(status)
                .send()
                .await
                .map_err(|e| call_error("iam:UpdateAccessKey", e))?;
            Ok(())
        })
    }

    /// Put (create or replace) an inline policy on a role.
    pub fn put_role_policy(&self, role: &str, name: &str, document: &str) -> Result<(), AwsError> {
        self.rt.block_on(async {
            self.iam()
                .put_role_policy()
                .role_name(role)
                .policy_name(name)
                .policy_document(document)
                .send()
                .await
                .map_err(|e| call_error("iam:PutRolePolicy", e))?;
            Ok(())
        })
    }
}

/// How long an Access Advisor job may take before the report is given up on.
const ADVISOR_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// An Access Advisor call that failed. The API being unavailable — access denied, not
/// implemented, a server error, or an answer that is not IAM's (an emulator's HTML error
/// page) — is [`AwsError::Refused`], which a caller may survive by going without the
/// report; anything else (no such role, bad input, no connection) is [`AwsError::Call`].
fn advisor_error<E>(operation: &'static str, e: aws_sdk_iam::error::SdkError<E>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().map(str::to_owned);
    let refused = match (&code, status) {
        (Some(c), _) if c.starts_with("AccessDenied") || c == "NotImplemented" => true,
        (_, Some(s)) if s >= 500 => true,
        // The endpoint answered, but not with an IAM error: whatever it is, it is not IAM.
        (None, Some(_)) => true,
        _ => false,
    };
    if !refused {
        return call_error(operation, e);
    }
    let message = match (code, e.message(), status) {
        (Some(c), Some(m), _) => format!("{c}: {m}"),
        (Some(c), None, _) => c,
        (None, _, Some(s)) => format!("HTTP {s} without an IAM error (not IAM's answer)"),
        (None, _, None) => "no answer".to_owned(),
    };
    AwsError::Refused { operation, message }
}

/// An SDK timestamp as the AWS CLI prints it; `None` for the SDK's stand-in for a missing
/// required date (the epoch), which must not pass for a real one.
fn cli_date(d: &aws_smithy_types::DateTime) -> Option<String> {
    if d.secs() == 0 && d.subsec_nanos() == 0 {
        return None;
    }
    d.fmt(aws_smithy_types::date_time::Format::DateTime).ok()
}

fn service_json(s: &aws_sdk_iam::types::ServiceLastAccessed) -> Value {
    let mut v = json!({
        "ServiceName": s.service_name(),
        "ServiceNamespace": s.service_namespace(),
    });
    let mut put = |k: &str, x: Option<Value>| {
        if let Some(x) = x {
            v[k] = x;
        }
    };
    put(
        "LastAuthenticated",
        s.last_authenticated().and_then(cli_date).map(Value::from),
    );
    put(
        "LastAuthenticatedEntity",
        s.last_authenticated_entity().map(Value::from),
    );
    put(
        "LastAuthenticatedRegion",
        s.last_authenticated_region().map(Value::from),
    );
    put(
        "TotalAuthenticatedEntities",
        s.total_authenticated_entities().map(Value::from),
    );
    // The SDK gives an empty list for a null one; the CLI prints null lists as absent.
    let tracked: Vec<Value> = s
        .tracked_actions_last_accessed()
        .iter()
        .map(|a| {
            let mut t = serde_json::Map::new();
            let fields = [
                ("ActionName", a.action_name().map(str::to_owned)),
                (
                    "LastAccessedEntity",
                    a.last_accessed_entity().map(str::to_owned),
                ),
                (
                    "LastAccessedTime",
                    a.last_accessed_time().and_then(cli_date),
                ),
                (
                    "LastAccessedRegion",
                    a.last_accessed_region().map(str::to_owned),
                ),
            ];
            for (k, x) in fields {
                if let Some(x) = x {
                    t.insert(k.to_owned(), Value::from(x));
                }
            }
            Value::Object(t)
        })
        .collect();
    if !tracked.is_empty() {
        v["TrackedActionsLastAccessed"] = Value::from(tracked);
    }
    v
}

impl Session {
    /// An action-level Access Advisor report of `role_arn`, in the JSON shape of
    /// `aws iam get-service-last-accessed-details` (so `shrink::AccessAdvisor::parse` reads
    /// live reports and files alike): GenerateServiceLastAccessedDetails with ACTION_LEVEL
    /// granularity, GetServiceLastAccessedDetails polled while the job runs (up to a minute),
    /// then every page through `Marker` — the API has no paginator, and a first page is not
    /// a report. `IsTruncated` is false only when every page was read.
    ///
    /// A job that failed or never finished is an error, never an empty report; the API being
    /// unavailable is [`AwsError::Refused`].
    pub fn access_advisor(&self, role_arn: &str) -> Result<Value, AwsError> {
        use aws_sdk_iam::types::{AccessAdvisorUsageGranularityType, JobStatusType};
        const GENERATE: &str = "iam:GenerateServiceLastAccessedDetails";
        const GET: &str = "iam:GetServiceLastAccessedDetails";
        self.rt.block_on(async {
            let iam = self.iam();
            let job = iam
                .generate_service_last_accessed_details()
                .arn(role_arn)
                .granularity(AccessAdvisorUsageGranularityType::ActionLevel)
                .send()
                .await
                .map_err(|e| advisor_error(GENERATE, e))?;
            let job_id = job.job_id().ok_or_else(|| AwsError::Call {
                operation: GENERATE,
                message: format!("{role_arn}: no JobId in the answer"),
            })?;
            let deadline = std::time::Instant::now() + ADVISOR_WAIT;
            let mut delay = std::time::Duration::from_millis(500);
            let mut head: Option<Value> = None;
            let mut services = Vec::new();
            let mut marker: Option<String> = None;
            let truncated = loop {
                let page = iam
                    .get_service_last_accessed_details()
                    .job_id(job_id)
                    .max_items(1000)
                    .set_marker(marker.clone())
                    .send()
                    .await
                    .map_err(|e| advisor_error(GET, e))?;
                // Judged on the status alone: the SDK fills a missing completion date with
                // the epoch, so a date says nothing about whether the job finished.
                match page.job_status() {
                    JobStatusType::Completed => {}
                    JobStatusType::InProgress if marker.is_none() => {
                        let now = std::time::Instant::now();
                        if now + delay > deadline {
                            return Err(AwsError::Call {
                                operation: GET,
                                message: format!(
                                    "{role_arn}: job {job_id} not finished after {} s",
                                    ADVISOR_WAIT.as_secs()
                                ),
                            });
                        }
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(std::time::Duration::from_secs(5));
                        continue;
                    }
                    JobStatusType::Failed => {
                        let (code, message) = page
                            .error()
                            .map(|e| (e.code(), e.message()))
                            .unwrap_or(("(no code)", "(no message)"));
                        return Err(AwsError::Call {
                            operation: GET,
                            message: format!("{role_arn}: job {job_id} failed: {code}: {message}"),
                        });
                    }
                    other => {
                        return Err(AwsError::Call {
                            operation: GET,
                            message: format!(
                                "{role_arn}: job {job_id} has status {} on a later page",
                                other.as_str()
                            ),
                        })
                    }
                }
                if head.is_none() {
                    let mut h = json!({
                        "JobStatus": "COMPLETED",
                        "JobType": page.job_type().map(|t| t.as_str()),
                    });
                    if let Some(d) = cli_date(page.job_creation_date()) {
                        h["JobCreationDate"] = d.into();
                    }
                    if let Some(d) = cli_date(page.job_completion_date()) {
                        h["JobCompletionDate"] = d.into();
                    }
                    head = Some(h);
                }
                services.extend(page.services_last_accessed().iter().map(service_json));
                if !page.is_truncated() {
                    break false;
                }
                match page.marker() {
                    // The same marker again would loop for ever: what is left is unread.
                    Some(m) if marker.as_deref() != Some(m) => marker = Some(m.to_owned()),
                    _ => break true,
                }
            };
            let mut report = head.unwrap_or_default();
            report["ServicesLastAccessed"] = Value::from(services);
            report["IsTruncated"] = Value::from(truncated);
            Ok(report)
        })
    }
}

/// A role as IAM describes it (`GetRole`).
#[derive(Clone, Debug)]
pub struct RoleFound {
    pub arn: String,
    /// The trust policy, URL-decoded.
    pub trust: String,
    pub tags: std::collections::BTreeMap<String, String>,
}

impl Session {
    /// The role `name`, or `None` when IAM has no such role.
    pub fn get_role(&self, name: &str) -> Result<Option<RoleFound>, AwsError> {
        self.rt.block_on(async {
            let out = match self.iam().get_role().role_name(name).send().await {
                Ok(out) => out,
                Err(e) if e.code() == Some("NoSuchEntity") => return Ok(None),
                Err(e) => return Err(call_error("iam:GetRole", e)),
            };
            let Some(role) = out.role() else {
                return Err(AwsError::Call {
                    operation: "iam:GetRole",
                    message: format!("role {name}: the answer holds no role"),
                });
            };
            let trust =
                iam::policy::decode_document(role.assume_role_policy_document().unwrap_or("{}"))
                    .map_err(|e| AwsError::Call {
                        operation: "iam:GetRole",
                        message: format!("role {name} trust policy: {e}"),
                    })?;
            Ok(Some(RoleFound {
                arn: role.arn().to_owned(),
                trust,
                tags: role
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned()))
                    .collect(),
            }))
        })
    }

    /// Create a role with `trust` and `tags`; its ARN. An existing role of that name is an
    /// error (IAM's `EntityAlreadyExists`), never replaced.
    pub fn create_role(
        &self,
        name: &str,
        trust: &str,
        description: &str,
        tags: &[(String, String)],
    ) -> Result<String, AwsError> {
        use aws_sdk_iam::types::Tag;
        self.rt.block_on(async {
            let mut call = self
                .iam()
                .create_role()
                .role_name(name)
                .assume_role_policy_document(trust)
                .description(description);
            for (k, v) in tags {
                let tag = Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| AwsError::Call {
                        operation: "iam:CreateRole",
                        message: format!("tag {k}: {e}"),
                    })?;
                call = call.tags(tag);
            }
            let out = call
                .send()
                .await
                .map_err(|e| call_error("iam:CreateRole", e))?;
            Ok(out.role().map(|r| r.arn().to_owned()).unwrap_or_default())
        })
    }

    /// Delete a role (its inline policies and attachments must be gone already).
    pub fn delete_role(&self, name: &str) -> Result<(), AwsError> {
        self.rt.block_on(async {
            self.iam()
                .delete_role()
                .role_name(name)
                .send()
                .await
                .map_err(|e| call_error("iam:DeleteRole", e))?;
            Ok(())
        })
    }
}
