//! The operational events: each owns its log line, its counters and their
//! labels (Vector's `internal_events`), so the call site says
//! `DeadLettering { .. }.emit(metrics)` and nothing else.

use std::fmt::Display;

use tracing::{debug, error, info, warn};

use crate::core::rejection::{RejectReason, excerpt};
use crate::core::signature::SignatureFailure;
use crate::ops::metrics::Metrics;

// The label values live below both this file and `metrics` (which
// pre-registers every value); re-exported so callers name them here.
pub use crate::ops::labels::{CatchAllReason, Client, RebalanceKind, ReceiveOutcome};

/// An operational event: it owns its log line, its counters and their
/// labels, so that what operators read in the log and in Grafana cannot
/// drift apart (the way Vector's `internal_events` are built).
pub trait InternalEvent {
    /// Logs the event and moves its metrics.
    fn emit(self, metrics: &Metrics);
}

/// Partitions assigned or revoked; `now` is how many this member holds after.
pub struct Rebalanced<'a> {
    /// Assign or revoke.
    pub kind: RebalanceKind,
    /// The partitions, as `topic[partition],...`.
    pub partitions: &'a str,
    /// Partitions held after the step.
    pub now: usize,
}

impl InternalEvent for Rebalanced<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.assigned_partitions.set(self.now as i64);
        metrics
            .rebalances
            .with_label_values(&[self.kind.label()])
            .inc();
        match self.kind {
            RebalanceKind::Revoke => info!(revoked = %self.partitions, "partitions revoked"),
            _ => info!(assigned = %self.partitions, "partitions assigned"),
        }
    }
}

/// A rebalance failed.
pub struct RebalanceFailed<'a, E: Display> {
    /// librdkafka's error.
    pub error: &'a E,
}

impl<E: Display> InternalEvent for RebalanceFailed<'_, E> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .rebalances
            .with_label_values(&[RebalanceKind::Error.label()])
            .inc();
        warn!(error = %self.error, "rebalance error");
    }
}

/// An offset commit finished (`error` is `None` when it succeeded).
pub struct OffsetsCommitted<'a, E: Display> {
    /// Why it failed, if it did.
    pub error: Option<&'a E>,
}

impl<E: Display> InternalEvent for OffsetsCommitted<'_, E> {
    fn emit(self, metrics: &Metrics) {
        match self.error {
            None => metrics.offset_commits.inc(),
            Some(error) => {
                metrics.offset_commit_failures.inc();
                warn!(%error, "offset commit failed");
            }
        }
    }
}

/// A send failed for now; it is re-sent with backoff. `first` says whether
/// producing just started failing (one warning then, not one per record).
pub struct ProduceFailed<'a, E: Display> {
    /// The error.
    pub error: &'a E,
    /// Its librdkafka code's name (a bounded set), the `code` label.
    pub code: &'a str,
    /// The record's topic.
    pub topic: &'a str,
    /// Whether this record just started failing.
    pub first_failure: bool,
    /// Whether no other record was failing before it.
    pub first_record_failing: bool,
}

impl<E: Display> InternalEvent for ProduceFailed<'_, E> {
    fn emit(self, metrics: &Metrics) {
        metrics.produce_errors.with_label_values(&[self.code]).inc();
        metrics.produce_retries.inc();
        if self.first_failure && self.first_record_failing {
            warn!(error = %self.error, topic = %self.topic, "produce failed; re-sending with backoff (partitions held)");
        } else if self.first_failure {
            debug!(error = %self.error, topic = %self.topic, "produce failed");
        }
    }
}

/// In a transaction, a record (or changelog record) was reported
/// delivered without an offset: not re-sent, the transaction is aborted
/// (`TransactionAborted` says so); counted as at-least-once counts it.
pub struct UnconfirmedInTransaction<'a> {
    /// The `code` label (`AckWithoutOffset`).
    pub code: &'a str,
}

impl InternalEvent for UnconfirmedInTransaction<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.produce_errors.with_label_values(&[self.code]).inc();
        debug!("an output was acknowledged without an offset: the transaction is to be aborted");
    }
}

/// A de-duplication changelog write failed: the id stays remembered in
/// memory, but a restart (or the partition's next owner) forgets it.
pub struct ChangelogWriteFailed<'a, E: Display> {
    pub error: &'a E,
    /// librdkafka's code name, the `code` label.
    pub code: &'a str,
    /// The first failure since the changelog last took a write.
    pub first: bool,
}

