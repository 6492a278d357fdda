//! What a librdkafka client's error means for readiness and the log: one
//! place for the error callbacks of the consumer and both producers.

use std::sync::atomic::Ordering;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::ops::events::{Client, InternalEvent, KafkaAccessRefused, KafkaClientError};
use crate::ops::health::{AccessFailure, Health};
use crate::ops::metrics::Metrics;

/// Records `error` in `health` and logs it: a refusal of the credentials or
/// of TLS once per kind (librdkafka repeats it on every reconnect), every
/// broker down once, anything else as it comes.
pub fn observe(
    health: &Health,
    metrics: &Metrics,
    client: Client,
    error: &KafkaError,
    reason: &str,
) {
    if let Some(failure) = access_failure(client, error, reason) {
        if health.refused_access(failure) {
            KafkaAccessRefused {
                client,
                failure,
                reason,
            }
            .emit(metrics);
        }
        return;
    }
    let all_down = matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown));
    // One line when every broker becomes unreachable, not one per retry.
    if all_down && health.brokers_down.swap(true, Ordering::Relaxed) {
        return;
    }
    KafkaClientError {
        client,
        error,
        reason,
    }
    .emit(metrics);
}

/// Whether `error` is the brokers refusing this client's identity or TLS,
/// and which settings it points at. librdkafka gives one code for most TLS
/// failures and reports a refused client certificate as a transport
/// failure; its reason text carries OpenSSL's verdict.
pub fn access_failure(client: Client, error: &KafkaError, reason: &str) -> Option<AccessFailure> {
    let code = match error {
        KafkaError::Global(code) | KafkaError::MessageConsumption(code) => *code,
        _ => return None,
    };
    let r = reason.to_ascii_lowercase();
    let tls_alert = |alerts: &[&str]| {
        r.contains("alert") && alerts.iter().any(|a| r.contains(&format!("alert {a}")))
    };
    // The alerts a TLS server sends when it rejects the client's certificate.
    let client_refused = tls_alert(&[
        "certificate unknown",
        "bad certificate",
        "certificate expired",
        "certificate revoked",
        "unknown ca",
        "certificate required",
    ]);
    let consumer = client == Client::Consumer;
    match code {
        // The consumer's topics are the ingest topics (an output topic the
        // producer may not write goes to the catch-all, record by record).
        RDKafkaErrorCode::TopicAuthorizationFailed if consumer => {
            Some(AccessFailure::IngestTopicNotAuthorized)
        }
        RDKafkaErrorCode::GroupAuthorizationFailed if consumer => {
            Some(AccessFailure::GroupNotAuthorized)
        }
        // "sasl_ssl://" is in every reason on that listener: OpenSSL's own
        // words mark a TLS failure.
        RDKafkaErrorCode::Authentication
            if !r.contains("ssl routines") && !r.contains("ssl handshake") =>
        {
            Some(AccessFailure::Authentication)
        }
        _ if client_refused => Some(AccessFailure::ClientCertificateRefused),
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL => {
            Some(if r.contains("certificate verify failed") {
                AccessFailure::BrokerCertificateUnverified
            } else {
                AccessFailure::Tls
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::Global(code)
    }

    /// librdkafka 2.12's reasons, as seen against Apache Kafka 4.4 in
    /// `tests/kafka_security.rs`.
    #[test]
    fn the_reasons_librdkafka_gives_are_told_apart() {
        use AccessFailure::*;
        use RDKafkaErrorCode::{Authentication as Auth, BrokerTransportFailure, SSL};
        let cases = [
            (
                Auth,
                "sasl_ssl://127.0.0.1:1/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 347ms in state AUTH_REQ)",
                Some(Authentication),
            ),
            (
                BrokerTransportFailure,
                "ssl://127.0.0.1:1/bootstrap: Receive failed: error:0A000416:SSL routines::sslv3 alert certificate unknown: SSL alert number 46 (after 31ms in state APIVERSION_QUERY)",
                Some(ClientCertificateRefused),
            ),
            (
                BrokerTransportFailure,
                "ssl://127.0.0.1:1/bootstrap: Receive failed: error:0A000412:SSL routines::sslv3 alert bad certificate: SSL alert number 42 (after 3ms in state APIVERSION_QUERY)",
                Some(ClientCertificateRefused),
            ),
            (
                SSL,
                "sasl_ssl://127.0.0.1:1/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (install ca-certificates package) (after 20ms in state SSL_HANDSHAKE)",
                Some(BrokerCertificateUnverified),
            ),
            (
                SSL,
                "ssl://127.0.0.1:1/bootstrap: SSL handshake failed: error:0A00010B:SSL routines::wrong version number (after 1ms in state SSL_HANDSHAKE)",
                Some(Tls),
            ),
            // An ordinary disconnect is not a refusal.
            (
                BrokerTransportFailure,
                "127.0.0.1:1/1: Disconnected (after 10ms in state UP)",
                None,
            ),
            (
                RDKafkaErrorCode::AllBrokersDown,
                "1/1 brokers are down",
                None,
            ),
        ];
        for client in [Client::Consumer, Client::Producer] {
            for (code, reason, want) in &cases {
                let got = access_failure(client, &global(*code), reason);
                assert_eq!(got, *want, "{reason}");
            }
        }
        let produce = KafkaError::MessageProduction(Auth);
        let got = access_failure(Client::Producer, &produce, "SASL authentication error");
        assert_eq!(got, None);
    }

    #[test]
    fn a_consumer_refused_its_topic_or_group_is_told_which() {
        use RDKafkaErrorCode::*;
        let topic = "Subscribed topic not available: t.ingest: Broker: Topic authorization failed";
        let group = "FindCoordinator response error: Group authorization failed.";
        let cases = [
            (
                global(TopicAuthorizationFailed),
                topic,
                AccessFailure::IngestTopicNotAuthorized,
            ),
            (
                global(GroupAuthorizationFailed),
                group,
                AccessFailure::GroupNotAuthorized,
            ),
            (
                KafkaError::MessageConsumption(TopicAuthorizationFailed),
                "",
                AccessFailure::IngestTopicNotAuthorized,
            ),
            (
                KafkaError::MessageConsumption(GroupAuthorizationFailed),
                "",
                AccessFailure::GroupNotAuthorized,
            ),
        ];
        for (error, reason, want) in cases {
            assert_eq!(access_failure(Client::Consumer, &error, reason), Some(want));
            // The producer's refusals are per record: the catch-all's business.
            assert_eq!(access_failure(Client::Producer, &error, reason), None);
        }
    }
}
