//! Validation's tests: every rule refuses what it should, naming the
//! setting and never a secret value.

use crate::config::Settings;
use crate::config::options::EndpointAuth;
use crate::config::settings::MAX_TOPIC_PREFIX_LEN;
use crate::config::testing::{SECRET_A, env, load_error, write_toml};

/// Review of issue 9: below ~1,000 bytes even the smallest dead letter
/// would not fit, and its record would be held forever.
#[test]
fn a_tiny_message_max_bytes_is_refused() {
    let mut s = Settings::default();
    s.kafka
        .producer
        .insert("message.max.bytes".into(), "1000".into());
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("message.max.bytes"), "{err}");
    s.kafka
        .producer
        .insert("message.max.bytes".into(), "2000000".into());
    assert!(s.validate().is_ok());
    assert_eq!(s.max_message_bytes(), 2_000_000);
}

#[test]
fn registry_urls_with_credentials_are_refused_without_echoing_them() {
    for url in [
        "https://svc:s3cret@registry:8081",
        "svc:s3cret@registry:8081",
    ] {
        let e = Settings::load_with_env(None, env(&[("CODAT_STREAM__SCHEMA_REGISTRY__URL", url)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema_registry.url"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }
    for url in [
        "https://registry:8081/?token=s3cret",
        "https://registry:8081/apis/ccompat/v7#access_token=s3cret",
        "https://svc:pa/s3cret@registry:8081",
    ] {
        let e = Settings::load_with_env(None, env(&[("CODAT_STREAM__SCHEMA_REGISTRY__URL", url)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema_registry.url"), "{url}: {e}");
        assert!(!e.contains("s3cret"), "{e}");
    }
    let ok = env(&[(
        "CODAT_STREAM__SCHEMA_REGISTRY__URL",
        "https://registry:8081/a@b",
    )]);
    assert!(
        Settings::load_with_env(None, ok).is_ok(),
        "an @ in the path is fine"
    );
}

#[test]
fn out_of_range_numbers_are_refused_naming_the_setting_and_the_range() {
    for (k, v, needle) in [
        (
            "HTTP__LIVENESS_TIMEOUT_MS",
            "18446744073709551615",
            "http.liveness_timeout_ms must be between 1000 and 3600000",
        ),
        (
            "HTTP__LIVENESS_TIMEOUT_MS",
            "1e30",
            "http.liveness_timeout_ms",
        ),
        (
            "PIPELINE__DRAIN_TIMEOUT_MS",
            "0",
            "pipeline.drain_timeout_ms",
        ),
        (
            "PIPELINE__PRODUCE_RETRY_BACKOFF_MAX_MS",
            "18446744073709551615",
            "pipeline.produce_retry_backoff_max_ms",
        ),
        (
            "PIPELINE__MAX_IN_FLIGHT",
            "1000001",
            "pipeline.max_in_flight",
        ),
        (
            "TOPICS__REQUEST_TIMEOUT_MS",
            "0",
            "topics.request_timeout_ms",
        ),
        ("TOPICS__PARTITIONS", "1000000", "topics.partitions"),
        (
            "TOPICS__REPLICATION_FACTOR",
            "40000",
            "topics.replication_factor",
        ),
        (
            "SCHEMA_REGISTRY__REQUEST_TIMEOUT_MS",
            "86400000",
            "schema_registry.request_timeout_ms",
        ),
        (
            "SCHEMA_REGISTRY__MAX_ATTEMPTS",
            "4000000000",
            "schema_registry.max_attempts",
        ),
        (
            "METRICS__KAFKA_STATISTICS_INTERVAL_MS",
            "5",
            "metrics.kafka_statistics_interval_ms must be 0 (off)",
        ),
        (
            "NORMALIZE__MAX_BODY_BYTES",
            "18446744073709551615",
            "normalize.max_body_bytes",
        ),
        ("OUTPUT__MAX_TOPICS", "0", "output.max_topics"),
    ] {
        let e = load_error("", &[(&format!("CODAT_STREAM__{k}"), v)]);
        assert!(e.contains(needle), "{k}={v}: {e}");
    }
    let e = load_error("[http]\nliveness_timeout_ms = 9223372036854775807\n", &[]);
    assert!(e.contains("http.liveness_timeout_ms"), "{e}");
    let e = load_error("[http]\nliveness_timeout_ms = 18446744073709551615\n", &[]);
    assert!(e.contains("number out of range at line 2"), "{e}");
    let ok = [("CODAT_STREAM__METRICS__KAFKA_STATISTICS_INTERVAL_MS", "0")];
    assert!(
        Settings::load_with_env(None, env(&ok)).is_ok(),
        "0 turns statistics off"
    );
}

#[test]
fn the_topic_prefix_must_be_a_non_empty_namespace() {
    for prefix in [
        "",
        "codat",
        "...",
        "co dat.",
        &"a".repeat(MAX_TOPIC_PREFIX_LEN + 1),
    ] {
        let e = load_error(&format!("[output]\ntopic_prefix = {prefix:?}\n"), &[]);
        assert!(e.contains("output.topic_prefix"), "{prefix:?}: {e}");
    }
    for prefix in ["codat.", "codat_", "codat-", "team.codat."] {
        let f = write_toml(&format!("[output]\ntopic_prefix = {prefix:?}\n"));
        assert!(
            Settings::load_with_env(Some(f.path()), env(&[])).is_ok(),
            "{prefix}"
        );
    }
}

#[test]
fn the_ingest_dead_letter_and_catch_all_topics_are_distinct() {
    for (toml, needle) in [
        (
            "[output]\ndead_letter_topic = \"x\"\ncatch_all_topic = \"x\"\n",
            "output.dead_letter_topic and output.catch_all_topic must differ",
        ),
        (
            "[ingest]\ntopics = [\"a\", \"b\", \"a\"]\n",
            "ingest.topics lists \"a\" more than once",
        ),
        (
            "[output]\ncatch_all_topic = \"codat.webhooks.raw\"\n",
            "output.catch_all_topic \"codat.webhooks.raw\" is also an ingest topic",
        ),
        (
            "[output.topic_overrides]\n\"connection.failed\" = \"codat.dlq\"\n",
            "is the dead-letter topic",
        ),
    ] {
        let e = load_error(toml, &[]);
        assert!(e.contains(needle), "{toml}: {e}");
    }
}

#[test]
fn every_problem_is_reported_at_once_one_per_line() {
    let e = load_error(
        "[output]\ntopic_prefix = \"\"\n[http]\nliveness_timeout_ms = 5\n",
        &[
            ("CODAT_STREAM__LOG__FORMAT", "xml"),
            ("CODAT_STREAM__INGEST__GROUP_ID", " "),
        ],
    );
    let lines: Vec<&str> = e.lines().collect();
    for needle in [
        "output.topic_prefix",
        "http.liveness_timeout_ms",
        "log.format",
        "ingest.group_id",
    ] {
        assert_eq!(
            lines.iter().filter(|l| l.contains(needle)).count(),
            1,
            "{needle} on a line of its own: {e}"
        );
    }
}

/// Issue 13: endpoints from the file and the environment, secrets by
/// reference, every problem named, nothing secret shown.
#[test]
fn receive_endpoints_and_their_secrets_are_validated_and_masked() {
    let f = write_toml(
        "[receive.endpoints.events]\npath = \"/webhooks/codat\"\n\
             secrets = [\"env:HOOK_A\", \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n\
             [receive.endpoints.rules]\npath = \"/webhooks/rules\"\n",
    );
    let s = Settings::load_with_env(
        Some(f.path()),
        env(&[
            ("HOOK_A", SECRET_A),
            (
                "CODAT_STREAM__RECEIVE__ENDPOINTS__RULES__AUTHORIZATION",
                "env:RULES_AUTH",
            ),
            ("RULES_AUTH", "Bearer legacy-token-value"),
            ("CODAT_STREAM__NORMALIZE__VERIFY_SIGNATURES", "true"),
            ("CODAT_STREAM__NORMALIZE__SIGNATURE_SECRETS", "env:HOOK_A"),
        ]),
    )
    .unwrap();
    let shown = s.to_masked_toml();
    assert!(
        shown.contains("env:HOOK_A") && shown.contains("env:RULES_AUTH"),
        "{shown}"
    );
    for secret in ["MfKQ9r8", "legacy-token-value"] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(!format!("{s:?}").contains(secret));
    }
    assert!(matches!(
        s.endpoint_auth(&s.receive.endpoints["events"]),
        EndpointAuth::Signatures(_)
    ));
    assert!(matches!(
        s.endpoint_auth(&s.receive.endpoints["rules"]),
        EndpointAuth::Authorization(_)
    ));
    assert!(s.normalize_options().verify.is_some());
    assert_eq!(s.receive_topic(), "codat.webhooks.raw");

    let e = load_error(
        "[receive]\nlisten = \"nowhere\"\nack_timeout_ms = 15000\n\
             [receive.endpoints.a]\npath = \"webhooks\"\n\
             [receive.endpoints.b]\npath = \"/b\"\nsecrets = [\"whsec_c2hvcnQ=\", \"env:UNSET_HOOK\"]\n\
             [receive.endpoints.c]\npath = \"/b\"\nallow_unauthenticated = true\n\
             authorization = [\"hunter2-token\"]\n",
        &[("CODAT_STREAM__NORMALIZE__VERIFY_SIGNATURES", "true")],
    );
    assert!(!e.contains("hunter2"), "{e}");
    for needle in [
        "receive.listen",
        "receive.ack_timeout_ms",
        "receive.endpoints.a.path must start with /",
        "receive.endpoints.a must set secrets",
        "receive.endpoints.b.secrets[0] is not a Standard Webhooks secret",
        "receive.endpoints.b.secrets[1]: environment variable UNSET_HOOK is not set",
        "receive.endpoints.c.path \"/b\" is used by another endpoint",
        "receive.endpoints.c: set one of",
        "receive.endpoints.c.authorization[0] must be a whole Authorization header value",
        "normalize.signature_secrets must list a secret",
    ] {
        assert!(e.contains(needle), "{needle}: {e}");
    }
}
