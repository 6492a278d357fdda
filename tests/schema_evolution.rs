//! Schema evolution policy: fields are only added, each with a default, so
//! every version stays compatible both ways with every released version:
//! a consumer holding a released version reads what the current schema
//! writes (FORWARD), and the current schema reads what a released version
//! wrote (BACKWARD, the registry's default check). Released versions live
//! in schemas/released/ and never change: each file's bytes are pinned by
//! SHA-256, so even a `default`, `doc` or `logicalType` edit (which Avro's
//! canonical form, and so its fingerprint, ignores) is caught.
//!
//! The checks are functions run twice: over the real schemas, and over a
//! test-only second version built here (v1 plus an optional field), plus
//! broken versions that each check must refuse. While the current schema
//! still equals v1, the real run compares a schema with itself; the
//! test-only runs prove the checks can tell versions apart.

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use codat_stream::core::envelope_avro::{ENVELOPE_SCHEMA_JSON, EnvelopeCodec, RELEASED_SCHEMAS};
use codat_stream::{IngestMeta, NormalizeOptions, normalize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// SHA-256 of each released file's bytes. Releasing a version adds a row;
/// no row ever changes.
const RELEASED_SHA256: &[(&str, &str)] = &[
    (
        "envelope-v1.avsc",
        "df1ed0ce148a06b7a1c26b7f9e7d5208f4a8427ccf4f4587fcf01c1972715f4e",
    ),
    (
        "envelope-v2.avsc",
        "5df756cbd3eff76b832aabc74b392a00d2e87d4b333db3e048826477693e04d5",
    ),
];

fn released_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/released")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Released files are frozen: a change to one is a new version, not an edit.
#[test]
fn released_files_are_byte_for_byte_unchanged() {
    let mut on_disk: Vec<String> = std::fs::read_dir(released_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let pinned: Vec<&str> = RELEASED_SHA256.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        on_disk, pinned,
        "every file in schemas/released/ has its SHA-256 in RELEASED_SHA256"
    );
    for (file, digest) in RELEASED_SHA256 {
        let bytes = std::fs::read(released_dir().join(file)).unwrap();
        assert_eq!(
            sha256_hex(&bytes),
            *digest,
            "schemas/released/{file} was edited: release a new version instead"
        );
    }
    // What the binary embeds is exactly those files, each listed once.
    assert_eq!(RELEASED_SCHEMAS.len(), RELEASED_SHA256.len());
    for (version, json) in RELEASED_SCHEMAS {
        let file = format!("envelope-{version}.avsc");
        let bytes = std::fs::read(released_dir().join(&file))
            .unwrap_or_else(|e| panic!("RELEASED_SCHEMAS lists {version}, no {file}: {e}"));
        assert_eq!(json.as_bytes(), bytes, "{file} as embedded");
    }
}

/// The pin sees what the canonical-form fingerprint cannot: an edited doc
/// (or default, or alias) leaves the fingerprint as it was.
#[test]
fn an_edit_the_fingerprint_ignores_changes_the_digest() {
    let v1 = RELEASED_SCHEMAS[0].1;
    let fp = |s: &str| {
        Schema::parse_str(s)
            .unwrap()
            .fingerprint::<apache_avro::rabin::Rabin>()
            .bytes
    };
    let edited_doc = v1.replacen("\"doc\": \"", "\"doc\": \"edited ", 1);
    assert!(edited_doc != v1, "v1 has a doc to edit");
    assert!(fp(&edited_doc) == fp(v1), "canonical form ignores docs");
    assert_ne!(sha256_hex(edited_doc.as_bytes()), sha256_hex(v1.as_bytes()));
}

/// Both directions of schema resolution between `current` and every released version.
fn check_compatible_both_ways(current: &str, released: &[(&str, &str)]) -> Result<(), String> {
    let now = Schema::parse_str(current).map_err(|e| e.to_string())?;
    for (version, json) in released {
        let old = Schema::parse_str(json).unwrap();
        SchemaCompatibility::can_read(&now, &old).map_err(|e| {
            format!("a consumer holding {version} cannot read current envelopes: {e}")
        })?;
        SchemaCompatibility::can_read(&old, &now)
            .map_err(|e| format!("the current schema cannot read {version} envelopes: {e}"))?;
    }
    Ok(())
}

/// Every field of `current` that a released version lacks has a default,
/// and no released field was removed.
fn check_added_fields_have_defaults(
    current: &str,
    released: &[(&str, &str)],
) -> Result<(), String> {
    let now: Value = serde_json::from_str(current).unwrap();
    let names = |v: &Value| -> Vec<String> {
        v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let now_names = names(&now);
    for (version, json) in released {
        let old_names = names(&serde_json::from_str(json).unwrap());
        for field in now["fields"].as_array().unwrap() {
            let name = field["name"].as_str().unwrap();
            if !old_names.iter().any(|n| n == name) && field.get("default").is_none() {
                return Err(format!(
                    "field {name}, added after {version}, needs a default"
                ));
            }
        }
        if let Some(gone) = old_names.iter().find(|n| !now_names.contains(n)) {
            return Err(format!("field {gone} of {version} was removed"));
        }
    }
    Ok(())
}

/// Real bytes: a datum written with `current` decodes with each released schema.
fn check_released_readers_decode(
    current: &str,
    datum: &[u8],
    released: &[(&str, &str)],
) -> Result<(), String> {
    let writer = Schema::parse_str(current).unwrap();
    for (version, json) in released {
        let old = Schema::parse_str(json).unwrap();
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&writer)
            .reader_schema(&old)
            .build()
            .map_err(|e| format!("{version} reader: {e}"))?;
        let value = reader
            .read_value(&mut &datum[..])
            .map_err(|e| format!("{version} reader: {e}"))?;
        let apache_avro::types::Value::Record(fields) = value else {
            return Err(format!("{version} read no record"));
        };
        if !fields
            .iter()
            .any(|(k, v)| k == "id" && *v == apache_avro::types::Value::String("e-1".into()))
        {
            return Err(format!("{version} read the wrong id: {fields:?}"));
        }
    }
    Ok(())
}

/// An envelope as the binary writes it (the current schema).
fn current_datum() -> Vec<u8> {
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
    codec.encode(&env).unwrap()
}

#[test]
fn current_schema_is_compatible_both_ways_with_every_released_version() {
    check_compatible_both_ways(ENVELOPE_SCHEMA_JSON, RELEASED_SCHEMAS).unwrap();
}

#[test]
fn fields_added_since_a_release_have_defaults() {
    check_added_fields_have_defaults(ENVELOPE_SCHEMA_JSON, RELEASED_SCHEMAS).unwrap();
}

#[test]
fn released_readers_decode_current_envelopes() {
    check_released_readers_decode(ENVELOPE_SCHEMA_JSON, &current_datum(), RELEASED_SCHEMAS)
        .unwrap();
}

/// v1 with `field` appended.
fn v1_plus(field: Value) -> String {
    let mut v: Value = serde_json::from_str(RELEASED_SCHEMAS[0].1).unwrap();
    v["fields"].as_array_mut().unwrap().push(field);
    v.to_string()
}

/// A datum written with `schema`: the v1 envelope's fields plus `extra`.
fn datum_with(schema: &str, extra: Option<(&str, apache_avro::types::Value)>) -> Vec<u8> {
    let v1 = Schema::parse_str(RELEASED_SCHEMAS[0].1).unwrap();
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(&v1)
        .build()
        .unwrap();
    let apache_avro::types::Value::Record(mut fields) =
        reader.read_value(&mut &current_datum()[..]).unwrap()
    else {
        panic!("not a record")
    };
    fields.extend(extra.map(|(k, v)| (k.to_owned(), v)));
    let schema = Schema::parse_str(schema).unwrap();
    apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(apache_avro::types::Value::Record(fields))
        .unwrap()
}

/// A real second version, as the policy says to make one: every check
/// accepts it against v1, and both readers decode the other's bytes.
#[test]
fn a_test_only_v2_with_a_defaulted_field_passes_every_check() {
    let v2 = v1_plus(serde_json::json!(
        {"name": "tenant", "type": ["null", "string"], "default": null}
    ));
    let released = [RELEASED_SCHEMAS[0]];
    check_compatible_both_ways(&v2, &released).unwrap();
    check_added_fields_have_defaults(&v2, &released).unwrap();
    let v2_datum = datum_with(
        &v2,
        Some((
            "tenant",
            apache_avro::types::Value::Union(
                1,
                Box::new(apache_avro::types::Value::String("t".into())),
            ),
        )),
    );
    check_released_readers_decode(&v2, &v2_datum, &released).unwrap();
    // And v2 reads what v1 wrote, filling in the default.
    let v1_datum = datum_with(RELEASED_SCHEMAS[0].1, None);
    let v2_as_released = [("v2", v2.as_str())];
    check_released_readers_decode(RELEASED_SCHEMAS[0].1, &v1_datum, &v2_as_released).unwrap();
    // With v2 released too, a v3 must stay compatible with both.
    let v3 = {
        let mut v: Value = serde_json::from_str(&v2).unwrap();
        v["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "region", "type": "string", "default": "eu"}));
        v.to_string()
    };
    let both = [RELEASED_SCHEMAS[0], ("v2", v2.as_str())];
    check_compatible_both_ways(&v3, &both).unwrap();
    check_added_fields_have_defaults(&v3, &both).unwrap();
}

/// The checks can fail: each breaking change is caught by the check meant for it.
#[test]
fn breaking_versions_are_caught() {
    let released = [RELEASED_SCHEMAS[0]];
    // A new field without a default: v2 cannot read v1 data.
    let no_default = v1_plus(serde_json::json!({"name": "tenant", "type": "string"}));
    let e = check_compatible_both_ways(&no_default, &released).unwrap_err();
    assert!(e.contains("cannot read v1"), "{e}");
    let e = check_added_fields_have_defaults(&no_default, &released).unwrap_err();
    assert!(e.contains("tenant") && e.contains("default"), "{e}");
    // A changed type: a consumer holding v1 cannot read it.
    let mut retyped: Value = serde_json::from_str(RELEASED_SCHEMAS[0].1).unwrap();
    retyped["fields"][0]["type"] = serde_json::json!("long");
    let retyped = retyped.to_string();
    let e = check_compatible_both_ways(&retyped, &released).unwrap_err();
    assert!(e.contains("holding v1"), "{e}");
    // A removed field (it had no default): caught even though it has none to add.
    let mut removed: Value = serde_json::from_str(RELEASED_SCHEMAS[0].1).unwrap();
    removed["fields"].as_array_mut().unwrap().remove(0);
    let removed = removed.to_string();
    assert!(check_compatible_both_ways(&removed, &released).is_err());
    assert!(check_added_fields_have_defaults(&removed, &released).is_err());
    // A v2 added without a default breaks a v3 that is fine against v1 alone:
    // the checks look at every released version, not the first.
    let v2 = v1_plus(serde_json::json!({"name": "tenant", "type": "string"}));
    let v3 = v1_plus(serde_json::json!(
        {"name": "region", "type": ["null", "string"], "default": null}
    ));
    let both = [RELEASED_SCHEMAS[0], ("v2", v2.as_str())];
    check_compatible_both_ways(&v3, &released).unwrap();
    assert!(check_compatible_both_ways(&v3, &both).is_err());
    assert!(check_added_fields_have_defaults(&v3, &both).is_err());
    // Bytes that are not a v1 envelope are caught by the decode check.
    let e = check_released_readers_decode(RELEASED_SCHEMAS[0].1, b"\x02\x00", &released);
    assert!(e.is_err());
}
