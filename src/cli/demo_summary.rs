//! How `demo` shows what it found to a person: a summary that fits a
//! screen (counts per topic in two columns, dead letters by reason), then
//! the seed `connection.failed` webhook's record whole (key, headers, the
//! envelope pretty-printed); `--all` adds every topic's first record.

use std::fmt::Write as _;

use crate::cli::demo::{DemoReport, ShownRecord};

/// Where the demo's records went, as the summary names them.
pub struct Topics<'a> {
    /// The output topic prefix, left off the names in the table.
    pub prefix: &'a str,
    /// The dead-letter topic.
    pub dead_letter: &'a str,
}

/// The whole text `demo` prints.
pub fn render(report: &DemoReport, topics: &Topics<'_>, all: bool) -> String {
    let mut out = String::new();
    summary(&mut out, report, topics);
    match &report.seed {
        Some(seed) => record(&mut out, seed),
        None => out.push_str("\nThe seed connection.failed webhook's record was not found.\n"),
    }
    if all {
        for (topic, t) in &report.topics {
            let _ = write!(
                out,
                "\n== {topic} ({} records), first one:\n{}\n",
                t.count, t.first
            );
        }
    }
    out
}

fn summary(out: &mut String, report: &DemoReport, topics: &Topics<'_>) {
    let total: usize = report.topics.values().map(|t| t.count).sum();
    let dead = report.topics.get(topics.dead_letter);
    let dead_count = dead.map_or(0, |t| t.count);
    let _ = writeln!(
        out,
        "Loaded {} sample webhooks into the ingest topic; the pipeline ended {:?}.",
        report.loaded, report.outcome
    );
    let _ = writeln!(
        out,
        "{total} records landed on {} topics: {} envelopes on the event types' topics, \
         {dead_count} dead letters on {}.",
        report.topics.len(),
        total - dead_count,
        topics.dead_letter,
    );
    let _ = writeln!(
        out,
        "\nRecords per topic (names after the prefix {:?}):",
        topics.prefix
    );
    let rows: Vec<(usize, &str)> = report
        .topics
        .iter()
        .filter(|(name, _)| name.as_str() != topics.dead_letter)
        .map(|(name, t)| (t.count, name.strip_prefix(topics.prefix).unwrap_or(name)))
        .collect();
    two_columns(out, &rows);
    if let Some(dead) = dead {
        let _ = writeln!(out, "\nDead letters on {} by reason:", topics.dead_letter);
        let mut reasons: Vec<(usize, &str)> = dead
            .reasons
            .iter()
            .map(|(reason, n)| (*n, reason.as_str()))
            .collect();
        reasons.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        two_columns(out, &reasons);
    }
    out.push_str("\n(`codat-stream demo --all` prints every topic's first record.)\n");
}

/// `count  name` rows, filled down the left column then the right one.
fn two_columns(out: &mut String, rows: &[(usize, &str)]) {
    let half = rows.len().div_ceil(2);
    let (left, right) = rows.split_at(half);
    let width = left.iter().map(|(_, n)| n.len()).max().unwrap_or(0);
    for (i, (n, name)) in left.iter().enumerate() {
        let _ = match right.get(i) {
            Some((rn, rname)) => writeln!(out, "  {n:>4}  {name:<width$}  {rn:>4}  {rname}"),
            None => writeln!(out, "  {n:>4}  {name}"),
        };
    }
}

