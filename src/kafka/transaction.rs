//! Exactly-once: the outputs of a run of input records, their
//! de-duplication changelog records and those inputs' offsets, committed in
//! one Kafka transaction (`send_offsets_to_transaction` with the consumer's
//! group metadata, so fencing follows the group generation). A transaction
//! is bounded by records and by age; on any error it is aborted and the
//! consumer rewound to the committed offsets.
//!
//! A record the broker refuses for good dooms its transaction (librdkafka
//! makes it abortable). Its replacement (a dead letter, or the catch-all
//! topic) is kept by input position and sent instead when the record comes
//! again after the rewind, so one such record cannot abort transactions
//! forever.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Settings;
use crate::kafka::offsets::{Partition, Ticket};
use crate::kafka::processor::Prepared;

/// The open transaction's bookkeeping.
pub struct Transactions {
    max_records: usize,
    max_age: Duration,
    /// Bound on each call to the transaction coordinator.
    timeout: Duration,
    /// When the open transaction began, if one is open.
    opened: Option<Instant>,
    /// Input records it covers.
    records: usize,
    /// Why it can only be aborted, if it can.
    doomed: Option<String>,
    /// The next offset to commit per partition (acknowledged, contiguous).
    offsets: HashMap<Partition, i64>,
    /// Replacements for records refused for good, by input position.
    replacements: HashMap<(Partition, i64), Prepared>,
    /// Where an abort rewinds each partition to: what the last commit
    /// committed, or the first offset consumed since the assignment.
    rewind_to: HashMap<Partition, i64>,
}

/// How a transaction call failed.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// Abort, rewind to the committed offsets and go on.
    #[error("transaction aborted: {0}")]
    Abortable(KafkaError),
    /// The producer is fenced or broken: the process must restart.
    #[error("transactional producer failed for good: {0}")]
    Fatal(KafkaError),
}

impl TxnError {
    fn of(e: KafkaError) -> Self {
        match &e {
            KafkaError::Transaction(t) if t.is_fatal() => TxnError::Fatal(e),
            _ => TxnError::Abortable(e),
        }
    }
}

impl Transactions {
    /// Bookkeeping for `settings.delivery`.
    pub fn new(settings: &Settings) -> Self {
        let d = &settings.delivery;
        Transactions {
            max_records: d.transaction_max_records,
            max_age: Duration::from_millis(d.transaction_max_ms),
            timeout: Duration::from_millis(d.transaction_timeout_ms / 2),
            opened: None,
            records: 0,
            doomed: None,
            offsets: HashMap::new(),
            replacements: HashMap::new(),
            rewind_to: HashMap::new(),
        }
    }

    /// Registers the producer's transactional id (fencing any predecessor).
    pub fn init<C: ProducerContext>(&self, producer: &BaseProducer<C>) -> KafkaResult<()> {
        producer.init_transactions(self.timeout)
    }

    /// An input record's output (or its suppression) goes into the
    /// transaction: opens one if none is open.
    pub fn record<C: ProducerContext>(&mut self, producer: &BaseProducer<C>) {
        if self.opened.is_none() {
            if let Err(e) = producer.begin_transaction() {
                // The sends that follow fail too; the commit aborts.
                self.doom(format!("cannot begin a transaction: {e}"));
            }
            self.opened = Some(Instant::now());
        }
        self.records += 1;
    }

    /// A record was consumed (before it is processed).
    pub fn consumed(&mut self, partition: &Partition, offset: i64) {
        if !self.rewind_to.contains_key(partition) {
            self.rewind_to.insert(partition.clone(), offset);
        }
    }

    /// Every record of `partition` up to `last` (inclusive) is
    /// acknowledged: the commit is the next offset to read, `last + 1`.
    pub fn acknowledged(&mut self, partition: Partition, last: i64) {
        let next = last.saturating_add(1);
        let at = self.offsets.entry(partition).or_insert(next);
        *at = (*at).max(next);
    }

