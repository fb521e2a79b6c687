//! IAM policy documents: parsing as AWS accepts them and normalised printing.
//!
//! AWS is liberal in what a policy may look like: `Statement` is one object or a list,
//! `Action` a string or a list, condition values strings, numbers or booleans, singly or in
//! lists. The parser accepts every such form and refuses what AWS refuses (unknown effect,
//! unknown condition operator, a value an operator cannot compare, both `Action` and
//! `NotAction`) with an error that names the statement and the field. Printing is normalised
//! — fixed key order, statements always a list, values sorted and de-duplicated — so two
//! printings of equivalent documents diff cleanly.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::condition::{Condition, Operator};
use crate::error::PolicyError;

/// The version that enables policy variables. `2008-10-17` documents treat `${…}` literally.
pub const VERSION_2012: &str = "2012-10-17";

/// A parsed policy document.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub version: Option<String>,
    pub id: Option<String>,
    pub statements: Vec<Statement>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    Allow,
    Deny,
}

/// `Action`/`NotAction`, `Resource`/`NotResource`: a list of patterns, inclusive or exclusive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Patterns {
    Only(Vec<String>),
    AllExcept(Vec<String>),
}

impl Patterns {
    pub fn items(&self) -> &[String] {
        match self {
            Patterns::Only(v) | Patterns::AllExcept(v) => v,
        }
    }
}

/// `Principal`/`NotPrincipal`: `"*"` or a map of principal type (`AWS`, `Service`, `Federated`,
/// `CanonicalUser`) to identifiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principals {
    Anyone,
    Listed(BTreeMap<String, Vec<String>>),
}

/// One statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    /// `Some((principals, negated))`: `negated` for `NotPrincipal`.
    pub principal: Option<(Principals, bool)>,
    pub action: Patterns,
    /// `None` only in trust policies, which have no `Resource`.
    pub resource: Option<Patterns>,
    pub conditions: Vec<Condition>,
}

impl Policy {
    /// Parse a policy document from JSON text.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| PolicyError::Json(e.to_string()))?;
        Policy::from_value(&value)
    }

    /// Parse a policy document that is already JSON. The AWS SDKs return documents
    /// URL-encoded; [`Policy::parse_encoded`] handles that form.
    pub fn from_value(value: &Value) -> Result<Policy, PolicyError> {
        let obj = value.as_object().ok_or(PolicyError::NotAnObject)?;
        for key in obj.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(PolicyError::UnknownTopLevel(key.clone()));
            }
        }
        let version = match obj.get("Version") {
            None => None,
            Some(Value::String(v)) if v == VERSION_2012 || v == "2008-10-17" => Some(v.clone()),
            Some(other) => return Err(PolicyError::Version(other.to_string())),
        };
        let id = match obj.get("Id") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(PolicyError::Id(other.to_string())),
        };
        let raw = match obj.get("Statement") {
            None => return Err(PolicyError::NoStatement),
            Some(Value::Array(items)) => items.iter().collect::<Vec<_>>(),
            Some(one @ Value::Object(_)) => vec![one],
            Some(_) => return Err(PolicyError::NoStatement),
        };
        let statements = raw
            .iter()
            .enumerate()
            .map(|(i, s)| parse_statement(i, s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy {
            version,
            id,
            statements,
        })
    }

    /// Parse a document as `aws iam` APIs return it through the SDKs: URL-encoded JSON. Plain
    /// JSON is accepted too, so callers need not know which form they hold.
    pub fn parse_encoded(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(&decode_document(text)?)
    }

    /// True when `${…}` policy variables are substituted (Version 2012-10-17).
    pub fn variables_enabled(&self) -> bool {
        self.version.as_deref() == Some(VERSION_2012)
    }

    /// Normalised, pretty JSON (two-space indent, trailing newline).
    pub fn to_pretty_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a policy always serialises");
        s.push('\n');
        s
    }

    /// Compact JSON, as used to measure a document against IAM's size limits (AWS counts
    /// characters without whitespace).
    pub fn to_compact_json(&self) -> String {
        serde_json::to_string(self).expect("a policy always serialises")
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        })
    }
}

/// The exact text of a policy document as IAM holds it: URL-decoded when the SDK returned it
/// URL-encoded, else unchanged. What a rollback writes back, byte for byte.
pub fn decode_document(text: &str) -> Result<String, PolicyError> {
    if text.trim_start().starts_with('{') {
        return Ok(text.to_owned());
    }
    credwarden_core::encoding::form_decode(text).ok_or(PolicyError::Encoding)
}

