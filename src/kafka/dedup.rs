//! De-duplication state per ingest partition, and its changelog.
//!
//! The owner of an ingest partition owns its window (so every copy of an
//! event must arrive on the same ingest partition: the ingest producer keys
//! records by the event's id, README "Each event once"). An id is
//! remembered when its envelope is processed (so two copies in flight at
//! once are caught) and written to a compacted changelog topic, partition
//! for partition with the ingest topic, once the envelope is acknowledged.
//! On assignment, a partition's window is restored from the changelog
//! before its first record is processed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::config::Settings;
use crate::core::dedup::{DedupWindow, IdDigest, Remember, digest};
use crate::kafka::offsets::Partition;

/// How long a restore may take before the partition goes on without it.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// Every ingest partition's window, within one memory budget.
pub struct Dedup {
    window_ms: u64,
    max_ids: usize,
    changelog: String,
    windows: HashMap<Partition, DedupWindow>,
    restorer: BaseConsumer,
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct Restored {
    /// Partitions restored.
    pub partitions: usize,
    /// Changelog records read.
    pub records: usize,
}

impl Dedup {
    /// State for `settings.dedup`; makes no network call.
    pub fn new(settings: &Settings) -> Result<Self, KafkaError> {
        let group = format!("{}.dedup-restore", settings.ingest.group_id);
        Ok(Dedup {
            window_ms: settings.dedup.window_ms,
            max_ids: settings.dedup.max_ids,
            changelog: settings.dedup_changelog_topic(),
            windows: HashMap::new(),
            restorer: settings
                .inspect_consumer_config(&group)
                // Only committed ids (exactly-once writes the changelog in
                // transactions); the end is told by an EOF event, since
                // commit markers take the last offsets.
                .set("isolation.level", "read_committed")
                .set("enable.partition.eof", "true")
                .create()?,
        })
    }

    /// The changelog topic.
    pub fn changelog(&self) -> &str {
        &self.changelog
    }

    /// Offers an envelope's id seen on `partition` at `timestamp_ms`.
    pub fn offer(
        &mut self,
        partition: &Partition,
        id: &str,
        timestamp_ms: i64,
    ) -> (Remember, IdDigest) {
        let digest = digest(id);
        let room = self.len() < self.max_ids;
        let window = self.window(partition);
        window.sweep();
        (window.offer(&digest, timestamp_ms, room), digest)
    }

    /// Ids remembered over every partition.
    pub fn len(&self) -> usize {
        self.windows.values().map(DedupWindow::len).sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The partitions with a window.
    pub fn partitions(&self) -> Vec<Partition> {
        self.windows.keys().cloned().collect()
    }

    /// Forgets a partition that is no longer ours.
    pub fn revoked(&mut self, partition: &Partition) {
        self.windows.remove(partition);
    }

    fn window(&mut self, partition: &Partition) -> &mut DedupWindow {
        let window_ms = self.window_ms;
        self.windows
            .entry(partition.clone())
            .or_insert_with(|| DedupWindow::new(window_ms))
    }

    /// The changelog partition's low and high watermarks. A changelog made
    /// moments ago may not be in this client's metadata yet ("unknown
    /// partition"): asked again, up to 30 s, as the metadata catches up.
    fn watermarks(&self, partition: i32) -> Result<(i64, i64), KafkaError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let asked =
                self.restorer
                    .fetch_watermarks(&self.changelog, partition, Duration::from_secs(10));
            match asked {
                Err(KafkaError::MetadataFetch(
                    RDKafkaErrorCode::UnknownPartition | RDKafkaErrorCode::UnknownTopicOrPartition,
                )) if Instant::now() < deadline && !self.lacks_partition(partition) => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                done => return done,
            }
        }
    }

    /// Whether the broker lists the changelog with fewer partitions than
    /// `partition` needs (made by an operator with too few): asking again
    /// would not help.
    fn lacks_partition(&self, partition: i32) -> bool {
        self.restorer
            .fetch_metadata(Some(&self.changelog), Duration::from_secs(5))
            .ok()
            .and_then(|m| {
                let topic = m.topics().iter().find(|t| t.name() == self.changelog)?;
                let known = !topic.partitions().is_empty();
                Some(known && topic.partitions().iter().all(|p| p.id() != partition))
            })
            .unwrap_or(false)
    }

    /// Reads the changelog partitions of `assigned` from the beginning to
    /// their high watermarks into fresh windows.
    pub fn restore(&mut self, assigned: &[Partition]) -> Result<Restored, KafkaError> {
        let mut targets = HashMap::new();
        let mut tpl = TopicPartitionList::new();
        for partition in assigned {
            self.windows
                .insert(partition.clone(), DedupWindow::new(self.window_ms));
            let (low, high) = self.watermarks(partition.1)?;
            if high > low {
                targets.insert(partition.1, high);
                tpl.add_partition_offset(&self.changelog, partition.1, Offset::Beginning)?;
            }
        }
        let mut restored = Restored {
            partitions: assigned.len(),
            records: 0,
        };
        if targets.is_empty() {
            return Ok(restored);
        }
        self.restorer.assign(&tpl)?;
        let deadline = Instant::now() + RESTORE_TIMEOUT;
        while !targets.is_empty() && Instant::now() < deadline {
            let Some(polled) = self.restorer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = match polled {
                Ok(message) => message,
                Err(KafkaError::PartitionEOF(p)) => {
                    targets.remove(&p);
                    continue;
                }
                Err(e) => return Err(e),
            };
            restored.records += 1;
            if let Some((digest, at, topic)) = parse(message.key(), message.payload()) {
                let partition: Partition = (topic.into(), message.partition());
                if let Some(window) = self.windows.get_mut(&partition) {
                    window.restore(&digest, at);
                }
            }
            if targets
                .get(&message.partition())
                .is_some_and(|high| message.offset() + 1 >= *high)
            {
                targets.remove(&message.partition());
            }
        }
        self.restorer.unassign()?;
        Ok(restored)
    }
}

/// The changelog record of an id: key the digest, value the first-seen
/// ingest timestamp (ms, big-endian) then the ingest topic's name (so one
/// changelog serves several ingest topics).
pub fn changelog_value(timestamp_ms: i64, ingest_topic: &str) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + ingest_topic.len());
    value.extend_from_slice(&timestamp_ms.to_be_bytes());
    value.extend_from_slice(ingest_topic.as_bytes());
    value
}

/// A changelog record read back; `None` if it is not one of ours.
fn parse<'m>(key: Option<&[u8]>, value: Option<&'m [u8]>) -> Option<(IdDigest, i64, &'m str)> {
    let digest: IdDigest = key?.try_into().ok()?;
    let value = value?;
    let (at, topic) = value.split_at_checked(8)?;
    let at = i64::from_be_bytes(at.try_into().ok()?);
    Some((digest, at, std::str::from_utf8(topic).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changelog_records_round_trip_and_foreign_ones_are_skipped() {
        let d = digest("evt-1");
        let value = changelog_value(1_700_000_000_123, "codat.webhooks");
        assert_eq!(
            parse(Some(&d), Some(&value)),
            Some((d, 1_700_000_000_123, "codat.webhooks"))
        );
        assert_eq!(parse(Some(b"short"), Some(&value)), None);
        assert_eq!(parse(Some(&d), Some(b"1234567")), None);
        assert_eq!(parse(Some(&d), None), None);
    }
}
