//! Schema evolution policy: fields are only added, each with a default, so
//! every version stays compatible both ways with every released version:
//! a consumer holding a released version reads what the current schema
//! writes (FORWARD), and the current schema reads what a released version
//! wrote (BACKWARD, the registry's default check). Released versions live
//! in schemas/released/ and never change.

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use codat_stream::envelope_avro::{ENVELOPE_SCHEMA_JSON, EnvelopeCodec, RELEASED_SCHEMAS};
use codat_stream::{IngestMeta, NormalizeOptions, normalize};
use serde_json::Value;

fn current() -> Schema {
    Schema::parse_str(ENVELOPE_SCHEMA_JSON).unwrap()
}

/// Released files are frozen: a change to one is a new version, not an edit.
#[test]
fn released_versions_are_unchanged() {
    assert_eq!(RELEASED_SCHEMAS.len(), RELEASED_FINGERPRINTS.len());
    for ((version, json), (frozen_version, frozen)) in
        RELEASED_SCHEMAS.iter().zip(RELEASED_FINGERPRINTS)
    {
        assert_eq!(version, frozen_version);
        let schema = Schema::parse_str(json).unwrap();
        let fp = schema.fingerprint::<apache_avro::rabin::Rabin>();
        let hex: String = fp.bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex, *frozen,
            "schemas/released/envelope-{version}.avsc changed"
        );
    }
    let on_disk: Vec<_> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/released"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
    assert_eq!(
        on_disk.len(),
        RELEASED_SCHEMAS.len(),
        "every file in schemas/released/ is listed in RELEASED_SCHEMAS"
    );
}

/// CRC-64-AVRO fingerprints of the released versions' canonical forms.
const RELEASED_FINGERPRINTS: &[(&str, &str)] =
    &[("v1", "f307a2109a31908d"), ("v2", "94b1fa65d55b01b8")];

#[test]
fn current_schema_is_compatible_both_ways_with_every_released_version() {
    let now = current();
    for (version, json) in RELEASED_SCHEMAS {
        let released = Schema::parse_str(json).unwrap();
        SchemaCompatibility::can_read(&now, &released).unwrap_or_else(|e| {
            panic!("a consumer holding {version} cannot read current envelopes: {e}")
        });
        SchemaCompatibility::can_read(&released, &now)
            .unwrap_or_else(|e| panic!("the current schema cannot read {version} envelopes: {e}"));
    }
}

#[test]
fn fields_added_since_a_release_have_defaults() {
    let now: Value = serde_json::from_str(ENVELOPE_SCHEMA_JSON).unwrap();
    for (version, json) in RELEASED_SCHEMAS {
        let old: Value = serde_json::from_str(json).unwrap();
        let old_names: Vec<&str> = old["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        for field in now["fields"].as_array().unwrap() {
            let name = field["name"].as_str().unwrap();
            if !old_names.contains(&name) {
                assert!(
                    field.get("default").is_some(),
                    "field {name}, added after {version}, needs a default"
                );
            }
        }
    }
}

/// The check can fail: a breaking change is caught.
#[test]
fn a_breaking_change_is_detected() {
    let mut broken: Value = serde_json::from_str(ENVELOPE_SCHEMA_JSON).unwrap();
    // A new field without a default: the new schema cannot read old data.
    broken["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "tenant", "type": "string"}));
    let broken = Schema::parse_str(&broken.to_string()).unwrap();
    let released = Schema::parse_str(RELEASED_SCHEMAS[0].1).unwrap();
    assert!(SchemaCompatibility::can_read(&released, &broken).is_err());
    // A changed type: a consumer holding the released version cannot read it.
    let mut retyped: Value = serde_json::from_str(ENVELOPE_SCHEMA_JSON).unwrap();
    retyped["fields"][0]["type"] = serde_json::json!("long");
    let retyped = Schema::parse_str(&retyped.to_string()).unwrap();
    assert!(SchemaCompatibility::can_read(&retyped, &released).is_err());
}

/// Real bytes: an envelope written now decodes with each released schema.
#[test]
fn released_readers_decode_current_envelopes() {
    let codec = EnvelopeCodec::new().unwrap();
    let body = br#"{"id":"e-1","eventType":"connection.failed","generatedDate":"2024-08-08T17:10:34.015Z","payload":{"referenceCompany":{"id":"co-1"},"connection":{"id":"c-1"}}}"#;
    let ingest = IngestMeta {
        topic: "in",
        partition: 0,
        offset: 7,
        timestamp_ms: 0,
    };
    let options = NormalizeOptions::default();
    let env = normalize(body, &[] as &[(String, String)], &ingest, &options).unwrap();
    let bytes = codec.encode(&env).unwrap();
    for (version, json) in RELEASED_SCHEMAS {
        let released = Schema::parse_str(json).unwrap();
        let writer = current();
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&writer)
            .reader_schema(&released)
            .build()
            .unwrap();
        let value = reader
            .read_value(&mut &bytes[..])
            .unwrap_or_else(|e| panic!("{version} reader: {e}"));
        let apache_avro::types::Value::Record(fields) = value else {
            panic!("not a record")
        };
        assert!(
            fields
                .iter()
                .any(|(k, v)| k == "id" && *v == apache_avro::types::Value::String("e-1".into()))
        );
    }
}
