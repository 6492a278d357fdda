//! The Kafka shell: the consume -> process -> produce loop, the per-record
//! step, deliveries and re-sends, committable offsets, routing, output
//! topics, and the records written (envelopes and dead letters).

pub mod client_errors;
pub mod consumer;
pub mod dedup;
pub mod delivery;
pub mod fast_hash;
pub mod ingest_watch;
pub mod offsets;
pub mod out_headers;
pub mod output;
pub mod pipeline;
pub mod processor;
pub mod record_headers;
pub mod routing;
pub mod topics;
pub mod transaction;
