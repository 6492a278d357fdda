//! Delivery promises through the real binary on Apache Kafka (the binary's
//! shared broker): commits while running, at SIGINT and from inside a
//! record batch; a company's events in one output partition in order; no
//! webhook content in the log at trace level; routing settings end to end.
//! The promises that need a broker to refuse requests stay on the mock
//! cluster (tests/kafka_mock_cluster.rs). Committed offsets are asked of
//! the broker, never read from log lines.

mod support;

use std::time::Duration;

use support::*;

/// No periodic commit within a test's lifetime: only the explicit ones count.
const NO_PERIODIC_COMMIT: (&str, &str) = (
    "CODAT_STREAM__KAFKA__CONSUMER__AUTO_COMMIT_INTERVAL_MS",
    "3600000",
);
/// A member with no committed offset starts at the end: a missing commit loses records.
const LATEST: (&str, &str) = ("CODAT_STREAM__INGEST__AUTO_OFFSET_RESET", "latest");

/// A fresh ingest topic of `partitions` on the shared broker holding
/// `inputs`, produced with `extra` producer properties.
fn loaded(partitions: i32, inputs: &[Input], extra: &[(&str, &str)]) -> (&'static Broker, Names) {
    let broker = Broker::shared();
    let names = Names::new();
    broker.create_topic(&names.ingest, partitions);
    produce_with(&broker.bootstrap(), &names.ingest, inputs, extra);
    (broker, names)
}

fn ids_and_inputs(n: usize) -> (Vec<Input>, Vec<String>) {
    generated_inputs(n, 0).into_iter().unzip()
}

/// Kafka answers a fetch at an offset inside a record batch with the whole
/// batch and the client skips to the offset: here a group resumes at offset 4 of one 10-record batch and
/// consumes exactly offsets 4..9.
#[test]
fn resumes_from_a_committed_offset_inside_a_multi_record_batch() {
    let (inputs, ids) = ids_and_inputs(10);
    let (broker, names) = loaded(
        1,
        &inputs,
        &[("batch.num.messages", "1000"), ("linger.ms", "200")],
    );
    let bootstrap = broker.bootstrap();
    commit_offsets(&bootstrap, &names.group, &names.ingest, &[(0, 4)]);
    let c = Connector::start(&bootstrap, &names, &[LATEST]);
    wait_for("offsets 4..9 committed", Duration::from_secs(60), || {
        committed_total(&bootstrap, &names.group, &names.ingest, 1) == 10
    });
    assert_eq!(
        c.metric("codat_stream_records_consumed_total"),
        6.0,
        "consumed exactly offsets 4..9"
    );
    let seen = read_ids(&bootstrap, &names, &ids[4..], Duration::from_secs(60));
    assert_all_seen(&seen, &ids[4..]);
    for id in &ids[..4] {
        assert!(
            !seen.contains_key(id),
            "{id} was before the committed offset"
        );
    }
}

/// Offsets are committed every second while running: no shutdown, no
/// rebalance, yet the group's committed offsets reach the end.
#[test]
fn offsets_are_committed_every_second_while_running() {
    let (inputs, _) = ids_and_inputs(30);
    let (broker, names) = loaded(2, &inputs, &[]);
    let bootstrap = broker.bootstrap();
    let mut c = Connector::start(&bootstrap, &names, &[]);
    wait_for("every record acknowledged", Duration::from_secs(60), || {
        c.metric("codat_stream_envelopes_produced_total") >= 30.0
    });
    // Within a few commit intervals of the last acknowledgement.
    wait_for("offsets committed", Duration::from_secs(5), || {
        committed_total(&bootstrap, &names.group, &names.ingest, 2) == 30
    });
    assert!(c.child.try_wait().unwrap().is_none(), "still running");
    assert!(
        c.metric("codat_stream_offset_commits_total") >= 1.0,
        "offset_commits_total counts them"
    );
}