fn parse_statement(index: usize, v: &Value) -> Result<Statement, PolicyError> {
    let obj = v
        .as_object()
        .ok_or_else(|| PolicyError::at(index, None, "", "a statement must be a JSON object"))?;
    let sid = match obj.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(PolicyError::at(index, None, "Sid", "must be a string")),
    };
    let err = |field: &str, msg: &str| PolicyError::at(index, sid.as_deref(), field, msg);
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return Err(err(key, "is not a statement field"));
        }
    }
    let effect = match obj.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(_) => return Err(err("Effect", "must be \"Allow\" or \"Deny\"")),
        None => return Err(err("Effect", "is missing")),
    };
    let action = match (obj.get("Action"), obj.get("NotAction")) {
        (Some(_), Some(_)) => return Err(err("Action", "Action and NotAction cannot both appear")),
        (Some(a), None) => Patterns::Only(string_list(a).map_err(|m| err("Action", m))?),
        (None, Some(a)) => Patterns::AllExcept(string_list(a).map_err(|m| err("NotAction", m))?),
        (None, None) => {
            return Err(err(
                "Action",
                "is missing (a statement needs Action or NotAction)",
            ))
        }
    };
    for a in action.items() {
        if a != "*" && !a.contains(':') {
            return Err(err(
                if matches!(action, Patterns::Only(_)) {
                    "Action"
                } else {
                    "NotAction"
                },
                &format!("{a:?} is not service:action"),
            ));
        }
    }
    let resource = match (obj.get("Resource"), obj.get("NotResource")) {
        (Some(_), Some(_)) => {
            return Err(err(
                "Resource",
                "Resource and NotResource cannot both appear",
            ))
        }
        (Some(r), None) => Some(Patterns::Only(
            string_list(r).map_err(|m| err("Resource", m))?,
        )),
        (None, Some(r)) => Some(Patterns::AllExcept(
            string_list(r).map_err(|m| err("NotResource", m))?,
        )),
        (None, None) => None,
    };
    let principal = match (obj.get("Principal"), obj.get("NotPrincipal")) {
        (Some(_), Some(_)) => {
            return Err(err(
                "Principal",
                "Principal and NotPrincipal cannot both appear",
            ))
        }
        (Some(p), None) => Some((
            parse_principals(p).map_err(|m| err("Principal", &m))?,
            false,
        )),
        (None, Some(p)) => Some((
            parse_principals(p).map_err(|m| err("NotPrincipal", &m))?,
            true,
        )),
        (None, None) => None,
    };
    let conditions = match obj.get("Condition") {
        None => Vec::new(),
        Some(Value::Object(ops)) => {
            let mut out = Vec::new();
            for (op_name, keys) in ops {
                let op = Operator::parse(op_name).ok_or_else(|| {
                    err(
                        &format!("Condition.{op_name}"),
                        "is not a condition operator",
                    )
                })?;
                let keys = keys.as_object().ok_or_else(|| {
                    err(
                        &format!("Condition.{op_name}"),
                        "must map condition keys to values",
                    )
                })?;
                for (key, values) in keys {
                    let field = format!("Condition.{op_name}.{key}");
                    let values = string_list(values).map_err(|m| err(&field, m))?;
                    out.push(Condition::new(op, key, values).map_err(|m| err(&field, &m))?);
                }
            }
            out
        }
        Some(_) => return Err(err("Condition", "must be an object of operators")),
    };
    Ok(Statement {
        sid,
        effect,
        principal,
        action,
        resource,
        conditions,
    })
}

/// A string, number or boolean, or a non-empty list of them, as strings.
fn string_list(v: &Value) -> Result<Vec<String>, &'static str> {
    fn scalar(v: &Value) -> Result<String, &'static str> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err("values must be strings, numbers or booleans"),
        }
    }
    match v {
        Value::Array(items) if items.is_empty() => Err("must not be an empty list"),
        Value::Array(items) => items.iter().map(scalar).collect(),
        other => Ok(vec![scalar(other)?]),
    }
}

fn parse_principals(v: &Value) -> Result<Principals, String> {
    match v {
        Value::String(s) if s == "*" => Ok(Principals::Anyone),
        Value::Object(map) => {
            let mut out = BTreeMap::new();
            for (kind, ids) in map {
                if !matches!(
                    kind.as_str(),
                    "AWS" | "Service" | "Federated" | "CanonicalUser"
                ) {
                    return Err(format!(
                        "{kind:?} is not a principal type (AWS, Service, Federated, CanonicalUser)"
                    ));
                }
                out.insert(kind.clone(), string_list(ids).map_err(str::to_owned)?);
            }
            Ok(Principals::Listed(out))
        }
        _ => Err("must be \"*\" or an object of principal types".to_owned()),
    }
}

/// Sorted (case-insensitively when `fold`), de-duplicated copy: the normalised order.
fn normalised(items: &[String], fold: bool) -> Vec<&str> {
    let mut v: Vec<&str> = items.iter().map(String::as_str).collect();
    if fold {
        v.sort_by_cached_key(|s| (s.to_lowercase(), s.to_string()));
        v.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    } else {
        v.sort_unstable();
        v.dedup();
    }
    v
}

/// One value prints as a string, several as a list.
struct OneOrMany<'a>(Vec<&'a str>);

impl Serialize for OneOrMany<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.len() == 1 {
            return s.serialize_str(self.0[0]);
        }
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in &self.0 {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

impl Serialize for Policy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(v) = &self.version {
            m.serialize_entry("Version", v)?;
        }
        if let Some(id) = &self.id {
            m.serialize_entry("Id", id)?;
        }
        m.serialize_entry("Statement", &self.statements)?;
        m.end()
    }
}

