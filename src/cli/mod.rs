//! The subcommands' own pieces: body files for `normalize`, reading
//! envelopes back for `decode`, and the self-contained `demo`.

pub mod args;
pub mod body_file;
pub mod commands;
pub mod decode;
pub mod demo;
pub mod dlq;