impl<E: Display> InternalEvent for ChangelogWriteFailed<'_, E> {
    fn emit(self, metrics: &Metrics) {
        metrics.produce_errors.with_label_values(&[self.code]).inc();
        if self.first {
            error!(
                error = %self.error,
                "cannot write the de-duplication changelog: ids are remembered until the next \
                 restart only (grant WRITE on the changelog topic, dedup.changelog_topic)"
            );
        }
    }
}

/// The broker refused a record for good; something else will be sent.
pub struct ProduceRefused<'a> {
    /// librdkafka's code name, the `code` label.
    pub code: &'a str,
}

impl InternalEvent for ProduceRefused<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.produce_errors.with_label_values(&[self.code]).inc();
    }
}

/// No record is being re-sent any more.
pub struct ProduceRecovered;

impl InternalEvent for ProduceRecovered {
    fn emit(self, _: &Metrics) {
        info!("produce recovered: no record is being re-sent");
    }
}

/// A record is being dead-lettered. Logs the reason code and coordinates,
/// never the rejection's message: it can quote the body, and no log line
/// carries webhook content (the message is in the dead letter's
/// `codat_stream.dlq.message` header).
pub struct DeadLettering<'a> {
    /// Why.
    pub reason: RejectReason,
    /// The ingest coordinates.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Whether it is the first of its reason since start-up.
    pub first_of_reason: bool,
}

impl InternalEvent for DeadLettering<'_> {
    fn emit(self, metrics: &Metrics) {
        let reason = self.reason.code();
        if self.reason.is_body_reason() {
            metrics.parse_failures.with_label_values(&[reason]).inc();
        }
        let (topic, partition, offset) = (self.topic, self.partition, self.offset);
        if self.first_of_reason {
            warn!(
                reason,
                topic,
                partition,
                offset,
                "dead-lettering records (first of this reason; the dead letter's codat_stream.dlq.message says why)"
            );
        }
        debug!(reason, topic, partition, offset, "dead-lettered");
    }
}

/// An envelope went to the catch-all topic.
pub struct CatchAllRouted<'a> {
    /// Why.
    pub cause: CatchAllReason,
    /// Its type, shortened (input: never logged in full).
    pub event_type: &'a str,
    /// The catch-all topic.
    pub topic: &'a str,
    /// Whether it is the first envelope of this type sent there.
    pub first_for_type: bool,
}

impl InternalEvent for CatchAllRouted<'_> {
    fn emit(self, metrics: &Metrics) {
        let cause = self.cause.label();
        metrics.catch_all_routed.with_label_values(&[cause]).inc();
        if self.first_for_type {
            warn!(event_type = %excerpt(self.event_type), cause, topic = %self.topic, "routing a new event type to the catch-all topic");
        }
    }
}

/// The schema registry did not answer (or refused credentials mid-stream);
/// records are held. `first` when it just became unavailable.
pub struct RegistryUnavailable<'a, E: Display> {
    /// The error.
    pub error: &'a E,
    /// Whether it was available before.
    pub first: bool,
}

impl<E: Display> InternalEvent for RegistryUnavailable<'_, E> {
    fn emit(self, metrics: &Metrics) {
        metrics.schema_registry_errors.inc();
        if self.first {
            warn!(error = %self.error, "schema registry unavailable: producing paused until it answers (records are held, not dead-lettered)");
        }
    }
}

/// The schema registry answers again.
pub struct RegistryRecovered;

impl InternalEvent for RegistryRecovered {
    fn emit(self, _: &Metrics) {
        info!("schema registry answering again: producing resumed");
    }
}

/// The schema registry refused a subject for good.
pub struct RegistryRefused;

impl InternalEvent for RegistryRefused {
    fn emit(self, metrics: &Metrics) {
        metrics.schema_registry_errors.inc();
    }
}

/// Why a type is sent to the catch-all topic from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerouteCause {
    /// The schema registry refused its subject.
    SubjectRefused,
    /// The cluster refused to create its topic.
    TopicRefused,
    /// The broker refuses records on its topic.
    RecordsRefused,
}

/// A type is re-routed to the catch-all topic for good (a configuration
/// problem: the operator should see it once, loudly).
pub struct TypeRerouted<'a, E: Display> {
    /// Why.
    pub cause: RerouteCause,
    /// The type (input: shortened in the log).
    pub event_type: &'a str,
    /// The error behind it.
    pub error: &'a E,
}

