//! The request context: what a call asks for and the condition keys AWS attaches to it.

use std::collections::HashMap;

use crate::error::ContextError;

/// One request: the action, the resource, and condition keys (multi-valued; names are
/// case-insensitive, as in AWS).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestContext {
    pub action: String,
    pub resource: String,
    keys: HashMap<String, Vec<String>>,
}

impl RequestContext {
    pub fn new(action: &str, resource: &str) -> Result<RequestContext, ContextError> {
        if action != "*"
            && !action
                .split_once(':')
                .is_some_and(|(s, a)| !s.is_empty() && !a.is_empty())
        {
            return Err(ContextError::Action(action.to_owned()));
        }
        Ok(RequestContext {
            action: action.to_owned(),
            resource: resource.to_owned(),
            keys: HashMap::new(),
        })
    }

    /// Set a key to exactly these values (an empty list: present, no values).
    pub fn set(
        &mut self,
        key: &str,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> &mut Self {
        self.keys.insert(
            key.to_ascii_lowercase(),
            values.into_iter().map(Into::into).collect(),
        );
        self
    }

    /// Add one value to a key: a key given twice is multi-valued (e.g. `aws:TagKeys`).
    pub fn add(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.keys
            .entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.into());
        self
    }

    /// Parse `KEY=VALUE` (as given on the command line) and add it.
    pub fn add_pair(&mut self, pair: &str) -> Result<&mut Self, ContextError> {
        let (k, v) = pair
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| ContextError::NotKeyValue(pair.to_owned()))?;
        Ok(self.add(k.trim(), v))
    }

    pub fn remove(&mut self, key: &str) -> &mut Self {
        self.keys.remove(&key.to_ascii_lowercase());
        self
    }

    /// Values of a key; `key` must already be lowercase.
    pub fn get(&self, key_lower: &str) -> Option<&[String]> {
        self.keys.get(key_lower).map(Vec::as_slice)
    }

    /// The one value of a single-valued key (`None` when absent or multi-valued).
    pub fn single(&self, key_lower: &str) -> Option<&str> {
        match self.get(key_lower) {
            Some([one]) => Some(one),
            _ => None,
        }
    }

    /// The calling principal: `aws:PrincipalArn`.
    pub fn principal_arn(&self) -> Option<&str> {
        self.single("aws:principalarn")
    }

    /// Every key and its values, sorted by key (for printing).
    pub fn entries(&self) -> Vec<(&str, &[String])> {
        let mut v: Vec<_> = self
            .keys
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        v.sort();
        v
    }
}
