//! De-duplication across Codat's retries, through the real binary on
//! Apache Kafka (`Broker::shared`; record timestamps are the producer's,
//! which the window is measured by, and the test broker keeps records
//! whatever their age).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::*;

const HOUR: i64 = 3_600_000;
const BASE: i64 = 1_790_000_000_000;
const WEEK: i64 = 7 * 24 * HOUR;

fn event(id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","eventType":"connection.failed","generatedDate":"2026-01-01T00:00:00Z","payload":{{"referenceCompany":{{"id":"c-{id}"}}}}}}"#
    )
    .into_bytes()
}

fn legacy_deleted(id: &str) -> Vec<u8> {
    format!(
        r#"{{"RuleType":"Sync Connection Deleted","AlertId":"{id}","CompanyId":"c1","ClientId":"x","ClientName":"n","RuleId":"r","Message":"m","DataConnectionId":"d","Data":{{}}}}"#
    )
    .into_bytes()
}

fn event_deleted(id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","eventType":"connection.deleted","generatedDate":"2026-01-01T00:00:00Z","payload":{{"referenceCompany":{{"id":"c1"}}}}}}"#
    )
    .into_bytes()
}

/// Produces `(key, value, timestamp)` records in order, keyed by id as the
/// ingest producer is told to (every copy on one partition).
fn produce_at(bootstrap: &str, topic: &str, records: &[(String, Vec<u8>, i64)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for (key, value, at) in records {
            let record = FutureRecord::to(topic)
                .key(key.as_bytes())
                .payload(value.as_slice())
                .timestamp(*at);
            producer
                .send(record, Duration::from_secs(30))
                .await
                .unwrap();
        }
    });
}

