//! Configuration: built-in defaults < a TOML file < environment variables
//! (`CODAT_STREAM__SECTION__KEY`), validated before anything connects.
//! Secrets are never echoed: not by `check-config`, not in an error.

mod masking;
mod secrets;

mod source;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::core::event_type;
use crate::core::normalize::{DEFAULT_MAX_BODY_BYTES, DEFAULT_SOURCE, NormalizeOptions};
use crate::core::redact::{RedactMode, Redaction};
use crate::core::signature::{Credentials, SigningKey, Verifier};

pub use crate::core::secret::{MASK, Secret};
pub use masking::{is_secret_key, mask_property, mask_url};
pub use secrets::SecretRef;

/// Environment variable prefix; `__` separates the prefix, sections and keys.
pub const ENV_PREFIX: &str = "CODAT_STREAM";

/// Longest Kafka topic name.
pub const MAX_TOPIC_LEN: usize = 249;

/// Longest output topic prefix: with a 200-character type it stays a legal topic.
pub const MAX_TOPIC_PREFIX_LEN: usize = MAX_TOPIC_LEN - event_type::MAX_EVENT_TYPE_LEN;

/// librdkafka properties codat-stream sets itself: overriding them would
/// break the delivery guarantee or duplicate a typed setting.
pub const MANAGED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "transactional.id",
];

/// Everything codat-stream can be told.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Broker connection and librdkafka pass-through properties.
    pub kafka: KafkaSettings,
    /// What to consume.
    pub ingest: IngestSettings,
    /// Where envelopes and rejected records go.
    pub output: OutputSettings,
    /// How output topics are created.
    pub topics: TopicSettings,
    /// The normaliser.
    pub normalize: NormalizeSettings,
    /// Flow control and shutdown.
    pub pipeline: PipelineSettings,
    /// Logging.
    pub log: LogSettings,
    /// The operator's HTTP endpoint: /metrics, /healthz, /readyz.
    pub http: HttpSettings,
    /// Prometheus metrics.
    pub metrics: MetricsSettings,
    /// The platform's Schema Registry (Confluent REST API).
    pub schema_registry: SchemaRegistrySettings,
    /// De-duplication of events by id across Codat's retries.
    pub dedup: DedupSettings,
    /// `codat-stream receive`: the webhook endpoint in front of the ingest topic.
    pub receive: ReceiveSettings,
    /// The delivery guarantee: at-least-once, or exactly-once (transactions).
    pub delivery: DeliverySettings,
}

/// The delivery guarantee (README, "Delivery guarantee").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// `at-least-once` (the default) or `exactly-once`: outputs and input
    /// offsets committed in one Kafka transaction; read the output topics
    /// with `isolation.level = read_committed`.
    pub guarantee: String,
    /// Exactly-once: most records per transaction.
    pub transaction_max_records: usize,
    /// Exactly-once: longest a transaction stays open (the added latency).
    pub transaction_max_ms: u64,
    /// Exactly-once: the producer's `transactional.id`; empty =
    /// `<group_id>-<hostname>`. Keep it stable per instance (a restarted
    /// instance then fences its predecessor at once) and unique across
    /// instances.
    pub transactional_id: String,
    /// Exactly-once: the broker aborts a transaction open longer than this.
    pub transaction_timeout_ms: u64,
}

/// The delivery guarantee, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    /// Outputs acknowledged before offsets are committed; duplicates after
    /// a crash or rebalance.
    AtLeastOnce,
    /// Outputs and offsets in one transaction.
    ExactlyOnce,
}

/// `codat-stream receive`: an HTTP endpoint Codat delivers webhooks to,
/// producing each verified body unchanged to the ingest topic and
/// answering 2xx only once the broker acknowledged it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiveSettings {
    /// Address webhooks are delivered to (plain HTTP: TLS is terminated by
    /// the ingress in front of it).
    pub listen: String,
    /// Topic the bodies are produced to; empty = the first of `ingest.topics`.
    pub topic: String,
    /// Larger bodies are answered 413 unread.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers); larger is 431.
    pub max_header_bytes: usize,
    /// Most request headers; more is 431.
    pub max_headers: usize,
    /// Time a client has to send a request head (also how long a kept-alive
    /// connection may sit idle).
    pub header_timeout_ms: u64,
    /// Time a client has to send the body once the head arrived; 408 after.
    pub body_timeout_ms: u64,
    /// How long the broker has to acknowledge a body; 503 after, so Codat
    /// retries (Codat waits 15 s for an answer).
    pub ack_timeout_ms: u64,
    /// How far `webhook-timestamp` may be from the wall clock, either way.
    pub timestamp_tolerance_ms: u64,
    /// Most open connections; past it the oldest connection not in the
    /// middle of a request is closed.
    pub max_connections: usize,
    /// Most requests being read, verified or produced at once; more are
    /// answered 503 at once.
    pub max_in_flight: usize,
    /// On SIGTERM, how long in-flight requests have to finish.
    pub drain_timeout_ms: u64,
    /// The paths webhooks are delivered to, by a name of your choice.
    pub endpoints: BTreeMap<String, EndpointSettings>,
}

/// One webhook path and how its deliveries are authenticated: Standard
/// Webhooks `secrets`, legacy `authorization` values, or (explicitly)
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointSettings {
    /// The request path, e.g. `/webhooks/codat`.
    pub path: String,
    /// Standard Webhooks secrets (`whsec_...`), each `env:NAME`,
    /// `file:/path` or the value; a signature by any one is accepted
    /// (two while a secret is rotated).
    pub secrets: Vec<SecretRef>,
    /// Legacy rule webhooks: whole `Authorization` values (`Basic ...`,
    /// `Bearer ...`), each `env:NAME`, `file:/path` or the value.
    pub authorization: Vec<SecretRef>,
    /// Accept deliveries with no authentication at all (refused unless set).
    pub allow_unauthenticated: bool,
}

impl Default for ReceiveSettings {
    fn default() -> Self {
        ReceiveSettings {
            listen: "0.0.0.0:8080".into(),
            topic: String::new(),
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            header_timeout_ms: 5_000,
            body_timeout_ms: 10_000,
            ack_timeout_ms: 10_000,
            timestamp_tolerance_ms: 300_000,
            max_connections: 1024,
            max_in_flight: 1024,
            drain_timeout_ms: 20_000,
            endpoints: BTreeMap::new(),
        }
    }
}

