//! The connector with a Schema Registry, against Apache Kafka and
//! a registry speaking the Confluent REST API (tests/support/registry.rs:
//! no real registry server installs from this machine's package sources).
//! Envelopes carry the Confluent wire format with the registered id,
//! subjects are registered once each, Confluent's own Python client
//! (confluent-kafka's AvroDeserializer) decodes them by schema id,
//! `codat-stream decode` does too; a registry outage holds records (not
//! ready, nothing dead-lettered) until it returns; a refusing registry is a
//! clear start-up error.

mod support;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::Duration;

use codat_stream::cli::decode::Decoder;
use codat_stream::config::SchemaRegistrySettings;
use codat_stream::registry::client::RegistryClient;
use rdkafka::Message;
use support::registry::TestRegistry;
use support::*;

/// The Python with confluent-kafka that scripts/test.sh installs.
fn python() -> String {
    std::env::var("CODAT_STREAM_TEST_PYTHON").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/python-venv/bin/python").to_owned()
    })
}

fn fixture_inputs() -> Vec<Input> {
    std::fs::read_to_string(fixtures().join("expected.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            Input::body(std::fs::read(fixtures().join(l.split('\t').next().unwrap())).unwrap())
        })
        .collect()
}

fn registry_env(url: &str) -> Vec<(&'static str, String)> {
    vec![("CODAT_STREAM__SCHEMA_REGISTRY__URL", url.to_owned())]
}

#[test]
fn envelopes_carry_registered_ids_and_confluents_client_decodes_them() {
    let broker = Broker::shared();
    let registry = TestRegistry::start(None);
    let names = Names::new();
    broker.create_topic(&names.ingest, 2);
    let mut inputs = fixture_inputs();
    inputs.push(Input::body("not json"));
    produce(&broker.bootstrap(), &names.ingest, &inputs);

    let env = registry_env(&registry.url());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut connector = Connector::start(&broker.bootstrap(), &names, &env);
    let out = connector.expect_outputs(&broker.bootstrap(), &names, inputs.len());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = RegistryClient::new(&SchemaRegistrySettings {
        url: registry.url(),
        ..Default::default()
    })
    .unwrap();
    let mut decoder = Decoder::new(Some(client)).unwrap();
    let mut envelope_topics = HashSet::new();
    // Per record, not per id (the published examples share a few ids): how
    // many envelopes of each (topic, id, type) our decoder read.
    let mut ours: HashMap<(String, String, String), usize> = HashMap::new();
    for m in &out {
        let value = m.payload().unwrap();
        if m.topic() == names.dlq {
            assert_eq!(value, b"not json", "dead letters stay the raw input");
            continue;
        }
        assert_eq!(value[0], 0, "Confluent magic byte");
        let id = u32::from_be_bytes(value[1..5].try_into().unwrap());
        assert_eq!(
            Some(id),
            registry.latest_id(&format!("{}-value", m.topic())),
            "the id registered under <topic>-value"
        );
        let env = rt.block_on(decoder.decode(value)).unwrap();
        assert_eq!(
            header_str(m, "ce_type").as_deref(),
            Some(env.event_type.as_ref())
        );
        envelope_topics.insert(m.topic().to_owned());
        *ours
            .entry((
                m.topic().to_owned(),
                env.id.to_string(),
                env.event_type.to_string(),
            ))
            .or_default() += 1;
    }
    // Each subject registered once (start-up topics plus first uses), never per record.
    let subjects = registry.subjects();
    assert_eq!(
        registry.requests("POST /subjects/*/versions"),
        subjects.len()
    );
    for t in &envelope_topics {
        assert!(
            subjects.contains(&format!("{t}-value")),
            "{t} has a subject"
        );
    }
    assert!(
        !subjects.iter().any(|s| s.starts_with(&names.dlq)),
        "no subject for raw dead letters"
    );

    // Confluent's own client decodes the records by schema id.
    let mut topics: Vec<&str> = envelope_topics.iter().map(String::as_str).collect();
    topics.sort();
    let py = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/confluent_decode.py"
        ))
        .args([
            "--bootstrap",
            &broker.bootstrap(),
            "--registry",
            &registry.url(),
        ])
        .args([
            "--topics",
            &topics.join(","),
            "--expect",
            &(inputs.len() - 1).to_string(),
        ])
        .output()
        .unwrap_or_else(|e| panic!("{} (scripts/test.sh creates it): {e}", python()));
    let decoded = json_lines(&py, "confluent-kafka decoding");
    assert_eq!(decoded.len(), inputs.len() - 1);
    let mut theirs: HashMap<(String, String, String), usize> = HashMap::new();
    for d in &decoded {
        let field = |k: &str| d[k].as_str().unwrap().to_owned();
        *theirs
            .entry((field("topic"), field("id"), field("type")))
            .or_default() += 1;
    }
    assert_eq!(
        theirs, ours,
        "Confluent's client reads the same envelopes, record for record"
    );
    for d in &decoded {
        let topic = d["topic"].as_str().unwrap();
        assert_eq!(
            topic,
            format!("{}{}", names.prefix, d["type"].as_str().unwrap()),
            "type field decoded"
        );
    }

    // `codat-stream decode` resolves ids through the registry too.
    let topic = topics[0];
    let cli = Command::new(env!("CARGO_BIN_EXE_codat-stream"))
        .args(["decode", "--topic", topic, "--idle-ms", "3000"])
        .env_clear()
        .env("CODAT_STREAM__KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap())
        .env("CODAT_STREAM__SCHEMA_REGISTRY__URL", registry.url())
        .output()
        .unwrap();
    let lines = json_lines(&cli, "codat-stream decode");
    let expected = out.iter().filter(|m| m.topic() == topic).count();
    assert_eq!(lines.len(), expected);
    for l in &lines {
        assert_eq!(l["record"]["topic"], topic);
        assert_eq!(
            format!(
                "{}{}",
                names.prefix,
                l["envelope"]["type"].as_str().unwrap()
            ),
            topic
        );
    }

    connector.sigterm();
    assert_eq!(connector.wait_exit(Duration::from_secs(30)).code(), Some(0));
}

