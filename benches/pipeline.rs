//! End-to-end benchmark: the connector against the cheapest plain client
//! doing the same Kafka work, each in its own process on its own fresh
//! broker, measured the same way.
//!
//! `./scripts/bench.sh [--events N] [--partitions P] [--rates 5000,...]
//! [--rate-secs S] [--pad-to BYTES] [--skip-mock] [--skip-modes]
//! [--producer-sweep "linger.ms=50;compression.type=zstd"]` (the script
//! builds the example binaries this needs, then runs `cargo bench --bench
//! pipeline`).
//!
//! The backlog: N webhooks (default 200,000) made from every published
//! example that normalises (every shape and type, unique ids, 10,000
//! companies, 1% invalid bodies; those under `--pad-to` bytes, default
//! 500, padded to it: a mean of about 535 bytes, the mix issue 10 measured)
//! in a P-partition ingest topic (default 6). Record `i` is keyed
//! `bench-<i>`, with a `webhook-id` header.
//!
//! The contenders, each draining that same backlog (same N, same bodies,
//! same partitions) on a FRESH Apache Kafka broker (KRaft, one node) of its own:
//!
//! 1. **one-topic floor**: `examples/plain_forward.rs one-topic`, a
//!    `BaseConsumer` + `BaseProducer` at librdkafka's defaults (nothing set
//!    beyond bootstrap.servers, group.id, auto.offset.reset=earliest),
//!    every record's bytes, key and headers to one topic;
//! 2. **fan-out floor**: `plain_forward fan-out`, the Kafka work the
//!    connector does without its processing: each record to the topic the
//!    connector writes it to (per event type, dead letters to the dlq), with
//!    the connector's key (companyId, else clientId, else id) and as many
//!    headers of about the size it adds, through a producer with the
//!    connector's compression (lz4), `enable.idempotence=true` and
//!    `acks=all`; everything else at librdkafka's defaults. It parses no
//!    JSON: the route of record `i` comes from a table this bench computed
//!    beforehand with the connector's own normaliser and router, looked up
//!    by the number the record's key ends with. The broker holds the same
//!    output topics as for the connector (its start-up set, 3 partitions:
//!    the connector's default);
//! 3. **the connector**: `codat-stream run` (the dist profile, as shipped) at its own defaults.
//!    The bench sets only what names the deployment (bootstrap, topics,
//!    group, HTTP address), the log level and format, and the statistics
//!    interval (its default, 15 s), nothing that tunes throughput.
//!
//! Each is measured from its first consumed record (the connector's
//! `records_consumed_total` leaving 0, polled every 5 ms; the floor's
//! `consuming` line) to its last acknowledgement (acknowledged envelopes +
//! dead letters reaching N, polled at most every 250 ms and every 20 ms
//! near the end, see `next_scrape`; the floor's `acknowledged`
//! line, printed once its last delivery report arrived): start-up and group
//! join are excluded for all alike. Over that window, from /proc of the
//! contender's own process only: events/s, CPU-µs/event (utime+stime of
//! /proc/PID/stat), context switches per event (voluntary + nonvoluntary,
//! summed over /proc/PID/task/*/status, at the start and the end; threads
//! that end in between are not counted), and peak RSS (VmHWM). The
//! broker's CPU over the same window is recorded in the JSON. The
//! connector's outputs are then counted by consuming them.
//!
//! Why this is honest: the floor runs at the library's defaults (the
//! connector's tuning helps neither side), does the same Kafka work
//! (topics, keys, header count and size, compression, idempotence), runs as
//! a separate process measured exactly like the connector (the bench's own
//! CPU is in neither), and every contender starts on an empty broker, so
//! none inherits another's data or topics. The connector's figures are
//! printed as ratios to the fan-out floor of the same run. The floor's
//! values are the input bytes, the connector's are Avro envelopes: the
//! difference in bytes written is part of what the connector costs.
//!
//! Then the same drain (fan-out floor and connector) on librdkafka's mock
//! cluster, in a process of its own (`examples/mock_kafka.rs`): a broker
//! that does far less work than Kafka, to show the connector's own
//! ceiling. The mock keeps 5 MiB per partition, so its ingest topic has 64
//! partitions and the backlog is capped (see `MOCK_BYTES_PER_PARTITION`); it
//! has no CreateTopics API, so it is started with the output topics and the
//! connector runs with `topics.create=false`.
//!
//! `--producer-sweep`: for each variant (`;` between variants, `,` between
//! a variant's `property=value` pairs), the fan-out floor and the connector
//! each drain the backlog again on a fresh Kafka broker, both with that
//! librdkafka producer setting (the connector through `[kafka.producer]`),
//! so each setting is compared with the floor that has it too: what a user
//! trades by changing `linger.ms`, `batch.size` or the compression.
//!
//! `MIMALLOC_*` variables in the bench's environment pass through to the
//! connector (mimalloc's own settings, e.g. `MIMALLOC_PURGE_DELAY=0`), and
//! `BENCH_CODAT_STREAM__*` ones as `CODAT_STREAM__*` (the connector's
//! settings, e.g. `BENCH_CODAT_STREAM__PIPELINE__MAX_IN_FLIGHT_BYTES`):
//! the connector's memory bounds measured against the same floors.
//!
//! Last, steady rates (default 5,000/s for 20 s), each on a fresh broker
//! with a fresh connector: end-to-end latency from the producer's send to
//! the output record being read, beside the broker alone measured the same
//! way (the same reader, `fetch.wait.max.ms=5`, reading the ingest record).
//! The connector's consumer keeps librdkafka's default `fetch.wait.max.ms`
//! (500 ms); Kafka answers a waiting fetch as soon as data arrives.
//!
//! Prints a markdown table and writes every figure to
//! target/bench/pipeline.json. `BENCH_PERF=FILE` records a `perf` profile
//! of the connector's drain on Kafka.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use codat_stream::config::OutputSettings;
use codat_stream::kafka::routing::Router;
use codat_stream::{HeaderLookup, IngestMeta, NormalizeOptions, normalize};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};
use support::mock_kafka::{MockKafka, example_binary};
use support::procfs::{proc_cpu, proc_ctx, proc_hwm};
use support::*;

struct Args {
    events: usize,
    partitions: i32,
    rates: Vec<u64>,
    rate_secs: u64,
    pad_to: usize,
    mock: bool,
    modes: bool,
    /// Producer settings to measure, each on the fan-out floor and the
    /// connector alike (`--producer-sweep "linger.ms=50;compression.type=zstd"`).
    sweep: Vec<Vec<(String, String)>>,
}

