//! `codat-stream check-config` on the configurations the project ships:
//! the example file and the Kubernetes ConfigMap (with its Secret passed as
//! environment variables, as the Deployment does) are valid, and secrets
//! are masked in what it prints; on broken configurations, the errors
//! name the position or the setting but never echo a secret.

use std::path::Path;
use std::process::{Command, Output};

fn check_config(file: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_codat-stream"));
    cmd.arg("check-config")
        .arg("--config")
        .arg(file)
        .env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The literal block under `codat-stream.toml: |` in the ConfigMap.
fn configmap_toml() -> String {
    let manifest = std::fs::read_to_string(repo("deploy/kubernetes/codat-stream.yaml")).unwrap();
    let mut lines = manifest
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("codat-stream.toml: |"));
    let header = lines.next().expect("the ConfigMap holds codat-stream.toml");
    let indent = header.len() - header.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_config_is_valid() {
    let out = check_config(&repo("deploy/codat-stream.example.toml"), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// deploy/security's examples: SCRAM over TLS and mTLS also drain in
/// tests/kafka_security.rs; OAUTHBEARER/OIDC is checked here only.
#[test]
fn the_security_examples_are_valid_and_their_secrets_masked() {
    let env = [
        (
            "CODAT_STREAM__KAFKA__COMMON__SASL_PASSWORD",
            "scram-hunter2",
        ),
        (
            "CODAT_STREAM__KAFKA__COMMON__SSL_KEY_PASSWORD",
            "key-hunter2",
        ),
        (
            "CODAT_STREAM__KAFKA__COMMON__SASL_OAUTHBEARER_CLIENT_SECRET",
            "oidc-hunter2",
        ),
    ];
    for file in ["scram-tls.toml", "mtls.toml", "oauthbearer-oidc.toml"] {
        let out = check_config(&repo("deploy/security").join(file), &env);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !stdout.contains("hunter2"),
            "{file} shows a secret: {stdout}"
        );
        assert!(stdout.contains("\"security.protocol\""), "{file}: {stdout}");
    }
    let out = check_config(&repo("deploy/security/oauthbearer-oidc.toml"), &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r#""sasl.oauthbearer.client.secret" = "********""#),
        "{stdout}"
    );
}

#[test]
fn the_kubernetes_configmap_is_valid_and_its_secret_is_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("codat-stream.toml");
    std::fs::write(&file, configmap_toml()).unwrap();
    let out = check_config(
        &file,
        &[
            ("CODAT_STREAM__KAFKA__COMMON__SASL_USERNAME", "codat-stream"),
            (
                "CODAT_STREAM__KAFKA__COMMON__SASL_PASSWORD",
                "hunter2-secret",
            ),
            (
                "CODAT_STREAM__SCHEMA_REGISTRY__BASIC_AUTH_PASSWORD",
                "registry-secret",
            ),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // librdkafka flags sasl.username sensitive: on managed clusters it is the API key.
    assert!(
        stdout.contains(r#""sasl.username" = "********""#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""sasl.password" = "********""#),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2-secret"));
    assert!(!stdout.contains("registry-secret"));
    assert!(
        stdout.contains(r#"basic_auth_password = "********""#),
        "{stdout}"
    );
    assert!(!stdout.contains("registry-secret"));
    assert!(
        stdout.contains(r#"basic_auth_password = "********""#),
        "{stdout}"
    );
    assert!(stdout.contains(r#"listen = "0.0.0.0:9464""#), "{stdout}");
}

#[test]
fn a_bad_value_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[http]\nlisten = \"not an address\"\n").unwrap();
    let out = check_config(&file, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("http.listen"), "{stderr}");
}

/// `check-config` on `toml`: exit code and stdout + stderr.
fn check_toml(toml: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("codat-stream.toml");
    std::fs::write(&file, toml).unwrap();
    let out = check_config(&file, env);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn a_toml_syntax_error_on_a_secret_line_does_not_print_the_secret() {
    let (code, out) = check_toml(
        "[kafka.common]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"hunter2-s3cret\n",
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    assert!(out.contains("line 3"), "{out}");
}

#[test]
fn a_duplicate_key_does_not_print_either_value() {
    let (code, out) = check_toml(
        "[schema_registry]\nbearer_token = \"tok-first-s3cret\"\nbearer_token = \"tok-second-s3cret\"\n",
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(!out.contains("s3cret"), "{out}");
    assert!(
        out.contains("duplicate key `bearer_token` at line 3"),
        "{out}"
    );
}

#[test]
fn every_sensitive_librdkafka_property_and_a_misspelt_one_is_masked() {
    let keys = [
        "sasl.username",
        "sasl.password",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.extensions",
        "sasl.oauthbearer.assertion.private.key.file",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
        "sasl.jaas.config",
        "ssl.ca.pem",
        "ssl.key.location",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl.keystore.password",
        // Misspelt: librdkafka would refuse them at start-up, but
        // check-config must not print the password meant for them.
        "sasl.pasword",
        "sasl.passwd",
        "ssl.key.passwrd",
        "sasl.pwd",
    ];
    let mut toml = String::from("[kafka.common]\n");
    for (i, k) in keys.iter().enumerate() {
        toml.push_str(&format!("{k:?} = \"s3cret-{i}-value\"\n"));
    }
    toml.push_str("\"sasl.mechanism\" = \"PLAIN\"\n");
    let (code, out) = check_toml(&toml, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("s3cret"), "{out}");
    for k in keys {
        assert!(out.contains(&format!("{k:?} = \"********\"")), "{k}: {out}");
    }
    assert!(out.contains(r#""sasl.mechanism" = "PLAIN""#), "{out}");
}

#[test]
fn a_token_in_a_url_query_is_masked() {
    let (code, out) = check_toml(
        "[kafka.common]\n\"sasl.oauthbearer.token.endpoint.url\" = \
         \"https://idp.example/oauth2/token?access_token=s3cret-a&sig=s3cret-b\"\n",
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("s3cret"), "{out}");
    assert!(
        out.contains("\"https://idp.example/oauth2/token?access_token=********&sig=********\""),
        "{out}"
    );
}

#[test]
fn a_registry_url_with_a_query_is_refused_without_echoing_it() {
    let (code, out) = check_toml(
        "[schema_registry]\nurl = \"https://registry:8081/?token=s3cret-c\"\n",
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(!out.contains("s3cret"), "{out}");
    assert!(out.contains("schema_registry.url"), "{out}");
}

#[test]
fn an_empty_topic_prefix_is_refused() {
    let (code, out) = check_toml("[output]\ntopic_prefix = \"\"\n", &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("output.topic_prefix"), "{out}");
}

#[test]
fn a_huge_liveness_timeout_is_refused() {
    let (code, out) = check_toml(
        "",
        &[(
            "CODAT_STREAM__HTTP__LIVENESS_TIMEOUT_MS",
            "18446744073709551615",
        )],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("http.liveness_timeout_ms must be between 1000 and 3600000"),
        "{out}"
    );
}

#[test]
fn several_errors_are_reported_together() {
    let (code, out) = check_toml(
        "[output]\ntopic_prefix = \"\"\ndead_letter_topic = \"codat.unrouted\"\n\
         [pipeline]\nmax_in_flight = 0\n",
        &[("CODAT_STREAM__LOG__FORMAT", "xml")],
    );
    assert_eq!(code, Some(1), "{out}");
    for needle in [
        "output.topic_prefix",
        "output.dead_letter_topic and output.catch_all_topic",
        "pipeline.max_in_flight",
        "log.format",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
}

/// Hostile `[delivery]` values: each is named, together, and the bad
/// transactional id is not echoed.
#[test]
fn hostile_delivery_settings_are_each_refused_by_name() {
    let long_id = "x".repeat(300);
    let toml = format!(
        "[delivery]\nguarantee = \"exactly-twice\"\ntransaction_max_records = 0\n\
         transaction_max_ms = 40000\ntransaction_timeout_ms = 60000\n\
         transactional_id = \"{long_id}\"\n"
    );
    let (code, out) = check_toml(&toml, &[]);
    assert_eq!(code, Some(1), "{out}");
    for setting in [
        "delivery.guarantee must be",
        "delivery.transaction_max_records must be between 1 and 1000000",
        "delivery.transaction_max_ms must be at most half",
        "delivery.transactional_id must be at most 249",
    ] {
        assert!(out.contains(setting), "{setting}: {out}");
    }
    assert!(!out.contains(&long_id), "the id is not echoed: {out}");
    let (code, out) = check_toml(
        "[delivery]\ntransactional_id = \"a b\\u0007\"\n",
        &[(
            "CODAT_STREAM__DELIVERY__TRANSACTION_TIMEOUT_MS",
            "18446744073709551615",
        )],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("delivery.transactional_id"), "{out}");
    assert!(
        out.contains("delivery.transaction_timeout_ms must be between"),
        "{out}"
    );
    let (code, out) = check_toml("[delivery]\nguarantee = \"exactly-once\"\n", &[]);
    assert_eq!(
        code,
        Some(0),
        "exactly-once with its defaults is valid: {out}"
    );
}

/// KIP-848's protocol: an unknown `group.protocol` is refused by name (its
/// value not echoed), and with `consumer` the classic protocol's
/// client-side settings are each refused by name before librdkafka sees
/// them; `consumer` alone is valid.
#[test]
fn group_protocol_settings_are_refused_by_name() {
    let long = "eager".repeat(100);
    let (code, out) = check_toml(
        &format!("[kafka.consumer]\n\"group.protocol\" = \"{long}\"\n"),
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("kafka.consumer.\"group.protocol\" must be \"classic\" or \"consumer\""),
        "{out}"
    );
    assert!(!out.contains(&long), "the value is not echoed: {out}");
    let (code, out) = check_toml(
        "[kafka.common]\n\"group.protocol\" = \"consumer\"\n\
         [kafka.consumer]\n\"partition.assignment.strategy\" = \"range\"\n",
        &[("CODAT_STREAM__KAFKA__CONSUMER__SESSION_TIMEOUT_MS", "6000")],
    );
    assert_eq!(code, Some(1), "{out}");
    for setting in [
        "kafka.consumer.\"session.timeout.ms\" is not supported with group.protocol = \"consumer\"",
        "kafka.consumer.\"partition.assignment.strategy\" is not supported",
    ] {
        assert!(out.contains(setting), "{setting}: {out}");
    }
    let (code, out) = check_toml("[kafka.consumer]\n\"group.protocol\" = \"consumer\"\n", &[]);
    assert_eq!(code, Some(0), "the consumer protocol alone is valid: {out}");
}
