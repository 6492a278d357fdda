//! The AsyncAPI document (`schemas/asyncapi.yaml`): it is what `codat-stream
//! asyncapi` prints, the official AsyncAPI parser (npm `@asyncapi/parser`,
//! with the Avro schema parser) accepts it, and it lists every topic the
//! catalog can produce.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use codat_stream::config::OutputSettings;
use codat_stream::core::event_type::{CATALOG, WRITE_DATA_TYPES, WRITE_OUTCOMES};
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn generated() -> Vec<u8> {
    // No CODAT_STREAM__ variables: the committed file is the defaults'.
    let out = Command::new(env!("CARGO_BIN_EXE_codat-stream"))
        .arg("asyncapi")
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn the_committed_document_is_the_commands_output() {
    let committed = std::fs::read(repo().join("schemas/asyncapi.yaml")).unwrap();
    assert!(
        committed == generated(),
        "schemas/asyncapi.yaml differs from `codat-stream asyncapi`: \
         run `cargo run -- asyncapi > schemas/asyncapi.yaml` and commit it"
    );
}

/// Where scripts/test.sh installs the parser.
fn node_modules() -> PathBuf {
    std::env::var_os("CODAT_STREAM_ASYNCAPI_NODE_MODULES").map_or_else(
        || repo().join("target/asyncapi-node/node_modules"),
        PathBuf::from,
    )
}

/// The official parser's verdict on `document`: errors, warnings, channels.
fn parse(document: &Path) -> Value {
    let modules = node_modules();
    assert!(
        modules.join("@asyncapi/parser").exists(),
        "@asyncapi/parser is not in {}: scripts/test.sh installs it",
        modules.display()
    );
    let out = Command::new("node")
        .arg(repo().join("tests/node/asyncapi_check.cjs"))
        .arg(&modules)
        .arg(document)
        .output()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): scripts/test.sh installs it"));
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the parser printed no verdict ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success(),
        "the parser refused {}: {verdict:#}",
        document.display()
    );
    verdict
}

#[test]
fn the_official_parser_accepts_it_and_it_lists_every_topic_the_catalog_can_produce() {
    let verdict = parse(&repo().join("schemas/asyncapi.yaml"));
    assert_eq!(verdict["errors"], serde_json::json!([]));
    assert_eq!(verdict["warnings"], serde_json::json!([]));
    let channels = verdict["channels"].as_array().unwrap();
    let message_of = |address: &str| -> Option<String> {
        channels
            .iter()
            .find(|c| c["address"] == address)
            .map(|c| c["messages"].to_string())
    };
    let output = OutputSettings::default();
    let mut expected: BTreeSet<String> = CATALOG
        .iter()
        .map(|(t, _)| format!("{}{t}", output.topic_prefix))
        .collect();
    for dt in WRITE_DATA_TYPES {
        for outcome in WRITE_OUTCOMES {
            expected.insert(format!("{}{dt}.write.{outcome}", output.topic_prefix));
        }
    }
    for topic in &expected {
        assert_eq!(
            message_of(topic).as_deref(),
            Some(r#"["envelope"]"#),
            "{topic}: a channel carrying envelopes"
        );
    }
    for topic in [
        &output.catch_all_topic,
        &format!("{}{{eventType}}", output.topic_prefix),
    ] {
        assert_eq!(
            message_of(topic).as_deref(),
            Some(r#"["envelope"]"#),
            "{topic}"
        );
    }
    assert_eq!(
        message_of(&output.dead_letter_topic).as_deref(),
        Some(r#"["deadLetter"]"#),
        "the dead-letter topic carries dead letters"
    );
    // Nothing else but codat-stream's own known type.
    let listed: BTreeSet<&str> = channels
        .iter()
        .filter_map(|c| c["address"].as_str())
        .collect();
    let extra: Vec<&&str> = listed
        .iter()
        .filter(|a| {
            !expected.contains(**a)
                && **a != output.catch_all_topic
                && **a != output.dead_letter_topic
                && !a.ends_with("{eventType}")
        })
        .collect();
    assert_eq!(extra, [&"codat.connection.statusChanged"]);
}

/// The parser is not a rubber stamp: a document with an operation that is
/// neither send nor receive, and one whose Avro payload schema names a field
/// `company Id`, are refused.
#[test]
fn the_parser_refuses_a_broken_document() {
    let text = String::from_utf8(generated()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (what, broken) in [
        (
            "action",
            text.replacen("action: \"send\"", "action: \"sned\"", 1),
        ),
        (
            "avro",
            text.replacen("name: \"companyId\"", "name: \"company Id\"", 1),
        ),
    ] {
        assert_ne!(broken, text, "{what}: the break applies");
        let path = dir.path().join(format!("{what}.yaml"));
        std::fs::write(&path, broken).unwrap();
        let out = Command::new("node")
            .arg(repo().join("tests/node/asyncapi_check.cjs"))
            .arg(node_modules())
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{what}: the broken document was accepted"
        );
    }
}

/// With a deployment's configuration the document names that deployment's
/// topics (prefix, per-type overrides), and still validates.
#[test]
fn the_document_of_a_deployment_names_its_topics() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("acme.toml");
    std::fs::write(
        &config,
        "[output]\ntopic_prefix = \"acme.\"\n\n[output.topic_overrides]\n\
         \"connection.failed\" = \"alerts.connections\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_codat-stream"))
        .arg("asyncapi")
        .arg("--config")
        .arg(&config)
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let document = dir.path().join("acme.yaml");
    std::fs::write(&document, &out.stdout).unwrap();
    let verdict = parse(&document);
    let addresses: BTreeSet<&str> = verdict["channels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["address"].as_str())
        .collect();
    for topic in [
        "alerts.connections",
        "acme.read.completed",
        "acme.{eventType}",
    ] {
        assert!(addresses.contains(topic), "{topic} in {addresses:?}");
    }
    assert!(!addresses.contains("codat.connection.failed"));
    assert!(!addresses.contains("acme.connection.failed"));
}
