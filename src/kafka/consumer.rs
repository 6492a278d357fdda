//! The ingest consumer's callbacks, served on the loop's thread during
//! `poll`: rebalances (commit what is acknowledged before partitions go)
//! and client errors (readiness).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use tracing::debug;

use crate::kafka::client_errors;
use crate::kafka::offsets::{OffsetTracker, Partition};
use crate::ops::events::{
    Client, InternalEvent, OffsetsCommitted, RebalanceFailed, RebalanceKind, Rebalanced,
};
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;

/// Consumer callbacks: rebalances and client errors.
pub struct IngestContext {
    tracker: Arc<Mutex<OffsetTracker>>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    topic_names: Mutex<HashMap<String, Arc<str>>>,
    /// Assignment changes since the loop last took them (kept only when
    /// the loop asked: de-duplication restores state on assignment).
    changes: Option<Mutex<AssignmentChanges>>,
    /// Exactly-once: offsets are committed only inside transactions.
    transactional: bool,
}

/// Partitions assigned and revoked since the loop last looked.
#[derive(Debug, Default)]
pub struct AssignmentChanges {
    /// Newly assigned.
    pub assigned: Vec<Partition>,
    /// Revoked.
    pub revoked: Vec<Partition>,
}

impl IngestContext {
    pub fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        // A panic while holding the lock cannot leave the tracker torn
        // (each method is one step), so carry on with its state.
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Partition {
        let mut names = self.topic_names.lock().unwrap_or_else(|p| p.into_inner());
        // Looked up before inserting: no allocation per record.
        if let Some(name) = names.get(topic) {
            return (name.clone(), partition);
        }
        let name: Arc<str> = Arc::from(topic);
        names.insert(topic.to_owned(), name.clone());
        (name, partition)
    }
}

impl ClientContext for IngestContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if let KafkaError::Global(RDKafkaErrorCode::UnknownTopicOrPartition) = error {
            self.health
                .ingest_topic_missing
                .store(true, Ordering::Relaxed);
        }
        client_errors::observe(
            &self.health,
            &self.metrics,
            Client::Consumer,
            &error,
            reason,
        );
    }

    fn stats(&self, statistics: Statistics) {
        self.metrics.record_statistics("consumer", &statistics);
    }
}

impl ConsumerContext for IngestContext {
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        let error = match &result {
            // Nothing new to commit is not a failure.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => return,
            Err(e) => Some(e),
            Ok(()) => None,
        };
        OffsetsCommitted { error }.emit(&self.metrics);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                // Commit what is acknowledged before the partitions go; what
                // is still in flight is abandoned uncommitted, so the next
                // owner re-reads it (at-least-once).
                if !self.transactional {
                    commit_stored(consumer, "revoke");
                }
                self.note_change(tpl, false);
                let mut tracker = self.tracker();
                for e in tpl.elements() {
                    tracker.revoked(&self.partition(e.topic(), e.partition()));
                }
                drop(tracker);
                let n = tpl.count();
                let left = self
                    .health
                    .assigned_partitions
                    .load(Ordering::Relaxed)
                    .saturating_sub(n);
                self.health
                    .assigned_partitions
                    .store(left, Ordering::Relaxed);
                Rebalanced {
                    kind: RebalanceKind::Revoke,
                    partitions: &describe(tpl),
                    now: left,
                }
                .emit(&self.metrics);
            }
            Rebalance::Assign(tpl) => {
                self.note_change(tpl, true);
                // Assigned: the group and topics are readable.
                self.health.brokers_answered();
                self.health
                    .ingest_topic_missing
                    .store(false, Ordering::Relaxed);
                let now = self
                    .health
                    .assigned_partitions
                    .fetch_add(tpl.count(), Ordering::Relaxed)
                    + tpl.count();
                Rebalanced {
                    kind: RebalanceKind::Assign,
                    partitions: &describe(tpl),
                    now,
                }
                .emit(&self.metrics);
            }
            Rebalance::Error(e) => RebalanceFailed { error: e }.emit(&self.metrics),
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    let parts: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect();
    parts.join(",")
}

/// Commits stored offsets now; the result is counted by `commit_callback`.
pub fn commit_stored<C: ConsumerContext>(consumer: &impl Consumer<C>, when: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => debug!(when, "offsets committed"),
        // Nothing new to commit.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => debug!(error = %e, when, "offset commit failed"),
    }
}

impl IngestContext {
    /// Callbacks reporting into `tracker`, `health` and `metrics`.
    pub fn new(
        tracker: Arc<Mutex<OffsetTracker>>,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> Self {
        IngestContext {
            tracker,
            health,
            metrics,
            topic_names: Mutex::new(HashMap::new()),
            changes: None,
            transactional: false,
        }
    }

    /// Exactly-once: no commit outside a transaction (not on revoke either).
    pub fn transactional(mut self) -> Self {
        self.transactional = true;
        self
    }

    /// Keeps assignment changes for [`IngestContext::take_changes`].
    pub fn tracking_assignment(mut self) -> Self {
        self.changes = Some(Mutex::default());
        self
    }

    /// The assignment changes since the last call (none unless tracking).
    pub fn take_changes(&self) -> Option<AssignmentChanges> {
        let changes = self.changes.as_ref()?;
        let mut changes = changes.lock().unwrap_or_else(|p| p.into_inner());
        if changes.assigned.is_empty() && changes.revoked.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut *changes))
    }

    fn note_change(&self, tpl: &TopicPartitionList, assigned: bool) {
        let Some(changes) = &self.changes else {
            return;
        };
        let mut changes = changes.lock().unwrap_or_else(|p| p.into_inner());
        for e in tpl.elements() {
            let partition = self.partition(e.topic(), e.partition());
            match assigned {
                true => changes.assigned.push(partition),
                false => {
                    changes.assigned.retain(|p| *p != partition);
                    changes.revoked.push(partition);
                }
            }
        }
    }
}