fn args() -> Args {
    let mut a = Args {
        events: 200_000,
        partitions: 6,
        rates: vec![5_000],
        rate_secs: 20,
        // Bodies under 500 bytes padded to it: a mean of about 535 bytes,
        // the mix issue 10 measured.
        pad_to: 500,
        mock: true,
        modes: true,
        sweep: Vec::new(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--events" => a.events = value.parse().expect("--events N"),
            "--partitions" => a.partitions = value.parse().expect("--partitions P"),
            "--rates" => {
                a.rates = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().expect("--rates 5000,20000"))
                    .collect()
            }
            "--rate-secs" => a.rate_secs = value.parse().expect("--rate-secs S"),
            "--pad-to" => a.pad_to = value.parse().expect("--pad-to BYTES"),
            "--skip-mock" => {
                a.mock = false;
                i += 1;
                continue;
            }
            "--skip-modes" => {
                a.modes = false;
                i += 1;
                continue;
            }
            "--producer-sweep" => a.sweep = parse_sweep(&value),
            // cargo bench passes --bench.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

// ---------------------------------------------------------------- webhooks

/// Templates: every published example that normalises, as JSON.
fn templates() -> Vec<Value> {
    let sample = include_bytes!("../samples/webhooks.jsonl");
    let ingest = IngestMeta {
        topic: "t",
        partition: 0,
        offset: 0,
        timestamp_ms: 0,
    };
    codat_stream::cli::body_file::split_bodies(sample)
        .into_iter()
        .filter(|b| normalize(b, &(), &ingest, &NormalizeOptions::default()).is_ok())
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect()
}

const FILLER: &str = "Reconciled against the ledger; totals match the source platform. ";

/// Webhook `i`: a template with a unique id (`bench-<i>`, also its key) and
/// company; padded to `pad_to` bytes when it is shorter (0: never).
fn webhook(templates: &[Value], i: usize, pad_to: usize) -> (Vec<u8>, String) {
    let id = format!("bench-{i:010}");
    if i % 100 == 99 {
        // 1% invalid: a body of no known shape, and a truncated one.
        let body = if i % 200 == 199 {
            format!(r#"{{"notAWebhook":"{id}","note":"{}"}}"#, FILLER.repeat(4))
        } else {
            format!(r#"{{"id":"{id}","eventType":"connection.failed","payload":{{"#)
        };
        return (body.into_bytes(), id);
    }
    let mut v = templates[i % templates.len()].clone();
    let company = format!("company-{:05}", (i * 7919) % 10_000);
    let obj = v.as_object_mut().expect("templates are objects");
    if obj.contains_key("RuleType") {
        obj.insert("AlertId".into(), json!(id));
        obj.insert("CompanyId".into(), json!(company));
    } else {
        obj.insert("id".into(), json!(id));
        for key in ["payload", "data"] {
            if let Some(Value::Object(p)) = obj.get_mut(key) {
                if let Some(Value::Object(rc)) = p.get_mut("referenceCompany") {
                    rc.insert("id".into(), json!(company));
                } else if p.contains_key("companyId") {
                    p.insert("companyId".into(), json!(company));
                }
            }
        }
    }
    let mut body = serde_json::to_vec(&v).expect("serialisable");
    if body.len() < pad_to {
        // Pad inside the payload (or the legacy Message), as real webhooks
        // carry descriptions and data-type lists.
        let pad = FILLER.repeat((pad_to - body.len()) / FILLER.len() + 1);
        let obj = v.as_object_mut().expect("object");
        if obj.contains_key("RuleType") {
            obj.insert("Message".into(), json!(pad));
        } else if let Some(Value::Object(p)) = obj.get_mut("payload") {
            p.insert("notes".into(), json!(pad));
        } else if let Some(Value::Object(p)) = obj.get_mut("data") {
            p.insert("notes".into(), json!(pad));
        }
        body = serde_json::to_vec(&v).expect("serialisable");
    }
    (body, id)
}

struct Backlog<'t> {
    templates: &'t [Value],
    events: usize,
    pad_to: usize,
}

impl Backlog<'_> {
    fn get(&self, i: usize) -> (Vec<u8>, String) {
        webhook(self.templates, i, self.pad_to)
    }
}

// ------------------------------------------------------------- route table

/// One `webhook-id` header, as the connector's normaliser sees it.
struct WebhookId<'a>(&'a [u8]);

impl HeaderLookup for WebhookId<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        name.eq_ignore_ascii_case("webhook-id").then_some(self.0)
    }
}

/// What the connector will write for the backlog, for the fan-out floor.
struct Routes {
    path: PathBuf,
    envelopes: usize,
    dead_letters: usize,
    mean_body_bytes: f64,
    /// Topics the records go to, dead letters' included.
    used_topics: Vec<String>,
}

impl Routes {
    /// Every topic the connector writes to or creates at start-up: the
    /// floor's broker must hold them (the broker does not create topics on
    /// produce; the connector creates types outside the catalog on first use).
    fn all_topics(&self, names: &Names) -> Vec<String> {
        let mut all = output_topics(names);
        all.extend(self.used_topics.iter().cloned());
        all.sort();
        all.dedup();
        all
    }
}

/// Every topic the connector creates at start-up: dead letters, catch-all
/// and every known type's (the same list as `Processor::startup_topics`).
fn output_topics(names: &Names) -> Vec<String> {
    let router = router(names);
    let mut topics = vec![names.dlq.clone(), names.catch_all.clone()];
    topics.extend(
        codat_stream::core::event_type::known_event_types()
            .iter()
            .map(|t| router.topic_for(t))
            .filter(|t| !router.is_reserved(t)),
    );
    topics.sort();
    topics.dedup();
    topics
}

fn router(names: &Names) -> Router {
    let output = OutputSettings {
        topic_prefix: names.prefix.clone(),
        dead_letter_topic: names.dlq.clone(),
        catch_all_topic: names.catch_all.clone(),
        ..OutputSettings::default()
    };
    Router::new(
        &output,
        std::slice::from_ref(&names.ingest),
        &codat_stream::core::event_type::known_event_types(),
    )
}

/// Writes plain_forward's route table (format in examples/plain_forward.rs)
/// for `names`: the connector's normaliser and router decide each line.
fn route_table(backlog: &Backlog<'_>, names: &Names, dir: &Path) -> Routes {
    let path = dir.join(format!("{}.routes", names.ingest));
    let file = std::fs::File::create(&path).expect("route table file");
    let mut out = std::io::BufWriter::new(file);
    let mut router = router(names);
    let options = NormalizeOptions::default();
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    writeln!(out, "plain_forward route table 1").expect("write");
    writeln!(out, "source\t{}", clean(&options.source)).expect("write");
    writeln!(out, "dlq\t{}", names.dlq).expect("write");
    let (mut envelopes, mut dead_letters, mut bytes) = (0, 0, 0usize);
    let mut used = HashSet::new();
    for i in 0..backlog.events {
        let (body, id) = backlog.get(i);
        bytes += body.len();
        let ingest = IngestMeta {
            topic: &names.ingest,
            partition: 0,
            offset: i as i64,
            timestamp_ms: 0,
        };
        let line = match normalize(&body, &WebhookId(id.as_bytes()), &ingest, &options) {
            Ok(e) => {
                envelopes += 1;
                let topic = router.route(&e.event_type).topic.to_string();
                let subject = if e.subject.is_some() { "S" } else { "-" };
                let line = format!(
                    "E\t{topic}\t{}\t{}\t{subject}",
                    clean(&e.event_type),
                    clean(e.routing_key())
                );
                used.insert(topic);
                line
            }
            Err(r) => {
                dead_letters += 1;
                used.insert(names.dlq.clone());
                format!(
                    "D\t{}\t{}\t{}",
                    names.dlq,
                    r.reason.code(),
                    clean(&r.message)
                )
            }
        };
        writeln!(out, "{line}").expect("write");
    }
    out.flush().expect("flush route table");
    Routes {
        path,
        envelopes,
        dead_letters,
        mean_body_bytes: bytes as f64 / backlog.events.max(1) as f64,
        used_topics: used.into_iter().collect(),
    }
}

