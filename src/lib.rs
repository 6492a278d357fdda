//! codat-stream: turns every shape of Codat webhook into one Avro envelope.
//!
//! Layers, each importing only those below it:
//! - [`core`]: the pure normaliser, envelope, Avro encoding and catalog;
//! - [`config`]: typed settings, validated, secrets masked;
//! - [`registry`]: the schema registry client and value framing;
//! - [`ops`]: metrics, health, the HTTP endpoint;
//! - [`kafka`]: the consume -> normalise -> produce loop;
//! - [`receive`]: the webhook endpoint that feeds the ingest topic;
//! - [`cli`]: what the subcommands need beyond the pipeline.
//!
//! The functional core is [`normalize()`]: raw body bytes, record headers and
//! ingest coordinates in, an [`Envelope`] or a [`Rejection`] out, with no I/O.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod core;
pub mod kafka;
pub mod ops;
pub mod receive;
pub mod registry;

pub use crate::core::envelope::Envelope;
pub use crate::core::envelope_avro::EnvelopeCodec;
pub use crate::core::headers::HeaderLookup;
pub use crate::core::normalize::{IngestMeta, NormalizeOptions, normalize};
pub use crate::core::rejection::{RejectReason, Rejection};
