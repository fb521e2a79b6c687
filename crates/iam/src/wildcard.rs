//! Wildcard matching as IAM does it.
//!
//! `*` matches any run of characters (including none) and `?` exactly one character, in
//! actions, resources and the `*Like` condition operators. The case rules differ: action
//! names are case-insensitive (`s3:getobject` is `s3:GetObject`), resources and condition
//! values are case-sensitive. ARN patterns are matched one colon-separated component at a
//! time for the first five components, so a `*` in the region cannot swallow the account;
//! the sixth component (the resource part) may itself contain colons and slashes.

/// Match `text` against `pattern` (`*`, `?`), case-sensitively.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        glob(
            pattern.as_bytes(),
            text.as_bytes(),
            |c| plain(*c as char),
            |a, b| a == b,
        )
    } else {
        let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
        glob(&p, &t, |c| plain(*c), |a, b| a == b)
    }
}

/// Match `text` against `pattern` (`*`, `?`), ignoring case: how action names compare.
pub fn glob_match_ignore_case(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        glob(
            pattern.as_bytes(),
            text.as_bytes(),
            |c| plain(*c as char),
            |a, b| a.eq_ignore_ascii_case(b),
        )
    } else {
        let lower = |s: &str| s.to_lowercase().chars().collect::<Vec<char>>();
        glob(&lower(pattern), &lower(text), |c| plain(*c), |a, b| a == b)
    }
}

/// Match with a pattern in which `\` makes the next character literal. Policy variables
/// produce such patterns: a substituted value, and `${*}` / `${?}`, are literal text even
/// inside `StringLike`.
pub fn glob_match_escaped(pattern: &str, text: &str) -> bool {
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '\\' => Token::Literal(chars.next().unwrap_or('\\')),
            '*' => Token::Star,
            '?' => Token::One,
            c => Token::Literal(c),
        });
    }
    let t: Vec<char> = text.chars().collect();
    glob(&tokens, &t, |k| *k, |k, c| *k == Token::Literal(*c))
}

/// Escape a literal so that [`glob_match_escaped`] matches it exactly.
pub fn escape_literal(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Star,
    One,
    Literal(char),
}

fn plain(c: char) -> Token {
    match c {
        '*' => Token::Star,
        '?' => Token::One,
        c => Token::Literal(c),
    }
}

/// The classic linear-time wildcard walk: on a mismatch, go back to the last `*` and let it
/// swallow one more character. No recursion, so hostile patterns cannot blow the stack, and
/// the work is bounded by pattern length × text length.
fn glob<P, T>(p: &[P], t: &[T], kind: impl Fn(&P) -> Token, eq: impl Fn(&P, &T) -> bool) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while ti < t.len() {
        let k = p.get(pi).map(&kind);
        if k == Some(Token::Star) {
            back = Some((pi, ti));
            pi += 1;
        } else if k == Some(Token::One) || (k.is_some() && eq(&p[pi], &t[ti])) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = back {
            pi = sp + 1;
            ti = st + 1;
            back = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| kind(c) == Token::Star)
}

/// Match an ARN against an ARN pattern as IAM's `Resource` element and `ArnLike` do.
///
/// `*` alone matches anything, ARN or not. Otherwise both must have the six components
/// `arn:partition:service:region:account:resource`; each of the first five is matched on its
/// own and the resource part as a whole.
pub fn arn_match(pattern: &str, arn: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let (Some(p), Some(a)) = (arn_parts(pattern), arn_parts(arn)) else {
        return false;
    };
    p.iter().zip(a.iter()).all(|(p, a)| glob_match(p, a))
}

/// [`arn_match`] for an escaped pattern (see [`glob_match_escaped`]): how a `Resource` or
/// `ArnLike` value with substituted policy variables matches. Colons are never escaped, so
/// the components split as in the plain form.
pub fn arn_match_escaped(pattern: &str, arn: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let (Some(p), Some(a)) = (arn_parts(pattern), arn_parts(arn)) else {
        return false;
    };
    p.iter()
        .zip(a.iter())
        .all(|(p, a)| glob_match_escaped(p, a))
}

/// The literal text of an escaped pattern (for exact comparisons).
pub fn unescape(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or('\\')
        } else {
            c
        });
    }
    out
}

