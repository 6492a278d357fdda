//! A client of the Confluent Schema Registry REST API (also spoken by
//! Karapace, Apicurio and Redpanda in compatible mode): registers the
//! envelope schema under a subject and looks schemas up by id. Answers are
//! cached by the callers (see `value_format`), never fetched per record.

use std::time::Duration;

use serde::Deserialize;
use tracing::warn;

use crate::backoff::Backoff;
use crate::config::SchemaRegistrySettings;

/// The registry's media type.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Most bytes read of any answer. The documented answers are small (the
/// envelope schema, escaped, is ~10 KiB); a longer one is not one of them,
/// and reading it whole would let a broken or hostile registry (or a proxy
/// in front of it) decide how much memory the connector uses.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Most characters of the registry's own message kept in an error.
const MAX_MESSAGE_CHARS: usize = 200;

/// Failures talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The client could not be built (bad CA file, TLS setup).
    #[error("schema registry client: {0}")]
    Setup(String),
    /// No answer, or a 5xx, after every attempt: the registry is unavailable.
    #[error("schema registry unavailable at {url}: {detail}")]
    Unavailable {
        /// The request URL (without credentials).
        url: String,
        /// The last error.
        detail: String,
    },
    /// The registry refused the request (4xx): retrying will not help.
    #[error("schema registry refused {what}: HTTP {status}, error {error_code}: {message}")]
    Refused {
        /// What was asked.
        what: String,
        /// HTTP status.
        status: u16,
        /// The registry's error code (40401 subject not found, 40403 schema
        /// not found, 409 incompatible, 422xx invalid schema, 401/403 auth).
        error_code: i64,
        /// The registry's message.
        message: String,
    },
    /// The answer was not the JSON the API documents.
    #[error("schema registry answered {what} with unexpected content: {detail}")]
    BadAnswer {
        /// What was asked.
        what: String,
        /// Why it did not parse.
        detail: String,
    },
}

impl RegistryError {
    /// Whether waiting and trying again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Unavailable { .. })
            || matches!(self, RegistryError::Refused { status: 429, .. })
    }
}

/// The registry's error body.
#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<i64>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct IdBody {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

/// A Schema Registry client with timeouts, retries and authentication.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    settings: SchemaRegistrySettings,
}

