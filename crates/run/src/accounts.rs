//! Account names and owners from the registry in the state file (`credwarden accounts sync`),
//! put on every finding a run delivers, and registry names accepted where an account id is.

use std::collections::HashMap;

use detect::Finding;
use store::{Store, StoreError};

/// The registry, by account id.
#[derive(Clone, Debug, Default)]
pub struct AccountNames {
    by_id: HashMap<String, (String, Option<String>)>,
}

impl AccountNames {
    pub fn load(store: &Store) -> Result<AccountNames, StoreError> {
        Ok(AccountNames::from_accounts(&store.accounts()?))
    }

    /// The names of registry rows already read.
    pub fn from_accounts(accounts: &[store::Account]) -> AccountNames {
        AccountNames {
            by_id: accounts
                .iter()
                .map(|a| (a.id.clone(), (a.name.clone(), a.owner.clone())))
                .collect(),
        }
    }

    /// `f` with its account's name and owner, when the registry knows the account.
    pub fn annotate(&self, f: &Finding) -> Finding {
        let mut f = f.clone();
        if let Some((name, owner)) = f.account.as_ref().and_then(|a| self.by_id.get(a)) {
            f.account_name = Some(name.clone());
            f.account_owner = owner.clone();
        }
        f
    }

    /// The registry's name for an account id.
    pub fn name_of(&self, id: &str) -> Option<&str> {
        self.by_id.get(id).map(|(name, _)| name.as_str())
    }

    /// The account id `name_or_id` means: an id as it is, a registry name (case-insensitive)
    /// as its id; `None` for a name the registry does not hold.
    pub fn resolve(&self, name_or_id: &str) -> Option<String> {
        if credwarden_core::account::is_account_id(name_or_id) {
            return Some(name_or_id.to_owned());
        }
        self.by_id
            .iter()
            .find(|(_, (name, _))| name.eq_ignore_ascii_case(name_or_id))
            .map(|(id, _)| id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credwarden_core::{FindingSource, Severity};

    #[test]
    fn names_and_owners_go_on_findings_and_names_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        store
            .accounts_replace(&[store::Account {
                id: "111122223333".into(),
                name: "payments-prod".into(),
                owner: Some("payments-team".into()),
                tags: "{}".into(),
                ..Default::default()
            }])
            .unwrap();
        let names = AccountNames::load(&store).unwrap();
        let f = Finding {
            id: "x".into(),
            detector: "d",
            severity: Severity::Low,
            time: "t".into(),
            account: Some("111122223333".into()),
            account_name: None,
            account_owner: None,
            region: None,
            principal: None,
            access_key_id: None,
            source: FindingSource::default(),
            event_ids: Vec::new(),
            summary: String::new(),
            details: serde_json::Value::Null,
            remediation: String::new(),
        };
        let named = names.annotate(&f);
        assert_eq!(named.account_name.as_deref(), Some("payments-prod"));
        assert_eq!(named.account_owner.as_deref(), Some("payments-team"));
        let json = serde_json::to_string(&f).unwrap();
        assert!(
            !json.contains("account_name"),
            "absent without a registry: {json}"
        );
        assert_eq!(
            names.resolve("Payments-Prod").as_deref(),
            Some("111122223333")
        );
        assert_eq!(
            names.resolve("444455556666").as_deref(),
            Some("444455556666")
        );
        assert_eq!(names.resolve("unknown"), None);
    }
}