#[test]
fn a_registry_outage_holds_records_and_readiness_until_it_returns() {
    let broker = Broker::shared();
    let registry = TestRegistry::start(None);
    let mut proxy = Proxy::new(registry.port);
    proxy.up();
    let names = Names::new();
    broker.create_topic(&names.ingest, 1);
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let connector = Connector::start(
        &broker.bootstrap(),
        &names,
        &[
            ("CODAT_STREAM__SCHEMA_REGISTRY__URL", url.as_str()),
            ("CODAT_STREAM__SCHEMA_REGISTRY__MAX_ATTEMPTS", "2"),
            ("CODAT_STREAM__SCHEMA_REGISTRY__REQUEST_TIMEOUT_MS", "1000"),
        ],
    );
    connector.wait_started(Duration::from_secs(60));
    assert_eq!(connector.get("/readyz").map(|r| r.0), Some(200));

    // The registry goes away; a record of a type with no subject yet arrives.
    proxy.down();
    let new_type = "custom.thing.happened";
    let held: Vec<Input> = (1..=3)
        .map(|i| {
            Input::body(format!(
                r#"{{"id":"held-{i}","eventType":"{new_type}","payload":{{"referenceCompany":{{"id":"co-9"}}}}}}"#
            ))
        })
        .collect();
    produce(&broker.bootstrap(), &names.ingest, &held);
    wait_for(
        "/readyz to say the registry is unavailable",
        Duration::from_secs(30),
        || {
            connector
                .get("/readyz")
                .is_some_and(|(s, b)| s == 503 && b.contains("schema registry unavailable"))
        },
    );
    assert!(
        connector
            .metrics()
            .sum("codat_stream_schema_registry_errors_total", &[])
            >= 1.0
    );
    assert_eq!(
        connector.get("/healthz").map(|r| r.0),
        Some(200),
        "paused, not dead"
    );

    // Held, not dead-lettered, nothing committed past them.
    let m = connector.metrics();
    assert_eq!(m.sum("codat_stream_dead_lettered_total", &[]), 0.0);
    assert_eq!(m.sum("codat_stream_envelopes_produced_total", &[]), 0.0);
    assert_eq!(
        committed_total(&broker.bootstrap(), &names.group, &names.ingest, 1),
        0
    );

    proxy.up();
    // Every record acknowledged and committed: all outputs exist now.
    wait_for("all three committed", Duration::from_secs(60), || {
        committed_total(&broker.bootstrap(), &names.group, &names.ingest, 1) == 3
    });
    let m = connector.metrics();
    assert_eq!(
        m.sum("codat_stream_envelopes_produced_total", &[]),
        3.0,
        "each record produced once"
    );
    assert_eq!(m.sum("codat_stream_dead_lettered_total", &[]), 0.0);
    let out = read_outputs(&broker.bootstrap(), &names, 3, Duration::from_secs(60));
    let topics: HashMap<&str, usize> = out.iter().fold(HashMap::new(), |mut acc, m| {
        *acc.entry(m.topic()).or_default() += 1;
        acc
    });
    assert_eq!(
        topics,
        HashMap::from([(format!("{}{new_type}", names.prefix).as_str(), 3)]),
        "delivered to its own topic once the registry returned, nothing dead-lettered"
    );
    let mut held_ids: Vec<String> = out
        .iter()
        .map(|m| header_str(m, "ce_id").unwrap())
        .collect();
    held_ids.sort();
    assert_eq!(held_ids, ["held-1", "held-2", "held-3"]);
    for m in &out {
        let value = m.payload().unwrap();
        assert_eq!(value[0], 0);
        assert_eq!(
            Some(u32::from_be_bytes(value[1..5].try_into().unwrap())),
            registry.latest_id(&format!("{}{new_type}-value", names.prefix))
        );
    }
    wait_for("ready again", Duration::from_secs(10), || {
        connector.get("/readyz").map(|r| r.0) == Some(200)
    });
}

