//! `codat-stream demo`: the real pipeline against librdkafka's in-process
//! mock cluster, fed the bundled sample webhooks. Needs nothing installed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

use crate::cli::body_file::split_bodies;
use crate::config::Settings;
use crate::core::envelope_avro::EnvelopeCodec;
use crate::kafka::pipeline::{self, RunOutcome};
use crate::ops::health::Health;
use crate::ops::metrics::{Metrics, MetricsError};

/// The bundled sample: every published Codat example plus invalid bodies.
pub const SAMPLE_WEBHOOKS: &[u8] = include_bytes!("../../samples/webhooks.jsonl");

/// The `webhook-id` the demo gives the first sample, Codat's seed
/// `connection.failed` webhook (the body of its documentation's example).
pub const SEED_WEBHOOK_ID: &str = "msg_demo_0";

/// What the demo saw on each output topic.
#[derive(Debug, Default)]
pub struct TopicReport {
    /// Records on the topic.
    pub count: usize,
    /// The first record: its envelope as JSON, or for the dead-letter topic
    /// its reason header and original body.
    pub first: String,
    /// Dead letters by reason code (the dead-letter topic only).
    pub reasons: BTreeMap<String, usize>,
}

/// One output record shown whole: where it landed, its key and headers
/// (non-UTF-8 bytes shown lossily) and its envelope decoded.
#[derive(Debug)]
pub struct ShownRecord {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key, if any.
    pub key: Option<String>,
    /// Its headers, in order.
    pub headers: Vec<(String, String)>,
    /// Its value, decoded.
    pub envelope: serde_json::Value,
}

/// The demo's findings.
#[derive(Debug)]
pub struct DemoReport {
    /// Bodies loaded into the ingest topic.
    pub loaded: usize,
    /// How the pipeline's run ended.
    pub outcome: RunOutcome,
    /// Per output topic.
    pub topics: BTreeMap<String, TopicReport>,
    /// The seed `connection.failed` webhook's output record.
    pub seed: Option<ShownRecord>,
}

