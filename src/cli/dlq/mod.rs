//! `codat-stream dlq`: what is in the dead-letter topic (`inspect`), and
//! sending it back through today's normaliser (`replay`). Both read the
//! topic by assignment, never in the connector's group.

pub mod inspect;
pub mod rebuild;
pub mod replay;

use std::collections::HashMap;
use std::time::Duration;

use crate::cli::error::CliError;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::core::normalize::{IngestMeta, NormalizeOptions, normalize};
use crate::kafka::output::{
    DLQ_MESSAGE, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC, DLQ_TRUNCATED, REPLAYS_HEADER,
};
use crate::kafka::record_headers::{HeaderSlice, RawHeader, header_pairs};

/// How long a metadata or offsets request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a metadata or offsets request, asking again while the cluster is
/// between states (a topic created moments ago whose leader this client
/// does not know yet, a coordinator moving), up to [`REQUEST_TIMEOUT`].
pub fn settled<T>(mut ask: impl FnMut() -> Result<T, KafkaError>) -> Result<T, KafkaError> {
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        match ask() {
            Err(e) if is_between_states(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            done => return done,
        }
    }
}

fn is_between_states(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::*;
    e.rdkafka_error_code().is_some_and(|code| {
        matches!(
            code,
            NotLeaderForPartition
                | LeaderNotAvailable
                | UnknownPartition
                | NotCoordinator
                | CoordinatorLoadInProgress
                | CoordinatorNotAvailable
                | BrokerNotAvailable
                | NetworkException
        )
    })
}

/// Which dead letters: a partition, an offset range, a time range.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Range {
    /// Only this partition of the dead-letter topic.
    #[arg(long)]
    pub partition: Option<i32>,
    /// From this offset (in each partition read).
    #[arg(long)]
    pub from_offset: Option<i64>,
    /// Up to and including this offset.
    #[arg(long)]
    pub to_offset: Option<i64>,
    /// Dead letters written at or after this time (RFC 3339, or ms since the epoch).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Dead letters written before this time (RFC 3339, or ms since the epoch).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
}

/// A time as ms since the epoch, from RFC 3339 or a number of ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("not RFC 3339 nor ms since the epoch: {e}"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|e| e.to_string())
}

/// One partition's span to read: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// A dead letter read back, with what the connector wrote about it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl DeadLetter {
    fn of(m: &rdkafka::message::BorrowedMessage<'_>) -> DeadLetter {
        DeadLetter {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers: m
                .headers()
                .map(header_pairs)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect(),
        }
    }

    /// The first header named `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Why it was dead-lettered (`codat_stream.dlq.reason`).
    pub fn reason(&self) -> String {
        self.header(DLQ_REASON)
            .unwrap_or_else(|| "(no reason header)".to_owned())
    }

    pub fn message(&self) -> String {
        self.header(DLQ_MESSAGE).unwrap_or_default()
    }

    /// Where the original was read: topic[partition]@offset.
    pub fn source(&self) -> String {
        format!(
            "{}[{}]@{}",
            self.header(DLQ_TOPIC).unwrap_or_default(),
            self.header(DLQ_PARTITION).unwrap_or_default(),
            self.header(DLQ_OFFSET).unwrap_or_default()
        )
    }

    /// A shortened copy: the original is not all here.
    pub fn truncated(&self) -> bool {
        self.header(DLQ_TRUNCATED).is_some()
    }

    /// How often it was replayed already.
    pub fn replays(&self) -> u32 {
        self.header(REPLAYS_HEADER)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// The spans of `topic` that `range` selects, each starting no earlier
/// than `resume` says (a replay group's committed offsets) and ending at
/// the high watermark seen now: what is dead-lettered later is left for
/// the next run.
pub fn spans(
    consumer: &BaseConsumer,
    topic: &str,
    range: &Range,
    resume: &HashMap<i32, i64>,
) -> Result<Vec<Span>, KafkaError> {
    let metadata = settled(|| consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .filter(|p| range.partition.is_none_or(|want| want == *p))
        .collect();
    let since = offsets_at(consumer, topic, &partitions, range.since)?;
    let until = offsets_at(consumer, topic, &partitions, range.until)?;
    let mut spans = Vec::new();
    for p in partitions {
        let (low, high) = settled(|| consumer.fetch_watermarks(topic, p, REQUEST_TIMEOUT))?;
        let mut start = low.max(range.from_offset.unwrap_or(low));
        if let Some(s) = since.get(&p) {
            start = start.max(*s);
        }
        if let Some(r) = resume.get(&p) {
            start = start.max(*r);
        }
        let mut end = high;
        if let Some(to) = range.to_offset {
            end = end.min(to.saturating_add(1));
        }
        if let Some(u) = until.get(&p) {
            end = end.min(*u);
        }
        if start < end {
            spans.push(Span {
                partition: p,
                start,
                end,
            });
        }
    }
    Ok(spans)
}

/// The first offset at or after `at` in each partition (the end when none).
fn offsets_at(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    at: Option<i64>,
) -> Result<HashMap<i32, i64>, KafkaError> {
    let Some(at) = at else {
        return Ok(HashMap::new());
    };
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, Offset::Offset(at))?;
    }
    let found = settled(|| consumer.offsets_for_times(tpl.clone(), REQUEST_TIMEOUT))?;
    let mut offsets = HashMap::new();
    for e in found.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => o,
            // No record at or after that time: the partition's end.
            _ => {
                consumer
                    .fetch_watermarks(topic, e.partition(), REQUEST_TIMEOUT)?
                    .1
            }
        };
        offsets.insert(e.partition(), offset);
    }
    Ok(offsets)
}