// ----------------------------------------------------------------- loading

/// Counts delivery reports, so a load that lost records is caught.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

type Loader = BaseProducer<Deliveries>;

/// The bench's own producer (loading the backlog, offering steady load):
/// not a contender, so tuned to load fast.
fn producer(bootstrap: &str, linger_ms: &str) -> Loader {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", linger_ms)
        .set("batch.size", "262144")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "300000")
        .create_with_context(Deliveries::default())
        .expect("producer")
}

fn assert_delivered(p: &Loader, what: &str) {
    p.flush(Duration::from_secs(600)).expect("flushed");
    let failed = p.context().failed.load(Ordering::Relaxed);
    assert!(
        failed == 0,
        "{what}: {failed} records not delivered: {:?}",
        p.context().first_error.lock().ok().and_then(|e| e.clone())
    );
}

/// Produces the first `n` webhooks of the backlog to `topic` and waits for
/// every acknowledgement.
fn load(bootstrap: &str, topic: &str, backlog: &Backlog<'_>, n: usize) -> Duration {
    let p = producer(bootstrap, "20");
    let start = Instant::now();
    for i in 0..n {
        let (body, id) = backlog.get(i);
        let headers = OwnedHeaders::new().insert(Header {
            key: "webhook-id",
            value: Some(id.as_bytes()),
        });
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .payload(&body)
            .key(id.as_bytes())
            .headers(headers);
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    p.poll(Duration::from_millis(5));
                }
            }
        }
    }
    assert_delivered(&p, "loading the backlog");
    start.elapsed()
}

/// Creates `topics` with `partitions` each (replication: the broker's).
fn create_topics(bootstrap: &str, topics: &[String], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let results = rt
        .block_on(admin.create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .expect("create topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e:?}"));
    }
}

/// A consumer in a group of its own, from the earliest offset, never
/// committing: the bench's reader (an instrument, not a contender).
fn reader(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique(group))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", "104857600")
        .set("max.partition.fetch.bytes", "10485760");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("consumer")
}

/// Counts records on every topic `select` accepts, by consuming them, until
/// `want` are read or nothing arrives for `idle`.
fn count(bootstrap: &str, select: impl Fn(&str) -> bool, want: usize, idle: Duration) -> usize {
    let consumer = reader(bootstrap, "bench-count", &[]);
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let topics: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|t| select(t))
        .collect();
    consumer.subscribe(&topics).expect("subscribe");
    let mut n = 0;
    let mut last = Instant::now();
    while n < want && last.elapsed() < idle {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            n += 1;
            last = Instant::now();
        }
    }
    n
}

// ------------------------------------------------------------ measurement

/// A process's counters at one moment.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    /// user+sys seconds.
    cpu: f64,
    /// Voluntary + nonvoluntary context switches of its live threads.
    ctx: u64,
}

fn sample(pid: u32) -> Sample {
    Sample {
        at: Instant::now(),
        cpu: proc_cpu(pid),
        ctx: proc_ctx(pid),
    }
}

/// The 1-minute load average.
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// One contender's drain.
struct Run {
    label: String,
    events: usize,
    secs: f64,
    cpu_secs: f64,
    ctx: u64,
    peak_rss: u64,
    broker_cpu_secs: Option<f64>,
    acknowledged: u64,
    counted: Option<usize>,
    load_secs: f64,
}

impl Run {
    fn measured(
        label: &str,
        events: usize,
        (start, end): (Sample, Sample),
        peak_rss: u64,
        broker: Option<(f64, f64)>,
    ) -> Run {
        Run {
            label: label.to_owned(),
            events,
            secs: end.at.duration_since(start.at).as_secs_f64(),
            cpu_secs: end.cpu - start.cpu,
            ctx: end.ctx.saturating_sub(start.ctx),
            peak_rss,
            broker_cpu_secs: broker.map(|(a, b)| b - a),
            acknowledged: 0,
            counted: None,
            load_secs: 0.0,
        }
    }
    fn rate(&self) -> f64 {
        self.events as f64 / self.secs
    }
    fn cpu_us(&self) -> f64 {
        self.cpu_secs * 1e6 / self.events as f64
    }
    fn ctx_per_event(&self) -> f64 {
        self.ctx as f64 / self.events as f64
    }
    fn json(&self) -> Value {
        json!({
            "events": self.events,
            "seconds": self.secs,
            "events_per_sec": self.rate(),
            "cpu_seconds": self.cpu_secs,
            "cpu_us_per_event": self.cpu_us(),
            "context_switches": self.ctx,
            "context_switches_per_event": self.ctx_per_event(),
            "peak_rss_bytes": self.peak_rss,
            "broker_cpu_us_per_event": self.broker_cpu_secs.map(|c| c * 1e6 / self.events as f64),
            "acknowledged": self.acknowledged,
            "counted_outputs": self.counted,
            "backlog_load_seconds": self.load_secs,
        })
    }
    /// This run against `floor`: rate and CPU ratios, CPU difference.
    fn versus(&self, floor: &Run) -> Value {
        json!({
            "events_per_sec_ratio": self.rate() / floor.rate(),
            "cpu_us_per_event_ratio": self.cpu_us() / floor.cpu_us(),
            "cpu_us_per_event_difference": self.cpu_us() - floor.cpu_us(),
            "context_switches_per_event_ratio": self.ctx_per_event() / floor.ctx_per_event(),
        })
    }
}

/// Broker CPU seconds now, when its pid is known.
fn broker_cpu(pid: Option<u32>) -> Option<f64> {
    pid.map(proc_cpu)
}

// ------------------------------------------------------------------ floors

