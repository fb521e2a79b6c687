//! Who is asking: OIDC/JWT bearer tokens verified against a JWKS, or an identity header set
//! by an authenticating reverse proxy that the broker trusts only from configured addresses.
//!
//! The JWT verifier is deliberately small: RS256 and ES256 only (what identity providers
//! sign ID and access tokens with), the algorithm must match the key type (no `none`, no
//! HMAC with a public key as secret), the key is chosen by `kid`, and `iss`, `aud`, `exp`
//! and `nbf` are checked with a bounded clock leeway. Anything else is refused.

use std::collections::BTreeSet;
use std::net::IpAddr;

use credwarden_core::encoding::Base64;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

use crate::error::AuthError;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    /// Every group: the identity provider's and, once the broker adds them, the directory's.
    pub groups: BTreeSet<String>,
    /// The groups the identity provider asserted (token claim or proxy header). The audit
    /// records them apart: `access prune` cannot remove them, only report them.
    pub idp_groups: BTreeSet<String>,
}

/// One verification key from a JWKS.
#[derive(Clone, Debug)]
enum Key {
    Rsa {
        kid: Option<String>,
        n: Vec<u8>,
        e: Vec<u8>,
    },
    P256 {
        kid: Option<String>,
        point: Vec<u8>,
    },
}

impl Key {
    fn kid(&self) -> Option<&str> {
        match self {
            Key::Rsa { kid, .. } | Key::P256 { kid, .. } => kid.as_deref(),
        }
    }
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// A parsed JWKS.
#[derive(Clone, Debug, Default)]
pub struct Jwks {
    keys: Vec<Key>,
}

impl Jwks {
    /// Parse a JWKS document. Keys of other types (or for encryption) are skipped; a set
    /// with no usable key is an error, so a broken file never means "accept nothing silently".
    pub fn parse(text: &str) -> Result<Jwks, AuthError> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<Jwk>,
        }
        let doc: Doc = serde_json::from_str(text).map_err(|e| AuthError::Jwks(e.to_string()))?;
        let b64 = |s: &Option<String>, what: &str| -> Result<Vec<u8>, AuthError> {
            let s = s
                .as_deref()
                .ok_or_else(|| AuthError::Jwks(format!("key lacks {what}")))?;
            Base64::UrlNoPad
                .decode(s.trim_end_matches('='))
                .ok_or_else(|| AuthError::Jwks(format!("{what} is not base64url")))
        };
        let mut keys = Vec::new();
        for k in doc.keys {
            if k.usage.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            match (k.kty.as_str(), k.crv.as_deref()) {
                ("RSA", _) => keys.push(Key::Rsa {
                    n: b64(&k.n, "n")?,
                    e: b64(&k.e, "e")?,
                    kid: k.kid,
                }),
                ("EC", Some("P-256")) => {
                    let (x, y) = (b64(&k.x, "x")?, b64(&k.y, "y")?);
                    if x.len() != 32 || y.len() != 32 {
                        return Err(AuthError::Jwks("P-256 coordinates must be 32 bytes".into()));
                    }
                    let mut point = vec![4u8];
                    point.extend(x);
                    point.extend(y);
                    keys.push(Key::P256 { point, kid: k.kid });
                }
                _ => {}
            }
        }
        if keys.is_empty() {
            return Err(AuthError::Jwks("no RS256 or ES256 signing key".into()));
        }
        Ok(Jwks { keys })
    }
}

/// What a valid token must say.
#[derive(Clone, Debug)]
pub struct JwtRules {
    pub issuer: String,
    pub audience: String,
    /// Claim naming the user (`sub`, `email`, `preferred_username`).
    pub user_claim: String,
    /// Claim listing groups: a JSON array taken as it is, or a string that is one group
    /// unless `groups_delimiter` is set.
    pub groups_claim: String,
    pub groups_delimiter: Option<String>,
    pub leeway_seconds: i64,
}

