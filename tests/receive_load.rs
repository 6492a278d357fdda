//! `receive` under load: a bounded burst of concurrent deliveries, each
//! answered 2xx on the topic exactly once and nothing else there; and a
//! flood of slow clients (heads sent byte by byte) that starves neither
//! `/healthz` nor real deliveries.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use codat_stream::core::signature::{SigningKey, sign};
use rdkafka::Message;
use support::*;

fn delivery(key: &SigningKey, id: &str) -> Delivery {
    let body = format!(
        r#"{{"id":"{id}","eventType":"read.completed","payload":{{"referenceCompany":{{"id":"co-{}"}},"dataTypes":[{{"dataType":"invoices","connectionId":"d"}}]}}}}"#,
        id.len()
    );
    let ts = now_secs();
    let msg = format!("msg_{id}");
    let headers = vec![
        ("webhook-id".to_owned(), msg.clone().into_bytes()),
        ("webhook-timestamp".to_owned(), ts.to_string().into_bytes()),
        (
            "webhook-signature".to_owned(),
            sign(key, &msg, ts, body.as_bytes()).into_bytes(),
        ),
    ];
    (headers, body.into_bytes())
}

/// The two tests each load the 2-core machine: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const REQUESTS: usize = 20_000;
const CONNECTIONS: usize = 64;

#[test]
fn a_burst_of_20000_deliveries_from_64_connections_each_2xx_on_the_topic_exactly_once() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let broker = Broker::shared();
    let topic = unique("ingest").replace('-', "_");
    broker.create_topic(&topic, 4);
    let receiver = Receiver::start(&broker.bootstrap(), &topic, &[]);
    receiver.wait_ready(Duration::from_secs(60));
    let key = SigningKey::parse(SECRET_A).unwrap();

    let started = Instant::now();
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|t| {
            let (listen, key) = (receiver.listen.clone(), key.clone());
            std::thread::spawn(move || {
                let mut conn = HttpConn::connect(&listen);
                let mut answers = Vec::new();
                for i in (t..REQUESTS).step_by(CONNECTIONS) {
                    let id = format!("load-{i:06}");
                    let (headers, body) = delivery(&key, &id);
                    let status = match conn.post(SIGNED_PATH, &headers, &body) {
                        Ok((status, _)) => status,
                        Err(_) => 0,
                    };
                    if status != 200 {
                        // Refusals close the connection.
                        conn = HttpConn::connect(&listen);
                    }
                    answers.push((id, status));
                }
                answers
            })
        })
        .collect();
    let answers: Vec<(String, u16)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let took = started.elapsed();
    let accepted: HashSet<&str> = answers
        .iter()
        .filter(|(_, s)| *s == 200)
        .map(|(id, _)| id.as_str())
        .collect();
    let others: HashMap<u16, usize> =
        answers
            .iter()
            .filter(|(_, s)| *s != 200)
            .fold(HashMap::new(), |mut m, (_, s)| {
                *m.entry(*s).or_default() += 1;
                m
            });
    eprintln!(
        "{REQUESTS} requests from {CONNECTIONS} connections in {took:?}: {} accepted, others {others:?}",
        accepted.len()
    );
    assert!(
        accepted.len() >= REQUESTS * 99 / 100,
        "nearly every delivery accepted under a bounded burst: {others:?}"
    );

    // Read until every accepted id is there (duplicates, if any, then show).
    let (mut found, mut counted) = (HashSet::new(), 0);
    let records = read_topic(&broker.bootstrap(), &topic, Duration::from_secs(120), |m| {
        for r in &m[counted..] {
            found.insert(r.key().unwrap_or_default().to_vec());
        }
        counted = m.len();
        accepted.iter().all(|id| found.contains(id.as_bytes()))
    });
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &records {
        let key = String::from_utf8_lossy(r.key().unwrap_or_default()).into_owned();
        *seen.entry(key).or_default() += 1;
    }
    let sent: HashSet<&str> = answers.iter().map(|(id, _)| id.as_str()).collect();
    for id in &accepted {
        assert_eq!(
            seen.get(*id),
            Some(&1),
            "{id}: answered 200, so on the topic exactly once"
        );
    }
    for (id, n) in &seen {
        assert!(
            sent.contains(id.as_str()),
            "{id}: not sent, yet on the topic"
        );
        assert_eq!(*n, 1, "{id}: at most once");
    }
    let m = receiver.metrics();
    assert_eq!(
        m.sum(
            "codat_stream_receive_requests_total",
            &[("outcome", "accepted")]
        ) as usize,
        accepted.len()
    );
}