/// Failures of the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The mock cluster or a client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The pipeline failed.
    #[error("pipeline: {0}")]
    Pipeline(#[from] pipeline::PipelineError),
    /// The pipeline did not finish the sample in time.
    #[error("the pipeline acknowledged {acknowledged} of {loaded} records within {secs} s")]
    Timeout {
        /// Records acknowledged.
        acknowledged: u64,
        /// Records loaded.
        loaded: usize,
        /// The time allowed.
        secs: u64,
    },
    /// The metric registry could not be built.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The pipeline task panicked.
    #[error("pipeline task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// An output record did not decode.
    #[error("avro: {0}")]
    Avro(#[from] crate::core::envelope_avro::AvroError),
}

/// Runs the demo over `bodies` (JSON Lines).
pub async fn run(bodies: &[u8]) -> Result<DemoReport, DemoError> {
    let mock = MockCluster::new(1)?;
    let bootstrap = mock.bootstrap_servers();
    let mut settings = Settings::default();
    settings.kafka.bootstrap_servers = bootstrap.clone();
    settings.ingest.group_id = "codat-stream-demo".into();
    // The mock cluster has no CreateTopics API but creates topics on first
    // use; the admin path is exercised against a real broker by the tests.
    settings.topics.create = false;
    let ingest_topic = settings.ingest.topics[0].clone();
    mock.create_topic(&ingest_topic, 3, 1)?;

    let loaded = load(&bootstrap, &ingest_topic, bodies).await?;

    let health = Arc::new(Health::default());
    let metrics = Arc::new(Metrics::new()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(pipeline::run(
        settings.clone(),
        async {
            let _ = stopped.await;
        },
        health.clone(),
        metrics,
    ));
    let secs = 60;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while health.acknowledged.load(Ordering::Relaxed) < loaded as u64 {
        if tokio::time::Instant::now() > deadline || task.is_finished() {
            let _ = stop.send(());
            task.await??;
            return Err(DemoError::Timeout {
                acknowledged: health.acknowledged.load(Ordering::Relaxed),
                loaded,
                secs,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    let outcome = task.await??;

    let (topics, seed) = read_back(&bootstrap, &settings)?;
    Ok(DemoReport {
        loaded,
        outcome,
        topics,
        seed,
    })
}

/// Produces each body as one record of the ingest topic.
async fn load(bootstrap: &str, topic: &str, bodies: &[u8]) -> Result<usize, DemoError> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let mut n = 0;
    for (i, body) in split_bodies(bodies).into_iter().enumerate() {
        let webhook_id = format!("msg_demo_{i}");
        let headers = OwnedHeaders::new().insert(Header {
            key: "webhook-id",
            value: Some(webhook_id.as_bytes()),
        });
        let record: FutureRecord<'_, (), [u8]> =
            FutureRecord::to(topic).payload(body).headers(headers);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
        n += 1;
    }
    Ok(n)
}

/// Reads every output topic from the beginning: counts, reasons, first
/// records, and the seed webhook's record.
fn read_back(
    bootstrap: &str,
    settings: &Settings,
) -> Result<(BTreeMap<String, TopicReport>, Option<ShownRecord>), DemoError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "codat-stream-demo-reader")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut partitions = 0;
    for t in metadata.topics() {
        if settings.ingest.topics.iter().any(|i| i == t.name()) {
            continue;
        }
        for p in t.partitions() {
            tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)?;
            partitions += 1;
        }
    }
    consumer.assign(&tpl)?;
    let codec = EnvelopeCodec::new()?;
    let mut topics: BTreeMap<String, TopicReport> = BTreeMap::new();
    let mut seed = None;
    let mut eofs = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while eofs < partitions && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => eofs += 1,
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                let headers = headers_of(&m);
                let report = topics.entry(m.topic().to_owned()).or_default();
                report.count += 1;
                if report.count == 1 {
                    report.first = describe(&m, &codec, settings)?;
                }
                if m.topic() == settings.output.dead_letter_topic {
                    let reason = header(&headers, crate::kafka::output::DLQ_REASON);
                    *report
                        .reasons
                        .entry(reason.unwrap_or_default())
                        .or_default() += 1;
                } else if header(&headers, "webhook-id").as_deref() == Some(SEED_WEBHOOK_ID) {
                    seed = Some(shown(&m, headers, &codec)?);
                }
            }
        }
    }
    Ok((topics, seed))
}

/// A record's headers as text. Read as bytes: a record keeps the input's
/// header keys, which need not be UTF-8 (rdkafka's `Headers::iter` would
/// panic).
fn headers_of(m: &rdkafka::message::BorrowedMessage<'_>) -> Vec<(String, String)> {
    m.headers()
        .map(crate::kafka::record_headers::header_pairs)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v.unwrap_or_default()).into_owned(),
            )
        })
        .collect()
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

fn shown(
    m: &rdkafka::message::BorrowedMessage<'_>,
    headers: Vec<(String, String)>,
    codec: &EnvelopeCodec,
) -> Result<ShownRecord, DemoError> {
    let envelope = codec.decode_single_object(m.payload().unwrap_or_default())?;
    Ok(ShownRecord {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        headers,
        envelope: serde_json::to_value(&envelope).unwrap_or_default(),
    })
}

fn describe(
    m: &rdkafka::message::BorrowedMessage<'_>,
    codec: &EnvelopeCodec,
    settings: &Settings,
) -> Result<String, DemoError> {
    let value = m.payload().unwrap_or_default();
    if m.topic() == settings.output.dead_letter_topic {
        let reason = header(&headers_of(m), crate::kafka::output::DLQ_REASON).unwrap_or_default();
        return Ok(format!(
            "reason={reason} body={}",
            String::from_utf8_lossy(value)
        ));
    }
    let envelope = codec.decode_single_object(value)?;
    Ok(serde_json::to_string(&envelope).unwrap_or_default())
}
