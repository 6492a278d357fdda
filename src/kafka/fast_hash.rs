//! A fast hash (FxHash's: rotate, xor, multiply, a word at a time) for the
//! hot path's maps whose size input cannot grow past a bound: the
//! in-flight map's slots (numbers handed out in sequence), the routed
//! types (capped by `output.max_topics`) and their metric handles. SipHash,
//! std's default, defends a map into which input inserts without bound
//! against keys chosen to collide; in a map of bounded size a collision
//! costs at most that bound, and SipHash cost every record two or three
//! hashes of its type name and slot.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` hashed with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// FxHash's hasher (rustc's): one rotate, xor and multiply per word.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

/// FxHash's multiplier (2^64 / the golden ratio, odd): it spreads a word
/// into the top bits, which hashbrown probes with.
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_equal_and_near_keys_apart() {
        let mut map: FastMap<String, usize> = FastMap::default();
        let types = ["connection.failed", "connection.faileD", "a", "", "a\0"];
        for (i, t) in types.iter().enumerate() {
            map.insert((*t).to_owned(), i);
        }
        for (i, t) in types.iter().enumerate() {
            assert_eq!(map.get(*t), Some(&i));
        }
        let slots: FastMap<usize, usize> = (0..10_000).map(|s| (s, s * 2)).collect();
        assert!((0..10_000).all(|s| slots.get(&s) == Some(&(s * 2))));
    }
}
