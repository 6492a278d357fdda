//! The command line: subcommands and their arguments (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Normalises Codat webhooks (every shape Codat has sent) into one Avro envelope.
#[derive(Parser, Debug)]
#[command(name = "codat-stream", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Normalise webhook bodies from a file or stdin and print one JSON line
    /// per body: the envelope, or {"rejected":{"reason","message"}}.
    /// Exit status: 0 all normalised, 2 some rejected, 1 usage error.
    Normalize(NormalizeArgs),
    /// Print the envelope's Avro schema (schemas/envelope.avsc).
    Schema,
    /// Print the AsyncAPI 3 document of every topic the connector writes,
    /// in YAML: with the default settings schemas/asyncapi.yaml; with a
    /// configuration (file and CODAT_STREAM__ variables, as for `run`),
    /// that deployment's topic names.
    Asyncapi(ConfigArgs),
    /// Consume the ingest topics and produce envelopes to per-type topics
    /// (at-least-once), rejected records to the dead-letter topic.
    Run(ConfigArgs),
    /// Receive Codat's webhooks over HTTP: verify each delivery's signature
    /// and produce its body unchanged to the ingest topic, answering 2xx
    /// only once the broker acknowledged it.
    Receive(ConfigArgs),
    /// Print the effective configuration (secrets masked), or why it is invalid.
    CheckConfig(ConfigArgs),
    /// Run the real pipeline on an in-process mock Kafka cluster fed the
    /// bundled sample webhooks, then print what landed on each topic and
    /// the seed connection.failed webhook's record.
    Demo(DemoArgs),
    /// Decode envelopes (Confluent wire format or Avro single-object) from
    /// a file holding one record value, or from a topic, and print them as
    /// JSON lines. Exit status: 0 all decoded, 2 some not, 1 usage error.
    Decode(DecodeArgs),
    /// Dead letters: `inspect` sums them up by reason; `replay` sends them
    /// back through today's normaliser (`--dry-run` first).
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Ask a running connector's HTTP endpoint whether it is healthy; exit 0
    /// if it answers 200, 1 otherwise (for container health checks).
    Health(HealthArgs),
}

#[derive(clap::Args, Debug)]
pub struct DecodeArgs {
    /// A file holding one record value (e.g. written by `kcat -C -e -c 1
    /// -t TOPIC -f '%s'`); `-` reads stdin.
    #[arg(conflicts_with = "topic")]
    pub file: Option<PathBuf>,
    /// Read this topic from the beginning (a throwaway group; nothing is committed).
    #[arg(long)]
    pub topic: Option<String>,
    /// Configuration for the brokers and the schema registry (as for `run`).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Stop after this many records.
    #[arg(long, default_value_t = 100)]
    pub max: usize,
    /// Stop when no record arrives for this long.
    #[arg(long, default_value_t = 5000)]
    pub idle_ms: u64,
}

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// Count the dead letters by reason (first and last time, one example
    /// each). Reads by assignment: joins no group, commits nothing.
    Inspect(DlqInspectArgs),
    /// Produce dead letters' originals to the ingest topic again, so `run`
    /// handles them like any other record. Resumable: progress is kept in
    /// a consumer group of its own, in the transactions that send them.
    /// With `--from-topic`: run the pipeline over a range of an ingest
    /// topic instead, to rebuild the outputs (e.g. under a new prefix).
    Replay(DlqReplayArgs),
}

#[derive(clap::Args, Debug)]
pub struct DlqInspectArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The dead-letter topic (default: output.dead_letter_topic).
    #[arg(long)]
    pub topic: Option<String>,
    #[command(flatten)]
    pub range: crate::cli::dlq::Range,
    /// One JSON object for scripts instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct DlqReplayArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The dead-letter topic (default: output.dead_letter_topic).
    #[arg(long)]
    pub topic: Option<String>,
    #[command(flatten)]
    pub replay: crate::cli::dlq::replay::ReplayArgs,
    /// One JSON object for scripts instead of the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Also print every topic's first record.
    #[arg(long)]
    pub all: bool,
}

#[derive(clap::Args, Debug)]
pub struct HealthArgs {
    /// host:port of the connector's HTTP endpoint.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub address: String,
    /// /healthz (alive) or /readyz (ready).
    #[arg(long, default_value = "/healthz")]
    pub path: String,
}

#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// A TOML configuration file; environment variables
    /// (CODAT_STREAM__SECTION__KEY) override it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct NormalizeArgs {
    /// A file holding one JSON body or JSON Lines; `-` or nothing reads stdin.
    pub file: Option<PathBuf>,
    /// Ingest topic recorded in each envelope (default: the file path, or `stdin`).
    #[arg(long)]
    pub topic: Option<String>,
    /// Ingest timestamp in ms since the epoch (default: now); `time` for bodies without one.
    #[arg(long)]
    pub timestamp_ms: Option<i64>,
    /// A record header, NAME=VALUE, applied to every body (e.g. webhook-id=msg_123).
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Bodies larger than this many bytes are rejected (default: the
    /// config's normalize.max_body_bytes, else 1 MiB).
    #[arg(long)]
    pub max_body_bytes: Option<usize>,
    /// CloudEvents `source` of the envelopes (default: the config's
    /// normalize.source, else urn:codat:webhooks).
    #[arg(long)]
    pub source: Option<String>,
    /// A configuration file (as for `run`; environment variables override
    /// it) whose [normalize] settings apply: redaction, source, body limit
    /// and signature checks (pass the webhook-* headers with --header).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

pub fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}
