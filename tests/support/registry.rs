//! A Schema Registry for tests, speaking the documented subset of the
//! Confluent Schema Registry REST API that codat-stream and Confluent's own
//! clients use. No real registry server installs from this machine's
//! package sources, so this one implements, faithfully to Confluent's API
//! reference:
//!
//! - `POST /subjects/{subject}/versions`: registers an Avro schema; the
//!   same schema under the same subject returns its existing id; one schema
//!   has one global id across subjects; a schema that cannot read the
//!   subject's latest version (BACKWARD, the registry's default) is refused
//!   with HTTP 409 / error 409; an unparsable schema with 422 / 42201.
//! - `GET /schemas/ids/{id}`: the schema, or 404 / 40403.
//! - `GET /subjects/{subject}/versions`: version numbers, or 404 / 40401.
//! - `GET /subjects`: subject names.
//! - `POST /compatibility/subjects/{subject}/versions/latest`:
//!   `{"is_compatible": bool}`, or 404 / 40401, or 422 / 42201.
//! - HTTP basic auth or a bearer token when configured: 401 / error 401 otherwise.
//!
//! Query strings (Confluent's clients add some) are ignored. It serves one
//! request per connection (`Connection: close`).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use serde_json::{Value, json};

#[derive(Default)]
struct State {
    /// Global id -> (schema text, canonical form).
    schemas: Vec<(String, String)>,
    /// Subject -> ids of its versions, oldest first.
    subjects: BTreeMap<String, Vec<u32>>,
    /// Requests served, by "METHOD path-pattern".
    requests: HashMap<String, usize>,
    /// How it misbehaves, when it does.
    failure: Option<Failure>,
}

/// Ways the registry can fail without going away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Every request answered 503 (a registry behind a load balancer with
    /// no healthy instance).
    ServerError,
    /// Every request read, then never answered (a hung instance): only the
    /// client's request timeout ends it.
    Silent,
}

/// A running test registry; stops when dropped (its thread is detached and
/// the listener closes with the process).
pub struct TestRegistry {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl TestRegistry {
    /// Starts a registry; `auth` = Some((user, password)) requires basic auth.
    pub fn start(auth: Option<(&str, &str)>) -> TestRegistry {
        Self::start_expecting(
            auth.map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes()))),
        )
    }

    /// Starts a registry that requires `Authorization: Bearer <token>`.
    pub fn start_bearer(token: &str) -> TestRegistry {
        Self::start_expecting(Some(format!("Bearer {token}")))
    }

    fn start_expecting(expected_auth: Option<String>) -> TestRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = shared.clone();
                let expected_auth = expected_auth.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &state, expected_auth.as_deref());
                });
            }
        });
        TestRegistry { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts (Some) or stops (None) failing every request.
    pub fn fail(&self, failure: Option<Failure>) {
        self.state.lock().unwrap().failure = failure;
    }

    /// How many requests matched `pattern` ("POST /subjects/*/versions", ...).
    pub fn requests(&self, pattern: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .get(pattern)
            .copied()
            .unwrap_or(0)
    }

    /// The latest id registered under `subject`.
    pub fn latest_id(&self, subject: &str) -> Option<u32> {
        self.state
            .lock()
            .unwrap()
            .subjects
            .get(subject)?
            .last()
            .copied()
    }

    /// Every subject.
    pub fn subjects(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .subjects
            .keys()
            .cloned()
            .collect()
    }
}

fn serve(
    stream: TcpStream,
    state: &Mutex<State>,
    expected_auth: Option<&str>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut content_length = 0usize;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
            if k == "content-length" {
                content_length = v.parse().unwrap_or(0);
            } else if k == "authorization" {
                authorization = Some(v);
            }
        }
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    let failure = state.lock().unwrap().failure;
    match failure {
        Some(Failure::Silent) => {
            // Hold the connection open, unanswered, until the client gives up.
            let mut sink = [0u8; 64];
            while reader.read(&mut sink).is_ok_and(|n| n > 0) {}
            return Ok(());
        }
        Some(Failure::ServerError) => {
            let mut out = stream;
            let text = r#"{"error_code":50003,"message":"no healthy upstream"}"#;
            return write!(
                out,
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
        None => {}
    }
    let (status, answer) = if expected_auth.is_some() && authorization.as_deref() != expected_auth {
        (401, json!({"error_code": 401, "message": "Unauthorized"}))
    } else {
        handle(state, &method, &target, &body)
    };
    let text = answer.to_string();
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        reason(status),
        text.len()
    )?;
    out.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        _ => "Error",
    }
}