#[test]
fn a_slow_client_flood_starves_neither_healthz_nor_real_deliveries() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let broker = Broker::shared();
    let topic = unique("ingest").replace('-', "_");
    broker.create_topic(&topic, 2);
    let receiver = Receiver::start(
        &broker.bootstrap(),
        &topic,
        &[
            ("CODAT_STREAM__RECEIVE__MAX_CONNECTIONS", "128"),
            ("CODAT_STREAM__RECEIVE__HEADER_TIMEOUT_MS", "2000"),
        ],
    );
    receiver.wait_ready(Duration::from_secs(60));
    let key = SigningKey::parse(SECRET_A).unwrap();

    // 1,000 connections, each sending a never-ending head one byte at a
    // time; closed ones (evicted, timed out) are opened again.
    let flooding = Arc::new(AtomicBool::new(true));
    let flooder = {
        let (listen, flooding) = (receiver.listen.clone(), flooding.clone());
        std::thread::spawn(move || {
            let head = b"POST /webhooks/codat HTTP/1.1\r\nHost: flood\r\nX-Slow: ";
            let open = |_| TcpStream::connect(&listen).ok().map(|s| (s, 0usize));
            let mut conns: Vec<Option<(TcpStream, usize)>> = (0..1000).map(open).collect();
            let mut reopened = 0usize;
            while flooding.load(Ordering::Relaxed) {
                for c in conns.iter_mut() {
                    let alive = match c {
                        Some((s, sent)) => {
                            let byte = head.get(*sent).copied().unwrap_or(b'a');
                            *sent += 1;
                            s.write_all(&[byte]).is_ok()
                        }
                        None => false,
                    };
                    if !alive {
                        *c = open(0);
                        reopened += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            reopened
        })
    };

    let until = Instant::now() + Duration::from_secs(8);
    let (mut probes, mut delivered) = (0, 0);
    let mut slowest_probe = Duration::ZERO;
    while Instant::now() < until {
        let asked = Instant::now();
        let answer = http_get(&receiver.http, "/healthz");
        slowest_probe = slowest_probe.max(asked.elapsed());
        assert_eq!(
            answer.map(|(s, _)| s),
            Some(200),
            "/healthz during the flood"
        );
        probes += 1;
        if probes % 5 == 0 {
            let (headers, body) = delivery(&key, &format!("real-{probes}"));
            let asked = Instant::now();
            let (status, _) = receiver.post(SIGNED_PATH, &headers, &body);
            assert_eq!(status, 200, "a real delivery during the flood");
            assert!(
                asked.elapsed() < Duration::from_secs(3),
                "{:?}",
                asked.elapsed()
            );
            delivered += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    flooding.store(false, Ordering::Relaxed);
    let reopened = flooder.join().unwrap();
    assert!(
        slowest_probe < Duration::from_secs(1),
        "slowest /healthz: {slowest_probe:?}"
    );
    let m = receiver.metrics();
    assert!(
        m.sum("codat_stream_receive_connections_evicted_total", &[]) > 0.0,
        "the flood was past max_connections (reopened {reopened})"
    );
    assert_eq!(
        m.sum(
            "codat_stream_receive_requests_total",
            &[("outcome", "accepted")]
        ),
        delivered as f64
    );
    let records = read_topic(&broker.bootstrap(), &topic, Duration::from_secs(30), |r| {
        r.len() >= delivered
    });
    assert_eq!(records.len(), delivered);
}
