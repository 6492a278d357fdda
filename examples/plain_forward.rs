//! The benchmark's floor: a plain librdkafka client moving records from one
//! topic to others with no parsing, at librdkafka's defaults. What it costs
//! is what any connector doing the same Kafka work must pay at least.
//!
//! ```text
//! plain_forward BOOTSTRAP GROUP INPUT COUNT one-topic OUTPUT [PROPERTY=VALUE ...]
//! plain_forward BOOTSTRAP GROUP INPUT COUNT fan-out ROUTE_TABLE [PROPERTY=VALUE ...]
//! ```
//!
//! Trailing `PROPERTY=VALUE` pairs are set on the producer last: the
//! bench's producer-setting sweep gives the floor the same setting it gives
//! the connector (`--producer-sweep`); without them, the defaults below.
//!
//! One `BaseConsumer` and one `BaseProducer`, both polled inline on the main
//! thread: consume a record, produce its bytes unchanged, until COUNT
//! records are moved and every delivery is acknowledged.
//!
//! Client settings: only `bootstrap.servers`, `group.id` and
//! `auto.offset.reset=earliest` on the consumer; everything else is
//! librdkafka's default (auto commit included). The modes:
//!
//! - `one-topic`: every record to OUTPUT with the same key, value and
//!   headers; the producer at pure defaults (no compression, no idempotence).
//! - `fan-out`: the Kafka work codat-stream does. Each record goes to the
//!   topic the connector would write it to, with the connector's key and as
//!   many headers of about the same size as it adds, and the producer set as
//!   the connector's is where that changes the work on the wire:
//!   `compression.type=lz4`, `enable.idempotence=true`, `acks=all`
//!   (codat-stream's `producer_config()`; its `linger.ms=5` is librdkafka's
//!   default already, its `message.timeout.ms=0` only matters in outages).
//!   The value stays the input's bytes: the floor does no transformation.
//!
//!   Routes come from ROUTE_TABLE, which the benchmark computed ahead of
//!   time with the connector's own normaliser and router, so the floor does
//!   not parse JSON at all: record `i` of the backlog has a key ending in
//!   the decimal `i`, and line `i` of the table holds its route. Looking it
//!   up is a scan of the key's trailing digits and a vector index. Format:
//!
//!   ```text
//!   plain_forward route table 1
//!   source<TAB>CloudEvents source
//!   dlq<TAB>dead-letter topic
//!   E<TAB>topic<TAB>event type<TAB>key<TAB>S if the envelope has a subject, else -
//!   D<TAB>topic<TAB>reason code<TAB>reason message
//!   ```
//!
//!   An envelope (`E`) gets the input's headers plus `ce_specversion`,
//!   `ce_id` (the input key), `ce_type`, `ce_source`, `ce_time` (a fixed
//!   timestamp of the real length), `ce_subject` (the key, when `S`) and
//!   `content-type`. A dead letter (`D`) keeps the input's key and gets the
//!   input's headers plus the six `codat_stream.dlq.*` headers (reason,
//!   message, ingest topic, partition, offset, timestamp). A record whose key
//!   names no line is dead-lettered with reason `no_route` and counted.
//!
//! Protocol on stdout, for the benchmark that measures this process from its
//! own /proc entry: `consuming` when the first record is consumed,
//! `acknowledged N` once the last delivery is acknowledged; then it waits
//! for stdin to reach EOF (so it can still be measured) and exits 0. A
//! delivery that fails is reported on stderr, `failed N` is printed instead
//! of `acknowledged`, and it exits 1.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

const USAGE: &str =
    "usage: plain_forward BOOTSTRAP GROUP INPUT COUNT (one-topic OUTPUT | fan-out ROUTE_TABLE)";

/// `ce_time` as codat-stream writes it (RFC 3339, milliseconds, UTC): a
/// fixed value of the same length, since the floor parses no body.
const CE_TIME: &str = "2024-08-08T17:10:34.015Z";
const CE_SPECVERSION: &str = "1.0";
const CONTENT_TYPE: &str = "application/avro";