/// How plain_forward moves records.
enum FloorMode<'a> {
    OneTopic(&'a str),
    FanOut(&'a Path),
}

/// Runs plain_forward on the loaded backlog and measures it from its
/// `consuming` line to its `acknowledged` line.
fn floor(
    label: &str,
    bootstrap: &str,
    ingest: &str,
    n: usize,
    mode: FloorMode<'_>,
    broker_pid: Option<u32>,
    producer: &[(String, String)],
) -> Run {
    let log = std::env::temp_dir().join(format!("{}.log", unique("plain-forward")));
    let (mode, target) = match mode {
        FloorMode::OneTopic(t) => ("one-topic", t.to_owned()),
        FloorMode::FanOut(p) => ("fan-out", p.display().to_string()),
    };
    let mut child = Command::new(example_binary("plain_forward"))
        .args([
            bootstrap,
            &unique("bench-floor"),
            ingest,
            &n.to_string(),
            mode,
            &target,
        ])
        .args(producer.iter().map(|(k, v)| format!("{k}={v}")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("floor log"))
        .spawn()
        .expect("start plain_forward");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut next_line = |within: Duration| -> String {
        let deadline = Instant::now() + within;
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(line) => return line,
                Err(_) => {
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    assert!(
                        Instant::now() < deadline,
                        "plain_forward {mode}: no progress within {within:?}; its log:\n{log}"
                    );
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("plain_forward {mode} exited ({status}); its log:\n{log}");
                    }
                }
            }
        }
    };
    let first = next_line(Duration::from_secs(120));
    let start = sample(pid);
    let broker0 = broker_cpu(broker_pid);
    assert_eq!(first, "consuming", "plain_forward {mode}");
    // At least 2,000 events/s, or something is wrong.
    let done = next_line(Duration::from_secs(120 + n as u64 / 2000));
    let end = sample(pid);
    let broker1 = broker_cpu(broker_pid);
    let peak_rss = proc_hwm(pid);
    let acknowledged: u64 = done
        .strip_prefix("acknowledged ")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("plain_forward {mode}: {done}; log {}", log.display()));
    drop(child.stdin.take());
    let status = child.wait().expect("plain_forward exits");
    assert!(status.success(), "plain_forward {mode}: {status}");
    let mut run = Run::measured(label, n, (start, end), peak_rss, broker0.zip(broker1));
    run.acknowledged = acknowledged;
    assert_eq!(acknowledged, n as u64, "{label}: every record acknowledged");
    run
}

// ----------------------------------------------------------- the connector

/// What the bench sets beyond naming the deployment. Only logging and the
/// statistics interval (its default, kept explicit): the connector runs at
/// its own defaults otherwise. The former
/// `kafka.consumer.max_partition_fetch_bytes = 10 MiB` override is gone:
/// the output count checks that nothing is lost at the defaults.
const CONNECTOR_ENV: &[(&str, &str)] = &[
    (
        "CODAT_STREAM__LOG__LEVEL",
        "warn,codat_stream::kafka::pipeline=info",
    ),
    (
        "CODAT_STREAM__METRICS__KAFKA_STATISTICS_INTERVAL_MS",
        "15000",
    ),
];

/// Starts `codat-stream run` with the deployment's names and `extra`, and
/// nothing else (unlike the tests' `Connector::start`, which tunes session
/// timeouts, fetch sizes and topic partitions for fast tests).
fn start_connector(bootstrap: &str, names: &Names, extra: &[(&str, &str)]) -> Connector {
    let http = format!("127.0.0.1:{}", free_port());
    let raw_log = std::env::temp_dir().join(format!("{}.log", unique("bench-connector")));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_codat-stream"));
    cmd.arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CODAT_STREAM__KAFKA__BOOTSTRAP_SERVERS", bootstrap)
        .env("CODAT_STREAM__INGEST__TOPICS", &names.ingest)
        .env("CODAT_STREAM__INGEST__GROUP_ID", &names.group)
        .env("CODAT_STREAM__OUTPUT__TOPIC_PREFIX", &names.prefix)
        .env("CODAT_STREAM__OUTPUT__DEAD_LETTER_TOPIC", &names.dlq)
        .env("CODAT_STREAM__OUTPUT__CATCH_ALL_TOPIC", &names.catch_all)
        .env("CODAT_STREAM__HTTP__LISTEN", &http)
        .env("CODAT_STREAM__LOG__FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in CONNECTOR_ENV.iter().chain(extra) {
        cmd.env(k, v);
    }
    // The allocator's own settings and the connector's, to measure their
    // trade (docs/performance.md): the connector alone gets them, the
    // floors keep librdkafka's defaults.
    let passed = |k: &str| k.starts_with("MIMALLOC_") || k.starts_with("BENCH_CODAT_STREAM__");
    for (k, v) in std::env::vars().filter(|(k, _)| passed(k)) {
        cmd.env(k.strip_prefix("BENCH_").unwrap_or(&k), v);
    }
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; it only marks this child to
        // die with the bench (which may end without running destructors).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().expect("start codat-stream");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (sink, raw_path) = (log.clone(), raw_log.clone());
    let reader = std::thread::spawn(move || {
        let Ok(mut raw) = std::fs::File::create(raw_path) else {
            return;
        };
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(raw, "{line}");
            if let Ok(v) = serde_json::from_str(&line) {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(v);
            }
        }
    });
    Connector {
        child,
        log,
        raw_log,
        http,
        reader: Some(reader),
    }
}

