//! The per-record step of the pipeline: one consumed record in, the one
//! record to produce for it out (its envelope, or a dead letter), and what
//! to send instead when the broker refuses that record for good.
//!
//! The failure taxonomy (README, "When a record fails"):
//! - *per-record permanent*: the body cannot be normalised, or the record
//!   can never be produced as is (a header Kafka cannot carry, too large, a
//!   value the registry refuses, refused by the broker) -> a dead letter with
//!   a stable reason; if even the dead letter is too large, a shortened copy
//!   with the original sizes and a digest. Nothing a record contains can hold
//!   its partition.
//! - *transient* (broker, topic creation or registry trouble) -> hold the
//!   record, retry with backoff, report unready, commit nothing past it.
//! - *configuration* -> refused at start-up, naming the setting.
//!
//! Start-up (topics, changelog, schema registration) is in `startup.rs`;
//! what to send when the broker refuses a record for good, in `refusal.rs`.

use crate::kafka::fast_hash::FastMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::config::{Settings, ValueFormat};
use crate::core::dedup::{IdDigest, Remember};
use crate::core::envelope::{Envelope, Shape};
use crate::core::envelope_avro::{ENVELOPE_SCHEMA_JSON, EnvelopeCodec};
use crate::core::event_type::known_event_types;
use crate::core::normalize::{NormalizeOptions, normalize};
use crate::core::rejection::{RejectReason, Rejection};
use crate::kafka::dedup::Dedup;
use crate::kafka::output::{
    DeadLetterForm, Input, InputCopy, OutRecord, Spare, envelope_record, fitting_dead_letter,
};
use crate::kafka::record_headers::HeaderSlice;
use crate::kafka::routing::{Route, Router};
use crate::kafka::topics::TopicCreator;
use crate::ops::events::{
    CatchAllRouted, DeadLettering, DedupOffered, InternalEvent, RegistryRecovered, RegistryRefused,
    RegistryUnavailable, RerouteCause, TypeRerouted,
};
use crate::ops::health::Health;
use crate::ops::metrics::{Metrics, UNROUTED_TYPE_LABEL};
use crate::registry::client::{RegistryClient, RegistryError};
use crate::registry::value_format::{SchemaIds, SubjectNameStrategy};

mod refusal;
mod startup;

pub use startup::StartError;

/// What one output record is, for the metrics counted on acknowledgement
/// and for what to send instead if it is refused.
#[derive(Clone)]
pub enum OutputKind {
    /// An envelope; its counter is labelled by type and shape.
    Envelope {
        /// `envelopes_produced_total{event_type,shape}`.
        counter: prometheus::IntCounter,
        /// The event's `time`, ms since the epoch.
        event_time_ms: i64,
        /// Its type, to re-route it if its topic refuses it.
        event_type: Arc<str>,
        /// Whether it was sent to the catch-all topic.
        on_catch_all: bool,
    },
    /// A dead letter.
    DeadLetter {
        /// Why.
        rejection: Rejection,
        /// How much of the original it carries.
        form: DeadLetterForm,
    },
}

/// The record to produce for one consumed record.
#[derive(Clone)]
pub struct Prepared {
    /// The record.
    pub record: OutRecord,
    /// What it is.
    pub kind: OutputKind,
    /// The consumed record, kept until acknowledged so that a refused output
    /// can still be dead-lettered.
    pub input: Box<InputCopy>,
    /// The envelope's id digest, to write to the de-duplication changelog
    /// once acknowledged (de-duplication on, envelopes only).
    pub remember: Option<IdDigest>,
}

/// What to do with one consumed record.
pub enum Step {
    /// Send this record.
    Send(Prepared),
    /// A copy of an event already produced within the window: send
    /// nothing, count it, let its offset advance.
    Suppressed(Shape),
}

/// Turns consumed records into output records. Owns the router, the topic
/// creator and the schema ids; one call per record.
pub struct Processor<'s> {
    settings: &'s Settings,
    codec: EnvelopeCodec,
    /// Shared so an envelope can borrow it while the processor is mutated.
    options: std::sync::Arc<NormalizeOptions>,
    metrics: &'s Metrics,
    health: &'s Health,
    router: Router,
    topics: TopicCreator,
    schema_ids: Option<SchemaIds>,
    reasons_seen: [bool; RejectReason::ALL.len()],
    max_message_bytes: usize,
    /// Per type label (a bounded set: routed types and the catch-all
    /// label), resolved once instead of a metric look-up per record.
    types: FastMap<Box<str>, TypeHandles>,
    dedup: Option<Dedup>,
    unkeyed_seen: bool,
    /// The buffers of the last record librdkafka copied, for the next one.
    spare: Option<Spare>,
}

