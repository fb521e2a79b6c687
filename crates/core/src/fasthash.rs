//! A fast keyed hash for the per-record maps (eventIDs, access key ids, instance keys): the
//! detectors' maps, and the eventID hash the decoders compute for the engine's duplicate
//! check (see `cloudtrail::Record::event_id_hash`). SipHash, the standard library's default, is built to resist hash flooding at a cost
//! that shows on the ingest path; this hash keeps the resistance that matters here — the key
//! is random per process, so nobody can precompute colliding ids — and hashes a 20-byte key
//! in a few multiplications.

use std::hash::{BuildHasher, Hasher};

/// Builds [`FastHasher`]s with one random key per map.
#[derive(Clone)]
pub struct FastState {
    key: u64,
}

impl Default for FastState {
    fn default() -> Self {
        // RandomState carries the OS's randomness; use it to key ours.
        FastState {
            key: std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64),
        }
    }
}

impl FastState {
    /// A state with a given key (to rebuild hashes saved by an earlier run).
    #[inline]
    pub fn with_key(key: u64) -> FastState {
        FastState { key }
    }

    #[inline]
    pub fn key(&self) -> u64 {
        self.key
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;
    #[inline]
    fn build_hasher(&self) -> FastHasher {
        FastHasher { h: self.key }
    }
}

pub struct FastHasher {
    h: u64,
}

const M: u64 = 0x517c_c1b7_2722_0a95;

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.h = (self.h.rotate_left(23) ^ u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .wrapping_mul(M);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            self.h = (self.h.rotate_left(23) ^ tail_word(rest)).wrapping_mul(M);
        }
        self.h = (self.h ^ bytes.len() as u64).wrapping_mul(M);
    }
    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.h = (self.h.rotate_left(23) ^ u64::from(v)).wrapping_mul(M);
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.h = (self.h.rotate_left(23) ^ v).wrapping_mul(M);
    }
    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.h ^ (self.h >> 29)
    }
}

/// The 1–7 bytes of `rest` as a little-endian word, zero above them. Copying them into a
/// zeroed `[u8; 8]` is a `memcpy` call of a length known only at run time, on every string
/// hashed; two overlapping fixed-size reads make the same word without one. (The value must
/// not change: eventID hashes are saved with their key and compared in the next run.)
#[inline]
fn tail_word(rest: &[u8]) -> u64 {
    let n = rest.len();
    debug_assert!((1..8).contains(&n));
    let (lo, hi, width) = if n >= 4 {
        let lo = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let hi = u32::from_le_bytes([rest[n - 4], rest[n - 3], rest[n - 2], rest[n - 1]]);
        (u64::from(lo), u64::from(hi), 4)
    } else if n >= 2 {
        let lo = u16::from_le_bytes([rest[0], rest[1]]);
        let hi = u16::from_le_bytes([rest[n - 2], rest[n - 1]]);
        (u64::from(lo), u64::from(hi), 2)
    } else {
        (u64::from(rest[0]), u64::from(rest[0]), 1)
    };
    // The two reads overlap in the middle; there they hold the same bytes.
    lo | (hi << (8 * (n - width)))
}

/// A `HashMap` keyed with [`FastState`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastState>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    /// [`FastState::with_key`]`(0x0123_4567_89ab_cdef)` of the strings below, from the
    /// version that copied the tail into a zeroed word.
    const STABLE: [u64; 6] = [
        7798979332770575350,
        15634721795162026003,
        10372885172378419079,
        17778583955534168786,
        6808962581403316524,
        14788471304980892234,
    ];

    #[test]
    fn a_tail_is_the_zero_padded_word() {
        let bytes = [0x01u8, 0x82, 0x03, 0xf4, 0x05, 0x06, 0xa7];
        for n in 1..8 {
            let mut word = [0u8; 8];
            word[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(
                tail_word(&bytes[..n]),
                u64::from_le_bytes(word),
                "{n} bytes"
            );
        }
    }

    /// The hash of a few strings under a fixed key, as computed before the tail was read
    /// without a copy: saved eventID hashes are compared with new ones across runs.
    #[test]
    fn the_hash_is_stable_across_versions() {
        let s = FastState::with_key(0x0123_4567_89ab_cdef);
        let got: Vec<u64> = [
            "",
            "a",
            "abc",
            "abcdefg",
            "abcdefgh",
            "ASIAEXAMPLE0123456789",
        ]
        .iter()
        .map(|k| s.hash_one(k))
        .collect();
        assert_eq!(got, STABLE);
    }

    #[test]
    fn keyed_and_spread() {
        let (a, b) = (FastState::default(), FastState::default());
        assert_ne!(
            a.hash_one("ASIAEXAMPLE"),
            b.hash_one("ASIAEXAMPLE"),
            "keys differ per map"
        );
        assert_eq!(a.hash_one("ASIAEXAMPLE"), a.hash_one("ASIAEXAMPLE"));
        let buckets: std::collections::HashSet<u64> = (0..10_000)
            .map(|i| a.hash_one(format!("ASIA{i:016}")) >> 52)
            .collect();
        assert!(
            buckets.len() > 3_000,
            "top bits poorly spread: {}",
            buckets.len()
        );
    }
}
