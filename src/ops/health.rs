//! Liveness and readiness: what the loop reports and the HTTP endpoint reads.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};

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
    /// The brokers refuse this client's credentials or TLS ([`AccessFailure`]
    /// as a number; 0 = none seen since the brokers last answered).
    kafka_access: AtomicU8,
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
        if let Some(failure) = self.access_failure() {
            reasons.push(failure.explanation().to_owned());
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

    /// The brokers refused this client: returns whether that is news (a
    /// different failure from the last one seen), so it is logged once.
    pub fn refused_access(&self, failure: AccessFailure) -> bool {
        self.kafka_access.swap(failure as u8, Ordering::Relaxed) != failure as u8
    }

    /// The brokers answered: whatever refusal was seen is over.
    pub fn brokers_answered(&self) {
        self.brokers_down.store(false, Ordering::Relaxed);
        self.kafka_access.store(0, Ordering::Relaxed);
    }

    /// The last refusal seen since the brokers last answered.
    pub fn access_failure(&self) -> Option<AccessFailure> {
        let n = self.kafka_access.load(Ordering::Relaxed);
        AccessFailure::ALL.into_iter().find(|f| *f as u8 == n)
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

/// Why the brokers refuse this client, worded for the person who fixes it:
/// each names the settings to check, never their values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AccessFailure {
    /// SASL authentication failed.
    Authentication = 1,
    /// The broker's certificate could not be verified: not signed by a CA
    /// this client trusts, expired, or not issued for the host name
    /// connected to (OpenSSL's verdict, as librdkafka reports it, does not
    /// say which).
    BrokerCertificateUnverified,
    /// The broker refused this client's certificate (expired, not issued by
    /// a CA the broker trusts, or none sent).
    ClientCertificateRefused,
    /// Another TLS failure (a listener that does not speak TLS, a protocol
    /// version mismatch).
    Tls,
    /// The brokers refuse this principal READ on an ingest topic.
    IngestTopicNotAuthorized,
    /// The brokers refuse this principal its consumer group.
    GroupNotAuthorized,
}

impl AccessFailure {
    pub const ALL: [AccessFailure; 6] = [
        AccessFailure::Authentication,
        AccessFailure::BrokerCertificateUnverified,
        AccessFailure::ClientCertificateRefused,
        AccessFailure::Tls,
        AccessFailure::IngestTopicNotAuthorized,
        AccessFailure::GroupNotAuthorized,
    ];

    /// A stable code, for logs and tests.
    pub fn code(self) -> &'static str {
        match self {
            AccessFailure::Authentication => "sasl_authentication_failed",
            AccessFailure::BrokerCertificateUnverified => "broker_certificate_unverified",
            AccessFailure::ClientCertificateRefused => "client_certificate_refused",
            AccessFailure::Tls => "tls_handshake_failed",
            AccessFailure::IngestTopicNotAuthorized => "ingest_topic_not_authorized",
            AccessFailure::GroupNotAuthorized => "group_not_authorized",
        }
    }

    /// What failed and which settings to check.
    pub fn explanation(self) -> &'static str {
        match self {
            AccessFailure::Authentication => {
                "kafka refused the credentials: SASL authentication failed \
                 (check kafka.common sasl.mechanism, sasl.username and sasl.password)"
            }
            AccessFailure::BrokerCertificateUnverified => {
                "kafka's TLS certificate could not be verified: not signed by a CA this client \
                 trusts, expired, or not issued for the broker's host name (check \
                 kafka.common ssl.ca.location, and kafka.bootstrap_servers against the names \
                 in the brokers' certificates)"
            }
            AccessFailure::ClientCertificateRefused => {
                "kafka refused this client's TLS certificate: expired, not issued by a CA \
                 the brokers trust, or missing (check kafka.common ssl.certificate.location \
                 and ssl.key.location)"
            }
            AccessFailure::Tls => {
                "the TLS handshake with kafka failed \
                 (check kafka.common security.protocol and the ssl.* settings)"
            }
            AccessFailure::IngestTopicNotAuthorized => {
                "kafka refuses this client READ on an ingest topic \
                 (grant the principal READ on each topic of ingest.topics)"
            }
            AccessFailure::GroupNotAuthorized => {
                "kafka refuses this client its consumer group \
                 (grant the principal READ on the group named by ingest.group_id)"
            }
        }
    }
}
