//! Web sessions and sign-ins in progress, held in this process's memory: a session is a
//! random id in a cookie that maps to the user, the groups the identity provider asserted,
//! a CSRF token and an expiry. Nothing in the cookie is trusted but the id's presence in
//! the map. Replicas do not share sessions (sticky sessions, or users sign in again).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use credwarden_core::encoding::Base64;
use ring::rand::{SecureRandom, SystemRandom};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "credwarden_session";
/// The cookie that binds a sign-in in progress to the browser that started it.
pub const LOGIN_COOKIE: &str = "credwarden_login";
/// How long a sign-in may take at the identity provider.
pub const LOGIN_SECONDS: u64 = 600;
/// Sign-ins in progress held at most: they are made by unauthenticated requests, so they
/// are bounded, and the oldest expired ones swept when the bound is reached.
const MAX_PENDING: usize = 10_000;
/// Sessions held at most.
const MAX_SESSIONS: usize = 100_000;

/// `n` random bytes, base64url: ids, CSRF tokens, `state`, `nonce`, PKCE verifiers.
pub fn random(n: usize) -> String {
    let mut b = vec![0u8; n];
    SystemRandom::new().fill(&mut b).expect("system randomness");
    Base64::UrlNoPad.encode(&b)
}

/// Compare a presented secret with the expected one in time that does not depend on where
/// they differ (both are hashed first, so their lengths do not leak either).
pub fn same_secret(expected: &str, presented: &str) -> bool {
    use sha2::Digest;
    let a: [u8; 32] = sha2::Sha256::digest(expected.as_bytes()).into();
    let b: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A signed-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    pub user: String,
    pub idp_groups: BTreeSet<String>,
    /// Every state-changing form carries it; compared with [`same_secret`].
    pub csrf: String,
    pub expires: Instant,
}

/// A sign-in sent to the identity provider and not yet back.
#[derive(Clone, Debug)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    pending: Mutex<HashMap<String, Pending>>,
}

/// The store is full even after expired entries went.
#[derive(Debug, thiserror::Error)]
#[error("too many {0} in progress")]
pub struct Full(&'static str);

impl Sessions {
    /// Start a sign-in: the id for the login cookie and what to send the provider.
    pub fn begin(&self) -> Result<(String, Pending), Full> {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_PENDING {
            map.retain(|_, p| p.expires > now);
            if map.len() >= MAX_PENDING {
                return Err(Full("sign-ins"));
            }
        }
        let pending = Pending {
            state: random(24),
            nonce: random(24),
            verifier: random(48),
            expires: now + Duration::from_secs(LOGIN_SECONDS),
        };
        let id = random(32);
        map.insert(id.clone(), pending.clone());
        Ok((id, pending))
    }

    /// Take the sign-in a login cookie names: once only, and only while it is fresh.
    pub fn take_pending(&self, id: &str) -> Option<Pending> {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id).filter(|p| p.expires > Instant::now())
    }

    /// A new session for a verified user; its id (for the cookie).
    pub fn create(
        &self,
        user: String,
        idp_groups: BTreeSet<String>,
        lifetime: Duration,
    ) -> Result<String, Full> {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires > now);
            if map.len() >= MAX_SESSIONS {
                return Err(Full("sessions"));
            }
        }
        let id = random(32);
        map.insert(
            id.clone(),
            Session {
                user,
                idp_groups,
                csrf: random(32),
                expires: now + lifetime,
            },
        );
        Ok(id)
    }

    /// The live session an id names; an expired one is removed.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
    }
}

/// The value of cookie `name` in the request's Cookie headers; a name given twice is
/// ambiguous (a sibling domain may plant a cookie) and counts as absent.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    let mut found = Vec::new();
    for value in headers.get_all(axum::http::header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == name {
                    found.push(v.to_owned());
                }
            }
        }
    }
    match found.as_slice() {
        [one] if !one.is_empty() => Some(one.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        for wrong in ["", "ab", "abcd", "abd", "ABC"] {
            assert!(!same_secret("abc", wrong), "{wrong}");
        }
    }

    #[test]
    fn pending_sign_ins_are_single_use_and_sessions_expire() {
        let s = Sessions::default();
        let (id, p) = s.begin().unwrap();
        assert_eq!(s.take_pending(&id).unwrap().state, p.state);
        assert!(s.take_pending(&id).is_none(), "a sign-in is taken once");
        let sid = s
            .create("alice".into(), BTreeSet::new(), Duration::from_secs(60))
            .unwrap();
        assert_eq!(s.get(&sid).unwrap().user, "alice");
        assert!(s.get("other").is_none());
        s.remove(&sid);
        assert!(s.get(&sid).is_none());
        let gone = s
            .create("bob".into(), BTreeSet::new(), Duration::ZERO)
            .unwrap();
        assert!(s.get(&gone).is_none(), "an expired session is no session");
    }

    #[test]
    fn a_cookie_given_twice_is_no_cookie() {
        let mut h = axum::http::HeaderMap::new();
        h.append("cookie", "a=1; credwarden_session=x".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("x"));
        h.append("cookie", "credwarden_session=y".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), None);
    }
}
