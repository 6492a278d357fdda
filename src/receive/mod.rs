//! `codat-stream receive`: the HTTP endpoint Codat delivers webhooks to.
//! Each POST on a configured path is authenticated (Standard Webhooks
//! signatures over the raw bytes, or legacy `Authorization` values),
//! produced unchanged to the ingest topic keyed by the event id with its
//! request headers (credentials left out), and answered 200 only once the
//! broker acknowledged it (`acks=all`, idempotent producer); 503 when it
//! does not within `receive.ack_timeout_ms`, so Codat retries.
//!
//! The verification maths is in [`crate::core::signature`]; this is the
//! shell around it: the listener ([`server`]), one request ([`handler`])
//! and the producer ([`producer`]).

pub mod handler;
pub mod producer;
pub mod server;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::Settings;
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;

pub use handler::Receiver;
pub use producer::IngestProducer;
pub use server::{Drained, Limits};

/// Why `receive` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// No endpoint is configured.
    #[error(
        "receive.endpoints configures no path: add [receive.endpoints.NAME] with a path \
         and secrets (see deploy/codat-stream.receive.example.toml)"
    )]
    NoEndpoints,
    /// No topic to produce to.
    #[error("receive.topic is empty and ingest.topics names no topic")]
    NoTopic,
    /// The listener could not be bound.
    #[error("cannot listen on receive.listen {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The producer could not be created.
    #[error("kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The producer had a fatal error: nothing more could be stored.
    #[error("the kafka producer failed for good ({0}); in-flight requests were answered")]
    Fatal(String),
}

/// What `receive` needs beyond valid settings: a path, and a topic.
pub fn preflight(settings: &Settings) -> Result<(), ReceiveError> {
    if settings.receive.endpoints.is_empty() {
        return Err(ReceiveError::NoEndpoints);
    }
    if settings.receive_topic().is_empty() {
        return Err(ReceiveError::NoTopic);
    }
    Ok(())
}

/// How often readiness re-checks the ingest topic's metadata.
const METADATA_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Runs the receiver until `shutdown`, then drains. `Ok(Drained)` says
/// whether every in-flight request was answered in time.
pub async fn run(
    settings: &Settings,
    shutdown: impl Future<Output = ()>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> Result<Drained, ReceiveError> {
    preflight(settings)?;
    metrics.init_receive();
    let producer = IngestProducer::new(settings, health.clone(), metrics.clone())?;
    let receiver = Arc::new(Receiver::new(settings, producer, metrics.clone()));
    let listener = TcpListener::bind(&settings.receive.listen)
        .await
        .map_err(|source| ReceiveError::Listen {
            address: settings.receive.listen.clone(),
            source,
        })?;
    let paths: Vec<&str> = settings
        .receive
        .endpoints
        .values()
        .map(|e| e.path.as_str())
        .collect();
    info!(
        address = %listener.local_addr().map_or_else(|_| settings.receive.listen.clone(), |a| a.to_string()),
        topic = receiver.producer().topic(),
        paths = %paths.join(","),
        "receiving webhooks"
    );
    health.beat();
    let beater = tokio::spawn(beat(health.clone()));
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch_health(receiver.clone(), health.clone(), fatal_tx));
    let mut fatal = None;
    let drained = server::serve(
        listener,
        receiver.clone(),
        metrics,
        Limits::of(&settings.receive),
        async {
            tokio::select! {
                () = shutdown => {}
                Ok(error) = fatal_rx => fatal = Some(error),
            }
            health.draining.store(true, Ordering::Relaxed);
        },
    )
    .await;
    watcher.abort();
    beater.abort();
    // Records of requests answered 503 may still be queued: give them a
    // moment, they are duplicates of what Codat will retry anyway.
    let flusher = receiver.clone();
    let _ = tokio::task::spawn_blocking(move || {
        flusher.producer().flush(Duration::from_secs(1));
    })
    .await;
    match drained {
        Drained::Completely => info!("every in-flight webhook answered; exiting"),
        Drained::TimedOut => warn!("receive.drain_timeout_ms passed with webhooks in flight"),
    }
    match fatal {
        Some(error) => Err(ReceiveError::Fatal(error)),
        None => Ok(drained),
    }
}

/// Liveness: the runtime goes round (a beat every half second).
async fn beat(health: Arc<Health>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        health.beat();
    }
}

/// Readiness: the brokers answer and the ingest topic exists, re-checked
/// every couple of seconds. A fatal producer error is sent on `fatal`:
/// the receiver then stops (exit 1) so it is restarted with a new one.
async fn watch_health(
    receiver: Arc<Receiver>,
    health: Arc<Health>,
    fatal: tokio::sync::oneshot::Sender<String>,
) {
    let mut tick = tokio::time::interval(METADATA_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        if let Some(error) = receiver.producer().fatal_error() {
            tracing::error!(%error, "the kafka producer failed for good: stopping");
            let _ = fatal.send(error);
            return;
        }
        let r = receiver.clone();
        let found = tokio::task::spawn_blocking(move || {
            r.producer().topic_exists(METADATA_CHECK_INTERVAL * 2)
        })
        .await;
        match found {
            Ok(Ok(true)) => {
                health.brokers_answered();
                health.ingest_topic_missing.store(false, Ordering::Relaxed);
                health.started.store(true, Ordering::Relaxed);
            }
            Ok(Ok(false)) => {
                health.brokers_answered();
                health.ingest_topic_missing.store(true, Ordering::Relaxed);
            }
            Ok(Err(_)) | Err(_) => health.brokers_down.store(true, Ordering::Relaxed),
        }
    }
}