impl<E: Display> InternalEvent for TypeRerouted<'_, E> {
    fn emit(self, _: &Metrics) {
        let (error, event_type) = (self.error, excerpt(self.event_type));
        match self.cause {
            RerouteCause::SubjectRefused => {
                error!(%error, %event_type, "schema registry refused this type's subject: routing the type to the catch-all topic")
            }
            RerouteCause::TopicRefused => {
                error!(%error, %event_type, "topic refused: routing this type to the catch-all topic")
            }
            RerouteCause::RecordsRefused => {
                warn!(%error, %event_type, "the broker refuses this topic: routing its type to the catch-all topic")
            }
        }
    }
}

/// A Kafka client reported an error.
pub struct KafkaClientError<'a, E: Display> {
    /// Which client.
    pub client: Client,
    /// The error.
    pub error: &'a E,
    /// librdkafka's reason text.
    pub reason: &'a str,
}

impl<E: Display> InternalEvent for KafkaClientError<'_, E> {
    fn emit(self, _: &Metrics) {
        let (error, reason) = (self.error, self.reason);
        match self.client {
            Client::Consumer => warn!(%error, reason, "kafka consumer error"),
            Client::Producer => warn!(%error, reason, "kafka producer error"),
        }
    }
}

/// The brokers refuse this client's credentials or TLS: logged once per
/// kind, with the settings to check (never their values).
pub struct KafkaAccessRefused<'a> {
    /// Which client saw it.
    pub client: Client,
    /// What was refused.
    pub failure: crate::ops::health::AccessFailure,
    /// librdkafka's reason text (addresses and OpenSSL's verdict).
    pub reason: &'a str,
}

impl InternalEvent for KafkaAccessRefused<'_> {
    fn emit(self, _: &Metrics) {
        error!(
            client = self.client.label(),
            code = self.failure.code(),
            reason = self.reason,
            "{}",
            self.failure.explanation()
        );
    }
}

/// A copy of an event already produced within the window was not produced.
pub struct DuplicateSuppressed {
    /// The suppressed copy's shape label (`event`, `legacy`, `generic`).
    pub shape: &'static str,
}

impl InternalEvent for DuplicateSuppressed {
    fn emit(self, metrics: &Metrics) {
        metrics
            .duplicates_suppressed
            .with_label_values(&[self.shape])
            .inc();
        debug!(shape = self.shape, "duplicate suppressed");
    }
}

/// Newly assigned partitions' windows were restored from the changelog.
pub struct DedupRestored {
    /// Partitions restored.
    pub partitions: usize,
    /// Changelog records read.
    pub records: usize,
    /// How long it took.
    pub seconds: f64,
    /// Ids remembered now, over every partition.
    pub ids: usize,
}

impl InternalEvent for DedupRestored {
    fn emit(self, metrics: &Metrics) {
        metrics.dedup_restore_seconds.observe(self.seconds);
        metrics
            .dedup_ids
            .set(i64::try_from(self.ids).unwrap_or(i64::MAX));
        info!(
            partitions = self.partitions,
            records = self.records,
            seconds = self.seconds,
            "de-duplication state restored"
        );
    }
}

/// The changelog could not be read: the partitions go on with empty windows
/// (copies of earlier events may be produced again; nothing is lost).
pub struct DedupRestoreFailed<'a, E: Display> {
    /// Why.
    pub error: &'a E,
}

impl<E: Display> InternalEvent for DedupRestoreFailed<'_, E> {
    fn emit(self, _: &Metrics) {
        error!(error = %self.error, "cannot restore de-duplication state: going on with empty windows (duplicates possible)");
    }
}

/// A de-duplication outcome worth counting beyond suppression.
pub struct DedupOffered {
    /// The window was full: the id was produced, not remembered.
    pub not_remembered: bool,
    /// The ingest record had no key (the first one warns).
    pub unkeyed: bool,
    /// Whether this is the first unkeyed record seen.
    pub first_unkeyed: bool,
    /// Ids remembered now.
    pub ids: usize,
}

impl InternalEvent for DedupOffered {
    fn emit(self, metrics: &Metrics) {
        metrics
            .dedup_ids
            .set(i64::try_from(self.ids).unwrap_or(i64::MAX));
        if self.not_remembered {
            metrics.dedup_not_remembered.inc();
        }
        if self.unkeyed {
            metrics.dedup_unkeyed_records.inc();
            if self.first_unkeyed {
                warn!(
                    "de-duplication is on but ingest records arrive without a key: copies of one event may land on different partitions and be produced twice (key ingest records by the event id)"
                );
            }
        }
    }
}

