//! `codat-stream dlq inspect`: the dead letters by reason, with counts, the
//! first and last time, and one example each. Commits nothing.

use std::collections::BTreeMap;
use std::io::Write;

use super::{DeadLetter, Range, read, spans};
use crate::cli::error::CliError;
use crate::config::Settings;
use crate::kafka::output::rfc3339_millis;

/// One reason's dead letters.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReasonSummary {
    pub reason: String,
    pub count: u64,
    /// Write times of the first and last (RFC 3339).
    pub first: Option<String>,
    pub last: Option<String>,
    /// The first one's original coordinates and message.
    pub example_source: String,
    pub example_message: String,
    /// Its own coordinates in the dead-letter topic.
    pub example_partition: i32,
    pub example_offset: i64,
}

/// What `inspect` found.
#[derive(Debug, Default, serde::Serialize)]
pub struct Inspection {
    pub topic: String,
    pub total: u64,
    pub reasons: Vec<ReasonSummary>,
}

/// Reads the selected dead letters and sums them up by reason.
pub fn inspect(settings: &Settings, topic: &str, range: &Range) -> Result<Inspection, CliError> {
    let group = format!("{}.dlq-inspect", settings.ingest.group_id);
    let consumer: rdkafka::consumer::BaseConsumer =
        settings.inspect_consumer_config(&group).create()?;
    let spans = spans(&consumer, topic, range, &Default::default())?;
    let mut by_reason: BTreeMap<String, ReasonSummary> = BTreeMap::new();
    let mut total = 0;
    read(&consumer, topic, &spans, |dl: DeadLetter| {
        total += 1;
        let reason = dl.reason();
        let s = by_reason
            .entry(reason.clone())
            .or_insert_with(|| ReasonSummary {
                reason,
                example_source: dl.source(),
                example_message: dl.message(),
                example_partition: dl.partition,
                example_offset: dl.offset,
                ..ReasonSummary::default()
            });
        s.count += 1;
        if let Some(at) = dl.timestamp_ms.map(rfc3339_millis) {
            if s.first.as_ref().is_none_or(|f| at < *f) {
                s.first = Some(at.clone());
            }
            if s.last.as_ref().is_none_or(|l| at > *l) {
                s.last = Some(at);
            }
        }
        Ok(true)
    })?;
    Ok(Inspection {
        topic: topic.to_owned(),
        total,
        reasons: by_reason.into_values().collect(),
    })
}

/// The table a person reads.
pub fn print_table(out: &mut impl Write, i: &Inspection) -> std::io::Result<()> {
    writeln!(out, "{} dead letters on {}", i.total, i.topic)?;
    if i.reasons.is_empty() {
        return Ok(());
    }
    let width = i
        .reasons
        .iter()
        .map(|r| r.reason.len())
        .max()
        .unwrap_or(6)
        .max(6);
    writeln!(
        out,
        "{:width$}  {:>8}  {:24}  {:24}  example (source: message)",
        "reason", "count", "first", "last"
    )?;
    for r in &i.reasons {
        writeln!(
            out,
            "{:width$}  {:>8}  {:24}  {:24}  {}: {}",
            r.reason,
            r.count,
            r.first.as_deref().unwrap_or("-"),
            r.last.as_deref().unwrap_or("-"),
            r.example_source,
            r.example_message
        )?;
    }
    Ok(())
}