/// Starts a connector on a loaded backlog and measures it from its first
/// consumed record to the last acknowledgement.
fn drain(
    label: &str,
    bootstrap: &str,
    names: &Names,
    n: usize,
    extra: &[(&str, &str)],
    broker_pid: Option<u32>,
    count_outputs: bool,
) -> Run {
    let mut connector = start_connector(bootstrap, names, extra);
    let pid = connector.child.id();
    let acked = |m: &Metrics| {
        m.sum("codat_stream_envelopes_produced_total", &[])
            + m.sum("codat_stream_dead_lettered_total", &[])
    };
    // Time from the first record consumed: start-up (topic creation) excluded.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (start, broker0) = loop {
        assert!(
            Instant::now() < deadline,
            "connector never consumed; log {}",
            connector.raw_log.display()
        );
        if let Some((200, body)) = connector.get("/metrics")
            && Metrics::parse(&body).sum("codat_stream_records_consumed_total", &[]) > 0.0
        {
            break (sample(pid), broker_cpu(broker_pid));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // BENCH_PERF=FILE: sample the connector with `perf record` during the drain.
    let perf = std::env::var("BENCH_PERF")
        .ok()
        .filter(|_| count_outputs)
        .map(|out| {
            Command::new("perf")
                .args([
                    "record",
                    "-e",
                    "cpu-clock",
                    "-F",
                    "999",
                    "-g",
                    "-o",
                    &out,
                    "-p",
                    &pid.to_string(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("perf")
        });
    let mut acknowledged = 0.0;
    let mut progress = Instant::now();
    let drain_start = Instant::now();
    while acknowledged < n as f64 {
        if progress.elapsed() >= Duration::from_secs(60) {
            let state = connector.get("/metrics").map(|(_, body)| {
                let m = Metrics::parse(&body);
                let sum = |name: &str| m.sum(name, &[]);
                format!(
                    "consumed {}, in flight {}, produce retries {}, ready {}",
                    sum("codat_stream_records_consumed_total"),
                    sum("codat_stream_in_flight_records"),
                    sum("codat_stream_produce_retries_total"),
                    sum("codat_stream_ready"),
                )
            });
            panic!(
                "drain stalled at {acknowledged} of {n} ({state:?}); log {}",
                connector.raw_log.display()
            );
        }
        if let Some((200, body)) = connector.get("/metrics") {
            let m = Metrics::parse(&body);
            let now = acked(&m);
            if now > acknowledged {
                progress = Instant::now();
            }
            acknowledged = now;
        }
        std::thread::sleep(next_scrape(acknowledged, n as f64, drain_start.elapsed()));
    }
    let end = sample(pid);
    let broker1 = broker_cpu(broker_pid);
    let peak_rss = proc_hwm(pid);
    if let Some(mut perf) = perf {
        // SAFETY: signalling a child we spawned.
        unsafe { libc::kill(perf.id() as i32, libc::SIGINT) };
        let _ = perf.wait();
    }
    connector.sigterm();
    let _ = connector.wait_exit(Duration::from_secs(60));
    let mut run = Run::measured(label, n, (start, end), peak_rss, broker0.zip(broker1));
    run.acknowledged = acknowledged as u64;
    run.counted = count_outputs.then(|| {
        count(
            bootstrap,
            |t| is_output(names, t),
            n,
            Duration::from_secs(20),
        )
    });
    run
}

/// How long to wait before the next scrape of a drain: at most 250 ms (a
/// scrape costs the connector CPU: at every 20 ms the scrapes were a third
/// of its CPU in a profile of the drain), and half the time the drain's
/// pace so far says is left, down to 20 ms, so its end is seen within
/// 20 ms and the last stretch adds only a handful of scrapes. (A fixed 250 ms saw the end up to 250 ms late: on the mock cluster's
/// 1.5 s drains, drain times came out in steps of 250 ms.)
fn next_scrape(acknowledged: f64, n: f64, elapsed: Duration) -> Duration {
    let most = Duration::from_millis(250);
    if acknowledged <= 0.0 {
        return most;
    }
    let left = elapsed.as_secs_f64() * (n - acknowledged).max(0.0) / acknowledged;
    Duration::from_secs_f64(left / 2.0).clamp(Duration::from_millis(20), most)
}

// ------------------------------------------------------------------ latency

struct Latency {
    rate: u64,
    sent: u64,
    received: usize,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    /// The same records read straight from the ingest topic: the broker's share.
    broker_p50_ms: f64,
    broker_p99_ms: f64,
    cpu_us_per_event: f64,
    ctx_per_event: f64,
    peak_rss: u64,
}

/// The `q` quantile of sorted microseconds, in ms.
fn pct_of(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx] as f64 / 1000.0
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// On a fresh broker, offers `rate` webhooks/s for `secs` to a fresh
/// connector and measures send -> output-readable latency from a header
/// carried through, beside send -> ingest-readable by the same reader.
fn steady(backlog: &Backlog<'_>, rate: u64, secs: u64, partitions: i32) -> Latency {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let names = Names::new();
    broker.create_topic(&names.ingest, partitions);
    // Info: its "partitions assigned" line says when to offer load.
    let mut connector =
        start_connector(&bootstrap, &names, &[("CODAT_STREAM__LOG__LEVEL", "info")]);
    connector.wait_started(Duration::from_secs(120));
    let pid = connector.child.id();

    // The reader: every output topic (the known types' exist by now).
    let reader = reader(
        &bootstrap,
        "bench-latency",
        &[
            ("fetch.wait.max.ms", "5"),
            ("topic.metadata.refresh.interval.ms", "1000"),
        ],
    );
    let metadata = reader
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    // The outputs, and the ingest topic itself: the broker-only path's
    // latency, read beside the connector's.
    let outputs: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|t| is_output(&names, t) || *t == names.ingest)
        .collect();
    // A pattern, so topics created on first use (types outside the catalog) are read too.
    let pattern = format!("^{}.*", names.prefix.replace('.', "\\."));
    let mut refs: Vec<&str> = outputs.iter().map(String::as_str).collect();
    refs.push(&pattern);
    reader.subscribe(&refs).expect("subscribe");
    // Wait until the reader owns its partitions before offering load.
    let until = Instant::now() + Duration::from_secs(60);
    while reader.assignment().map(|a| a.count()).unwrap_or(0) == 0 && Instant::now() < until {
        let _ = reader.poll(Duration::from_millis(50));
    }

    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let start = sample(pid);
    let sender = {
        let (sent, done, bootstrap, topic) = (
            sent.clone(),
            done.clone(),
            bootstrap.clone(),
            names.ingest.clone(),
        );
        // Bodies made before the clock starts, so the offered rate is not
        // bounded by generating them; ids stay unique via webhook-id.
        let pool: Vec<(Vec<u8>, String)> = (0..POOL).map(|i| backlog.get(i)).collect();
        std::thread::spawn(move || {
            // A typical producer (5 ms linger): one request per record would
            // measure the broker's per-request cost, not the pipeline.
            let p = producer(&bootstrap, "5");
            let start = Instant::now();
            let total = rate * secs;
            let mut i = 0u64;
            while i < total {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while i < due.min(total) {
                    let (body, _) = &pool[i as usize % POOL];
                    let id = format!("lat-{i:010}");
                    let stamp = now_us().to_string();
                    let headers = OwnedHeaders::new()
                        .insert(Header {
                            key: "webhook-id",
                            value: Some(id.as_bytes()),
                        })
                        .insert(Header {
                            key: "bench-sent-us",
                            value: Some(stamp.as_bytes()),
                        });
                    let record = BaseRecord::<[u8], [u8]>::to(&topic)
                        .payload(body)
                        .key(id.as_bytes())
                        .headers(headers);
                    if p.send(record).is_ok() {
                        i += 1;
                        sent.fetch_add(1, Ordering::Relaxed);
                    } else {
                        p.poll(Duration::from_millis(1));
                    }
                }
                p.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_micros(200));
            }
            assert_delivered(&p, "steady load");
            done.store(true, Ordering::Relaxed);
        })
    };
    let mut latencies_us: Vec<u64> = Vec::with_capacity((rate * secs) as usize);
    let mut broker_us: Vec<u64> = Vec::with_capacity((rate * secs) as usize);
    let mut seen = HashSet::new();
    let mut last = Instant::now();
    loop {
        let finished = done.load(Ordering::Relaxed);
        if finished && latencies_us.len() as u64 >= sent.load(Ordering::Relaxed) {
            break;
        }
        if finished && last.elapsed() > Duration::from_secs(15) {
            break;
        }
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(50)) {
            let got = now_us();
            let stamp = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "bench-sent-us"))
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
            let id = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "webhook-id"))
                .and_then(|h| h.value)
                .map(<[u8]>::to_vec);
            if m.topic() == names.ingest {
                if let Some(stamp) = stamp {
                    broker_us.push(got.saturating_sub(stamp));
                }
            } else if let (Some(stamp), Some(id)) = (stamp, id)
                && seen.insert(id)
            {
                latencies_us.push(got.saturating_sub(stamp));
            }
            last = Instant::now();
        }
    }
    sender.join().expect("sender");
    let end = sample(pid);
    let peak_rss = proc_hwm(pid);
    connector.sigterm();
    let _ = connector.wait_exit(Duration::from_secs(60));
    latencies_us.sort_unstable();
    broker_us.sort_unstable();
    let pct = |q: f64| pct_of(&latencies_us, q);
    let sent = sent.load(Ordering::Relaxed);
    Latency {
        rate,
        sent,
        received: latencies_us.len(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        p999_ms: pct(0.999),
        max_ms: latencies_us.last().map_or(f64::NAN, |v| *v as f64 / 1000.0),
        broker_p50_ms: pct_of(&broker_us, 0.5),
        broker_p99_ms: pct_of(&broker_us, 0.99),
        cpu_us_per_event: (end.cpu - start.cpu) * 1e6 / sent.max(1) as f64,
        ctx_per_event: end.ctx.saturating_sub(start.ctx) as f64 / sent.max(1) as f64,
        peak_rss,
    }
}

