//! The pipeline: consume raw webhooks -> normalise -> produce the envelope
//! (or dead-letter the record) -> store the input offset once acknowledged.
//!
//! Guarantee: at-least-once. An input offset is stored for commit only when
//! the output record for it, and for every earlier offset of its partition,
//! has been acknowledged by the broker (acks=all, idempotent producer). A
//! crash re-delivers what was not committed; nothing is skipped. A record
//! the broker will not take is re-sent with backoff for as long as it takes:
//! its partition stops advancing and the process reports itself unhealthy.
//!
//! In-flight work is bounded by `pipeline.max_in_flight`: past it the loop
//! stops consuming until acknowledgements arrive (it prefers them to new
//! records), and librdkafka's prefetch queue is bounded in the consumer
//! config, so memory stays bounded however large the backlog.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use futures::future::Shared;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::statistics::Statistics;
use rdkafka::{Message, TopicPartitionList};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::config::Settings;
use crate::config::ValueFormat;
use crate::delivery::Deliveries;
use crate::envelope::Shape;
use crate::envelope_avro::{AvroError, ENVELOPE_SCHEMA_JSON, EnvelopeCodec};
use crate::metrics::{Metrics, UNROUTED_TYPE_LABEL};
use crate::normalize::{HeaderLookup, IngestMeta, NormalizeOptions, normalize};
use crate::offsets::{OffsetTracker, Partition, Ticket};
use crate::output::{OutRecord, dead_letter_record, envelope_record};
use crate::rejection::RejectReason;
use crate::routing::{CatchAllReason, Router};
use crate::schema_registry::{RegistryClient, RegistryError};
use crate::topics::{TopicCreator, TopicError, known_event_types};
use crate::value_format::{self, SchemaIds, SubjectNameStrategy};

/// Liveness and readiness, shared with the HTTP endpoint and tests.
#[derive(Debug, Default)]
pub struct Health {
    /// Consumer subscribed and the start-up topics exist.
    pub started: AtomicBool,
    /// Shutdown requested; finishing in-flight records.
    pub draining: AtomicBool,
    /// Partitions currently assigned to this member.
    pub assigned_partitions: AtomicUsize,
    /// Records the broker is refusing right now (being re-sent).
    pub failing_records: AtomicUsize,
    /// librdkafka reports every broker down.
    pub brokers_down: AtomicBool,
    /// A subscribed ingest topic does not exist (until partitions are assigned).
    pub ingest_topic_missing: AtomicBool,
    /// The schema registry does not answer; producing is paused.
    pub registry_unavailable: AtomicBool,
    /// Last time the loop went round, ms since the epoch.
    pub last_loop_ms: AtomicI64,
    /// Records consumed.
    pub consumed: AtomicU64,
    /// Records whose output (envelope or dead letter) was acknowledged.
    pub acknowledged: AtomicU64,
    /// Of those, dead letters.
    pub dead_lettered: AtomicU64,
}

impl Health {
    /// Ready: started, not draining, brokers reachable, nothing failing.
    pub fn is_ready(&self) -> bool {
        self.not_ready_reasons().is_empty()
    }

