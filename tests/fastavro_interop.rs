//! Avro interop with a library no one here wrote: fastavro (Python,
//! tests/python/fastavro_check.py, run through the venv scripts/test.sh
//! creates). Its CRC-64-AVRO fingerprint of every released schema file is
//! the one codat-stream computes and writes, and it decodes the
//! single-object records of every published Codat example by looking the
//! writer's schema up by that fingerprint, to the same envelope.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use codat_stream::core::avro_fingerprint;
use codat_stream::core::envelope_avro::{ENVELOPE_SCHEMA_JSON, RELEASED_SCHEMAS};
use codat_stream::core::redact::{RedactMode, Redaction};
use codat_stream::{EnvelopeCodec, IngestMeta, NormalizeOptions, normalize};
use serde_json::Value;

/// The Python with fastavro that scripts/test.sh installs.
fn python() -> String {
    std::env::var("CODAT_STREAM_TEST_PYTHON").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/python-venv/bin/python").to_owned()
    })
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs fastavro_check.py over `records` (name, single-object bytes).
fn fastavro(records: &[(String, Vec<u8>)]) -> Value {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for (name, bytes) in records {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(file, "{}", serde_json::json!({"name": name, "hex": hex})).unwrap();
    }
    let out = Command::new(python())
        .arg(root().join("tests/python/fastavro_check.py"))
        .arg("--schemas")
        .arg(root().join("schemas/released"))
        .arg("--records")
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| panic!("{} (scripts/test.sh creates it): {e}", python()));
    assert!(
        out.status.success(),
        "fastavro_check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn published_examples() -> Vec<(String, Vec<u8>)> {
    let fixtures = root().join("tests/fixtures");
    std::fs::read_to_string(fixtures.join("expected.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let name = l.split('\t').next().unwrap().to_owned();
            let body = std::fs::read(fixtures.join(&name)).unwrap();
            (name, body)
        })
        .collect()
}

#[test]
fn fastavro_computes_the_fingerprints_codat_stream_writes() {
    let report = fastavro(&[]);
    let theirs = report["fingerprints"].as_object().unwrap();
    assert_eq!(theirs.len(), RELEASED_SCHEMAS.len());
    for (version, json) in RELEASED_SCHEMAS {
        let ours = avro_fingerprint::hex(&avro_fingerprint::fingerprint(json).unwrap());
        assert_eq!(
            theirs[&format!("envelope-{version}.avsc")],
            ours,
            "fingerprint of schemas/released/envelope-{version}.avsc"
        );
    }
    let codec = EnvelopeCodec::new().unwrap();
    let current = avro_fingerprint::fingerprint(ENVELOPE_SCHEMA_JSON).unwrap();
    assert_eq!(codec.single_object_header()[2..], current);
}

#[test]
fn fastavro_decodes_every_published_example_by_fingerprint_lookup() {
    let codec = EnvelopeCodec::new().unwrap();
    // Redaction on, so records with and without redactedPaths are read.
    let options = NormalizeOptions {
        redact: Redaction {
            paths: vec!["referenceCompany.name".into()],
            mode: RedactMode::Remove,
        },
        ..NormalizeOptions::default()
    };
    let examples = published_examples();
    let mut records = Vec::new();
    let mut envelopes = Vec::new();
    for (i, (name, body)) in examples.iter().enumerate() {
        let ingest = IngestMeta {
            topic: "codat.webhooks.raw",
            partition: 0,
            offset: i as i64,
            timestamp_ms: 1_700_000_000_000,
        };
        let headers = [("webhook-id", format!("msg_{i}"))];
        let env = normalize(body, &headers[..], &ingest, &options)
            .unwrap_or_else(|r| panic!("{name}: {r}"));
        let mut bytes = Vec::new();
        codec.encode_single_object_into(&env, &mut bytes).unwrap();
        records.push((name.clone(), bytes));
        envelopes.push(serde_json::to_value(&env).unwrap());
    }
    let report = fastavro(&records);
    let decoded = report["records"].as_array().unwrap();
    assert_eq!(decoded.len(), examples.len());
    let latest = format!("envelope-{}.avsc", RELEASED_SCHEMAS.last().unwrap().0);
    let redacted = envelopes
        .iter()
        .filter(|e| e["redactedPaths"] != serde_json::json!([]));
    assert!(redacted.count() > 10, "some examples carry a company name");
    for (d, ours) in decoded.iter().zip(&envelopes) {
        let name = d["name"].as_str().unwrap();
        assert_eq!(d["schema"], latest.as_str(), "{name}: writer schema found");
        assert_eq!(
            &d["envelope"], ours,
            "{name}: fastavro reads the same envelope"
        );
    }
}
