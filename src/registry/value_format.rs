//! How envelope values are framed on the wire: the Confluent wire format
//! (magic byte, registry schema id, Avro) or Avro single-object encoding
//! (marker, schema fingerprint, Avro); subject naming; and the cache of
//! registered schema ids, so the registry is asked once per subject.

use std::collections::HashMap;

use crate::config::ValueFormat;
use crate::core::envelope_avro::{CONFLUENT_MAGIC, SINGLE_OBJECT_MARKER};
use crate::registry::client::{RegistryClient, RegistryError};

/// The envelope record's full name: its subject under RecordNameStrategy.
pub const ENVELOPE_FULL_NAME: &str = "io.codatstream.Envelope";

/// How subjects are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectNameStrategy {
    /// `<topic>-value`: one subject per output topic (the registry default).
    Topic,
    /// The record's full name: one subject for every topic.
    Record,
}

impl SubjectNameStrategy {
    /// From the configuration value (`topic` or `record`, validated).
    pub fn from_config(value: &str) -> SubjectNameStrategy {
        if value == "record" {
            SubjectNameStrategy::Record
        } else {
            SubjectNameStrategy::Topic
        }
    }

    /// The value subject of `topic`.
    pub fn subject(self, topic: &str) -> String {
        match self {
            SubjectNameStrategy::Topic => format!("{topic}-value"),
            SubjectNameStrategy::Record => ENVELOPE_FULL_NAME.to_owned(),
        }
    }
}

/// Registered schema ids per subject, fetched once each.
#[derive(Debug)]
pub struct SchemaIds {
    client: RegistryClient,
    strategy: SubjectNameStrategy,
    schema_json: &'static str,
    ids: HashMap<String, u32>,
}

impl SchemaIds {
    /// Registers `schema_json` on demand through `client`.
    pub fn new(
        client: RegistryClient,
        strategy: SubjectNameStrategy,
        schema_json: &'static str,
    ) -> SchemaIds {
        SchemaIds {
            client,
            strategy,
            schema_json,
            ids: HashMap::new(),
        }
    }

    /// The id already known for `topic`, if any (no I/O).
    pub fn cached(&self, topic: &str) -> Option<u32> {
        self.ids.get(&self.strategy.subject(topic)).copied()
    }

    /// The schema id for records on `topic`: registered (idempotently) the
    /// first time its subject is seen, then served from the cache.
    pub async fn id_for(&mut self, topic: &str) -> Result<u32, RegistryError> {
        let subject = self.strategy.subject(topic);
        if let Some(id) = self.ids.get(&subject) {
            return Ok(*id);
        }
        let id = self.client.register(&subject, self.schema_json).await?;
        tracing::info!(%subject, id, "envelope schema registered");
        self.ids.insert(subject, id);
        Ok(id)
    }
}

/// A value taken apart into its framing and the Avro datum.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed<'a> {
    /// Confluent wire format.
    Confluent {
        /// The registry's schema id.
        schema_id: u32,
        /// The Avro binary datum.
        datum: &'a [u8],
    },
    /// Avro single-object encoding.
    SingleObject {
        /// The schema's CRC-64-AVRO fingerprint, as the 8 bytes on the wire.
        fingerprint: [u8; 8],
        /// The Avro binary datum.
        datum: &'a [u8],
    },
}

/// Why a value is neither framing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "value is neither Confluent wire format (magic byte 0 + 4-byte id) nor Avro single-object encoding (C3 01 + 8-byte fingerprint)"
)]
pub struct UnknownFraming;

/// Recognises the framing of `value`.
pub fn parse_framing(value: &[u8]) -> Result<Framed<'_>, UnknownFraming> {
    if let Some(rest) = value.strip_prefix(&SINGLE_OBJECT_MARKER[..])
        && rest.len() >= 8
    {
        let mut fingerprint = [0u8; 8];
        fingerprint.copy_from_slice(&rest[..8]);
        return Ok(Framed::SingleObject {
            fingerprint,
            datum: &rest[8..],
        });
    }
    if value.len() >= 5 && value[0] == CONFLUENT_MAGIC {
        let schema_id = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
        return Ok(Framed::Confluent {
            schema_id,
            datum: &value[5..],
        });
    }
    Err(UnknownFraming)
}

/// The format's name as configured.
pub fn name(format: ValueFormat) -> &'static str {
    match format {
        ValueFormat::Confluent => "confluent",
        ValueFormat::AvroSingleObject => "avro-single-object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_strategy() {
        assert_eq!(
            SubjectNameStrategy::Topic.subject("codat.connection.failed"),
            "codat.connection.failed-value"
        );
        assert_eq!(
            SubjectNameStrategy::Record.subject("codat.connection.failed"),
            "io.codatstream.Envelope"
        );
    }

    #[test]
    fn framings_are_recognised() {
        assert_eq!(
            parse_framing(&[0, 0, 0, 1, 7, 42]),
            Ok(Framed::Confluent {
                schema_id: 263,
                datum: &[42]
            })
        );
        let so = [0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(
            parse_framing(&so),
            Ok(Framed::SingleObject {
                fingerprint: [1, 2, 3, 4, 5, 6, 7, 8],
                datum: &[9]
            })
        );
        assert_eq!(parse_framing(b"{\"json\":1}"), Err(UnknownFraming));
        assert_eq!(parse_framing(&[0, 1]), Err(UnknownFraming));
        assert_eq!(parse_framing(&[]), Err(UnknownFraming));
    }
}
