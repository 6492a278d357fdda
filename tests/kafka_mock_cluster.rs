//! Delivery promises that need a broker a test can steer: librdkafka's mock
//! cluster, hosted in this test process on a loopback port, with the real
//! `codat-stream` binary connected to it over TCP.
//!
//! Only the promises that need a fault Apache Kafka cannot be made to show
//! are here: the mock can be told to answer produce requests with an error
//! (`request_errors`) and to take its broker down; the rest of the delivery
//! promises run on Kafka (tests/kafka_delivery.rs). The mock has no
//! CreateTopics API (so `topics.create = false`; output topics are created
//! on first use), and these tests check offsets the group committed by
//! asking the (mock) broker, never log lines.
//!
//! The refusal used is `PolicyViolation`: a broker error librdkafka hands
//! to the application (it does not retry it itself) and that codat-stream
//! treats as transient (it is not in `delivery::is_permanent`). Errors
//! librdkafka retries itself, such as `NotEnoughReplicas`, never reach the
//! connector: with `message.timeout.ms = 0` the producer waits them out.

mod support;

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use support::*;

type Mock = MockCluster<'static, DefaultProducerContext>;

/// A mock cluster with an ingest topic of `partitions` holding `inputs`.
fn mock_with(partitions: i32, inputs: &[Input], extra: &[(&str, &str)]) -> (Mock, Names) {
    let mock = MockCluster::new(1).unwrap();
    let names = Names::new();
    mock.create_topic(&names.ingest, partitions, 1).unwrap();
    if extra.is_empty() {
        produce(&mock.bootstrap_servers(), &names.ingest, inputs);
    } else {
        produce_with(&mock.bootstrap_servers(), &names.ingest, inputs, extra);
    }
    (mock, names)
}

/// Every produce request is refused (transiently, for codat-stream) until cleared.
fn refuse_produce(mock: &Mock) {
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_POLICY_VIOLATION; 100_000],
    );
}

fn accept_produce(mock: &Mock) {
    mock.clear_request_errors(RDKafkaApiKey::Produce);
}

const NO_CREATE: (&str, &str) = ("CODAT_STREAM__TOPICS__CREATE", "false");
const FAST_RETRY: (&str, &str) = (
    "CODAT_STREAM__PIPELINE__PRODUCE_RETRY_BACKOFF_MAX_MS",
    "200",
);

fn ids_and_inputs(n: usize) -> (Vec<Input>, Vec<String>) {
    generated_inputs(n, 0).into_iter().unzip()
}

fn readyz(c: &Connector) -> Option<(u16, String)> {
    c.get("/readyz")
}

/// Transient refusal: the record is re-sent (not dead-lettered) with its
/// partition held (nothing committed past it), `/readyz` 503 with the
/// reason, the error and retry counters moving; and in-flight work stays
/// within `pipeline.max_in_flight` while it is held. When the broker
/// accepts again, everything lands once and the offsets are committed.
#[test]
fn a_transient_refusal_is_re_sent_with_its_partition_held_and_readyz_503() {
    let (inputs, ids) = ids_and_inputs(20);
    let (mock, names) = mock_with(1, &inputs, &[]);
    let bootstrap = mock.bootstrap_servers();
    refuse_produce(&mock);
    let c = Connector::start(
        &bootstrap,
        &names,
        &[
            NO_CREATE,
            FAST_RETRY,
            ("CODAT_STREAM__PIPELINE__MAX_IN_FLIGHT", "5"),
        ],
    );
    wait_for(
        "/readyz 503: records failing to produce",
        Duration::from_secs(60),
        || readyz(&c).is_some_and(|(s, b)| s == 503 && b.contains("records failing to produce")),
    );
    // Re-sent several times while refused, never dead-lettered.
    wait_for("several re-sends", Duration::from_secs(30), || {
        c.metric("codat_stream_produce_retries_total") >= 10.0
    });
    let m = c.metrics();
    assert!(
        m.sum(
            "codat_stream_produce_errors_total",
            &[("error", "PolicyViolation")]
        ) >= 10.0
    );
    assert_eq!(m.sum("codat_stream_dead_lettered_total", &[]), 0.0);
    assert_eq!(m.sum("codat_stream_envelopes_produced_total", &[]), 0.0);
    assert_eq!(m.sum("codat_stream_ready", &[]), 0.0);
    // Bounded: 5 in flight, and no more consumed while they are held.
    assert_eq!(m.sum("codat_stream_in_flight_records", &[]), 5.0);
    assert_eq!(m.sum("codat_stream_records_consumed_total", &[]), 5.0);
    // Held: nothing committed past the refused records.
    assert_eq!(
        committed_total(&bootstrap, &names.group, &names.ingest, 1),
        0
    );

    accept_produce(&mock);
    wait_for("/readyz 200 again", Duration::from_secs(60), || {
        readyz(&c).is_some_and(|(s, _)| s == 200)
    });
    let seen = read_ids(&bootstrap, &names, &ids, Duration::from_secs(60));
    assert_all_seen(&seen, &ids);
    wait_for("every offset committed", Duration::from_secs(30), || {
        committed_total(&bootstrap, &names.group, &names.ingest, 1) == 20
    });
    let m = c.metrics();
    assert_eq!(m.sum("codat_stream_dead_lettered_total", &[]), 0.0);
    assert_eq!(m.sum("codat_stream_envelopes_produced_total", &[]), 20.0);
    assert!(c.logged("produce recovered"));
}