/// How one endpoint authenticates deliveries, built from its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointAuth {
    /// Standard Webhooks signatures.
    Signatures(Verifier),
    /// Legacy `Authorization` values.
    Authorization(Credentials),
    /// None (`allow_unauthenticated = true`).
    Unauthenticated,
}

/// De-duplication by event id: an envelope whose id was already produced
/// within the window is not produced again (README, "Each event once").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupSettings {
    /// Off by default.
    pub enabled: bool,
    /// How long an id is remembered, by ingest timestamp (7 days: longer
    /// than Codat's ~28 hours of retries and most Portal replays).
    pub window_ms: u64,
    /// Most ids remembered by this instance; past it, new ids are produced
    /// but not remembered (about 35 bytes each: 10M = 350 MB).
    pub max_ids: usize,
    /// The compacted changelog topic the state is restored from; empty =
    /// `<ingest.group_id>.dedup`. It needs at least as many partitions as
    /// the ingest topics (created so at start-up).
    pub changelog_topic: String,
}

/// Broker connection; any librdkafka property can be passed through.
/// `Debug` masks secret properties, as `check-config` does.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// Comma-separated host:port list.
    pub bootstrap_servers: String,
    /// librdkafka properties for consumer, producer and admin client alike
    /// (security.protocol, sasl.*, ssl.*). From the environment, `_` in a
    /// key stands for `.` (`..__COMMON__SASL_MECHANISM` = `sasl.mechanism`).
    pub common: BTreeMap<String, String>,
    /// librdkafka properties for the consumer only.
    pub consumer: BTreeMap<String, String>,
    /// librdkafka properties for the producer only.
    pub producer: BTreeMap<String, String>,
}

/// What to consume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Ingest topics holding raw webhook bodies.
    pub topics: Vec<String>,
    /// Consumer group id.
    pub group_id: String,
    /// Where a group with no committed offset starts: `earliest` or `latest`.
    pub auto_offset_reset: String,
}

/// Where envelopes and rejected records go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSettings {
    /// Envelope topic = prefix + event type (`codat.connection.failed`).
    pub topic_prefix: String,
    /// Event type -> topic, instead of prefix + type.
    pub topic_overrides: BTreeMap<String, String>,
    /// Most distinct per-type topics; envelopes of further new types go to
    /// `catch_all_topic` so input can never create topics without bound.
    pub max_topics: usize,
    /// Topic for types past `max_topics`, or whose topic could not be created.
    pub catch_all_topic: String,
    /// Topic for records that could not be normalised.
    pub dead_letter_topic: String,
    /// Envelope value format: `auto` (Confluent wire format when a schema
    /// registry is configured, else Avro single-object), `confluent`, or
    /// `avro-single-object`.
    pub value_format: String,
    /// Ingest headers not copied to output records (ASCII case ignored):
    /// credentials a legacy delivery may carry.
    pub drop_headers: Vec<String>,
}

/// How output topics are created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicSettings {
    /// Create missing output topics with the admin API (at start-up for
    /// the known types, on first use for others).
    pub create: bool,
    /// Partitions of created topics.
    pub partitions: i32,
    /// Replication factor of created topics; -1 = the broker's default.
    pub replication_factor: i32,
    /// Topic configs of created topics (`retention.ms`, ...).
    pub configs: BTreeMap<String, String>,
    /// How long one admin request may take.
    pub request_timeout_ms: u64,
}

/// The normaliser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizeSettings {
    /// Bodies larger than this are dead-lettered as `body_too_large`.
    pub max_body_bytes: usize,
    /// CloudEvents `source` of the envelopes.
    pub source: String,
    /// Payload paths to redact (dotted, `key[]` for every array element);
    /// empty = off.
    pub redact: Vec<String>,
    /// `remove` the redacted members, or `hash` them (HMAC-SHA256 with
    /// `redact_key`, so joins on them still work).
    pub redact_mode: String,
    /// Key of the `hash` mode.
    pub redact_key: Secret,
    /// Check Standard Webhooks signatures of ingest records (their
    /// `webhook-*` headers kept, as `codat-stream receive` writes them);
    /// failures are dead-lettered as `invalid_signature`.
    pub verify_signatures: bool,
    /// The secrets signatures are checked against, as for
    /// `[receive.endpoints.*] secrets`.
    pub signature_secrets: Vec<SecretRef>,
    /// How far `webhook-timestamp` may be from the ingest record's
    /// timestamp, either way.
    pub signature_tolerance_ms: u64,
}

/// Flow control and shutdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// Most records consumed but not yet acknowledged by the broker.
    pub max_in_flight: usize,
    /// Most bytes held for those records (output records and the input
    /// copies kept to dead-letter a refused one): bounds memory when records
    /// are large, where the record count alone would not.
    pub max_in_flight_bytes: usize,
    /// On SIGTERM/SIGINT, how long to wait for in-flight records before exiting.
    pub drain_timeout_ms: u64,
    /// Longest wait between re-sends of a record the broker would not take.
    pub produce_retry_backoff_max_ms: u64,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (human-readable) or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `codat_stream=debug`; `RUST_LOG` wins.
    pub level: String,
}

/// The operator's HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address serving /metrics, /healthz and /readyz; empty disables it.
    pub listen: String,
    /// /healthz fails when the processing loop has not gone round for this long.
    pub liveness_timeout_ms: u64,
}

/// The platform's Schema Registry (Confluent, Karapace, Apicurio or
/// Redpanda in Confluent-compatible mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaRegistrySettings {
    /// Base URL, e.g. `https://registry:8081`; empty = no registry.
    pub url: String,
    /// Subject naming: `topic` (`<topic>-value`, TopicNameStrategy) or
    /// `record` (`io.codatstream.Envelope`, RecordNameStrategy).
    pub subject_name_strategy: String,
    /// Basic auth user (with `basic_auth_password`).
    pub basic_auth_user: String,
    /// Basic auth password.
    pub basic_auth_password: Secret,
    /// Bearer token, instead of basic auth.
    pub bearer_token: Secret,
    /// PEM file of extra CA certificates to trust for https.
    pub ca_location: String,
    /// Timeout of one request.
    pub request_timeout_ms: u64,
    /// Attempts per request on network errors and 5xx answers, with backoff.
    pub max_attempts: u32,
}

