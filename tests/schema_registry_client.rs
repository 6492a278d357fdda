//! The registry client against a server speaking the Confluent REST API
//! (tests/support/registry.rs: why a test server, and which subset): ids
//! are stable and global, refusals carry the registry's error codes and are
//! not retried, unavailability is retried and reported as transient;
//! answers are read up to a cap and the registry's words escaped (stand-in
//! registries on raw sockets send what a real one would not).

mod support;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use codat_stream::config::SchemaRegistrySettings;
use codat_stream::core::envelope_avro::ENVELOPE_SCHEMA_JSON;
use codat_stream::registry::client::{RegistryClient, RegistryError};
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

/// What a stand-in registry answers: a status line, then `len` bytes of a
/// JSON body (`{"schema":"aaa…"}` for a 2xx, so it would parse if read
/// whole), chunked or with a Content-Length.
struct Answer {
    status: &'static str,
    len: usize,
    chunked: bool,
}

/// How much of one answer's body the stand-in wrote, and whether all of it.
#[derive(Debug, Clone, Copy)]
struct Sent {
    bytes: usize,
    finished: bool,
}

/// A stand-in registry on a loopback port answering every request (one
/// per connection, at most 10) with `answer`; returns its URL and what it
/// sent on each connection.
fn oversized_registry(answer: Answer) -> (String, Arc<Mutex<Vec<Sent>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(Mutex::new(Vec::new()));
    let record = sent.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(10) {
            let Ok(mut stream) = stream else { continue };
            if read_request_head(&mut stream).is_ok() {
                let outcome = send_answer(&mut stream, &answer);
                record.lock().unwrap().push(outcome);
            }
        }
    });
    (url, sent)
}

fn read_request_head(stream: &mut std::net::TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        stream.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    Ok(())
}

/// Writes the answer until done or the client hangs up.
fn send_answer(stream: &mut std::net::TcpStream, answer: &Answer) -> Sent {
    let framing = if answer.chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", answer.len)
    };
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n",
        answer.status
    );
    let mut sent = Sent {
        bytes: 0,
        finished: false,
    };
    if stream.write_all(head.as_bytes()).is_err() {
        return sent;
    }
    let (open, close) = (br#"{"schema":""#, br#""}"#);
    let block = [b'a'; 64 * 1024];
    while sent.bytes < answer.len {
        let left = answer.len - sent.bytes;
        let data: &[u8] = if sent.bytes == 0 {
            open
        } else if left == close.len() {
            close
        } else {
            &block[..block.len().min(left - close.len())]
        };
        let written = if answer.chunked {
            write!(stream, "{:x}\r\n", data.len())
                .and_then(|()| stream.write_all(data))
                .and_then(|()| stream.write_all(b"\r\n"))
        } else {
            stream.write_all(data)
        };
        if written.is_err() {
            return sent;
        }
        sent.bytes += data.len();
    }
    sent.finished = !answer.chunked || stream.write_all(b"0\r\n\r\n").is_ok();
    sent
}

const FIFTY_MB: usize = 50 * 1024 * 1024;

fn sent_after(sent: &Mutex<Vec<Sent>>, connections: usize) -> Vec<Sent> {
    support::wait_for(
        "the stand-in registry to see the client go",
        std::time::Duration::from_secs(10),
        || sent.lock().unwrap().len() >= connections,
    );
    sent.lock().unwrap().clone()
}

#[test]
fn an_oversized_success_is_refused_without_reading_it_all() {
    let (url, sent) = oversized_registry(Answer {
        status: "200 OK",
        len: FIFTY_MB,
        chunked: true,
    });
    let e = rt()
        .block_on(client(&url, None).schema_by_id(1))
        .unwrap_err();
    assert!(matches!(e, RegistryError::BadAnswer { .. }), "{e}");
    assert!(
        !e.is_transient(),
        "a success too long to read is final: {e}"
    );
    assert!(e.to_string().contains("longer than 65536 bytes"), "{e}");
    let sent = sent_after(&sent, 1);
    assert_eq!(sent.len(), 1, "not retried: {sent:?}");
    assert!(
        !sent[0].finished && sent[0].bytes < FIFTY_MB,
        "the client hung up before the whole answer: {sent:?}"
    );
}

#[test]
fn an_oversized_server_error_is_transient_and_not_read() {
    let (url, sent) = oversized_registry(Answer {
        status: "503 Service Unavailable",
        len: FIFTY_MB,
        chunked: false,
    });
    let e = rt()
        .block_on(client(&url, None).schema_by_id(1))
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("longer than 65536 bytes"), "{e}");
    let sent = sent_after(&sent, 3);
    assert_eq!(sent.len(), 3, "retried like any 5xx: {sent:?}");
    assert!(
        sent.iter().all(|s| !s.finished && s.bytes < FIFTY_MB),
        "{sent:?}"
    );
}

#[test]
fn the_registry_s_message_is_escaped_and_cut_before_it_reaches_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let message = format!(
        "bad subject\n2025-01-01T00:00:00Z INFO forged line\x1b[2J{}",
        "x".repeat(5_000)
    );
    let body = serde_json::json!({ "error_code": 42201, "message": message }).to_string();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let _ = read_request_head(&mut stream);
        let _ = write!(
            stream,
            "HTTP/1.1 422 Unprocessable Entity\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    let e = rt()
        .block_on(client(&url, None).schema_by_id(1))
        .unwrap_err();
    let text = e.to_string();
    assert!(!text.contains('\n') && !text.contains('\x1b'), "{text:?}");
    assert!(
        text.contains(r"bad subject\n2025") && text.contains(r"\u{1b}[2J"),
        "{text}"
    );
    assert!(
        text.len() < 400,
        "cut to ~200 characters: {} bytes",
        text.len()
    );
    assert_eq!(error_code(e), 42201);
}
