//! Everything codat-stream can be told, with its defaults: the settings
//! types (one per TOML section) and what a setting means when it is read
//! (`auto` resolved, a blank name given its derived default), and how the
//! settings are shown with every secret masked (`Debug`, `check-config`).
//! Loading is in `load.rs`, validation in `validate.rs`, librdkafka client
//! configs in `clients.rs`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::masking::{mask_property, mask_url};
use crate::config::secrets::SecretRef;
use crate::core::event_type;
use crate::core::normalize::{DEFAULT_MAX_BODY_BYTES, DEFAULT_SOURCE};
use crate::core::secret::{MASK, Secret};

/// Environment variable prefix; `__` separates the prefix, sections and keys.
pub const ENV_PREFIX: &str = "CODAT_STREAM";

/// Longest Kafka topic name.
pub const MAX_TOPIC_LEN: usize = 249;

/// Longest output topic prefix: with a 200-character type it stays a legal topic.
pub const MAX_TOPIC_PREFIX_LEN: usize = MAX_TOPIC_LEN - event_type::MAX_EVENT_TYPE_LEN;

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
            max_in_flight_bytes: 16 * 1024 * 1024,
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

impl Settings {
    /// The envelope value format, `auto` resolved.
    pub fn value_format(&self) -> ValueFormat {
        match self.output.value_format.as_str() {
            "confluent" => ValueFormat::Confluent,
            "avro-single-object" => ValueFormat::AvroSingleObject,
            _ if !self.schema_registry.url.is_empty() => ValueFormat::Confluent,
            _ => ValueFormat::AvroSingleObject,
        }
    }

    /// The ingest topic `receive` produces to.
    pub fn receive_topic(&self) -> &str {
        if self.receive.topic.is_empty() {
            self.ingest.topics.first().map_or("", String::as_str)
        } else {
            &self.receive.topic
        }
    }

    /// The delivery guarantee (validated: anything else is refused at load).
    pub fn guarantee(&self) -> Guarantee {
        match self.delivery.guarantee.as_str() {
            "exactly-once" => Guarantee::ExactlyOnce,
            _ => Guarantee::AtLeastOnce,
        }
    }

    /// The de-duplication changelog topic's name.
    pub fn dedup_changelog_topic(&self) -> String {
        if self.dedup.changelog_topic.is_empty() {
            format!("{}.dedup", self.ingest.group_id)
        } else {
            self.dedup.changelog_topic.clone()
        }
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
}

impl Settings {
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
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;
    use crate::config::testing::env;

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
}