impl Default for SchemaRegistrySettings {
    fn default() -> Self {
        SchemaRegistrySettings {
            url: String::new(),
            subject_name_strategy: "topic".into(),
            basic_auth_user: String::new(),
            basic_auth_password: Secret::default(),
            bearer_token: Secret::default(),
            ca_location: String::new(),
            request_timeout_ms: 10_000,
            max_attempts: 5,
        }
    }
}

/// How envelope values are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    /// Magic byte 0, 4-byte big-endian schema id, Avro binary.
    Confluent,
    /// Avro single-object encoding: marker, 8-byte fingerprint, Avro binary.
    AvroSingleObject,
}

/// Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// How often librdkafka reports its statistics (broker round-trip time,
    /// queues, consumer lag); 0 turns those metrics off.
    pub kafka_statistics_interval_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "0.0.0.0:9464".into(),
            liveness_timeout_ms: 60_000,
        }
    }
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            kafka_statistics_interval_ms: 15_000,
        }
    }
}

impl fmt::Debug for KafkaSettings {
    // A `{:?}` of the settings in a log line or a panic must not carry a
    // password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |props: &BTreeMap<String, String>| {
            props
                .iter()
                .map(|(k, v)| (k.clone(), mask_property(k, v)))
                .collect::<BTreeMap<_, _>>()
        };
        f.debug_struct("KafkaSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("common", &shown(&self.common))
            .field("consumer", &shown(&self.consumer))
            .field("producer", &shown(&self.producer))
            .finish()
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            bootstrap_servers: "localhost:9092".into(),
            common: BTreeMap::new(),
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
        }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            topics: vec!["codat.webhooks.raw".into()],
            group_id: "codat-stream".into(),
            auto_offset_reset: "earliest".into(),
        }
    }
}

impl Default for OutputSettings {
    fn default() -> Self {
        OutputSettings {
            topic_prefix: "codat.".into(),
            topic_overrides: BTreeMap::new(),
            max_topics: 256,
            catch_all_topic: "codat.unrouted".into(),
            dead_letter_topic: "codat.dlq".into(),
            value_format: "auto".into(),
            drop_headers: vec!["authorization".into()],
        }
    }
}

impl Default for TopicSettings {
    fn default() -> Self {
        TopicSettings {
            create: true,
            partitions: 3,
            replication_factor: -1,
            configs: BTreeMap::new(),
            request_timeout_ms: 30_000,
        }
    }
}

impl Default for NormalizeSettings {
    fn default() -> Self {
        NormalizeSettings {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            source: DEFAULT_SOURCE.into(),
            redact: Vec::new(),
            redact_mode: "remove".into(),
            redact_key: Secret::default(),
            verify_signatures: false,
            signature_secrets: Vec::new(),
            signature_tolerance_ms: 300_000,
        }
    }
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            guarantee: "at-least-once".to_owned(),
            transaction_max_records: 1_000,
            transaction_max_ms: 100,
            transactional_id: String::new(),
            transaction_timeout_ms: 60_000,
        }
    }
}

impl Default for DedupSettings {
    fn default() -> Self {
        DedupSettings {
            enabled: false,
            window_ms: 7 * 24 * 3_600_000,
            max_ids: 10_000_000,
            changelog_topic: String::new(),
        }
    }
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            max_in_flight: 10_000,
            max_in_flight_bytes: 32 * 1024 * 1024,
            drain_timeout_ms: 30_000,
            produce_retry_backoff_max_ms: 5_000,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// Why configuration could not be used. Messages name the file, line and
/// column or the setting, never a value: it may be a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or parsed, or a value has the wrong type
    /// or a key is unknown.
    #[error("cannot load configuration: {0}")]
    Load(String),
    /// Values out of range or inconsistent: every problem found, one each.
    #[error("invalid configuration:{}", one_per_line(.0))]
    Invalid(Vec<String>),
}

