//! The envelope's Avro encoding. The schema is `schemas/envelope.avsc`,
//! compiled in so the binary and the file can never disagree.

use std::io::Cursor;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;

use crate::core::avro_fingerprint;
use crate::core::envelope::Envelope;

/// The envelope schema, exactly as in `schemas/envelope.avsc`.
pub const ENVELOPE_SCHEMA_JSON: &str = include_str!("../../schemas/envelope.avsc");

/// Failures of the Avro codec.
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    /// The bundled schema did not parse (a build defect).
    #[error("envelope schema does not parse: {0}")]
    Schema(#[source] apache_avro::Error),
    /// An envelope did not fit the schema (a defect: the two must agree).
    #[error("envelope does not fit the Avro schema: {0}")]
    Encode(#[source] apache_avro::Error),
    /// Bytes were not an envelope in this schema.
    #[error("bytes are not an Avro envelope: {0}")]
    Decode(#[source] apache_avro::Error),
    /// Bytes did not start with this schema's single-object header.
    #[error("not a single-object encoded envelope of this schema (marker or fingerprint differs)")]
    NotThisSchema,
    /// The bundled schema has no Parsing Canonical Form (a build defect).
    #[error("envelope schema has no canonical form: {0}")]
    CanonicalForm(#[from] crate::core::avro_fingerprint::CanonicalFormError),
    /// The schema registry would not give the envelope schema an id.
    #[error("schema registry refused the envelope schema: {0}")]
    Registry(String),
    /// Bytes were left over after one envelope.
    #[error("{0} bytes left over after the Avro envelope")]
    TrailingBytes(usize),
}

/// Encodes and decodes envelopes as Avro binary datums (no container, no
/// framing: the wire formats around them belong to the caller).
pub struct EnvelopeCodec {
    schema: &'static Schema,
    writer: GenericDatumWriter<'static>,
    single_object_header: [u8; 10],
    /// The fingerprint records carried before it followed the spec.
    legacy_fingerprint: [u8; 8],
}

/// Every released version of the envelope schema, oldest first, as kept in
/// `schemas/released/`. The evolution test checks each against the current one.
pub const RELEASED_SCHEMAS: &[(&str, &str)] = &[
    (
        "v1",
        include_str!("../../schemas/released/envelope-v1.avsc"),
    ),
    (
        "v2",
        include_str!("../../schemas/released/envelope-v2.avsc"),
    ),
];

/// First byte of the Confluent wire format.
pub const CONFLUENT_MAGIC: u8 = 0;

/// Avro single-object encoding marker.
pub const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];

impl EnvelopeCodec {
    /// Parses the bundled schema and resolves it once, so encoding does no
    /// per-record schema work. A process makes one codec and shares it; the
    /// schema is given a static lifetime for the writer to borrow.
    pub fn new() -> Result<Self, AvroError> {
        let schema = Schema::parse_str(ENVELOPE_SCHEMA_JSON).map_err(AvroError::Schema)?;
        let schema: &'static Schema = Box::leak(Box::new(schema));
        let writer = GenericDatumWriter::builder(schema)
            .human_readable(false)
            .build()
            .map_err(AvroError::Schema)?;
        // Single-object header: marker + the schema's 8-byte little-endian
        // CRC-64-AVRO fingerprint of the spec's Parsing Canonical Form, the
        // one fastavro, Java and schema stores compute (not apache-avro's).
        let fingerprint = avro_fingerprint::fingerprint(ENVELOPE_SCHEMA_JSON)?;
        let mut single_object_header = [0u8; 10];
        single_object_header[..2].copy_from_slice(&SINGLE_OBJECT_MARKER);
        single_object_header[2..].copy_from_slice(&fingerprint);
        Ok(EnvelopeCodec {
            schema,
            writer,
            single_object_header,
            legacy_fingerprint: avro_fingerprint::apache_avro_fingerprint(schema),
        })
    }

    /// The parsed envelope schema.
    pub fn schema(&self) -> &Schema {
        self.schema
    }

    /// Appends the Avro binary encoding of `envelope` to `out`, with the
    /// direct writer ([`crate::core::avro_writer`]): byte-identical to apache-avro's.
    pub fn encode_into(&self, envelope: &Envelope<'_>, out: &mut Vec<u8>) -> Result<(), AvroError> {
        crate::core::avro_writer::write_envelope(envelope, out);
        Ok(())
    }

    /// Appends apache-avro's own encoding of `envelope`: the reference the
    /// direct writer is tested against.
    #[doc(hidden)]
    pub fn encode_with_apache_avro(
        &self,
        envelope: &Envelope<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), AvroError> {
        self.writer
            .write_ser(out, envelope)
            .map(|_| ())
            .map_err(AvroError::Encode)
    }

    /// The Avro binary encoding of `envelope`.
    pub fn encode(&self, envelope: &Envelope<'_>) -> Result<Vec<u8>, AvroError> {
        let mut out = Vec::with_capacity(512 + envelope.payload.len());
        self.encode_into(envelope, &mut out)?;
        Ok(out)
    }

    /// Appends `envelope` in Avro single-object encoding: the 2-byte marker,
    /// the schema fingerprint, then the datum. Self-describing without a registry.
    pub fn encode_single_object_into(
        &self,
        envelope: &Envelope<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), AvroError> {
        out.extend_from_slice(&self.single_object_header);
        self.encode_into(envelope, out)
    }

    /// Appends `envelope` in the Confluent wire format: magic byte 0, the
    /// registry's schema id (4 bytes, big-endian), then the datum.
    pub fn encode_confluent_into(
        &self,
        envelope: &Envelope<'_>,
        schema_id: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), AvroError> {
        out.push(CONFLUENT_MAGIC);
        out.extend_from_slice(&schema_id.to_be_bytes());
        self.encode_into(envelope, out)
    }

    /// Decodes a datum written with `writer` (an earlier or later version of
    /// the envelope schema), resolved to this schema.
    pub fn decode_written_with(
        &self,
        writer: &Schema,
        bytes: &[u8],
    ) -> Result<Envelope<'static>, AvroError> {
        let reader = GenericDatumReader::builder(writer)
            .reader_schema(self.schema)
            .build()
            .map_err(AvroError::Decode)?;
        let mut cursor = Cursor::new(bytes);
        let value = reader.read_value(&mut cursor).map_err(AvroError::Decode)?;
        let left = bytes.len() - cursor.position() as usize;
        if left != 0 {
            return Err(AvroError::TrailingBytes(left));
        }
        apache_avro::from_value::<Envelope<'static>>(&value).map_err(AvroError::Decode)
    }

    /// The 10-byte single-object header of this schema.
    pub fn single_object_header(&self) -> &[u8; 10] {
        &self.single_object_header
    }

    /// Whether `fingerprint` names this schema: the spec's fingerprint, or
    /// the apache-avro one that records written before carry.
    pub fn is_own_fingerprint(&self, fingerprint: &[u8]) -> bool {
        fingerprint == &self.single_object_header[2..] || fingerprint == self.legacy_fingerprint
    }

    /// Decodes a single-object-encoded envelope of this schema (with either
    /// fingerprint).
    pub fn decode_single_object(&self, bytes: &[u8]) -> Result<Envelope<'static>, AvroError> {
        match bytes.strip_prefix(&SINGLE_OBJECT_MARKER[..]) {
            Some(rest) if rest.len() >= 8 && self.is_own_fingerprint(&rest[..8]) => {
                self.decode(&rest[8..])
            }
            _ => Err(AvroError::NotThisSchema),
        }
    }

    /// Decodes one envelope datum written with this schema.
    pub fn decode(&self, bytes: &[u8]) -> Result<Envelope<'static>, AvroError> {
        self.decode_written_with(self.schema, bytes)
    }
}

impl std::fmt::Debug for EnvelopeCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeCodec").finish_non_exhaustive()
    }
}
