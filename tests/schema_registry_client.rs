//! The registry client against a server speaking the Confluent REST API
//! (tests/support/registry.rs: why a test server, and which subset): ids
//! are stable and global, refusals carry the registry's error codes and are
//! not retried, unavailability is retried and reported as transient.

mod support;

use codat_stream::config::SchemaRegistrySettings;
use codat_stream::envelope_avro::ENVELOPE_SCHEMA_JSON;
use codat_stream::schema_registry::{RegistryClient, RegistryError};
use support::registry::TestRegistry;

fn client(url: &str, auth: Option<(&str, &str)>) -> RegistryClient {
    let mut s = SchemaRegistrySettings {
        url: url.to_owned(),
        max_attempts: 3,
        request_timeout_ms: 2_000,
        ..Default::default()
    };
    if let Some((u, p)) = auth {
        s.basic_auth_user = u.into();
        s.basic_auth_password = p.into();
    }
    RegistryClient::new(&s).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn error_code(e: RegistryError) -> i64 {
    match e {
        RegistryError::Refused { error_code, .. } => error_code,
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn registration_is_idempotent_and_ids_are_global() {
    let registry = TestRegistry::start(None);
    let c = client(&registry.url(), None);
    rt().block_on(async {
        let a = c
            .register("codat.connection.failed-value", ENVELOPE_SCHEMA_JSON)
            .await
            .unwrap();
        let again = c
            .register("codat.connection.failed-value", ENVELOPE_SCHEMA_JSON)
            .await
            .unwrap();
        let other = c
            .register("codat.read.completed-value", ENVELOPE_SCHEMA_JSON)
            .await
            .unwrap();
        assert_eq!(a, again);
        assert_eq!(a, other, "one schema, one global id");
        let fetched = c.schema_by_id(a).await.unwrap();
        assert_eq!(
            apache_avro::Schema::parse_str(&fetched)
                .unwrap()
                .canonical_form(),
            apache_avro::Schema::parse_str(ENVELOPE_SCHEMA_JSON)
                .unwrap()
                .canonical_form()
        );
    });
    assert_eq!(registry.requests("POST /subjects/*/versions"), 3);
}

#[test]
fn refusals_carry_the_registry_error_code_and_are_not_retried() {
    let registry = TestRegistry::start(None);
    let c = client(&registry.url(), None);
    rt().block_on(async {
        let e = c.schema_by_id(999).await.unwrap_err();
        assert!(!e.is_transient());
        assert_eq!(error_code(e), 40403);

        let e = c.register("s-value", "{not a schema").await.unwrap_err();
        assert_eq!(error_code(e), 42201);

        c.register("s-value", ENVELOPE_SCHEMA_JSON).await.unwrap();
        // A schema that cannot read the envelope data already on the subject.
        let incompatible = r#"{"type":"record","name":"Envelope","namespace":"io.codatstream","fields":[{"name":"mandatory","type":"long"}]}"#;
        let e = c.register("s-value", incompatible).await.unwrap_err();
        assert_eq!(error_code(e), 409);
    });
    assert_eq!(
        registry.requests("GET /schemas/ids/*"),
        1,
        "a 404 is not retried"
    );
}

#[test]
fn basic_auth_is_sent_and_a_wrong_password_is_refused() {
    let registry = TestRegistry::start(Some(("svc", "s3cret")));
    rt().block_on(async {
        let good = client(&registry.url(), Some(("svc", "s3cret")));
        good.register("a-value", ENVELOPE_SCHEMA_JSON)
            .await
            .unwrap();
        let bad = client(&registry.url(), Some(("svc", "wrong")));
        let e = bad
            .register("a-value", ENVELOPE_SCHEMA_JSON)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("401"), "{e}");
        assert!(
            !e.to_string().contains("wrong"),
            "no credentials in errors: {e}"
        );
    });
}

#[test]
fn an_unreachable_registry_is_transient_after_the_retries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = client(&format!("http://127.0.0.1:{port}"), None);
    let e = rt()
        .block_on(c.register("a-value", ENVELOPE_SCHEMA_JSON))
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("unavailable"), "{e}");
}

#[test]
fn a_bearer_token_is_sent() {
    let registry = TestRegistry::start_bearer("tok-123");
    let settings = |token: &str| SchemaRegistrySettings {
        url: registry.url(),
        bearer_token: token.into(),
        max_attempts: 1,
        ..Default::default()
    };
    rt().block_on(async {
        let good = RegistryClient::new(&settings("tok-123")).unwrap();
        good.register("a-value", ENVELOPE_SCHEMA_JSON)
            .await
            .unwrap();
        let bad = RegistryClient::new(&settings("other")).unwrap();
        let e = bad
            .register("a-value", ENVELOPE_SCHEMA_JSON)
            .await
            .unwrap_err();
        assert_eq!(error_code(e), 401);
    });
}

/// The test registry's other documented endpoints answer as Confluent's do.
#[test]
fn the_test_registry_answers_subject_and_compatibility_queries_like_confluents() {
    let registry = TestRegistry::start(None);
    let addr = format!("127.0.0.1:{}", registry.port);
    let (status, body) = support::http_get(&addr, "/subjects/nope-value/versions").unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("40401"), "{body}");

    let c = client(&registry.url(), None);
    let id = rt()
        .block_on(c.register("x-value", ENVELOPE_SCHEMA_JSON))
        .unwrap();
    let (status, body) = support::http_get(&addr, "/subjects/x-value/versions").unwrap();
    assert_eq!((status, body.as_str()), (200, "[1]"));
    let (status, body) = support::http_get(&addr, "/subjects").unwrap();
    assert_eq!((status, body.as_str()), (200, r#"["x-value"]"#));
    let (status, body) =
        support::http_get(&addr, &format!("/schemas/ids/{id}?subject=x-value")).unwrap();
    assert_eq!(status, 200, "query strings are ignored: {body}");
}

/// An https registry signed by a private CA: trusted through
/// `ca_location`, refused without it. `openssl s_server -WWW` serves the
/// GET it answers (`/schemas/ids/7`) from files over TLS.
#[test]
fn https_with_a_private_ca_is_trusted_through_ca_location() {
    let dir = tempfile::tempdir().unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
    ]);
    std::fs::create_dir_all(dir.path().join("schemas/ids")).unwrap();
    std::fs::write(
        dir.path().join("schemas/ids/7"),
        r#"{"schema":"\"string\""}"#,
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            "ca.pem",
            "-key",
            "key.pem",
            "-WWW",
            "-quiet",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    support::wait_for(
        "the TLS server to listen",
        std::time::Duration::from_secs(10),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    let settings = |ca: &str| SchemaRegistrySettings {
        url: format!("https://127.0.0.1:{port}"),
        ca_location: ca.to_owned(),
        max_attempts: 1,
        request_timeout_ms: 5_000,
        ..Default::default()
    };
    let trusted =
        RegistryClient::new(&settings(dir.path().join("ca.pem").to_str().unwrap())).unwrap();
    let untrusted = RegistryClient::new(&settings("")).unwrap();
    let (ok, refused) = rt().block_on(async {
        (
            trusted.schema_by_id(7).await,
            untrusted.schema_by_id(7).await,
        )
    });
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(ok.unwrap(), "\"string\"");
    assert!(refused.is_err(), "an unknown CA is not trusted");
}

#[test]
fn a_missing_ca_file_is_a_clear_setup_error() {
    let e = RegistryClient::new(&SchemaRegistrySettings {
        url: "https://registry:8081".into(),
        ca_location: "/nonexistent/ca.pem".into(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("ca_location"), "{e}");
}