/// Verify a compact JWT and return the caller it names.
pub fn verify_jwt(
    token: &str,
    jwks: &Jwks,
    rules: &JwtRules,
    now_secs: i64,
) -> Result<Caller, AuthError> {
    if token.len() > 16 * 1024 {
        return Err(AuthError::Invalid("token too large"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Invalid(
            "not a compact JWS (three dot-separated parts)",
        ));
    };
    let decode = |s: &str| {
        Base64::UrlNoPad
            .decode(s)
            .ok_or(AuthError::Invalid("a part is not base64url"))
    };
    let header: Value = serde_json::from_slice(&decode(h)?)
        .map_err(|_| AuthError::Invalid("header is not JSON"))?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = header.get("kid").and_then(Value::as_str);
    if header.get("crit").is_some() {
        return Err(AuthError::Invalid(
            "critical header extensions are not supported",
        ));
    }
    let candidates: Vec<&Key> = jwks
        .keys
        .iter()
        .filter(|k| match alg {
            "RS256" => matches!(k, Key::Rsa { .. }),
            "ES256" => matches!(k, Key::P256 { .. }),
            _ => false,
        })
        .filter(|k| kid.is_none() || k.kid() == kid)
        .collect();
    if !matches!(alg, "RS256" | "ES256") {
        return Err(AuthError::Invalid(
            "algorithm not allowed (RS256 and ES256 only)",
        ));
    }
    let key = match (candidates.as_slice(), kid) {
        ([one], _) => *one,
        ([], _) => return Err(AuthError::UnknownKey),
        (_, None) => {
            return Err(AuthError::Invalid(
                "the token has no kid and the JWKS has several keys",
            ))
        }
        (many, Some(_)) => many[0],
    };
    let message = &token.as_bytes()[..h.len() + 1 + p.len()];
    let sig = decode(sig)?;
    let ok = match key {
        Key::Rsa { n, e, .. } => RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, &sig)
            .is_ok(),
        Key::P256 { point, .. } => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, &sig)
                .is_ok()
        }
    };
    if !ok {
        return Err(AuthError::Invalid("bad signature"));
    }
    let claims: Value = serde_json::from_slice(&decode(p)?)
        .map_err(|_| AuthError::Invalid("payload is not JSON"))?;
    if claims.get("iss").and_then(Value::as_str) != Some(rules.issuer.as_str()) {
        return Err(AuthError::Invalid("wrong issuer"));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == rules.audience,
        Some(Value::Array(list)) => list
            .iter()
            .any(|a| a.as_str() == Some(rules.audience.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err(AuthError::Invalid("wrong audience"));
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(AuthError::Invalid("no exp claim"))?;
    // Saturating: an IdP may write a far-future exp, and i64::MAX + leeway must not wrap.
    if now_secs > exp.saturating_add(rules.leeway_seconds) {
        return Err(AuthError::Invalid("token expired"));
    }
    match claims.get("nbf") {
        None => {}
        Some(v) => match v.as_i64() {
            Some(nbf) if now_secs.saturating_add(rules.leeway_seconds) < nbf => {
                return Err(AuthError::Invalid("token not yet valid"))
            }
            Some(_) => {}
            None => return Err(AuthError::Invalid("nbf is not a number")),
        },
    }
    let user = claims
        .get(&rules.user_claim)
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or(AuthError::Invalid("no user claim"))?;
    // An email address names a person only when the identity provider verified it; where
    // users can set their own, an unverified one would let them take another's groups.
    if rules.user_claim == "email"
        && claims.get("email_verified").and_then(Value::as_bool) != Some(true)
    {
        return Err(AuthError::Invalid(
            "email is not verified (email_verified must be true)",
        ));
    }
    let groups = match claims.get(&rules.groups_claim) {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => match rules.groups_delimiter.as_deref() {
            Some(d) => split_groups(s, d),
            None => split_groups(s, ""),
        },
        _ => BTreeSet::new(),
    };
    Ok(Caller {
        user: user.to_owned(),
        idp_groups: groups.clone(),
        groups,
    })
}

/// Groups written as one string (a groups header, or a string claim): split on `delimiter`
/// only, each part trimmed, empty parts dropped; everything else in a name is kept as it is
/// (spaces, colons, slashes: `Former admins` and `acme:security` are one group each). An
/// empty delimiter means the whole string is one group.
pub fn split_groups(s: &str, delimiter: &str) -> BTreeSet<String> {
    let parts: Vec<&str> = if delimiter.is_empty() {
        vec![s]
    } else {
        s.split(delimiter).collect()
    };
    parts
        .into_iter()
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The groups named in a role's tag value: separated by `delimiter`, or by whitespace when
/// none is configured (IAM tag values allow no comma). Colons and slashes stay in the name.
pub fn tag_groups(value: &str, delimiter: Option<&str>) -> BTreeSet<String> {
    match delimiter {
        Some(d) if !d.is_empty() => split_groups(value, d),
        _ => value.split_whitespace().map(str::to_owned).collect(),
    }
}

/// A secret shared between the authenticating proxy and the broker, kept as its SHA-256 so
/// that comparing takes the same time whatever the presented value (length included).
#[derive(Clone)]
pub struct ProxySecret([u8; 32]);

impl ProxySecret {
    /// The secret's text; too short a secret is refused.
    pub fn new(secret: &str) -> Result<ProxySecret, AuthError> {
        if secret.len() < 16 {
            return Err(AuthError::WeakSecret);
        }
        Ok(ProxySecret(digest(secret.as_bytes())))
    }

    /// Constant-time comparison of a presented value with the secret.
    pub fn matches(&self, presented: &str) -> bool {
        let other = digest(presented.as_bytes());
        let diff = self
            .0
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl std::fmt::Debug for ProxySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxySecret(..)")
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// The identity-header mode: the reverse proxy in front authenticated the user.
#[derive(Clone, Debug)]
pub struct HeaderRules {
    pub user_header: String,
    pub groups_header: Option<String>,
    /// What separates groups in the groups header (`,` by default).
    pub groups_delimiter: String,
    /// When set, every request must carry the proxy's secret in `secret_header`.
    pub secret: Option<ProxySecret>,
    pub secret_header: String,
    pub trusted_proxies: Vec<credwarden_core::Cidr>,
}

/// Read the caller from headers, only when the TCP peer is a trusted proxy and, when a
/// proxy secret is configured, the request carries it.
pub fn from_headers(
    peer: IpAddr,
    secret: Option<&str>,
    user: Option<&str>,
    groups: Option<&str>,
    rules: &HeaderRules,
) -> Result<Caller, AuthError> {
    if !rules.trusted_proxies.iter().any(|c| c.contains(peer)) {
        return Err(AuthError::UntrustedProxy(peer.to_string()));
    }
    if let Some(expected) = &rules.secret {
        if !secret.is_some_and(|s| expected.matches(s)) {
            return Err(AuthError::ProxySecret);
        }
    }
    let user = user
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or(AuthError::Missing)?;
    let groups: BTreeSet<String> = groups
        .map(|g| split_groups(g, &rules.groups_delimiter))
        .unwrap_or_default();
    Ok(Caller {
        user: user.to_owned(),
        idp_groups: groups.clone(),
        groups,
    })
}

/// A local identity provider for tests and benchmarks: an ES256 key, its JWKS, and the
/// tokens it signs. Never used by the broker itself.
pub mod testing {
    use credwarden_core::encoding::Base64;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::{json, Value};

    /// A test identity provider: an ES256 key, its JWKS, and tokens it signs.
    pub struct TestIdp {
        key: EcdsaKeyPair,
        pub jwks: String,
    }

    impl TestIdp {
        pub fn new(kid: &str) -> TestIdp {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let key =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            let point = key.public_key().as_ref();
            let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                "x": Base64::UrlNoPad.encode(&point[1..33]), "y": Base64::UrlNoPad.encode(&point[33..65])}]})
            .to_string();
            TestIdp { key, jwks }
        }

        pub fn sign(&self, header: Value, claims: Value) -> String {
            let msg = format!(
                "{}.{}",
                Base64::UrlNoPad.encode(header.to_string().as_bytes()),
                Base64::UrlNoPad.encode(claims.to_string().as_bytes())
            );
            let sig = self.key.sign(&SystemRandom::new(), msg.as_bytes()).unwrap();
            format!("{msg}.{}", Base64::UrlNoPad.encode(sig.as_ref()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::TestIdp;
    use super::*;
    use serde_json::json;

    fn rules() -> JwtRules {
        JwtRules {
            issuer: "https://idp.test".into(),
            audience: "credwarden".into(),
            user_claim: "sub".into(),
            groups_claim: "groups".into(),
            groups_delimiter: None,
            leeway_seconds: 60,
        }
    }

    #[test]
    fn tokens_are_checked_strictly() {
        let idp = TestIdp::new("k1");
        let jwks = Jwks::parse(&idp.jwks).unwrap();
        let now = 1_800_000_000;
        let claims = json!({"iss": "https://idp.test", "aud": ["credwarden", "other"], "sub": "alice", "exp": now + 600, "groups": ["payments", "dev"]});
        let good = idp.sign(json!({"alg": "ES256", "kid": "k1"}), claims.clone());
        let caller = verify_jwt(&good, &jwks, &rules(), now).unwrap();
        assert_eq!(caller.user, "alice");
        assert!(caller.groups.contains("payments"));

        let with = |k: &str, v: Value| {
            let mut c = claims.clone();
            c[k] = v;
            idp.sign(json!({"alg": "ES256", "kid": "k1"}), c)
        };
        let cases = [
            (with("iss", json!("https://evil.test")), "issuer"),
            (with("aud", json!("someone-else")), "audience"),
            (with("exp", json!(now - 120)), "expired"),
            (with("nbf", json!(now + 600)), "not yet valid"),
            (with("nbf", json!("soon")), "nbf is not a number"),
            (
                idp.sign(json!({"alg": "ES256", "kid": "other"}), claims.clone()),
                "no key",
            ),
            (
                idp.sign(json!({"alg": "HS256", "kid": "k1"}), claims.clone()),
                "algorithm",
            ),
            (
                idp.sign(json!({"alg": "none"}), claims.clone()),
                "algorithm",
            ),
            (
                format!("{}.", good.rsplit_once('.').unwrap().0),
                "signature",
            ),
            ("a.b".to_owned(), "three"),
        ];
        for (token, want) in cases {
            let e = verify_jwt(&token, &jwks, &rules(), now)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        // A token signed by another key with the same kid.
        let impostor =
            TestIdp::new("k1").sign(json!({"alg": "ES256", "kid": "k1"}), claims.clone());
        assert!(verify_jwt(&impostor, &jwks, &rules(), now)
            .unwrap_err()
            .to_string()
            .contains("signature"));
        // An email claim counts only when verified.
        let email_rules = JwtRules {
            user_claim: "email".into(),
            ..rules()
        };
        let unverified = with("email", json!("alice@example.com"));
        assert!(verify_jwt(&unverified, &jwks, &email_rules, now)
            .unwrap_err()
            .to_string()
            .contains("not verified"));
        let mut verified = claims.clone();
        verified["email"] = json!("alice@example.com");
        verified["email_verified"] = json!(true);
        let verified = idp.sign(json!({"alg": "ES256", "kid": "k1"}), verified);
        assert_eq!(
            verify_jwt(&verified, &jwks, &email_rules, now)
                .unwrap()
                .user,
            "alice@example.com"
        );
        // Within the leeway an expiry just passed is still fine.
        let just = with("exp", json!(now - 30));
        assert!(verify_jwt(&just, &jwks, &rules(), now).is_ok());
    }

    fn header_rules() -> HeaderRules {
        HeaderRules {
            user_header: "x-user".into(),
            groups_header: Some("x-groups".into()),
            groups_delimiter: ",".into(),
            secret: None,
            secret_header: "x-credwarden-proxy-secret".into(),
            trusted_proxies: vec![credwarden_core::Cidr::parse("10.0.0.0/8").unwrap()],
        }
    }

    #[test]
    fn headers_only_from_trusted_proxies() {
        let rules = header_rules();
        let proxy = "10.1.2.3".parse().unwrap();
        let c = from_headers(proxy, None, Some("bob"), Some("a, b:c ,, d/e "), &rules).unwrap();
        assert_eq!(
            c.groups.into_iter().collect::<Vec<_>>(),
            ["a", "b:c", "d/e"]
        );
        assert!(matches!(
            from_headers(
                "192.0.2.1".parse().unwrap(),
                None,
                Some("bob"),
                None,
                &rules
            ),
            Err(AuthError::UntrustedProxy(_))
        ));
        assert!(matches!(
            from_headers(proxy, None, Some(" "), None, &rules),
            Err(AuthError::Missing)
        ));
    }

    /// Issue 12, item 1: group names are kept whole — spaces, colons and slashes included.
    #[test]
    fn group_names_are_not_split_on_colons_or_spaces() {
        let hr = header_rules();
        let proxy = "10.1.2.3".parse().unwrap();
        let groups = |header: &str| {
            from_headers(proxy, None, Some("bob"), Some(header), &hr)
                .unwrap()
                .groups
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(groups("Former admins"), ["Former admins"]);
        assert_eq!(groups("acme:security"), ["acme:security"]);
        assert_eq!(
            groups(" org:team/sub , Domain Users"),
            ["Domain Users", "org:team/sub"]
        );
        let semicolons = HeaderRules {
            groups_delimiter: ";".into(),
            ..header_rules()
        };
        let c = from_headers(proxy, None, Some("bob"), Some("a, b; c"), &semicolons).unwrap();
        assert_eq!(c.groups.into_iter().collect::<Vec<_>>(), ["a, b", "c"]);

        // A token's string claim is one group; an array is taken as it is; a configured
        // delimiter splits a string claim.
        let idp = TestIdp::new("k1");
        let jwks = Jwks::parse(&idp.jwks).unwrap();
        let now = 1_800_000_000;
        let token = |groups: Value| {
            idp.sign(
                json!({"alg": "ES256", "kid": "k1"}),
                json!({"iss": "https://idp.test", "aud": "credwarden", "sub": "bob",
                    "exp": now + 600, "groups": groups}),
            )
        };
        let claim = |t: &str, r: &JwtRules| {
            let c = verify_jwt(t, &jwks, r, now).unwrap();
            c.groups.into_iter().collect::<Vec<_>>()
        };
        assert_eq!(
            claim(&token(json!("Former admins")), &rules()),
            ["Former admins"]
        );
        assert_eq!(
            claim(&token(json!("acme:security")), &rules()),
            ["acme:security"]
        );
        assert_eq!(
            claim(&token(json!(["acme:security", "Former admins"])), &rules()),
            ["Former admins", "acme:security"]
        );
        let comma = JwtRules {
            groups_delimiter: Some(",".into()),
            ..rules()
        };
        assert_eq!(claim(&token(json!("a b, c:d")), &comma), ["a b", "c:d"]);
        // Role tags: spaces separate unless a delimiter is configured; colons stay.
        let tag: Vec<String> = tag_groups("payments org:team", None).into_iter().collect();
        assert_eq!(tag, ["org:team", "payments"]);
        let tag: Vec<String> = tag_groups("Domain Admins+ops", Some("+"))
            .into_iter()
            .collect();
        assert_eq!(tag, ["Domain Admins", "ops"]);
    }

    #[test]
    fn the_proxy_secret_is_required_when_configured() {
        assert!(matches!(
            ProxySecret::new("short"),
            Err(AuthError::WeakSecret)
        ));
        let rules = HeaderRules {
            secret: Some(ProxySecret::new("0123456789abcdef-proxy").unwrap()),
            ..header_rules()
        };
        let proxy = "10.1.2.3".parse().unwrap();
        for wrong in [
            None,
            Some(""),
            Some("0123456789abcdef-prox"),
            Some("0123456789abcdef-proxyx"),
        ] {
            assert!(
                matches!(
                    from_headers(proxy, wrong, Some("bob"), None, &rules),
                    Err(AuthError::ProxySecret)
                ),
                "{wrong:?}"
            );
        }
        assert!(from_headers(
            proxy,
            Some("0123456789abcdef-proxy"),
            Some("bob"),
            None,
            &rules
        )
        .is_ok());
        assert!(!format!("{rules:?}").contains("0123456789abcdef"));
    }

    /// Issue 12: `exp + leeway` must saturate, not overflow (a panic in debug builds).
    #[test]
    fn far_future_times_do_not_overflow() {
        let idp = TestIdp::new("k1");
        let jwks = Jwks::parse(&idp.jwks).unwrap();
        let now = 1_800_000_000;
        let base = json!({"iss": "https://idp.test", "aud": "credwarden", "sub": "bob"});
        let mut far = base.clone();
        far["exp"] = json!(i64::MAX);
        let t = idp.sign(json!({"alg": "ES256", "kid": "k1"}), far.clone());
        assert!(verify_jwt(&t, &jwks, &rules(), now).is_ok());
        far["nbf"] = json!(i64::MAX);
        let t = idp.sign(json!({"alg": "ES256", "kid": "k1"}), far);
        assert!(verify_jwt(&t, &jwks, &rules(), now).is_err());
        let mut early = base;
        early["exp"] = json!(now + 600);
        early["nbf"] = json!(i64::MIN);
        let t = idp.sign(json!({"alg": "ES256", "kid": "k1"}), early);
        assert!(verify_jwt(&t, &jwks, &rules(), i64::MAX - 10).is_err());
    }

    #[test]
    fn jwks_parsing() {
        assert!(Jwks::parse(r#"{"keys":[]}"#).is_err());
        assert!(
            Jwks::parse(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).is_err(),
            "symmetric keys are never used"
        );
        assert!(Jwks::parse("not json").is_err());
    }
}
