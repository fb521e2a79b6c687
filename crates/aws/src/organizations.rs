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
            // OU id → its path from the root: each OU is described and walked once for the
            // whole organisation (Organizations throttles hard), each account costs one
            // ListParents.
            let mut ou_paths: BTreeMap<String, Vec<String>> = BTreeMap::new();
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
                let path = match parent_of(&org, &account.id).await? {
                    Some(parent) => ou_path(&org, parent, &mut ou_paths).await?,
                    None => Vec::new(),
                };
                account.ou = (!path.is_empty()).then(|| path.join("/"));
            }
            Ok(out)
        })
    }
}

/// The parent (OU or root id) of an account or OU.
async fn parent_of(
    org: &aws_sdk_organizations::Client,
    child: &str,
) -> Result<Option<String>, AwsError> {
    let parents = org
        .list_parents()
        .child_id(child)
        .send()
        .await
        .map_err(|e| call_error("organizations:ListParents", e))?;
    Ok(parents
        .parents()
        .first()
        .and_then(|p| p.id())
        .map(str::to_owned))
}

/// The path (`Root`, then OU names) of the OU or root `start`, from `cache` where known; the
/// OUs walked to find it are cached too.
async fn ou_path(
    org: &aws_sdk_organizations::Client,
    start: String,
    cache: &mut BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>, AwsError> {
    // Uncached OUs from `start` upward, (id, name); Organizations nests at most five levels.
    let mut chain: Vec<(String, String)> = Vec::new();
    let mut id = start;
    let mut path = loop {
        if id.starts_with("r-") {
            break vec!["Root".to_owned()];
        }
        if let Some(known) = cache.get(&id) {
            break known.clone();
        }
        if chain.len() >= 8 {
            break Vec::new();
        }
        let ou = org
            .describe_organizational_unit()
            .organizational_unit_id(&id)
            .send()
            .await
            .map_err(|e| call_error("organizations:DescribeOrganizationalUnit", e))?;
        let name = ou
            .organizational_unit()
            .and_then(|o| o.name())
            .unwrap_or(&id)
            .to_owned();
        let parent = parent_of(org, &id).await?;
        chain.push((id, name));
        match parent {
            Some(p) => id = p,
            None => break Vec::new(),
        }
    };
    for (id, name) in chain.into_iter().rev() {
        path.push(name);
        cache.insert(id, path.clone());
    }
    Ok(path)
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
