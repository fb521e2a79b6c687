//! Small helpers: wall-clock time in the IMDS format, random tokens, a stable hash.

use std::io::Read;

use credwarden_core::EventTime;

/// Now. Wall clock on purpose (see `credwarden_core::clock`): a laptop that slept overnight
/// must see its credentials as expired.
pub(crate) fn now() -> EventTime {
    credwarden_core::clock::now()
}

/// `2024-05-01T12:00:00Z`: whole seconds, `Z`, the form EC2's metadata service writes.
pub(crate) fn imds_time(t: EventTime) -> String {
    let (y, mo, d, h, mi, s) = t.to_parts();
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `n` bytes from the kernel CSPRNG. Fails (never falls back to a weaker generator) when
/// /dev/urandom cannot be read: a guessable token is worse than no token.
pub(crate) fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

/// URL- and header-safe base64 (no padding) of 32 random bytes: 43 characters, 256 bits.
pub(crate) fn random_token() -> std::io::Result<String> {
    Ok(credwarden_core::encoding::Base64::UrlNoPad.encode(&random_bytes(32)?))
}

/// Comparison whose time does not depend on where the inputs differ, for shared secrets
/// (the ECS authorization token).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// First characters of an access key id, enough to recognise it in logs, never the whole key.
pub(crate) fn key_prefix(access_key_id: &str) -> String {
    let p: String = access_key_id.chars().take(8).collect();
    format!("{p}…")
}

/// A message from an untrusted or noisy source cut to one short line.
pub(crate) fn one_line(s: &str, max: usize) -> String {
    let line = s
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut out: String = line.chars().filter(|c| !c.is_control()).take(max).collect();
    if line.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_url_safe() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn time_format_matches_ec2() {
        assert_eq!(
            imds_time(EventTime::from_parts(2024, 5, 1, 12, 3, 4).plus_millis(999)),
            "2024-05-01T12:03:04Z"
        );
    }

    #[test]
    fn helpers() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_eq!(key_prefix("ASIAEXAMPLEKEY123"), "ASIAEXAM…");
        assert_eq!(one_line("\n  boom\nsecret", 10), "boom");
    }
}
