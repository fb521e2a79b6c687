//! The `Condition` element: operators, their values, and how they decide against a request.
//!
//! The rules, from AWS's documentation ("Condition operators", "Conditions with multiple
//! context keys or values"), in the order they are applied here:
//! - operators in a block, and keys under one operator, are ANDed;
//! - several policy values for one key are ORed — NORed for a negated operator;
//! - a key absent from the request makes a positive operator false and a negated operator
//!   (`StringNotEquals`, `NotIpAddress`, `ArnNotLike`, …) **true**; `…IfExists` makes any
//!   operator true when the key is absent; `Null` tests presence itself;
//! - `ForAnyValue:` is true when at least one request value satisfies the operator (false
//!   when the key is absent or empty); `ForAllValues:` when every request value does (true
//!   when the key is absent or empty);
//! - policy variables (`${aws:username}`) are substituted in String and ARN operator values
//!   of 2012-10-17 documents; a variable the request cannot resolve matches nothing.
//!
//! Values that an operator cannot compare (a non-numeric `NumericEquals` value, a bad CIDR)
//! are refused when the policy is parsed, as AWS refuses them, so evaluation never guesses.

use std::fmt;
use std::net::IpAddr;

use credwarden_core::Cidr;
use credwarden_core::EventTime;

use crate::context::RequestContext;
use crate::variables::{substitute, Substituted};
use crate::wildcard::{arn_match, arn_match_escaped, glob_match, glob_match_escaped, unescape};

/// The comparison an operator makes, before negation, qualifiers and `IfExists`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Base {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    NumericEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    ArnEquals,
    ArnLike,
    Null,
}

/// `ForAnyValue:` / `ForAllValues:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetQualifier {
    AnyValue,
    AllValues,
}

/// A condition operator as written in a policy, e.g. `ForAllValues:StringNotLikeIfExists`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Operator {
    pub base: Base,
    pub negated: bool,
    pub if_exists: bool,
    pub qualifier: Option<SetQualifier>,
}

/// (name, base, negated) for every operator AWS defines.
const OPERATORS: &[(&str, Base, bool)] = &[
    ("StringEquals", Base::StringEquals, false),
    ("StringNotEquals", Base::StringEquals, true),
    (
        "StringEqualsIgnoreCase",
        Base::StringEqualsIgnoreCase,
        false,
    ),
    (
        "StringNotEqualsIgnoreCase",
        Base::StringEqualsIgnoreCase,
        true,
    ),
    ("StringLike", Base::StringLike, false),
    ("StringNotLike", Base::StringLike, true),
    ("NumericEquals", Base::NumericEquals, false),
    ("NumericNotEquals", Base::NumericEquals, true),
    ("NumericLessThan", Base::NumericLessThan, false),
    ("NumericLessThanEquals", Base::NumericLessThanEquals, false),
    ("NumericGreaterThan", Base::NumericGreaterThan, false),
    (
        "NumericGreaterThanEquals",
        Base::NumericGreaterThanEquals,
        false,
    ),
    ("DateEquals", Base::DateEquals, false),
    ("DateNotEquals", Base::DateEquals, true),
    ("DateLessThan", Base::DateLessThan, false),
    ("DateLessThanEquals", Base::DateLessThanEquals, false),
    ("DateGreaterThan", Base::DateGreaterThan, false),
    ("DateGreaterThanEquals", Base::DateGreaterThanEquals, false),
    ("Bool", Base::Bool, false),
    ("BinaryEquals", Base::BinaryEquals, false),
    ("IpAddress", Base::IpAddress, false),
    ("NotIpAddress", Base::IpAddress, true),
    ("ArnEquals", Base::ArnEquals, false),
    ("ArnNotEquals", Base::ArnEquals, true),
    ("ArnLike", Base::ArnLike, false),
    ("ArnNotLike", Base::ArnLike, true),
    ("Null", Base::Null, false),
];