/// Distinct bodies the steady-rate sender cycles through.
const POOL: usize = 20_000;

/// Partitions of the mock cluster's ingest topic.
const MOCK_PARTITIONS: i32 = 64;
/// The mock cluster keeps 5 MiB of batches per partition and drops older
/// ones (a consumer behind them skips ahead): the mock backlog stays under
/// this many body bytes per partition.
const MOCK_BYTES_PER_PARTITION: f64 = 3.5 * 1024.0 * 1024.0;

/// Output topics' partitions: the connector's `topics.partitions` default.
const OUTPUT_PARTITIONS: i32 = 3;

// ---------------------------------------------------------------- contenders

/// A fresh Apache Kafka broker with `names.ingest` holding the backlog and
/// `outputs` created: (broker, seconds the load took).
fn fresh_kafka(
    backlog: &Backlog<'_>,
    partitions: i32,
    names: &Names,
    outputs: &[String],
) -> (Broker, f64) {
    let broker = Broker::start();
    broker.create_topic(&names.ingest, partitions);
    if !outputs.is_empty() {
        create_topics(&broker.bootstrap(), outputs, OUTPUT_PARTITIONS);
    }
    let took = load(&broker.bootstrap(), &names.ingest, backlog, backlog.events);
    (broker, took.as_secs_f64())
}

/// The connector's other modes, each measured on Kafka and on the mock
/// cluster against the at-least-once run on the same broker: de-duplication on (every id new: the window and
/// changelog cost, nothing suppressed), and exactly-once (transactions of
/// the default size; the mock cluster speaks the transaction protocol, so
/// every coordinator round trip is paid, though it stores no transactional
/// offsets). Measured to the last acknowledgement, as the other runs.
const MODES: &[(&str, &[(&str, &str)])] = &[
    ("dedup", &[("CODAT_STREAM__DEDUP__ENABLED", "true")]),
    (
        "exactly-once",
        &[("CODAT_STREAM__DELIVERY__GUARANTEE", "exactly-once")],
    ),
];

/// One mode's drain on a fresh mock cluster (its changelog made there,
/// as wide as the ingest topic).
fn mode_drain(
    backlog: &Backlog<'_>,
    n: usize,
    dir: &Path,
    label: &str,
    extra: &[(&str, &str)],
) -> Run {
    let names = Names::new();
    let outputs = route_table(backlog, &names, dir).all_topics(&names);
    let changelog = format!("{}.dedup", names.group);
    let mut topics: Vec<(&str, i32)> = vec![
        (names.ingest.as_str(), MOCK_PARTITIONS),
        (changelog.as_str(), MOCK_PARTITIONS),
    ];
    topics.extend(outputs.iter().map(|t| (t.as_str(), OUTPUT_PARTITIONS)));
    let cluster = MockKafka::start(1, &topics);
    let load_secs = load(&cluster.bootstrap(), &names.ingest, backlog, n).as_secs_f64();
    let mut env = vec![("CODAT_STREAM__TOPICS__CREATE", "false")];
    env.extend_from_slice(extra);
    let mut run = drain(
        &format!("mock: codat-stream {label}"),
        &cluster.bootstrap(),
        &names,
        n,
        &env,
        Some(cluster.pid()),
        false,
    );
    run.load_secs = load_secs;
    eprintln!("  {:.0}/s", run.rate());
    run
}

/// A fresh mock cluster (own process) with its ingest topic holding the
/// first `n` records of the backlog, and `outputs` created.
fn fresh_mock(
    backlog: &Backlog<'_>,
    n: usize,
    names: &Names,
    outputs: &[String],
) -> (MockKafka, f64) {
    let mut topics: Vec<(String, i32)> = vec![(names.ingest.clone(), MOCK_PARTITIONS)];
    topics.extend(outputs.iter().map(|t| (t.clone(), OUTPUT_PARTITIONS)));
    let refs: Vec<(&str, i32)> = topics.iter().map(|(t, p)| (t.as_str(), *p)).collect();
    let mock = MockKafka::start(1, &refs);
    let took = load(&mock.bootstrap(), &names.ingest, backlog, n);
    (mock, took.as_secs_f64())
}

// ---------------------------------------------------------------- reporting

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn row(run: &Run, floor: Option<&Run>) {
    let versus = match floor {
        None => "= (the floor)".to_owned(),
        Some(f) => format!(
            "{:.2}× events/s, {:.2}× CPU ({:+.1} µs)",
            run.rate() / f.rate(),
            run.cpu_us() / f.cpu_us(),
            run.cpu_us() - f.cpu_us()
        ),
    };
    println!(
        "| {} | {:.0} | {:.2} | {:.2} | {:.0} MB | {} |",
        run.label,
        run.rate(),
        run.cpu_us(),
        run.ctx_per_event(),
        mb(run.peak_rss),
        versus
    );
}

/// `"linger.ms=50;batch.size=1000000,linger.ms=50"`: variants split by
/// `;`, each one or more `property=value` split by `,`.
fn parse_sweep(value: &str) -> Vec<Vec<(String, String)>> {
    value
        .split(';')
        .filter(|v| !v.trim().is_empty())
        .map(|variant| {
            variant
                .split(',')
                .map(|p| {
                    let (k, v) = p
                        .trim()
                        .split_once('=')
                        .expect("--producer-sweep \"linger.ms=50;compression.type=zstd\"");
                    (k.to_owned(), v.to_owned())
                })
                .collect()
        })
        .collect()
}

/// The connector's environment for librdkafka producer properties:
/// `[kafka.producer]`, with `.` written `_` as the config loader reads it.
fn producer_env(props: &[(String, String)]) -> Vec<(String, String)> {
    props
        .iter()
        .map(|(k, v)| {
            let key = k.replace('.', "_").to_uppercase();
            (format!("CODAT_STREAM__KAFKA__PRODUCER__{key}"), v.clone())
        })
        .collect()
}

/// One producer setting measured on a fresh broker each for the fan-out
/// floor and the connector, both given the same setting.
struct SweepRun {
    setting: String,
    floor: Run,
    connector: Run,
}

