//! One webhook request: route by path, refuse what is not a POST, too
//! large or not authentic, read the body with a deadline, produce it
//! unchanged and answer 200 only once the broker acknowledged it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::Semaphore;

use crate::config::{EndpointAuth, Settings};
use crate::core::event_key;
use crate::core::headers::HeaderLookup;
use crate::core::normalize::MAX_WEBHOOK_ID_LEN;
use crate::core::signature::SignatureFailure;
use crate::ops::events::{
    InternalEvent, ReceiveOutcome, WebhookAnswered, WebhookNotStored, WebhookUnauthenticated,
    WebhooksStoredAgain,
};
use crate::ops::health::now_ms;
use crate::ops::metrics::Metrics;
use crate::receive::producer::{IngestProducer, Stored};

/// Request headers never copied to the record: credentials.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-auth-token",
];

/// One configured path.
struct Endpoint {
    name: String,
    auth: EndpointAuth,
}

/// Everything a request needs; shared by every connection.
pub struct Receiver {
    endpoints: HashMap<String, Endpoint>,
    producer: IngestProducer,
    metrics: Arc<Metrics>,
    max_body_bytes: usize,
    body_timeout: Duration,
    ack_timeout: Duration,
    /// Headers left out of records (credentials and `output.drop_headers`).
    dropped: Vec<String>,
    in_flight: Arc<Semaphore>,
    auth_reasons_seen: [AtomicBool; SignatureFailure::ALL.len()],
    failing: AtomicBool,
}

impl Receiver {
    /// A receiver for `settings`, producing with `producer`.
    pub fn new(settings: &Settings, producer: IngestProducer, metrics: Arc<Metrics>) -> Receiver {
        let r = &settings.receive;
        let endpoints = r
            .endpoints
            .iter()
            .map(|(name, e)| {
                let endpoint = Endpoint {
                    name: name.clone(),
                    auth: settings.endpoint_auth(e),
                };
                (e.path.clone(), endpoint)
            })
            .collect();
        let dropped = CREDENTIAL_HEADERS
            .iter()
            .map(|h| (*h).to_owned())
            .chain(
                settings
                    .output
                    .drop_headers
                    .iter()
                    .map(|h| h.to_ascii_lowercase()),
            )
            .collect();
        Receiver {
            endpoints,
            producer,
            metrics,
            max_body_bytes: r.max_body_bytes,
            body_timeout: Duration::from_millis(r.body_timeout_ms),
            ack_timeout: Duration::from_millis(r.ack_timeout_ms),
            dropped,
            in_flight: Arc::new(Semaphore::new(r.max_in_flight)),
            auth_reasons_seen: std::array::from_fn(|_| AtomicBool::new(false)),
            failing: AtomicBool::new(false),
        }
    }

    /// The producer (for readiness checks and the final flush).
    pub fn producer(&self) -> &IngestProducer {
        &self.producer
    }

