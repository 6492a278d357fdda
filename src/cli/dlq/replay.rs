//! `codat-stream dlq replay`: dead letters back through today's normaliser.
//!
//! Each selected dead letter's original (key, value, headers less the
//! connector's `codat_stream.*` ones, non-UTF-8 header keys restored) is
//! produced again to the ingest topic, so `run` handles it like any other
//! record, with `codat_stream.replays` counting the replays; past
//! `--max-replays` it is not sent again. Progress is kept in a consumer
//! group of its own, committed in the same transaction as the records sent:
//! an interrupted replay continues where it stopped and sends nothing twice.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::{DeadLetter, Range, committed, read, spans, today};
use crate::cli::error::CliError;
use crate::config::Settings;
use crate::core::normalize::{IngestMeta, NormalizeOptions};
use crate::kafka::output::{DLQ_TIMESTAMP, DLQ_TOPIC, REPLAYS_HEADER, original_header_key};
use crate::kafka::record_headers::{RawHeader, owned_headers};

const TIMEOUT: Duration = Duration::from_secs(30);

/// What to replay and how.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub range: Range,
    /// Only dead letters of this reason (repeatable).
    #[arg(long = "reason")]
    pub reasons: Vec<String>,
    /// Say what would happen, for each reason; send nothing, commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// A dead letter replayed this many times already is not sent again.
    #[arg(long, default_value_t = 1)]
    pub max_replays: u32,
    /// The consumer group keeping the replay's progress (default
    /// `<ingest.group_id>.dlq-replay`, or `<ingest.group_id>.rebuild` with
    /// `--from-topic`; also the transactional id, so two replays of one
    /// group cannot overlap; `--from-topic` refuses a group with members).
    #[arg(long)]
    pub group: Option<String>,
    /// Instead of dead letters: run today's pipeline over this ingest
    /// topic (one of `ingest.topics`) in the range given, writing outputs
    /// and dead letters as `run` does, to rebuild them after an upgrade
    /// (into a new `output.topic_prefix`, say). Stops at the range's end.
    #[arg(long, value_name = "INGEST_TOPIC", conflicts_with_all = ["reasons", "max_replays", "batch", "topic"])]
    pub from_topic: Option<String>,
    /// Records sent per transaction (progress is committed with each).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
}

/// One reason's outcome.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReasonOutcome {
    pub reason: String,
    /// Dead letters of this reason read.
    pub read: u64,
    /// Sent back to the ingest topic (0 in a dry run).
    pub replayed: u64,
    /// Today's normaliser accepts them.
    pub would_succeed: u64,
    /// Today's normaliser rejects them again, by its reason.
    pub would_fail: BTreeMap<String, u64>,
    /// Not sent: only a shortened copy was kept (too large at the time).
    pub skipped_truncated: u64,
    /// Not sent: replayed `--max-replays` times already.
    pub skipped_max_replays: u64,
}

/// What the replay did (or, in a dry run, would do).
#[derive(Debug, Default, serde::Serialize)]
pub struct Replay {
    pub dry_run: bool,
    pub group: String,
    pub reasons: Vec<ReasonOutcome>,
}

/// A dead letter's verdict.
enum Verdict {
    Skip,
    Send(Vec<(Vec<u8>, Option<Vec<u8>>)>),
}

pub fn replay(settings: &Settings, topic: &str, args: &ReplayArgs) -> Result<Replay, CliError> {
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("{}.dlq-replay", settings.ingest.group_id));
    let producer = if args.dry_run {
        None
    } else {
        let p: BaseProducer = settings
            .producer_config()
            .set("transactional.id", &group)
            .set("transaction.timeout.ms", "60000")
            .set("message.timeout.ms", "55000")
            .create()?;
        // First: registering the transactional id aborts what an
        // interrupted replay left open, whose pending offsets would hold
        // up reading the committed ones.
        p.init_transactions(TIMEOUT)?;
        Some(p)
    };
    let consumer: BaseConsumer = settings
        .inspect_consumer_config(&group)
        .set("isolation.level", "read_committed")
        .create()?;
    let resume = committed(&consumer, topic)?;
    let spans = spans(&consumer, topic, &args.range, &resume)?;

    let options = settings.normalize_options();
    let total: i64 = spans.iter().map(|s| s.end - s.start).sum();
    let mut run = Run {
        settings,
        args,
        options: &options,
        consumer: &consumer,
        producer: producer.as_ref(),
        topic,
        outcomes: BTreeMap::new(),
        batch: Vec::new(),
        next: HashMap::new(),
        read: 0,
        total,
        progress: std::io::stderr().is_terminal(),
    };
    read(&consumer, topic, &spans, |dl| run.one(dl).map(|()| true))?;
    run.commit()?;
    if run.progress {
        eprintln!();
    }
    Ok(Replay {
        dry_run: args.dry_run,
        group,
        reasons: run.outcomes.into_values().collect(),
    })
}

struct Run<'a> {
    settings: &'a Settings,
    args: &'a ReplayArgs,
    options: &'a NormalizeOptions,
    consumer: &'a BaseConsumer,
    producer: Option<&'a BaseProducer>,
    topic: &'a str,
    outcomes: BTreeMap<String, ReasonOutcome>,
    /// Records of the open transaction: (target topic, key, value, headers).
    batch: Vec<Outgoing>,
    /// Next offset to commit, per dead-letter partition.
    next: HashMap<i32, i64>,
    read: i64,
    total: i64,
    progress: bool,
}

type Outgoing = (
    String,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(Vec<u8>, Option<Vec<u8>>)>,
);

