//! A bounded run: the pipeline over a range of one ingest topic, stopping
//! once every partition reaches its end (`dlq replay --from-topic`, which
//! rebuilds outputs after an upgrade). The loop is `run`'s own, so
//! outputs, dead letters, de-duplication and exactly-once behave as they do
//! there; only records past a partition's end are left unprocessed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::Consumer;

/// How often the consumer's positions are read while nothing arrives.
const POSITION_EVERY: Duration = Duration::from_millis(200);

/// Where a bounded run stops: the first offset not to process, per
/// partition of one topic. Partitions not named are not processed at all.
#[derive(Debug)]
pub struct Bounds {
    topic: String,
    /// The partitions not finished yet, with their end offsets.
    left: HashMap<i32, i64>,
    looked: Option<Instant>,
}

impl Bounds {
    pub fn new(topic: impl Into<String>, ends: HashMap<i32, i64>) -> Self {
        Bounds {
            topic: topic.into(),
            left: ends,
            looked: None,
        }
    }

    /// Whether to process this record. A partition is finished once its
    /// last record before the end is admitted, or a record at or past the
    /// end arrives (that one is not processed, nor committed).
    pub fn admit(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        if topic != self.topic {
            return false;
        }
        let Some(end) = self.left.get(&partition).copied() else {
            return false;
        };
        if offset.saturating_add(1) >= end {
            self.left.remove(&partition);
        }
        offset < end
    }

    /// Every partition reached its end. While some have not, the
    /// consumer's positions are read (at most every [`POSITION_EVERY`]):
    /// the last offsets before an end may be transaction markers, never
    /// delivered, and a partition whose position passed its end is done.
    pub fn finished<C: rdkafka::consumer::ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
    ) -> bool {
        if self.left.is_empty() {
            return true;
        }
        if self.looked.is_some_and(|t| t.elapsed() < POSITION_EVERY) {
            return false;
        }
        self.looked = Some(Instant::now());
        if let Ok(positions) = consumer.position() {
            for e in positions.elements_for_topic(&self.topic) {
                if let (Offset::Offset(at), Some(end)) = (e.offset(), self.left.get(&e.partition()))
                    && at >= *end
                {
                    self.left.remove(&e.partition());
                }
            }
        }
        self.left.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds::new("in", HashMap::from([(0, 3), (1, 1)]))
    }

    #[test]
    fn records_before_the_end_are_processed_and_the_last_one_finishes_its_partition() {
        let mut b = bounds();
        assert!(b.admit("in", 0, 1));
        assert!(b.left.contains_key(&0));
        assert!(b.admit("in", 0, 2));
        assert!(!b.left.contains_key(&0), "offset 2 is the last before 3");
        assert!(!b.admit("in", 0, 3), "finished: nothing more is processed");
    }

    #[test]
    fn a_record_past_the_end_finishes_its_partition_unprocessed() {
        let mut b = bounds();
        // Offset 0 was a transaction marker: the first record is past the end.
        assert!(!b.admit("in", 1, 4));
        assert!(!b.left.contains_key(&1));
        assert!(b.left.contains_key(&0));
    }

    #[test]
    fn other_partitions_and_topics_are_not_processed() {
        let mut b = bounds();
        assert!(!b.admit("in", 2, 0));
        assert!(!b.admit("other", 0, 0));
        assert_eq!(b.left.len(), 2, "neither finishes a partition of ours");
    }
}