    /// Answers one request; the response says `Connection: close` unless
    /// it was accepted (the body may not have been read).
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let (outcome, body_bytes) = self.answer(req).await;
        WebhookAnswered {
            outcome,
            seconds: started.elapsed().as_secs_f64(),
            body_bytes,
        }
        .emit(&self.metrics);
        response(outcome)
    }

    async fn answer(&self, req: Request<Incoming>) -> (ReceiveOutcome, usize) {
        let Some(endpoint) = self.endpoints.get(req.uri().path()) else {
            return (ReceiveOutcome::NotFound, 0);
        };
        if req.method() != Method::POST {
            return (ReceiveOutcome::MethodNotAllowed, 0);
        }
        // A declared length over the limit is refused unread.
        let declared = req.body().size_hint().lower();
        if usize::try_from(declared).map_or(true, |n| n > self.max_body_bytes) {
            return (ReceiveOutcome::TooLarge, 0);
        }
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            return (ReceiveOutcome::Busy, 0);
        };
        self.metrics.receive_in_flight.inc();
        let _in_flight = InFlight(&self.metrics);
        let (parts, body) = req.into_parts();
        let headers = Headers(&parts.headers);
        // What can be refused before the body is read, is.
        let now_secs = now_ms().div_euclid(1000);
        let early = match &endpoint.auth {
            EndpointAuth::Signatures(v) => v.check_headers(&headers, now_secs),
            EndpointAuth::Authorization(c) => c.check(&headers),
            EndpointAuth::Unauthenticated => Ok(()),
        };
        if let Err(reason) = early {
            return (self.unauthenticated(endpoint, reason), 0);
        }
        let collected = tokio::time::timeout(
            self.body_timeout,
            Limited::new(body, self.max_body_bytes).collect(),
        )
        .await;
        let body = match collected {
            Err(_elapsed) => return (ReceiveOutcome::ReadTimeout, 0),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return (ReceiveOutcome::TooLarge, 0);
            }
            Ok(Err(_)) => return (ReceiveOutcome::Malformed, 0),
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        if body.is_empty() {
            return (ReceiveOutcome::Malformed, 0);
        }
        if let EndpointAuth::Signatures(v) = &endpoint.auth
            && let Err(reason) = v.verify(&body, &headers, now_secs)
        {
            return (self.unauthenticated(endpoint, reason), 0);
        }
        let key = record_key(&body, &headers);
        let record_headers: Vec<(&str, Option<&[u8]>)> = parts
            .headers
            .iter()
            .filter(|(name, _)| !self.dropped.iter().any(|d| d == name.as_str()))
            .map(|(name, value)| (name.as_str(), Some(value.as_bytes())))
            .collect();
        let stored = self
            .producer
            .store(key.as_deref(), &body, &record_headers, self.ack_timeout)
            .await;
        let outcome = match stored {
            Stored::Yes => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    WebhooksStoredAgain.emit(&self.metrics);
                }
                ReceiveOutcome::Accepted
            }
            Stored::TooLarge(_) => ReceiveOutcome::TooLarge,
            Stored::No(error) => {
                WebhookNotStored {
                    error: &error,
                    first: !self.failing.swap(true, Ordering::Relaxed),
                }
                .emit(&self.metrics);
                ReceiveOutcome::Unavailable
            }
        };
        (outcome, body.len())
    }

    fn unauthenticated(&self, endpoint: &Endpoint, reason: SignatureFailure) -> ReceiveOutcome {
        let index = SignatureFailure::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        WebhookUnauthenticated {
            reason,
            endpoint: &endpoint.name,
            first_of_reason: !self.auth_reasons_seen[index].swap(true, Ordering::Relaxed),
        }
        .emit(&self.metrics);
        ReceiveOutcome::Unauthorized
    }
}

/// Lowers the in-flight gauge however the request ends.
struct InFlight<'m>(&'m Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.receive_in_flight.dec();
    }
}

/// The record key: the body's event id (`id`, or a legacy `AlertId`),
/// else the `webhook-id` (or `svix-id`) header, else none.
fn record_key<'b>(body: &'b [u8], headers: &'b Headers<'_>) -> Option<Cow<'b, [u8]>> {
    if let Some(id) = event_key::event_id(body) {
        return Some(match id {
            Cow::Borrowed(id) => Cow::Borrowed(id.as_bytes()),
            Cow::Owned(id) => Cow::Owned(id.into_bytes()),
        });
    }
    ["webhook-id", "svix-id"].iter().find_map(|name| {
        headers
            .header(name)
            .map(<[u8]>::trim_ascii)
            .filter(|v| !v.is_empty() && v.len() <= MAX_WEBHOOK_ID_LEN)
            .map(Cow::Borrowed)
    })
}

/// hyper's header map as the core's header look-up.
struct Headers<'h>(&'h HeaderMap);

impl HeaderLookup for Headers<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(HeaderValue::as_bytes)
    }

    fn count(&self, name: &str) -> usize {
        self.0.get_all(name).iter().count()
    }
}

fn response(outcome: ReceiveOutcome) -> Response<Full<Bytes>> {
    let text: &'static str = match outcome {
        ReceiveOutcome::Accepted => "stored\n",
        ReceiveOutcome::Unauthorized => "signature or credentials missing or wrong\n",
        ReceiveOutcome::TooLarge => "body too large\n",
        ReceiveOutcome::Malformed => "malformed request\n",
        ReceiveOutcome::ReadTimeout => "body not received in time\n",
        ReceiveOutcome::MethodNotAllowed => "POST only\n",
        ReceiveOutcome::NotFound => "not found\n",
        ReceiveOutcome::Unavailable => "not stored: try again\n",
        ReceiveOutcome::Busy => "busy: try again\n",
    };
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() =
        StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if outcome == ReceiveOutcome::MethodNotAllowed {
        h.insert(ALLOW, HeaderValue::from_static("POST"));
    }
    if outcome != ReceiveOutcome::Accepted {
        h.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    r
}
