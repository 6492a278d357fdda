//! `codat-stream decode FILE` on single values: single-object encoding
//! decodes offline; a Confluent-framed value without a registry, or bytes in
//! neither framing, exit 2 with the reason; a file far too large to be a
//! value is refused by name without being read whole.

#[path = "support/child.rs"]
mod child;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use codat_stream::core::envelope_avro::EnvelopeCodec;
use codat_stream::{IngestMeta, NormalizeOptions, normalize};

fn decode(bytes: &[u8]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("value.bin");
    std::fs::write(&file, bytes).unwrap();
    Command::new(env!("CARGO_BIN_EXE_codat-stream"))
        .arg("decode")
        .arg(&file)
        .env_clear()
        .output()
        .unwrap()
}

fn datum(codec: &EnvelopeCodec) -> (Vec<u8>, Vec<u8>) {
    let body = br#"{"id":"e-7","eventType":"read.completed","payload":{"referenceCompany":{"id":"co-7"}}}"#;
    let ingest = IngestMeta {
        topic: "in",
        partition: 0,
        offset: 1,
        timestamp_ms: 1_700_000_000_000,
    };
    let options = NormalizeOptions::default();
    let env = normalize(body, &[] as &[(String, String)], &ingest, &options).unwrap();
    let mut single = Vec::new();
    codec.encode_single_object_into(&env, &mut single).unwrap();
    let mut confluent = Vec::new();
    codec
        .encode_confluent_into(&env, 42, &mut confluent)
        .unwrap();
    (single, confluent)
}

#[test]
fn single_object_values_decode_without_a_registry() {
    let codec = EnvelopeCodec::new().unwrap();
    let (single, _) = datum(&codec);
    let out = decode(&single);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], "e-7");
    assert_eq!(v["type"], "read.completed");
    assert_eq!(v["companyId"], "co-7");
}

#[test]
fn confluent_values_need_the_registry_and_garbage_is_named() {
    let codec = EnvelopeCodec::new().unwrap();
    let (_, confluent) = datum(&codec);
    let out = decode(&confluent);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("schema id 42") && stderr.contains("schema_registry.url"),
        "{stderr}"
    );

    let out = decode(b"{\"plain\":\"json\"}");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither Confluent wire format"));
}

#[test]
fn a_file_too_large_to_be_a_value_is_refused_by_name_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-value.bin");
    child::sparse_file(&file, b"\x00secret-looking content", 3 << 30, b"");
    for via_stdin in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_codat-stream"));
        cmd.arg("decode")
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let name = if via_stdin {
            cmd.arg("-")
                .stdin(Stdio::from(std::fs::File::open(&file).unwrap()));
            "stdin".to_owned()
        } else {
            cmd.arg(&file).stdin(Stdio::null());
            file.display().to_string()
        };
        let (out, took) = child::finish_within(cmd.spawn().unwrap(), Duration::from_secs(120));
        assert_eq!(out.status.code(), Some(1), "stdin: {via_stdin}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("cannot read {name}"))
                && stderr.contains("larger than 16777216 bytes"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("secret-looking"),
            "never the contents: {stderr}"
        );
        assert!(took < Duration::from_secs(5), "took {took:?}");
    }
    let peak = child::children_peak_rss_mib();
    assert!(peak < 100, "peak RSS {peak} MiB: read whole?");
}
