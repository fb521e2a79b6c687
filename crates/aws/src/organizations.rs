//! The organisation's accounts, for the account registry: from AWS Organizations
//! (`ListAccounts`, the OU path from `ListParents`, tags from `ListTagsForResource`) or from
//! the AWS CLI's `aws organizations list-accounts` JSON (each account may carry a `Tags` list
//! and an `OrganizationalUnit` path, the form `--live` reads into).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{AwsError, InventoryError};
use crate::live::{call_error, Session};

/// One member account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrgAccount {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub status: Option<String>,
    /// `Root/Prod/Payments`.
    pub ou: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// Read `aws organizations list-accounts` output (optionally with `Tags` and
/// `OrganizationalUnit` per account).
pub fn accounts_from_file(path: &Path) -> Result<Vec<OrgAccount>, InventoryError> {
    let bytes = std::fs::read(path).map_err(|source| InventoryError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|source| InventoryError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let accounts = v["Accounts"]
        .as_array()
        .ok_or_else(|| InventoryError::NotAccounts(path.display().to_string()))?;
    let mut out = Vec::new();
    for a in accounts {
        let (Some(id), Some(name)) = (a["Id"].as_str(), a["Name"].as_str()) else {
            return Err(InventoryError::NotAccounts(path.display().to_string()));
        };
        let tags = a["Tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                Some((
                    t["Key"].as_str()?.to_owned(),
                    t["Value"].as_str()?.to_owned(),
                ))
            })
            .collect();
        out.push(OrgAccount {
            id: id.to_owned(),
            name: name.to_owned(),
            email: a["Email"].as_str().map(str::to_owned),
            status: a["Status"].as_str().map(str::to_owned),
            ou: a["OrganizationalUnit"].as_str().map(str::to_owned),
            tags,
        });
    }
    Ok(out)
}

impl Session {
    /// Every account of the organisation (paginated), with its OU path and tags. Needs the
    /// management account or a delegated administrator.
    pub fn organization_accounts(&self) -> Result<Vec<OrgAccount>, AwsError> {
        self.block_on(async {
            let org = aws_sdk_organizations::Client::new(self.sdk_config());
            let mut out = Vec::new();
            let mut token = None;
            loop {
                let page = org
                    .list_accounts()
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| call_error("organizations:ListAccounts", e))?;
                for a in page.accounts() {
                    let Some(id) = a.id() else { continue };
                    out.push(OrgAccount {
                        id: id.to_owned(),
                        name: a.name().unwrap_or(id).to_owned(),
                        email: a.email().map(str::to_owned),
                        status: a.status().map(|s| s.as_str().to_owned()),
                        ou: None,
                        tags: BTreeMap::new(),
                    });
                }
                token = page.next_token().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
            let mut ou_names: BTreeMap<String, String> = BTreeMap::new();
            for account in &mut out {
                let mut token = None;
                loop {
                    let page = org
                        .list_tags_for_resource()
                        .resource_id(&account.id)
                        .set_next_token(token)
                        .send()
                        .await
                        .map_err(|e| call_error("organizations:ListTagsForResource", e))?;
                    for t in page.tags() {
                        account
                            .tags
                            .insert(t.key().to_owned(), t.value().to_owned());
                    }
                    token = page.next_token().map(str::to_owned);
                    if token.is_none() {
                        break;
                    }
                }
                // The OU path, walking up to the root (at most a few levels).
                let mut path = Vec::new();
                let mut child = account.id.clone();
                for _ in 0..8 {
                    let parents = org
                        .list_parents()
                        .child_id(&child)
                        .send()
                        .await
                        .map_err(|e| call_error("organizations:ListParents", e))?;
                    let Some(parent) = parents.parents().first() else {
                        break;
                    };
                    let Some(pid) = parent.id() else { break };
                    if pid.starts_with("r-") {
                        path.push("Root".to_owned());
                        break;
                    }
                    if !ou_names.contains_key(pid) {
                        let ou = org
                            .describe_organizational_unit()
                            .organizational_unit_id(pid)
                            .send()
                            .await
                            .map_err(|e| {
                                call_error("organizations:DescribeOrganizationalUnit", e)
                            })?;
                        let name = ou
                            .organizational_unit()
                            .and_then(|o| o.name())
                            .unwrap_or(pid)
                            .to_owned();
                        ou_names.insert(pid.to_owned(), name);
                    }
                    path.push(ou_names[pid].clone());
                    child = pid.to_owned();
                }
                path.reverse();
                account.ou = (!path.is_empty()).then(|| path.join("/"));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cli_form() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.json");
        std::fs::write(
            &path,
            r#"{"Accounts":[{"Id":"111122223333","Name":"payments-prod","Email":"p@example.com",
                "Status":"ACTIVE","Tags":[{"Key":"owner","Value":"payments-team"}]},
                {"Id":"444455556666","Name":"sandbox"}]}"#,
        )
        .unwrap();
        let got = accounts_from_file(&path).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].tags["owner"], "payments-team");
        assert_eq!(got[1].name, "sandbox");
        std::fs::write(&path, r#"{"Roles":[]}"#).unwrap();
        assert!(accounts_from_file(&path).is_err());
    }
}