/// In-flight bytes are bounded too: with records of ~100 KB held by a
/// refusing broker, a 1 MiB bound stops consuming after a handful.
#[test]
fn in_flight_bytes_are_bounded_while_records_are_held() {
    let pad = "x".repeat(100_000);
    let inputs: Vec<Input> = (0..40)
        .map(|i| {
            Input::body(format!(
                r#"{{"id":"big-{i}","eventType":"connection.failed","pad":"{pad}","payload":{{"referenceCompany":{{"id":"co-{i}"}}}}}}"#
            ))
        })
        .collect();
    let (mock, names) = mock_with(1, &inputs, &[]);
    refuse_produce(&mock);
    let c = Connector::start(
        &mock.bootstrap_servers(),
        &names,
        &[
            NO_CREATE,
            FAST_RETRY,
            ("CODAT_STREAM__PIPELINE__MAX_IN_FLIGHT_BYTES", "1048576"),
        ],
    );
    wait_for("records held", Duration::from_secs(60), || {
        c.metric("codat_stream_produce_retries_total") >= 5.0
    });
    let m = c.metrics();
    let consumed = m.sum("codat_stream_records_consumed_total", &[]);
    let in_flight = m.sum("codat_stream_in_flight_records", &[]);
    // Each holds its envelope (~100 KB, the body is kept in `extensions`)
    // and the input copy (~100 KB): about 5 fit in 1 MiB, plus the one
    // that crossed the bound.
    assert!(
        (1.0..=7.0).contains(&in_flight) && consumed == in_flight,
        "in flight {in_flight}, consumed {consumed} of 40"
    );
    accept_produce(&mock);
    let seen = read_outputs(
        &mock.bootstrap_servers(),
        &names,
        40,
        Duration::from_secs(60),
    );
    assert_eq!(seen.len(), 40);
}

/// `pipeline.drain_timeout_ms` bounds the drain: with the broker refusing
/// every record, SIGTERM exits 1 once it passes, commits nothing past the
/// unacknowledged records, and a successor consumes them again.
#[test]
fn the_drain_timeout_passing_exits_1_and_nothing_unacknowledged_is_committed() {
    let (inputs, ids) = ids_and_inputs(20);
    let (mock, names) = mock_with(1, &inputs, &[]);
    let bootstrap = mock.bootstrap_servers();
    refuse_produce(&mock);
    let mut c = Connector::start(
        &bootstrap,
        &names,
        &[
            NO_CREATE,
            FAST_RETRY,
            ("CODAT_STREAM__PIPELINE__DRAIN_TIMEOUT_MS", "1000"),
        ],
    );
    wait_for("records failing", Duration::from_secs(60), || {
        c.metric("codat_stream_produce_retries_total") >= 3.0
    });
    c.sigterm();
    let status = c.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "log: {}", c.raw_log_text());
    assert!(c.logged("drain timed out"));
    assert_eq!(
        committed_total(&bootstrap, &names.group, &names.ingest, 1),
        0
    );
    accept_produce(&mock);
    let _successor = Connector::start(&bootstrap, &names, &[NO_CREATE]);
    let seen = read_ids(&bootstrap, &names, &ids, Duration::from_secs(60));
    assert_all_seen(&seen, &ids);
}