/// Acknowledgements and failures, counted by the delivery callback.
#[derive(Default)]
struct Deliveries {
    acked: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, m)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) < 10 {
                    eprintln!("plain_forward: delivery to {} failed: {e}", m.topic());
                }
            }
        }
    }
}

/// An envelope's destination.
struct EnvelopeRoute {
    topic: String,
    event_type: String,
}

/// A dead letter's destination and reason.
struct DeadRoute {
    topic: String,
    code: String,
    message: String,
}

/// Where record `i` goes: indexes into [`Table`]'s interned lists.
#[derive(Clone, Copy)]
enum Route {
    Envelope { route: u32, key: u32, subject: bool },
    Dead { route: u32 },
}

struct Table {
    source: String,
    dlq: String,
    envelopes: Vec<EnvelopeRoute>,
    dead: Vec<DeadRoute>,
    keys: Vec<String>,
    routes: Vec<Route>,
}

fn read_table(path: &str) -> Result<Table, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut lines = text.lines();
    if lines.next() != Some("plain_forward route table 1") {
        return Err(format!("{path} is not a route table (version 1)"));
    }
    let mut table = Table {
        source: String::new(),
        dlq: String::new(),
        envelopes: Vec::new(),
        dead: Vec::new(),
        keys: Vec::new(),
        routes: Vec::new(),
    };
    let mut envelope_ids: HashMap<(String, String), u32> = HashMap::new();
    let mut dead_ids: HashMap<(String, String, String), u32> = HashMap::new();
    let mut key_ids: HashMap<String, u32> = HashMap::new();
    fn intern<K: std::hash::Hash + Eq, T>(
        ids: &mut HashMap<K, u32>,
        list: &mut Vec<T>,
        k: K,
        make: impl FnOnce() -> T,
    ) -> u32 {
        *ids.entry(k).or_insert_with(|| {
            list.push(make());
            (list.len() - 1) as u32
        })
    }
    for (n, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        let bad = || format!("{path}: line {} is not a route: {line:?}", n + 2);
        match fields.as_slice() {
            ["source", s] => table.source = (*s).to_owned(),
            ["dlq", t] => table.dlq = (*t).to_owned(),
            ["E", topic, event_type, key, subject] => {
                let route = intern(
                    &mut envelope_ids,
                    &mut table.envelopes,
                    ((*topic).to_owned(), (*event_type).to_owned()),
                    || EnvelopeRoute {
                        topic: (*topic).to_owned(),
                        event_type: (*event_type).to_owned(),
                    },
                );
                let key = intern(&mut key_ids, &mut table.keys, (*key).to_owned(), || {
                    (*key).to_owned()
                });
                let subject = match *subject {
                    "S" => true,
                    "-" => false,
                    _ => return Err(bad()),
                };
                table.routes.push(Route::Envelope {
                    route,
                    key,
                    subject,
                });
            }
            ["D", topic, code, message] => {
                let route = intern(
                    &mut dead_ids,
                    &mut table.dead,
                    (
                        (*topic).to_owned(),
                        (*code).to_owned(),
                        (*message).to_owned(),
                    ),
                    || DeadRoute {
                        topic: (*topic).to_owned(),
                        code: (*code).to_owned(),
                        message: (*message).to_owned(),
                    },
                );
                table.routes.push(Route::Dead { route });
            }
            _ => return Err(bad()),
        }
    }
    if table.dlq.is_empty() {
        return Err(format!("{path} names no dlq topic"));
    }
    Ok(table)
}

/// The decimal number a key ends with: the record's line in the table.
fn trailing_index(key: &[u8]) -> Option<usize> {
    let digits = key.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    key[key.len() - digits..].iter().try_fold(0usize, |n, b| {
        n.checked_mul(10)?.checked_add(usize::from(b - b'0'))
    })
}

