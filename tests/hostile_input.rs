//! What a hostile or broken producer can send, through a real broker
//! (Apache Kafka), against the real `codat-stream run` process. Every class below
//! was a way to crash, stall or quietly shrink the pipeline (issue 9). The
//! suite asserts: the process never exits; every input offset yields
//! exactly one output (an envelope, or a dead letter with the expected
//! reason); the group's committed offsets reach the end; /readyz is 200.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use codat_stream::core::envelope_avro::EnvelopeCodec;
use codat_stream::kafka::record_headers::owned_headers;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::{Broker, Connector, Names, header_str, read_outputs, wait_for};

type Headers = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// What one hostile record must become.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// An envelope on `<prefix><type>`.
    Envelope(&'static str),
    /// An envelope on the catch-all topic.
    CatchAll,
    /// A dead letter with this reason; `true` when it must be shortened.
    Dead(&'static str, bool),
}

struct Case {
    class: &'static str,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Headers,
    codec: &'static str,
    expect: Expect,
}

fn event(id: &str, company: &str, pad: usize) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","eventType":"connection.failed","payload":{{"referenceCompany":{{"id":"{company}"}},"pad":"{}"}}}}"#,
        "x".repeat(pad)
    )
    .into_bytes()
}

fn case(class: &'static str, value: Option<Vec<u8>>, expect: Expect) -> Case {
    Case {
        class,
        key: None,
        value,
        headers: Vec::new(),
        codec: "none",
        expect,
    }
}

fn h(k: &[u8], v: Option<&[u8]>) -> (Vec<u8>, Option<Vec<u8>>) {
    (k.to_vec(), v.map(<[u8]>::to_vec))
}

