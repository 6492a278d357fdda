//! `codat-stream dlq replay --from-topic`: today's normaliser over a range
//! of an ingest topic, to rebuild the outputs after an upgrade (into a new
//! `output.topic_prefix`, say). It runs `run`'s own pipeline (outputs, dead
//! letters, de-duplication, exactly-once, the registry) in a consumer group
//! of its own, starting where the range starts (or where an interrupted
//! rebuild stopped) and ending by itself at the range's end. The
//! connector's group, transactional id and changelog are never touched.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus::IntCounterVec;
use prometheus::core::Collector;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{REQUEST_TIMEOUT, Range, Span, committed, read, spans, today};
use crate::cli::error::CliError;
use crate::config::Settings;
use crate::core::normalize::IngestMeta;
use crate::kafka::pipeline::{self, Bounds, RunOutcome};
use crate::kafka::record_headers::RawHeader;
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;

/// What a rebuild did (or, in a dry run, would do).
#[derive(Debug, Default, serde::Serialize)]
pub struct Rebuild {
    pub dry_run: bool,
    pub group: String,
    pub topic: String,
    /// Ingest records read from the range.
    pub read: u64,
    /// Envelopes written (or that today's normaliser would write), by event type.
    pub envelopes: BTreeMap<String, u64>,
    /// Dead letters written (or predicted), by reason.
    pub dead_letters: BTreeMap<String, u64>,
    /// Copies not written again: de-duplication suppressed them.
    pub duplicates_suppressed: u64,
    /// Every record of the range was handled and committed (false after
    /// an interrupt or a drain timeout: run it again to continue).
    pub complete: bool,
}

/// The group keeping a rebuild's progress.
pub fn group(settings: &Settings, given: Option<&str>) -> Result<String, CliError> {
    let group = given.map_or_else(
        || format!("{}.rebuild", settings.ingest.group_id),
        str::to_owned,
    );
    // Also the rebuild's transactional id and changelog prefix.
    if group.is_empty() || group.len() > 200 || !group.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CliError::Usage(
            "--group must be 1 to 200 printable ASCII characters, no spaces".to_owned(),
        ));
    }
    if group == settings.ingest.group_id {
        return Err(CliError::Usage(
            "--group must not be the connector's own ingest.group_id".to_owned(),
        ));
    }
    Ok(group)
}

/// Rebuilds (or, `dry_run`, predicts) the range on `runtime`; `shutdown`
/// interrupts it, drained, to be continued by running it again.
pub fn rebuild(
    settings: &Settings,
    topic: &str,
    range: &Range,
    group: &str,
    dry_run: bool,
    (runtime, shutdown): (
        &tokio::runtime::Runtime,
        impl Future<Output = ()> + Send + 'static,
    ),
) -> Result<Rebuild, CliError> {
    if !settings.ingest.topics.iter().any(|t| t == topic) {
        return Err(CliError::Usage(
            "--from-topic must name one of ingest.topics".to_owned(),
        ));
    }
    let consumer: BaseConsumer = settings
        .inspect_consumer_config(group)
        .set("isolation.level", "read_committed")
        .create()?;
    if !dry_run {
        refuse_a_busy_group(&consumer, group)?;
    }
    let resume = committed(&consumer, topic)?;
    let spans = spans(&consumer, topic, range, &resume)?;
    let mut done = Rebuild {
        dry_run,
        group: group.to_owned(),
        topic: topic.to_owned(),
        ..Rebuild::default()
    };
    if dry_run {
        predict(settings, &consumer, topic, &spans, &mut done)?;
        done.complete = true;
        return Ok(done);
    }
    if spans.is_empty() {
        done.complete = true;
        return Ok(done);
    }
    start_at(&consumer, topic, &spans, &resume)?;
    drop(consumer);
    let ends: HashMap<i32, i64> = spans.iter().map(|s| (s.partition, s.end)).collect();
    let total: i64 = spans.iter().map(|s| s.end - s.start).sum();
    let base = settings;
    let settings = for_rebuild(settings, topic, group);
    let health = Arc::new(Health::default());
    let metrics = Arc::new(Metrics::new()?);
    let progress = Progress::start(&health, total);
    let interrupted = Arc::new(AtomicBool::new(false));
    let shutdown = {
        let interrupted = interrupted.clone();
        async move {
            shutdown.await;
            interrupted.store(true, Ordering::Relaxed);
        }
    };
    let outcome = runtime.block_on(pipeline::run_bounded(
        settings,
        Bounds::new(topic, ends),
        shutdown,
        health.clone(),
        metrics.clone(),
    ));
    progress.stop();
    let outcome = outcome?;
    // Complete only if the group's progress reached every span's end: an
    // exactly-once abort after the end was seen leaves records uncommitted,
    // and a run that drained early is told to continue, never reported done.
    let reached = nothing_left(base, topic, group, &spans)?;
    done.read = health.consumed.load(Ordering::Relaxed);
    done.envelopes = by_label(&metrics.envelopes_produced, "event_type");
    done.dead_letters = by_label(&metrics.dead_lettered, "reason");
    done.duplicates_suppressed = by_label(&metrics.duplicates_suppressed, "shape")
        .values()
        .sum();
    done.complete =
        outcome == RunOutcome::Drained && !interrupted.load(Ordering::Relaxed) && reached;
    Ok(done)
}

