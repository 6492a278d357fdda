//! The `codat-stream` binary: parses arguments and runs one subcommand.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use codat_stream::cli::body_file::{Bodies, outcome_line};
use codat_stream::cli::decode::{Decoder, read_value};
use codat_stream::cli::demo;
use codat_stream::config::Settings;
use codat_stream::core::envelope_avro::ENVELOPE_SCHEMA_JSON;
use codat_stream::kafka::pipeline::{self, RunOutcome};
use codat_stream::ops::health::Health;
use codat_stream::ops::http;
use codat_stream::ops::metrics::Metrics;
use codat_stream::registry::client::RegistryClient;
use codat_stream::{IngestMeta, NormalizeOptions, normalize};
use std::sync::Arc;

/// Normalises Codat webhooks (every shape Codat has sent) into one Avro envelope.
#[derive(Parser, Debug)]
#[command(name = "codat-stream", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Normalise webhook bodies from a file or stdin and print one JSON line
    /// per body: the envelope, or {"rejected":{"reason","message"}}.
    /// Exit status: 0 all normalised, 2 some rejected, 1 usage error.
    Normalize(NormalizeArgs),
    /// Print the envelope's Avro schema (schemas/envelope.avsc).
    Schema,
    /// Consume the ingest topics and produce envelopes to per-type topics
    /// (at-least-once), rejected records to the dead-letter topic.
    Run(ConfigArgs),
    /// Print the effective configuration (secrets masked), or why it is invalid.
    CheckConfig(ConfigArgs),
    /// Run the real pipeline on an in-process mock Kafka cluster fed the
    /// bundled sample webhooks, then print what landed on each topic.
    Demo,
    /// Decode envelopes (Confluent wire format or Avro single-object) from
    /// a file holding one record value, or from a topic, and print them as
    /// JSON lines. Exit status: 0 all decoded, 2 some not, 1 usage error.
    Decode(DecodeArgs),
    /// Ask a running connector's HTTP endpoint whether it is healthy; exit 0
    /// if it answers 200, 1 otherwise (for container health checks).
    Health(HealthArgs),
}

#[derive(clap::Args, Debug)]
struct DecodeArgs {
    /// A file holding one record value (e.g. written by `kcat -C -e -c 1
    /// -t TOPIC -f '%s'`); `-` reads stdin.
    #[arg(conflicts_with = "topic")]
    file: Option<PathBuf>,
    /// Read this topic from the beginning (a throwaway group; nothing is committed).
    #[arg(long)]
    topic: Option<String>,
    /// Configuration for the brokers and the schema registry (as for `run`).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Stop after this many records.
    #[arg(long, default_value_t = 100)]
    max: usize,
    /// Stop when no record arrives for this long.
    #[arg(long, default_value_t = 5000)]
    idle_ms: u64,
}

#[derive(clap::Args, Debug)]
struct HealthArgs {
    /// host:port of the connector's HTTP endpoint.
    #[arg(long, default_value = "127.0.0.1:9464")]
    address: String,
    /// /healthz (alive) or /readyz (ready).
    #[arg(long, default_value = "/healthz")]
    path: String,
}

