//! codat-stream: turns every shape of Codat webhook into one Avro envelope.
//!
//! The functional core is [`normalize::normalize`]: raw body bytes, record
//! headers and ingest coordinates in, an [`envelope::Envelope`] or a
//! [`rejection::Rejection`] out, with no I/O.

pub mod avro_fingerprint;
pub mod avro_writer;
pub mod backoff;
pub mod body_file;
pub mod config;
pub mod decode;
pub mod delivery;
pub mod demo;
pub mod envelope;
pub mod envelope_avro;
pub mod event_payload;
pub mod event_type;
pub mod http;
pub mod legacy;
pub mod metrics;
pub mod normalize;
pub mod offsets;
pub mod output;
pub mod pipeline;
pub mod processor;
pub mod raw_json;
pub mod record_headers;
pub mod redact;
pub mod rejection;
pub mod routing;
pub mod schema_registry;
pub mod timestamp;
pub mod topics;
pub mod value_format;
pub mod webhook_shape;

pub use envelope::Envelope;
pub use envelope_avro::EnvelopeCodec;
pub use normalize::{HeaderLookup, IngestMeta, NormalizeOptions, normalize};
pub use rejection::{RejectReason, Rejection};
