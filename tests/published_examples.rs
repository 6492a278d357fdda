//! Every published Codat example (OpenAPI request-body and schema examples,
//! and the JSON in the two founding documents, copied into tests/fixtures/)
//! normalises to the type, ids and payload fields listed in
//! tests/fixtures/expected.tsv, and survives an Avro round trip.

use std::path::Path;

use codat_stream::core::envelope::{Shape, TypeOrigin};
use codat_stream::{EnvelopeCodec, IngestMeta, NormalizeOptions, normalize};
use serde_json::Value;

const INGEST: IngestMeta<'static> = IngestMeta {
    topic: "codat.webhooks.raw",
    partition: 0,
    offset: 0,
    timestamp_ms: 1_700_000_000_000,
};

struct Expected {
    fixture: String,
    event_type: String,
    id: String,
    company_id: String,
    connection_id: String,
    payload_fields: serde_json::Map<String, Value>,
}

fn expectations() -> Vec<Expected> {
    let text = std::fs::read_to_string(fixtures().join("expected.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 6, "bad row: {line}");
            Expected {
                fixture: cols[0].into(),
                event_type: cols[1].into(),
                id: cols[2].into(),
                company_id: cols[3].into(),
                connection_id: cols[4].into(),
                payload_fields: serde_json::from_str(cols[5]).unwrap(),
            }
        })
        .collect()
}

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

/// The value at a dotted path where a numeric segment indexes an array.
fn at<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.')
        .try_fold(v, |v, seg| match seg.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(seg),
        })
}

#[test]
fn every_fixture_file_has_an_expectation() {
    let listed: Vec<String> = expectations().into_iter().map(|e| e.fixture).collect();
    let mut found = 0;
    for dir in ["openapi", "docs"] {
        for entry in std::fs::read_dir(fixtures().join(dir)).unwrap() {
            let name = format!("{dir}/{}", entry.unwrap().file_name().to_string_lossy());
            assert!(listed.contains(&name), "{name} has no row in expected.tsv");
            found += 1;
        }
    }
    // 84 request-body + 14 schema examples in the OpenAPI file, 15 in the docs.
    assert_eq!(found, 113);
    assert_eq!(listed.len(), 113);
}

#[test]
fn every_published_example_normalises_as_expected() {
    let options = NormalizeOptions::default();
    let codec = EnvelopeCodec::new().unwrap();
    for exp in expectations() {
        let body = std::fs::read(fixtures().join(&exp.fixture)).unwrap();
        let env = normalize(&body, &(), &INGEST, &options)
            .unwrap_or_else(|r| panic!("{}: rejected: {r}", exp.fixture));
        let ctx = &exp.fixture;
        assert_eq!(env.event_type, exp.event_type, "{ctx}: type");
        assert_ne!(
            env.type_origin,
            TypeOrigin::CodatStream,
            "{ctx}: all published types are Codat's"
        );
        if exp.id.is_empty() {
            assert_eq!(env.shape, Shape::Generic, "{ctx}");
        } else {
            assert_eq!(env.id, exp.id, "{ctx}: id");
        }
        assert_eq!(
            env.company_id.as_deref().unwrap_or(""),
            exp.company_id,
            "{ctx}: companyId"
        );
        assert_eq!(env.subject, env.company_id, "{ctx}: subject");
        assert_eq!(
            env.connection_id.as_deref().unwrap_or(""),
            exp.connection_id,
            "{ctx}: connectionId"
        );
        let payload: Value = serde_json::from_str(&env.payload).unwrap();
        for (path, want) in &exp.payload_fields {
            assert_eq!(at(&payload, path), Some(want), "{ctx}: payload.{path}");
        }

        let decoded = codec.decode(&codec.encode(&env).unwrap()).unwrap();
        assert_eq!(decoded, env.clone().into_owned(), "{ctx}: Avro round trip");
    }
}

/// Issue 12, item 6: every type the OpenAPI publishes an example for is
/// in the catalog, cited as the OpenAPI's.
#[test]
fn every_openapi_example_type_is_catalogued_from_the_openapi() {
    use codat_stream::core::event_type::{self, CATALOG, Published};
    for entry in std::fs::read_dir(fixtures().join("openapi")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let t = name.split("--").next().unwrap();
        let listed = CATALOG.iter().find(|(c, _)| *c == t).map(|(_, p)| *p);
        match event_type::write_data_type(t) {
            Some(_) => assert!(event_type::is_catalogued(t), "{t}"),
            None if t.contains('.') || t == "AccountCategoriesUpdated" => {
                assert_eq!(listed, Some(Published::OpenApi), "{t}")
            }
            None => {} // a legacy rule name, not an event type
        }
    }
}

#[test]
fn legacy_examples_keep_every_field_somewhere() {
    // Each legacy field must appear in an envelope field, the payload or the
    // legacy section: collect every string/number leaf of the input and look for it.
    let options = NormalizeOptions::default();
    for exp in expectations() {
        let body = std::fs::read(fixtures().join(&exp.fixture)).unwrap();
        let input: Value = serde_json::from_slice(&body).unwrap();
        if input.get("RuleType").is_none() {
            continue;
        }
        let env = normalize(&body, &(), &INGEST, &options).unwrap();
        let everything = serde_json::to_string(&env).unwrap()
            + &env.payload
            + env
                .legacy
                .as_ref()
                .and_then(|l| l.unmapped.as_deref())
                .unwrap_or("");
        let mut leaves = Vec::new();
        collect_leaves(&input, &mut leaves);
        for leaf in leaves {
            assert!(
                everything.contains(&leaf),
                "{}: {leaf} was dropped",
                exp.fixture
            );
        }
    }
}

fn collect_leaves(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.values().for_each(|v| collect_leaves(v, out)),
        Value::Array(a) => a.iter().for_each(|v| collect_leaves(v, out)),
        Value::String(s) => out.push(s.clone()),
        other => out.push(other.to_string()),
    }
}

#[test]
fn legacy_and_event_generations_share_one_payload_layout() {
    // The legacy DataConnectionStatusChanged example and the current
    // connection.connected example describe the same kind of occurrence: a
    // reader of codat.connection.connected finds its fields at the same paths.
    let options = NormalizeOptions::default();
    let read = |f: &str| std::fs::read(fixtures().join(f)).unwrap();
    let legacy_body = read("openapi/DataConnectionStatusChanged--schema-1.json");
    let event_body = read("openapi/connection.connected--Connection-connected.json");
    let legacy = normalize(&legacy_body, &(), &INGEST, &options).unwrap();
    let event = normalize(&event_body, &(), &INGEST, &options).unwrap();
    assert_eq!(legacy.event_type, event.event_type);
    let lp: Value = serde_json::from_str(&legacy.payload).unwrap();
    let ep: Value = serde_json::from_str(&event.payload).unwrap();
    for path in [
        "referenceCompany.id",
        "connection.id",
        "connection.status",
        "connection.integrationKey",
    ] {
        assert!(at(&lp, path).is_some(), "legacy lacks {path}");
        assert!(at(&ep, path).is_some(), "event lacks {path}");
    }
}
