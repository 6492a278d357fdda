//! Against Apache Kafka (the shared test broker): every published example lands on the
//! topic of its type with the right key and headers, decodable with the
//! schema in schemas/; bad bodies land on the dead-letter topic byte for
//! byte with reason headers; SIGTERM exits 0.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use apache_avro::Schema;
use codat_stream::Envelope;
use rdkafka::Message;
use support::*;

fn expected_rows() -> Vec<(String, String, String, String)> {
    std::fs::read_to_string(fixtures().join("expected.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (
                c[0].to_owned(),
                c[1].to_owned(),
                c[2].to_owned(),
                c[3].to_owned(),
            )
        })
        .collect()
}

#[test]
fn fixtures_route_by_type_and_bad_bodies_are_dead_lettered() {
    let broker = Broker::shared();
    let names = Names::new();
    broker.create_topic(&names.ingest, 3);

    // Every published example, keyed and with a webhook-id header.
    let mut inputs = Vec::new();
    let mut expect: HashMap<String, (String, String)> = HashMap::new(); // webhook-id -> (type, company)
    // webhook-id -> the output key, worked out from the fixture table and
    // the body here, not by the code under test: the company id, else the
    // legacy ClientId, else the event id (for generic bodies without one,
    // the webhook-id header).
    let mut expect_key: HashMap<String, String> = HashMap::new();
    for (i, (fixture, ty, id, company)) in expected_rows().into_iter().enumerate() {
        let webhook_id = format!("msg_fixture_{i}");
        let body = std::fs::read(fixtures().join(&fixture)).unwrap();
        let client = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["ClientId"].as_str().map(str::to_owned));
        let key = if !company.is_empty() {
            company.clone()
        } else if let Some(client) = client {
            client
        } else if !id.is_empty() {
            id
        } else {
            webhook_id.clone()
        };
        expect_key.insert(webhook_id.clone(), key);
        inputs.push(Input {
            key: Some(format!("in-key-{i}").into_bytes()),
            value: body,
            headers: vec![
                ("webhook-id".into(), Some(webhook_id.clone().into_bytes())),
                ("Authorization".into(), Some(b"Bearer secret".to_vec())),
            ],
        });
        expect.insert(webhook_id, (ty, company));
    }
    // Bodies that must be dead-lettered untouched, with the reason.
    let oversize = format!(r#"{{"type":"hello.world","data":"{}"}}"#, "x".repeat(5000));
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"\xff\xfe\x00 not utf-8".to_vec(), "invalid_utf8"),
        (b"this is not json".to_vec(), "invalid_json"),
        (b"[1,2,3]".to_vec(), "not_an_object"),
        (br#"{"hello":"world"}"#.to_vec(), "unknown_shape"),
        (
            br#"{"id":"x","eventType":"../../etc","payload":{}}"#.to_vec(),
            "invalid_event_type",
        ),
        (oversize.into_bytes(), "body_too_large"),
    ];
    for (i, (body, _)) in bad.iter().enumerate() {
        inputs.push(Input {
            key: Some(format!("bad-key-{i}").into_bytes()),
            value: body.clone(),
            headers: vec![
                ("x-origin".into(), Some(b"test".to_vec())),
                ("x-null".into(), None),
            ],
        });
    }
    produce(&broker.bootstrap(), &names.ingest, &inputs);

    let mut connector = Connector::start(
        &broker.bootstrap(),
        &names,
        &[("CODAT_STREAM__NORMALIZE__MAX_BODY_BYTES", "4096")],
    );
    let out = connector.expect_outputs(&broker.bootstrap(), &names, inputs.len());

    let avsc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/envelope.avsc"
    ))
    .unwrap();
    let schema = Schema::parse_str(&avsc).unwrap();
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
        .build()
        .unwrap();
    // The single-object header carries the spec's fingerprint (what fastavro
    // and Java compute; tests/fastavro_interop.rs checks it against fastavro),
    // not apache-avro's, so the header is checked here and the datum decoded
    // with apache-avro's datum reader and the .avsc file.
    let mut so_header = vec![0xC3, 0x01];
    so_header.extend(codat_stream::core::avro_fingerprint::fingerprint(&avsc).unwrap());
    let mut dead = Vec::new();
    for m in &out {
        if m.topic() == names.dlq {
            dead.push(m);
            continue;
        }
        let payload = m.payload().unwrap();
        assert_eq!(&payload[..10], so_header.as_slice(), "single-object header");
        let value = reader.read_value(&mut &payload[10..]).unwrap();
        let env: Envelope<'static> = apache_avro::from_value(&value).unwrap();
        let webhook_id = header_str(m, "webhook-id").expect("ingest headers are carried over");
        let (ty, company) = &expect[&webhook_id];
        assert_eq!(&env.event_type, ty);
        assert_eq!(m.topic(), format!("{}{}", names.prefix, ty));
        assert_eq!(env.company_id.as_deref().unwrap_or(""), company);
        assert_eq!(
            m.key().map(String::from_utf8_lossy).as_deref(),
            Some(expect_key[&webhook_id].as_str()),
            "key = company, else client, else id ({webhook_id})"
        );
        assert_eq!(header_str(m, "ce_id").as_deref(), Some(env.id.as_ref()));
        assert_eq!(header_str(m, "ce_type").as_deref(), Some(ty.as_str()));
        assert_eq!(header_str(m, "ce_specversion").as_deref(), Some("1.0"));
        assert_eq!(
            header_str(m, "ce_source").as_deref(),
            Some("urn:codat:webhooks")
        );
        assert!(header_str(m, "ce_time").is_some());
        assert_eq!(
            header_str(m, "ce_subject"),
            env.company_id.as_deref().map(str::to_owned)
        );
        assert_eq!(
            header_str(m, "content-type").as_deref(),
            Some("application/avro")
        );
        assert_eq!(
            header(m, "Authorization"),
            None,
            "credentials are not copied to outputs"
        );
        assert_eq!(env.ingest.topic, names.ingest);
        assert_eq!(env.ingest.webhook_id.as_deref(), Some(webhook_id.as_str()));
    }
    assert_eq!(dead.len(), bad.len());
    for m in dead {
        let (body, reason) = bad
            .iter()
            .find(|(b, _)| m.payload() == Some(b.as_slice()))
            .expect("dead letter is byte-identical to an input");
        assert_eq!(
            header_str(m, "codat_stream.dlq.reason").as_deref(),
            Some(*reason)
        );
        assert!(header_str(m, "codat_stream.dlq.message").is_some_and(|s| !s.is_empty()));
        assert_eq!(
            header_str(m, "codat_stream.dlq.topic").as_deref(),
            Some(names.ingest.as_str())
        );
        assert!(header_str(m, "codat_stream.dlq.offset").is_some_and(|o| o.parse::<i64>().is_ok()));
        assert!(header_str(m, "codat_stream.dlq.partition").is_some());
        assert!(header_str(m, "codat_stream.dlq.timestamp").is_some());
        assert_eq!(
            header_str(m, "x-origin").as_deref(),
            Some("test"),
            "original headers kept"
        );
        let i = bad.iter().position(|(b, _)| b == body).unwrap();
        assert_eq!(
            m.key(),
            Some(format!("bad-key-{i}").as_bytes()),
            "original key kept"
        );
    }

    // The metrics count exactly what was sent: per type, per reason.
    let mut per_type: HashMap<&str, f64> = HashMap::new();
    for (ty, _) in expect.values() {
        *per_type.entry(ty.as_str()).or_default() += 1.0;
    }
    let total = inputs.len() as f64;
    wait_for("every output counted", Duration::from_secs(30), || {
        let m = connector.metrics();
        m.sum("codat_stream_envelopes_produced_total", &[])
            + m.sum("codat_stream_dead_lettered_total", &[])
            == total
    });
    let m = connector.metrics();
    assert_eq!(
        m.sum(
            "codat_stream_records_consumed_total",
            &[("topic", &names.ingest)]
        ),
        total
    );
    assert!(m.sum("codat_stream_consumed_bytes_total", &[]) > 0.0);
    let counted_types = m.label_values("codat_stream_envelopes_produced_total", "event_type");
    let mut sent_types: Vec<String> = per_type.keys().map(|t| t.to_string()).collect();
    sent_types.sort();
    assert_eq!(counted_types, sent_types);
    for (ty, n) in &per_type {
        assert_eq!(
            m.sum(
                "codat_stream_envelopes_produced_total",
                &[("event_type", ty)]
            ),
            *n,
            "envelopes of {ty}"
        );
    }
    assert!(
        m.sum(
            "codat_stream_envelopes_produced_total",
            &[("shape", "legacy")]
        ) > 0.0
    );
    assert!(
        m.sum(
            "codat_stream_envelopes_produced_total",
            &[("shape", "event")]
        ) > 0.0
    );
    assert!(
        m.sum(
            "codat_stream_envelopes_produced_total",
            &[("shape", "generic")]
        ) > 0.0
    );
    for (_, reason) in &bad {
        assert_eq!(
            m.sum("codat_stream_dead_lettered_total", &[("reason", reason)]),
            1.0,
            "dead letters for {reason}"
        );
        assert_eq!(
            m.sum("codat_stream_parse_failures_total", &[("reason", reason)]),
            1.0,
            "parse failures for {reason}"
        );
    }
    assert_eq!(
        m.sum("codat_stream_dead_lettered_total", &[]),
        bad.len() as f64
    );
    assert_eq!(
        m.sum("codat_stream_processing_latency_seconds_count", &[]),
        total
    );
    assert_eq!(
        m.sum("codat_stream_event_age_seconds_count", &[]),
        total - bad.len() as f64
    );
    assert_eq!(m.sum("codat_stream_in_flight_records", &[]), 0.0);
    assert!(m.sum("codat_stream_rebalances_total", &[("kind", "assign")]) >= 1.0);
    assert!(m.sum("codat_stream_assigned_partitions", &[]) >= 1.0);
    assert_eq!(m.sum("codat_stream_ready", &[]), 1.0);
    // librdkafka statistics and commits arrive on their own intervals.
    wait_for(
        "librdkafka statistics and commits",
        Duration::from_secs(30),
        || {
            let m = connector.metrics();
            m.has("codat_stream_kafka_broker_rtt_seconds")
                && m.has("codat_stream_consumer_lag")
                && m.sum("codat_stream_offset_commits_total", &[]) >= 1.0
        },
    );
    assert_eq!(connector.get("/healthz").map(|r| r.0), Some(200));
    assert_eq!(connector.get("/readyz").map(|r| r.0), Some(200));

    connector.sigterm();
    let status = connector.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(0),
        "graceful exit; log: {}",
        connector.raw_log_text()
    );
    assert!(connector.logged("drained"));
}