fn record(out: &mut String, seed: &ShownRecord) {
    let _ = writeln!(
        out,
        "\nCodat's seed connection.failed webhook became this record on {} \
         (partition {}, offset {}):",
        seed.topic, seed.partition, seed.offset
    );
    let _ = writeln!(out, "key: {}", seed.key.as_deref().unwrap_or("(none)"));
    out.push_str("headers:\n");
    for (k, v) in &seed.headers {
        let _ = writeln!(out, "  {k}: {v}");
    }
    out.push_str("value (the Avro envelope, decoded):\n");
    let pretty = serde_json::to_string_pretty(&seed.envelope).unwrap_or_default();
    out.push_str(&pretty);
    out.push('\n');
    // The payload travels as JSON text (an Avro string); parsed, a person
    // can read it.
    let payload = seed.envelope.get("payload").and_then(|p| p.as_str());
    if let Some(Ok(parsed)) = payload.map(serde_json::from_str::<serde_json::Value>) {
        out.push_str("its payload field, the webhook's payload as JSON text, parsed:\n");
        out.push_str(&serde_json::to_string_pretty(&parsed).unwrap_or_default());
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cli::demo::TopicReport;
    use crate::kafka::pipeline::RunOutcome;

    fn report(n_topics: usize) -> DemoReport {
        let mut topics = BTreeMap::new();
        for i in 0..n_topics {
            topics.insert(
                format!("codat.type{i:02}.write.successful"),
                TopicReport {
                    count: 1,
                    first: format!("{{\"id\":\"{i}\"}}"),
                    reasons: BTreeMap::new(),
                },
            );
        }
        topics.insert(
            "codat.dlq".into(),
            TopicReport {
                count: 3,
                first: "reason=invalid_json body=x".into(),
                reasons: [("invalid_json".into(), 2), ("unknown_shape".into(), 1)].into(),
            },
        );
        DemoReport {
            loaded: n_topics + 3,
            outcome: RunOutcome::Drained,
            topics,
            seed: Some(ShownRecord {
                topic: "codat.type00.write.successful".into(),
                partition: 1,
                offset: 0,
                key: Some("company-1".into()),
                headers: vec![("webhook-id".into(), "msg_demo_0".into())],
                envelope: serde_json::json!({"id": "0", "payload": "{\"a\":[1]}"}),
            }),
        }
    }

    const TOPICS: Topics<'static> = Topics {
        prefix: "codat.",
        dead_letter: "codat.dlq",
    };

    #[test]
    fn the_summary_lists_each_topic_once_in_two_columns_with_reasons() {
        let text = render(&report(5), &TOPICS, false);
        let summary = &text[..text.find("Codat's seed").unwrap()];
        for i in 0..5 {
            assert_eq!(
                summary.matches(&format!("type{i:02}.write")).count(),
                1,
                "{text}"
            );
        }
        // 5 rows: 3 lines, the left column padded to its widest name.
        assert!(
            summary.contains("     1  type00.write.successful     1  type03.write.successful\n"),
            "{text}"
        );
        assert!(
            summary.contains("     1  type02.write.successful\n"),
            "{text}"
        );
        assert!(
            summary.contains("     2  invalid_json     1  unknown_shape\n"),
            "{text}"
        );
        assert!(summary.contains("8 records landed on 6 topics: 5 envelopes"));
        assert!(!text.contains("== "), "no --all sections: {text}");
    }

    #[test]
    fn the_seed_record_shows_key_headers_and_the_envelope_pretty_printed() {
        let text = render(&report(2), &TOPICS, false);
        let seed = &text[text.find("Codat's seed").unwrap()..];
        assert!(seed.contains("key: company-1\n"), "{seed}");
        assert!(
            seed.contains("headers:\n  webhook-id: msg_demo_0\n"),
            "{seed}"
        );
        assert!(seed.contains("{\n  \"id\": \"0\",\n"), "{seed}");
        assert!(
            seed.contains("parsed:\n{\n  \"a\": [\n    1\n  ]\n}"),
            "{seed}"
        );
    }

    #[test]
    fn all_adds_every_topics_first_record() {
        let text = render(&report(2), &TOPICS, true);
        assert!(text.contains("== codat.dlq (3 records), first one:\nreason=invalid_json"));
        assert!(text.contains("== codat.type01.write.successful (1 records), first one:\n{"));
    }
}
