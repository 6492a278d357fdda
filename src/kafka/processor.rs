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

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rdkafka::error::RDKafkaErrorCode;
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::config::{Settings, ValueFormat};
use crate::core::dedup::{IdDigest, Remember};
use crate::core::envelope::{Envelope, Shape};
use crate::core::envelope_avro::{ENVELOPE_SCHEMA_JSON, EnvelopeCodec};
use crate::core::event_type::known_event_types;
use crate::core::normalize::{NormalizeOptions, normalize};
use crate::core::rejection::{RejectReason, Rejection};
use crate::kafka::dedup::Dedup;
use crate::kafka::delivery::Refusal;
use crate::kafka::output::{
    DeadLetterForm, Input, InputCopy, OutRecord, dead_letter_record, envelope_record,
    fitting_dead_letter,
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
    types: HashMap<Box<str>, TypeHandles>,
    dedup: Option<Dedup>,
    unkeyed_seen: bool,
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
            types: HashMap::new(),
            dedup: match settings.dedup.enabled {
                true => Some(Dedup::new(settings)?),
                false => None,
            },
            unkeyed_seen: false,
        })
    }

    /// The topics made at start-up: dead letters, catch-all, every known type.
    pub fn startup_topics(&self) -> Vec<String> {
        let mut startup = vec![
            self.settings.output.dead_letter_topic.clone(),
            self.settings.output.catch_all_topic.clone(),
        ];
        startup.extend(
            known_event_types()
                .iter()
                .map(|t| self.router.topic_for(t))
                .filter(|t| !self.router.is_reserved(t)),
        );
        startup.sort();
        startup.dedup();
        startup
    }

    /// Creates the start-up topics and registers their subjects, waiting out
    /// broker and registry trouble; `Ok(false)` if `shutdown` came first.
    pub async fn start(&mut self, shutdown: impl Future<Output = ()>) -> Result<bool, StartError> {
        let shutdown = std::pin::pin!(shutdown);
        let startup = self.startup_topics();
        let work = async {
            self.ensure_startup_topics(&startup).await?;
            self.ensure_changelog().await?;
            let dlq = self.settings.output.dead_letter_topic.clone();
            for topic in startup.iter().filter(|t| **t != dlq) {
                self.register_at_start_up(topic).await?;
            }
            Ok::<(), StartError>(())
        };
        tokio::select! {
            () = shutdown => Ok(false),
            done = work => done.map(|()| true),
        }
    }

    async fn ensure_startup_topics(&mut self, startup: &[String]) -> Result<(), StartError> {
        let mut backoff = Backoff::new(self.settings.pipeline.produce_retry_backoff_max_ms);
        loop {
            match beating(self.health, self.topics.ensure(startup)).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => {
                    warn!(error = %e, "waiting for the cluster to create output topics");
                    beating(self.health, backoff.wait()).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The de-duplication changelog, when de-duplication is on.
    async fn ensure_changelog(&mut self) -> Result<(), StartError> {
        let Some(changelog) = self.dedup.as_ref().map(|d| d.changelog().to_owned()) else {
            return Ok(());
        };
        let ingest = &self.settings.ingest.topics;
        // A day past the window, so compaction never races expiry.
        let retention_ms = self.settings.dedup.window_ms + 24 * 3_600_000;
        let mut backoff = Backoff::new(self.settings.pipeline.produce_retry_backoff_max_ms);
        loop {
            let creating = self
                .topics
                .ensure_changelog(&changelog, ingest, retention_ms);
            match beating(self.health, creating).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => {
                    warn!(error = %e, "waiting for the cluster to create the de-duplication changelog");
                    beating(self.health, backoff.wait()).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Registers `topic`'s subject; a registry that does not answer is
    /// waited out (a deploy during a registry outage must not crash-loop),
    /// one that refuses is a start-up error.
    async fn register_at_start_up(&mut self, topic: &str) -> Result<(), StartError> {
        let Some(ids) = self.schema_ids.as_mut() else {
            return Ok(());
        };
        let mut backoff = Backoff::new(self.settings.pipeline.produce_retry_backoff_max_ms);
        loop {
            match beating(self.health, ids.id_for(topic)).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_transient() => {
                    warn!(error = %e, "waiting for the schema registry");
                    beating(self.health, backoff.wait()).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
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

    /// The de-duplication state, when it is on.
    pub fn dedup(&mut self) -> Option<&mut Dedup> {
        self.dedup.as_mut()
    }

    /// What to send for a record the broker refused for good:
    /// - an envelope whose topic refuses it (not authorised, unknown topic)
    ///   re-routes its type to the catch-all topic and goes there;
    /// - any other refused envelope becomes a `produce_refused` dead letter;
    /// - a dead letter refused for its size is sent in a smaller form.
    ///
    /// Gives the refusal back when nothing else can be sent (the dead-letter
    /// topic itself refuses: the caller holds it, a configuration problem);
    /// `Ok(None)` if shutdown came while the replacement was held.
    pub async fn replacement<F: Future<Output = ()> + Clone>(
        &mut self,
        refusal: Refusal<Delivered>,
        shutdown: &F,
    ) -> Result<Option<Prepared>, Box<Refusal<Delivered>>> {
        let code = refusal.code;
        let topic = refusal.record.topic.clone();
        let input = refusal.token.input.clone();
        let headers = input.header_refs();
        let view = input.input(&headers);
        let replacement = match &refusal.token.prepared_kind {
            OutputKind::Envelope {
                event_type,
                on_catch_all: false,
                ..
            } if is_topic_refusal(code) => {
                TypeRerouted {
                    cause: RerouteCause::RecordsRefused,
                    event_type,
                    error: &format!("{code:?} on {topic}"),
                }
                .emit(self.metrics);
                self.router.mark_unavailable(event_type);
                return Ok(self.process(&view, shutdown).await);
            }
            OutputKind::Envelope { .. } => {
                let rejection = Rejection::new(
                    RejectReason::ProduceRefused,
                    format!("the broker refused the envelope record ({code:?})"),
                );
                Some(self.dead_letter(&view, rejection, input.clone()))
            }
            OutputKind::DeadLetter { rejection, form } if is_size_refusal(code) => {
                let smaller = form.smaller();
                smaller.map(|smaller| self.smaller_dead_letter(&topic, &view, rejection, smaller))
            }
            OutputKind::DeadLetter { .. } => None,
        };
        match replacement {
            Some(prepared) => {
                warn!(?code, %topic, "the broker refused a record for good: sending a dead letter instead");
                Ok(Some(prepared))
            }
            None => {
                error!(?code, %topic, "the broker refuses a dead letter: holding its partition (check the dead-letter topic's ACLs and size limits)");
                Err(Box::new(refusal))
            }
        }
    }

    /// The same dead letter in `form`, for one refused for its size.
    fn smaller_dead_letter(
        &self,
        topic: &str,
        view: &Input<'_>,
        rejection: &Rejection,
        form: DeadLetterForm,
    ) -> Prepared {
        let drop = &self.settings.output.drop_headers;
        let record = dead_letter_record(topic.to_owned(), view, rejection, drop, form);
        Prepared {
            record,
            kind: OutputKind::DeadLetter {
                rejection: rejection.clone(),
                form,
            },
            input: Box::new(InputCopy::of(view)),
            remember: None,
        }
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
        &self,
        envelope: &Envelope<'_>,
        input: &Input<'_>,
        route: &Route,
        schema_id: Option<u32>,
    ) -> Result<OutRecord, Rejection> {
        let mut value = Vec::with_capacity(256 + envelope.payload.len());
        let encoded = match schema_id {
            Some(id) => self.codec.encode_confluent_into(envelope, id, &mut value),
            None => self.codec.encode_single_object_into(envelope, &mut value),
        };
        if let Err(e) = encoded {
            // A defect (schema and envelope disagree): keep the record, say why.
            return Err(Rejection::new(
                RejectReason::InvalidField,
                format!("envelope could not be encoded: {e}"),
            ));
        }
        let drop = &self.settings.output.drop_headers;
        let record = envelope_record(route.topic.clone(), envelope, value, input.headers, drop)?;
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
            let topic = std::slice::from_ref(&route.topic);
            match beating(self.health, self.topics.ensure(topic)).await {
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

/// Why start-up could not finish.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Output topics could not be created.
    #[error(transparent)]
    Topics(#[from] crate::kafka::topics::TopicError),
    /// The schema registry refused or did not answer.
    #[error("cannot register the envelope schema: {0}")]
    Registry(#[from] RegistryError),
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

/// The topic itself refuses the record: another topic may take it.
fn is_topic_refusal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::UnknownTopic
    )
}

fn is_size_refusal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::MessageBatchTooLarge
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::normalize::IngestMeta;
    use crate::kafka::offsets::OffsetTracker;

    const EVENT: &[u8] =
        br#"{"id":"e","eventType":"connection.failed","payload":{"referenceCompany":{"id":"c"}}}"#;

    struct Fixture {
        settings: &'static Settings,
        processor: Processor<'static>,
        runtime: tokio::runtime::Runtime,
    }

    fn fixture() -> Fixture {
        let mut settings = Settings::default();
        settings.topics.create = false;
        let settings: &'static Settings = Box::leak(Box::new(settings));
        let metrics = Box::leak(Box::new(Metrics::new().unwrap()));
        let health = Box::leak(Box::new(Health::default()));
        Fixture {
            settings,
            processor: Processor::new(settings, metrics, health).unwrap(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    impl Fixture {
        fn process(&mut self, value: &[u8]) -> Prepared {
            let input = Input {
                key: Some(b"k"),
                value: Some(value),
                headers: &[],
                ingest: IngestMeta {
                    topic: "in",
                    partition: 0,
                    offset: 1,
                    timestamp_ms: 1,
                },
            };
            let never = futures::future::pending::<()>();
            self.runtime
                .block_on(self.processor.process(&input, &never))
                .unwrap()
        }

        /// The broker refuses `prepared` with `code`: what replaces it.
        fn refuse(
            &mut self,
            prepared: Prepared,
            code: RDKafkaErrorCode,
        ) -> Result<Prepared, Box<Refusal<Delivered>>> {
            let ticket = OffsetTracker::new().consumed(("in".into(), 0), 1);
            let token = Delivered {
                ticket,
                prepared_kind: prepared.kind,
                consumed_at: std::time::Instant::now(),
                input: prepared.input,
                remember: None,
            };
            let refusal = Refusal::synthetic(token, prepared.record, code);
            let never = futures::future::pending::<()>();
            let replaced = self
                .runtime
                .block_on(self.processor.replacement(refusal, &never));
            replaced.map(|p| p.expect("no hold without a broker"))
        }
    }

    fn form(p: &Prepared) -> Option<DeadLetterForm> {
        match &p.kind {
            OutputKind::DeadLetter { form, .. } => Some(*form),
            OutputKind::Envelope { .. } => None,
        }
    }

    /// Review of issue 9: the refuse -> shorten -> hold chain had no test.
    #[test]
    fn a_dead_letter_refused_for_its_size_shrinks_then_is_held() {
        let mut f = fixture();
        let full = f.process(b"not json");
        assert_eq!(form(&full), Some(DeadLetterForm::Full));
        let size = RDKafkaErrorCode::MessageSizeTooLarge;
        let truncated = f.refuse(full, size).ok().unwrap();
        assert_eq!(form(&truncated), Some(DeadLetterForm::Truncated));
        let bare = f.refuse(truncated, size).ok().unwrap();
        assert_eq!(form(&bare), Some(DeadLetterForm::Bare));
        assert_eq!((&bare.record.key, &bare.record.value), (&None, &None));
        assert!(f.refuse(bare, size).is_err(), "nothing smaller: held");
        let other = f.process(b"not json");
        let auth = RDKafkaErrorCode::TopicAuthorizationFailed;
        assert!(
            f.refuse(other, auth).is_err(),
            "the dead-letter topic refusing is held"
        );
    }

    /// Review of issue 9: an envelope its topic refuses goes to the
    /// catch-all topic (its type too), and only then is dead-lettered.
    #[test]
    fn an_envelope_its_topic_refuses_goes_to_the_catch_all_then_the_dlq() {
        let mut f = fixture();
        let own = f.process(EVENT);
        assert_eq!(own.record.topic, "codat.connection.failed");
        let auth = RDKafkaErrorCode::TopicAuthorizationFailed;
        let caught = f.refuse(own, auth).ok().unwrap();
        assert_eq!(caught.record.topic, f.settings.output.catch_all_topic);
        assert_eq!(
            f.process(EVENT).record.topic,
            f.settings.output.catch_all_topic,
            "the type stays re-routed"
        );
        let dead = f
            .refuse(caught, RDKafkaErrorCode::UnknownTopic)
            .ok()
            .unwrap();
        assert_eq!(dead.record.topic, f.settings.output.dead_letter_topic);
        match dead.kind {
            OutputKind::DeadLetter { rejection, .. } => {
                assert_eq!(rejection.reason, RejectReason::ProduceRefused)
            }
            OutputKind::Envelope { .. } => panic!("expected a dead letter"),
        }
    }

    #[test]
    fn an_envelope_refused_for_its_size_is_dead_lettered() {
        let mut f = fixture();
        let own = f.process(EVENT);
        let dead = f
            .refuse(own, RDKafkaErrorCode::MessageSizeTooLarge)
            .ok()
            .unwrap();
        assert_eq!(dead.record.topic, f.settings.output.dead_letter_topic);
        assert_eq!(form(&dead), Some(DeadLetterForm::Full));
        assert_eq!(dead.record.value.as_deref(), Some(EVENT));
    }
}