/// Output topics are created at start-up with the admin API, with the
/// partitions, replication factor and configs of `[topics]`: the dead-letter
/// and catch-all topics and one per known event type, before any input.
/// With `topics.create = false` none is created.
#[test]
fn output_topics_are_created_at_start_up_as_configured_or_not_at_all() {
    let broker = Broker::shared();
    let names = Names::new();
    broker.create_topic(&names.ingest, 1);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("codat-stream.toml");
    std::fs::write(
        &config,
        "[topics]\nreplication_factor = 1\n[topics.configs]\n\"retention.ms\" = \"86400000\"\n",
    )
    .unwrap();
    let c = Connector::start_with_config(
        &broker.bootstrap(),
        &names,
        &[("CODAT_STREAM__TOPICS__PARTITIONS", "3")],
        Some(&config),
    );
    c.wait_started(Duration::from_secs(60));
    let metadata = cluster_metadata(&broker.bootstrap());
    let partitions = |topic: &str| {
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().len())
    };
    let known = format!("{}connection.failed", names.prefix);
    for topic in [&names.dlq, &names.catch_all, &known] {
        assert_eq!(
            partitions(topic),
            Some(3),
            "{topic} created with 3 partitions"
        );
    }
    // The configs, as the broker describes them.
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .create()
            .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let described = rt
        .block_on(admin.describe_configs(
            &[rdkafka::admin::ResourceSpecifier::Topic(&names.dlq)],
            &rdkafka::admin::AdminOptions::new(),
        ))
        .unwrap();
    let retention = described[0]
        .as_ref()
        .ok()
        .and_then(|r| r.get("retention.ms").and_then(|e| e.value.clone()));
    assert_eq!(
        retention.as_deref(),
        Some("86400000"),
        "topics.configs applied"
    );
    drop(c);

    let other = Names::new();
    broker.create_topic(&other.ingest, 1);
    let c = Connector::start(
        &broker.bootstrap(),
        &other,
        &[("CODAT_STREAM__TOPICS__CREATE", "false")],
    );
    c.wait_started(Duration::from_secs(60));
    let metadata = cluster_metadata(&broker.bootstrap());
    assert!(
        !metadata
            .topics()
            .iter()
            .any(|t| is_output(&other, t.name())),
        "topics.create = false creates nothing"
    );
}
