//! Policy variables: `${aws:username}`, `${aws:PrincipalTag/team}`, `${aws:username, 'none'}`
//! and the escapes `${*}`, `${?}`, `${$}`.
//!
//! A variable is replaced by the request's value of that key. A key that is absent or
//! multi-valued cannot be substituted: without a default, the whole value then matches
//! nothing (AWS: "the policy element doesn't match"), which fails closed for Allow and is
//! what AWS does for Deny.

use crate::context::RequestContext;
use crate::wildcard::escape_literal;

/// The outcome of substituting one policy value.
#[derive(Debug, PartialEq, Eq)]
pub enum Substituted {
    Value(String),
    Unresolved,
}

/// Substitute every `${…}` in `value`. With `escaped`, the result is a pattern for
/// [`crate::wildcard::glob_match_escaped`]: the policy's own `*`/`?` stay wildcards, while
/// substituted text and the `${*}`/`${?}` escapes are literal.
pub fn substitute(value: &str, ctx: &RequestContext, escaped: bool) -> Substituted {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let push_policy_text = |out: &mut String, text: &str| {
        if escaped {
            // The policy's own text keeps its wildcards; only backslashes need escaping.
            for c in text.chars() {
                if c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
        } else {
            out.push_str(text);
        }
    };
    let push_literal = |out: &mut String, text: &str| {
        if escaped {
            escape_literal(text, out)
        } else {
            out.push_str(text)
        }
    };
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        push_policy_text(&mut out, &rest[..start]);
        let inner = &rest[start + 2..start + len];
        rest = &rest[start + len + 1..];
        match inner {
            "*" | "?" | "$" => push_literal(&mut out, inner),
            _ => {
                let (key, default) = match inner.split_once(',') {
                    Some((k, d)) => {
                        let d = d.trim();
                        let quoted = d.len() >= 2 && d.starts_with('\'') && d.ends_with('\'');
                        (k.trim(), quoted.then(|| &d[1..d.len() - 1]))
                    }
                    None => (inner.trim(), None),
                };
                match ctx.single(&key.to_ascii_lowercase()).or(default) {
                    Some(v) => push_literal(&mut out, v),
                    None => return Substituted::Unresolved,
                }
            }
        }
    }
    push_policy_text(&mut out, rest);
    Substituted::Value(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RequestContext {
        let mut c = RequestContext::new("s3:ListBucket", "arn:aws:s3:::b").unwrap();
        c.add("aws:username", "alice")
            .add("aws:PrincipalTag/team", "red")
            .add("aws:TagKeys", "a")
            .add("aws:TagKeys", "b");
        c
    }

    #[test]
    fn substitution() {
        let c = ctx();
        assert_eq!(
            substitute("home/${aws:username}/*", &c, false),
            Substituted::Value("home/alice/*".into())
        );
        assert_eq!(
            substitute("${aws:principaltag/TEAM}-${aws:username}", &c, false),
            Substituted::Value("red-alice".into())
        );
        assert_eq!(
            substitute("${aws:userid}", &c, false),
            Substituted::Unresolved
        );
        assert_eq!(
            substitute("${aws:TagKeys}", &c, false),
            Substituted::Unresolved,
            "multi-valued keys cannot be variables"
        );
        assert_eq!(
            substitute("${aws:userid, 'nobody'}", &c, false),
            Substituted::Value("nobody".into())
        );
        assert_eq!(
            substitute("a${*}b${?}c${$}", &c, false),
            Substituted::Value("a*b?c$".into())
        );
        assert_eq!(
            substitute("a${*}b*", &c, true),
            Substituted::Value("a\\*b*".into())
        );
        assert_eq!(
            substitute("unclosed ${aws:username", &c, false),
            Substituted::Value("unclosed ${aws:username".into())
        );
    }
}