    /// Why the connector is not ready; empty when it is.
    pub fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if !self.started.load(Ordering::Relaxed) {
            reasons.push("starting".to_owned());
        }
        if self.draining.load(Ordering::Relaxed) {
            reasons.push("draining".to_owned());
        }
        if self.brokers_down.load(Ordering::Relaxed) {
            reasons.push("brokers unreachable".to_owned());
        }
        if self.ingest_topic_missing.load(Ordering::Relaxed) {
            reasons.push("an ingest topic does not exist".to_owned());
        }
        if self.registry_unavailable.load(Ordering::Relaxed) {
            reasons.push("schema registry unavailable".to_owned());
        }
        let failing = self.failing_records.load(Ordering::Relaxed);
        if failing > 0 {
            reasons.push(format!("{failing} records failing to produce"));
        }
        reasons
    }

    /// Marks the loop as alive now.
    pub fn beat(&self) {
        self.last_loop_ms.store(now_ms(), Ordering::Relaxed);
    }
}

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
    /// Output topics could not be created.
    #[error(transparent)]
    Topics(#[from] TopicError),
    /// The envelope codec could not be built.
    #[error(transparent)]
    Avro(#[from] AvroError),
    /// The schema registry refused or did not answer at start-up.
    #[error("cannot register the envelope schema: {0}")]
    Registry(#[from] RegistryError),
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

/// Headers of a consumed record, for the normaliser.
struct RecordHeaders<'m>(Option<&'m rdkafka::message::BorrowedHeaders>);

impl HeaderLookup for RecordHeaders<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0?
            .iter()
            .find(|h| h.key.eq_ignore_ascii_case(name))
            .and_then(|h| h.value)
    }
}

impl<'m> RecordHeaders<'m> {
    fn pairs(&self) -> impl Iterator<Item = (&'m str, Option<&'m [u8]>)> + use<'m> {
        self.0
            .into_iter()
            .flat_map(|h| h.iter().map(|h| (h.key, h.value)))
    }
}

/// What one output record is, for the metrics counted on acknowledgement.
enum OutputKind {
    /// An envelope; its counter is labelled by type and shape.
    Envelope {
        counter: prometheus::IntCounter,
        /// The event's `time`, ms since the epoch.
        event_time_ms: i64,
    },
    /// A dead letter; its counter is labelled by reason.
    DeadLetter { counter: prometheus::IntCounter },
}

/// What a delivery task reports back.
struct Delivered {
    ticket: Ticket,
    kind: OutputKind,
    consumed_at: std::time::Instant,
}

