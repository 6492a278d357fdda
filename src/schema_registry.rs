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
                detail: format!("schema type {other}, not AVRO"),
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
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    if status.is_success() {
                        return serde_json::from_str(&text).map_err(|e| RegistryError::BadAnswer {
                            what: what.to_owned(),
                            detail: e.to_string(),
                        });
                    }
                    let parsed: Option<ErrorBody> = serde_json::from_str(&text).ok();
                    let error_code = parsed
                        .as_ref()
                        .and_then(|b| b.error_code)
                        .unwrap_or(i64::from(status.as_u16()));
                    let message = parsed
                        .and_then(|b| b.message)
                        .unwrap_or_else(|| truncate(&text, 200));
                    let refused = RegistryError::Refused {
                        what: what.to_owned(),
                        status: status.as_u16(),
                        error_code,
                        message,
                    };
                    if !status.is_server_error() && status.as_u16() != 429 {
                        return Err(refused);
                    }
                    last = refused.to_string();
                }
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

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
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
