//! What each subcommand does. `main` parses the arguments, calls [`run`]
//! and prints the error, if any; everything else is here.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::args::{Cli, Command, DecodeArgs, DlqCommand, NormalizeArgs};
use crate::cli::body_file::{Bodies, outcome_line};
use crate::cli::decode::{Decoder, read_value};
use crate::cli::{demo, demo_summary, dlq};
use crate::config::Settings;
use crate::core::envelope_avro::ENVELOPE_SCHEMA_JSON;
use crate::kafka::pipeline::{self, RunOutcome};
use crate::ops::health::{Health, now_ms};
use crate::ops::http;
use crate::ops::metrics::Metrics;
use crate::receive;
use crate::registry::client::RegistryClient;
use crate::{IngestMeta, NormalizeOptions, normalize};

pub use crate::cli::error::CliError;

fn system(what: impl Into<String>) -> impl FnOnce(io::Error) -> CliError {
    let what = what.into();
    move |source| CliError::System { what, source }
}

/// Runs one subcommand; returns its exit status.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Normalize(args) => normalize_command(args),
        Command::Schema => {
            io::stdout().write_all(ENVELOPE_SCHEMA_JSON.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Asyncapi(args) => {
            let settings = Settings::load(args.config.as_deref())?;
            let document = crate::cli::asyncapi::document(&settings.output, &settings.topics)?;
            io::stdout().write_all(crate::cli::yaml::to_yaml(&document).as_bytes())?;
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
            let outcome = runtime()?.block_on(run_connector(settings))?;
            Ok(match outcome {
                RunOutcome::Drained => ExitCode::SUCCESS,
                RunOutcome::DrainTimedOut { .. } => ExitCode::from(1),
            })
        }
        Command::Receive(args) => {
            let settings = Settings::load(args.config.as_deref())?;
            init_logging(&settings.log.format, &settings.log.level);
            let drained = runtime()?.block_on(receive_command(settings))?;
            Ok(match drained {
                receive::Drained::Completely => ExitCode::SUCCESS,
                receive::Drained::TimedOut => ExitCode::from(1),
            })
        }
        Command::Decode(args) => {
            let settings = Settings::load(args.config.as_deref())?;
            runtime()?.block_on(decode_command(args, settings))
        }
        Command::Health(args) => {
            let status = http::probe(&args.address, &args.path, Duration::from_secs(3)).map_err(
                system(format!("no answer from {}{}", args.address, args.path)),
            )?;
            println!("{}{}: {status}", args.address, args.path);
            Ok(if status == 200 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Dlq(command) => dlq_command(command),
        Command::Demo(args) => {
            // Errors only: the summary reports the dead letters the log
            // would warn about, and the screen is for the summary.
            init_logging("text", "error,rdkafka::client=off");
            let report = runtime()?.block_on(demo::run(demo::SAMPLE_WEBHOOKS))?;
            let output = Settings::default().output;
            let topics = demo_summary::Topics {
                prefix: &output.topic_prefix,
                dead_letter: &output.dead_letter_topic,
            };
            let mut out = BufWriter::new(io::stdout().lock());
            out.write_all(demo_summary::render(&report, &topics, args.all).as_bytes())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `dlq inspect` and `dlq replay`: the summary to stdout, as a table or JSON.
fn dlq_command(command: DlqCommand) -> Result<ExitCode, CliError> {
    let mut out = io::stdout().lock();
    match command {
        DlqCommand::Inspect(a) => {
            let settings = Settings::load(a.config.config.as_deref())?;
            let topic = a.topic.unwrap_or(settings.output.dead_letter_topic.clone());
            let found = dlq::inspect::inspect(&settings, &topic, &a.range)?;
            if a.json {
                serde_json::to_writer(&mut out, &found)?;
                writeln!(out)?;
            } else {
                dlq::inspect::print_table(&mut out, &found)?;
            }
        }
        DlqCommand::Replay(a) if a.replay.from_topic.is_some() => {
            let settings = Settings::load(a.config.config.as_deref())?;
            init_logging(&settings.log.format, &settings.log.level);
            let topic = a.replay.from_topic.clone().unwrap_or_default();
            let group = dlq::rebuild::group(&settings, a.replay.group.as_deref())?;
            let r = &a.replay;
            let runtime = runtime()?;
            let shutdown = {
                let _inside = runtime.enter();
                shutdown_signal()
            };
            let done = dlq::rebuild::rebuild(
                &settings,
                &topic,
                &r.range,
                &group,
                r.dry_run,
                (&runtime, shutdown),
            )?;
            if a.json {
                serde_json::to_writer(&mut out, &done)?;
                writeln!(out)?;
            } else {
                dlq::rebuild::print_table(&mut out, &done)?;
            }
            if !done.complete {
                return Ok(ExitCode::from(1));
            }
        }
        DlqCommand::Replay(a) => {
            let settings = Settings::load(a.config.config.as_deref())?;
            let topic = a.topic.unwrap_or(settings.output.dead_letter_topic.clone());
            let done = dlq::replay::replay(&settings, &topic, &a.replay)?;
            if a.json {
                serde_json::to_writer(&mut out, &done)?;
                writeln!(out)?;
            } else {
                dlq::replay::print_table(&mut out, &done)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Runtime::new().map_err(system("cannot start the async runtime"))
}

/// `run`: the HTTP endpoint beside the pipeline, until a signal and the drain.
async fn run_connector(settings: Settings) -> Result<RunOutcome, CliError> {
    let shutdown = shutdown_signal();
    let health = Arc::new(Health::default());
    let metrics = Arc::new(Metrics::new()?);
    let server = if settings.http.listen.is_empty() {
        None
    } else {
        let listener = http::bind(&settings.http.listen)
            .await
            .map_err(system(format!(
                "cannot listen on http.listen {}",
                settings.http.listen
            )))?;
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

/// `receive`: the webhook listener, with `/metrics`, `/healthz` and
/// `/readyz` on `http.listen` as for `run`.
async fn receive_command(settings: Settings) -> Result<receive::Drained, CliError> {
    receive::preflight(&settings)?;
    let shutdown = shutdown_signal();
    let health = Arc::new(Health::default());
    let metrics = Arc::new(Metrics::new()?);
    let server = if settings.http.listen.is_empty() {
        None
    } else {
        let listener = http::bind(&settings.http.listen)
            .await
            .map_err(system(format!(
                "cannot listen on http.listen {}",
                settings.http.listen
            )))?;
        let status = http::Status {
            health: health.clone(),
            metrics: metrics.clone(),
            liveness_timeout_ms: settings.http.liveness_timeout_ms,
        };
        Some(tokio::spawn(http::serve(listener, status)))
    };
    let drained = receive::run(&settings, shutdown, health, metrics).await;
    if let Some(server) = server {
        server.abort();
    }
    Ok(drained?)
}

/// `decode`: one value from a file, or records from a topic, as JSON lines.
async fn decode_command(args: DecodeArgs, settings: Settings) -> Result<ExitCode, CliError> {
    let registry = if settings.schema_registry.url.is_empty() {
        None
    } else {
        Some(RegistryClient::new(&settings.schema_registry)?)
    };
    let mut decoder = Decoder::new(registry)?;
    let Some(topic) = args.topic.clone() else {
        let (input, name) = open_input(args.file.as_deref())?;
        let value = read_value(input).map_err(|e| CliError::Read {
            name,
            source: io::Error::other(e.to_string()),
        })?;
        return match decoder.decode(&value).await {
            Ok(env) => {
                let mut out = io::stdout().lock();
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
    decode_topic(&mut decoder, &settings, &topic, &args).await
}

/// `decode --topic`: records from the beginning, until `--max` or idle.
async fn decode_topic(
    decoder: &mut Decoder,
    settings: &Settings,
    topic: &str,
    args: &DecodeArgs,
) -> Result<ExitCode, CliError> {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};

    let group = format!("codat-stream-decode-{}-{}", std::process::id(), now_ms());
    let consumer: StreamConsumer = settings.inspect_consumer_config(&group).create()?;
    consumer.subscribe(&[topic])?;
    let mut out = BufWriter::new(io::stdout().lock());
    let (mut decoded, mut failed) = (0usize, 0usize);
    while decoded + failed < args.max {
        let idle = Duration::from_millis(args.idle_ms);
        let message = match tokio::time::timeout(idle, consumer.recv()).await {
            Err(_idle) => break,
            Ok(received) => received?,
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

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled: a signal that arrives while
/// start-up is still building clients must not kill the process outright.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
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

/// `normalize`: one JSON line per body, the envelope or the rejection.
fn normalize_command(args: NormalizeArgs) -> Result<ExitCode, CliError> {
    let options = normalize_options(&args)?;
    let (input, name) = open_input(args.file.as_deref())?;
    let topic = args.topic.unwrap_or_else(|| name.clone());
    let timestamp_ms = args.timestamp_ms.unwrap_or_else(now_ms);
    let mut out = BufWriter::new(io::stdout().lock());
    let (mut offset, mut rejected) = (0i64, 0usize);
    let mut bodies = Bodies::new(input, options.max_body_bytes);
    loop {
        let body = match bodies.next_body() {
            Ok(Some(body)) => body,
            Ok(None) => break,
            Err(source) => return Err(CliError::Read { name, source }),
        };
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

/// The normaliser's options: the config file's `[normalize]` settings
/// (loaded and validated as for `run`), else the built-in defaults; the
/// flags override either.
fn normalize_options(args: &NormalizeArgs) -> Result<NormalizeOptions, CliError> {
    let mut options = match &args.config {
        Some(path) => Settings::load(Some(path))?.normalize_options(),
        None => NormalizeOptions::default(),
    };
    if let Some(max) = args.max_body_bytes {
        if max == 0 {
            return Err(CliError::Usage(
                "--max-body-bytes must be at least 1".to_owned(),
            ));
        }
        options.max_body_bytes = max;
    }
    if let Some(source) = &args.source {
        options.source.clone_from(source);
    }
    Ok(options)
}

/// FILE, or stdin for none or `-`, and its name for messages. Callers
/// read it with a cap: a file or pipe can be any size.
fn open_input(file: Option<&Path>) -> Result<(Box<dyn BufRead>, String), CliError> {
    match file {
        Some(p) if p.as_os_str() != "-" => {
            let name = p.display().to_string();
            match File::open(p) {
                Ok(f) => Ok((Box::new(BufReader::new(f)), name)),
                Err(source) => Err(CliError::Read { name, source }),
            }
        }
        _ => Ok((Box::new(io::stdin().lock()), "stdin".to_owned())),
    }
}