fn sweep_run(
    backlog: &Backlog<'_>,
    partitions: i32,
    dir: &Path,
    events: usize,
    props: &[(String, String)],
) -> SweepRun {
    let setting = props
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!("kafka: fan-out floor with {setting}...");
    let names = Names::new();
    let routes = route_table(backlog, &names, dir);
    let (broker, _) = fresh_kafka(backlog, partitions, &names, &routes.all_topics(&names));
    let floor = floor(
        &format!("kafka: plain fan-out floor, {setting}"),
        &broker.bootstrap(),
        &names.ingest,
        events,
        FloorMode::FanOut(&routes.path),
        broker.pid(),
        props,
    );
    eprintln!("  {:.0}/s", floor.rate());
    drop(broker);
    eprintln!("kafka: connector with {setting}...");
    let names = Names::new();
    let (broker, _) = fresh_kafka(backlog, partitions, &names, &[]);
    let env = producer_env(props);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let connector = drain(
        &format!("kafka: codat-stream, {setting}"),
        &broker.bootstrap(),
        &names,
        events,
        &env,
        broker.pid(),
        false,
    );
    eprintln!("  {:.0}/s", connector.rate());
    SweepRun {
        setting,
        floor,
        connector,
    }
}

/// The sweep's table: each setting's floor and connector, and the
/// connector against its own floor.
fn print_sweep(defaults: (&Run, &Run), sweep: &[SweepRun]) {
    println!();
    println!(
        "| producer setting (kafka) | floor events/s | floor CPU-µs/event | connector events/s | connector CPU-µs/event | connector vs floor | broker CPU-µs/event (floor / connector) | connector peak RSS |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|");
    let broker = |r: &Run| {
        r.broker_cpu_secs.map_or("-".to_owned(), |c| {
            format!("{:.1}", c * 1e6 / r.events as f64)
        })
    };
    let rows = std::iter::once(("defaults (linger.ms=5, lz4)", defaults.0, defaults.1)).chain(
        sweep
            .iter()
            .map(|s| (s.setting.as_str(), &s.floor, &s.connector)),
    );
    for (setting, f, c) in rows {
        println!(
            "| {setting} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2}× events/s, {:+.1} µs | {} / {} | {:.0} MB |",
            f.rate(),
            f.cpu_us(),
            c.rate(),
            c.cpu_us(),
            c.rate() / f.rate(),
            c.cpu_us() - f.cpu_us(),
            broker(f),
            broker(c),
            mb(c.peak_rss)
        );
    }
}

