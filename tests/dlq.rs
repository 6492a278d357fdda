//! `codat-stream dlq inspect` and `dlq replay` on Apache Kafka (the shared
//! test broker), on dead letters `run` wrote; and every record `run`
//! writes, dead letters with a header key that is not UTF-8 included,
//! read by Confluent's Python client, librdkafka and Kafka's Java client.

mod support;

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::Headers;
use support::*;

/// The environment `run` and `dlq` share for one deployment.
fn env(broker: &Broker, names: &Names) -> Vec<(String, String)> {
    [
        ("CODAT_STREAM__KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("CODAT_STREAM__INGEST__TOPICS", names.ingest.clone()),
        ("CODAT_STREAM__INGEST__GROUP_ID", names.group.clone()),
        ("CODAT_STREAM__OUTPUT__TOPIC_PREFIX", names.prefix.clone()),
        ("CODAT_STREAM__OUTPUT__DEAD_LETTER_TOPIC", names.dlq.clone()),
        (
            "CODAT_STREAM__OUTPUT__CATCH_ALL_TOPIC",
            names.catch_all.clone(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn dlq(broker: &Broker, names: &Names, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_codat-stream"))
        .arg("dlq")
        .args(args)
        .env_clear()
        .envs(env(broker, names))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dlq {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn dlq_json(broker: &Broker, names: &Names, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_slice(&dlq(broker, names, &args).stdout).unwrap()
}

/// reason -> field of `dlq replay --json` / `inspect --json`.
fn by_reason(v: &serde_json::Value, field: &str) -> HashMap<String, serde_json::Value> {
    v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["reason"].as_str().unwrap().to_owned(), r[field].clone()))
        .collect()
}

fn event(id: &str, pad: usize) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","eventType":"connection.failed","payload":{{"referenceCompany":{{"id":"co-{id}"}},"note":"{}"}}}}"#,
        "x".repeat(pad)
    )
    .into_bytes()
}

fn input(value: Vec<u8>, headers: Vec<(String, Option<Vec<u8>>)>) -> Input {
    Input {
        key: Some(b"co".to_vec()),
        value,
        headers,
    }
}

/// Counts (records, headers) each program read per topic.
fn read_by(program: &mut Command) -> HashMap<String, (usize, usize)> {
    let out = program.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split(' ').collect();
            (
                c[0].to_owned(),
                (c[1].parse().unwrap(), c[2].parse().unwrap()),
            )
        })
        .collect()
}

#[test]
fn dead_letters_are_inspected_replayed_once_and_never_looped() {
    let broker = Broker::shared();
    let names = Names::new();
    broker.create_topic(&names.ingest, 2);
    let mut inputs = Vec::new();
    for i in 0..4 {
        inputs.push(input(event(&format!("ok-{i}"), 0), vec![]));
    }
    for i in 0..3 {
        inputs.push(input(format!("not json {i}").into_bytes(), vec![]));
    }
    for i in 0..2 {
        inputs.push(input(event(&format!("big-{i}"), 3_000), vec![]));
    }
    produce(&broker.bootstrap(), &names.ingest, &inputs);
    // A header key that is not UTF-8 (a broken producer): the envelope
    // cannot carry it, the dead letter carries it encoded.
    produce_raw_header(
        &broker.bootstrap(),
        &names.ingest,
        b"\xffkey",
        &event("bad-header", 0),
    );

    // Bodies over 2,000 bytes are refused at first.
    let small = [("CODAT_STREAM__NORMALIZE__MAX_BODY_BYTES", "2000")];
    let mut run = Connector::start(&broker.bootstrap(), &names, &small);
    run.wait_started(Duration::from_secs(60));
    let out = read_outputs(&broker.bootstrap(), &names, 10, Duration::from_secs(60));
    assert_eq!(out.len(), 10);
    run.sigterm();
    assert!(run.wait_exit(Duration::from_secs(30)).success());

    let found = dlq_json(broker, &names, &["inspect"]);
    assert_eq!(found["total"], 6, "{found}");
    let counts = by_reason(&found, "count");
    assert_eq!(counts["invalid_json"], 3);
    assert_eq!(counts["body_too_large"], 2);
    assert_eq!(counts["invalid_header"], 1);

    // Every record written, dead letters included, read by three clients.
    let dlq_arg = format!("{}:6", names.dlq);
    let py = read_by(
        Command::new(python())
            .arg(fixture_script("python/read_all.py"))
            .args([broker.bootstrap(), dlq_arg.clone()]),
    );
    assert_eq!(py[&names.dlq].0, 6, "Confluent's Python client");
    let java = read_by(
        Command::new("java")
            .arg("-cp")
            .arg(format!("{}/*", kafka_libs().display()))
            .arg(fixture_script("java/ReadAll.java"))
            .args([broker.bootstrap(), dlq_arg]),
    );
    assert_eq!(java[&names.dlq], py[&names.dlq], "Kafka's Java client");
    let dead = read_topic(
        &broker.bootstrap(),
        &names.dlq,
        Duration::from_secs(30),
        |m| m.len() >= 6,
    );
    let headers: usize = dead
        .iter()
        .map(|m| m.headers().map_or(0, |h| h.iter().count()))
        .sum();
    assert_eq!(
        headers, py[&names.dlq].1,
        "librdkafka (rust-rdkafka's own accessors)"
    );

    // The limit raised: the dry run predicts, the replay does it.
    let predicted = dlq_json(broker, &names, &["replay", "--dry-run"]);
    let succeed = by_reason(&predicted, "would_succeed");
    let fail = by_reason(&predicted, "would_fail");
    assert_eq!(succeed["body_too_large"], 2, "{predicted}");
    assert_eq!(fail["invalid_json"]["invalid_json"], 3, "{predicted}");
    assert_eq!(fail["invalid_header"]["invalid_header"], 1, "{predicted}");
    assert_eq!(ingest_count(broker, &names), 10, "a dry run sends nothing");

    let replayed = dlq_json(broker, &names, &["replay"]);
    let sent: u64 = by_reason(&replayed, "replayed")
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(sent, 6, "{replayed}");
    assert_eq!(ingest_count(broker, &names), 16);
    let again = dlq_json(broker, &names, &["replay"]);
    assert!(
        by_reason(&again, "replayed").is_empty(),
        "finished: nothing twice: {again}"
    );
    assert_eq!(ingest_count(broker, &names), 16);

    let run = Connector::start(&broker.bootstrap(), &names, &[]);
    run.wait_started(Duration::from_secs(60));
    // The big bodies now make envelopes, once each; the rest fail again,
    // counting the replay.
    let out = read_outputs(&broker.bootstrap(), &names, 10 + 6, Duration::from_secs(60));
    let big: Vec<_> = out
        .iter()
        .filter(|m| header_str(m, "ce_id").is_some_and(|id| id.starts_with("big-")))
        .collect();
    assert_eq!(big.len(), 2, "each replayed body once");
    let again_dead: Vec<_> = out
        .iter()
        .filter(|m| {
            m.topic() == names.dlq && header_str(m, "codat_stream.replays").as_deref() == Some("1")
        })
        .collect();
    assert_eq!(again_dead.len(), 4);
    drop(run);
    let looped = dlq_json(broker, &names, &["replay"]);
    let skipped = by_reason(&looped, "skipped_max_replays");
    let total: u64 = skipped.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 4, "past --max-replays: not sent again: {looped}");
    assert_eq!(ingest_count(broker, &names), 16);
}

