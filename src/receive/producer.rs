//! The ingest producer of `receive`: one record per webhook, acknowledged
//! by every in-sync replica (`acks=all`, idempotent) or reported as not
//! stored when the deadline passes first.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::util::Timeout;

use crate::config::Settings;
use crate::kafka::client_errors;
use crate::kafka::record_headers::owned_headers;
use crate::ops::events::Client;
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;

/// Client callbacks: errors mark the brokers unreachable (readiness),
/// statistics feed the Kafka metrics.
pub struct ReceiveContext {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

impl ClientContext for ReceiveContext {
    fn error(&self, error: KafkaError, reason: &str) {
        client_errors::observe(
            &self.health,
            &self.metrics,
            Client::Producer,
            &error,
            reason,
        );
    }

    fn stats(&self, statistics: Statistics) {
        self.metrics.record_statistics("producer", &statistics);
    }
}

/// What became of one record.
#[derive(Debug)]
pub enum Stored {
    /// Acknowledged: it is on the topic.
    Yes,
    /// The broker (or librdkafka) refuses it for its size, for good.
    TooLarge(KafkaError),
    /// Not acknowledged in time, or refused for now: maybe not stored.
    No(String),
}

/// The producer and where it writes.
pub struct IngestProducer {
    producer: FutureProducer<ReceiveContext>,
    topic: String,
}

impl IngestProducer {
    /// A producer for `settings` (no network call yet).
    pub fn new(
        settings: &Settings,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> Result<IngestProducer, KafkaError> {
        let producer = settings
            .receive_producer_config()
            .create_with_context(ReceiveContext { health, metrics })?;
        Ok(IngestProducer {
            producer,
            topic: settings.receive_topic().to_owned(),
        })
    }

    /// The topic written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Produces one record and waits for its acknowledgement, at most `within`.
    pub async fn store(
        &self,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, Option<&[u8]>)],
        within: Duration,
    ) -> Stored {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic)
            .payload(value)
            .headers(owned_headers(headers));
        if let Some(key) = key {
            record = record.key(key);
        }
        // The queue wait and the delivery share one deadline.
        let delivery = self.producer.send(record, Timeout::After(within));
        match tokio::time::timeout(within, delivery).await {
            Err(_elapsed) => Stored::No(format!(
                "no acknowledgement within {} ms",
                within.as_millis()
            )),
            // Reported delivered without an offset: librdkafka's implicit
            // acknowledgement after a failed request, persistence unknown
            // (see kafka::delivery::Delivered::Unconfirmed). Not stored as
            // far as we know: Codat retries it.
            Ok(Ok(d)) if d.offset < 0 => {
                Stored::No("reported delivered without an offset: persistence unknown".to_owned())
            }
            Ok(Ok(_)) => Stored::Yes,
            Ok(Err((e, _))) if is_size_refusal(&e) => Stored::TooLarge(e),
            Ok(Err((e, _))) => Stored::No(e.to_string()),
        }
    }

    /// Whether the cluster knows the topic: `Ok(true)` it has partitions,
    /// `Ok(false)` it does not exist, `Err` the brokers did not answer.
    pub fn topic_exists(&self, within: Duration) -> Result<bool, KafkaError> {
        let metadata = self
            .producer
            .client()
            .fetch_metadata(Some(&self.topic), Timeout::After(within))?;
        Ok(metadata
            .topics()
            .iter()
            .any(|t| t.name() == self.topic && t.error().is_none() && !t.partitions().is_empty()))
    }

    /// librdkafka's fatal error, if the producer had one (it can then
    /// store nothing more).
    pub fn fatal_error(&self) -> Option<String> {
        self.producer
            .client()
            .fatal_error()
            .map(|(code, reason)| format!("{code:?}: {reason}"))
    }

    /// Waits for records still queued (those whose requests timed out).
    pub fn flush(&self, within: Duration) {
        let _ = self.producer.flush(Timeout::After(within));
    }
}

fn is_size_refusal(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
        )
    )
}
