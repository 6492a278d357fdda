//! End-to-end benchmark of the connector against a real broker (tansu, as
//! in the tests), beside the broker's own ceiling.
//!
//! `./scripts/bench.sh [--events N] [--partitions P] [--rates 5000,20000]
//! [--rate-secs S] [--skip-mock]` (or `cargo bench --bench pipeline -- ...`):
//!
//! 1. generates N webhooks (~1 KB, every shape and type of the published
//!    examples, unique ids, 10,000 companies, 1% invalid) and loads them
//!    into a P-partition ingest topic: a backlog;
//! 2. broker alone: a plain consume -> produce pass-through of those bytes
//!    (no parsing), to read the connector's figures against;
//! 3. backlog drain: starts `codat-stream run` (release build) and waits
//!    until the broker acknowledged every envelope and dead letter, then
//!    counts the outputs by consuming them;
//! 4. steady rates: a fresh connector per rate, webhooks offered at that
//!    rate, end-to-end latency from the producer's send to the output
//!    record being read;
//! 5. the same drain against librdkafka's in-process mock cluster, a faster
//!    broker, to show the connector's own ceiling.
//!
//! CPU is the connector process's user+sys time from /proc (the broker's
//! excluded); peak RSS is its VmHWM. Prints a table and writes the same as
//! JSON to target/bench/pipeline.json.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use codat_stream::{IngestMeta, NormalizeOptions, normalize};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};
use support::*;

struct Args {
    events: usize,
    partitions: i32,
    rates: Vec<u64>,
    rate_secs: u64,
    mock: bool,
}

