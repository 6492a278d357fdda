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

use crate::backoff::Backoff;
use crate::config::Settings;
use crate::kafka::delivery::MainQueue;
use crate::kafka::offsets::{Partition, Ticket};
use crate::kafka::processor::Prepared;
use crate::ops::health::Health;

/// How long one call to the transaction coordinator is asked to take
/// before it is called again.
const TXN_SLICE: Duration = Duration::from_millis(500);

/// How often the producer's callbacks are served while a transaction call
/// runs.
const SERVE_EVERY: Duration = Duration::from_millis(5);

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
    /// committed, or the first offset consumed since the assignment; with
    /// the assignment epoch it holds for (a revoke bumps the epoch, so an
    /// entry of an earlier assignment is never sought to).
    rewind_to: HashMap<Partition, (u64, i64)>,
    /// After an abort, no record is taken before this (a failure that
    /// repeats must not abort one transaction after another at full speed).
    resume_at: Option<Instant>,
    backoff: Backoff,
}

/// Longest pause after consecutive aborts.
const ABORT_BACKOFF_MAX_MS: u64 = 5_000;

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
            resume_at: None,
            backoff: Backoff::new(ABORT_BACKOFF_MAX_MS),
        }
    }

    /// Registers the producer's transactional id (fencing any predecessor).
    pub fn init<C: ProducerContext>(&self, producer: &BaseProducer<C>) -> KafkaResult<()> {
        producer.init_transactions(self.timeout)
    }

    /// An input record's output (or its suppression) goes into the
    /// transaction: opens one if none is open.
    pub fn record<C: ProducerContext>(&mut self, producer: &BaseProducer<C>) {
        if self.opened.is_none() && self.doomed.is_none() {
            match producer.begin_transaction() {
                Ok(()) => self.opened = Some(Instant::now()),
                // The sends that follow fail; the loop rewinds and retries.
                Err(e) => self.doom(format!("cannot begin a transaction: {e}")),
            }
        }
        self.records += 1;
    }

    /// A record was consumed (before it is processed).
    pub fn consumed(&mut self, ticket: &Ticket) {
        let epoch = ticket.epoch();
        match self.rewind_to.get(&ticket.partition) {
            Some((at, _)) if *at == epoch => {}
            _ => {
                self.rewind_to
                    .insert(ticket.partition.clone(), (epoch, ticket.offset));
            }
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

    /// The transaction committed: an abort now rewinds to its offsets, and
    /// the replacements of records it covered are done with.
    fn committed(&mut self) -> usize {
        for (partition, next) in &self.offsets {
            if let Some(entry) = self.rewind_to.get_mut(partition) {
                entry.1 = *next;
            }
            self.replacements
                .retain(|(p, offset), _| p != partition || *offset >= *next);
        }
        self.backoff = Backoff::new(ABORT_BACKOFF_MAX_MS);
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

    /// The replacement kept for the record at `ticket`, if any. Kept until
    /// a commit covers the record: two refused records in one transaction
    /// must not take turns aborting it.
    pub fn replacement(&mut self, ticket: &Ticket) -> Option<Prepared> {
        if self.replacements.is_empty() {
            return None;
        }
        self.replacements
            .get(&(ticket.partition.clone(), ticket.offset))
            .cloned()
    }

    /// A partition is no longer ours: what was kept for it goes (its
    /// rewind entry is left to the epoch check).
    pub fn revoked(&mut self, partition: &Partition) {
        self.replacements.retain(|(p, _), _| p != partition);
        self.offsets.remove(partition);
    }

    /// Whether the open transaction (or the failed start of one) must end.
    pub fn pending(&self) -> bool {
        self.opened.is_some() || self.doomed.is_some()
    }

    /// Whether records may be taken now (not in the pause after an abort).
    pub fn may_resume(&mut self) -> bool {
        match self.resume_at {
            Some(at) if Instant::now() < at => false,
            Some(_) => {
                self.resume_at = None;
                true
            }
            None => true,
        }
    }

    /// Longest wait for the open transaction's outputs before aborting it:
    /// well inside the broker's own transaction timeout.
    pub fn ack_wait(&self) -> Duration {
        self.timeout
    }

    /// Whether a transaction is open.
    pub fn is_open(&self) -> bool {
        self.opened.is_some()
    }

    /// Whether the open transaction should end now.
    pub fn due(&self) -> bool {
        self.doomed.is_some()
            || self
                .opened
                .is_some_and(|at| self.records >= self.max_records || at.elapsed() >= self.max_age)
    }

    /// Commits the open transaction with its input offsets; returns the
    /// records it covered. Every output must be acknowledged first. A call
    /// that times out is retried (librdkafka resumes it) until `timeout`.
    pub fn commit<P: ProducerContext, C: ConsumerContext>(
        &mut self,
        producer: &BaseProducer<P>,
        consumer: &BaseConsumer<C>,
        health: &Health,
    ) -> Result<usize, TxnError> {
        if self.opened.is_none() {
            return Ok(0);
        }
        // One deadline for both calls: the loop is marked alive no longer.
        let deadline = Instant::now() + self.timeout;
        let offsets = self.to_commit();
        if offsets.count() > 0 {
            // None only before the consumer joined its group.
            let group = consumer.group_metadata().ok_or(TxnError::Abortable(
                KafkaError::ConsumerCommit(RDKafkaErrorCode::State),
            ))?;
            retrying(producer, health, deadline, |p, t| {
                p.send_offsets_to_transaction(&offsets, &group, t)
            })?;
        }
        retrying(producer, health, deadline, |p, t| p.commit_transaction(t))?;
        Ok(self.committed())
    }

    /// Aborts the open transaction (if any); the caller rewinds. Returns
    /// the input records it covered. The producer is polled between tries:
    /// the purged records' delivery reports must be served for the abort to
    /// finish.
    pub fn abort<C: ProducerContext>(
        &mut self,
        producer: &BaseProducer<C>,
        health: &Health,
    ) -> Result<usize, TxnError> {
        let open = self.opened.is_some();
        let records = self.close();
        self.resume_at = Some(Instant::now() + self.backoff.next_delay());
        if open {
            let deadline = Instant::now() + self.timeout;
            retrying(producer, health, deadline, |p, t| p.abort_transaction(t))?;
        }
        Ok(records)
    }

    fn close(&mut self) -> usize {
        self.opened = None;
        self.doomed = None;
        self.offsets.clear();
        std::mem::take(&mut self.records)
    }
}

/// Calls `op` in short slices until it succeeds, fails for good, or
/// `deadline` passes, serving the producer meanwhile. rust-rdkafka's commit
/// first flushes, and a flush that times out (a changelog record still in
/// flight) is retried like a coordinator call that timed out.
fn retrying<C: ProducerContext>(
    producer: &BaseProducer<C>,
    health: &Health,
    deadline: Instant,
    op: impl Fn(&BaseProducer<C>, Duration) -> KafkaResult<()> + Sync,
) -> Result<(), TxnError> {
    loop {
        match serving_meanwhile(producer, health, deadline, || op(producer, TXN_SLICE)) {
            Ok(()) => return Ok(()),
            Err(e) if retriable(&e) && Instant::now() < deadline => {
                producer.poll(Duration::from_millis(10));
            }
            Err(e) => return Err(TxnError::of(e)),
        }
    }
}

/// Whether a transaction call's failure may be retried as it is.
fn retriable(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(e) => e.is_retriable() && !e.txn_requires_abort(),
        KafkaError::Flush(code) => *code == RDKafkaErrorCode::OperationTimedOut,
        _ => false,
    }
}

/// Most events served per wake while a transaction call runs (a bound, as
/// in the loop's own drain).
const MAX_SERVED_PER_WAKE: usize = 4096;

/// Runs `call`, a blocking call to the transaction coordinator, on a
/// helper thread while this one serves the producer's callbacks and marks
/// the loop alive (until `deadline`). librdkafka bounds such a call by the
/// request timeout, not by the timeout it is given: with the coordinator
/// down, `send_offsets_to_transaction` was seen to block the loop for over
/// 60 s, and meanwhile no error callback ran, so `/readyz` never said the
/// brokers were unreachable. Past `deadline` the loop is no longer marked
/// alive: a call that never returns makes `/healthz` fail.
fn serving_meanwhile<C: ProducerContext, R: Send>(
    producer: &BaseProducer<C>,
    health: &Health,
    deadline: Instant,
    call: impl Fn() -> R + Sync,
) -> R {
    let events = MainQueue::of(producer);
    let call = &call;
    std::thread::scope(|scope| {
        let (done, result) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("codat-txn".into())
            .spawn_scoped(scope, move || {
                // Only fails once this thread stopped waiting, to unwind.
                let _ = done.send(call());
            });
        let Ok(helper) = spawned else {
            // No thread to be had: the call runs here, as it once did.
            return call();
        };
        loop {
            producer.poll(Duration::ZERO);
            for _ in 1..MAX_SERVED_PER_WAKE {
                if events.is_empty() {
                    break;
                }
                producer.poll(Duration::ZERO);
            }
            if Instant::now() < deadline {
                health.beat();
            }
            // Returns as soon as the call does: a commit is not delayed.
            match result.recv_timeout(SERVE_EVERY) {
                Ok(r) => return r,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    // Its end dropped without a result: the helper panicked.
                    let panic = helper.join().err().unwrap_or_else(|| {
                        Box::new("the transaction call's thread ended without a result")
                    });
                    std::panic::resume_unwind(panic)
                }
            }
        }
    })
}