impl Operator {
    /// Parse an operator name. Names compare case-insensitively; printing uses AWS's spelling.
    pub fn parse(name: &str) -> Option<Operator> {
        let mut rest = name;
        let mut qualifier = None;
        // At most one set qualifier; `get` keeps slicing on character boundaries.
        for (prefix, q) in [
            ("ForAnyValue:", SetQualifier::AnyValue),
            ("ForAllValues:", SetQualifier::AllValues),
        ] {
            if rest.len() > prefix.len()
                && rest
                    .get(..prefix.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
            {
                qualifier = Some(q);
                rest = &rest[prefix.len()..];
                break;
            }
        }
        let mut if_exists = false;
        if rest.len() > 8
            && rest.is_char_boundary(rest.len() - 8)
            && rest[rest.len() - 8..].eq_ignore_ascii_case("IfExists")
        {
            if_exists = true;
            rest = &rest[..rest.len() - 8];
        }
        let &(_, base, negated) = OPERATORS
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(rest))?;
        if base == Base::Null && (if_exists || qualifier.is_some()) {
            return None;
        }
        Some(Operator {
            base,
            negated,
            if_exists,
            qualifier,
        })
    }

    fn base_name(&self) -> &'static str {
        OPERATORS
            .iter()
            .find(|(_, b, n)| *b == self.base && *n == self.negated)
            .map(|(name, _, _)| *name)
            .expect("every operator has a name")
    }

    /// String and ARN operators take policy variables and wildcards.
    fn takes_variables(&self) -> bool {
        matches!(
            self.base,
            Base::StringEquals
                | Base::StringEqualsIgnoreCase
                | Base::StringLike
                | Base::ArnEquals
                | Base::ArnLike
        )
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.qualifier {
            Some(SetQualifier::AnyValue) => f.write_str("ForAnyValue:")?,
            Some(SetQualifier::AllValues) => f.write_str("ForAllValues:")?,
            None => {}
        }
        f.write_str(self.base_name())?;
        if self.if_exists {
            f.write_str("IfExists")?;
        }
        Ok(())
    }
}

/// Policy values parsed once, in the form the operator compares.
#[derive(Clone, Debug, PartialEq)]
enum Parsed {
    /// String, ARN and binary operators compare text (variables substituted at evaluation).
    Text,
    Numbers(Vec<f64>),
    Dates(Vec<i64>),
    Bools(Vec<bool>),
    Cidrs(Vec<Cidr>),
    /// `Null`: true = "the key must be absent".
    Absent(Vec<bool>),
}

/// One (operator, key, values) triple of a `Condition` block.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub operator: Operator,
    /// The key as written; matching is case-insensitive.
    pub key: String,
    pub values: Vec<String>,
    key_lower: String,
    parsed: Parsed,
}

impl Condition {
    /// Build a condition, refusing values the operator cannot compare.
    pub fn new(operator: Operator, key: &str, values: Vec<String>) -> Result<Condition, String> {
        let all = |f: &dyn Fn(&str) -> bool, what: &str| -> Result<(), String> {
            match values.iter().find(|v| !f(v)) {
                Some(bad) => Err(format!("{bad:?} is not {what}")),
                None => Ok(()),
            }
        };
        let parsed = match operator.base {
            Base::StringEquals
            | Base::StringEqualsIgnoreCase
            | Base::StringLike
            | Base::ArnEquals
            | Base::ArnLike => Parsed::Text,
            Base::BinaryEquals => {
                all(&|v| base64_decode(v).is_some(), "base64")?;
                Parsed::Text
            }
            Base::NumericEquals
            | Base::NumericLessThan
            | Base::NumericLessThanEquals
            | Base::NumericGreaterThan
            | Base::NumericGreaterThanEquals => {
                all(&|v| parse_number(v).is_some(), "a number")?;
                Parsed::Numbers(values.iter().filter_map(|v| parse_number(v)).collect())
            }
            Base::DateEquals
            | Base::DateLessThan
            | Base::DateLessThanEquals
            | Base::DateGreaterThan
            | Base::DateGreaterThanEquals => {
                all(
                    &|v| parse_date(v).is_some(),
                    "an ISO 8601 date or epoch seconds",
                )?;
                Parsed::Dates(values.iter().filter_map(|v| parse_date(v)).collect())
            }
            Base::Bool => {
                all(&|v| parse_bool(v).is_some(), "true or false")?;
                Parsed::Bools(values.iter().filter_map(|v| parse_bool(v)).collect())
            }
            Base::IpAddress => {
                all(&|v| Cidr::parse(v).is_some(), "an IP address or CIDR block")?;
                Parsed::Cidrs(values.iter().filter_map(|v| Cidr::parse(v)).collect())
            }
            Base::Null => {
                all(&|v| parse_bool(v).is_some(), "true or false")?;
                Parsed::Absent(values.iter().filter_map(|v| parse_bool(v)).collect())
            }
        };
        Ok(Condition {
            operator,
            key: key.to_owned(),
            key_lower: key.to_ascii_lowercase(),
            values,
            parsed,
        })
    }