fn main() {
    let a = args();
    let templates = templates();
    let backlog = Backlog {
        templates: &templates,
        events: a.events,
        pad_to: a.pad_to,
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load_start = loadavg();
    let dir = tempfile::tempdir().expect("temp dir");

    // The Apache Kafka contenders, each on a broker of its own.
    eprintln!(
        "codat-stream end-to-end benchmark: {} webhooks ({} templates), {} ingest partitions, {} cores, load average {:.2}",
        a.events,
        templates.len(),
        a.partitions,
        cores,
        load_start,
    );
    eprintln!("kafka: one-topic floor (plain client, librdkafka defaults)...");
    let names = Names::new();
    let one_topic_out = format!("{}.forwarded", names.ingest);
    let (broker, load_secs) = fresh_kafka(
        &backlog,
        a.partitions,
        &names,
        std::slice::from_ref(&one_topic_out),
    );
    let mut one_topic = floor(
        "kafka: plain one-topic floor",
        &broker.bootstrap(),
        &names.ingest,
        a.events,
        FloorMode::OneTopic(&one_topic_out),
        broker.pid(),
        &[],
    );
    one_topic.load_secs = load_secs;
    eprintln!("  {:.0}/s", one_topic.rate());
    drop(broker);

    eprintln!(
        "kafka: fan-out floor (plain client, the connector's topics, keys, headers, lz4, idempotence)..."
    );
    let names = Names::new();
    let routes = route_table(&backlog, &names, dir.path());
    eprintln!(
        "  bodies: mean {:.0} bytes; {} envelopes to {} topics, {} dead letters",
        routes.mean_body_bytes,
        routes.envelopes,
        routes.used_topics.len() - usize::from(routes.dead_letters > 0),
        routes.dead_letters
    );
    let (broker, load_secs) =
        fresh_kafka(&backlog, a.partitions, &names, &routes.all_topics(&names));
    let mut fan_out = floor(
        "kafka: plain fan-out floor",
        &broker.bootstrap(),
        &names.ingest,
        a.events,
        FloorMode::FanOut(&routes.path),
        broker.pid(),
        &[],
    );
    fan_out.load_secs = load_secs;
    eprintln!("  {:.0}/s", fan_out.rate());
    drop(broker);

    eprintln!("kafka: connector backlog drain...");
    let names = Names::new();
    let (broker, load_secs) = fresh_kafka(&backlog, a.partitions, &names, &[]);
    let mut connector = drain(
        "kafka: codat-stream",
        &broker.bootstrap(),
        &names,
        a.events,
        &[],
        broker.pid(),
        true,
    );
    connector.load_secs = load_secs;
    eprintln!("  {:.0}/s", connector.rate());
    drop(broker);
    let modes: &[(&str, &[(&str, &str)])] = if a.modes { MODES } else { &[] };
    let kafka_modes: Vec<Run> = modes
        .iter()
        .map(|(label, extra)| {
            eprintln!("kafka: connector {label}...");
            let names = Names::new();
            let (broker, load_secs) = fresh_kafka(&backlog, a.partitions, &names, &[]);
            let mut run = drain(
                &format!("kafka: codat-stream {label}"),
                &broker.bootstrap(),
                &names,
                a.events,
                extra,
                broker.pid(),
                true,
            );
            run.load_secs = load_secs;
            eprintln!("  {:.0}/s", run.rate());
            run
        })
        .collect();

    // The mock cluster: a cheaper broker, the connector's own ceiling. Its
    // partitions keep 5 MiB, so the backlog is capped to fit.
    let mock_events = a
        .events
        .min((MOCK_BYTES_PER_PARTITION * MOCK_PARTITIONS as f64 / routes.mean_body_bytes) as usize);
    let mock = a.mock.then(|| {
        eprintln!("mock cluster: fan-out floor, {mock_events} events...");
        let names = Names::new();
        let routes = route_table(&backlog, &names, dir.path());
        let (cluster, load_secs) =
            fresh_mock(&backlog, mock_events, &names, &routes.all_topics(&names));
        let mut f = floor(
            "mock: plain fan-out floor",
            &cluster.bootstrap(),
            &names.ingest,
            mock_events,
            FloorMode::FanOut(&routes.path),
            Some(cluster.pid()),
            &[],
        );
        f.load_secs = load_secs;
        eprintln!("  {:.0}/s", f.rate());
        drop(cluster);
        eprintln!("mock cluster: connector, {mock_events} events...");
        // The mock has no CreateTopics API: the connector's topics are made
        // at its start, as for the floor.
        let names = Names::new();
        let outputs = route_table(&backlog, &names, dir.path()).all_topics(&names);
        let (cluster, load_secs) = fresh_mock(&backlog, mock_events, &names, &outputs);
        let mut c = drain(
            "mock: codat-stream",
            &cluster.bootstrap(),
            &names,
            mock_events,
            &[("CODAT_STREAM__TOPICS__CREATE", "false")],
            Some(cluster.pid()),
            false,
        );
        c.load_secs = load_secs;
        eprintln!("  {:.0}/s", c.rate());
        drop(cluster);
        let modes = modes
            .iter()
            .map(|(label, extra)| {
                eprintln!("mock cluster: connector {label}, {mock_events} events...");
                mode_drain(&backlog, mock_events, dir.path(), label, extra)
            })
            .collect::<Vec<_>>();
        (f, c, modes)
    });

    let sweep: Vec<SweepRun> = a
        .sweep
        .iter()
        .map(|props| sweep_run(&backlog, a.partitions, dir.path(), a.events, props))
        .collect();

    let mut latencies = Vec::new();
    for rate in &a.rates {
        eprintln!(
            "kafka: connector at a steady {rate}/s for {} s...",
            a.rate_secs
        );
        latencies.push(steady(&backlog, *rate, a.rate_secs, a.partitions));
    }
    let load_end = loadavg();

    // The table.
    println!();
    println!(
        "{} webhooks (mean {:.0} B; {} envelopes, {} dead letters), {} ingest partitions (mock cluster: {} events, {} partitions), {} cores, load average {:.2} at the start, {:.2} at the end",
        a.events,
        routes.mean_body_bytes,
        routes.envelopes,
        routes.dead_letters,
        a.partitions,
        mock_events,
        MOCK_PARTITIONS,
        cores,
        load_start,
        load_end
    );
    println!();
    println!(
        "| contender | events/s | CPU-µs/event | ctx switches/event | peak RSS | vs fan-out floor |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    row(&one_topic, Some(&fan_out));
    row(&fan_out, None);
    row(&connector, Some(&fan_out));
    for m in &kafka_modes {
        row(m, Some(&fan_out));
    }
    if let Some((f, c, modes)) = &mock {
        row(f, None);
        row(c, Some(f));
        for m in modes {
            row(m, Some(f));
        }
    }
    println!();
    let broker_cpu = |r: &Run| {
        r.broker_cpu_secs.map_or("-".to_owned(), |c| {
            format!("{:.1}", c * 1e6 / r.events as f64)
        })
    };
    print!("Broker CPU-µs/event over each drain:");
    for r in [&one_topic, &fan_out, &connector]
        .into_iter()
        .chain(&kafka_modes)
        .chain(
            mock.iter()
                .flat_map(|(f, c, m)| [f, c].into_iter().chain(m)),
        )
    {
        print!(" {} {};", r.label, broker_cpu(r));
    }
    println!();
    for m in &kafka_modes {
        println!(
            "{} vs kafka: codat-stream (at-least-once, same run): {:.2}x events/s, {:.2}x CPU-µs/event ({:+.1} µs).",
            m.label,
            m.rate() / connector.rate(),
            m.cpu_us() / connector.cpu_us(),
            m.cpu_us() - connector.cpu_us()
        );
    }
    if let Some((_, c, modes)) = &mock {
        for m in modes {
            println!(
                "{} vs mock: codat-stream (at-least-once, same run): {:.2}x events/s, {:.2}x CPU-µs/event ({:+.1} µs).",
                m.label,
                m.rate() / c.rate(),
                m.cpu_us() / c.cpu_us(),
                m.cpu_us() - c.cpu_us()
            );
        }
    }
    if !sweep.is_empty() {
        print_sweep((&fan_out, &connector), &sweep);
        println!();
    }
    println!(
        "Connector outputs counted: {} of {}.",
        connector.counted.map_or("-".to_owned(), |c| c.to_string()),
        a.events
    );
    println!();
    println!(
        "| offered rate (kafka) | received/sent | p50 | p99 | p99.9 | max | broker alone p50 / p99 | CPU-µs/event | ctx switches/event | peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for l in &latencies {
        println!(
            "| {}/s | {}/{} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} / {:.1} ms | {:.2} | {:.2} | {:.0} MB |",
            l.rate,
            l.received,
            l.sent,
            l.p50_ms,
            l.p99_ms,
            l.p999_ms,
            l.max_ms,
            l.broker_p50_ms,
            l.broker_p99_ms,
            l.cpu_us_per_event,
            l.ctx_per_event,
            mb(l.peak_rss)
        );
    }

    let report = json!({
        "events": a.events,
        "mean_body_bytes": routes.mean_body_bytes,
        "envelopes": routes.envelopes,
        "dead_letters": routes.dead_letters,
        "partitions": a.partitions,
        "output_partitions": OUTPUT_PARTITIONS,
        "cores": cores,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "kafka": {
            "one_topic_floor": one_topic.json(),
            "fan_out_floor": fan_out.json(),
            "connector": connector.json(),
            "one_topic_floor_vs_fan_out_floor": one_topic.versus(&fan_out),
            "connector_vs_fan_out_floor": connector.versus(&fan_out),
            "connector_outputs_equal_inputs": connector.counted == Some(a.events),
            "modes": kafka_modes.iter().map(|m| json!({
                "run": m.json(),
                "vs_at_least_once": m.versus(&connector),
                "outputs_equal_inputs": m.counted == Some(a.events),
            })).collect::<Vec<_>>(),
        },
        "mock_cluster": mock.as_ref().map(|(f, c, modes)| json!({
            "events": mock_events,
            "partitions": MOCK_PARTITIONS,
            "fan_out_floor": f.json(),
            "connector": c.json(),
            "connector_vs_fan_out_floor": c.versus(f),
            "modes": modes.iter().map(|m| json!({
                "run": m.json(),
                "vs_at_least_once": m.versus(c),
            })).collect::<Vec<_>>(),
        })),
        "producer_sweep": sweep.iter().map(|s| json!({
            "setting": s.setting,
            "fan_out_floor": s.floor.json(),
            "connector": s.connector.json(),
            "connector_vs_fan_out_floor": s.connector.versus(&s.floor),
        })).collect::<Vec<_>>(),
        "steady": latencies.iter().map(|l| json!({
            "rate": l.rate, "sent": l.sent, "received": l.received,
            "p50_ms": l.p50_ms, "p99_ms": l.p99_ms, "p999_ms": l.p999_ms, "max_ms": l.max_ms,
            "broker_alone_p50_ms": l.broker_p50_ms, "broker_alone_p99_ms": l.broker_p99_ms,
            "cpu_us_per_event": l.cpu_us_per_event,
            "context_switches_per_event": l.ctx_per_event,
            "peak_rss_bytes": l.peak_rss,
        })).collect::<Vec<_>>(),
    });
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out_dir).expect("target/bench");
    let path = out_dir.join("pipeline.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json"))
        .expect("write report");
    println!("\nreport: {}", path.display());
    let counted_ok = connector.counted == Some(a.events);
    if !counted_ok {
        eprintln!(
            "OUTPUT COUNT {:?} != INPUT COUNT {}",
            connector.counted, a.events
        );
        std::process::exit(1);
    }
}
