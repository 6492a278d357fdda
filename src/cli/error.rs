//! Why a subcommand failed: one error type for every subcommand, below
//! them all (the `dlq` commands and `commands` both return it).

use std::io;

use crate::cli::demo;
use crate::kafka::pipeline;

/// Why a subcommand failed (exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The arguments make no sense together.
    #[error("{0}")]
    Usage(String),
    /// An input could not be read.
    #[error("cannot read {name}: {source}")]
    Read {
        /// The file, or `stdin`.
        name: String,
        /// Why.
        source: io::Error,
    },
    /// Writing the output failed (a closed pipe is not reported).
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The async runtime, the HTTP listener or a probe failed.
    #[error("{what}: {source}")]
    System {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: io::Error,
    },
    /// The pipeline stopped with an error.
    #[error(transparent)]
    Pipeline(#[from] pipeline::PipelineError),
    /// Metrics could not be registered.
    #[error(transparent)]
    Metrics(#[from] crate::ops::metrics::MetricsError),
    /// `receive` could not run.
    #[error(transparent)]
    Receive(#[from] crate::receive::ReceiveError),
    /// The demo failed.
    #[error(transparent)]
    Demo(#[from] demo::DemoError),
    /// A Kafka client failed (`decode --topic`).
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The schema registry client could not be built.
    #[error(transparent)]
    Registry(#[from] crate::registry::client::RegistryError),
    /// The envelope codec could not be built.
    #[error(transparent)]
    Avro(#[from] crate::core::envelope_avro::AvroError),
    /// An envelope could not be printed as JSON.
    #[error("cannot print an envelope: {0}")]
    Json(#[from] serde_json::Error),
}

impl CliError {
    /// A closed stdout (`| head`) ends the command quietly.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}