fn drop_finished(
    consumer: &BaseConsumer,
    topic: &str,
    left: &mut HashMap<i32, i64>,
) -> Result<(), KafkaError> {
    for e in consumer.position()?.elements_for_topic(topic) {
        if let (Offset::Offset(at), Some(end)) = (e.offset(), left.get(&e.partition()))
            && at >= *end
        {
            left.remove(&e.partition());
        }
    }
    Ok(())
}

/// Reads every dead letter of `spans`, in offset order per partition,
/// calling `each`; stops early if `each` says so.
pub fn read(
    consumer: &BaseConsumer,
    topic: &str,
    spans: &[Span],
    mut each: impl FnMut(DeadLetter) -> Result<bool, super::error::CliError>,
) -> Result<(), super::error::CliError> {
    let mut tpl = TopicPartitionList::new();
    let mut left: HashMap<i32, i64> = HashMap::new();
    for s in spans {
        tpl.add_partition_offset(topic, s.partition, Offset::Offset(s.start))?;
        left.insert(s.partition, s.end);
    }
    if left.is_empty() {
        return Ok(());
    }
    consumer.assign(&tpl)?;
    let mut idle_since = std::time::Instant::now();
    while !left.is_empty() {
        let Some(polled) = consumer.poll(Duration::from_millis(200)) else {
            // The last offsets may be transaction markers, never delivered:
            // a partition whose position reached its end is done.
            drop_finished(consumer, topic, &mut left)?;
            // Records below the high watermark always come; a long silence
            // is a broker that stopped answering.
            if !left.is_empty() && idle_since.elapsed() > REQUEST_TIMEOUT {
                return Err(KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::RequestTimedOut,
                )
                .into());
            }
            continue;
        };
        idle_since = std::time::Instant::now();
        let m = polled?;
        let Some(end) = left.get(&m.partition()).copied() else {
            continue;
        };
        if m.offset() >= end {
            left.remove(&m.partition());
            continue;
        }
        if m.offset() + 1 >= end {
            left.remove(&m.partition());
        }
        if !each(DeadLetter::of(&m))? {
            break;
        }
    }
    consumer.unassign()?;
    Ok(())
}

/// The replay group's committed offsets on `topic`.
pub fn committed(consumer: &BaseConsumer, topic: &str) -> Result<HashMap<i32, i64>, CliError> {
    let metadata = settled(|| consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT))?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    // A group's coordinator may be moving or loading (a fresh group, a
    // broker restart): asked again until it answers, within REQUEST_TIMEOUT.
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    let got = loop {
        match consumer.committed_offsets(tpl.clone(), REQUEST_TIMEOUT) {
            Err(rdkafka::error::KafkaError::MetadataFetch(code))
                if is_coordinator_moving(code) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            done => break done?,
        }
    };
    Ok(got
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

fn is_coordinator_moving(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode::*;
    matches!(
        code,
        NotCoordinator | CoordinatorLoadInProgress | CoordinatorNotAvailable
    )
}

/// What today's normaliser makes of a record, as `run` would: the
/// envelope's event type, or the reason it would be dead-lettered. A null
/// value is a tombstone, and a header key that is not UTF-8 cannot be
/// carried on an envelope, whatever the body.
pub fn today(
    value: Option<&[u8]>,
    headers: &[RawHeader<'_>],
    ingest: &IngestMeta<'_>,
    options: &NormalizeOptions,
) -> Result<String, String> {
    let utf8_keys = headers.iter().all(|(k, _)| std::str::from_utf8(k).is_ok());
    match value {
        None => Err("null_value".to_owned()),
        Some(_) if !utf8_keys => Err("invalid_header".to_owned()),
        Some(v) => normalize(v, &HeaderSlice(headers), ingest, options)
            .map(|e| e.event_type.into_owned())
            .map_err(|r| r.reason.code().to_owned()),
    }
}
