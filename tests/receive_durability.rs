//! `receive` answers 2xx only for records on the ingest topic: with the
//! broker behind a proxy a test can take down, requests get 503 within
//! the deadline and, retried as Codat would once it is back, every one is
//! stored; on SIGTERM, requests in flight are finished (acknowledged)
//! before the process exits 0.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use support::*;

/// Posts each delivery on its own thread and connection: the answers, in order.
fn post_all(listen: &str, deliveries: &[Delivery]) -> Vec<(u16, Duration)> {
    let threads: Vec<_> = deliveries
        .iter()
        .cloned()
        .map(|(headers, body)| {
            let listen = listen.to_owned();
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut c = HttpConn::connect(&listen);
                let status = c.post(SIGNED_PATH, &headers, &body).map_or(0, |(s, _)| s);
                (status, started.elapsed())
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// How often each key is on `topic`, read until every one of `want` is.
fn keys_on(bootstrap: &str, topic: &str, want: &[String]) -> HashMap<String, usize> {
    let records = read_topic(bootstrap, topic, Duration::from_secs(60), |m| {
        let have: std::collections::HashSet<&[u8]> = m.iter().filter_map(|r| r.key()).collect();
        want.iter().all(|k| have.contains(k.as_bytes()))
    });
    let mut seen = HashMap::new();
    for r in &records {
        *seen
            .entry(String::from_utf8_lossy(r.key().unwrap_or_default()).into_owned())
            .or_default() += 1;
    }
    seen
}

#[test]
fn a_broker_outage_is_answered_503_within_the_deadline_and_retries_lose_nothing() {
    let broker_port = free_port();
    let mut proxy = Proxy::new(broker_port);
    let broker = Broker::start_advertising(broker_port, proxy.port);
    proxy.up();
    let topic = unique("ingest").replace('-', "_");
    broker.create_topic(&topic, 2);
    let receiver = Receiver::start(
        &broker.bootstrap(),
        &topic,
        &[
            ("CODAT_STREAM__RECEIVE__ACK_TIMEOUT_MS", "2000"),
            (
                "CODAT_STREAM__KAFKA__COMMON__RECONNECT_BACKOFF_MAX_MS",
                "200",
            ),
        ],
    );
    receiver.wait_ready(Duration::from_secs(60));

    let before: Vec<String> = (0..100).map(|i| format!("before-{i}")).collect();
    let deliveries: Vec<_> = before.iter().map(|id| signed_delivery(id)).collect();
    for (status, _) in post_all(&receiver.listen, &deliveries) {
        assert_eq!(status, 200);
    }

    proxy.down();
    let during: Vec<String> = (0..20).map(|i| format!("during-{i}")).collect();
    let held: Vec<_> = during.iter().map(|id| signed_delivery(id)).collect();
    for (status, took) in post_all(&receiver.listen, &held) {
        assert_eq!(status, 503, "broker down: not stored, so not 200");
        assert!(
            took < Duration::from_millis(3_000),
            "answered within the 2 s deadline (+1 s): {took:?}"
        );
    }
    wait_for(
        "/readyz to say the brokers are unreachable",
        Duration::from_secs(30),
        || {
            http_get(&receiver.http, "/readyz")
                .is_some_and(|(s, b)| s == 503 && b.contains("brokers unreachable"))
        },
    );

    proxy.up();
    // Codat retries what was not answered 2xx: the same bytes, until 2xx.
    let mut pending: Vec<usize> = (0..held.len()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut answers = Vec::new();
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "retries still refused: {pending:?} {answers:?}; log: {}",
            receiver.raw_log.display()
        );
        let retry: Vec<_> = pending.iter().map(|&i| held[i].clone()).collect();
        answers = post_all(&receiver.listen, &retry);
        pending = pending
            .into_iter()
            .zip(&answers)
            .filter(|(_, (status, _))| *status != 200)
            .map(|(i, _)| i)
            .collect();
    }

    let all: Vec<String> = before.iter().chain(&during).cloned().collect();
    let seen = keys_on(&broker.bootstrap(), &topic, &all);
    for id in &all {
        assert!(
            seen.contains_key(id),
            "{id} was acknowledged but is not on the topic"
        );
    }
    for id in &before {
        assert_eq!(seen[id], 1, "{id}: once");
    }
    let m = receiver.metrics();
    assert!(
        m.sum(
            "codat_stream_receive_requests_total",
            &[("outcome", "unavailable")]
        ) >= held.len() as f64
    );
}

#[test]
fn sigterm_stops_accepting_and_finishes_in_flight_requests_then_exits_0() {
    let broker_port = free_port();
    let mut proxy = Proxy::new(broker_port);
    let broker = Broker::start_advertising(broker_port, proxy.port);
    proxy.up();
    let topic = unique("ingest").replace('-', "_");
    broker.create_topic(&topic, 2);
    let mut receiver = Receiver::start(
        &broker.bootstrap(),
        &topic,
        &[
            ("CODAT_STREAM__RECEIVE__ACK_TIMEOUT_MS", "14000"),
            (
                "CODAT_STREAM__KAFKA__COMMON__RECONNECT_BACKOFF_MAX_MS",
                "200",
            ),
        ],
    );
    receiver.wait_ready(Duration::from_secs(60));
    // A warm-up record, so the producer has its idempotence id.
    assert_eq!(
        post_all(&receiver.listen, &[signed_delivery("warm-up")])[0].0,
        200
    );

    // Requests held in flight: the broker is away, so none is acknowledged.
    proxy.down();
    let ids: Vec<String> = (0..10).map(|i| format!("in-flight-{i}")).collect();
    let deliveries: Vec<_> = ids.iter().map(|id| signed_delivery(id)).collect();
    let listen = receiver.listen.clone();
    let posting = std::thread::spawn(move || post_all(&listen, &deliveries));
    wait_for("10 requests in flight", Duration::from_secs(10), || {
        http_get(&receiver.http, "/metrics").is_some_and(|(_, body)| {
            Metrics::parse(&body).sum("codat_stream_receive_in_flight_requests", &[]) == 10.0
        })
    });

    receiver.sigterm();
    wait_for("the listener to close", Duration::from_secs(10), || {
        std::net::TcpStream::connect(&receiver.listen).is_err()
    });
    // However long the broker is away, the process waits for the requests
    // in flight: watched for 3 s (longer than the final producer flush).
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(3) {
        assert!(
            receiver.child.try_wait().unwrap().is_none(),
            "exited with requests in flight: {}",
            receiver.raw_log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = http_get(&receiver.http, "/readyz").unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("draining"), "{body}");

    proxy.up();
    let answers = posting.join().unwrap();
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "in-flight requests finished with their records acknowledged: {answers:?}"
    );
    let status = receiver.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", receiver.raw_log_text());
    let seen = keys_on(&broker.bootstrap(), &topic, &ids);
    for id in &ids {
        assert!(
            seen.contains_key(id),
            "{id} answered 200 but not on the topic"
        );
    }
}