/// SIGINT is a shutdown like SIGTERM: drain, commit synchronously, exit 0.
/// Periodic commits are pushed out to an hour, so the commit seen is the
/// shutdown's, and a successor that starts at `latest` where nothing is
/// committed finds nothing left to do.
#[test]
fn sigint_drains_commits_at_shutdown_and_exits_0() {
    let (inputs, _) = ids_and_inputs(30);
    let (broker, names) = loaded(2, &inputs, &[]);
    let bootstrap = broker.bootstrap();
    let mut c = Connector::start(&bootstrap, &names, &[NO_PERIODIC_COMMIT]);
    wait_for("every record acknowledged", Duration::from_secs(60), || {
        c.metric("codat_stream_envelopes_produced_total") >= 30.0
    });
    assert_eq!(
        committed_total(&bootstrap, &names.group, &names.ingest, 2),
        0,
        "no periodic commit within the hour"
    );
    signal(&c, libc::SIGINT);
    let status = c.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "log: {}", c.raw_log_text());
    assert!(c.logged("drained"));
    assert_eq!(
        committed_total(&bootstrap, &names.group, &names.ingest, 2),
        30,
        "committed at shutdown"
    );
}

/// Per ingest partition, records are produced in order, and each company's
/// envelopes share one output partition: three companies' events
/// interleaved on one ingest partition come out, per company, in one
/// output partition and in ingest order.
#[test]
fn a_companys_events_share_an_output_partition_in_ingest_order() {
    let companies = ["co-a", "co-b", "co-c"];
    let inputs: Vec<Input> = (0..60)
        .map(|i| {
            let company = companies[i % 3];
            Input {
                key: Some(company.as_bytes().to_vec()),
                value: format!(
                    r#"{{"id":"ord-{i:03}","eventType":"connection.failed","payload":{{"referenceCompany":{{"id":"{company}"}},"connection":{{"id":"c"}}}}}}"#
                )
                .into_bytes(),
                headers: Vec::new(),
            }
        })
        .collect();
    let (broker, names) = loaded(1, &inputs, &[]);
    let bootstrap = broker.bootstrap();
    // Output topics with 6 partitions: the three companies' keys spread.
    let _c = Connector::start(
        &bootstrap,
        &names,
        &[("CODAT_STREAM__TOPICS__PARTITIONS", "6")],
    );
    let out = read_outputs(&bootstrap, &names, 60, Duration::from_secs(60));
    assert_eq!(out.len(), 60);
    let mut per_company: std::collections::BTreeMap<String, Vec<(i32, String)>> =
        Default::default();
    for m in &out {
        use rdkafka::Message;
        let company = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        per_company
            .entry(company)
            .or_default()
            .push((m.partition(), header_str(m, "ce_id").unwrap()));
    }
    let partitions: std::collections::BTreeSet<i32> =
        out.iter().map(rdkafka::Message::partition).collect();
    assert!(
        partitions.len() > 1,
        "the output topic has several partitions in use: {partitions:?}"
    );
    for (company, records) in &per_company {
        let parts: std::collections::BTreeSet<i32> = records.iter().map(|(p, _)| *p).collect();
        assert_eq!(parts.len(), 1, "{company} in one partition: {parts:?}");
        let ids: Vec<&String> = records.iter().map(|(_, id)| id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "{company} in ingest order");
        assert_eq!(ids.len(), 20);
    }
}