impl Transactions {
    /// Seeks every partition consumed since its last commit back to where
    /// the aborted transaction began on it. Our own commits are the only
    /// ones for partitions we hold (fencing sees to that), so this is the
    /// group's committed offset, without asking the coordinator. Only
    /// entries of a partition's current assignment (`epoch`) are used; call
    /// before the tracker forgets the aborted records. A partition that
    /// cannot be sought fails the whole rewind: reading on would skip the
    /// aborted records.
    pub fn rewind<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        epoch: impl Fn(&Partition) -> Option<u64>,
        timeout: Duration,
    ) -> KafkaResult<()> {
        let assigned = consumer.assignment()?;
        let mut target = TopicPartitionList::new();
        for (partition, (at, offset)) in &self.rewind_to {
            let (topic, number) = (&partition.0, partition.1);
            if epoch(partition) == Some(*at) && assigned.find_partition(topic, number).is_some() {
                target.add_partition_offset(topic, number, Offset::Offset(*offset))?;
            }
        }
        if target.count() == 0 {
            return Ok(());
        }
        let sought = consumer.seek_partitions(target, timeout)?;
        for e in sought.elements() {
            e.error()?;
        }
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
        t.acknowledged(partition(0), 10);
        t.acknowledged(partition(0), 12);
        t.acknowledged(partition(0), 11);
        t.acknowledged(partition(1), 0);
        assert_eq!(
            offsets(&t.to_commit()),
            vec![(0, Offset::Offset(13)), (1, Offset::Offset(1))]
        );
    }

    #[test]
    fn an_abort_rewinds_to_the_first_consumed_offset_then_to_what_was_committed() {
        use crate::kafka::offsets::OffsetTracker;
        let mut tracker = OffsetTracker::new();
        let mut t = Transactions::new(&Settings::default());
        t.consumed(&tracker.consumed(partition(0), 10));
        t.consumed(&tracker.consumed(partition(0), 11));
        assert_eq!(t.rewind_to.get(&partition(0)), Some(&(0, 10)));
        t.acknowledged(partition(0), 11);
        t.committed();
        assert_eq!(
            t.rewind_to.get(&partition(0)),
            Some(&(0, 12)),
            "past the committed records"
        );
        t.consumed(&tracker.consumed(partition(0), 12));
        assert_eq!(t.rewind_to.get(&partition(0)), Some(&(0, 12)));
        // Revoked and assigned again: the new assignment's first record.
        tracker.revoked(&partition(0));
        t.revoked(&partition(0));
        t.consumed(&tracker.consumed(partition(0), 40));
        assert_eq!(t.rewind_to.get(&partition(0)), Some(&(1, 40)));
    }

    #[test]
    fn records_wait_out_the_pause_after_an_abort() {
        let mut t = Transactions::new(&Settings::default());
        assert!(t.may_resume());
        t.resume_at = Some(Instant::now() + Duration::from_secs(3600));
        assert!(!t.may_resume());
        t.resume_at = Some(Instant::now());
        assert!(t.may_resume());
        assert!(t.resume_at.is_none());
    }

    /// Review of the broker-crash test's hang: while a coordinator call
    /// blocks, the producer's error callbacks must still run (readiness)
    /// and the loop be marked alive, but only until the deadline.
    #[test]
    fn a_blocking_transaction_call_leaves_the_producer_served_and_the_loop_alive() {
        use std::sync::atomic::Ordering;

        use crate::kafka::delivery::Deliveries;

        // Nothing listens: librdkafka reports every broker down.
        let health = Arc::new(Health::default());
        let d: Deliveries<u32> = Deliveries::unreachable(health.clone());
        let far = Instant::now() + Duration::from_secs(60);
        let seen_down = serving_meanwhile(d.producer(), &health, far, || {
            let until = Instant::now() + Duration::from_secs(10);
            while !health.brokers_down.load(Ordering::Relaxed) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            health.brokers_down.load(Ordering::Relaxed)
        });
        assert!(seen_down, "the error callback ran while the call blocked");
        assert!(health.last_loop_ms.load(Ordering::Relaxed) > 0, "beaten");

        let still = Arc::new(Health::default());
        serving_meanwhile(d.producer(), &still, Instant::now(), || {
            std::thread::sleep(Duration::from_millis(50));
        });
        assert_eq!(
            still.last_loop_ms.load(Ordering::Relaxed),
            0,
            "past its deadline the call no longer counts as the loop's life"
        );
    }

    /// rust-rdkafka's commit flushes first, and its flush's timeout is a
    /// `Flush` error: a changelog record slow to be acknowledged must not
    /// abort the transaction while time is left.
    #[test]
    fn a_flush_that_timed_out_is_retried_like_a_coordinator_call() {
        assert!(retriable(&KafkaError::Flush(
            RDKafkaErrorCode::OperationTimedOut
        )));
        assert!(!retriable(&KafkaError::Flush(RDKafkaErrorCode::Fenced)));
        assert!(!retriable(&KafkaError::ConsumerCommit(
            RDKafkaErrorCode::State
        )));
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
