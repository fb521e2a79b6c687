//! AWS account ids, and the account an ARN names: one reading for every crate (account
//! registry names, member accounts, role ARNs in plans, broker role tags, notify routes).

/// Twelve ASCII digits: what an AWS account id is (and a registry name can never be).
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The account field of an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`); `None`
/// when the text is no ARN or the field is empty (S3 bucket ARNs). AWS managed policies name
/// the account `aws`, and that is what is returned for them.
pub fn arn_account(arn: &str) -> Option<&str> {
    let mut fields = arn.splitn(6, ':');
    if fields.next() != Some("arn") {
        return None;
    }
    let account = fields.nth(3)?;
    fields.next()?;
    (!account.is_empty()).then_some(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_and_arn_accounts() {
        assert!(is_account_id("123456789012"));
        for bad in [
            "12345678901",
            "1234567890123",
            "12345678901a",
            "payments-prod",
        ] {
            assert!(!is_account_id(bad), "{bad}");
        }
        assert_eq!(
            arn_account("arn:aws:iam::123456789012:role/path/app"),
            Some("123456789012")
        );
        assert_eq!(
            arn_account("arn:aws:sts::123456789012:assumed-role/app/s"),
            Some("123456789012")
        );
        assert_eq!(arn_account("arn:aws:s3:::bucket/key"), None);
        assert_eq!(arn_account("arn:aws:iam::123456789012"), None);
        assert_eq!(arn_account("role/app"), None);
    }
}
