//! The broker itself crashes (SIGKILL) and restarts on the same data
//! directory and ports while the connector works, on Apache Kafka (a broker
//! of each test's own, its controller in a process of its own, as in
//! production: see `Broker::start_split`): `run` draining in each delivery
//! mode, and `receive` taking requests. Nothing acknowledged is lost, exactly-once shows no
//! duplicate, `/readyz` answers 503 during the outage and 200 after, and the
//! process never exits.

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::Message;
use support::*;

/// One at a time: each test runs a broker (a JVM) of its own, a connector
/// or receiver, and a reader; four at once on two cores, with another load
/// beside them, left the exactly-once test's reader 12,820 records short
/// within its 120 s (a fresh reader of the kept data found all 20,000).
static SERIAL: Mutex<()> = Mutex::new(());

const RECORDS: usize = 20_000;
/// A few thousand records/s, so the outage lands mid-stream.
const THROTTLED: &[(&str, &str)] = &[
    ("CODAT_STREAM__PIPELINE__MAX_IN_FLIGHT", "100"),
    ("CODAT_STREAM__KAFKA__PRODUCER__LINGER_MS", "20"),
    // Reconnect quickly once the broker is back.
    (
        "CODAT_STREAM__KAFKA__COMMON__RECONNECT_BACKOFF_MAX_MS",
        "500",
    ),
];

/// `/readyz` of `http`: (status, body), or None when nothing answers.
fn readyz(http: &str) -> Option<(u16, String)> {
    http_get(http, "/readyz")
}

/// Asserts the process is still running.
fn alive(child: &mut std::process::Child, what: &str, log: &std::path::Path) {
    if let Some(status) = child.try_wait().unwrap() {
        panic!(
            "{what} exited ({status}) during the outage; log: {}",
            log.display()
        );
    }
}

#[test]
fn run_at_least_once_drains_through_a_broker_crash() {
    drain_through_a_broker_crash(&[], Check::AllSeen);
}

#[test]
fn run_with_dedup_drains_through_a_broker_crash() {
    drain_through_a_broker_crash(&[("CODAT_STREAM__DEDUP__ENABLED", "true")], Check::AllSeen);
}

#[test]
fn run_exactly_once_drains_through_a_broker_crash_without_duplicates() {
    let id: &'static str = Box::leak(unique("crash-eos").into_boxed_str());
    drain_through_a_broker_crash(
        &[
            ("CODAT_STREAM__DELIVERY__GUARANTEE", "exactly-once"),
            ("CODAT_STREAM__DELIVERY__TRANSACTIONAL_ID", id),
            ("CODAT_STREAM__DELIVERY__TRANSACTION_MAX_MS", "200"),
        ],
        Check::ExactlyOnce,
    );
}

enum Check {
    /// Every input at least once.
    AllSeen,
    /// Every input exactly once (`read_committed`).
    ExactlyOnce,
}

fn drain_through_a_broker_crash(mode: &[(&str, &str)], check: Check) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut broker = Broker::start_split();
    let bootstrap = broker.bootstrap();
    let names = Names::new();
    broker.create_topic(&names.ingest, 4);
    let (inputs, ids): (Vec<Input>, Vec<String>) =
        generated_inputs(RECORDS, 50).into_iter().unzip();
    produce(&bootstrap, &names.ingest, &inputs);
    let env: Vec<(&str, &str)> = THROTTLED.iter().chain(mode).copied().collect();
    let mut c = Connector::start(&bootstrap, &names, &env);
    // Shown with a failure's output: what the connector did.
    eprintln!("the connector's log: {}", c.raw_log.display());
    c.wait_started(Duration::from_secs(60));
    wait_for("3,000 records settled", Duration::from_secs(90), || {
        c.metric("codat_stream_envelopes_produced_total")
            + c.metric("codat_stream_dead_lettered_total")
            >= 3_000.0
    });
    wait_for(
        "/readyz 200 before the crash",
        Duration::from_secs(30),
        || readyz(&c.http).is_some_and(|(s, _)| s == 200),
    );

    broker.stop();
    wait_for(
        "/readyz 503 (brokers unreachable) during the outage",
        Duration::from_secs(60),
        || readyz(&c.http).is_some_and(|(s, b)| s == 503 && b.contains("brokers unreachable")),
    );
    let consumed_in_outage = c.metric("codat_stream_records_consumed_total");
    alive(&mut c.child, "the connector", &c.raw_log);
    broker.restart();
    wait_for(
        "/readyz 200 after the restart",
        Duration::from_secs(120),
        || {
            alive(&mut c.child, "the connector", &c.raw_log);
            readyz(&c.http).is_some_and(|(s, _)| s == 200)
        },
    );
    assert!(
        (consumed_in_outage as usize) < RECORDS,
        "the outage landed mid-stream ({consumed_in_outage} of {RECORDS} consumed)"
    );
    match check {
        Check::AllSeen => {
            let seen = read_ids(&bootstrap, &names, &ids, Duration::from_secs(180));
            assert_all_seen(&seen, &ids);
        }
        Check::ExactlyOnce => {
            wait_for("every offset committed", Duration::from_secs(180), || {
                committed_total(&bootstrap, &names.group, &names.ingest, 4) >= RECORDS as i64
            });
            let (java_total, java_dups) =
                java_read_ids(&bootstrap, &names, "read_committed", RECORDS);
            let (seen, total) = seen_ids(&bootstrap, &names, RECORDS);
            assert!(
                java_dups.is_empty() && java_total == RECORDS,
                "Kafka's Java client (read_committed) read {java_total} of {RECORDS}, \
                 {} ids more than once: {:?}",
                java_dups.len(),
                &java_dups[..java_dups.len().min(8)]
            );
            assert_each_once(&seen, total, &ids);
        }
    }
    c.sigterm();
    assert_eq!(
        c.wait_exit(Duration::from_secs(60)).code(),
        Some(0),
        "a clean stop after the outage; log: {}",
        c.raw_log.display()
    );
}

