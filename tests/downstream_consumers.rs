//! The other half of the contract: the consumer examples a service team
//! copies (`examples/consumers/`, Java, Python and Go) read what the
//! connector wrote to `connection.failed` on Apache Kafka, in both value
//! formats, including records written with the previous released envelope
//! schema, and commit what they handled.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};

use apache_avro::Schema;
use apache_avro::types::Value;
use codat_stream::core::avro_fingerprint;
use codat_stream::core::envelope_avro::RELEASED_SCHEMAS;
use serde_json::json;
use support::consumers::{Example, examples, repo};
use support::registry::TestRegistry;
use support::*;

/// Events the connector normalises from webhooks, per deployment.
const FROM_WEBHOOKS: usize = 4;
/// Events written directly with the previous released schema, per deployment.
const PREVIOUS_VERSION: usize = 2;
/// Partitions of the output topics (`Connector::start` asks for 2).
const PARTITIONS: i32 = 2;

/// One `connection.failed` event: the line every example prints for it and
/// the webhook body that carries it.
struct Event {
    id: String,
    company: String,
    connection: String,
    time_ms: i64,
}

impl Event {
    fn new(tag: &str, i: usize) -> Event {
        Event {
            id: format!("{tag}-evt-{i}"),
            company: format!("{tag}-company-{}", i % 3),
            connection: format!("{tag}-conn-{i}"),
            // 2024-08-08T17:10:34.015Z plus i minutes.
            time_ms: 1_723_137_034_015 + i as i64 * 60_000,
        }
    }

    fn line(&self) -> String {
        format!(
            "company={} connection={} time={} id={}",
            self.company, self.connection, self.time_ms, self.id
        )
    }