/// Envelope counts by id (`ce_id`) on the output topics.
fn envelope_ids(bootstrap: &str, names: &Names, want: usize) -> BTreeMap<String, usize> {
    let outputs = consume_until(
        bootstrap,
        |t| is_output(names, t) && t != names.dlq,
        Duration::from_secs(30),
        |m| m.len() >= want,
    );
    let mut ids = BTreeMap::new();
    for m in &outputs {
        let id = header_str(m, "ce_id").expect("every envelope has ce_id");
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

fn drained(c: &Connector, consumed: f64) {
    c.wait_started(Duration::from_secs(60));
    wait_for(
        "every record consumed and settled",
        Duration::from_secs(60),
        || {
            let m = c.metrics();
            m.sum("codat_stream_records_consumed_total", &[]) >= consumed
                && m.sum("codat_stream_in_flight_records", &[]) == 0.0
        },
    );
}

/// Codat's retry schedule after the first delivery: immediately, 5 s,
/// 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 28 hours).
const RETRY_DELAYS: [i64; 8] = [
    0,
    0,
    5_000,
    300_000,
    1_800_000,
    2 * HOUR,
    5 * HOUR,
    10 * HOUR,
];

/// One webhook delivered 8 times over 28 hours, interleaved with other
/// traffic, with a connector restart between the 4th and 5th copy: one
/// envelope. A legacy body and an event body sharing an id: one envelope
/// (the first wins; the suppressed shape is counted). Ids differing only in
/// case: two. A copy after the window: produced again.
#[test]
fn codat_retries_are_one_envelope_across_a_restart_and_the_window_ends() {
    retries_scenario(&[], false);
}

/// The same in exactly-once mode, with the first instance SIGKILLed once
/// its transactions committed (no clean stop flushes anything): the
/// changelog records are written in the envelopes' transactions and
/// restored `read_committed`.
#[test]
fn codat_retries_are_one_envelope_in_exactly_once_mode_too() {
    let id = format!("{}-dedup-eos", unique("txn"));
    let id: &'static str = Box::leak(id.into_boxed_str());
    retries_scenario(
        &[
            ("CODAT_STREAM__DELIVERY__GUARANTEE", "exactly-once"),
            ("CODAT_STREAM__DELIVERY__TRANSACTIONAL_ID", id),
        ],
        true,
    );
}

fn retries_scenario(extra_env: &[(&str, &str)], transactional: bool) {
    let broker = Broker::shared();
    let bootstrap = broker.bootstrap();
    let names = Names::new();
    let changelog = format!("{}.dedup", names.group);
    broker.create_topic(&names.ingest, 3);
    broker.create_topic(&changelog, 3);
    // The changelog made here, with the broker's retention (none): the
    // connector would give it the window's, and these records are dated
    // months back. The connector creates its output topics.
    let mut env = vec![("CODAT_STREAM__DEDUP__ENABLED", "true")];
    env.extend_from_slice(extra_env);
    let mut at = BASE;
    let mut copies = Vec::new();
    for delay in RETRY_DELAYS {
        at += delay;
        copies.push(("evt-A".to_owned(), event("evt-A"), at));
    }
    let other = |i: usize, at: i64| (format!("other-{i}"), event(&format!("other-{i}")), at);
    // First run: copies 1-4, each followed by other traffic; the legacy
    // body of evt-B, and evt-c.
    let mut first: Vec<_> = Vec::new();
    for (i, copy) in copies[..4].iter().enumerate() {
        first.push(copy.clone());
        first.push(other(i, copy.2 + 1));
    }
    first.push(("evt-B".to_owned(), legacy_deleted("evt-B"), BASE + 10));
    first.push(("evt-c".to_owned(), event("evt-c"), BASE + 20));
    produce_at(&bootstrap, &names.ingest, &first);
    let c = Connector::start(&bootstrap, &names, &env);
    drained(&c, first.len() as f64);
    let m = c.metrics();
    assert_eq!(
        m.sum(
            "codat_stream_duplicates_suppressed_total",
            &[("shape", "event")]
        ),
        3.0,
        "copies 2-4 suppressed in the first run"
    );
    let mut c = c;
    if transactional {
        // Every record in a committed transaction, then a crash: what the
        // successor restores is what those transactions committed.
        wait_for(
            "the first run's transactions committed",
            Duration::from_secs(30),
            || c.metric("codat_stream_transaction_records_total") >= first.len() as f64,
        );
        c.kill9();
    } else {
        // A clean stop: the changelog writes queued at acknowledgement are flushed.
        c.sigterm();
        assert!(c.wait_exit(Duration::from_secs(30)).success());
    }

    // Second run, restored from the changelog: copies 5-8, the event body
    // of evt-B, EVT-C, and a copy of evt-A a week after the first.
    let mut second: Vec<_> = Vec::new();
    for (i, copy) in copies[4..].iter().enumerate() {
        second.push(copy.clone());
        second.push(other(10 + i, copy.2 + 1));
    }
    second.push(("evt-B".to_owned(), event_deleted("evt-B"), at + 10));
    second.push(("EVT-C".to_owned(), event("EVT-C"), at + 20));
    second.push(("evt-A".to_owned(), event("evt-A"), BASE + WEEK + 1_000));
    produce_at(&bootstrap, &names.ingest, &second);
    let c = Connector::start(&bootstrap, &names, &env);
    drained(&c, second.len() as f64);
    let m = c.metrics();
    assert_eq!(
        m.sum(
            "codat_stream_duplicates_suppressed_total",
            &[("shape", "event")]
        ),
        5.0,
        "copies 5-8 of evt-A and the event body of evt-B"
    );
    assert!(m.sum("codat_stream_dedup_restore_seconds_count", &[]) >= 1.0);
    assert!(m.sum("codat_stream_dedup_ids", &[]) > 0.0);

    let ids = envelope_ids(&bootstrap, &names, 15);
    assert_eq!(
        ids.get("evt-A"),
        Some(&2),
        "once, then once after the window: {ids:?}"
    );
    assert_eq!(ids.get("evt-B"), Some(&1), "{ids:?}");
    assert_eq!(ids.get("evt-c"), Some(&1), "{ids:?}");
    assert_eq!(ids.get("EVT-C"), Some(&1), "{ids:?}");
    for i in [0, 1, 2, 3, 10, 11, 12, 13] {
        assert_eq!(ids.get(&format!("other-{i}")), Some(&1), "{ids:?}");
    }
    assert_eq!(ids.values().sum::<usize>(), 13, "{ids:?}");
}

/// With de-duplication off (the default), every copy is produced: the
/// at-least-once behaviour is unchanged.
#[test]
fn without_dedup_every_copy_is_produced() {
    let broker = Broker::shared();
    let bootstrap = broker.bootstrap();
    let names = Names::new();
    broker.create_topic(&names.ingest, 1);
    let copies: Vec<_> = (0..3)
        .map(|i| ("evt-A".to_owned(), event("evt-A"), BASE + i))
        .collect();
    produce_at(&bootstrap, &names.ingest, &copies);
    let c = Connector::start(&bootstrap, &names, &[]);
    drained(&c, 3.0);
    assert_eq!(
        c.metrics()
            .sum("codat_stream_duplicates_suppressed_total", &[]),
        0.0
    );
    let ids = envelope_ids(&bootstrap, &names, 3);
    assert_eq!(ids.get("evt-A"), Some(&3));
}