/// Every reason `/readyz` can give for being unready, each caused for
/// real: start-up waiting for a cluster, an ingest topic that does not
/// exist yet, every broker unreachable. (Failing to produce:
/// `a_transient_refusal_is_re_sent_with_its_partition_held_and_readyz_503`;
/// draining: tests/observability.rs; the registry: tests/kafka_schema_registry.rs.)
#[test]
fn readyz_names_each_reason_it_is_not_ready() {
    let unready = |c: &Connector, reason: &str| {
        readyz(c).is_some_and(|(s, b)| s == 503 && b.contains(reason))
    };
    // Starting: nothing listens at the bootstrap address.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let starting = Connector::start(&nowhere, &Names::new(), &[]);
    wait_for("/readyz: starting", Duration::from_secs(30), || {
        unready(&starting, "starting")
    });
    drop(starting);

    // The ingest topic does not exist yet, then does.
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let names = Names::new();
    let c = Connector::start(&bootstrap, &names, &[NO_CREATE]);
    wait_for(
        "/readyz: ingest topic missing",
        Duration::from_secs(60),
        || unready(&c, "an ingest topic does not exist"),
    );
    mock.create_topic(&names.ingest, 1, 1).unwrap();
    wait_for("/readyz 200", Duration::from_secs(60), || {
        readyz(&c).is_some_and(|(s, _)| s == 200)
    });

    // Every broker unreachable, then back.
    mock.broker_down(1).unwrap();
    wait_for(
        "/readyz: brokers unreachable",
        Duration::from_secs(60),
        || unready(&c, "brokers unreachable"),
    );
    mock.broker_up(1).unwrap();
    let (inputs, ids) = ids_and_inputs(3);
    produce(&bootstrap, &names.ingest, &inputs);
    let seen = read_ids(&bootstrap, &names, &ids, Duration::from_secs(60));
    assert_all_seen(&seen, &ids);
    wait_for("/readyz 200 again", Duration::from_secs(60), || {
        readyz(&c).is_some_and(|(s, _)| s == 200)
    });
}

/// A topic the cluster does not have (and will not auto-create, with
/// `topics.create = false`) refuses its type's envelopes with UnknownTopic:
/// the type goes to the catch-all topic, end to end, instead of its record
/// being re-sent forever (review of issue 9) or dead-lettered.
#[test]
fn a_type_whose_topic_is_refused_goes_to_the_catch_all_topic() {
    let bodies = [
        r#"{"id":"r-1","eventType":"custom.refused","payload":{}}"#,
        r#"{"id":"r-2","eventType":"custom.refused","payload":{}}"#,
    ];
    let inputs: Vec<Input> = bodies.iter().map(|b| Input::body(*b)).collect();
    let (mock, names) = mock_with(1, &inputs, &[]);
    // Provisioned by the operator (`topics.create = false`); the type's own
    // topic is not.
    mock.create_topic(&names.catch_all, 1, 1).unwrap();
    mock.create_topic(&names.dlq, 1, 1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let c = Connector::start(
        &bootstrap,
        &names,
        &[
            NO_CREATE,
            // The mock would create the topic on the producer's metadata request.
            (
                "CODAT_STREAM__KAFKA__PRODUCER__ALLOW_AUTO_CREATE_TOPICS",
                "false",
            ),
            // How long librdkafka waits for a topic to appear before failing
            // its records with UnknownTopic (30 s by default).
            (
                "CODAT_STREAM__KAFKA__PRODUCER__TOPIC_METADATA_PROPAGATION_MAX_MS",
                "1000",
            ),
        ],
    );
    let out = consume_until(
        &bootstrap,
        |t| is_output(&names, t),
        Duration::from_secs(60),
        |m| m.len() >= 2,
    );
    assert_eq!(out.len(), 2, "log: {}", c.raw_log_text());
    use rdkafka::Message;
    for m in &out {
        assert_eq!(m.topic(), names.catch_all, "{}", output_id(m, &names.dlq));
    }
    let metrics = c.metrics();
    assert_eq!(
        metrics.sum(
            "codat_stream_catch_all_routed_total",
            &[("cause", "topic_unavailable")]
        ),
        2.0
    );
    assert!(c.logged("the broker refuses this topic"));
}
