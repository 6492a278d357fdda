//! The pipeline: consume raw webhooks -> normalise -> produce the envelope
//! (or dead-letter the record) -> store the input offset once acknowledged.
//!
//! Guarantee: at-least-once. An input offset is stored for commit only when
//! the output record for it, and for every earlier offset of its partition,
//! has been acknowledged by the broker (acks=all, idempotent producer). A
//! crash re-delivers what was not committed; nothing is skipped. What a
//! record can do to the loop is set by the failure taxonomy in
//! [`crate::kafka::processor`]: a permanent failure becomes a dead letter, a
//! transient one holds the record (and its partition) while it is retried.
//!
//! In-flight work is bounded by `pipeline.max_in_flight` records and
//! `pipeline.max_in_flight_bytes`: past either, the loop stops consuming
//! until acknowledgements arrive (it prefers them to new records), and
//! librdkafka's prefetch queue is bounded in the consumer config, so memory
//! stays bounded however large the backlog.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::{Message, TopicPartitionList};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::Settings;
use crate::core::normalize::IngestMeta;
use crate::kafka::delivery::{Deliveries, Outcome};
use crate::kafka::offsets::{OffsetTracker, Partition, Ticket};
use crate::kafka::output::Input;
use crate::kafka::processor::{
    Delivered, OutputKind, Prepared, Processor, ProcessorError, StartError,
};
use crate::kafka::record_headers::InHeaders;
use crate::ops::health::{Health, now_ms};
use crate::ops::metrics::Metrics;
use crate::registry::value_format;

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every in-flight record was acknowledged and committed.
    Drained,
    /// The drain bound passed first; this many records were not
    /// acknowledged and will be consumed again.
    DrainTimedOut {
        /// Records abandoned.
        abandoned: usize,
    },
}

/// Failures that stop the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A Kafka client could not be created or subscribed.
    #[error("kafka client: {0}")]
    Kafka(#[from] KafkaError),
    /// The per-record processor could not be built.
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    /// Start-up topics or schema registration failed for good.
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Consumer callbacks: rebalances and client errors.
struct IngestContext {
    tracker: Arc<Mutex<OffsetTracker>>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    topic_names: Mutex<HashMap<String, Arc<str>>>,
}

impl IngestContext {
    fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        // A panic while holding the lock cannot leave the tracker torn
        // (each method is one step), so carry on with its state.
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn partition(&self, topic: &str, partition: i32) -> Partition {
        let mut names = self.topic_names.lock().unwrap_or_else(|p| p.into_inner());
        let name = names
            .entry(topic.to_owned())
            .or_insert_with(|| Arc::from(topic))
            .clone();
        (name, partition)
    }
}

impl ClientContext for IngestContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown) => {
                self.health.brokers_down.store(true, Ordering::Relaxed);
            }
            KafkaError::Global(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                self.health
                    .ingest_topic_missing
                    .store(true, Ordering::Relaxed);
            }
            _ => {}
        }
        warn!(%error, reason, "kafka consumer error");
    }

    fn stats(&self, statistics: Statistics) {
        self.metrics.record_statistics("consumer", &statistics);
    }
}

impl ConsumerContext for IngestContext {
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.metrics.offset_commits.inc(),
            // Nothing new to commit is not a failure.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                self.metrics.offset_commit_failures.inc();
                warn!(error = %e, "offset commit failed");
            }
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                // Commit what is acknowledged before the partitions go; what
                // is still in flight is abandoned uncommitted, so the next
                // owner re-reads it (at-least-once).
                commit_stored(consumer, "revoke");
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
                self.metrics.assigned_partitions.set(left as i64);
                self.metrics.rebalances.with_label_values(&["revoke"]).inc();
                info!(revoked = %describe(tpl), "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                self.health
                    .ingest_topic_missing
                    .store(false, Ordering::Relaxed);
                let now = self
                    .health
                    .assigned_partitions
                    .fetch_add(tpl.count(), Ordering::Relaxed)
                    + tpl.count();
                self.metrics.assigned_partitions.set(now as i64);
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
                info!(assigned = %describe(tpl), "partitions assigned");
            }
            Rebalance::Error(e) => {
                self.metrics.rebalances.with_label_values(&["error"]).inc();
                warn!(error = %e, "rebalance error");
            }
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
fn commit_stored<C: ConsumerContext>(consumer: &impl Consumer<C>, when: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => debug!(when, "offsets committed"),
        // Nothing new to commit.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => debug!(error = %e, when, "offset commit failed"),
    }
}