impl Run<'_> {
    fn one(&mut self, dl: DeadLetter) -> Result<(), CliError> {
        self.read += 1;
        self.next.insert(dl.partition, dl.offset + 1);
        if self.progress && self.read % 100 == 0 {
            eprint!(
                "\rreplay: {} of {} dead letters read",
                self.read, self.total
            );
        }
        let reason = dl.reason();
        if !self.args.reasons.is_empty() && !self.args.reasons.contains(&reason) {
            return Ok(());
        }
        let target = self.ingest_topic(&dl);
        let verdict = self.verdict(&dl, &reason, &target);
        let Verdict::Send(headers) = verdict else {
            return Ok(());
        };
        if self.producer.is_some() {
            self.entry(&reason).replayed += 1;
            self.batch.push((target, dl.key, dl.value, headers));
            if self.batch.len() >= self.args.batch as usize {
                self.commit()?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, reason: &str) -> &mut ReasonOutcome {
        self.outcomes
            .entry(reason.to_owned())
            .or_insert_with(|| ReasonOutcome {
                reason: reason.to_owned(),
                ..ReasonOutcome::default()
            })
    }

    /// The ingest topic it came from, if that is still one of ours; else
    /// the first (a header never chooses an arbitrary topic).
    fn ingest_topic(&self, dl: &DeadLetter) -> String {
        let topics = &self.settings.ingest.topics;
        dl.header(DLQ_TOPIC)
            .filter(|t| topics.contains(t))
            .or_else(|| topics.first().cloned())
            .unwrap_or_default()
    }

    fn verdict(&mut self, dl: &DeadLetter, reason: &str, target: &str) -> Verdict {
        let max = self.args.max_replays;
        let e = self.entry(reason);
        e.read += 1;
        if dl.truncated() {
            e.skipped_truncated += 1;
            return Verdict::Skip;
        }
        if dl.replays() >= max {
            e.skipped_max_replays += 1;
            return Verdict::Skip;
        }
        let mut headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = dl
            .headers
            .iter()
            .filter_map(|(k, v)| original_header_key(k).map(|k| (k, v.clone())))
            .collect();
        let raw: Vec<RawHeader<'_>> = headers
            .iter()
            .map(|(k, v)| (&k[..], v.as_deref()))
            .collect();
        let timestamp_ms = dl
            .header(DLQ_TIMESTAMP)
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(crate::ops::health::now_ms);
        let ingest = IngestMeta {
            topic: target,
            partition: 0,
            offset: 0,
            timestamp_ms,
        };
        let predicted = today(dl.value.as_deref(), &raw, &ingest, self.options).map(|_| ());
        let e = self.entry(reason);
        match predicted {
            Ok(()) => e.would_succeed += 1,
            Err(again) => *e.would_fail.entry(again).or_default() += 1,
        }
        headers.push((
            REPLAYS_HEADER.as_bytes().to_vec(),
            Some((dl.replays() + 1).to_string().into_bytes()),
        ));
        Verdict::Send(headers)
    }

    /// Sends the open batch and commits it with the progress, in one
    /// transaction (a dry run commits nothing).
    fn commit(&mut self) -> Result<(), CliError> {
        let Some(producer) = self.producer else {
            return Ok(());
        };
        if self.next.is_empty() {
            return Ok(());
        }
        producer.begin_transaction()?;
        for (topic, key, value, headers) in self.batch.drain(..) {
            let mut record = BaseRecord::<[u8], [u8]>::to(&topic).headers(owned_headers(&headers));
            if let Some(k) = key.as_deref() {
                record = record.key(k);
            }
            if let Some(v) = value.as_deref() {
                record = record.payload(v);
            }
            send(producer, record)?;
        }
        let mut offsets = TopicPartitionList::new();
        for (p, next) in self.next.drain() {
            offsets.add_partition_offset(self.topic, p, rdkafka::Offset::Offset(next))?;
        }
        let metadata = self.consumer.group_metadata().ok_or_else(|| {
            CliError::Usage("the replay consumer has no group metadata".to_owned())
        })?;
        producer.send_offsets_to_transaction(&offsets, &metadata, TIMEOUT)?;
        producer.commit_transaction(TIMEOUT)?;
        Ok(())
    }
}

/// Sends `record`, serving delivery reports while librdkafka's queue is full.
fn send(producer: &BaseProducer, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<(), CliError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                r,
            )) => {
                producer.poll(Duration::from_millis(100));
                record = r;
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// The outcome a person reads.
pub fn print_table(out: &mut impl Write, r: &Replay) -> std::io::Result<()> {
    let verb = if r.dry_run {
        "would replay"
    } else {
        "replayed"
    };
    writeln!(
        out,
        "dlq replay (group {}){}",
        r.group,
        if r.dry_run {
            ", dry run: nothing sent"
        } else {
            ""
        }
    )?;
    for o in &r.reasons {
        let fails: Vec<String> = o
            .would_fail
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        writeln!(
            out,
            "{}: {} read, {verb} {}; today's normaliser: {} succeed, {} fail again{}; skipped: {} truncated, {} past --max-replays",
            o.reason,
            o.read,
            if r.dry_run {
                o.would_succeed + o.would_fail.values().sum::<u64>()
            } else {
                o.replayed
            },
            o.would_succeed,
            o.would_fail.values().sum::<u64>(),
            if fails.is_empty() {
                String::new()
            } else {
                format!(" ({})", fails.join(", "))
            },
            o.skipped_truncated,
            o.skipped_max_replays,
        )?;
    }
    Ok(())
}