/// Split an ARN into its six components, or `None` when it has fewer than six.
pub fn arn_parts(s: &str) -> Option<[&str; 6]> {
    let mut it = s.splitn(6, ':');
    let parts = [
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
    ];
    Some(parts)
}

/// True when the pattern has a wildcard character.
pub fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stars_and_questions() {
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b", "ab"));
        assert!(glob_match("a*b", "a-x-b"));
        assert!(!glob_match("a*b", "ba"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("home/é?/*", "home/éx/file"));
        assert!(!glob_match("Home/*", "home/x"));
        assert!(glob_match_ignore_case("s3:Get*", "S3:GETOBJECT"));
        assert!(glob_match_ignore_case(
            "iam:*AccessKey*",
            "iam:CreateAccessKey"
        ));
        assert!(glob_match_escaped("a\\*b*", "a*bcd"));
        assert!(!glob_match_escaped("a\\*b", "axb"));
        let mut e = String::from("home/");
        escape_literal("we?rd*", &mut e);
        e.push('*');
        assert!(glob_match_escaped(&e, "home/we?rd*/x"));
        assert!(!glob_match_escaped(&e, "home/weXrdY/x"));
    }

    #[test]
    fn arn_components_do_not_bleed() {
        assert!(arn_match(
            "arn:aws:s3:::bucket/*",
            "arn:aws:s3:::bucket/a/b:c"
        ));
        assert!(arn_match(
            "arn:aws:iam::*:role/app-*",
            "arn:aws:iam::123456789012:role/app-web"
        ));
        assert!(!arn_match(
            "arn:aws:iam::*:role/app-*",
            "arn:aws:iam::123456789012:user/app-web"
        ));
        // A star in the region component cannot reach into the account.
        assert!(!arn_match(
            "arn:aws:sqs:us-*1:queue",
            "arn:aws:sqs:us-east-1:1:queue"
        ));
        assert!(arn_match(
            "arn:aws:sqs:*:*:queue",
            "arn:aws:sqs:us-east-1:1:queue"
        ));
        assert!(!arn_match("arn:aws:s3:::Bucket", "arn:aws:s3:::bucket"));
        assert!(arn_match("*", "not an arn"));
        assert!(!arn_match("arn:aws:*", "arn:aws:s3:::b"));
        assert!(arn_match(
            "arn:aws:logs:us-east-1:1:log-group:/app:*",
            "arn:aws:logs:us-east-1:1:log-group:/app:log-stream:x"
        ));
    }

    /// A reference matcher: backtracking recursion, obviously correct, exponential in the worst case.
    fn reference(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|i| reference(&p[1..], &t[i..])),
            Some('?') => !t.is_empty() && reference(&p[1..], &t[1..]),
            Some(c) => t.first() == Some(c) && reference(&p[1..], &t[1..]),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(p in "[ab*?é]{0,8}", t in "[abé]{0,10}") {
            let (pc, tc): (Vec<char>, Vec<char>) = (p.chars().collect(), t.chars().collect());
            prop_assert_eq!(glob_match(&p, &t), reference(&pc, &tc));
        }

        #[test]
        fn ignore_case_is_matching_lowercased(p in "[aAbB*?]{0,8}", t in "[aAbB]{0,10}") {
            prop_assert_eq!(glob_match_ignore_case(&p, &t), glob_match(&p.to_lowercase(), &t.to_lowercase()));
        }

        #[test]
        fn a_literal_matches_itself_only(t in "[a-z:/]{0,12}", u in "[a-z:/]{0,12}") {
            prop_assert!(glob_match(&t, &t));
            prop_assert_eq!(glob_match(&t, &u), t == u);
        }

        #[test]
        fn arn_star_components(acct in "[0-9]{12}", name in "[a-z/]{1,10}") {
            let arn = format!("arn:aws:iam::{acct}:role/{name}");
            prop_assert!(arn_match("arn:aws:iam::*:role/*", &arn));
            let (any_in_account, users) = (format!("arn:aws:iam::{acct}:*"), format!("arn:aws:iam::{acct}:user/*"));
            prop_assert!(arn_match(&any_in_account, &arn));
            prop_assert!(!arn_match(&users, &arn));
        }
    }
}
