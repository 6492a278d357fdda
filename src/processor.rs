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

use std::future::Future;
use std::sync::atomic::Ordering;

use rdkafka::error::RDKafkaErrorCode;
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::config::{Settings, ValueFormat};
use crate::delivery::Refusal;
use crate::envelope::{Envelope, Shape};
use crate::envelope_avro::{ENVELOPE_SCHEMA_JSON, EnvelopeCodec};
use crate::metrics::{Metrics, UNROUTED_TYPE_LABEL};
use crate::normalize::{NormalizeOptions, normalize};
use crate::output::{
    DeadLetterForm, Input, InputCopy, OutRecord, dead_letter_record, envelope_record,
    fitting_dead_letter,
};
use crate::pipeline::Health;
use crate::record_headers::HeaderSlice;
use crate::rejection::{RejectReason, Rejection};
use crate::routing::{Route, Router};
use crate::schema_registry::{RegistryClient, RegistryError};
use crate::topics::{TopicCreator, known_event_types};
use crate::value_format::{SchemaIds, SubjectNameStrategy};

/// What one output record is, for the metrics counted on acknowledgement
/// and for what to send instead if it is refused.
pub enum OutputKind {
    /// An envelope; its counter is labelled by type and shape.
    Envelope {
        /// `envelopes_produced_total{event_type,shape}`.
        counter: prometheus::IntCounter,
        /// The event's `time`, ms since the epoch.
        event_time_ms: i64,
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
pub struct Prepared {
    /// The record.
    pub record: OutRecord,
    /// What it is.
    pub kind: OutputKind,
    /// The consumed record, kept until acknowledged so that a refused output
    /// can still be dead-lettered.
    pub input: Box<InputCopy>,
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
}

/// Why the processor could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// A Kafka client could not be created.
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The envelope codec could not be built.
    #[error(transparent)]
    Avro(#[from] crate::envelope_avro::AvroError),
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
    /// broker trouble; `Ok(false)` if `shutdown` came first.
    pub async fn start(&mut self, shutdown: impl Future<Output = ()>) -> Result<bool, StartError> {
        let shutdown = std::pin::pin!(shutdown);
        let startup = self.startup_topics();
        let work = async {
            self.ensure_startup_topics(&startup).await?;
            let dlq = &self.settings.output.dead_letter_topic;
            if let Some(ids) = self.schema_ids.as_mut() {
                for topic in startup.iter().filter(|t| *t != dlq) {
                    self.health.beat();
                    ids.id_for(topic).await?;
                }
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
            self.health.beat();
            match self.topics.ensure(startup).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => {
                    warn!(error = %e, "waiting for the cluster to create output topics");
                    backoff.wait().await;
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
        let copy = Box::new(InputCopy::of(input));
        let Some(value) = input.value else {
            let rejection = Rejection::new(
                RejectReason::NullValue,
                "record has a null value (a tombstone), not a webhook body",
            );
            return Some(self.dead_letter(input, rejection, copy));
        };
        let headers = HeaderSlice(input.headers);
        let options = self.options.clone();
        let envelope = match normalize(value, &headers, &input.ingest, &options) {
            Ok(envelope) => envelope,
            Err(rejection) => return Some(self.dead_letter(input, rejection, copy)),
        };
        match self.envelope_output(&envelope, input, shutdown).await? {
            Ok((record, kind)) => Some(Prepared {
                record,
                kind,
                input: copy,
            }),
            Err(rejection) => Some(self.dead_letter(input, rejection, copy)),
        }
    }

    /// What to send for a record the broker refused for good; gives the
    /// refusal back when nothing else can be sent (the dead-letter topic
    /// itself refuses: the caller holds it, a configuration problem).
    pub fn replacement(
        &mut self,
        refusal: Refusal<Delivered>,
    ) -> Result<(Prepared, Delivered), Box<Refusal<Delivered>>> {
        let code = refusal.code;
        let topic = refusal.record.topic.clone();
        let replacement = match &refusal.token.prepared_kind {
            OutputKind::Envelope { .. } => {
                let rejection = Rejection::new(
                    RejectReason::ProduceRefused,
                    format!("the broker refused the envelope record ({code:?})"),
                );
                let input = &refusal.token.input;
                let headers = input.header_refs();
                Some(self.dead_letter(&input.input(&headers), rejection, input.clone()))
            }
            OutputKind::DeadLetter { rejection, form } if is_size_refusal(code) => {
                form.smaller().map(|smaller| {
                    let input = &refusal.token.input;
                    let headers = input.header_refs();
                    let record = dead_letter_record(
                        topic.clone(),
                        &input.input(&headers),
                        rejection,
                        &self.settings.output.drop_headers,
                        smaller,
                    );
                    let kind = OutputKind::DeadLetter {
                        rejection: rejection.clone(),
                        form: smaller,
                    };
                    Prepared {
                        record,
                        kind,
                        input: input.clone(),
                    }
                })
            }
            OutputKind::DeadLetter { .. } => None,
        };
        match replacement {
            Some(prepared) => {
                warn!(?code, %topic, "the broker refused a record for good: sending a dead letter instead");
                Ok((prepared, refusal.token))
            }
            None => {
                error!(?code, %topic, "the broker refuses a dead letter: holding its partition (check the dead-letter topic's ACLs and size limits)");
                Err(Box::new(refusal))
            }
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
        let mut value = Vec::with_capacity(256 + envelope.payload.len());
        let encoded = match self
            .schema_id(&envelope.event_type, &route, shutdown)
            .await?
        {
            Ok(Some(id)) => self.codec.encode_confluent_into(envelope, id, &mut value),
            Ok(None) => self.codec.encode_single_object_into(envelope, &mut value),
            Err(rejection) => return Some(Err(rejection)),
        };
        if let Err(e) = encoded {
            // A defect (schema and envelope disagree): keep the record, say why.
            return Some(Err(Rejection::new(
                RejectReason::InvalidField,
                format!("envelope could not be encoded: {e}"),
            )));
        }
        let drop = &self.settings.output.drop_headers;
        let record =
            match envelope_record(route.topic.clone(), envelope, value, input.headers, drop) {
                Ok(record) => record,
                Err(rejection) => return Some(Err(rejection)),
            };
        if record.wire_size() > self.max_message_bytes {
            return Some(Err(Rejection::new(
                RejectReason::OutputTooLarge,
                format!(
                    "the envelope record would be {} bytes; the producer's message.max.bytes is {}",
                    record.wire_size(),
                    self.max_message_bytes
                ),
            )));
        }
        self.count_route(envelope, &route);
        debug!(event_type = %envelope.event_type, topic = %route.topic, partition = input.ingest.partition, offset = input.ingest.offset, "normalised");
        let type_label = match route.catch_all {
            Some(_) => UNROUTED_TYPE_LABEL,
            None => &envelope.event_type,
        };
        let counter = self
            .metrics
            .envelopes_produced
            .with_label_values(&[type_label, shape_label(envelope.shape)]);
        let kind = OutputKind::Envelope {
            counter,
            event_time_ms: envelope.time,
        };
        Some(Ok((record, kind)))
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
            self.health.beat();
            match self.topics.ensure(std::slice::from_ref(&route.topic)).await {
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
                        () = backoff.wait() => {}
                    }
                }
                Err(e) => {
                    error!(error = %e, event_type = %crate::rejection::excerpt(event_type), "topic refused: routing this type to the catch-all topic");
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

    /// The Confluent schema id for the route (`Ok(None)` without a
    /// registry); a refused subject re-routes the type to the catch-all, and
    /// if even that subject is refused, the record is dead-lettered.
    async fn schema_id<F: Future<Output = ()> + Clone>(
        &mut self,
        event_type: &str,
        route: &Route,
        shutdown: &F,
    ) -> Option<Result<Option<u32>, Rejection>> {
        if self.schema_ids.is_none() {
            return Some(Ok(None));
        }
        match self.registry_id(&route.topic, shutdown).await? {
            Ok(id) => return Some(Ok(Some(id))),
            Err(e) if route.catch_all.is_none() => {
                error!(error = %e, event_type = %crate::rejection::excerpt(event_type), "schema registry refused this type's subject: routing the type to the catch-all topic");
                self.router.mark_unavailable(event_type);
            }
            Err(e) => return Some(Err(registry_refused(&e))),
        }
        let catch_all = self.router.catch_all_topic().to_owned();
        match self.registry_id(&catch_all, shutdown).await? {
            Ok(id) => Some(Ok(Some(id))),
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
                    return Some(Ok(id));
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
                        () = shutdown.clone() => return None,
                        () = backoff.wait() => {}
                    }
                }
                Err(e) => {
                    self.metrics.schema_registry_errors.inc();
                    return Some(Err(e));
                }
            }
        }
    }

    fn count_route(&self, envelope: &Envelope<'_>, route: &Route) {
        if let Some(reason) = route.catch_all {
            self.metrics
                .catch_all_routed
                .with_label_values(&[reason.label()])
                .inc();
            if route.first_catch_all_for_type {
                warn!(event_type = %crate::rejection::excerpt(&envelope.event_type), cause = reason.label(), topic = %route.topic, "routing a new event type to the catch-all topic");
            }
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
        if reason.is_body_reason() {
            self.metrics
                .parse_failures
                .with_label_values(&[reason.code()])
                .inc();
        }
        if !std::mem::replace(&mut self.reasons_seen[reason.index()], true) {
            // Not the rejection's message: it can quote the body (a legacy
            // RuleType, say), and no log line carries webhook content. The
            // message is in the dead letter's `codat_stream.dlq.message`.
            warn!(
                reason = reason.code(),
                topic = input.ingest.topic,
                partition = input.ingest.partition,
                offset = input.ingest.offset,
                "dead-lettering records (first of this reason; the dead letter's codat_stream.dlq.message says why)"
            );
        }
        debug!(
            reason = reason.code(),
            topic = input.ingest.topic,
            partition = input.ingest.partition,
            offset = input.ingest.offset,
            "dead-lettered"
        );
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
        }
    }
}

/// What travels with each output record through delivery.
pub struct Delivered {
    /// The input offset it settles.
    pub ticket: crate::offsets::Ticket,
    /// What it is.
    pub prepared_kind: OutputKind,
    /// When its input was consumed.
    pub consumed_at: std::time::Instant,
    /// The input, for a replacement if it is refused.
    pub input: Box<InputCopy>,
}

/// Why start-up could not finish.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Output topics could not be created.
    #[error(transparent)]
    Topics(#[from] crate::topics::TopicError),
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