/// Runs the pipeline until `shutdown` completes, then drains and commits.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> Result<RunOutcome, PipelineError> {
    health.beat();
    let codec = EnvelopeCodec::new()?;
    metrics.init_ingest_topics(&settings.ingest.topics);
    let options = settings.normalize_options();
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
    let mut router = Router::new(&settings.output, &settings.ingest.topics);
    let mut topics = TopicCreator::new(&settings)?;
    // Shared: the loop and a wait for the schema registry both watch it.
    let shutdown = Box::pin(shutdown).shared();
    let format = settings.value_format();
    let mut schema_ids = match format {
        ValueFormat::Confluent => Some(SchemaIds::new(
            RegistryClient::new(&settings.schema_registry)?,
            SubjectNameStrategy::from_config(&settings.schema_registry.subject_name_strategy),
            ENVELOPE_SCHEMA_JSON,
        )),
        ValueFormat::AvroSingleObject => None,
    };

    // Start-up topics: dead letters, catch-all, and every known type.
    let mut startup: Vec<String> = vec![
        settings.output.dead_letter_topic.clone(),
        settings.output.catch_all_topic.clone(),
    ];
    startup.extend(known_event_types().iter().map(|t| router.topic_for(t)));
    startup.retain(|t| !settings.ingest.topics.contains(t));
    startup.sort();
    startup.dedup();
    let mut backoff = Backoff::new(settings.pipeline.produce_retry_backoff_max_ms);
    loop {
        health.beat();
        match topics.ensure(&startup).await {
            Ok(()) => break,
            Err(e) if e.is_transient() => {
                warn!(error = %e, "waiting for the cluster to create output topics");
                tokio::select! {
                    () = shutdown.clone() => return Ok(RunOutcome::Drained),
                    () = backoff.wait() => {}
                }
            }
            Err(e) => return Err(e.into()),
        }
    }

    // Register the envelope schema for every start-up topic but the
    // dead-letter one (its values are the raw input): a registry that
    // refuses or never answers is a clear start-up error.
    if let Some(ids) = schema_ids.as_mut() {
        for topic in startup
            .iter()
            .filter(|t| **t != settings.output.dead_letter_topic)
        {
            health.beat();
            ids.id_for(topic).await?;
        }
    }
    info!(
        value_format = value_format::name(format),
        "envelope value format"
    );

    let topic_refs: Vec<&str> = settings.ingest.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs)?;
    health.started.store(true, Ordering::Relaxed);
    info!(
        topics = ?settings.ingest.topics,
        group = %settings.ingest.group_id,
        max_in_flight = settings.pipeline.max_in_flight,
        "codat-stream started"
    );

    let shell = Shell {
        settings: &settings,
        codec: &codec,
        options: &options,
        metrics: &metrics,
        health: &health,
    };
    // Keeps liveness and the in-flight gauge fresh while nothing arrives.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut acked: Vec<Delivered> = Vec::new();
    let mut reasons_seen = [false; RejectReason::ALL.len()];
    let mut drain_deadline: Option<Instant> = None;
    let max_in_flight = settings.pipeline.max_in_flight;

    loop {
        health.beat();
        metrics.in_flight.set(deliveries.len() as i64);
        if drain_deadline.is_some() && deliveries.is_empty() {
            break;
        }
        let deadline = drain_deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            // Acknowledgements first: they free capacity and memory.
            biased;
            () = deliveries.acknowledged(&mut acked), if !deliveries.is_empty() => {
                for done in acked.drain(..) {
                health.acknowledged.fetch_add(1, Ordering::Relaxed);
                metrics.processing_latency.observe(done.consumed_at.elapsed().as_secs_f64());
                match &done.kind {
                    OutputKind::Envelope { counter, event_time_ms } => {
                        counter.inc();
                        let age_ms = (now_ms() - event_time_ms).max(0);
                        metrics.event_age.observe(age_ms as f64 / 1000.0);
                    }
                    OutputKind::DeadLetter { counter } => {
                        counter.inc();
                        health.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let stored = lock(&tracker).acknowledged(&done.ticket);
                if let Some(offset) = stored {
                    let (topic, partition) = &done.ticket.partition;
                    // Fails only if the partition was revoked meanwhile: then it is not ours to commit.
                    if let Err(e) = consumer.store_offset(topic, *partition, offset) {
                        debug!(error = %e, "offset not stored");
                    }
                }
                }
            }
            () = shutdown.clone(), if drain_deadline.is_none() => {
                health.draining.store(true, Ordering::Relaxed);
                drain_deadline = Some(Instant::now() + Duration::from_millis(settings.pipeline.drain_timeout_ms));
                info!(in_flight = deliveries.len(), "shutdown requested: draining");
            }
            () = tokio::time::sleep_until(deadline), if drain_deadline.is_some() => {
                break;
            }
            _ = tick.tick() => {}
            received = consumer.recv(), if drain_deadline.is_none() && deliveries.len() < max_in_flight => {
                match received {
                    Ok(message) => {
                        let consumed_at = std::time::Instant::now();
                        health.brokers_down.store(false, Ordering::Relaxed);
                        health.consumed.fetch_add(1, Ordering::Relaxed);
                        shell.count_consumed(&message);
                        let partition = consumer.context().partition(message.topic(), message.partition());
                        let ticket = lock(&tracker).consumed(partition, message.offset());
                        let Some((record, kind)) = shell
                            .output_for(&message, &mut router, &mut topics, &mut schema_ids, &mut reasons_seen, &shutdown)
                            .await
                        else {
                            // Shutdown while waiting for the registry: this record
                            // stays uncommitted and is consumed again.
                            continue;
                        };
                        let delivered = Delivered { ticket, kind, consumed_at };
                        deliveries.send(record, delivered);
                    }
                    Err(e) => warn!(error = %e, "consume error"),
                }
            }
        }
    }

    let abandoned = deliveries.len();
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

fn lock(tracker: &Mutex<OffsetTracker>) -> MutexGuard<'_, OffsetTracker> {
    tracker.lock().unwrap_or_else(|p| p.into_inner())
}

