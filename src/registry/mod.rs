//! The Confluent Schema Registry: the REST client, and how envelope values
//! are framed on the wire with the ids it hands out.

pub mod client;
pub mod value_format;
