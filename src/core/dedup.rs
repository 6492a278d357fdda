//! Which event ids were already produced within the de-duplication window.
//!
//! Codat delivers at least once and retries a webhook up to 8 times over
//! about 28 hours with the same id; the window (7 days by default) covers
//! that span. Each id is kept as a fixed-size digest (the first 16 bytes of
//! its SHA-256: stable across versions, since it is persisted in the
//! changelog, and wide enough that two ids colliding within a window of
//! ten million is about 1 in 10^23) and the second it was first seen, by
//! the ingest record's timestamp, never the wall clock, so a replayed
//! backlog behaves as it did live. Ids are compared byte for byte: ids
//! that differ only in case are different ids.
//!
//! Memory: a hash table of (16-byte digest, 4-byte second) entries, about
//! 29 bytes per id (measured in the tests). Bounded by `max_ids`: when
//! full, expired ids are swept; if it is still full, new ids are not
//! remembered (their copies pass through: at-least-once is kept, a
//! duplicate becomes possible) and [`Remember::Full`] says so.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use sha2::{Digest as _, Sha256};

/// The fixed-size digest of an event id.
pub type IdDigest = [u8; 16];

/// The digest of `id`: the first 16 bytes of its SHA-256.
pub fn digest(id: &str) -> IdDigest {
    let full = Sha256::digest(id.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// What became of an id offered to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remember {
    /// Not seen within the window: remembered now; produce the event.
    New,
    /// Seen within the window: a copy; do not produce it again.
    Duplicate,
    /// Not seen, but the window is full: produce it, not remembered.
    Full,
}

/// The ids seen within a window, for one ingest partition.
#[derive(Debug)]
pub struct DedupWindow {
    window_secs: u32,
    seen: HashMap<IdDigest, u32, BuildHasherDefault<DigestHasher>>,
    /// The newest ingest second seen: what expiry is measured against.
    now_secs: u32,
    /// When expired ids were last swept.
    swept_at: u32,
}

impl DedupWindow {
    /// An empty window of `window_ms`.
    pub fn new(window_ms: u64) -> Self {
        DedupWindow {
            window_secs: u32::try_from(window_ms / 1000).unwrap_or(u32::MAX),
            seen: HashMap::default(),
            now_secs: 0,
            swept_at: 0,
        }
    }

    /// Ids remembered (some may have expired and not been swept yet).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Offers `id` seen at `timestamp_ms` (the ingest record's); `room`
    /// says whether another id may be remembered (the caller's budget).
    pub fn offer(&mut self, id: &IdDigest, timestamp_ms: i64, room: bool) -> Remember {
        let at = secs(timestamp_ms);
        self.now_secs = self.now_secs.max(at);
        if let Some(first) = self.seen.get(id)
            && !self.expired(*first, at)
        {
            return Remember::Duplicate;
        }
        if !room && !self.seen.contains_key(id) {
            return Remember::Full;
        }
        self.seen.insert(*id, at);
        Remember::New
    }

    /// Restores an id from the changelog (first seen at `timestamp_ms`).
    pub fn restore(&mut self, id: &IdDigest, timestamp_ms: i64) {
        let at = secs(timestamp_ms);
        self.now_secs = self.now_secs.max(at);
        let first = self.seen.entry(*id).or_insert(at);
        *first = (*first).max(at);
    }

    /// Drops the ids whose window has passed; returns how many. Cheap to
    /// call often: it sweeps at most once per hundredth of the window.
    pub fn sweep(&mut self) -> usize {
        if self.now_secs.saturating_sub(self.swept_at) < (self.window_secs / 100).max(1) {
            return 0;
        }
        self.swept_at = self.now_secs;
        let before = self.seen.len();
        let (now, window) = (self.now_secs, self.window_secs);
        self.seen
            .retain(|_, first| now.saturating_sub(*first) < window);
        before - self.seen.len()
    }

    fn expired(&self, first: u32, at: u32) -> bool {
        at.max(self.now_secs).saturating_sub(first) >= self.window_secs
    }
}

fn secs(timestamp_ms: i64) -> u32 {
    u32::try_from(timestamp_ms.max(0) / 1000).unwrap_or(u32::MAX)
}

/// The digest is already uniformly distributed (SHA-256): its first eight
/// bytes are the table's hash, with no second hashing pass.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only ever fed a 16-byte digest (after its length prefix, if any).
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, _: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const WEEK: u64 = 7 * 24 * 3_600_000;

    #[test]
    fn eight_retries_over_28_hours_are_one_event() {
        let mut w = DedupWindow::new(WEEK);
        let id = digest("evt-1");
        let base = 1_700_000_000_000;
        let retries = [
            0,
            0,
            5_000,
            300_000,
            1_800_000,
            2 * HOUR,
            5 * HOUR,
            10 * HOUR,
            10 * HOUR,
        ];
        let mut at = base;
        let mut outcomes = Vec::new();
        for delay in retries {
            at += delay;
            outcomes.push(w.offer(&id, at, true));
        }
        assert_eq!(outcomes[0], Remember::New);
        assert!(outcomes[1..].iter().all(|o| *o == Remember::Duplicate));
    }

    #[test]
    fn a_copy_after_the_window_is_produced_again() {
        let mut w = DedupWindow::new(WEEK);
        let id = digest("evt-1");
        assert_eq!(w.offer(&id, 0, true), Remember::New);
        assert_eq!(w.offer(&id, WEEK as i64 - 1000, true), Remember::Duplicate);
        assert_eq!(w.offer(&id, WEEK as i64, true), Remember::New);
    }

    #[test]
    fn ids_differing_only_in_case_are_different() {
        let mut w = DedupWindow::new(WEEK);
        assert_eq!(w.offer(&digest("Evt-1"), 0, true), Remember::New);
        assert_eq!(w.offer(&digest("evt-1"), 0, true), Remember::New);
    }

    #[test]
    fn a_full_window_produces_but_does_not_remember() {
        let mut w = DedupWindow::new(WEEK);
        assert_eq!(w.offer(&digest("a"), 0, false), Remember::Full);
        assert_eq!(w.offer(&digest("a"), 0, true), Remember::New);
        assert_eq!(w.offer(&digest("a"), 0, false), Remember::Duplicate);
    }

    #[test]
    fn restored_ids_are_duplicates_and_sweeps_drop_expired_ones() {
        let mut w = DedupWindow::new(WEEK);
        w.restore(&digest("old"), 0);
        w.restore(&digest("new"), WEEK as i64);
        assert_eq!(
            w.offer(&digest("new"), WEEK as i64 + 1, true),
            Remember::Duplicate
        );
        assert_eq!(w.sweep(), 1, "the one past the window");
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn digests_are_stable() {
        // Persisted in the changelog: a change here would forget every id.
        assert_eq!(
            digest("evt-1"),
            [
                0x7b, 0x40, 0x9f, 0x93, 0x2d, 0x2c, 0x88, 0xe9, 0x7f, 0x0c, 0x17, 0x67, 0x6c, 0x84,
                0x20, 0xd3
            ]
        );
    }
}