#[test]
fn a_registry_refusing_at_start_up_is_a_clear_error() {
    let broker = Broker::shared();
    let registry = TestRegistry::start(Some(("svc", "right")));
    let names = Names::new();
    broker.create_topic(&names.ingest, 1);
    let url = registry.url();
    let mut connector = Connector::start(
        &broker.bootstrap(),
        &names,
        &[
            ("CODAT_STREAM__SCHEMA_REGISTRY__URL", url.as_str()),
            ("CODAT_STREAM__SCHEMA_REGISTRY__BASIC_AUTH_USER", "svc"),
            (
                "CODAT_STREAM__SCHEMA_REGISTRY__BASIC_AUTH_PASSWORD",
                "wrong-password",
            ),
        ],
    );
    let status = connector.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1));
    let log = connector.raw_log_text();
    assert!(log.contains("cannot register the envelope schema"), "{log}");
    // README: "naming the subject and the registry's error code".
    assert!(log.contains("HTTP 401, error 401"), "{log}");
    let subject = regex_subject(&log);
    assert!(
        subject.ends_with("-value")
            && (subject.starts_with(&names.prefix) || subject.starts_with(&names.catch_all)),
        "the subject of one of the deployment's topics: {subject:?}; {log}"
    );
    assert!(!log.contains("wrong-password"), "no secret in the log");
}