#[test]
fn a_replay_killed_half_way_sends_nothing_twice() {
    let broker = Broker::shared();
    let names = Names::new();
    broker.create_topic(&names.ingest, 1);
    broker.create_topic(&names.dlq, 2);
    const N: usize = 10_000;
    let dead: Vec<Input> = (0..N)
        .map(|i| Input {
            key: Some(format!("k{i}").into_bytes()),
            value: format!("not json {i}").into_bytes(),
            headers: vec![
                (
                    "codat_stream.dlq.reason".into(),
                    Some(b"invalid_json".to_vec()),
                ),
                (
                    "codat_stream.dlq.topic".into(),
                    Some(names.ingest.clone().into_bytes()),
                ),
            ],
        })
        .collect();
    produce(&broker.bootstrap(), &names.dlq, &dead);

    let mut replay = Command::new(env!("CARGO_BIN_EXE_codat-stream"))
        .args(["dlq", "replay", "--batch", "100"])
        .env_clear()
        .envs(env(broker, &names))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("a fifth replayed", Duration::from_secs(60), || {
        ingest_end(broker, &names) >= (N / 5) as i64
    });
    let _ = replay.kill();
    let _ = replay.wait();
    let at_kill = ingest_count(broker, &names);
    assert!(at_kill < N, "killed before the end ({at_kill} of {N} sent)");

    dlq(broker, &names, &["replay"]);
    let values = read_topic(
        &broker.bootstrap(),
        &names.ingest,
        Duration::from_secs(60),
        |m| m.len() >= N,
    );
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for m in &values {
        *seen
            .entry(m.payload().unwrap_or_default().to_vec())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), N, "every dead letter sent");
    assert!(seen.values().all(|n| *n == 1), "none twice");
}

/// Records on the ingest topic, read committed (librdkafka's default),
/// once 1.5 s pass without a new one.
fn ingest_count(broker: &Broker, names: &Names) -> usize {
    let (mut len, mut grew) = (0, std::time::Instant::now());
    read_topic(
        &broker.bootstrap(),
        &names.ingest,
        Duration::from_secs(120),
        |m| {
            if m.len() != len {
                (len, grew) = (m.len(), std::time::Instant::now());
            }
            grew.elapsed() >= Duration::from_millis(1500)
        },
    )
    .len()
}