/// The settings `run` would use, as a group of their own: the connector's
/// group, transactional id and de-duplication changelog are left alone.
fn for_rebuild(settings: &Settings, topic: &str, group: &str) -> Settings {
    let mut s = settings.clone();
    s.ingest.topics = vec![topic.to_owned()];
    s.ingest.group_id = group.to_owned();
    s.delivery.transactional_id = group.to_owned();
    // `<group>.dedup`: ids remembered by the connector would suppress the
    // whole rebuild, and the rebuild's would leak into the connector's.
    s.dedup.changelog_topic = String::new();
    s.http.listen = String::new();
    // Where the range starts was deleted by retention meanwhile: from the
    // earliest record kept, never from the end (which would skip the rest).
    s.ingest.auto_offset_reset = "earliest".to_owned();
    s
}

/// Refuses a group with members: another rebuild (two of them would split
/// the partitions and each wait for the other's), or a live connector's.
fn refuse_a_busy_group(consumer: &BaseConsumer, group: &str) -> Result<(), CliError> {
    // Best effort: a cluster that cannot describe the group (a KIP-848
    // group on a broker answering only the classic API) is not refused.
    let Ok(groups) = super::settled(|| consumer.fetch_group_list(Some(group), REQUEST_TIMEOUT))
    else {
        return Ok(());
    };
    let busy = groups
        .groups()
        .iter()
        .any(|g| g.name() == group && !g.members().is_empty());
    if busy {
        return Err(CliError::Usage(
            "the --group has active members (another rebuild, or a running consumer): \
             wait for it, or give another --group"
                .to_owned(),
        ));
    }
    Ok(())
}

/// Whether no record of `spans` is left after the group's progress (read
/// committed: what lies between is transaction markers or aborted records).
fn nothing_left(
    settings: &Settings,
    topic: &str,
    group: &str,
    spans: &[Span],
) -> Result<bool, CliError> {
    let consumer: BaseConsumer = settings
        .inspect_consumer_config(group)
        .set("isolation.level", "read_committed")
        .create()?;
    let now = committed(&consumer, topic)?;
    let rest: Vec<Span> = spans
        .iter()
        .filter_map(|s| {
            let from = now.get(&s.partition).map_or(s.start, |at| s.start.max(*at));
            (from < s.end).then_some(Span { start: from, ..*s })
        })
        .collect();
    let mut left = false;
    read(&consumer, topic, &rest, |_| {
        left = true;
        Ok(false)
    })?;
    Ok(!left)
}