enum Mode {
    OneTopic(String),
    FanOut(Table),
}

struct Args {
    bootstrap: String,
    group: String,
    input: String,
    count: u64,
    mode: Mode,
    /// `property=value` pairs set on the producer after the mode's own
    /// (the bench's producer-setting sweep).
    producer: Vec<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, group, input, count, mode, target, producer @ ..] = argv.as_slice() else {
        return Err(format!("expected at least 6 arguments, got {}", argv.len()));
    };
    let producer = producer
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("producer setting {p:?} is not property=value"))
        })
        .collect::<Result<_, _>>()?;
    let count = count
        .parse()
        .map_err(|_| format!("COUNT {count:?} is not a number"))?;
    let mode = match mode.as_str() {
        "one-topic" => Mode::OneTopic(target.clone()),
        "fan-out" => Mode::FanOut(read_table(target)?),
        other => return Err(format!("unknown mode {other:?}")),
    };
    Ok(Args {
        bootstrap: bootstrap.clone(),
        group: group.clone(),
        input: input.clone(),
        count,
        mode,
        producer,
    })
}

fn header<'a>(key: &'a str, value: &'a [u8]) -> Header<'a, &'a [u8]> {
    Header {
        key,
        value: Some(value),
    }
}

/// The input's headers, copied natively (keys are not read as UTF-8).
fn input_headers(m: &BorrowedMessage<'_>) -> OwnedHeaders {
    m.headers()
        .map(|h| h.detach())
        .unwrap_or_else(|| OwnedHeaders::new_with_capacity(8))
}

/// Counts of what fan-out did with the records.
#[derive(Default)]
struct FanOutCounts {
    envelopes: u64,
    dead_letters: u64,
    unrouted: u64,
}

/// The record to produce for `m`: its route from the table, else a dead letter.
fn fan_out<'m>(
    table: &'m Table,
    m: &'m BorrowedMessage<'_>,
    counts: &mut FanOutCounts,
) -> BaseRecord<'m, [u8], [u8]> {
    let key = m.key().unwrap_or_default();
    let payload = m.payload().unwrap_or_default();
    let route = trailing_index(key)
        .and_then(|i| table.routes.get(i))
        .copied();
    match route {
        Some(Route::Envelope {
            route,
            key: out_key,
            subject,
        }) => {
            counts.envelopes += 1;
            let r = &table.envelopes[route as usize];
            let out_key = table.keys[out_key as usize].as_bytes();
            let mut headers = input_headers(m)
                .insert(header("ce_specversion", CE_SPECVERSION.as_bytes()))
                .insert(header("ce_id", key))
                .insert(header("ce_type", r.event_type.as_bytes()))
                .insert(header("ce_source", table.source.as_bytes()))
                .insert(header("ce_time", CE_TIME.as_bytes()));
            if subject {
                headers = headers.insert(header("ce_subject", out_key));
            }
            headers = headers.insert(header("content-type", CONTENT_TYPE.as_bytes()));
            BaseRecord::to(&r.topic)
                .key(out_key)
                .payload(payload)
                .headers(headers)
        }
        Some(Route::Dead { route }) => {
            counts.dead_letters += 1;
            let r = &table.dead[route as usize];
            dead_letter(&r.topic, &r.code, &r.message, m, key, payload)
        }
        None => {
            counts.unrouted += 1;
            dead_letter(
                &table.dlq,
                "no_route",
                "no line of the route table for this key",
                m,
                key,
                payload,
            )
        }
    }
}

