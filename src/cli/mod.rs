//! The subcommands' own pieces: body files for `normalize`, reading
//! envelopes back for `decode`, the self-contained `demo`, and the AsyncAPI
//! document of `asyncapi`.

pub mod args;
pub mod asyncapi;
pub mod body_file;
pub mod commands;
pub mod decode;
pub mod demo;
pub mod demo_summary;
pub mod dlq;
pub mod error;
pub mod yaml;
