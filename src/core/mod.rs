//! The functional core: raw webhook bytes, record headers and ingest
//! coordinates in, an envelope (or a rejection) out, and the envelope's Avro
//! encoding. Pure: no Kafka, HTTP, configuration files, clock or global
//! state. Nothing here imports the shell.

pub mod avro_fingerprint;
pub mod avro_writer;
pub mod dedup;
pub mod envelope;
pub mod envelope_avro;
pub mod event_key;
pub mod event_payload;
pub mod event_type;
pub mod headers;
pub mod json_scan;
#[cfg(test)]
mod json_strategy;
pub mod json_string;
pub mod json_trusted;
pub mod legacy;
pub mod normalize;
pub mod raw_json;
pub mod redact;
pub mod rejection;
pub mod secret;
pub mod signature;
pub mod timestamp;
pub mod webhook_shape;
