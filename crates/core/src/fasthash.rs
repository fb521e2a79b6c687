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
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.h = (self.h.rotate_left(23) ^ u64::from_le_bytes(word)).wrapping_mul(M);
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

/// A `HashMap` keyed with [`FastState`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastState>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

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
