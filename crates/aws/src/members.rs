//! Member accounts of an organisation, reached through one role assumed in each
//! (`--assume-role-name`): the way an organisation-wide tool reads hundreds of accounts
//! without a credential of its own in any of them.
//!
//! A member session is an ordinary [`Session`] whose credentials come from STS `AssumeRole`
//! on the caller's credentials, refreshed by the SDK before they expire (a long inventory or
//! shrink run outlives one hour of credentials). The role is assumed once up front and the
//! resulting identity checked: a role that cannot be assumed, or an identity in another
//! account than the one asked for, is an error for that account alone, so the caller can
//! report it and go on with the others.

use aws_credential_types::provider::SharedCredentialsProvider;

use crate::error::AwsError;
use crate::live::{call_error, Session};

/// The session name every member session carries: CloudTrail in the member account shows
/// `assumed-role/NAME/credwarden`, so the reads are attributable at a glance.
pub const SESSION_NAME: &str = "credwarden";

/// Why an account id or role name is refused before any call is made.
fn check_names(account: &str, role_name: &str) -> Result<(), AwsError> {
    if !credwarden_core::account::is_account_id(account) {
        return Err(AwsError::BadMember(format!(
            "{account:?} is not an AWS account id (12 digits)"
        )));
    }
    // IAM role names: 1-64 of [A-Za-z0-9+=,.@_-]. A path or an ARN is refused: the same
    // name is looked up in every account.
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b);
    if role_name.is_empty() || role_name.len() > 64 || !role_name.bytes().all(ok) {
        return Err(AwsError::BadMember(format!(
            "{role_name:?} is not an IAM role name (1-64 of letters, digits and +=,.@_-)"
        )));
    }
    Ok(())
}

/// The partition of a region: a role ARN must name it.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

impl Session {
    /// The account these credentials belong to (`sts:GetCallerIdentity`).
    pub fn account_id(&self) -> Result<String, AwsError> {
        self.block_on(async {
            let out = aws_sdk_sts::Client::new(self.sdk_config())
                .get_caller_identity()
                .send()
                .await
                .map_err(|e| call_error("sts:GetCallerIdentity", e))?;
            out.account()
                .map(str::to_owned)
                .ok_or_else(|| AwsError::Call {
                    operation: "sts:GetCallerIdentity",
                    message: "the answer names no account".into(),
                })
        })
    }

    /// A session in `account` as its role `role_name` (session name [`SESSION_NAME`]),
    /// assumed now and checked to be in that account.
    pub fn assume_member(&self, account: &str, role_name: &str) -> Result<Session, AwsError> {
        let config = self.block_on(member_config(self.sdk_config(), account, role_name))?;
        let member = self.with_config(config);
        // Assume now: the first real read would otherwise fail with a credentials error far
        // from its cause, and an identity in another account must not be read as this one.
        let found = member.account_id().map_err(|e| match e {
            AwsError::Call { message, .. } => AwsError::Call {
                operation: "sts:AssumeRole",
                message,
            },
            other => other,
        })?;
        if found != account {
            return Err(AwsError::BadMember(format!(
                "assuming {role_name} in {account} gave credentials of account {found}"
            )));
        }
        Ok(member)
    }
}

/// The SDK configuration of a member account: `base` with credentials from assuming
/// `role_name` in `account`, refreshed before they expire. Nothing is called yet (a service
/// that starts with member accounts configured must start while one of them is down).
pub async fn member_config(
    base: &aws_config::SdkConfig,
    account: &str,
    role_name: &str,
) -> Result<aws_config::SdkConfig, AwsError> {
    check_names(account, role_name)?;
    let region = base
        .region()
        .map(|r| r.as_ref().to_owned())
        .ok_or(AwsError::NoRegion)?;
    let arn = format!("arn:{}:iam::{account}:role/{role_name}", partition(&region));
    let provider = aws_config::sts::AssumeRoleProvider::builder(arn)
        .session_name(SESSION_NAME)
        .configure(base)
        .build()
        .await;
    Ok(base
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_call() {
        assert!(check_names("123456789012", "credwarden-read").is_ok());
        for (account, role) in [
            ("12345678901", "r"),
            ("1234567890123", "r"),
            ("12345678901a", "r"),
            ("123456789012", ""),
            ("123456789012", "path/role"),
            ("123456789012", "arn:aws:iam::123456789012:role/r"),
            ("123456789012", &"r".repeat(65)),
        ] {
            assert!(
                matches!(check_names(account, role), Err(AwsError::BadMember(_))),
                "{account} {role}"
            );
        }
    }

    #[test]
    fn partitions_follow_the_region() {
        assert_eq!(partition("eu-west-1"), "aws");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
    }
}