    fn webhook(&self) -> Input {
        let date =
            time::OffsetDateTime::from_unix_timestamp_nanos(self.time_ms as i128 * 1_000_000)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
        let body = json!({
            "id": self.id,
            "eventType": "connection.failed",
            "generatedDate": date,
            "payload": {
                "referenceCompany": {"id": self.company},
                "connection": {"id": self.connection, "status": "PendingAuth"}
            }
        });
        Input {
            key: Some(self.company.clone().into_bytes()),
            value: body.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }

    /// The event as the previous schema version's writer encoded it: an
    /// Avro datum of `schema` (only fields that version has).
    fn previous_datum(&self, schema: &Schema) -> Vec<u8> {
        let envelope = json!({
            "id": self.id, "idSource": "BODY", "type": "connection.failed",
            "typeOrigin": "CODAT_CATALOG", "source": "urn:codat:webhooks",
            "specversion": "1.0", "time": self.time_ms, "timeSource": "EVENT",
            "subject": self.company, "companyId": self.company,
            "connectionId": self.connection, "clientId": null, "dataType": null,
            "shape": "EVENT", "legacyRuleType": null, "legacy": null,
            "extensions": null, "datacontenttype": "application/json",
            "payload": json!({"connection": {"id": self.connection}}).to_string(),
            "ingest": {"topic": "codat.webhooks.raw", "partition": 0, "offset": 0,
                       "timestamp": self.time_ms, "webhookId": null},
        });
        let value = Value::try_from(envelope)
            .and_then(|v| v.resolve(schema))
            .expect("the envelope fits the previous schema");
        apache_avro::writer::datum::GenericDatumWriter::builder(schema)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap()
    }
}

/// The released schema before the current one: (name, JSON).
fn previous_schema() -> (&'static str, &'static str) {
    let n = RELEASED_SCHEMAS.len();
    assert!(
        n >= 2,
        "no previous envelope version to prove evolution with"
    );
    RELEASED_SCHEMAS[n - 2]
}

/// Registers `schema` under `subject` (as a connector still on that version
/// would, mid rolling upgrade); returns its id.
fn register(registry: &TestRegistry, subject: &str, schema: &str) -> u32 {
    let body = json!({ "schema": schema }).to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", registry.port)).unwrap();
    write!(
        stream,
        "POST /subjects/{subject}/versions HTTP/1.0\r\nHost: registry\r\n\
         Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    let id: serde_json::Value = serde_json::from_str(body).unwrap();
    id["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("registry refused the previous schema: {answer}")) as u32
}

/// The previous version's records in the deployment's framing.
fn previous_version_records(
    events: &[Event],
    registry: Option<(&TestRegistry, &str)>,
) -> Vec<Input> {
    let (_, json) = previous_schema();
    let schema = Schema::parse_str(json).unwrap();
    let header: Vec<u8> = match registry {
        Some((registry, topic)) => {
            let id = register(registry, &format!("{topic}-value"), json);
            [&[0u8][..], &id.to_be_bytes()].concat()
        }
        None => [
            &[0xC3, 0x01][..],
            &avro_fingerprint::fingerprint(json).unwrap(),
        ]
        .concat(),
    };
    events
        .iter()
        .map(|e| Input {
            key: Some(e.company.clone().into_bytes()),
            value: [header.clone(), e.previous_datum(&schema)].concat(),
            headers: Vec::new(),
        })
        .collect()
}

/// One deployment of the connector, fed webhooks, plus records of the
/// previous schema version written to its `connection.failed` topic.
struct Deployment {
    topic: String,
    expected: BTreeSet<String>,
    _connector: Connector,
}

fn deploy(tag: &str, registry: Option<&TestRegistry>) -> Deployment {
    let broker = Broker::shared();
    let bootstrap = broker.bootstrap();
    let names = Names::new();
    broker.create_topic(&names.ingest, 1);
    let topic = format!("{}connection.failed", names.prefix);
    let url = registry.map(TestRegistry::url);
    let env: Vec<(&str, &str)> = url
        .iter()
        .map(|u| ("CODAT_STREAM__SCHEMA_REGISTRY__URL", u.as_str()))
        .collect();
    let connector = Connector::start(&bootstrap, &names, &env);
    let events: Vec<Event> = (0..FROM_WEBHOOKS + PREVIOUS_VERSION)
        .map(|i| Event::new(tag, i))
        .collect();
    let (current, previous) = events.split_at(FROM_WEBHOOKS);
    let webhooks: Vec<Input> = current.iter().map(Event::webhook).collect();
    produce(&bootstrap, &names.ingest, &webhooks);
    let out = connector.expect_outputs(&bootstrap, &names, FROM_WEBHOOKS);
    assert!(out.iter().all(|m| rdkafka::Message::topic(m) == topic));
    let older = previous_version_records(previous, registry.map(|r| (r, topic.as_str())));
    produce(&bootstrap, &topic, &older);
    Deployment {
        topic,
        expected: events.iter().map(Event::line).collect(),
        _connector: connector,
    }
}

/// Runs `example` on `topic` until it printed every expected event; checks
/// the lines and that its group committed past every record.
fn consume(example: &Example, d: &Deployment, reader: &str, registry: Option<&str>) {
    let group = unique(&format!("svc-{}", example.language));
    let mut args: Vec<String> = [
        "--bootstrap",
        &Broker::shared().bootstrap(),
        "--topic",
        &d.topic,
        "--group",
        &group,
        "--reader-schema",
        reader,
        "--schemas",
        "schemas/released",
        "--max",
        &d.expected.len().to_string(),
        "--timeout-ms",
        "90000",
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(url) = registry {
        args.extend(["--registry".to_owned(), url.to_owned()]);
    }
    let what = format!(
        "the {} consumer on {} (reader {reader})",
        example.language, d.topic
    );
    let out = example.command(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what} exited {}:\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<&str> = stdout.lines().collect();
    let distinct: BTreeSet<String> = printed.iter().map(|l| (*l).to_owned()).collect();
    assert_eq!(distinct, d.expected, "{what}: the events printed");
    assert_eq!(
        printed.len(),
        d.expected.len(),
        "{what}: one line per event"
    );
    let committed = committed_total(&Broker::shared().bootstrap(), &group, &d.topic, PARTITIONS);
    assert_eq!(
        committed as usize,
        d.expected.len(),
        "{what}: committed past every handled record"
    );
}

#[test]
fn java_python_and_go_consumers_read_both_formats_and_the_previous_schema_version() {
    let examples = examples();
    let registry = TestRegistry::start(None);
    let single_object = deploy("so", None);
    let confluent = deploy("cf", Some(&registry));
    let current = repo().join("schemas/envelope.avsc").display().to_string();
    let (previous_name, _) = previous_schema();
    let previous = repo()
        .join(format!("schemas/released/envelope-{previous_name}.avsc"))
        .display()
        .to_string();
    let url = registry.url();
    let (so, cf, current, previous, url) = (&single_object, &confluent, &current, &previous, &url);
    std::thread::scope(|s| {
        for example in examples {
            // Built with the current schema: reads its own and older writers.
            s.spawn(move || consume(example, so, current, None));
            // A service not rebuilt since the previous version: reads newer writers.
            s.spawn(move || consume(example, so, previous, None));
            s.spawn(move || consume(example, cf, current, Some(url)));
        }
    });
}