impl Serialize for Statement {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(sid) = &self.sid {
            m.serialize_entry("Sid", sid)?;
        }
        m.serialize_entry("Effect", &self.effect.to_string())?;
        if let Some((p, negated)) = &self.principal {
            let key = if *negated {
                "NotPrincipal"
            } else {
                "Principal"
            };
            match p {
                Principals::Anyone => m.serialize_entry(key, "*")?,
                Principals::Listed(map) => {
                    let map: BTreeMap<&str, OneOrMany> = map
                        .iter()
                        .map(|(k, v)| (k.as_str(), OneOrMany(normalised(v, false))))
                        .collect();
                    m.serialize_entry(key, &map)?
                }
            }
        }
        match &self.action {
            Patterns::Only(a) => m.serialize_entry("Action", &OneOrMany(normalised(a, true)))?,
            Patterns::AllExcept(a) => {
                m.serialize_entry("NotAction", &OneOrMany(normalised(a, true)))?
            }
        }
        match &self.resource {
            Some(Patterns::Only(r)) => {
                m.serialize_entry("Resource", &OneOrMany(normalised(r, false)))?
            }
            Some(Patterns::AllExcept(r)) => {
                m.serialize_entry("NotResource", &OneOrMany(normalised(r, false)))?
            }
            None => {}
        }
        if !self.conditions.is_empty() {
            let mut block: BTreeMap<String, BTreeMap<String, OneOrMany>> = BTreeMap::new();
            for c in &self.conditions {
                block
                    .entry(c.operator.to_string())
                    .or_default()
                    .insert(c.key.clone(), OneOrMany(normalised(&c.values, false)));
            }
            m.serialize_entry("Condition", &block)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_shape_aws_accepts() {
        let p = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*",
                "Condition":{"Bool":{"aws:MultiFactorAuthPresent":true},"NumericLessThan":{"s3:max-keys":10}}}}"#,
        )
        .unwrap();
        assert_eq!(p.statements.len(), 1);
        assert_eq!(p.statements[0].conditions.len(), 2);
        assert_eq!(p.statements[0].conditions[0].values, ["true"]);
        let p = Policy::parse(r#"{"Statement":[{"Effect":"Deny","NotAction":["iam:*","sts:*"],"NotResource":["arn:aws:s3:::b"]}]}"#).unwrap();
        assert!(matches!(p.statements[0].action, Patterns::AllExcept(_)));
        assert!(!p.variables_enabled());
    }

    #[test]
    fn errors_name_the_statement_and_field() {
        let cases = [
            (
                r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"Two","Effect":"allow","Action":"s3:*"}]}"#,
                "statement 1 (Sid \"Two\"): Effect",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","NotAction":"s3:Get*"}}"#,
                "statement 0: Action",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Condition":{"StringEqualz":{"a":"b"}}}}"#,
                "Condition.StringEqualz",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}}}}"#,
                "Condition.IpAddress.aws:SourceIp",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Condition":{"NumericEquals":{"s3:max-keys":"ten"}}}}"#,
                "Condition.NumericEquals.s3:max-keys",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"GetObject"}}"#,
                "statement 0: Action",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":[]}}"#,
                "statement 0: Action",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Principal":{"Person":"x"}}}"#,
                "statement 0: Principal",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Actions":"s3:*"}}"#,
                "statement 0: Actions",
            ),
            (r#"{"Version":"2020-01-01","Statement":[]}"#, "Version"),
        ];
        for (doc, want) in cases {
            let e = Policy::parse(doc).unwrap_err().to_string();
            assert!(e.contains(want), "{doc}: {e}");
        }
    }

    #[test]
    fn printing_is_normalised_and_round_trips() {
        let a = Policy::parse(
            r#"{"Statement":{"Resource":["arn:aws:s3:::b/*","arn:aws:s3:::a"],"Action":["s3:PutObject","s3:getObject","S3:GetObject"],"Effect":"Allow",
                "Condition":{"StringLike":{"s3:prefix":["b/*","a/*"]},"Bool":{"aws:SecureTransport":"true"}}},"Version":"2012-10-17"}"#,
        )
        .unwrap();
        let printed = a.to_pretty_json();
        assert!(printed.starts_with("{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {\n      \"Effect\": \"Allow\""), "{printed}");
        assert!(
            printed.contains(
                "\"Action\": [\n        \"S3:GetObject\",\n        \"s3:PutObject\"\n      ]"
            ),
            "{printed}"
        );
        let b = Policy::parse(&printed).unwrap();
        assert_eq!(b.to_pretty_json(), printed);
    }

    #[test]
    fn url_encoded_documents_from_the_sdk() {
        let enc = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22s3%3A*%22%2C%22Resource%22%3A%22*%22%7D%5D%7D";
        let p = Policy::parse_encoded(enc).unwrap();
        assert_eq!(p.statements[0].action, Patterns::Only(vec!["s3:*".into()]));
        assert!(Policy::parse_encoded("%7B%2").is_err());
    }
}