/// The subject named in "registering subject SUBJECT".
fn regex_subject(log: &str) -> String {
    let at = log
        .find("registering subject ")
        .unwrap_or_else(|| panic!("no subject named: {log}"));
    log[at + "registering subject ".len()..]
        .split(|c: char| c == ':' || c.is_whitespace() || c == '"')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn record_name_strategy_registers_one_subject_for_every_topic() {
    let broker = Broker::shared();
    let registry = TestRegistry::start(None);
    let names = Names::new();
    broker.create_topic(&names.ingest, 1);
    let inputs: Vec<Input> = fixture_inputs().into_iter().take(10).collect();
    produce(&broker.bootstrap(), &names.ingest, &inputs);
    let url = registry.url();
    let connector = Connector::start(
        &broker.bootstrap(),
        &names,
        &[
            ("CODAT_STREAM__SCHEMA_REGISTRY__URL", url.as_str()),
            (
                "CODAT_STREAM__SCHEMA_REGISTRY__SUBJECT_NAME_STRATEGY",
                "record",
            ),
        ],
    );
    let out = connector.expect_outputs(&broker.bootstrap(), &names, inputs.len());
    assert_eq!(
        registry.subjects(),
        vec!["io.codatstream.Envelope".to_owned()]
    );
    assert_eq!(
        registry.requests("POST /subjects/*/versions"),
        1,
        "registered once, cached for every topic"
    );
    let id = registry.latest_id("io.codatstream.Envelope").unwrap();
    let topics: HashSet<&str> = out.iter().map(|m| m.topic()).collect();
    assert!(topics.len() > 1, "several topics share the subject");
    for m in &out {
        let value = m.payload().unwrap();
        assert_eq!(value[0], 0);
        assert_eq!(u32::from_be_bytes(value[1..5].try_into().unwrap()), id);
    }
}

/// README: registry requests time out and are retried on 5xx; an outage
/// mid-stream holds records (not dead-lettered, nothing committed) with
/// `/readyz` 503 until the registry answers. Here the registry does not go
/// away: it answers 503, or reads requests and never answers.
#[test]
fn a_registry_answering_5xx_or_not_at_all_holds_records_until_it_recovers() {
    use support::registry::Failure;
    for failure in [Failure::ServerError, Failure::Silent] {
        let broker = Broker::shared();
        let registry = TestRegistry::start(None);
        let names = Names::new();
        broker.create_topic(&names.ingest, 1);
        let connector = Connector::start(
            &broker.bootstrap(),
            &names,
            &[
                (
                    "CODAT_STREAM__SCHEMA_REGISTRY__URL",
                    registry.url().as_str(),
                ),
                ("CODAT_STREAM__SCHEMA_REGISTRY__MAX_ATTEMPTS", "2"),
                ("CODAT_STREAM__SCHEMA_REGISTRY__REQUEST_TIMEOUT_MS", "1000"),
            ],
        );
        connector.wait_started(Duration::from_secs(60));
        registry.fail(Some(failure));
        let held =
            Input::body(r#"{"id":"held-5xx","eventType":"custom.registry.trouble","payload":{}}"#);
        produce(&broker.bootstrap(), &names.ingest, &[held]);
        wait_for("the record to be held", Duration::from_secs(30), || {
            connector
                .get("/readyz")
                .is_some_and(|(s, b)| s == 503 && b.contains("schema registry unavailable"))
                && connector
                    .metrics()
                    .sum("codat_stream_schema_registry_errors_total", &[])
                    >= 2.0
        });
        let m = connector.metrics();
        assert_eq!(
            m.sum("codat_stream_dead_lettered_total", &[]),
            0.0,
            "{failure:?}"
        );
        assert_eq!(
            committed_total(&broker.bootstrap(), &names.group, &names.ingest, 1),
            0,
            "{failure:?}: nothing committed past a held record"
        );
        registry.fail(None);
        wait_for("the held record committed", Duration::from_secs(60), || {
            committed_total(&broker.bootstrap(), &names.group, &names.ingest, 1) == 1
        });
        let out = read_outputs(&broker.bootstrap(), &names, 1, Duration::from_secs(30));
        assert_eq!(out.len(), 1, "{failure:?}");
        assert_eq!(output_id(&out[0], &names.dlq), "held-5xx");
        assert_eq!(connector.get("/readyz").map(|r| r.0), Some(200));
    }
}
