//! Which input offset may be committed: for each partition, the offsets
//! consumed and not yet acknowledged, in consumption order. An offset is
//! committable only when it and every earlier consumed offset of its
//! partition are acknowledged.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A topic-partition.
pub type Partition = (Arc<str>, i32);

#[derive(Debug)]
struct Track {
    partition: Partition,
    /// Bumped each time the partition is revoked, so late acks of an
    /// earlier assignment are ignored.
    epoch: u64,
    /// (offset, acknowledged) in consumption order.
    pending: VecDeque<(i64, bool)>,
}

/// Identifies one consumed record for its later acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Its partition.
    pub partition: Partition,
    /// Its offset.
    pub offset: i64,
    epoch: u64,
    /// Its partition's track, by index.
    track: usize,
}

impl Ticket {
    /// Its partition's assignment epoch when it was consumed.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

/// Per-partition tracking of consumed, unacknowledged offsets.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    /// One per partition ever consumed, never removed: a ticket names its
    /// track by index, so an acknowledgement needs no look-up.
    tracks: Vec<Track>,
    index: HashMap<Partition, usize>,
    /// The last consumed record's track: records come in runs from one
    /// partition, so most skip the hash look-up too.
    last: usize,
    in_flight: usize,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `offset` of `partition` was consumed.
    pub fn consumed(&mut self, partition: Partition, offset: i64) -> Ticket {
        let at = self.track_of(&partition);
        self.last = at;
        let track = &mut self.tracks[at];
        track.pending.push_back((offset, false));
        self.in_flight += 1;
        Ticket {
            partition,
            offset,
            epoch: track.epoch,
            track: at,
        }
    }

    /// The index of `partition`'s track, made if it has none.
    fn track_of(&mut self, partition: &Partition) -> usize {
        // `Arc<str>` equality compares pointers first: names are interned.
        if self
            .tracks
            .get(self.last)
            .is_some_and(|t| t.partition == *partition)
        {
            return self.last;
        }
        if let Some(&at) = self.index.get(partition) {
            return at;
        }
        self.tracks.push(Track {
            partition: partition.clone(),
            epoch: 0,
            pending: VecDeque::new(),
        });
        self.index.insert(partition.clone(), self.tracks.len() - 1);
        self.tracks.len() - 1
    }

    /// Records that the output for `ticket` was acknowledged. Returns the
    /// highest offset whose record and all earlier ones are now acknowledged
    /// (store it; the commit is that offset + 1), if that advanced.
    pub fn acknowledged(&mut self, ticket: &Ticket) -> Option<i64> {
        let track = self
            .tracks
            .get_mut(ticket.track)
            .filter(|t| t.partition == ticket.partition)?;
        if track.epoch != ticket.epoch {
            return None;
        }
        // Offsets of one partition are consumed in increasing order, and
        // mostly without gaps: the offset's distance from the oldest is
        // its index, unless a gap (a compacted record, a transaction
        // marker) moved it, when it is searched for.
        let oldest = track.pending.front()?.0;
        let guess = usize::try_from(ticket.offset - oldest).ok();
        let at = match guess.filter(|&i| track.pending.get(i).is_some_and(|s| s.0 == ticket.offset))
        {
            Some(at) => at,
            None => track
                .pending
                .binary_search_by_key(&ticket.offset, |(o, _)| *o)
                .ok()?,
        };
        let slot = &mut track.pending[at];
        if slot.1 {
            return None;
        }
        slot.1 = true;
        self.in_flight = self.in_flight.saturating_sub(1);
        let mut done = None;
        while let Some(&(offset, true)) = track.pending.front() {
            done = Some(offset);
            track.pending.pop_front();
        }
        done
    }

    /// Forgets a revoked partition: its unacknowledged records are
    /// abandoned (never committed; the next owner re-reads them).
    pub fn revoked(&mut self, partition: &Partition) {
        let at = self.index.get(partition).copied();
        if let Some(track) = at.and_then(|at| self.tracks.get_mut(at)) {
            self.in_flight = self
                .in_flight
                .saturating_sub(track.pending.iter().filter(|(_, a)| !a).count());
            track.pending.clear();
            track.epoch += 1;
        }
    }

    /// Forgets every partition's in-flight records (an aborted transaction).
    pub fn revoke_all(&mut self) {
        let partitions: Vec<Partition> = self.tracks.iter().map(|t| t.partition.clone()).collect();
        for partition in &partitions {
            self.revoked(partition);
        }
    }