/// Runs the pipeline until `shutdown` completes, then drains and commits.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> Result<RunOutcome, PipelineError> {
    health.beat();
    metrics.init_ingest_topics(&settings.ingest.topics);
    let tracker = Arc::new(Mutex::new(OffsetTracker::new()));
    let context = IngestContext {
        tracker: tracker.clone(),
        health: health.clone(),
        metrics: metrics.clone(),
        topic_names: Mutex::new(HashMap::new()),
    };
    let consumer: StreamConsumer<IngestContext> =
        settings.consumer_config().create_with_context(context)?;
    let mut deliveries: Deliveries<Delivered> = Deliveries::new(
        &settings.producer_config(),
        health.clone(),
        metrics.clone(),
        settings.pipeline.produce_retry_backoff_max_ms,
    )?;
    let mut processor = Processor::new(&settings, &metrics, &health)?;
    // Shared: the loop and the waits for the broker and registry all watch it.
    let shutdown = Box::pin(shutdown).shared();
    if !processor.start(shutdown.clone()).await? {
        info!("shutdown requested during start-up");
        return Ok(RunOutcome::Drained);
    }
    info!(
        value_format = value_format::name(settings.value_format()),
        "envelope value format"
    );

    let topic_refs: Vec<&str> = settings.ingest.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs)?;
    health.started.store(true, Ordering::Relaxed);
    info!(
        topics = ?settings.ingest.topics,
        group = %settings.ingest.group_id,
        max_in_flight = settings.pipeline.max_in_flight,
        max_in_flight_bytes = settings.pipeline.max_in_flight_bytes,
        "codat-stream started"
    );
    let mut state = LoopState {
        consumer: &consumer,
        deliveries: &mut deliveries,
        processor: &mut processor,
        tracker: &tracker,
        health: &health,
        metrics: &metrics,
    };
    let abandoned = state.run_loop(&settings, shutdown).await;

    commit_stored(&consumer, "shutdown");
    if let Err(e) = deliveries.flush(Duration::from_secs(5)) {
        debug!(error = %e, "producer flush at exit");
    }
    info!(
        consumed = health.consumed.load(Ordering::Relaxed),
        acknowledged = health.acknowledged.load(Ordering::Relaxed),
        dead_lettered = health.dead_lettered.load(Ordering::Relaxed),
        "codat-stream stopped"
    );
    if abandoned == 0 {
        info!("drained: every consumed record was acknowledged and committed");
        Ok(RunOutcome::Drained)
    } else {
        warn!(
            abandoned,
            "drain timed out: unacknowledged records will be consumed again"
        );
        Ok(RunOutcome::DrainTimedOut { abandoned })
    }
}

/// What the consume -> process -> deliver loop works with.
struct LoopState<'r, 's> {
    consumer: &'r StreamConsumer<IngestContext>,
    deliveries: &'r mut Deliveries<Delivered>,
    processor: &'r mut Processor<'s>,
    tracker: &'r Mutex<OffsetTracker>,
    health: &'r Health,
    metrics: &'r Metrics,
}