fn one_per_line(problems: &[String]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

/// librdkafka's prefetch bound (`queued.max.messages.kbytes`), KiB: 32 MiB.
pub const PREFETCH_KBYTES: &str = "32768";

impl Settings {
    /// Loads defaults, then `file` (if given), then the environment, and validates.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Settings::load`] with the environment given explicitly (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let defaults =
            config::Config::try_from(&Settings::default()).map_err(|e| source::load_error(&e))?;
        let mut builder = config::Config::builder().add_source(defaults);
        if let Some(path) = file {
            // Parsed here first, so a syntax error is reported without the
            // offending line; the config crate then parses it again.
            let text = source::read_toml(path)?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        builder = builder.add_source(source::environment(env.clone()));
        let mut settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| source::load_error(&e))?;
        settings.kafka.normalize_env_keys();
        let unresolved = settings.resolve_secrets(&env);
        settings.validate_with(unresolved)?;
        Ok(settings)
    }

    /// A consumer property in ms; the message never holds the value.
    fn consumer_property_ms(&self, key: &str, default: u64) -> Result<u64, String> {
        match self.kafka.consumer.get(key).or(self.kafka.common.get(key)) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("kafka.consumer.\"{key}\" must be a whole number of ms")),
        }
    }

    /// The envelope value format, `auto` resolved.
    pub fn value_format(&self) -> ValueFormat {
        match self.output.value_format.as_str() {
            "confluent" => ValueFormat::Confluent,
            "avro-single-object" => ValueFormat::AvroSingleObject,
            _ if !self.schema_registry.url.is_empty() => ValueFormat::Confluent,
            _ => ValueFormat::AvroSingleObject,
        }
    }

    /// Reads every [`SecretRef`] from the environment or its file; one
    /// problem per secret that cannot be read, naming the setting.
    fn resolve_secrets(&mut self, env: &BTreeMap<String, String>) -> Vec<String> {
        let mut problems = Vec::new();
        let mut resolve = |setting: String, refs: &mut Vec<SecretRef>| {
            for (i, r) in refs.iter_mut().enumerate() {
                if let Err(why) = r.resolve(env) {
                    problems.push(format!("{setting}[{i}]: {why}"));
                }
            }
        };
        resolve(
            "normalize.signature_secrets".into(),
            &mut self.normalize.signature_secrets,
        );
        for (name, e) in &mut self.receive.endpoints {
            resolve(format!("receive.endpoints.{name}.secrets"), &mut e.secrets);
            resolve(
                format!("receive.endpoints.{name}.authorization"),
                &mut e.authorization,
            );
        }
        problems
    }

    /// The ingest topic `receive` produces to.
    pub fn receive_topic(&self) -> &str {
        if self.receive.topic.is_empty() {
            self.ingest.topics.first().map_or("", String::as_str)
        } else {
            &self.receive.topic
        }
    }

    /// How `endpoint` authenticates deliveries (its secrets were checked
    /// by validation; one that does not parse is left out).
    pub fn endpoint_auth(&self, endpoint: &EndpointSettings) -> EndpointAuth {
        if !endpoint.secrets.is_empty() {
            EndpointAuth::Signatures(verifier(
                &endpoint.secrets,
                self.receive.timestamp_tolerance_ms,
            ))
        } else if !endpoint.authorization.is_empty() {
            let values: Vec<&str> = endpoint
                .authorization
                .iter()
                .map(|r| r.value().expose())
                .collect();
            EndpointAuth::Authorization(Credentials::valid_of(&values))
        } else {
            EndpointAuth::Unauthenticated
        }
    }

    /// librdkafka configuration of `receive`'s producer: acks=all,
    /// idempotent, and, as for `run`, records never time out inside
    /// librdkafka: a request not acknowledged within
    /// `receive.ack_timeout_ms` is answered 503 while its record stays
    /// queued (delivered when the broker returns: a duplicate of Codat's
    /// retry, keyed the same, which `dedup` removes). Timing it out would
    /// not spare that duplicate: a record in flight when its request is
    /// answered 503 may already be written. The queue is bounded in bytes
    /// (64 MiB, not librdkafka's 1 GiB), so an outage bounds memory: when
    /// it is full, requests are answered 503 at their deadline.
    pub fn receive_producer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        let largest = self.receive.max_body_bytes + self.receive.max_header_bytes + 4096;
        c.set("message.max.bytes", largest.max(1_000_000).to_string())
            .set("queue.buffering.max.kbytes", "65536")
            // The partition Kafka's Java clients pick for the same key, so
            // a receiver and any Java producer of the ingest topic agree.
            .set("partitioner", "murmur2_random");
        self.set_statistics_interval(&mut c);
        apply(&mut c, &self.kafka.common);
        apply(&mut c, &self.kafka.producer);
        c.set("bootstrap.servers", &self.kafka.bootstrap_servers)
            .set("message.timeout.ms", "0")
            .set("enable.idempotence", "true")
            .set("acks", "all");
        c
    }

    /// The normaliser's options.
    pub fn normalize_options(&self) -> NormalizeOptions {
        let n = &self.normalize;
        let mode = if n.redact_mode == "hash" {
            RedactMode::Hash(n.redact_key.clone())
        } else {
            RedactMode::Remove
        };
        NormalizeOptions {
            max_body_bytes: n.max_body_bytes,
            source: n.source.clone(),
            redact: Redaction {
                paths: n.redact.clone(),
                mode,
            },
            verify: n
                .verify_signatures
                .then(|| verifier(&n.signature_secrets, n.signature_tolerance_ms)),
        }
    }

    /// The delivery guarantee (validated: anything else is refused at load).
    pub fn guarantee(&self) -> Guarantee {
        match self.delivery.guarantee.as_str() {
            "exactly-once" => Guarantee::ExactlyOnce,
            _ => Guarantee::AtLeastOnce,
        }
    }

    /// The producer's `transactional.id` in exactly-once mode.
    pub fn transactional_id(&self) -> String {
        if !self.delivery.transactional_id.is_empty() {
            return self.delivery.transactional_id.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .and_then(|h| host_name(h.as_bytes()))
            .or_else(|| read_prefix("/etc/hostname", 256).and_then(|h| host_name(&h)))
            .unwrap_or_else(|| "codat-stream".to_owned());
        format!("{}-{host}", self.ingest.group_id)
    }

    /// The de-duplication changelog topic's name.
    pub fn dedup_changelog_topic(&self) -> String {
        if self.dedup.changelog_topic.is_empty() {
            format!("{}.dedup", self.ingest.group_id)
        } else {
            self.dedup.changelog_topic.clone()
        }
    }

    /// librdkafka configuration of the consumer.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        // Defaults first, so pass-through properties can override them.
        // KIP-848's protocol assigns on the broker, incrementally; librdkafka
        // refuses a client-side assignor with it.
        if !self.kafka.consumer_group_protocol_is_consumer() {
            c.set("partition.assignment.strategy", "cooperative-sticky");
        }
        c.set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", &self.ingest.auto_offset_reset)
            // Bound librdkafka's prefetch queue in bytes (its default is
            // 64 MiB), so memory stays bounded however large the backlog.
            // The record-count threshold stays librdkafka's: a low one
            // (10,000 was tried) starved the consumer at a quarter of the
            // broker's pace.
            .set("queued.max.messages.kbytes", PREFETCH_KBYTES);
        self.set_statistics_interval(&mut c);
        apply(&mut c, &self.kafka.common);
        apply(&mut c, &self.kafka.consumer);
        c.set("bootstrap.servers", &self.kafka.bootstrap_servers)
            .set("group.id", &self.ingest.group_id)
            // Offsets are stored only once the output is acknowledged.
            .set("enable.auto.offset.store", "false");
        if self.guarantee() == Guarantee::ExactlyOnce {
            // Offsets are committed inside each transaction, never apart;
            // and only committed transactions' records are read.
            c.set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed");
        }
        c
    }

    /// librdkafka configuration of the producer.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        // Never time a message out: the ingest topic is durable, so waiting
        // out a broker outage in librdkafka (which retries in order, keeping
        // idempotence) beats failing deliveries and re-sending them.
        c.set("linger.ms", "5")
            .set("message.timeout.ms", "0")
            .set("compression.type", "lz4");
        self.set_statistics_interval(&mut c);
        apply(&mut c, &self.kafka.common);
        apply(&mut c, &self.kafka.producer);
        c.set("bootstrap.servers", &self.kafka.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("acks", "all");
        if self.guarantee() == Guarantee::ExactlyOnce {
            let timeout = self.delivery.transaction_timeout_ms;
            // A message may not outlive its transaction.
            c.set("transactional.id", self.transactional_id())
                .set("transaction.timeout.ms", timeout.to_string())
                .set(
                    "message.timeout.ms",
                    timeout.saturating_sub(5_000).to_string(),
                );
        }
        c
    }

    fn set_statistics_interval(&self, c: &mut ClientConfig) {
        c.set(
            "statistics.interval.ms",
            self.metrics.kafka_statistics_interval_ms.to_string(),
        );
    }

    /// librdkafka configuration of a read-only consumer (for `decode`): its
    /// own group, never committing, from the earliest offset.
    pub fn inspect_consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        apply(&mut c, &self.kafka.common);
        apply(&mut c, &self.kafka.consumer);
        c.set("bootstrap.servers", &self.kafka.bootstrap_servers)
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        c
    }

    /// librdkafka configuration of the admin client.
    pub fn admin_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        apply(&mut c, &self.kafka.common);
        c.set("bootstrap.servers", &self.kafka.bootstrap_servers);
        c
    }

    /// The producer's `message.max.bytes` (librdkafka's default 1,000,000
    /// unless set): records are checked against it before they are sent.
    pub fn max_message_bytes(&self) -> usize {
        [&self.kafka.producer, &self.kafka.common]
            .iter()
            .find_map(|props| props.get("message.max.bytes"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1_000_000)
    }

    /// The effective configuration as TOML, secrets masked: [`Secret`]s
    /// serialise masked; pass-through properties are masked by
    /// [`is_secret_key`]; URLs lose credentials and query values
    /// ([`mask_url`]).
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        // On managed registries the user name is the API key, as librdkafka
        // treats sasl.username.
        if !shown.schema_registry.basic_auth_user.is_empty() {
            shown.schema_registry.basic_auth_user = MASK.into();
        }
        shown.schema_registry.url = mask_url(&shown.schema_registry.url);
        for props in [
            &mut shown.kafka.common,
            &mut shown.kafka.consumer,
            &mut shown.kafka.producer,
        ] {
            for (k, v) in props.iter_mut() {
                *v = mask_property(k, v);
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|_| "# cannot render\n".into())
    }
}