/// No webhook content in any log line at any level: bodies carrying
/// marker strings in company and client names, messages, payload values,
/// header values and invalid bodies go through the binary at `trace`
/// level; no line of its output holds a marker.
#[test]
fn no_webhook_content_reaches_any_log_line_at_trace_level() {
    const M: &str = "MRKx7q";
    let bodies = [
        format!(
            r#"{{"ClientId":"cl","ClientName":"{M}-client-name","CompanyId":"co-1","DataConnectionId":"dc","RuleId":"r","RuleType":"Push Operation Status Changed()","AlertId":"a-1","Message":"{M}-message","Data":{{"dataType":"invoices","status":"Success","pushOperationKey":"k","note":"{M}-data"}}}}"#
        ),
        format!(
            r#"{{"id":"e-1","eventType":"connection.failed","payload":{{"referenceCompany":{{"id":"co-2","name":"{M}-company-name"}},"connection":{{"id":"c"}}}}}}"#
        ),
        format!("{M}-not-json"),
        format!(r#"{{"{M}-key":"{M}-value"}}"#),
        format!(r#"{{"id":"d","id":"d","eventType":"a.b","payload":{{"x":"{M}-dup"}}}}"#),
        format!(r#"{{"id":"e-3","eventType":"connection.failed","payload":"{M}-payload"}}"#),
        format!(r#"{{"type":"hello.world","data":{{"x":"{M}-generic"}}}}"#),
        format!(r#"{{"RuleType":"{M} rule","AlertId":"a-9"}}"#),
    ];
    let inputs: Vec<Input> = bodies
        .iter()
        .map(|b| Input {
            key: Some(b"k".to_vec()),
            value: b.clone().into_bytes(),
            headers: vec![("x-note".into(), Some(format!("{M}-header").into_bytes()))],
        })
        .collect();
    let (broker, names) = loaded(1, &inputs, &[]);
    let bootstrap = broker.bootstrap();
    let mut c = Connector::start(&bootstrap, &names, &[("CODAT_STREAM__LOG__LEVEL", "trace")]);
    let out = read_outputs(&bootstrap, &names, inputs.len(), Duration::from_secs(60));
    assert_eq!(out.len(), inputs.len());
    c.sigterm();
    assert_eq!(c.wait_exit(Duration::from_secs(30)).code(), Some(0));
    let log = c.raw_log_text();
    assert!(
        log.lines().count() > 20,
        "trace level logs plenty: {} lines",
        log.lines().count()
    );
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains(M)).collect();
    assert!(leaks.is_empty(), "webhook content in the log: {leaks:#?}");
}

/// Routing settings end to end: a per-type topic override, the catch-all
/// topic past `output.max_topics` (cause `topic_cap`), and a non-default
/// `output.drop_headers` (the listed header dropped from envelopes and dead
/// letters; `authorization`, no longer listed, kept).
#[test]
fn overrides_the_topic_cap_and_drop_headers_apply_end_to_end() {
    let names = Names::new();
    let alerts = format!("{}.alerts", names.group);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("codat-stream.toml");
    std::fs::write(
        &config,
        format!(
            "[output]\nmax_topics = 1\ndrop_headers = [\"x-secret\"]\n\
             [output.topic_overrides]\n\"connection.failed\" = \"{alerts}\"\n"
        ),
    )
    .unwrap();
    let headers = vec![
        ("x-secret".to_owned(), Some(b"s3cr3t".to_vec())),
        ("authorization".to_owned(), Some(b"Bearer t".to_vec())),
    ];
    let bodies = [
        r#"{"id":"o-1","eventType":"connection.failed","payload":{"referenceCompany":{"id":"co"}}}"#,
        r#"{"id":"u-1","eventType":"custom.one","payload":{}}"#,
        r#"{"id":"u-2","eventType":"custom.two","payload":{}}"#,
        "not json",
    ];
    let inputs: Vec<Input> = bodies
        .iter()
        .map(|b| Input {
            key: None,
            value: b.as_bytes().to_vec(),
            headers: headers.clone(),
        })
        .collect();
    let broker = Broker::shared();
    broker.create_topic(&names.ingest, 1);
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, &names.ingest, &inputs);
    let c = Connector::start_with_config(&bootstrap, &names, &[], Some(&config));
    let out = consume_until(
        &bootstrap,
        |t| is_output(&names, t) || t == alerts,
        Duration::from_secs(60),
        |m| m.len() >= 4,
    );
    assert_eq!(out.len(), 4, "log: {}", c.raw_log_text());
    let by_id: std::collections::HashMap<String, &rdkafka::message::OwnedMessage> =
        out.iter().map(|m| (output_id(m, &names.dlq), m)).collect();
    use rdkafka::Message;
    assert_eq!(by_id["o-1"].topic(), alerts, "per-type override");
    assert_eq!(
        by_id["u-1"].topic(),
        format!("{}custom.one", names.prefix),
        "the first new type takes the one topic max_topics allows"
    );
    assert_eq!(by_id["u-2"].topic(), names.catch_all, "past max_topics");
    assert_eq!(by_id["not json"].topic(), names.dlq);
    for m in &out {
        assert_eq!(header(m, "x-secret"), None, "dropped from {}", m.topic());
        assert_eq!(
            header(m, "authorization").as_deref(),
            Some(b"Bearer t".as_slice()),
            "kept when not listed: {}",
            m.topic()
        );
    }
    let metrics = c.metrics();
    assert_eq!(
        metrics.sum(
            "codat_stream_catch_all_routed_total",
            &[("cause", "topic_cap")]
        ),
        1.0
    );
}