/// The parts of the loop that turn one consumed record into one output record.
struct Shell<'s> {
    settings: &'s Settings,
    codec: &'s EnvelopeCodec,
    options: &'s NormalizeOptions,
    metrics: &'s Metrics,
    health: &'s Health,
}

impl Shell<'_> {
    fn count_consumed(&self, message: &BorrowedMessage<'_>) {
        // Label by the subscribed topic only (a bounded, configured set).
        let topic = message.topic();
        self.metrics
            .records_consumed
            .with_label_values(&[topic])
            .inc();
        let bytes = message.payload().map_or(0, <[u8]>::len) as u64;
        self.metrics
            .consumed_bytes
            .with_label_values(&[topic])
            .inc_by(bytes);
    }

    /// The schema id of `topic`'s subject, waiting out a registry outage
    /// (readiness false, nothing dead-lettered); None if shutdown came first.
    async fn schema_id<F: Future<Output = ()>>(
        &self,
        ids: &mut SchemaIds,
        topic: &str,
        shutdown: &Shared<Pin<Box<F>>>,
    ) -> Result<Option<u32>, RegistryError> {
        let mut backoff = Backoff::new(self.settings.pipeline.produce_retry_backoff_max_ms);
        loop {
            // Paused on purpose, not stuck: keep liveness up.
            self.health.beat();
            match ids.id_for(topic).await {
                Ok(id) => {
                    if self
                        .health
                        .registry_unavailable
                        .swap(false, Ordering::Relaxed)
                    {
                        info!("schema registry answering again: producing resumed");
                    }
                    return Ok(Some(id));
                }
                Err(e) if e.is_transient() => {
                    self.metrics.schema_registry_errors.inc();
                    if !self
                        .health
                        .registry_unavailable
                        .swap(true, Ordering::Relaxed)
                    {
                        warn!(error = %e, "schema registry unavailable: producing paused until it answers (records are held, not dead-lettered)");
                    }
                    tokio::select! {
                        () = shutdown.clone() => return Ok(None),
                        () = backoff.wait() => {}
                    }
                }
                Err(e) => {
                    self.metrics.schema_registry_errors.inc();
                    return Err(e);
                }
            }
        }
    }

    async fn output_for<F: Future<Output = ()>>(
        &self,
        message: &BorrowedMessage<'_>,
        router: &mut Router,
        topics: &mut TopicCreator,
        schema_ids: &mut Option<SchemaIds>,
        reasons_seen: &mut [bool; RejectReason::ALL.len()],
        shutdown: &Shared<Pin<Box<F>>>,
    ) -> Option<(OutRecord, OutputKind)> {
        let headers = RecordHeaders(message.headers());
        let body = message.payload().unwrap_or_default();
        let ingest = IngestMeta {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis().unwrap_or_else(now_ms),
        };
        let rejection = match normalize(body, &headers, &ingest, self.options) {
            Ok(envelope) => {
                let mut route = router.route(&envelope.event_type);
                if route.catch_all.is_none()
                    && !topics.is_ready(&route.topic)
                    && let Err(e) = topics.ensure(std::slice::from_ref(&route.topic)).await
                {
                    if e.is_transient() {
                        // Broker trouble: produce to the topic anyway; delivery is
                        // re-sent until the next record's attempt creates it.
                        warn!(error = %e, event_type = %envelope.event_type, "cannot create topic yet");
                    } else {
                        error!(error = %e, event_type = %envelope.event_type, "topic refused: routing this type to the catch-all topic");
                        router.mark_unavailable(&envelope.event_type);
                        route = router.route(&envelope.event_type);
                    }
                }
                let mut schema_id = None;
                let mut registry_refusal = None;
                if let Some(ids) = schema_ids.as_mut() {
                    match self.schema_id(ids, &route.topic, shutdown).await {
                        Ok(Some(id)) => schema_id = Some(id),
                        Ok(None) => return None,
                        Err(e) if route.catch_all.is_none() => {
                            error!(error = %e, event_type = %envelope.event_type, "schema registry refused this type's subject: routing the type to the catch-all topic");
                            router.mark_unavailable(&envelope.event_type);
                            route = router.route(&envelope.event_type);
                            match self.schema_id(ids, &route.topic, shutdown).await {
                                Ok(Some(id)) => schema_id = Some(id),
                                Ok(None) => return None,
                                Err(e) => registry_refusal = Some(e),
                            }
                        }
                        Err(e) => registry_refusal = Some(e),
                    }
                }
                if let Some(reason) = route.catch_all {
                    let cause = match reason {
                        CatchAllReason::TopicCap => "topic_cap",
                        CatchAllReason::TopicUnavailable => "topic_unavailable",
                        CatchAllReason::IngestTopic => "ingest_topic",
                    };
                    self.metrics
                        .catch_all_routed
                        .with_label_values(&[cause])
                        .inc();
                    if route.first_catch_all_for_type {
                        warn!(event_type = %envelope.event_type, ?reason, topic = %route.topic, "routing a new event type to the catch-all topic");
                    }
                }
                let type_label = if route.catch_all.is_some() {
                    UNROUTED_TYPE_LABEL
                } else {
                    &envelope.event_type
                };
                let kind = OutputKind::Envelope {
                    counter: self
                        .metrics
                        .envelopes_produced
                        .with_label_values(&[type_label, shape_label(envelope.shape)]),
                    event_time_ms: envelope.time,
                };
                let mut value = Vec::with_capacity(256 + envelope.payload.len());
                let encoded = match (schema_id, registry_refusal) {
                    (Some(id), _) => self.codec.encode_confluent_into(&envelope, id, &mut value),
                    (None, None) => self.codec.encode_single_object_into(&envelope, &mut value),
                    // Even the catch-all subject is refused (it was accepted at
                    // start-up, so the registry changed): keep the record, say why.
                    (None, Some(e)) => Err(AvroError::Registry(e.to_string())),
                };
                match encoded {
                    Ok(()) => {
                        debug!(event_type = %envelope.event_type, topic = %route.topic, partition = ingest.partition, offset = ingest.offset, "normalised");
                        let record = envelope_record(
                            route.topic,
                            &envelope,
                            value,
                            headers.pairs(),
                            &self.settings.output.drop_headers,
                        );
                        return Some((record, kind));
                    }
                    // A defect (schema and envelope disagree): keep the record, say why.
                    Err(e) => crate::rejection::Rejection::new(
                        RejectReason::InvalidField,
                        format!("envelope could not be encoded: {e}"),
                    ),
                }
            }
            Err(rejection) => rejection,
        };
        let idx = RejectReason::ALL
            .iter()
            .position(|r| *r == rejection.reason)
            .unwrap_or(0);
        let reason = rejection.reason.code();
        self.metrics
            .parse_failures
            .with_label_values(&[reason])
            .inc();
        if !std::mem::replace(&mut reasons_seen[idx], true) {
            warn!(reason = rejection.reason.code(), detail = %rejection.message, "dead-lettering records (first of this reason)");
        }
        debug!(
            reason = rejection.reason.code(),
            topic = ingest.topic,
            partition = ingest.partition,
            offset = ingest.offset,
            "dead-lettered"
        );
        let record = dead_letter_record(
            self.settings.output.dead_letter_topic.clone(),
            message.key(),
            message.payload(),
            headers.pairs(),
            &ingest,
            &rejection,
        );
        let counter = self.metrics.dead_lettered.with_label_values(&[reason]);
        Some((record, OutputKind::DeadLetter { counter }))
    }
}

/// The `shape` label of an envelope.
fn shape_label(shape: Shape) -> &'static str {
    match shape {
        Shape::Event => "event",
        Shape::LegacyRule => "legacy",
        Shape::Generic => "generic",
    }
}

/// Now, ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