fn args() -> Args {
    let mut a = Args {
        events: 1_000_000,
        partitions: 4,
        rates: vec![5_000, 20_000],
        rate_secs: 20,
        mock: true,
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
            "--skip-mock" => {
                a.mock = false;
                i += 1;
                continue;
            }
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

/// Webhook `i`: a template with a unique id and company, padded to ~1 KB.
fn webhook(templates: &[Value], i: usize) -> (Vec<u8>, String) {
    let id = format!("bench-{i:010}");
    if i % 100 == 99 {
        // 1% invalid: a body of no known shape, and a truncated one.
        let body = if i % 200 == 199 {
            format!(r#"{{"notAWebhook":"{id}","note":"{}"}}"#, FILLER.repeat(12))
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
    if body.len() < 1000 {
        // Pad inside the payload (or the legacy Message) to ~1 KB, as real
        // webhooks carry descriptions and data-type lists.
        let pad = FILLER.repeat((1000 - body.len()) / FILLER.len() + 1);
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

// ----------------------------------------------------------------- loading

/// Counts delivery reports, so a load that lost records is caught.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
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

fn producer(bootstrap: &str, linger_ms: &str) -> Loader {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", linger_ms)
        // Batches well under a fetch's partition limit: tansu 0.6 answers a
        // fetch at an offset inside a batch with the next batch, so a batch
        // split across two fetches would lose its tail.
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

/// Produces `n` webhooks to `topic` and waits for every acknowledgement.
fn load(bootstrap: &str, topic: &str, templates: &[Value], n: usize) -> Duration {
    let p = producer(bootstrap, "20");
    let start = Instant::now();
    for i in 0..n {
        let (body, id) = webhook(templates, i);
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

/// A consumer in a group of its own, from the earliest offset, never committing.
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

// ------------------------------------------------------------- broker only

struct PassThrough {
    secs: f64,
    cpu_secs: f64,
}

/// Consume -> produce of the same bytes, no parsing: the broker's ceiling
/// for this job on this machine (client CPU measured, broker excluded).
fn pass_through(bootstrap: &str, from: &str, to: &str, n: usize) -> PassThrough {
    let consumer = reader(bootstrap, "bench-passthrough", &[]);
    consumer.subscribe(&[from]).expect("subscribe");
    let p = producer(bootstrap, "5");
    // Timed from the first record, like the connector: group join excluded.
    let mut started: Option<(Instant, f64)> = None;
    let mut moved = 0;
    while moved < n {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                started.get_or_insert_with(|| (Instant::now(), self_cpu_secs()));
                let mut record =
                    BaseRecord::<[u8], [u8]>::to(to).payload(m.payload().unwrap_or_default());
                if let Some(k) = m.key() {
                    record = record.key(k);
                }
                if let Some(h) = m.headers() {
                    record = record.headers(h.detach());
                }
                loop {
                    match p.send(record) {
                        Ok(()) => break,
                        Err((_, back)) => {
                            record = back;
                            p.poll(Duration::from_millis(1));
                        }
                    }
                }
                moved += 1;
            }
            Some(Err(e)) => eprintln!("pass-through consume error: {e}"),
            None => {}
        }
        p.poll(Duration::ZERO);
    }
    assert_delivered(&p, "pass-through");
    let (start, cpu0) = started.unwrap_or((Instant::now(), self_cpu_secs()));
    PassThrough {
        secs: start.elapsed().as_secs_f64(),
        cpu_secs: self_cpu_secs() - cpu0,
    }
}

fn self_cpu_secs() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

// ----------------------------------------------------------- the connector

/// user+sys CPU seconds and peak RSS (bytes) of a live process.
fn proc_usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; index 11 and 12 after ')'.
    let cpu = (field(11) + field(12)) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    (cpu, hwm_kb * 1024)
}

const CONNECTOR_ENV: &[(&str, &str)] = &[
    (
        "CODAT_STREAM__KAFKA__CONSUMER__MAX_PARTITION_FETCH_BYTES",
        "10485760",
    ),
    (
        "CODAT_STREAM__LOG__LEVEL",
        "warn,codat_stream::kafka::pipeline=info",
    ),
    (
        "CODAT_STREAM__METRICS__KAFKA_STATISTICS_INTERVAL_MS",
        "15000",
    ),
];

struct Drain {
    secs: f64,
    cpu_secs: f64,
    peak_rss: u64,
    acknowledged: u64,
    counted: Option<usize>,
}

/// Starts a connector on a loaded backlog and measures it to the last acknowledgement.
fn drain(
    bootstrap: &str,
    names: &Names,
    n: usize,
    extra: &[(&str, &str)],
    count_outputs: bool,
) -> Drain {
    let mut env: Vec<(&str, &str)> = CONNECTOR_ENV.to_vec();
    env.extend_from_slice(extra);
    let mut connector = Connector::start(bootstrap, names, &env);
    let pid = connector.child.id();
    let acked = |m: &Metrics| {
        m.sum("codat_stream_envelopes_produced_total", &[])
            + m.sum("codat_stream_dead_lettered_total", &[])
    };
    // Time from the first record consumed: start-up (topic creation) excluded.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (t0, cpu0) = loop {
        assert!(
            Instant::now() < deadline,
            "connector never consumed; log {}",
            connector.raw_log.display()
        );
        if let Some((200, body)) = connector.get("/metrics")
            && Metrics::parse(&body).sum("codat_stream_records_consumed_total", &[]) > 0.0
        {
            break (Instant::now(), proc_usage(pid).0);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // BENCH_PERF=FILE: sample the connector with `perf record` during the drain.
    let perf = std::env::var("BENCH_PERF").ok().map(|out| {
        std::process::Command::new("perf")
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
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("perf")
    });
    let mut acknowledged = 0.0;
    let mut progress = Instant::now();
    while acknowledged < n as f64 {
        assert!(
            progress.elapsed() < Duration::from_secs(60),
            "drain stalled at {acknowledged} of {n}; log {}",
            connector.raw_log.display()
        );
        if let Some((200, body)) = connector.get("/metrics") {
            let now = acked(&Metrics::parse(&body));
            if now > acknowledged {
                progress = Instant::now();
            }
            acknowledged = now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = t0.elapsed().as_secs_f64();
    let (cpu1, peak_rss) = proc_usage(pid);
    if let Some(mut perf) = perf {
        // SAFETY: signalling a child we spawned.
        unsafe { libc::kill(perf.id() as i32, libc::SIGINT) };
        let _ = perf.wait();
    }
    connector.sigterm();
    let _ = connector.wait_exit(Duration::from_secs(60));
    let counted = count_outputs.then(|| {
        count(
            bootstrap,
            |t| is_output(names, t),
            n,
            Duration::from_secs(20),
        )
    });
    Drain {
        secs,
        cpu_secs: cpu1 - cpu0,
        peak_rss,
        acknowledged: acknowledged as u64,
        counted,
    }
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

/// Offers `rate` webhooks/s for `secs` to a running connector and measures
/// send -> output-readable latency from a header carried through.
fn steady(broker: &Broker, templates: &[Value], rate: u64, secs: u64, partitions: i32) -> Latency {
    let bootstrap = broker.bootstrap();
    let names = Names::new();
    broker.create_topic(&names.ingest, partitions);
    let mut env: Vec<(&str, &str)> = CONNECTOR_ENV.to_vec();
    env.push(("CODAT_STREAM__KAFKA__CONSUMER__FETCH_WAIT_MAX_MS", "5"));
    env.push(("CODAT_STREAM__LOG__LEVEL", "info"));
    let mut connector = Connector::start(&bootstrap, &names, &env);
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
    let (cpu0, _) = proc_usage(pid);
    let sender = {
        let (sent, done, bootstrap, topic) = (
            sent.clone(),
            done.clone(),
            bootstrap.clone(),
            names.ingest.clone(),
        );
        let templates = templates.to_vec();
        std::thread::spawn(move || {
            // A typical producer (5 ms linger): one request per record would
            // measure the broker's per-request cost, not the pipeline.
            let p = producer(&bootstrap, "5");
            // Bodies made before the clock starts, so the offered rate is not
            // bounded by generating them; ids stay unique via webhook-id.
            let pool: Vec<(Vec<u8>, String)> = (0..POOL).map(|i| webhook(&templates, i)).collect();
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
    let (cpu1, peak_rss) = proc_usage(pid);
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
        cpu_us_per_event: (cpu1 - cpu0) * 1e6 / sent.max(1) as f64,
        peak_rss,
    }
}

/// Distinct bodies the steady-rate sender cycles through.
const POOL: usize = 20_000;

/// Partitions of the mock cluster's ingest topic.
const MOCK_PARTITIONS: i32 = 64;
/// Most events the mock cluster's partitions retain (about 5 MB each).
const MOCK_MAX_EVENTS: usize = 250_000;

// ---------------------------------------------------------------- reporting

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let a = args();
    let templates = templates();
    let mut sizes: Vec<usize> = (0..1000).map(|i| webhook(&templates, i).0.len()).collect();
    sizes.sort_unstable();
    let mean_size = sizes.iter().sum::<usize>() / sizes.len();
    eprintln!(
        "codat-stream end-to-end benchmark: {} webhooks (mean {} bytes, {} templates), {} ingest partitions, {} cores",
        a.events,
        mean_size,
        templates.len(),
        a.partitions,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    let broker = Broker::start(Storage::Memory);
    let bootstrap = broker.bootstrap();
    let names = Names::new();
    broker.create_topic(&names.ingest, a.partitions);
    eprintln!("loading the backlog...");
    let load_time = load(&bootstrap, &names.ingest, &templates, a.events);
    eprintln!(
        "  loaded in {:.1} s ({:.0}/s)",
        load_time.as_secs_f64(),
        a.events as f64 / load_time.as_secs_f64()
    );

    eprintln!("broker alone: consume -> produce pass-through...");
    let passthrough_topic = format!("{}.passthrough", names.ingest);
    broker.create_topic(&passthrough_topic, a.partitions);
    let pt = pass_through(&bootstrap, &names.ingest, &passthrough_topic, a.events);
    let pt_rate = a.events as f64 / pt.secs;
    eprintln!("  {:.0}/s", pt_rate);

    eprintln!("connector: backlog drain...");
    let d = drain(&bootstrap, &names, a.events, &[], true);
    let d_rate = a.events as f64 / d.secs;
    eprintln!("  {:.0}/s", d_rate);

    let mut latencies = Vec::new();
    for rate in &a.rates {
        eprintln!("connector: steady {rate}/s for {} s...", a.rate_secs);
        latencies.push(steady(
            &broker,
            &templates,
            *rate,
            a.rate_secs,
            a.partitions,
        ));
    }

    // The mock cluster keeps about 5 MB per partition (older records are
    // dropped), so its backlog is spread over many partitions and capped.
    let mock_events = a.events.min(MOCK_MAX_EVENTS);
    let mock = a.mock.then(|| {
        eprintln!("connector: backlog drain of {mock_events} on librdkafka's mock cluster...");
        let cluster = MockCluster::new(1).expect("mock cluster");
        let names = Names::new();
        cluster
            .create_topic(&names.ingest, MOCK_PARTITIONS, 1)
            .expect("topic");
        load(
            &cluster.bootstrap_servers(),
            &names.ingest,
            &templates,
            mock_events,
        );
        let d = drain(
            &cluster.bootstrap_servers(),
            &names,
            mock_events,
            &[("CODAT_STREAM__TOPICS__CREATE", "false")],
            false,
        );
        drop(cluster);
        d
    });

    // The table.
    println!();
    println!("| measurement | events/s | CPU-µs/event (connector) | peak RSS | notes |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| broker alone (tansu): consume -> produce pass-through | {:.0} | {:.2} (pass-through client) | - | the ceiling |",
        pt_rate,
        pt.cpu_secs * 1e6 / a.events as f64
    );
    println!(
        "| connector backlog drain (tansu) | {:.0} | {:.2} | {:.0} MB | {:.0}% of the ceiling; acknowledged {}, counted on output topics {} |",
        d_rate,
        d.cpu_secs * 1e6 / a.events as f64,
        mb(d.peak_rss),
        100.0 * d_rate / pt_rate,
        d.acknowledged,
        d.counted.map_or("-".into(), |c| c.to_string())
    );
    if let Some(m) = &mock {
        println!(
            "| connector backlog drain (mock cluster, {} events) | {:.0} | {:.2} | {:.0} MB | the connector's own ceiling |",
            mock_events,
            mock_events as f64 / m.secs,
            m.cpu_secs * 1e6 / mock_events as f64,
            mb(m.peak_rss)
        );
    }
    println!();
    println!(
        "| offered rate (tansu) | received/sent | p50 | p99 | p99.9 | max | broker alone p50 / p99 | CPU-µs/event | peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for l in &latencies {
        println!(
            "| {}/s | {}/{} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} / {:.1} ms | {:.2} | {:.0} MB |",
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
            mb(l.peak_rss)
        );
    }

    let report = json!({
        "events": a.events,
        "mean_body_bytes": mean_size,
        "partitions": a.partitions,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "load_events_per_sec": a.events as f64 / load_time.as_secs_f64(),
        "broker_alone": {"events_per_sec": pt_rate, "client_cpu_us_per_event": pt.cpu_secs * 1e6 / a.events as f64},
        "connector_drain": {
            "events_per_sec": d_rate,
            "ratio_to_broker_alone": d_rate / pt_rate,
            "cpu_us_per_event": d.cpu_secs * 1e6 / a.events as f64,
            "cpu_seconds_per_million": d.cpu_secs * 1e6 / a.events as f64,
            "peak_rss_bytes": d.peak_rss,
            "acknowledged": d.acknowledged,
            "counted_outputs": d.counted,
            "outputs_equal_inputs": d.counted == Some(a.events),
        },
        "connector_drain_mock_cluster": mock.as_ref().map(|m| json!({
            "events": mock_events,
            "events_per_sec": mock_events as f64 / m.secs,
            "cpu_us_per_event": m.cpu_secs * 1e6 / mock_events as f64,
            "peak_rss_bytes": m.peak_rss,
        })),
        "steady": latencies.iter().map(|l| json!({
            "rate": l.rate, "sent": l.sent, "received": l.received,
            "p50_ms": l.p50_ms, "p99_ms": l.p99_ms, "p999_ms": l.p999_ms, "max_ms": l.max_ms,
            "broker_alone_p50_ms": l.broker_p50_ms, "broker_alone_p99_ms": l.broker_p99_ms,
            "cpu_us_per_event": l.cpu_us_per_event, "peak_rss_bytes": l.peak_rss,
        })).collect::<Vec<_>>(),
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let path = dir.join("pipeline.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json"))
        .expect("write report");
    println!("\nreport: {}", path.display());
    if d.counted != Some(a.events) {
        eprintln!("OUTPUT COUNT {:?} != INPUT COUNT {}", d.counted, a.events);
        std::process::exit(1);
    }
}