/// Commits each span's start to the rebuild's group (an interrupted
/// rebuild's progress is already where its span starts).
/// A partition outside the range with no progress yet starts at its end:
/// the group's consumer would otherwise fetch it from the earliest record,
/// only to skip every one.
fn start_at(
    consumer: &BaseConsumer,
    topic: &str,
    spans: &[Span],
    resume: &HashMap<i32, i64>,
) -> Result<(), CliError> {
    let mut tpl = TopicPartitionList::new();
    for s in spans {
        tpl.add_partition_offset(topic, s.partition, Offset::Offset(s.start))?;
    }
    let metadata = super::settled(|| consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT))?;
    let outside = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .filter(|p| !resume.contains_key(p) && !spans.iter().any(|s| s.partition == *p));
    for p in outside {
        let (_, high) = super::settled(|| consumer.fetch_watermarks(topic, p, REQUEST_TIMEOUT))?;
        tpl.add_partition_offset(topic, p, Offset::Offset(high))?;
    }
    super::settled(|| consumer.commit(&tpl, CommitMode::Sync))?;
    Ok(())
}

/// A dry run: today's normaliser over the range, nothing written.
fn predict(
    settings: &Settings,
    consumer: &BaseConsumer,
    topic: &str,
    spans: &[Span],
    done: &mut Rebuild,
) -> Result<(), CliError> {
    let options = settings.normalize_options();
    read(consumer, topic, spans, |record| {
        done.read += 1;
        let raw: Vec<RawHeader<'_>> = record
            .headers
            .iter()
            .map(|(k, v)| (&k[..], v.as_deref()))
            .collect();
        let ingest = IngestMeta {
            topic,
            partition: record.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms.unwrap_or(0),
        };
        let outcome = today(record.value.as_deref(), &raw, &ingest, &options);
        let counts = match outcome {
            Ok(event_type) => done.envelopes.entry(event_type),
            Err(reason) => done.dead_letters.entry(reason),
        };
        *counts.or_default() += 1;
        Ok(true)
    })
}

/// A counter's totals by one of its labels.
fn by_label(counter: &IntCounterVec, label: &str) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for family in counter.collect() {
        for m in family.get_metric() {
            let Some(value) = m.get_label().iter().find(|l| l.name() == label) else {
                continue;
            };
            // Counters are whole numbers of records.
            // Counters are whole numbers of records; label values are
            // registered at zero up front, and only those seen are reported.
            let n = m.get_counter().get_value() as u64;
            if n > 0 {
                *totals.entry(value.value().to_owned()).or_default() += n;
            }
        }
    }
    totals
}

/// "n of total" on a terminal, while the pipeline runs.
struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(health: &Arc<Health>, total: i64) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let (health, stop) = (health.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let n = health.consumed.load(Ordering::Relaxed);
                    eprint!("\rrebuild: {n} of {total} records read");
                    std::thread::sleep(Duration::from_millis(250));
                }
                eprintln!();
            })
        });
        Progress { stop, thread }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The outcome a person reads.
pub fn print_table(out: &mut impl std::io::Write, r: &Rebuild) -> std::io::Result<()> {
    let (verb, note) = if r.dry_run {
        ("would write", ", dry run: nothing written")
    } else {
        ("wrote", "")
    };
    writeln!(
        out,
        "dlq replay --from-topic {} (group {}){note}: {} records read",
        r.topic, r.group, r.read
    )?;
    let envelopes: u64 = r.envelopes.values().sum();
    writeln!(out, "{verb} {envelopes} envelopes")?;
    for (event_type, n) in &r.envelopes {
        writeln!(out, "  {n:>8}  {event_type}")?;
    }
    let dead: u64 = r.dead_letters.values().sum();
    writeln!(out, "{verb} {dead} dead letters")?;
    for (reason, n) in &r.dead_letters {
        writeln!(out, "  {n:>8}  {reason}")?;
    }
    if r.duplicates_suppressed > 0 {
        writeln!(out, "{} duplicates suppressed", r.duplicates_suppressed)?;
    }
    if !r.complete {
        writeln!(
            out,
            "interrupted before the range's end: run the same command again to continue"
        )?;
    }
    Ok(())
}