/// A type's handles, resolved on its first envelope.
struct TypeHandles {
    name: Arc<str>,
    /// `envelopes_produced_total{event_type,shape}`, by shape.
    counters: [Option<prometheus::IntCounter>; 3],
}

impl TypeHandles {
    fn new(label: &str) -> Self {
        TypeHandles {
            name: Arc::from(label),
            counters: [None, None, None],
        }
    }

    fn counter(&mut self, shape: Shape, metrics: &Metrics) -> &prometheus::IntCounter {
        let index = match shape {
            Shape::Event => 0,
            Shape::LegacyRule => 1,
            Shape::Generic => 2,
        };
        self.counters[index].get_or_insert_with(|| {
            metrics
                .envelopes_produced
                .with_label_values(&[&*self.name, shape_label(shape)])
        })
    }
}

/// Why the processor could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// A Kafka client could not be created.
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The envelope codec could not be built.
    #[error(transparent)]
    Avro(#[from] crate::core::envelope_avro::AvroError),
    /// The schema registry client could not be built.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl<'s> Processor<'s> {
    /// A processor for `settings`; makes no network call.
    pub fn new(
        settings: &'s Settings,
        metrics: &'s Metrics,
        health: &'s Health,
    ) -> Result<Self, ProcessorError> {
        let schema_ids = match settings.value_format() {
            ValueFormat::Confluent => Some(SchemaIds::new(
                RegistryClient::new(&settings.schema_registry)?,
                SubjectNameStrategy::from_config(&settings.schema_registry.subject_name_strategy),
                ENVELOPE_SCHEMA_JSON,
            )),
            ValueFormat::AvroSingleObject => None,
        };
        Ok(Processor {
            settings,
            codec: EnvelopeCodec::new()?,
            options: std::sync::Arc::new(settings.normalize_options()),
            metrics,
            health,
            router: Router::new(
                &settings.output,
                &settings.ingest.topics,
                &known_event_types(),
            ),
            topics: TopicCreator::new(settings)?,
            schema_ids,
            reasons_seen: [false; RejectReason::ALL.len()],
            max_message_bytes: settings.max_message_bytes(),
            spare: None,
            types: FastMap::default(),
            dedup: match settings.dedup.enabled {
                true => Some(Dedup::new(settings)?),
                false => None,
            },
            unkeyed_seen: false,
        })
    }

    /// The output record for one consumed record; `None` if `shutdown` came
    /// while it was held (broker or registry trouble): the record then stays
    /// uncommitted and is consumed again.
    pub async fn process<F: Future<Output = ()> + Clone>(
        &mut self,
        input: &Input<'_>,
        shutdown: &F,
    ) -> Option<Prepared> {
        let options = self.options.clone();
        let normalized = normalized(input, &options);
        self.prepare(input, normalized, shutdown).await
    }

    /// The output for a record already normalised (or rejected).
    async fn prepare<F: Future<Output = ()> + Clone>(
        &mut self,
        input: &Input<'_>,
        normalized: Result<Envelope<'_>, Rejection>,
        shutdown: &F,
    ) -> Option<Prepared> {
        let copy = Box::new(InputCopy::of(input));
        let envelope = match normalized {
            Ok(envelope) => envelope,
            Err(rejection) => return Some(self.dead_letter(input, rejection, copy)),
        };
        match self.envelope_output(&envelope, input, shutdown).await? {
            Ok((record, kind)) => Some(Prepared {
                record,
                kind,
                input: copy,
                remember: None,
            }),
            Err(rejection) => Some(self.dead_letter(input, rejection, copy)),
        }
    }

    /// As [`Processor::process`], with de-duplication when it is on: an
    /// envelope whose id was produced within the window is suppressed.
    pub async fn process_step<F: Future<Output = ()> + Clone>(
        &mut self,
        input: &Input<'_>,
        shutdown: &F,
    ) -> Option<Step> {
        let options = self.options.clone();
        let Some(dedup) = self.dedup.as_mut() else {
            return self.process(input, shutdown).await.map(Step::Send);
        };
        // Normalised once: the id offered here, the envelope sent below.
        let normalized = normalized(input, &options);
        let seen = normalized.as_ref().ok().map(|envelope| {
            let partition = (Arc::from(input.ingest.topic), input.ingest.partition);
            let (remember, digest) =
                dedup.offer(&partition, &envelope.id, input.ingest.timestamp_ms);
            (remember, digest, envelope.shape)
        });
        let unkeyed = input.key.is_none_or(<[u8]>::is_empty);
        DedupOffered {
            not_remembered: matches!(seen, Some((Remember::Full, _, _))),
            unkeyed,
            first_unkeyed: unkeyed && !std::mem::replace(&mut self.unkeyed_seen, true),
            ids: self.dedup.as_ref().map_or(0, Dedup::len),
        }
        .emit(self.metrics);
        match seen {
            Some((Remember::Duplicate, _, shape)) => Some(Step::Suppressed(shape)),
            Some((remember, digest, _)) => {
                let mut prepared = self.prepare(input, normalized, shutdown).await?;
                let is_envelope = matches!(prepared.kind, OutputKind::Envelope { .. });
                if is_envelope && remember == Remember::New {
                    prepared.remember = Some(digest);
                }
                Some(Step::Send(prepared))
            }
            None => self
                .prepare(input, normalized, shutdown)
                .await
                .map(Step::Send),
        }
    }

    /// Takes a sent record's buffers for the next envelope's.
    pub fn recycle(&mut self, spare: Spare) {
        self.spare = Some(spare);
    }

    /// The de-duplication state, when it is on.
    pub fn dedup(&mut self) -> Option<&mut Dedup> {
        self.dedup.as_mut()
    }

    /// The envelope record, or the rejection that makes it a dead letter;
    /// `None` if shutdown came while held.
    async fn envelope_output<F: Future<Output = ()> + Clone>(
        &mut self,
        envelope: &Envelope<'_>,
        input: &Input<'_>,
        shutdown: &F,
    ) -> Option<Result<(OutRecord, OutputKind), Rejection>> {
        let route = self.route(&envelope.event_type, shutdown).await?;
        let (route, schema_id) = match self
            .schema_id(&envelope.event_type, route, shutdown)
            .await?
        {
            Ok(routed) => routed,
            Err(rejection) => return Some(Err(rejection)),
        };
        let record = match self.envelope_record(envelope, input, &route, schema_id) {
            Ok(record) => record,
            Err(rejection) => return Some(Err(rejection)),
        };
        self.count_route(envelope, &route);
        debug!(event_type = %envelope.event_type, topic = %route.topic, partition = input.ingest.partition, offset = input.ingest.offset, "normalised");
        Some(Ok((record, self.envelope_kind(envelope, &route))))
    }

    /// The envelope's record: encoded, headed, and checked against the
    /// producer's `message.max.bytes`.
    fn envelope_record(
        &mut self,
        envelope: &Envelope<'_>,
        input: &Input<'_>,
        route: &Route,
        schema_id: Option<u32>,
    ) -> Result<OutRecord, Rejection> {
        let mut spare = self.spare.take().unwrap_or_default();
        let value = &mut spare.value;
        value.clear();
        value.reserve(256 + envelope.payload.len());
        let encoded = match schema_id {
            Some(id) => self.codec.encode_confluent_into(envelope, id, value),
            None => self.codec.encode_single_object_into(envelope, value),
        };
        if let Err(e) = encoded {
            // A defect (schema and envelope disagree): keep the record, say why.
            return Err(Rejection::new(
                RejectReason::InvalidField,
                format!("envelope could not be encoded: {e}"),
            ));
        }
        let drop = &self.settings.output.drop_headers;
        let record = envelope_record(route.topic.clone(), envelope, spare, input.headers, drop)?;
        if record.wire_size() > self.max_message_bytes {
            return Err(Rejection::new(
                RejectReason::OutputTooLarge,
                format!(
                    "the envelope record would be {} bytes; the producer's message.max.bytes is {}",
                    record.wire_size(),
                    self.max_message_bytes
                ),
            ));
        }
        Ok(record)
    }

    /// What the envelope is, with its type's handles (resolved once).
    fn envelope_kind(&mut self, envelope: &Envelope<'_>, route: &Route) -> OutputKind {
        let type_label = match route.catch_all {
            Some(_) => UNROUTED_TYPE_LABEL,
            None => &envelope.event_type,
        };
        let metrics = self.metrics;
        let handles = match self.types.get_mut(type_label) {
            Some(handles) => handles,
            None => self
                .types
                .entry(type_label.into())
                .or_insert_with(|| TypeHandles::new(type_label)),
        };
        let counter = handles.counter(envelope.shape, metrics).clone();
        let event_type = match route.catch_all {
            // Input-chosen and unbounded: not cached.
            Some(_) => Arc::from(&*envelope.event_type),
            None => handles.name.clone(),
        };
        OutputKind::Envelope {
            counter,
            event_time_ms: envelope.time,
            event_type,
            on_catch_all: route.catch_all.is_some(),
        }
    }

    /// Routes a type, creating its topic on first use. A refused topic sends
    /// the type to the catch-all; a creation that fails for now (broker
    /// trouble) holds the record and retries, unready: producing to a topic
    /// that does not exist would only be re-sent forever.
    async fn route<F: Future<Output = ()> + Clone>(
        &mut self,
        event_type: &str,
        shutdown: &F,
    ) -> Option<Route> {
        let mut backoff = Backoff::new(self.settings.pipeline.produce_retry_backoff_max_ms);
        loop {
            let route = self.router.route(event_type);
            if route.catch_all.is_some() || self.topics.is_ready(&route.topic) {
                self.topics_recovered();
                return Some(route);
            }
            // Once per type (afterwards the topic is ready): a copy is fine.
            let topic = [route.topic.to_string()];
            match beating(self.health, self.topics.ensure(&topic)).await {
                Ok(()) => {
                    self.topics_recovered();
                    return Some(route);
                }
                Err(e) if e.is_transient() => {
                    if !self.health.topics_failing.swap(true, Ordering::Relaxed) {
                        warn!(error = %e, "cannot create an output topic yet: holding the record and retrying");
                    }
                    tokio::select! {
                        () = shutdown.clone() => return None,
                        () = beating(self.health, backoff.wait()) => {}
                    }
                }
                Err(e) => {
                    TypeRerouted {
                        cause: RerouteCause::TopicRefused,
                        event_type,
                        error: &e,
                    }
                    .emit(self.metrics);
                    self.router.mark_unavailable(event_type);
                }
            }
        }
    }

    fn topics_recovered(&self) {
        if self.health.topics_failing.swap(false, Ordering::Relaxed) {
            info!("output topic created: producing resumed");
        }
    }

    /// The route and its Confluent schema id (`None` without a registry).
    /// A refused subject re-routes the type to the catch-all topic; if even
    /// that subject is refused, the record is dead-lettered.
    async fn schema_id<F: Future<Output = ()> + Clone>(
        &mut self,
        event_type: &str,
        route: Route,
        shutdown: &F,
    ) -> Option<Result<(Route, Option<u32>), Rejection>> {
        if self.schema_ids.is_none() {
            return Some(Ok((route, None)));
        }
        match self.registry_id(&route.topic, shutdown).await? {
            Ok(id) => return Some(Ok((route, Some(id)))),
            Err(e) if route.catch_all.is_none() => {
                TypeRerouted {
                    cause: RerouteCause::SubjectRefused,
                    event_type,
                    error: &e,
                }
                .emit(self.metrics);
                self.router.mark_unavailable(event_type);
            }
            Err(e) => return Some(Err(registry_refused(&e))),
        }
        let route = self.router.route(event_type);
        match self.registry_id(&route.topic, shutdown).await? {
            Ok(id) => Some(Ok((route, Some(id)))),
            Err(e) => Some(Err(registry_refused(&e))),
        }
    }

    /// The schema id of `topic`'s subject, waiting out a registry outage
    /// (readiness false, nothing dead-lettered); None if shutdown came first.
    async fn registry_id<F: Future<Output = ()> + Clone>(
        &mut self,
        topic: &str,
        shutdown: &F,
    ) -> Option<Result<u32, RegistryError>> {
        let mut backoff = Backoff::new(self.settings.pipeline.produce_retry_backoff_max_ms);
        let ids = self.schema_ids.as_mut()?;
        // The common case, without a timer or a future: the id is cached.
        if let Some(id) = ids.cached(topic) {
            return Some(Ok(id));
        }
        loop {
            // Paused on purpose, not stuck: keep liveness up.
            match beating(self.health, ids.id_for(topic)).await {
                Ok(id) => {
                    if self
                        .health
                        .registry_unavailable
                        .swap(false, Ordering::Relaxed)
                    {
                        RegistryRecovered.emit(self.metrics);
                    }
                    return Some(Ok(id));
                }
                Err(e) if e.is_transient() || is_credentials_refusal(&e) => {
                    let was_available = !self
                        .health
                        .registry_unavailable
                        .swap(true, Ordering::Relaxed);
                    RegistryUnavailable {
                        error: &e,
                        first: was_available,
                    }
                    .emit(self.metrics);
                    tokio::select! {
                        () = shutdown.clone() => return None,
                        () = beating(self.health, backoff.wait()) => {}
                    }
                }
                Err(e) => {
                    RegistryRefused.emit(self.metrics);
                    return Some(Err(e));
                }
            }
        }
    }

    fn count_route(&self, envelope: &Envelope<'_>, route: &Route) {
        if let Some(cause) = route.catch_all {
            CatchAllRouted {
                cause,
                event_type: &envelope.event_type,
                topic: &route.topic,
                first_for_type: route.first_catch_all_for_type,
            }
            .emit(self.metrics);
        }
    }

    /// The dead letter for `input`, in the largest form the producer takes.
    fn dead_letter(
        &mut self,
        input: &Input<'_>,
        rejection: Rejection,
        copy: Box<InputCopy>,
    ) -> Prepared {
        let reason = rejection.reason;
        DeadLettering {
            reason,
            topic: input.ingest.topic,
            partition: input.ingest.partition,
            offset: input.ingest.offset,
            first_of_reason: !std::mem::replace(&mut self.reasons_seen[reason.index()], true),
        }
        .emit(self.metrics);
        let (record, form) = fitting_dead_letter(
            &self.settings.output.dead_letter_topic,
            input,
            &rejection,
            &self.settings.output.drop_headers,
            self.max_message_bytes,
        );
        Prepared {
            record,
            kind: OutputKind::DeadLetter { rejection, form },
            input: copy,
            remember: None,
        }
    }
}

