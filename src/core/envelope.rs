//! The normalised envelope: one shape for every Codat webhook, mirroring the
//! Avro record in `schemas/envelope.avsc` field for field.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// CloudEvents spec version of the envelope's attribute set.
pub const SPEC_VERSION: &str = "1.0";
/// Content type of `payload`.
pub const PAYLOAD_CONTENT_TYPE: &str = "application/json";

/// Where the envelope's `id` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IdSource {
    /// The body's `id` (events) or `AlertId` (legacy rules).
    Body,
    /// The delivery's `webhook-id` header.
    WebhookIdHeader,
    /// A UUIDv5 of the raw body bytes.
    Derived,
}

/// Who defined the envelope's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TypeOrigin {
    /// A type in Codat's published catalog.
    CodatCatalog,
    /// A well-formed type from Codat that the catalog does not list.
    CodatUnlisted,
    /// codat-stream's own name for a legacy case the migration guide leaves unmapped.
    CodatStream,
}

impl TypeOrigin {
    /// The Avro symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            TypeOrigin::CodatCatalog => "CODAT_CATALOG",
            TypeOrigin::CodatUnlisted => "CODAT_UNLISTED",
            TypeOrigin::CodatStream => "CODAT_STREAM",
        }
    }
}

/// Where the envelope's `time` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TimeSource {
    /// The body's `generatedDate`.
    Event,
    /// The ingest record's timestamp.
    Ingest,
}

/// Which webhook generation produced the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Shape {
    /// Current event-type body.
    Event,
    /// Legacy rules body.
    LegacyRule,
    /// Generic test message (`type` + `data`).
    Generic,
}

impl Shape {
    /// The Avro symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Shape::Event => "EVENT",
            Shape::LegacyRule => "LEGACY_RULE",
            Shape::Generic => "GENERIC",
        }
    }
}

/// What a legacy rules body carried that the event layout has no place for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyRule<'a> {
    /// Legacy `RuleId`.
    pub rule_id: Option<Cow<'a, str>>,
    /// Legacy `ClientName`.
    pub client_name: Option<Cow<'a, str>>,
    /// Legacy `Message`.
    pub message: Option<Cow<'a, str>>,
    /// JSON object text of every other leftover field, original keys and nesting.
    pub unmapped: Option<String>,
}

/// Where the raw webhook was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ingest<'a> {
    /// Ingest topic.
    pub topic: Cow<'a, str>,
    /// Ingest partition.
    pub partition: i32,
    /// Offset of the raw record.
    pub offset: i64,
    /// The raw record's timestamp, ms since the epoch.
    pub timestamp: i64,
    /// The delivery's `webhook-id` header, when present.
    pub webhook_id: Option<Cow<'a, str>>,
}

/// One normalised webhook occurrence; see `schemas/envelope.avsc` for each
/// field's meaning. Strings borrow from the raw body where they can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<'a> {
    /// Event id.
    pub id: Cow<'a, str>,
    /// Where `id` came from.
    pub id_source: IdSource,
    /// Canonical event type.
    #[serde(rename = "type")]
    pub event_type: Cow<'a, str>,
    /// Who defined `type`.
    pub type_origin: TypeOrigin,
    /// CloudEvents source.
    pub source: Cow<'a, str>,
    /// CloudEvents spec version.
    pub specversion: Cow<'a, str>,
    /// Event time, ms since the epoch.
    pub time: i64,
    /// Where `time` came from.
    pub time_source: TimeSource,
    /// CloudEvents subject: the company id.
    pub subject: Option<Cow<'a, str>>,
    /// Codat company id.
    pub company_id: Option<Cow<'a, str>>,
    /// Codat data connection id.
    pub connection_id: Option<Cow<'a, str>>,
    /// Codat client id.
    pub client_id: Option<Cow<'a, str>>,
    /// Codat data type.
    pub data_type: Option<Cow<'a, str>>,
    /// Body shape.
    pub shape: Shape,
    /// Legacy `RuleType` as sent.
    pub legacy_rule_type: Option<Cow<'a, str>>,
    /// The legacy section.
    pub legacy: Option<LegacyRule<'a>>,
    /// Unmapped top-level fields of event and generic bodies, as JSON text.
    pub extensions: Option<String>,
    /// Content type of `payload`.
    pub datacontenttype: Cow<'a, str>,
    /// The event payload as JSON text.
    pub payload: Cow<'a, str>,
    /// Ingest coordinates.
    pub ingest: Ingest<'a>,
    /// The body's `generatedDate` as sent (v2).
    pub time_original: Option<Cow<'a, str>>,
    /// Payload paths redaction removed or hashed in this event (v2).
    pub redacted_paths: Vec<Cow<'a, str>>,
}

impl Envelope<'_> {
    /// The Kafka record key: company id, else client id, else event id, so
    /// one company's events stay in one partition, in order.
    pub fn routing_key(&self) -> &str {
        self.company_id
            .as_deref()
            .or(self.client_id.as_deref())
            .unwrap_or(&self.id)
    }

    /// A copy that owns all its strings.
    pub fn into_owned(self) -> Envelope<'static> {
        fn own(c: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(c.into_owned())
        }
        fn own_opt(c: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
            c.map(own)
        }
        Envelope {
            id: own(self.id),
            id_source: self.id_source,
            event_type: own(self.event_type),
            type_origin: self.type_origin,
            source: own(self.source),
            specversion: own(self.specversion),
            time: self.time,
            time_source: self.time_source,
            subject: own_opt(self.subject),
            company_id: own_opt(self.company_id),
            connection_id: own_opt(self.connection_id),
            client_id: own_opt(self.client_id),
            data_type: own_opt(self.data_type),
            shape: self.shape,
            legacy_rule_type: own_opt(self.legacy_rule_type),
            legacy: self.legacy.map(|l| LegacyRule {
                rule_id: own_opt(l.rule_id),
                client_name: own_opt(l.client_name),
                message: own_opt(l.message),
                unmapped: l.unmapped,
            }),
            extensions: self.extensions,
            datacontenttype: own(self.datacontenttype),
            payload: own(self.payload),
            ingest: Ingest {
                topic: own(self.ingest.topic),
                partition: self.ingest.partition,
                offset: self.ingest.offset,
                timestamp: self.ingest.timestamp,
                webhook_id: own_opt(self.ingest.webhook_id),
            },
            time_original: own_opt(self.time_original),
            redacted_paths: self.redacted_paths.into_iter().map(own).collect(),
        }
    }
}