impl KafkaSettings {
    /// Whether the consumer joins its group with KIP-848's protocol
    /// (`group.protocol = consumer`) rather than the classic one.
    pub fn consumer_group_protocol_is_consumer(&self) -> bool {
        [&self.consumer, &self.common]
            .iter()
            .find_map(|props| props.get("group.protocol"))
            .is_some_and(|v| v.trim() == "consumer")
    }

    /// Environment keys arrive lower-cased with `_` where librdkafka has `.`.
    fn normalize_env_keys(&mut self) {
        for props in [&mut self.common, &mut self.consumer, &mut self.producer] {
            *props = std::mem::take(props)
                .into_iter()
                .map(|(k, v)| (k.replace('_', "."), v))
                .collect();
        }
    }
}

/// A verifier of the secrets that parse (validation refused the others).
fn verifier(secrets: &[SecretRef], tolerance_ms: u64) -> Verifier {
    let keys = secrets
        .iter()
        .filter_map(|r| SigningKey::parse(r.value().expose()).ok())
        .collect();
    Verifier::new(keys, tolerance_ms / 1000)
}

fn apply(c: &mut ClientConfig, props: &BTreeMap<String, String>) {
    for (k, v) in props {
        c.set(k, v);
    }
}

fn is_topic_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'
}

/// Checks a Kafka topic name.
pub fn check_topic(setting: &str, t: &str) -> Result<(), ConfigError> {
    match validate::topic_problem(setting, t) {
        Some(problem) => Err(ConfigError::Invalid(vec![problem])),
        None => Ok(()),
    }
}

/// A host name fit for a transactional id: trimmed, at most 64 printable
/// ASCII characters; `None` if empty or anything else (the fallback is
/// used then, never a mangled name).
fn host_name(raw: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(raw).ok()?.trim();
    let fits = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic());
    fits.then(|| name.to_owned())
}

