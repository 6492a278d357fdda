//! librdkafka's mock cluster in a process of its own, for tests and the
//! benchmark: a broker that outlives (or dies with) whatever is under test,
//! and whose CPU is not counted in the process measured.
//!
//! ```text
//! mock_kafka [--brokers N] [--topic NAME:PARTITIONS[:REPLICATION]]...
//! ```
//!
//! Creates the cluster (N brokers, default 1) and the topics, prints exactly
//! one line, `bootstrap=<host:port,...>`, on stdout, then serves until its
//! stdin reaches EOF (the parent closed the pipe or died) or it gets
//! SIGTERM (default action: the process ends, and the cluster with it).
//! Errors go to stderr with exit status 2 (usage) or 1 (the cluster).
//!
//! What the mock cluster is (librdkafka 2.12, `rdkafka_mock.c`):
//! - each partition keeps at most 5 MiB of record batches (as sent, so
//!   after compression) and 100,000 batches; older batches are dropped,
//!   and a consumer behind them is reset by `auto.offset.reset`. Keep a
//!   backlog under about 4 MiB per partition;
//! - it has no CreateTopics API (clients must run with topic creation off);
//!   a producer's metadata request creates a missing topic with 4
//!   partitions, a consumer's does not (so pre-create ingest topics here,
//!   and output topics whose partition count matters);
//! - everything is in memory: nothing survives the process.

use std::io::{Read, Write};
use std::process::ExitCode;

use rdkafka::mocking::MockCluster;

struct Topic {
    name: String,
    partitions: i32,
    replication: i32,
}

struct Args {
    brokers: i32,
    topics: Vec<Topic>,
}

const USAGE: &str = "usage: mock_kafka [--brokers N] [--topic NAME:PARTITIONS[:REPLICATION]]...";

fn parse_topic(spec: &str) -> Result<Topic, String> {
    let mut parts = spec.split(':');
    let name = parts.next().unwrap_or_default();
    let number = |part: Option<&str>, default: Option<i32>| -> Result<i32, String> {
        match (part, default) {
            (Some(p), _) => p
                .parse::<i32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("--topic {spec}: {p:?} is not a positive number")),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("--topic {spec}: give NAME:PARTITIONS")),
        }
    };
    let partitions = number(parts.next(), None)?;
    let replication = number(parts.next(), Some(1))?;
    if name.is_empty() || parts.next().is_some() {
        return Err(format!(
            "--topic {spec}: give NAME:PARTITIONS[:REPLICATION]"
        ));
    }
    Ok(Topic {
        name: name.to_owned(),
        partitions,
        replication,
    })
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        brokers: 1,
        topics: Vec::new(),
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--brokers" => {
                let v = value()?;
                args.brokers = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--brokers {v:?} is not a positive number"))?;
            }
            "--topic" => args.topics.push(parse_topic(&value()?)?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("mock_kafka: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cluster = match MockCluster::new(args.brokers) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mock_kafka: cannot create the mock cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    for t in &args.topics {
        if t.replication > args.brokers {
            eprintln!(
                "mock_kafka: topic {}: replication {} > {} brokers",
                t.name, t.replication, args.brokers
            );
            return ExitCode::from(2);
        }
        if let Err(e) = cluster.create_topic(&t.name, t.partitions, t.replication) {
            eprintln!("mock_kafka: cannot create topic {}: {e}", t.name);
            return ExitCode::FAILURE;
        }
    }
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "bootstrap={}", cluster.bootstrap_servers())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // Nobody reads the address: nobody can use the cluster.
        return ExitCode::FAILURE;
    }
    drop(stdout);
    // Serve (librdkafka's own thread does) until the parent lets go of stdin.
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 512];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    drop(cluster);
    ExitCode::SUCCESS
}