/// What travels with each output record through delivery.
pub struct Delivered {
    /// The input offset it settles.
    pub ticket: crate::kafka::offsets::Ticket,
    /// What it is.
    pub prepared_kind: OutputKind,
    /// When its input was consumed.
    pub consumed_at: std::time::Instant,
    /// The input, for a replacement if it is refused.
    pub input: Box<InputCopy>,
    /// The id digest to write to the de-duplication changelog once acknowledged.
    pub remember: Option<IdDigest>,
}

fn registry_refused(e: &RegistryError) -> Rejection {
    Rejection::new(
        RejectReason::RegistryRefused,
        format!("the schema registry refused the envelope's subject: {e}"),
    )
}

/// Runs `work`, marking the loop alive every second meanwhile: a record
/// held on purpose (broker or registry trouble, each call bounded by its
/// timeout) is unready, never a liveness failure.
async fn beating<T>(health: &Health, work: impl Future<Output = T>) -> T {
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = tick.tick() => health.beat(),
        }
    }
}

/// 401/403 mid-stream: credentials being rotated, not this type's fault.
/// Held (unready) rather than sending every new type to the catch-all;
/// at start-up the same answers are a configuration error.
fn is_credentials_refusal(e: &RegistryError) -> bool {
    matches!(
        e,
        RegistryError::Refused {
            status: 401 | 403,
            ..
        }
    )
}

/// The `shape` label of an envelope.
pub fn shape_label(shape: Shape) -> &'static str {
    match shape {
        Shape::Event => "event",
        Shape::LegacyRule => "legacy",
        Shape::Generic => "generic",
    }
}

/// A record's envelope, or why it has none (a null value is a tombstone,
/// not a webhook body).
fn normalized<'a>(
    input: &Input<'a>,
    options: &'a NormalizeOptions,
) -> Result<Envelope<'a>, Rejection> {
    let Some(value) = input.value else {
        return Err(Rejection::new(
            RejectReason::NullValue,
            "record has a null value (a tombstone), not a webhook body",
        ));
    };
    normalize(value, &HeaderSlice(input.headers), &input.ingest, options)
}