/// A webhook request was answered.
pub struct WebhookAnswered {
    /// How.
    pub outcome: ReceiveOutcome,
    /// From its head to the answer.
    pub seconds: f64,
    /// Body bytes (counted when accepted).
    pub body_bytes: usize,
}

impl InternalEvent for WebhookAnswered {
    fn emit(self, metrics: &Metrics) {
        metrics
            .receive_requests
            .with_label_values(&[self.outcome.label()])
            .inc();
        metrics.receive_request_duration.observe(self.seconds);
        if self.outcome == ReceiveOutcome::Accepted {
            metrics
                .receive_body_bytes
                .inc_by(u64::try_from(self.body_bytes).unwrap_or(u64::MAX));
        }
        debug!(
            outcome = self.outcome.label(),
            status = self.outcome.status(),
            seconds = self.seconds,
            "webhook answered"
        );
    }
}

/// A delivery was refused as not authentic. Logs the endpoint and the
/// reason, never the body or a header's value.
pub struct WebhookUnauthenticated<'a> {
    /// Why.
    pub reason: SignatureFailure,
    /// The endpoint's configured name.
    pub endpoint: &'a str,
    /// Whether it is the first of its reason since start-up.
    pub first_of_reason: bool,
}

impl InternalEvent for WebhookUnauthenticated<'_> {
    fn emit(self, metrics: &Metrics) {
        let reason = self.reason.label();
        metrics
            .receive_auth_failures
            .with_label_values(&[reason])
            .inc();
        let endpoint = self.endpoint;
        if self.first_of_reason {
            warn!(
                reason,
                endpoint,
                "webhook refused 401 (first of this reason; the rest are counted in codat_stream_receive_auth_failures_total)"
            );
        } else {
            debug!(reason, endpoint, "webhook refused 401");
        }
    }
}

/// The broker did not take a webhook in time (answered 503, Codat
/// retries). `first` when the previous one was stored.
pub struct WebhookNotStored<'a, E: Display> {
    /// Why.
    pub error: &'a E,
    /// Whether storing just started failing.
    pub first: bool,
}

impl<E: Display> InternalEvent for WebhookNotStored<'_, E> {
    fn emit(self, _: &Metrics) {
        if self.first {
            warn!(error = %self.error, "the ingest topic is not acknowledging webhooks: answering 503 so Codat retries");
        } else {
            debug!(error = %self.error, "webhook not stored");
        }
    }
}

/// Webhooks are stored again after a failure.
pub struct WebhooksStoredAgain;

impl InternalEvent for WebhooksStoredAgain {
    fn emit(self, _: &Metrics) {
        info!("the ingest topic acknowledges webhooks again");
    }
}
/// An exactly-once transaction was committed.
pub struct TransactionCommitted {
    /// Input records it covered.
    pub records: usize,
}

impl InternalEvent for TransactionCommitted {
    fn emit(self, metrics: &Metrics) {
        metrics.transactions.with_label_values(&["committed"]).inc();
        metrics.transaction_records.inc_by(self.records as u64);
        debug!(records = self.records, "transaction committed");
    }
}

/// An exactly-once transaction was aborted; the consumer rewinds to the
/// committed offsets and its records are processed again.
pub struct TransactionAborted<'a> {
    /// Why.
    pub why: &'a str,
}

impl InternalEvent for TransactionAborted<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.transactions.with_label_values(&["aborted"]).inc();
        warn!(
            why = self.why,
            "transaction aborted: rewinding to the committed offsets"
        );
    }
}

/// A subscribed ingest topic does not exist (logged when first seen, then
/// every few minutes while it lasts).
pub struct IngestTopicAwaited<'a> {
    /// The topic.
    pub topic: &'a str,
    /// How often the connector looks for it.
    pub every_secs: u64,
    /// A command that creates it.
    pub create: String,
}

impl InternalEvent for IngestTopicAwaited<'_> {
    fn emit(self, _: &Metrics) {
        warn!(
            topic = self.topic,
            every_secs = self.every_secs,
            create = %self.create,
            "ingest topic does not exist yet: waiting for it (create it, or correct ingest.topics)"
        );
    }
}

/// An awaited ingest topic exists now; the consumer joins its partitions.
pub struct IngestTopicAppeared<'a> {
    /// The topic.
    pub topic: &'a str,
}

impl InternalEvent for IngestTopicAppeared<'_> {
    fn emit(self, _: &Metrics) {
        info!(
            topic = self.topic,
            "ingest topic exists now: joining its partitions"
        );
    }
}