/// The ingest topic's next offset (records, transaction markers and
/// aborted records alike): a cheap measure of progress.
fn ingest_end(broker: &Broker, names: &Names) -> i64 {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    consumer
        .fetch_watermarks(&names.ingest, 0, Duration::from_secs(10))
        .map_or(0, |(_, high)| high)
}

fn fixture_script(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(path)
}

/// One record with a header whose key is `key` (any bytes).
fn produce_raw_header(bootstrap: &str, topic: &str, key: &[u8], value: &[u8]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let headers = codat_stream::kafka::record_headers::owned_headers(&[(key, Some(&b"v"[..]))]);
    producer
        .send(
            BaseRecord::<[u8], [u8]>::to(topic)
                .key(&b"co"[..])
                .payload(value)
                .headers(headers),
        )
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
}

#[test]
fn every_reason_run_dead_letters_is_listed_by_inspect_and_read_by_every_client() {
    let broker = Broker::shared();
    let names = Names::new();
    broker.create_topic(&names.ingest, 1);
    // One body per normaliser reason (as in tests/cli_normalize.rs), with
    // bodies over 200 bytes refused.
    let bodies: &[(&str, &[u8])] = &[
        ("body_too_large", &[b'{'; 300]),
        ("invalid_utf8", b"{\"type\":\"a.b\",\"data\":\"\xff\"}"),
        ("invalid_json", b"not json"),
        (
            "duplicate_key",
            br#"{"id":"d","id":"e","eventType":"a.b","payload":{}}"#,
        ),
        (
            "invalid_string",
            br#"{"id":"\ud800","eventType":"a.b","payload":{}}"#,
        ),
        ("not_an_object", b"[1]"),
        ("unknown_shape", br#"{"hello":"world"}"#),
        ("missing_field", br#"{"id":"m","eventType":"a.b"}"#),
        (
            "invalid_field",
            br#"{"id":7,"eventType":"a.b","payload":{}}"#,
        ),
        (
            "invalid_event_type",
            br#"{"id":"t","eventType":"../x","payload":{}}"#,
        ),
        (
            "unknown_legacy_rule_type",
            br#"{"RuleType":"No Such Rule","AlertId":"a"}"#,
        ),
    ];
    let inputs: Vec<Input> = bodies
        .iter()
        .map(|(_, b)| input(b.to_vec(), vec![]))
        .collect();
    produce(&broker.bootstrap(), &names.ingest, &inputs);
    // The pipeline's own: a tombstone, and a header key that is not UTF-8.
    produce_tombstone(&broker.bootstrap(), &names.ingest);
    produce_raw_header(
        &broker.bootstrap(),
        &names.ingest,
        b"\xfe\xff",
        &event("hk", 0),
    );
    let want = bodies.len() + 2;

    let small = [("CODAT_STREAM__NORMALIZE__MAX_BODY_BYTES", "200")];
    let run = Connector::start(&broker.bootstrap(), &names, &small);
    run.wait_started(Duration::from_secs(60));
    let dead = read_topic(
        &broker.bootstrap(),
        &names.dlq,
        Duration::from_secs(60),
        |m| m.len() >= want,
    );
    assert_eq!(dead.len(), want);
    drop(run);

    let found = dlq_json(broker, &names, &["inspect"]);
    let counts = by_reason(&found, "count");
    for (reason, _) in bodies {
        assert_eq!(counts[*reason], 1, "{reason}: {found}");
    }
    assert_eq!(counts["null_value"], 1, "{found}");
    assert_eq!(counts["invalid_header"], 1, "{found}");
    let table = String::from_utf8(dlq(broker, &names, &["inspect"]).stdout).unwrap();
    assert!(
        table.starts_with(&format!("{want} dead letters on {}", names.dlq)),
        "{table}"
    );

    let arg = format!("{}:{want}", names.dlq);
    let py = read_by(
        Command::new(python())
            .arg(fixture_script("python/read_all.py"))
            .args([broker.bootstrap(), arg.clone()]),
    );
    let java = read_by(
        Command::new("java")
            .arg("-cp")
            .arg(format!("{}/*", kafka_libs().display()))
            .arg(fixture_script("java/ReadAll.java"))
            .args([broker.bootstrap(), arg]),
    );
    assert_eq!(py[&names.dlq].0, want, "Confluent's Python client");
    assert_eq!(java[&names.dlq], py[&names.dlq], "Kafka's Java client");
}

/// A record with a null value.
fn produce_tombstone(bootstrap: &str, topic: &str) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    producer
        .send(BaseRecord::<[u8], [u8]>::to(topic).key(&b"co"[..]))
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
}