impl RegistryClient {
    /// A client for `settings.url`.
    pub fn new(settings: &SchemaRegistrySettings) -> Result<RegistryClient, RegistryError> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.request_timeout_ms))
            .connect_timeout(Duration::from_millis(settings.request_timeout_ms));
        if !settings.ca_location.is_empty() {
            let pem = std::fs::read(&settings.ca_location).map_err(|e| {
                RegistryError::Setup(format!(
                    "cannot read schema_registry.ca_location {}: {e}",
                    settings.ca_location
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RegistryError::Setup(format!("schema_registry.ca_location is not PEM: {e}"))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| RegistryError::Setup(e.to_string()))?;
        Ok(RegistryClient {
            http,
            base: settings.url.trim_end_matches('/').to_owned(),
            settings: settings.clone(),
        })
    }

    /// Registers `schema` (Avro JSON) under `subject` and returns its global
    /// id; registering the same schema again returns the same id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let url = format!("{}/subjects/{}/versions", self.base, encode_path(subject));
        let body = serde_json::json!({ "schema": schema, "schemaType": "AVRO" });
        let what = format!("registering subject {subject}");
        let answer: IdBody = self.call(&what, &url, Some(&body)).await?;
        Ok(answer.id)
    }

    /// The schema (Avro JSON) with global id `id`.
    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let what = format!("schema id {id}");
        let answer: SchemaBody = self.call(&what, &url, None).await?;
        match answer.schema_type.as_deref() {
            None | Some("AVRO") => Ok(answer.schema),
            Some(other) => Err(RegistryError::BadAnswer {
                what,
                detail: format!("schema type {}, not AVRO", printable(other)),
            }),
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, RegistryError> {
        let mut backoff = Backoff::new(5_000);
        let mut last = String::new();
        for attempt in 1..=self.settings.max_attempts {
            let mut request = match body {
                Some(b) => self.http.post(url).json(b),
                None => self.http.get(url),
            }
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
            if body.is_some() {
                request = request.header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE);
            }
            if !self.settings.basic_auth_user.is_empty() {
                request = request.basic_auth(
                    &self.settings.basic_auth_user,
                    Some(self.settings.basic_auth_password.expose()),
                );
            } else if !self.settings.bearer_token.is_empty() {
                request = request.bearer_auth(self.settings.bearer_token.expose());
            }
            match request.send().await {
                Ok(response) => match judge(what, response).await {
                    Attempt::Done(outcome) => return outcome,
                    Attempt::Retry(detail) => last = detail,
                },
                // The reqwest error names the URL, never the credentials.
                Err(e) => last = e.to_string(),
            }
            if attempt < self.settings.max_attempts {
                warn!(attempt, error = %last, "schema registry request failed; retrying");
                backoff.wait().await;
            }
        }
        Err(RegistryError::Unavailable {
            url: url.to_owned(),
            detail: last,
        })
    }
}

/// Percent-encodes a path segment (subjects may hold any character).
fn encode_path(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How one attempt ended: with the call's outcome, or with why another
/// attempt may do better.
enum Attempt<T> {
    Done(Result<T, RegistryError>),
    Retry(String),
}

/// Reads and judges one answer. A 5xx or 429 (even one too long to read:
/// most likely a proxy's error page) and a body the network cut off are
/// worth another attempt; a success that is too long or not the documented
/// JSON, and any other status, are final.
async fn judge<T: serde::de::DeserializeOwned>(
    what: &str,
    response: reqwest::Response,
) -> Attempt<T> {
    let status = response.status();
    let body = match read_capped(response).await {
        Ok(body) => body,
        Err(e) => return Attempt::Retry(e.to_string()),
    };
    if status.is_success() {
        return Attempt::Done(parse_answer(what, body));
    }
    let refused = refusal(what, status, body.as_deref());
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Attempt::Retry(refused.to_string())
    } else {
        Attempt::Done(Err(refused))
    }
}

/// The answer's body, or None when it is longer than [`MAX_ANSWER_BYTES`]:
/// then at most that much is read, and dropping the response closes the
/// connection instead of draining it.
async fn read_capped(mut response: reqwest::Response) -> reqwest::Result<Option<Vec<u8>>> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if chunk.len() > MAX_ANSWER_BYTES - body.len() {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

fn parse_answer<T: serde::de::DeserializeOwned>(
    what: &str,
    body: Option<Vec<u8>>,
) -> Result<T, RegistryError> {
    let bad = |detail| RegistryError::BadAnswer {
        what: what.to_owned(),
        detail,
    };
    let body = body.ok_or_else(|| bad(too_long()))?;
    // serde's message quotes the offending value: the registry's words too.
    serde_json::from_slice(&body).map_err(|e| bad(printable(&e.to_string())))
}

/// A refusal from a non-success answer (`body` None: too long to read).
fn refusal(what: &str, status: reqwest::StatusCode, body: Option<&[u8]>) -> RegistryError {
    let parsed: Option<ErrorBody> = body.and_then(|b| serde_json::from_slice(b).ok());
    let error_code = parsed
        .as_ref()
        .and_then(|b| b.error_code)
        .unwrap_or(i64::from(status.as_u16()));
    let message = match (parsed.and_then(|b| b.message), body) {
        (Some(message), _) => printable(&message),
        (None, Some(raw)) => printable(&String::from_utf8_lossy(raw)),
        (None, None) => too_long(),
    };
    RegistryError::Refused {
        what: what.to_owned(),
        status: status.as_u16(),
        error_code,
        message,
    }
}

fn too_long() -> String {
    format!("answer longer than {MAX_ANSWER_BYTES} bytes, not read")
}

/// The registry's own words made safe for an error and a log line: control
/// and bidirectional-override characters escaped (no forged log lines, no
/// terminal escapes), at most [`MAX_MESSAGE_CHARS`] characters kept.
fn printable(words: &str) -> String {
    let mut out = String::with_capacity(words.len().min(MAX_MESSAGE_CHARS));
    for (n, c) in words.chars().enumerate() {
        if n == MAX_MESSAGE_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_encoded_as_one_path_segment() {
        assert_eq!(
            encode_path("codat.connection.failed-value"),
            "codat.connection.failed-value"
        );
        assert_eq!(encode_path("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn the_registry_s_words_are_escaped_and_cut() {
        assert_eq!(
            printable("bad\nline\x1b[31m\u{202e}x"),
            "bad\\nline\\u{1b}[31m\\u{202e}x"
        );
        assert_eq!(printable("é ok"), "é ok");
        let long = printable(&"x".repeat(10_000));
        assert_eq!(long.len(), MAX_MESSAGE_CHARS + 3);
        assert!(long.ends_with("..."));
    }

    #[test]
    fn only_unavailability_and_throttling_are_transient() {
        let refused = |status| RegistryError::Refused {
            what: String::new(),
            status,
            error_code: 0,
            message: String::new(),
        };
        assert!(refused(429).is_transient());
        assert!(!refused(409).is_transient());
        assert!(!refused(401).is_transient());
        assert!(
            RegistryError::Unavailable {
                url: String::new(),
                detail: String::new()
            }
            .is_transient()
        );
    }
}