    /// A partition's current assignment epoch (bumped by each revoke), if
    /// anything was consumed from it.
    pub fn epoch(&self, partition: &Partition) -> Option<u64> {
        let at = self.index.get(partition).copied()?;
        self.tracks.get(at).map(|t| t.epoch)
    }

    /// Records consumed and not yet acknowledged, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Unacknowledged records per partition (for metrics and logs).
    pub fn pending_by_partition(&self) -> Vec<(Partition, usize)> {
        self.tracks
            .iter()
            .map(|t| {
                let pending = t.pending.iter().filter(|(_, a)| !a).count();
                (t.partition.clone(), pending)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(n: i32) -> Partition {
        (Arc::from("t"), n)
    }

    #[test]
    fn out_of_order_acks_commit_only_the_contiguous_prefix() {
        let mut t = OffsetTracker::new();
        let a = t.consumed(p(0), 10);
        let b = t.consumed(p(0), 11);
        let c = t.consumed(p(0), 12);
        assert_eq!(t.acknowledged(&c), None);
        assert_eq!(t.acknowledged(&b), None);
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.acknowledged(&a), Some(12));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::new();
        let a = t.consumed(p(0), 5);
        let b = t.consumed(p(1), 7);
        assert_eq!(t.acknowledged(&b), Some(7));
        assert_eq!(t.acknowledged(&a), Some(5));
    }

    #[test]
    fn acks_from_before_a_revoke_are_ignored() {
        let mut t = OffsetTracker::new();
        let old = t.consumed(p(0), 1);
        t.revoked(&p(0));
        assert_eq!(t.in_flight(), 0);
        let new = t.consumed(p(0), 1);
        assert_eq!(t.acknowledged(&old), None);
        assert_eq!(t.acknowledged(&new), Some(1));
    }

    #[test]
    fn runs_from_one_partition_and_switches_track_each_partition_apart() {
        let mut t = OffsetTracker::new();
        let a0 = t.consumed(p(0), 1);
        let b0 = t.consumed(p(1), 1);
        let a1 = t.consumed(p(0), 2);
        // The same name from another allocation is the same partition.
        let a2 = t.consumed((Arc::from("t"), 0), 3);
        assert_eq!(t.acknowledged(&b0), Some(1));
        assert_eq!(t.acknowledged(&a1), None);
        assert_eq!(t.acknowledged(&a2), None);
        assert_eq!(t.acknowledged(&a0), Some(3));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_ticket_of_another_tracker_is_ignored() {
        let mut other = OffsetTracker::new();
        let foreign = other.consumed(p(9), 1);
        let mut t = OffsetTracker::new();
        let _mine = t.consumed(p(0), 1);
        assert_eq!(t.acknowledged(&foreign), None);
        assert_eq!(t.in_flight(), 1);
    }

    #[test]
    fn offsets_with_gaps_are_found_too() {
        let mut t = OffsetTracker::new();
        // Gaps: compacted records, transaction markers.
        let tickets: Vec<_> = [3, 4, 7, 8, 20].map(|o| t.consumed(p(0), o)).into();
        assert_eq!(t.acknowledged(&tickets[4]), None);
        assert_eq!(t.acknowledged(&tickets[2]), None);
        assert_eq!(t.acknowledged(&tickets[0]), Some(3));
        assert_eq!(t.acknowledged(&tickets[1]), Some(7));
        assert_eq!(t.acknowledged(&tickets[3]), Some(20));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn double_acks_count_once() {
        let mut t = OffsetTracker::new();
        let a = t.consumed(p(0), 1);
        let _b = t.consumed(p(0), 2);
        assert_eq!(t.acknowledged(&a), Some(1));
        assert_eq!(t.acknowledged(&a), None);
        assert_eq!(t.in_flight(), 1);
    }

    proptest! {
        /// Whatever the ack order, the committable offset never passes an
        /// unacknowledged record, and reaches the last one once all are acked.
        #[test]
        fn never_commits_past_an_unacknowledged_record(order in Just((0..40i64).collect::<Vec<_>>()).prop_shuffle()) {
            let mut t = OffsetTracker::new();
            let tickets: Vec<_> = (0..40).map(|o| t.consumed(p(0), 100 + o)).collect();
            let mut acked = [false; 40];
            let mut committed = None;
            for i in order {
                acked[i as usize] = true;
                if let Some(c) = t.acknowledged(&tickets[i as usize]) {
                    committed = Some(c);
                }
                if let Some(c) = committed {
                    let upto = (c - 100) as usize;
                    prop_assert!(acked[..=upto].iter().all(|a| *a));
                }
            }
            prop_assert_eq!(committed, Some(139));
            prop_assert_eq!(t.in_flight(), 0);
        }
    }
}