    /// Decide this condition for a request. `variables`: whether `${…}` is substituted.
    pub fn matches(&self, ctx: &RequestContext, variables: bool) -> bool {
        let op = self.operator;
        let present = ctx.get(&self.key_lower).filter(|v| !v.is_empty());
        if let Parsed::Absent(wants) = &self.parsed {
            return wants.iter().any(|&absent| absent == present.is_none());
        }
        let Some(values) = present else {
            // Absent, or present with no values (only multivalued keys can be empty).
            return match (op.if_exists, op.qualifier) {
                (true, _) => true,
                (false, Some(SetQualifier::AnyValue)) => false,
                (false, Some(SetQualifier::AllValues)) => true,
                (false, None) => op.negated,
            };
        };
        // Substitute variables once per evaluation; unresolved ones drop out (match nothing).
        let substituted: Vec<String>;
        let escaped =
            variables && op.takes_variables() && self.values.iter().any(|v| v.contains("${"));
        let policy_values: &[String] = if escaped {
            // Substituted text (and `${*}`, `${?}`) is literal: the values come back as escaped
            // patterns, matched by the escaped matchers or unescaped for exact comparison.
            substituted = self
                .values
                .iter()
                .filter_map(|v| match substitute(v, ctx, true) {
                    Substituted::Value(s) => Some(s),
                    Substituted::Unresolved => None,
                })
                .collect();
            &substituted
        } else {
            &self.values
        };
        // One request value against the operator, negation included.
        let one = |request: &str| {
            self.any_policy_value_matches(policy_values, escaped, request) != op.negated
        };
        match op.qualifier {
            Some(SetQualifier::AnyValue) => values.iter().any(|v| one(v)),
            Some(SetQualifier::AllValues) => values.iter().all(|v| one(v)),
            // A single-valued operator on a multivalued key: a positive operator holds when any
            // request value matches; a negated one when none does.
            None if op.negated => values.iter().all(|v| one(v)),
            None => values.iter().any(|v| one(v)),
        }
    }

    fn any_policy_value_matches(&self, policy: &[String], escaped: bool, request: &str) -> bool {
        use std::cmp::Ordering::*;
        let cmp_any = |list: &[f64], req: Option<f64>, ok: &dyn Fn(std::cmp::Ordering) -> bool| {
            req.is_some_and(|r| list.iter().any(|p| r.partial_cmp(p).is_some_and(ok)))
        };
        match (&self.parsed, self.operator.base) {
            (Parsed::Text, Base::StringEquals) if escaped => {
                policy.iter().any(|p| unescape(p) == request)
            }
            (Parsed::Text, Base::StringEquals) => policy.iter().any(|p| p == request),
            (Parsed::Text, Base::StringEqualsIgnoreCase) => {
                let r = request.to_lowercase();
                policy
                    .iter()
                    .any(|p| if escaped { unescape(p) } else { p.clone() }.to_lowercase() == r)
            }
            (Parsed::Text, Base::StringLike) if escaped => {
                policy.iter().any(|p| glob_match_escaped(p, request))
            }
            (Parsed::Text, Base::StringLike) => policy.iter().any(|p| glob_match(p, request)),
            (Parsed::Text, Base::ArnEquals | Base::ArnLike) if escaped => {
                policy.iter().any(|p| arn_match_escaped(p, request))
            }
            (Parsed::Text, Base::ArnEquals | Base::ArnLike) => {
                policy.iter().any(|p| arn_match(p, request))
            }
            (Parsed::Text, Base::BinaryEquals) => base64_decode(request).is_some_and(|r| {
                policy
                    .iter()
                    .any(|p| base64_decode(p).as_deref() == Some(&r[..]))
            }),
            (Parsed::Numbers(list), base) => {
                let ok: &dyn Fn(std::cmp::Ordering) -> bool = match base {
                    Base::NumericEquals => &|o| o == Equal,
                    Base::NumericLessThan => &|o| o == Less,
                    Base::NumericLessThanEquals => &|o| o != Greater,
                    Base::NumericGreaterThan => &|o| o == Greater,
                    _ => &|o| o != Less,
                };
                cmp_any(list, parse_number(request), ok)
            }
            (Parsed::Dates(list), base) => {
                let Some(r) = parse_date(request) else {
                    return false;
                };
                list.iter().any(|&p| match base {
                    Base::DateEquals => r == p,
                    Base::DateLessThan => r < p,
                    Base::DateLessThanEquals => r <= p,
                    Base::DateGreaterThan => r > p,
                    _ => r >= p,
                })
            }
            (Parsed::Bools(list), _) => parse_bool(request).is_some_and(|r| list.contains(&r)),
            (Parsed::Cidrs(list), _) => request
                .trim()
                .parse::<IpAddr>()
                .is_ok_and(|ip| list.iter().any(|c| c.contains(ip))),
            _ => false,
        }
    }
}

fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    // Only plain decimal numbers: no "inf", "NaN" or hex that Rust's parser would accept.
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// ISO 8601 (`2020-01-01T00:00:00Z`, with fractions or an offset, or a bare `2020-01-01`) or
/// epoch seconds, as milliseconds since the epoch.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(t) = EventTime::parse(s) {
        return Some(t.millis());
    }
    if s.len() == 10 {
        if let Some(t) = EventTime::parse(&format!("{s}T00:00:00Z")) {
            return Some(t.millis());
        }
    }
    // `2020-01-01T00:00Z`: minutes without seconds.
    if s.len() == 17 && s.as_bytes()[16] == b'Z' {
        if let Some(t) = EventTime::parse(&format!("{}:00Z", &s[..16])) {
            return Some(t.millis());
        }
    }
    parse_number(s)
        .filter(|n| n.abs() < 1e13)
        .map(|secs| (secs * 1000.0) as i64)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        v if v.eq_ignore_ascii_case("true") => Some(true),
        v if v.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Standard base64 (with or without padding) to bytes; `None` when it is not base64.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    credwarden_core::encoding::Base64::Standard.decode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_names_round_trip() {
        for (name, _, _) in OPERATORS {
            let op = Operator::parse(name).unwrap();
            assert_eq!(op.to_string(), *name);
            if *name != "Null" {
                for full in [
                    format!("{name}IfExists"),
                    format!("ForAnyValue:{name}"),
                    format!("ForAllValues:{name}IfExists"),
                ] {
                    assert_eq!(Operator::parse(&full).unwrap().to_string(), full);
                }
            }
        }
        assert_eq!(
            Operator::parse("stringequals").unwrap().to_string(),
            "StringEquals"
        );
        assert!(Operator::parse("NullIfExists").is_none());
        assert!(Operator::parse("ForAnyValue:").is_none());
        assert!(Operator::parse("IfExists").is_none());
        assert!(Operator::parse("StringEqualsIfExistsIfExists").is_none());
        assert!(
            Operator::parse("ForAnyValue:ForAllValues:StringEquals").is_none(),
            "one qualifier at most"
        );
        // Multi-byte characters where a prefix or suffix would be cut: refused, never a panic.
        for hostile in [
            "xxxxxxxxxxxé",
            "ForAnyValueé",
            "éIfExists",
            "StringEqualsIfExisté",
            "ForAllValues:é",
        ] {
            assert!(Operator::parse(hostile).is_none(), "{hostile}");
        }
    }

    #[test]
    fn dates_and_numbers() {
        assert_eq!(parse_date("2020-01-01T00:00:00Z"), Some(1_577_836_800_000));
        assert_eq!(parse_date("2020-01-01"), Some(1_577_836_800_000));
        assert_eq!(parse_date("1577836800"), Some(1_577_836_800_000));
        assert_eq!(
            parse_date("2020-01-01T01:00:00+01:00"),
            Some(1_577_836_800_000)
        );
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(parse_number("10.5"), Some(10.5));
        assert_eq!(parse_number("NaN"), None);
        assert_eq!(parse_number("inf"), None);
        assert_eq!(
            base64_decode("QmluYXJ5VmFsdWVJbkJhc2U2NA==").unwrap(),
            b"BinaryValueInBase64"
        );
        assert!(base64_decode("not base64!").is_none());
    }
}