    /// What the open transaction commits: the next offset to read, per
    /// partition.
    fn to_commit(&self) -> TopicPartitionList {
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &self.offsets {
            // Only fails for an offset that is not a number, which `next` is.
            let _ = offsets.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        offsets
    }

    /// The transaction committed: an abort now rewinds to its offsets.
    fn committed(&mut self) -> usize {
        for (partition, next) in &self.offsets {
            self.rewind_to.insert(partition.clone(), *next);
        }
        self.close()
    }

    /// The open transaction can only be aborted now.
    pub fn doom(&mut self, why: String) {
        self.doomed.get_or_insert(why);
    }

    /// Why the open transaction must be aborted, if it must.
    pub fn doomed(&self) -> Option<&str> {
        self.doomed.as_deref()
    }

    /// Keeps the replacement of a record refused for good (and dooms the
    /// transaction it was in).
    pub fn stash(&mut self, ticket: &Ticket, prepared: Prepared) {
        self.doom("the broker refused a record for good".to_owned());
        self.replacements
            .insert((ticket.partition.clone(), ticket.offset), prepared);
    }

    /// The replacement kept for the record at `ticket`, if any.
    pub fn replacement(&mut self, ticket: &Ticket) -> Option<Prepared> {
        if self.replacements.is_empty() {
            return None;
        }
        self.replacements
            .remove(&(ticket.partition.clone(), ticket.offset))
    }

    /// A partition is no longer ours: what was kept for it goes.
    pub fn revoked(&mut self, partition: &Partition) {
        self.replacements.retain(|(p, _), _| p != partition);
        self.rewind_to.remove(partition);
        self.offsets.remove(partition);
    }

    /// Whether a transaction is open.
    pub fn is_open(&self) -> bool {
        self.opened.is_some()
    }

    /// Whether the open transaction should end now.
    pub fn due(&self) -> bool {
        self.opened.is_some_and(|at| {
            self.doomed.is_some()
                || self.records >= self.max_records
                || at.elapsed() >= self.max_age
        })
    }

    /// Commits the open transaction with its input offsets; returns the
    /// records it covered. Every output must be acknowledged first.
    pub fn commit<P: ProducerContext, C: ConsumerContext>(
        &mut self,
        producer: &BaseProducer<P>,
        consumer: &BaseConsumer<C>,
    ) -> Result<usize, TxnError> {
        if self.opened.is_none() {
            return Ok(0);
        }
        let offsets = self.to_commit();
        if offsets.count() > 0 {
            // None only before the consumer joined its group.
            let group = consumer.group_metadata().ok_or(TxnError::Abortable(
                KafkaError::ConsumerCommit(RDKafkaErrorCode::State),
            ))?;
            producer
                .send_offsets_to_transaction(&offsets, &group, self.timeout)
                .map_err(TxnError::of)?;
        }
        producer
            .commit_transaction(self.timeout)
            .map_err(TxnError::of)?;
        Ok(self.committed())
    }

    /// Aborts the open transaction (if any); the caller rewinds.
    pub fn abort<C: ProducerContext>(
        &mut self,
        producer: &BaseProducer<C>,
    ) -> Result<(), TxnError> {
        let open = self.opened.is_some();
        self.close();
        if open {
            producer
                .abort_transaction(self.timeout)
                .map_err(TxnError::of)?;
        }
        Ok(())
    }

    fn close(&mut self) -> usize {
        self.opened = None;
        self.doomed = None;
        self.offsets.clear();
        std::mem::take(&mut self.records)
    }
}

impl Transactions {
    /// Seeks every partition consumed since its last commit back to where
    /// the aborted transaction began on it. Our own commits are the only
    /// ones for partitions we hold (fencing sees to that), so this is the
    /// group's committed offset, without asking the coordinator.
    pub fn rewind<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        timeout: Duration,
    ) -> KafkaResult<()> {
        if self.rewind_to.is_empty() {
            return Ok(());
        }
        let mut target = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.rewind_to {
            target.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        consumer.seek_partitions(target, timeout)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn partition(n: i32) -> Partition {
        (Arc::from("ingest"), n)
    }

    fn offsets(tpl: &TopicPartitionList) -> Vec<(i32, Offset)> {
        let mut v: Vec<_> = tpl
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect();
        v.sort_by_key(|(p, _)| *p);
        v
    }

    #[test]
    fn the_commit_is_the_next_offset_to_read() {
        let mut t = Transactions::new(&Settings::default());
        t.consumed(&partition(0), 10);
        t.acknowledged(partition(0), 10);
        t.acknowledged(partition(0), 12);
        t.acknowledged(partition(0), 11);
        t.consumed(&partition(1), 0);
        t.acknowledged(partition(1), 0);
        assert_eq!(
            offsets(&t.to_commit()),
            vec![(0, Offset::Offset(13)), (1, Offset::Offset(1))]
        );
    }

    #[test]
    fn an_abort_rewinds_to_the_first_consumed_offset_then_to_what_was_committed() {
        let mut t = Transactions::new(&Settings::default());
        t.consumed(&partition(0), 10);
        t.consumed(&partition(0), 11);
        assert_eq!(t.rewind_to.get(&partition(0)), Some(&10));
        t.acknowledged(partition(0), 11);
        t.committed();
        assert_eq!(
            t.rewind_to.get(&partition(0)),
            Some(&12),
            "past the committed records"
        );
        t.consumed(&partition(0), 12);
        assert_eq!(t.rewind_to.get(&partition(0)), Some(&12));
        t.revoked(&partition(0));
        assert!(t.rewind_to.is_empty(), "a revoked partition is not sought");
    }

    #[test]
    fn the_first_reason_to_abort_is_kept() {
        let mut t = Transactions::new(&Settings::default());
        assert!(t.doomed().is_none());
        t.doom("x".to_owned());
        t.doom("y".to_owned());
        assert_eq!(t.doomed(), Some("x"), "the first reason is kept");
    }
}
