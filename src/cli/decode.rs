//! Reading envelopes back, for operators debugging a topic: recognises the
//! framing (Confluent wire format or Avro single-object encoding), finds the
//! writer's schema (through the registry by id, or among the released
//! versions by fingerprint) and resolves the datum to the current schema.

use std::collections::HashMap;
use std::io::Read;

use apache_avro::Schema;

use crate::core::avro_fingerprint;
use crate::core::envelope::Envelope;
use crate::core::envelope_avro::{AvroError, EnvelopeCodec, RELEASED_SCHEMAS};
use crate::registry::client::{RegistryClient, RegistryError};
use crate::registry::value_format::{Framed, UnknownFraming, parse_framing};

/// Most bytes `decode` reads from a file or stdin: a record value is far
/// smaller (Kafka's default limit is 1 MB; an envelope is bounded by
/// `normalize.max_body_bytes`), and reading a mistaken multi-gigabyte file
/// whole would exhaust memory before saying it is not one.
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// Why a record value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadValueError {
    /// Longer than [`MAX_VALUE_BYTES`]; only that much was read.
    #[error("larger than {MAX_VALUE_BYTES} bytes, so not one record value (not read further)")]
    TooLarge,
    /// The read failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one record value, refusing anything longer than
/// [`MAX_VALUE_BYTES`] after reading at most one byte more.
pub fn read_value(input: impl Read) -> Result<Vec<u8>, ReadValueError> {
    let mut value = Vec::new();
    input
        .take(MAX_VALUE_BYTES as u64 + 1)
        .read_to_end(&mut value)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(ReadValueError::TooLarge);
    }
    Ok(value)
}

/// Why a value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Neither framing.
    #[error(transparent)]
    Framing(#[from] UnknownFraming),
    /// Confluent framing, but no registry to resolve the id.
    #[error("value carries schema id {0}: configure schema_registry.url to resolve it")]
    NoRegistry(u32),
    /// The registry could not resolve the id.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The writer's schema is not one of this program's envelope versions.
    #[error("single-object fingerprint {0} is not a released envelope schema")]
    UnknownFingerprint(String),
    /// The registry's schema did not parse.
    #[error("schema id {id} does not parse: {source}")]
    BadSchema {
        /// The id.
        id: u32,
        /// The parse error.
        source: apache_avro::Error,
    },
    /// The datum did not decode.
    #[error(transparent)]
    Avro(#[from] AvroError),
}

/// Decodes envelopes in either framing; caches registry schemas by id.
pub struct Decoder {
    codec: EnvelopeCodec,
    registry: Option<RegistryClient>,
    by_id: HashMap<u32, Schema>,
    by_fingerprint: Vec<([u8; 8], Schema)>,
}

impl Decoder {
    /// A decoder; `registry` resolves Confluent schema ids.
    pub fn new(registry: Option<RegistryClient>) -> Result<Decoder, AvroError> {
        let codec = EnvelopeCodec::new()?;
        let mut by_fingerprint = Vec::new();
        for (_, json) in RELEASED_SCHEMAS {
            let schema = Schema::parse_str(json).map_err(AvroError::Schema)?;
            // Both fingerprints: the spec's, and apache-avro's that records
            // written before codat-stream followed the spec carry.
            let spec = avro_fingerprint::fingerprint(json).map_err(AvroError::CanonicalForm)?;
            let legacy = avro_fingerprint::apache_avro_fingerprint(&schema);
            by_fingerprint.push((spec, schema.clone()));
            by_fingerprint.push((legacy, schema));
        }
        Ok(Decoder {
            codec,
            registry,
            by_id: HashMap::new(),
            by_fingerprint,
        })
    }

    /// Decodes one record value into the current envelope.
    pub async fn decode(&mut self, value: &[u8]) -> Result<Envelope<'static>, DecodeError> {
        match parse_framing(value)? {
            Framed::SingleObject { fingerprint, datum } => {
                if self.codec.is_own_fingerprint(&fingerprint) {
                    return Ok(self.codec.decode(datum)?);
                }
                let writer = self
                    .by_fingerprint
                    .iter()
                    .find(|(fp, _)| *fp == fingerprint)
                    .map(|(_, s)| s)
                    .ok_or_else(|| {
                        DecodeError::UnknownFingerprint(avro_fingerprint::hex(&fingerprint))
                    })?;
                Ok(self.codec.decode_written_with(writer, datum)?)
            }
            Framed::Confluent { schema_id, datum } => {
                if !self.by_id.contains_key(&schema_id) {
                    let registry = self
                        .registry
                        .as_ref()
                        .ok_or(DecodeError::NoRegistry(schema_id))?;
                    let json = registry.schema_by_id(schema_id).await?;
                    let schema =
                        Schema::parse_str(&json).map_err(|source| DecodeError::BadSchema {
                            id: schema_id,
                            source,
                        })?;
                    self.by_id.insert(schema_id, schema);
                }
                let writer = &self.by_id[&schema_id];
                Ok(self.codec.decode_written_with(writer, datum)?)
            }
        }
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("registry", &self.registry.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12, item 1: records written before the fingerprint followed
    /// the spec carry apache-avro's fingerprint; they still decode.
    #[test]
    fn both_fingerprints_decode() {
        let body = br#"{"id":"e","eventType":"connection.failed","payload":{}}"#;
        let ingest = crate::IngestMeta {
            topic: "t",
            partition: 0,
            offset: 0,
            timestamp_ms: 1,
        };
        let options = crate::NormalizeOptions::default();
        let env = crate::normalize(body, &(), &ingest, &options).unwrap();
        let codec = EnvelopeCodec::new().unwrap();
        let datum = codec.encode(&env).unwrap();
        let spec = avro_fingerprint::fingerprint(crate::core::envelope_avro::ENVELOPE_SCHEMA_JSON)
            .unwrap();
        let old = avro_fingerprint::apache_avro_fingerprint(codec.schema());
        assert_ne!(spec, old, "the two canonical forms differ on logical types");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut decoder = Decoder::new(None).unwrap();
        for fp in [spec, old] {
            let value = [&[0xC3, 0x01][..], &fp, &datum].concat();
            assert_eq!(codec.decode_single_object(&value).unwrap().id, "e");
            assert_eq!(rt.block_on(decoder.decode(&value)).unwrap().id, "e");
        }
        let mut single = Vec::new();
        codec.encode_single_object_into(&env, &mut single).unwrap();
        assert_eq!(
            single[2..10],
            spec,
            "new records carry the spec's fingerprint"
        );
    }

    #[test]
    fn a_value_is_read_up_to_the_cap_and_no_further() {
        let at_cap = vec![7u8; MAX_VALUE_BYTES];
        assert_eq!(read_value(&at_cap[..]).unwrap().len(), MAX_VALUE_BYTES);
        let endless = std::io::repeat(0);
        assert!(matches!(read_value(endless), Err(ReadValueError::TooLarge)));
    }
}