fn dead_letter<'m>(
    topic: &'m str,
    code: &str,
    message: &str,
    m: &'m BorrowedMessage<'_>,
    key: &'m [u8],
    payload: &'m [u8],
) -> BaseRecord<'m, [u8], [u8]> {
    let timestamp = m.timestamp().to_millis().unwrap_or(-1);
    let headers = input_headers(m)
        .insert(header("codat_stream.dlq.reason", code.as_bytes()))
        .insert(header("codat_stream.dlq.message", message.as_bytes()))
        .insert(header("codat_stream.dlq.topic", m.topic().as_bytes()))
        .insert(header(
            "codat_stream.dlq.partition",
            m.partition().to_string().as_bytes(),
        ))
        .insert(header(
            "codat_stream.dlq.offset",
            m.offset().to_string().as_bytes(),
        ))
        .insert(header(
            "codat_stream.dlq.timestamp",
            timestamp.to_string().as_bytes(),
        ));
    let mut record = BaseRecord::to(topic).payload(payload).headers(headers);
    if m.key().is_some() {
        record = record.key(key);
    }
    record
}

fn one_topic<'m>(output: &'m str, m: &'m BorrowedMessage<'_>) -> BaseRecord<'m, [u8], [u8]> {
    let mut record = BaseRecord::to(output).payload(m.payload().unwrap_or_default());
    if let Some(k) = m.key() {
        record = record.key(k);
    }
    if let Some(h) = m.headers() {
        record = record.headers(h.detach());
    }
    record
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The benchmark may have gone: then nobody needs the line.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn run(args: Args) -> Result<bool, KafkaError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &args.group)
        .set("auto.offset.reset", "earliest")
        .create()?;
    let mut producer_config = ClientConfig::new();
    producer_config.set("bootstrap.servers", &args.bootstrap);
    if let Mode::FanOut(_) = args.mode {
        // As codat-stream's producer: the same bytes on the wire.
        producer_config
            .set("compression.type", "lz4")
            .set("enable.idempotence", "true")
            .set("acks", "all");
    }
    for (k, v) in &args.producer {
        producer_config.set(k, v);
    }
    let producer: BaseProducer<Deliveries> =
        producer_config.create_with_context(Deliveries::default())?;
    consumer.subscribe(&[args.input.as_str()])?;

    let mut counts = FanOutCounts::default();
    let mut moved = 0u64;
    let mut refused = 0u64;
    let mut last_progress = Instant::now();
    while moved < args.count {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if moved == 0 {
                    say("consuming");
                }
                let mut record = match &args.mode {
                    Mode::OneTopic(output) => one_topic(output, &m),
                    Mode::FanOut(table) => fan_out(table, &m, &mut counts),
                };
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            producer.poll(Duration::from_millis(1));
                        }
                        Err((e, _)) => {
                            refused += 1;
                            if refused <= 10 {
                                eprintln!("plain_forward: cannot send: {e}");
                            }
                            break;
                        }
                    }
                }
                moved += 1;
                last_progress = Instant::now();
            }
            Some(Err(e)) => eprintln!("plain_forward: consume error: {e}"),
            None => {
                if last_progress.elapsed() > Duration::from_secs(60) {
                    eprintln!(
                        "plain_forward: nothing to consume for 60 s after {moved} of {} records",
                        args.count
                    );
                    last_progress = Instant::now();
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    // Every delivery acknowledged (or failed): librdkafka's default
    // message.timeout.ms (300 s) bounds the wait.
    while producer.in_flight_count() > 0 {
        producer.poll(Duration::from_millis(100));
    }
    let d = producer.context();
    let (acked, failed) = (
        d.acked.load(Ordering::Relaxed),
        d.failed.load(Ordering::Relaxed) + refused,
    );
    if let Mode::FanOut(_) = args.mode {
        eprintln!(
            "plain_forward: {} envelopes, {} dead letters, {} without a route",
            counts.envelopes, counts.dead_letters, counts.unrouted
        );
    }
    if failed > 0 {
        say(&format!("failed {failed}"));
    } else {
        say(&format!("acknowledged {acked}"));
    }
    // Stay alive, as measured, until the benchmark has read /proc.
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
    Ok(failed == 0)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("plain_forward: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("plain_forward: {e}");
            ExitCode::FAILURE
        }
    }
}
