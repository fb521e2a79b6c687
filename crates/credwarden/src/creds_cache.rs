//! The credential cache of `credwarden creds`: each role's credentials, kept until five
//! minutes before they expire, so a shell loop of `credential_process` calls asks the broker
//! once (not once per call, which would hit its per-user rate limit within a minute).
//!
//! An entry is one private file (0600, in the 0700 `credentials/` folder of the cache; see
//! [`crate::user_files`]) named by a SHA-256 over the broker's URL, the user (the token's
//! issuer and subject, or the token itself when it is not a JWT), the role and the asked
//! duration: one person's entry is never another's, and the output format (exports,
//! `--process`, `--json`) does not matter. An entry that cannot be parsed, or that is not
//! private, is ignored and replaced — never fatal: the broker is asked instead.

use std::path::PathBuf;

use anyhow::Result;

use crate::user_files;

/// Entries are used until this long before they expire.
pub const MARGIN_SECONDS: i64 = 300;

/// The credentials as the broker's JSON gives them (secret: `Issued`'s `Debug` shows only
/// the key id and expiry).
pub type Credentials = broker::Issued;

/// Seconds until `c` expires (negative once expired; None if unreadable).
pub fn seconds_left(c: &Credentials) -> Option<i64> {
    let exp = credwarden_core::EventTime::parse_expiration(&c.expiration)?;
    Some((exp.0 - credwarden_core::clock::now_millis()) / 1000)
}

fn folder() -> Result<PathBuf> {
    Ok(user_files::cache_dir()?.join("credentials"))
}

/// The user a token names, for the key: `iss` and `sub` of a JWT (so a refreshed token keeps
/// the entries), else a digest of the token.
fn user_key(token: &str) -> String {
    let claims = crate::login_cmd::jwt_claims(token);
    let s = |k: &str| {
        claims
            .as_ref()
            .and_then(|c| c.get(k))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    match (s("iss"), s("sub")) {
        (Some(iss), Some(sub)) => format!("{iss}\n{sub}"),
        _ => credwarden_core::encoding::hex(
            ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref(),
        ),
    }
}

/// The entry's file for this broker, user, role and duration.
pub fn entry(broker: &str, token: &str, role: &str, duration: Option<i32>) -> Result<PathBuf> {
    let key = format!(
        "credwarden-creds-v1\n{}\n{}\n{role}\n{}",
        broker.trim_end_matches('/'),
        user_key(token),
        duration.unwrap_or(0)
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    Ok(folder()?.join(format!(
        "{}.json",
        credwarden_core::encoding::hex(digest.as_ref())
    )))
}

/// The cached credentials at `path` if they last more than [`MARGIN_SECONDS`]. A damaged,
/// unreadable or not-private entry is reported on stderr (never its content) and treated as
/// missing; the next write replaces it.
pub fn get(path: &std::path::Path) -> Option<Credentials> {
    let bytes = match user_files::read_private(path) {
        Ok(b) => b?,
        Err(e) => {
            eprintln!("credwarden: ignoring the cached credentials: {e}");
            return None;
        }
    };
    let Ok(c) = serde_json::from_slice::<Credentials>(&bytes) else {
        eprintln!(
            "credwarden: {} is damaged; asking the broker again",
            path.display()
        );
        return None;
    };
    (seconds_left(&c)? > MARGIN_SECONDS).then_some(c)
}

/// Keep `c` at `path` (0600, replaced atomically).
pub fn put(path: &std::path::Path, c: &Credentials) -> Result<()> {
    // A planted file or link at the name is replaced, not written through.
    user_files::write_private(path, &serde_json::to_vec(c)?)
}

/// Remove every cached credential; how many were removed.
pub fn clear() -> Result<usize> {
    let dir = folder()?;
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut n = 0;
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().ends_with(".json") && user_files::remove(&e.path())? {
            n += 1;
        }
    }
    Ok(n)
}