fn handle(state: &Mutex<State>, method: &str, target: &str, body: &[u8]) -> (u16, Value) {
    let path = target.split('?').next().unwrap_or_default();
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let mut st = state.lock().unwrap();
    let pattern = match seg.as_slice() {
        ["subjects", _, "versions"] => format!("{method} /subjects/*/versions"),
        ["schemas", "ids", _] => format!("{method} /schemas/ids/*"),
        ["compatibility", "subjects", _, "versions", _] => {
            format!("{method} /compatibility/subjects/*/versions/*")
        }
        _ => format!("{method} {path}"),
    };
    *st.requests.entry(pattern).or_default() += 1;
    match (method, seg.as_slice()) {
        ("POST", ["subjects", subject, "versions"]) => {
            let (schema_text, schema) = match parse_request_schema(body) {
                Ok(s) => s,
                Err(e) => return e,
            };
            let canonical = schema.canonical_form();
            let existing = st
                .schemas
                .iter()
                .position(|(_, c)| *c == canonical)
                .map(|i| i as u32 + 1);
            let versions = st.subjects.get(*subject).cloned().unwrap_or_default();
            if let Some(id) = existing
                && versions.contains(&id)
            {
                return (200, json!({"id": id}));
            }
            if let Some(latest) = versions.last() {
                let latest_schema = Schema::parse_str(&st.schemas[*latest as usize - 1].0).unwrap();
                if SchemaCompatibility::can_read(&latest_schema, &schema).is_err() {
                    return (
                        409,
                        json!({"error_code": 409, "message": "Schema being registered is incompatible with an earlier schema for subject"}),
                    );
                }
            }
            let id = existing.unwrap_or_else(|| {
                st.schemas.push((schema_text, canonical));
                st.schemas.len() as u32
            });
            st.subjects
                .entry((*subject).to_owned())
                .or_default()
                .push(id);
            (200, json!({"id": id}))
        }
        ("GET", ["schemas", "ids", id]) => match id
            .parse::<usize>()
            .ok()
            .and_then(|i| st.schemas.get(i.wrapping_sub(1)))
        {
            Some((text, _)) => (200, json!({"schema": text})),
            None => (
                404,
                json!({"error_code": 40403, "message": "Schema not found"}),
            ),
        },
        ("GET", ["subjects"]) => (200, json!(st.subjects.keys().collect::<Vec<_>>())),
        ("GET", ["subjects", subject, "versions"]) => match st.subjects.get(*subject) {
            Some(v) => (200, json!((1..=v.len()).collect::<Vec<_>>())),
            None => subject_not_found(subject),
        },
        ("POST", ["compatibility", "subjects", subject, "versions", "latest"]) => {
            let Some(latest) = st.subjects.get(*subject).and_then(|v| v.last().copied()) else {
                return subject_not_found(subject);
            };
            let (_, schema) = match parse_request_schema(body) {
                Ok(s) => s,
                Err(e) => return e,
            };
            let latest_schema = Schema::parse_str(&st.schemas[latest as usize - 1].0).unwrap();
            let ok = SchemaCompatibility::can_read(&latest_schema, &schema).is_ok();
            (200, json!({"is_compatible": ok}))
        }
        _ => (
            404,
            json!({"error_code": 404, "message": "HTTP 404 Not Found"}),
        ),
    }
}

fn subject_not_found(subject: &str) -> (u16, Value) {
    (
        404,
        json!({"error_code": 40401, "message": format!("Subject '{subject}' not found.")}),
    )
}

fn parse_request_schema(body: &[u8]) -> Result<(String, Schema), (u16, Value)> {
    let invalid = |m: String| (422, json!({"error_code": 42201, "message": m}));
    let v: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("Invalid request: {e}")))?;
    if let Some(t) = v["schemaType"].as_str()
        && t != "AVRO"
    {
        return Err(invalid(format!("Invalid schema type {t}")));
    }
    let text = v["schema"]
        .as_str()
        .ok_or_else(|| invalid("Empty schema".into()))?;
    let schema = Schema::parse_str(text).map_err(|e| invalid(format!("Invalid schema: {e}")))?;
    Ok((text.to_owned(), schema))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