/// Posts `ids` one after another as Codat would, each retried until it is
/// answered 200 or `within` passes: the ids answered 200.
fn post_until_200(r: &Receiver, ids: &[String], within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut stored = Vec::new();
    for id in ids {
        let (headers, body) = signed_delivery(id);
        while Instant::now() < deadline {
            if r.post(SIGNED_PATH, &headers, &body).0 == 200 {
                stored.push(id.clone());
                break;
            }
        }
    }
    stored
}

/// `receive` through a broker crash: what was answered 200 before is on
/// the topic; during the outage requests are answered 503 (never 200 for a
/// record not stored) and `/readyz` is 503; after the restart Codat's
/// retries are stored and everything answered 200 is on the topic.
#[test]
fn receive_takes_requests_through_a_broker_crash() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut broker = Broker::start_split();
    let bootstrap = broker.bootstrap();
    let topic = unique("ingest").replace('-', "_");
    broker.create_topic(&topic, 2);
    let mut r = Receiver::start(
        &bootstrap,
        &topic,
        &[
            ("CODAT_STREAM__RECEIVE__ACK_TIMEOUT_MS", "2000"),
            (
                "CODAT_STREAM__KAFKA__COMMON__RECONNECT_BACKOFF_MAX_MS",
                "500",
            ),
        ],
    );
    r.wait_ready(Duration::from_secs(60));
    let before: Vec<String> = (0..50).map(|i| format!("before-{i}")).collect();
    assert_eq!(
        post_until_200(&r, &before, Duration::from_secs(30)),
        before,
        "every request answered 200 while the broker is up"
    );

    broker.stop();
    wait_for(
        "/readyz 503 during the outage",
        Duration::from_secs(60),
        || readyz(&r.http).is_some_and(|(s, b)| s == 503 && b.contains("brokers unreachable")),
    );
    let (headers, body) = signed_delivery("during-0");
    let (status, _) = r.post(SIGNED_PATH, &headers, &body);
    assert_eq!(status, 503, "the broker is down: not stored, so not 200");
    alive(&mut r.child, "receive", &r.raw_log);

    broker.restart();
    let after: Vec<String> = (0..50)
        .map(|i| format!("during-{i}"))
        .chain((0..50).map(|i| format!("after-{i}")))
        .collect();
    let stored = post_until_200(&r, &after, Duration::from_secs(120));
    assert_eq!(
        stored, after,
        "Codat's retries are stored once the broker is back"
    );
    wait_for(
        "/readyz 200 after the restart",
        Duration::from_secs(60),
        || readyz(&r.http).is_some_and(|(s, _)| s == 200),
    );

    let all: Vec<String> = before.iter().chain(&after).cloned().collect();
    let records = read_topic(&bootstrap, &topic, Duration::from_secs(60), |m| {
        let have: std::collections::HashSet<&[u8]> = m.iter().filter_map(|x| x.key()).collect();
        all.iter().all(|k| have.contains(k.as_bytes()))
    });
    let have: std::collections::HashSet<Vec<u8>> = records
        .iter()
        .filter_map(|m| m.key().map(<[u8]>::to_vec))
        .collect();
    for id in &all {
        assert!(
            have.contains(id.as_bytes()),
            "{id} was answered 200 but is not on the topic"
        );
    }
    r.sigterm();
    assert_eq!(r.wait_exit(Duration::from_secs(60)).code(), Some(0));
}