fn cases() -> Vec<Case> {
    let ok = Expect::Envelope("connection.failed");
    let mut cases = vec![
        Case {
            headers: vec![h(b"\xff\xfe-key", Some(b"v")), h(b"webhook-id", Some(b"m1"))],
            ..case("non-utf8 header key", Some(event("e-hk", "c1", 0)), Expect::Dead("invalid_header", false))
        },
        Case {
            headers: vec![h(b"x-bin", Some(b"\xff\x00\xfe"))],
            ..case("non-utf8 header value", Some(event("e-hv", "c1", 0)), ok.clone())
        },
        Case {
            headers: vec![h(b"x-null", None)],
            ..case("null header value", Some(event("e-hn", "c1", 0)), ok.clone())
        },
        case("null value (tombstone)", None, Expect::Dead("null_value", false)),
        case("empty value", Some(Vec::new()), Expect::Dead("invalid_json", false)),
        Case {
            key: Some(Vec::new()),
            ..case("empty key", Some(event("e-ek", "c1", 0)), ok.clone())
        },
        Case {
            key: Some(vec![b'k'; 200_000]),
            ..case("huge key", Some(b"not json".to_vec()), Expect::Dead("invalid_json", false))
        },
        Case {
            headers: (0..1000)
                .map(|i| (format!("h{i}").into_bytes(), Some(b"v".to_vec())))
                .collect(),
            ..case("1,000 headers", Some(event("e-1k", "c1", 0)), ok.clone())
        },
        case("lone surrogate in payload key", Some(br#"{"id":"e-s","eventType":"connection.failed","payload":{"\ud800":1,"referenceCompany":{"id":"c"}}}"#.to_vec()), Expect::Dead("invalid_string", false)),
        case("lone surrogate in legacy Data", Some(br#"{"RuleType":"Rate Limit Reached","AlertId":"a-s","Data":{"\udfff":1}}"#.to_vec()), Expect::Dead("invalid_string", false)),
        case("duplicate key inside payload", Some(br#"{"id":"e-d","eventType":"connection.failed","payload":{"referenceCompany":{"id":"a","id":"b"}}}"#.to_vec()), Expect::Dead("duplicate_key", false)),
        case("eventType naming the dead-letter topic", Some(br#"{"id":"e-r","eventType":"dlq","payload":{}}"#.to_vec()), Expect::CatchAll),
        Case {
            headers: vec![h(b"codat_stream.dlq.reason", Some(b"forged")), h(b"authorization", Some(b"Bearer s3cr3t"))],
            ..case("forged dead-letter header and credentials", Some(b"{".to_vec()), Expect::Dead("invalid_json", false))
        },
        case("body under the producer limit", Some(event("e-990k", "c1", 990_000)), ok.clone()),
        case("body over message.max.bytes, under max_body_bytes", Some(event("e-1m", "c1", 1_000_100)), Expect::Dead("output_too_large", true)),
        case("body over max_body_bytes", Some(event("e-2m", "c1", 1_100_000)), Expect::Dead("body_too_large", true)),
        Case {
            headers: vec![h(b"x-pad", Some(&[b'p'; 150_000]))],
            ..case("envelope grown past the limit by copied headers", Some(event("e-hdr", "c1", 900_000)), Expect::Dead("output_too_large", true))
        },
    ];
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        cases.push(Case {
            codec,
            ..case(
                "compressed batch",
                Some(event(&format!("e-{codec}"), "c2", 2_000)),
                Expect::Envelope("connection.failed"),
            )
        });
        cases.push(Case {
            codec,
            ..case(
                "compressed invalid body",
                Some(b"[1]".to_vec()),
                Expect::Dead("not_an_object", false),
            )
        });
    }
    cases
}

/// Produces each case in a batch of its own with its codec; returns
/// (partition, offset) -> case index.
fn produce_cases(bootstrap: &str, topic: &str, cases: &[Case]) -> HashMap<(i32, i64), usize> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut at = HashMap::new();
    for (i, c) in cases.iter().enumerate() {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("compression.type", c.codec)
            .set("message.max.bytes", "3000000")
            .set("batch.num.messages", "1")
            .set("linger.ms", "0")
            .create()
            .unwrap();
        let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition((i % 2) as i32)
            .headers(owned_headers(&c.headers));
        if let Some(k) = &c.key {
            r = r.key(k.as_slice());
        }
        if let Some(v) = &c.value {
            r = r.payload(v.as_slice());
        }
        let delivery = rt
            .block_on(producer.send(r, Duration::from_secs(30)))
            .unwrap_or_else(|(e, _)| panic!("{}: produce failed: {e}", c.class));
        at.insert((delivery.partition, delivery.offset), i);
    }
    at
}

#[test]
fn hostile_records_never_halt_crash_or_shrink_the_pipeline() {
    let broker = Broker::shared();
    let mut names = Names::new();
    // The dead-letter topic inside the prefix, as with the defaults
    // (`codat.` + `dlq`), so a type can try to name it.
    names.dlq = format!("{}dlq", names.prefix);
    // Records over 1 MiB reach the ingest topic, as on a platform that
    // raised its limit: Kafka's default (1 MiB) would refuse them.
    broker.create_topic_with(&names.ingest, 2, &[("max.message.bytes", "3000000")]);
    let cases = cases();
    let at = produce_cases(&broker.bootstrap(), &names.ingest, &cases);
    assert_eq!(at.len(), cases.len());
    let mut connector = Connector::start(&broker.bootstrap(), &names, &[]);
    connector.wait_started(Duration::from_secs(60));
    let outputs = read_outputs(
        &broker.bootstrap(),
        &names,
        cases.len(),
        Duration::from_secs(90),
    );

    let codec = EnvelopeCodec::new().unwrap();
    let mut seen: HashMap<(i32, i64), Vec<Expect>> = HashMap::new();
    for m in &outputs {
        let (p, o, got) = if m.topic() == names.dlq {
            let p = header_str(m, "codat_stream.dlq.partition")
                .unwrap()
                .parse()
                .unwrap();
            let o = header_str(m, "codat_stream.dlq.offset")
                .unwrap()
                .parse()
                .unwrap();
            let reason = header_str(m, "codat_stream.dlq.reason").unwrap();
            let truncated = header_str(m, "codat_stream.dlq.truncated").is_some();
            assert!(
                support::header(m, "authorization").is_none(),
                "credentials never reach the dead-letter topic"
            );
            (
                p,
                o,
                Expect::Dead(Box::leak(reason.into_boxed_str()), truncated),
            )
        } else {
            let env = codec.decode_single_object(m.payload().unwrap()).unwrap();
            let (p, o) = (env.ingest.partition, env.ingest.offset);
            let got = if m.topic() == names.catch_all {
                Expect::CatchAll
            } else {
                let t = m.topic().strip_prefix(&names.prefix).unwrap();
                Expect::Envelope(Box::leak(t.to_owned().into_boxed_str()))
            };
            (p, o, got)
        };
        seen.entry((p, o)).or_default().push(got);
    }
    let mut classes = 0;
    for (source, i) in &at {
        let c = &cases[*i];
        let got = seen.get(source).cloned().unwrap_or_default();
        assert_eq!(
            got,
            vec![c.expect.clone()],
            "{} ({:?}): outputs {got:?}",
            c.class,
            c.codec
        );
        classes += 1;
    }
    assert_eq!(
        outputs.len(),
        cases.len(),
        "exactly one output per input offset"
    );

    // The group's committed offsets reach the end of each partition.
    let ends = end_offsets(&at);
    wait_for(
        "committed offsets to reach the end",
        Duration::from_secs(30),
        || support::committed_offsets(&broker.bootstrap(), &names.group, &names.ingest, 2) == ends,
    );
    wait_for("/readyz to answer 200", Duration::from_secs(30), || {
        connector.get("/readyz").is_some_and(|(s, _)| s == 200)
    });
    let m = connector.metrics();
    for (reason, n) in [
        ("invalid_header", 1.0),
        ("output_too_large", 2.0),
        ("null_value", 1.0),
    ] {
        assert_eq!(
            m.sum("codat_stream_dead_lettered_total", &[("reason", reason)]),
            n,
            "{reason}"
        );
    }
    assert_eq!(
        m.sum(
            "codat_stream_catch_all_routed_total",
            &[("cause", "reserved_topic")]
        ),
        1.0
    );
    assert!(
        connector.child.try_wait().unwrap().is_none(),
        "the process never exits"
    );
    assert_eq!(connector.lines("panicked").len(), 0);
    eprintln!(
        "hostile suite: {} records sent, {classes} classes checked, {} outputs, restarts: 0",
        cases.len(),
        outputs.len()
    );
    connector.sigterm();
    assert!(connector.wait_exit(Duration::from_secs(30)).success());
}

fn end_offsets(at: &HashMap<(i32, i64), usize>) -> std::collections::BTreeMap<i32, i64> {
    let mut ends: std::collections::BTreeMap<i32, i64> = std::collections::BTreeMap::new();
    for (p, o) in at.keys() {
        let e = ends.entry(*p).or_default();
        *e = (*e).max(o + 1);
    }
    ends
}

/// Issue 9, finding 9: SIGTERM was not noticed during start-up topic
/// creation and registration (about 30 s with the brokers unreachable).
#[test]
fn sigterm_during_start_up_exits_promptly() {
    // Nothing listens there: topic creation can only wait.
    let bootstrap = format!("127.0.0.1:{}", support::free_port());
    let names = Names::new();
    let mut connector = Connector::start(&bootstrap, &names, &[]);
    // /readyz answering "starting" means the signal handlers are installed
    // (before the endpoint binds) and start-up has not finished (it cannot:
    // nothing listens). A log line is no such proof: the one this waited on
    // ("kafka") could match before start-up began.
    wait_for(
        "start-up to be under way (/readyz 503 \"starting\")",
        Duration::from_secs(60),
        || {
            connector
                .get("/readyz")
                .is_some_and(|(status, body)| status == 503 && body.contains("starting"))
        },
    );
    let asked = std::time::Instant::now();
    connector.sigterm();
    let status = connector.wait_exit(Duration::from_secs(10));
    assert!(
        status.success(),
        "exit 0: nothing was consumed, nothing to drain"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "exited {:?} after SIGTERM",
        asked.elapsed()
    );
    assert!(connector.logged("shutdown requested during start-up"));
}