/// The first `max` bytes of a file, if it can be read.
fn read_prefix(path: &str, max: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(max)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_host_name_for_the_transactional_id_is_bounded_and_printable() {
        assert_eq!(super::host_name(b" web-7\n").as_deref(), Some("web-7"));
        assert_eq!(super::host_name(b""), None);
        assert_eq!(super::host_name(b"a b"), None);
        assert_eq!(super::host_name(&[0xff, 0xfe]), None);
        assert_eq!(super::host_name("x".repeat(65).as_bytes()), None);
    }

    use super::*;

    /// Review of issue 9: below ~1,000 bytes even the smallest dead letter
    /// would not fit, and its record would be held forever.
    #[test]
    fn a_tiny_message_max_bytes_is_refused() {
        let mut s = Settings::default();
        s.kafka
            .producer
            .insert("message.max.bytes".into(), "1000".into());
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("message.max.bytes"), "{err}");
        s.kafka
            .producer
            .insert("message.max.bytes".into(), "2000000".into());
        assert!(s.validate().is_ok());
        assert_eq!(s.max_message_bytes(), 2_000_000);
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write_toml(text: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn registry_urls_with_credentials_are_refused_without_echoing_them() {
        for url in [
            "https://svc:s3cret@registry:8081",
            "svc:s3cret@registry:8081",
        ] {
            let e =
                Settings::load_with_env(None, env(&[("CODAT_STREAM__SCHEMA_REGISTRY__URL", url)]))
                    .unwrap_err()
                    .to_string();
            assert!(e.contains("schema_registry.url"), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
        for url in [
            "https://registry:8081/?token=s3cret",
            "https://registry:8081/apis/ccompat/v7#access_token=s3cret",
            "https://svc:pa/s3cret@registry:8081",
        ] {
            let e =
                Settings::load_with_env(None, env(&[("CODAT_STREAM__SCHEMA_REGISTRY__URL", url)]))
                    .unwrap_err()
                    .to_string();
            assert!(e.contains("schema_registry.url"), "{url}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
        let ok = env(&[(
            "CODAT_STREAM__SCHEMA_REGISTRY__URL",
            "https://registry:8081/a@b",
        )]);
        assert!(
            Settings::load_with_env(None, ok).is_ok(),
            "an @ in the path is fine"
        );
    }

    #[test]
    fn defaults_are_valid() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let f = write_toml(
            "[kafka]\nbootstrap_servers = \"file:9092\"\n[kafka.common]\n\"security.protocol\" = \"SASL_SSL\"\n\
             [ingest]\ntopics = [\"a\", \"b\"]\n[pipeline]\nmax_in_flight = 7\n",
        );
        let s = Settings::load_with_env(
            Some(f.path()),
            env(&[
                ("CODAT_STREAM__KAFKA__BOOTSTRAP_SERVERS", "env:9092"),
                ("CODAT_STREAM__KAFKA__COMMON__SASL_PASSWORD", "hunter2"),
                (
                    "CODAT_STREAM__KAFKA__CONSUMER__FETCH_MAX_BYTES",
                    "104857600",
                ),
                (
                    "CODAT_STREAM__KAFKA__PRODUCER__ENABLE_GAPLESS_GUARANTEE",
                    "true",
                ),
                ("CODAT_STREAM__INGEST__TOPICS", "x,y,z"),
                ("OTHER__KAFKA__BOOTSTRAP_SERVERS", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(s.kafka.bootstrap_servers, "env:9092");
        assert_eq!(s.ingest.topics, ["x", "y", "z"]);
        assert_eq!(s.pipeline.max_in_flight, 7);
        assert_eq!(s.kafka.common["security.protocol"], "SASL_SSL");
        assert_eq!(s.kafka.common["sasl.password"], "hunter2");
        assert_eq!(s.kafka.consumer["fetch.max.bytes"], "104857600");
        assert_eq!(s.kafka.producer["enable.gapless.guarantee"], "true");
        let shown = s.to_masked_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("********"));
        let c = s.consumer_config();
        assert_eq!(c.get("sasl.password"), Some("hunter2"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_setting_named() {
        let f = write_toml("[ingest]\ngroupid = \"x\"\n");
        let err = Settings::load_with_env(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("groupid"), "{err}");

        for (k, v, needle) in [
            (
                "CODAT_STREAM__PIPELINE__MAX_IN_FLIGHT",
                "0",
                "max_in_flight",
            ),
            (
                "CODAT_STREAM__PIPELINE__MAX_IN_FLIGHT",
                "lots",
                "max_in_flight",
            ),
            (
                "CODAT_STREAM__OUTPUT__DEAD_LETTER_TOPIC",
                "bad topic",
                "dead_letter_topic",
            ),
            (
                "CODAT_STREAM__OUTPUT__DEAD_LETTER_TOPIC",
                "codat.webhooks.raw",
                "loop",
            ),
            (
                "CODAT_STREAM__INGEST__AUTO_OFFSET_RESET",
                "sometimes",
                "auto_offset_reset",
            ),
            ("CODAT_STREAM__KAFKA__PRODUCER__ACKS", "1", "managed"),
            (
                "CODAT_STREAM__PIPELINE__DRAIN_TIMEOUT_MS",
                "400000",
                "max.poll.interval.ms",
            ),
            ("CODAT_STREAM__LOG__FORMAT", "xml", "log.format"),
        ] {
            let err = Settings::load_with_env(None, env(&[(k, v)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{k}={v}: {err}");
        }
    }

    /// Issue 12, item 7: redaction is configured under `[normalize]`, every
    /// problem reported at once, the key never shown.
    #[test]
    fn redaction_settings_are_validated_and_reach_the_normaliser() {
        let err = Settings::load_with_env(
            None,
            env(&[
                (
                    "CODAT_STREAM__NORMALIZE__REDACT",
                    "referenceCompany.name,a..b",
                ),
                ("CODAT_STREAM__NORMALIZE__REDACT_MODE", "hash"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("normalize.redact[1]"), "{err}");
        assert!(err.contains("normalize.redact_key"), "{err}");
        let err = Settings::load_with_env(
            None,
            env(&[("CODAT_STREAM__NORMALIZE__REDACT_MODE", "blur")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("normalize.redact_mode"), "{err}");

        let s = Settings::load_with_env(
            None,
            env(&[
                (
                    "CODAT_STREAM__NORMALIZE__REDACT",
                    "referenceCompany.name,tags[]",
                ),
                ("CODAT_STREAM__NORMALIZE__REDACT_MODE", "hash"),
                ("CODAT_STREAM__NORMALIZE__REDACT_KEY", "redact-key-value"),
            ]),
        )
        .unwrap();
        let options = s.normalize_options();
        assert_eq!(options.redact.paths, ["referenceCompany.name", "tags[]"]);
        assert_eq!(
            options.redact.mode,
            crate::core::redact::RedactMode::Hash(Secret::new("redact-key-value"))
        );
        assert!(!s.to_masked_toml().contains("redact-key-value"));
        assert!(!Settings::default().normalize_options().redact.is_active());
    }

    #[test]
    fn the_shipped_example_config_documents_the_defaults() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/codat-stream.example.toml"
        ));
        let s = Settings::load_with_env(Some(path), env(&[])).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = Settings::load_with_env(Some(Path::new("/no/such.toml")), env(&[])).unwrap_err();
        assert!(err.to_string().contains("no/such.toml"), "{err}");
    }

    #[test]
    fn managed_properties_cannot_be_overridden_but_others_can() {
        let mut s = Settings::default();
        s.kafka.producer.insert("linger.ms".into(), "50".into());
        s.kafka
            .consumer
            .insert("fetch.max.bytes".into(), "104857600".into());
        s.validate().unwrap();
        assert_eq!(s.producer_config().get("linger.ms"), Some("50"));
        assert_eq!(s.producer_config().get("acks"), Some("all"));
        assert_eq!(s.producer_config().get("enable.idempotence"), Some("true"));
        assert_eq!(
            s.consumer_config().get("fetch.max.bytes"),
            Some("104857600")
        );
    }

    /// `load_with_env` on `toml`, as the error text.
    fn load_error(toml: &str, pairs: &[(&str, &str)]) -> String {
        let f = write_toml(toml);
        match Settings::load_with_env(Some(f.path()), env(pairs)) {
            Ok(_) => panic!("accepted: {toml} {pairs:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_toml_syntax_error_gives_the_position_but_not_the_line() {
        for (toml, line) in [
            (
                "[kafka.common]\n\"sasl.password\" = \"hunter2-unterminated\n",
                "line 2",
            ),
            (
                "[log]\nlevel = \"info\"\n[kafka.common]\n\"sasl.password\" = hunter2-bare\n",
                "line 4",
            ),
            (
                "[kafka.common]\n\"sasl.password\" = \"hunter2-trailing\" x\n",
                "line 2",
            ),
        ] {
            let e = load_error(toml, &[]);
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("TOML syntax error") && e.contains(line), "{e}");
            assert!(e.contains(".toml"), "names the file: {e}");
        }
    }

    #[test]
    fn a_duplicate_key_is_named_but_its_values_are_not() {
        let e = load_error(
            "[kafka.common]\n\"sasl.password\" = \"hunter2-first\"\n\"sasl.password\" = \"hunter2-second\"\n",
            &[],
        );
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("duplicate key `sasl.password` at line 3"), "{e}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_not_echoed_from_file_or_environment() {
        let e = load_error("[pipeline]\nmax_in_flight = \"hunter2-file\"\n", &[]);
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("pipeline.max_in_flight"), "{e}");
        let e = load_error(
            "",
            &[("CODAT_STREAM__HTTP__LIVENESS_TIMEOUT_MS", "hunter2-env")],
        );
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("http.liveness_timeout_ms"), "{e}");
        let e = load_error("[kafka]\ncommon = \"hunter2-map\"\n", &[]);
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("kafka.common"), "{e}");
    }

    #[test]
    fn out_of_range_numbers_are_refused_naming_the_setting_and_the_range() {
        for (k, v, needle) in [
            (
                "HTTP__LIVENESS_TIMEOUT_MS",
                "18446744073709551615",
                "http.liveness_timeout_ms must be between 1000 and 3600000",
            ),
            (
                "HTTP__LIVENESS_TIMEOUT_MS",
                "1e30",
                "http.liveness_timeout_ms",
            ),
            (
                "PIPELINE__DRAIN_TIMEOUT_MS",
                "0",
                "pipeline.drain_timeout_ms",
            ),
            (
                "PIPELINE__PRODUCE_RETRY_BACKOFF_MAX_MS",
                "18446744073709551615",
                "pipeline.produce_retry_backoff_max_ms",
            ),
            (
                "PIPELINE__MAX_IN_FLIGHT",
                "1000001",
                "pipeline.max_in_flight",
            ),
            (
                "TOPICS__REQUEST_TIMEOUT_MS",
                "0",
                "topics.request_timeout_ms",
            ),
            ("TOPICS__PARTITIONS", "1000000", "topics.partitions"),
            (
                "TOPICS__REPLICATION_FACTOR",
                "40000",
                "topics.replication_factor",
            ),
            (
                "SCHEMA_REGISTRY__REQUEST_TIMEOUT_MS",
                "86400000",
                "schema_registry.request_timeout_ms",
            ),
            (
                "SCHEMA_REGISTRY__MAX_ATTEMPTS",
                "4000000000",
                "schema_registry.max_attempts",
            ),
            (
                "METRICS__KAFKA_STATISTICS_INTERVAL_MS",
                "5",
                "metrics.kafka_statistics_interval_ms must be 0 (off)",
            ),
            (
                "NORMALIZE__MAX_BODY_BYTES",
                "18446744073709551615",
                "normalize.max_body_bytes",
            ),
            ("OUTPUT__MAX_TOPICS", "0", "output.max_topics"),
        ] {
            let e = load_error("", &[(&format!("CODAT_STREAM__{k}"), v)]);
            assert!(e.contains(needle), "{k}={v}: {e}");
        }
        let e = load_error("[http]\nliveness_timeout_ms = 9223372036854775807\n", &[]);
        assert!(e.contains("http.liveness_timeout_ms"), "{e}");
        let e = load_error("[http]\nliveness_timeout_ms = 18446744073709551615\n", &[]);
        assert!(e.contains("number out of range at line 2"), "{e}");
        let ok = [("CODAT_STREAM__METRICS__KAFKA_STATISTICS_INTERVAL_MS", "0")];
        assert!(
            Settings::load_with_env(None, env(&ok)).is_ok(),
            "0 turns statistics off"
        );
    }

    #[test]
    fn the_topic_prefix_must_be_a_non_empty_namespace() {
        for prefix in [
            "",
            "codat",
            "...",
            "co dat.",
            &"a".repeat(MAX_TOPIC_PREFIX_LEN + 1),
        ] {
            let e = load_error(&format!("[output]\ntopic_prefix = {prefix:?}\n"), &[]);
            assert!(e.contains("output.topic_prefix"), "{prefix:?}: {e}");
        }
        for prefix in ["codat.", "codat_", "codat-", "team.codat."] {
            let f = write_toml(&format!("[output]\ntopic_prefix = {prefix:?}\n"));
            assert!(
                Settings::load_with_env(Some(f.path()), env(&[])).is_ok(),
                "{prefix}"
            );
        }
    }

    #[test]
    fn the_ingest_dead_letter_and_catch_all_topics_are_distinct() {
        for (toml, needle) in [
            (
                "[output]\ndead_letter_topic = \"x\"\ncatch_all_topic = \"x\"\n",
                "output.dead_letter_topic and output.catch_all_topic must differ",
            ),
            (
                "[ingest]\ntopics = [\"a\", \"b\", \"a\"]\n",
                "ingest.topics lists \"a\" more than once",
            ),
            (
                "[output]\ncatch_all_topic = \"codat.webhooks.raw\"\n",
                "output.catch_all_topic \"codat.webhooks.raw\" is also an ingest topic",
            ),
            (
                "[output.topic_overrides]\n\"connection.failed\" = \"codat.dlq\"\n",
                "is the dead-letter topic",
            ),
        ] {
            let e = load_error(toml, &[]);
            assert!(e.contains(needle), "{toml}: {e}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_one_per_line() {
        let e = load_error(
            "[output]\ntopic_prefix = \"\"\n[http]\nliveness_timeout_ms = 5\n",
            &[
                ("CODAT_STREAM__LOG__FORMAT", "xml"),
                ("CODAT_STREAM__INGEST__GROUP_ID", " "),
            ],
        );
        let lines: Vec<&str> = e.lines().collect();
        for needle in [
            "output.topic_prefix",
            "http.liveness_timeout_ms",
            "log.format",
            "ingest.group_id",
        ] {
            assert_eq!(
                lines.iter().filter(|l| l.contains(needle)).count(),
                1,
                "{needle} on a line of its own: {e}"
            );
        }
    }

    #[test]
    fn check_config_masks_the_registry_user_and_secrets_and_url_query_values() {
        let s = Settings::load_with_env(
            None,
            env(&[
                (
                    "CODAT_STREAM__SCHEMA_REGISTRY__URL",
                    "https://registry:8081",
                ),
                (
                    "CODAT_STREAM__SCHEMA_REGISTRY__BASIC_AUTH_USER",
                    "api-key-user",
                ),
                (
                    "CODAT_STREAM__SCHEMA_REGISTRY__BASIC_AUTH_PASSWORD",
                    "api-secret",
                ),
                (
                    "CODAT_STREAM__KAFKA__COMMON__SASL_OAUTHBEARER_CONFIG",
                    "principal=x secret=oauth-secret",
                ),
                (
                    "CODAT_STREAM__KAFKA__COMMON__SASL_USERNAME",
                    "cluster-api-key",
                ),
                (
                    "CODAT_STREAM__KAFKA__COMMON__SASL_PASWORD",
                    "misspelt-secret",
                ),
                (
                    "CODAT_STREAM__KAFKA__COMMON__SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL",
                    "https://idp.example/token?client_secret=url-secret",
                ),
            ]),
        )
        .unwrap();
        let shown = s.to_masked_toml();
        for secret in [
            "api-key-user",
            "api-secret",
            "oauth-secret",
            "cluster-api-key",
            "misspelt-secret",
            "url-secret",
        ] {
            assert!(!shown.contains(secret), "{secret}: {shown}");
        }
        assert!(
            shown.contains("https://idp.example/token?client_secret=********"),
            "{shown}"
        );
        assert!(shown.contains("url = \"https://registry:8081\""), "{shown}");
    }

    #[test]
    fn debug_of_the_settings_masks_every_secret() {
        let s = Settings::load_with_env(
            None,
            env(&[
                (
                    "CODAT_STREAM__KAFKA__COMMON__SASL_PASSWORD",
                    "hunter2-common",
                ),
                (
                    "CODAT_STREAM__KAFKA__PRODUCER__SSL_KEY_PASSWORD",
                    "hunter2-producer",
                ),
                (
                    "CODAT_STREAM__SCHEMA_REGISTRY__BEARER_TOKEN",
                    "hunter2-token",
                ),
            ]),
        )
        .unwrap();
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sasl.password"), "{shown}");
    }

    #[test]
    fn secret_keys_are_recognised() {
        for k in [
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "sasl.oauthbearer.client.secret",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["security.protocol", "sasl.mechanism", "ssl.ca.location"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// Issue 13: endpoints from the file and the environment, secrets by
    /// reference, every problem named, nothing secret shown.
    #[test]
    fn receive_endpoints_and_their_secrets_are_validated_and_masked() {
        let f = write_toml(
            "[receive.endpoints.events]\npath = \"/webhooks/codat\"\n\
             secrets = [\"env:HOOK_A\", \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n\
             [receive.endpoints.rules]\npath = \"/webhooks/rules\"\n",
        );
        let s = Settings::load_with_env(
            Some(f.path()),
            env(&[
                ("HOOK_A", SECRET_A),
                (
                    "CODAT_STREAM__RECEIVE__ENDPOINTS__RULES__AUTHORIZATION",
                    "env:RULES_AUTH",
                ),
                ("RULES_AUTH", "Bearer legacy-token-value"),
                ("CODAT_STREAM__NORMALIZE__VERIFY_SIGNATURES", "true"),
                ("CODAT_STREAM__NORMALIZE__SIGNATURE_SECRETS", "env:HOOK_A"),
            ]),
        )
        .unwrap();
        let shown = s.to_masked_toml();
        assert!(
            shown.contains("env:HOOK_A") && shown.contains("env:RULES_AUTH"),
            "{shown}"
        );
        for secret in ["MfKQ9r8", "legacy-token-value"] {
            assert!(!shown.contains(secret), "{shown}");
            assert!(!format!("{s:?}").contains(secret));
        }
        assert!(matches!(
            s.endpoint_auth(&s.receive.endpoints["events"]),
            EndpointAuth::Signatures(_)
        ));
        assert!(matches!(
            s.endpoint_auth(&s.receive.endpoints["rules"]),
            EndpointAuth::Authorization(_)
        ));
        assert!(s.normalize_options().verify.is_some());
        assert_eq!(s.receive_topic(), "codat.webhooks.raw");

        let e = load_error(
            "[receive]\nlisten = \"nowhere\"\nack_timeout_ms = 15000\n\
             [receive.endpoints.a]\npath = \"webhooks\"\n\
             [receive.endpoints.b]\npath = \"/b\"\nsecrets = [\"whsec_c2hvcnQ=\", \"env:UNSET_HOOK\"]\n\
             [receive.endpoints.c]\npath = \"/b\"\nallow_unauthenticated = true\n\
             authorization = [\"hunter2-token\"]\n",
            &[("CODAT_STREAM__NORMALIZE__VERIFY_SIGNATURES", "true")],
        );
        assert!(!e.contains("hunter2"), "{e}");
        for needle in [
            "receive.listen",
            "receive.ack_timeout_ms",
            "receive.endpoints.a.path must start with /",
            "receive.endpoints.a must set secrets",
            "receive.endpoints.b.secrets[0] is not a Standard Webhooks secret",
            "receive.endpoints.b.secrets[1]: environment variable UNSET_HOOK is not set",
            "receive.endpoints.c.path \"/b\" is used by another endpoint",
            "receive.endpoints.c: set one of",
            "receive.endpoints.c.authorization[0] must be a whole Authorization header value",
            "normalize.signature_secrets must list a secret",
        ] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn the_receive_producer_acknowledges_with_all_replicas_and_never_times_records_out() {
        let s = Settings::default();
        let c = s.receive_producer_config();
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("message.timeout.ms"), Some("0"));
        let max: usize = c.get("message.max.bytes").unwrap().parse().unwrap();
        assert!(max >= s.receive.max_body_bytes + s.receive.max_header_bytes);
    }

    #[test]
    fn the_shipped_receive_example_loads_with_its_secrets_set() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/codat-stream.receive.example.toml"
        ));
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(path).unwrap().replace(
            "/var/run/secrets/codat/webhook-secret-next",
            &dir.path().join("next").display().to_string(),
        );
        std::fs::write(dir.path().join("next"), format!("{SECRET_A}\n")).unwrap();
        let f = write_toml(&text);
        let s = Settings::load_with_env(
            Some(f.path()),
            env(&[
                ("CODAT_WEBHOOK_SECRET", SECRET_A),
                ("CODAT_RULES_AUTHORIZATION", "Basic Y29kYXQ6c2VjcmV0"),
            ]),
        )
        .unwrap();
        assert_eq!(s.receive.endpoints.len(), 2);
        assert!(!s.to_masked_toml().contains("Y29kYXQ6c2VjcmV0"));
    }
}