impl LoopState<'_, '_> {
    /// Runs until shutdown and the drain end; returns the records abandoned.
    async fn run_loop<F: Future<Output = ()> + Clone>(
        &mut self,
        settings: &Settings,
        shutdown: F,
    ) -> usize {
        // Keeps liveness and the in-flight gauge fresh while nothing arrives.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut outcomes: Vec<Outcome<Delivered>> = Vec::new();
        let mut drain_deadline: Option<Instant> = None;
        let max_records = settings.pipeline.max_in_flight;
        let max_bytes = settings.pipeline.max_in_flight_bytes;
        loop {
            self.health.beat();
            self.metrics.in_flight.set(self.deliveries.len() as i64);
            if drain_deadline.is_some() && self.deliveries.is_empty() {
                return 0;
            }
            let room = self.deliveries.len() < max_records && self.deliveries.bytes() < max_bytes;
            let deadline =
                drain_deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                // Acknowledgements first: they free capacity and memory.
                biased;
                () = self.deliveries.acknowledged(&mut outcomes), if !self.deliveries.is_empty() => {
                    for outcome in std::mem::take(&mut outcomes) {
                        self.settle(outcome, &shutdown).await;
                    }
                }
                () = shutdown.clone(), if drain_deadline.is_none() => {
                    self.health.draining.store(true, Ordering::Relaxed);
                    drain_deadline = Some(Instant::now() + Duration::from_millis(settings.pipeline.drain_timeout_ms));
                    info!(in_flight = self.deliveries.len(), "shutdown requested: draining");
                }
                () = tokio::time::sleep_until(deadline), if drain_deadline.is_some() => {
                    return self.deliveries.len();
                }
                _ = tick.tick() => {}
                received = self.consumer.recv(), if drain_deadline.is_none() && room => {
                    match received {
                        Ok(message) => self.consumed(&message, &shutdown).await,
                        Err(e) => warn!(error = %e, "consume error"),
                    }
                }
            }
        }
    }

    /// One consumed record: registered, processed, sent.
    async fn consumed<F: Future<Output = ()> + Clone>(
        &mut self,
        message: &BorrowedMessage<'_>,
        shutdown: &F,
    ) {
        let consumed_at = std::time::Instant::now();
        self.health.brokers_down.store(false, Ordering::Relaxed);
        self.health.consumed.fetch_add(1, Ordering::Relaxed);
        count_consumed(self.metrics, message);
        let partition = self
            .consumer
            .context()
            .partition(message.topic(), message.partition());
        let ticket = lock(self.tracker).consumed(partition, message.offset());
        let headers = InHeaders::of(message);
        let input = Input {
            key: message.key(),
            value: message.payload(),
            headers: &headers.pairs,
            ingest: IngestMeta {
                topic: message.topic(),
                partition: message.partition(),
                offset: message.offset(),
                timestamp_ms: message.timestamp().to_millis().unwrap_or_else(now_ms),
            },
        };
        // None: shutdown while the record was held; it stays uncommitted
        // and is consumed again.
        if let Some(prepared) = self.processor.process(&input, shutdown).await {
            self.send(prepared, ticket, consumed_at);
        }
    }

    fn send(&mut self, prepared: Prepared, ticket: Ticket, consumed_at: std::time::Instant) {
        let token_bytes = prepared.input.size();
        let delivered = Delivered {
            ticket,
            prepared_kind: prepared.kind,
            consumed_at,
            input: prepared.input,
        };
        self.deliveries
            .send(prepared.record, delivered, token_bytes);
    }

    /// An acknowledged record stores its offset; a refused one is replaced
    /// (re-routed, or dead-lettered), or held when nothing else can be sent.
    async fn settle<F: Future<Output = ()> + Clone>(
        &mut self,
        outcome: Outcome<Delivered>,
        shutdown: &F,
    ) {
        let done = match outcome {
            Outcome::Acked(done) => done,
            Outcome::Refused(refusal) => {
                let (ticket, consumed_at) =
                    (refusal.token.ticket.clone(), refusal.token.consumed_at);
                match self.processor.replacement(refusal, shutdown).await {
                    Ok(Some(prepared)) => self.send(prepared, ticket, consumed_at),
                    // Shutdown while held: left uncommitted, consumed again.
                    Ok(None) => {}
                    Err(refusal) => self.deliveries.hold(*refusal),
                }
                return;
            }
        };
        self.health.acknowledged.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .processing_latency
            .observe(done.consumed_at.elapsed().as_secs_f64());
        match &done.prepared_kind {
            OutputKind::Envelope {
                counter,
                event_time_ms,
                ..
            } => {
                counter.inc();
                let age_ms = (now_ms() - event_time_ms).max(0);
                self.metrics.event_age.observe(age_ms as f64 / 1000.0);
            }
            OutputKind::DeadLetter { rejection, .. } => {
                self.metrics
                    .dead_lettered
                    .with_label_values(&[rejection.reason.code()])
                    .inc();
                self.health.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
        }
        let stored = lock(self.tracker).acknowledged(&done.ticket);
        if let Some(offset) = stored {
            let (topic, partition) = &done.ticket.partition;
            // Fails only if the partition was revoked meanwhile: then it is not ours to commit.
            if let Err(e) = self.consumer.store_offset(topic, *partition, offset) {
                debug!(error = %e, "offset not stored");
            }
        }
    }
}

fn lock(tracker: &Mutex<OffsetTracker>) -> MutexGuard<'_, OffsetTracker> {
    tracker.lock().unwrap_or_else(|p| p.into_inner())
}

fn count_consumed(metrics: &Metrics, message: &BorrowedMessage<'_>) {
    // Label by the subscribed topic only (a bounded, configured set).
    let topic = message.topic();
    metrics.records_consumed.with_label_values(&[topic]).inc();
    let bytes = message.payload().map_or(0, <[u8]>::len) as u64;
    metrics
        .consumed_bytes
        .with_label_values(&[topic])
        .inc_by(bytes);
}
