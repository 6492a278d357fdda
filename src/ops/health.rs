//! Liveness and readiness: what the loop reports and the HTTP endpoint reads.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// Liveness and readiness, shared with the HTTP endpoint and tests.
#[derive(Debug, Default)]
pub struct Health {
    /// Consumer subscribed and the start-up topics exist.
    pub started: AtomicBool,
    /// Shutdown requested; finishing in-flight records.
    pub draining: AtomicBool,
    /// Partitions currently assigned to this member.
    pub assigned_partitions: AtomicUsize,
    /// Records the broker is refusing right now (being re-sent).
    pub failing_records: AtomicUsize,
    /// librdkafka reports every broker down.
    pub brokers_down: AtomicBool,
    /// A subscribed ingest topic does not exist (until partitions are assigned).
    pub ingest_topic_missing: AtomicBool,
    /// The schema registry does not answer; producing is paused.
    pub registry_unavailable: AtomicBool,
    /// An output topic cannot be created yet (broker trouble); its records are held.
    pub topics_failing: AtomicBool,
    /// Last time the loop went round, ms since the epoch.
    pub last_loop_ms: AtomicI64,
    /// Records consumed.
    pub consumed: AtomicU64,
    /// Records whose output (envelope or dead letter) was acknowledged.
    pub acknowledged: AtomicU64,
    /// Of those, dead letters.
    pub dead_lettered: AtomicU64,
}

impl Health {
    /// Ready: started, not draining, brokers reachable, nothing failing.
    pub fn is_ready(&self) -> bool {
        self.not_ready_reasons().is_empty()
    }

    /// Why the connector is not ready; empty when it is.
    pub fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if !self.started.load(Ordering::Relaxed) {
            reasons.push("starting".to_owned());
        }
        if self.draining.load(Ordering::Relaxed) {
            reasons.push("draining".to_owned());
        }
        if self.brokers_down.load(Ordering::Relaxed) {
            reasons.push("brokers unreachable".to_owned());
        }
        if self.ingest_topic_missing.load(Ordering::Relaxed) {
            reasons.push("an ingest topic does not exist".to_owned());
        }
        if self.registry_unavailable.load(Ordering::Relaxed) {
            reasons.push("schema registry unavailable".to_owned());
        }
        if self.topics_failing.load(Ordering::Relaxed) {
            reasons.push("an output topic cannot be created yet".to_owned());
        }
        let failing = self.failing_records.load(Ordering::Relaxed);
        if failing > 0 {
            reasons.push(format!("{failing} records failing to produce"));
        }
        reasons
    }

    /// Marks the loop as alive now.
    pub fn beat(&self) {
        self.last_loop_ms.store(now_ms(), Ordering::Relaxed);
    }
}

/// Now, ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