#[derive(clap::Args, Debug)]
struct ConfigArgs {
    /// A TOML configuration file; environment variables
    /// (CODAT_STREAM__SECTION__KEY) override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct NormalizeArgs {
    /// A file holding one JSON body or JSON Lines; `-` or nothing reads stdin.
    file: Option<PathBuf>,
    /// Ingest topic recorded in each envelope (default: the file path, or `stdin`).
    #[arg(long)]
    topic: Option<String>,
    /// Ingest timestamp in ms since the epoch (default: now); `time` for bodies without one.
    #[arg(long)]
    timestamp_ms: Option<i64>,
    /// A record header, NAME=VALUE, applied to every body (e.g. webhook-id=msg_123).
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Bodies larger than this many bytes are rejected.
    #[arg(long, default_value_t = codat_stream::core::normalize::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// CloudEvents `source` of the envelopes.
    #[arg(long, default_value = codat_stream::core::normalize::DEFAULT_SOURCE)]
    source: String,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors; every usage error exits 1.
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("codat-stream: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Normalize(args) => normalize_command(args),
        Command::Schema => {
            io::stdout().write_all(ENVELOPE_SCHEMA_JSON.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(args) => {
            let settings = Settings::load(args.config.as_deref())?;
            io::stdout().write_all(settings.to_masked_toml().as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let settings = Settings::load(args.config.as_deref())?;
            init_logging(&settings.log.format, &settings.log.level);
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let outcome = runtime.block_on(run_connector(settings))?;
            Ok(match outcome {
                RunOutcome::Drained => ExitCode::SUCCESS,
                RunOutcome::DrainTimedOut { .. } => ExitCode::from(1),
            })
        }
        Command::Decode(args) => {
            let settings = Settings::load(args.config.as_deref())?;
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(decode_command(args, settings))
        }
        Command::Health(args) => {
            let status = http::probe(&args.address, &args.path, Duration::from_secs(3))
                .with_context(|| format!("no answer from {}{}", args.address, args.path))?;
            println!("{}{}: {status}", args.address, args.path);
            Ok(if status == 200 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Demo => {
            init_logging("text", "warn,rdkafka::client=off");
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let report = runtime.block_on(demo::run(demo::SAMPLE_WEBHOOKS))?;
            print_demo(&report)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `run`: the HTTP endpoint beside the pipeline, until a signal and the drain.
async fn run_connector(settings: Settings) -> anyhow::Result<RunOutcome> {
    let shutdown = shutdown_signal();
    let health = Arc::new(Health::default());
    let metrics = Arc::new(Metrics::new()?);
    let server = if settings.http.listen.is_empty() {
        None
    } else {
        let listener = http::bind(&settings.http.listen)
            .await
            .with_context(|| format!("cannot listen on http.listen {}", settings.http.listen))?;
        let status = http::Status {
            health: health.clone(),
            metrics: metrics.clone(),
            liveness_timeout_ms: settings.http.liveness_timeout_ms,
        };
        Some(tokio::spawn(http::serve(listener, status)))
    };
    let outcome = pipeline::run(settings, shutdown, health, metrics).await;
    if let Some(server) = server {
        server.abort();
    }
    Ok(outcome?)
}

/// `decode`: one value from a file, or records from a topic, as JSON lines.
async fn decode_command(args: DecodeArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};

    let registry = if settings.schema_registry.url.is_empty() {
        None
    } else {
        Some(RegistryClient::new(&settings.schema_registry)?)
    };
    let mut decoder = Decoder::new(registry)?;
    let mut out = BufWriter::new(io::stdout().lock());
    let Some(topic) = args.topic else {
        let (input, name) = open_input(args.file.as_deref())?;
        let value = read_value(input).with_context(|| format!("cannot read {name}"))?;
        return match decoder.decode(&value).await {
            Ok(env) => {
                writeln!(out, "{}", serde_json::to_string(&env)?)?;
                out.flush()?;
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("codat-stream: cannot decode: {e}");
                Ok(ExitCode::from(2))
            }
        };
    };
    let group = format!("codat-stream-decode-{}-{}", std::process::id(), now_ms());
    let consumer: StreamConsumer = settings
        .inspect_consumer_config(&group)
        .create()
        .context("cannot create the consumer")?;
    consumer.subscribe(&[&topic])?;
    let (mut decoded, mut failed) = (0usize, 0usize);
    while decoded + failed < args.max {
        let message = match tokio::time::timeout(
            Duration::from_millis(args.idle_ms),
            consumer.recv(),
        )
        .await
        {
            Err(_idle) => break,
            Ok(Err(e)) => bail!("consuming {topic}: {e}"),
            Ok(Ok(m)) => m,
        };
        let position = serde_json::json!({
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
        });
        let line = match decoder.decode(message.payload().unwrap_or_default()).await {
            Ok(env) => {
                decoded += 1;
                serde_json::json!({ "record": position, "envelope": env })
            }
            Err(e) => {
                failed += 1;
                serde_json::json!({ "record": position, "error": e.to_string() })
            }
        };
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    eprintln!("codat-stream: {decoded} decoded, {failed} not decodable, from {topic}");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn print_demo(report: &demo::DemoReport) -> anyhow::Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    let total: usize = report.topics.values().map(|t| t.count).sum();
    writeln!(
        out,
        "Loaded {} sample webhooks into the ingest topic; the pipeline ended {:?}.",
        report.loaded, report.outcome
    )?;
    writeln!(
        out,
        "{total} records landed on {} topics:\n",
        report.topics.len()
    )?;
    for (topic, t) in &report.topics {
        writeln!(out, "  {:>4}  {topic}", t.count)?;
    }
    for (topic, t) in &report.topics {
        writeln!(
            out,
            "\n== {topic} ({} records), first one:\n{}",
            t.count, t.first
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Logs to stderr: human-readable or JSON lines; RUST_LOG overrides `level`.
fn init_logging(format: &str, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Colour only for a person at a terminal, not for log collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_writer(io::stderr);
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Completes on SIGTERM or SIGINT.
/// Completes on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled: a signal that arrives while
/// start-up is still building clients must not kill the process outright.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let streams = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (term, int) = streams;
            tokio::select! {
                () = recv_signal(term) => {},
                () = recv_signal(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("signal received");
    }
}

#[cfg(unix)]
async fn recv_signal(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

fn normalize_command(args: NormalizeArgs) -> anyhow::Result<ExitCode> {
    if args.max_body_bytes == 0 {
        bail!("--max-body-bytes must be at least 1");
    }
    let (input, name) = open_input(args.file.as_deref())?;
    let topic = args.topic.unwrap_or_else(|| name.clone());
    let timestamp_ms = match args.timestamp_ms {
        Some(ms) => ms,
        None => now_ms(),
    };
    let options = NormalizeOptions {
        max_body_bytes: args.max_body_bytes,
        source: args.source,
        ..NormalizeOptions::default()
    };

    let mut out = BufWriter::new(io::stdout().lock());
    let (mut offset, mut rejected) = (0i64, 0usize);
    let mut bodies = Bodies::new(input, args.max_body_bytes);
    while let Some(body) = bodies
        .next_body()
        .with_context(|| format!("cannot read {name}"))?
    {
        let ingest = IngestMeta {
            topic: &topic,
            partition: 0,
            offset,
            timestamp_ms,
        };
        let outcome = body.and_then(|body| normalize(body, &args.headers[..], &ingest, &options));
        offset += 1;
        rejected += usize::from(outcome.is_err());
        writeln!(out, "{}", outcome_line(&outcome))?;
    }
    out.flush()?;
    Ok(if rejected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// FILE, or stdin for none or `-`, and its name for messages. Callers
/// read it with a cap: a file or pipe can be any size.
fn open_input(file: Option<&Path>) -> anyhow::Result<(Box<dyn BufRead>, String)> {
    match file {
        Some(p) if p.as_os_str() != "-" => {
            let f = File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
            Ok((Box::new(BufReader::new(f)), p.display().to_string()))
        }
        _ => Ok((Box::new(io::stdin().lock()), "stdin".to_owned())),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
