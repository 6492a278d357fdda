//! End to end: Codat's seed `connection.failed` body, signed by the Python
//! `standardwebhooks` library, posted to `receive`, stored on the ingest
//! topic, normalised by `run` with `normalize.verify_signatures` on, and
//! read back from `codat.connection.failed`. Beside it, records produced
//! straight to the ingest topic show `run`'s own check: the tolerance is
//! measured against the ingest record's timestamp, and forgeries are
//! dead-lettered `invalid_signature`.

mod support;

use std::time::Duration;

use codat_stream::core::signature::{SigningKey, sign};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::*;

const SEED_ID: &str = "ba29118f-5406-4e59-b05c-ba307ca38d01";
const SEED_COMPANY: &str = "0498e921-9b53-4396-a412-4f2f5983b0a2";

/// Produces one record with `headers` and the record timestamp `timestamp_ms`.
fn produce_at(bootstrap: &str, topic: &str, body: &[u8], headers: &HeaderList, timestamp_ms: i64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let mut owned = OwnedHeaders::new();
    for (k, v) in headers {
        owned = owned.insert(Header {
            key: k,
            value: Some(v),
        });
    }
    let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(topic)
        .payload(body)
        .headers(owned)
        .timestamp(timestamp_ms);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(producer.send(record, Duration::from_secs(30)))
        .map_err(|(e, _)| e)
        .unwrap();
}

fn rust_signed(id: &str, ts: i64, body: &[u8]) -> HeaderList {
    let key = SigningKey::parse(SECRET_A).unwrap();
    vec![
        ("webhook-id".to_owned(), id.as_bytes().to_vec()),
        ("webhook-timestamp".to_owned(), ts.to_string().into_bytes()),
        (
            "webhook-signature".to_owned(),
            sign(&key, id, ts, body).into_bytes(),
        ),
    ]
}

#[test]
fn a_python_signed_seed_webhook_flows_receive_to_ingest_to_run_to_its_topic() {
    let broker = Broker::shared();
    let names = Names::new();
    broker.create_topic(&names.ingest, 2);
    let receiver = Receiver::start(&broker.bootstrap(), &names.ingest, &[]);
    receiver.wait_ready(Duration::from_secs(60));

    let seed = std::fs::read_to_string(fixtures().join("docs/000--1.json")).unwrap();
    let headers = python_sign(&[Sign {
        library: "standardwebhooks",
        secrets: &[SECRET_A],
        id: "msg_seed_connection_failed",
        timestamp: None,
        body: &seed,
    }]);
    let (status, answer) = receiver.post(SIGNED_PATH, &headers[0], seed.as_bytes());
    assert_eq!(status, 200, "{answer}");

    // run's own check, on records that did not come through receive: an
    // hour-old signature on an hour-old record passes; a fresh signature
    // on an hour-old record is an hour off; a tampered body is forged.
    let hour_ago = now_secs() - 3600;
    let old = br#"{"id":"evt-old","eventType":"connection.failed","payload":{"referenceCompany":{"id":"co-old"},"connection":{"id":"dc"}}}"#;
    produce_at(
        &broker.bootstrap(),
        &names.ingest,
        old,
        &rust_signed("msg_old", hour_ago, old),
        hour_ago * 1000,
    );
    let fresh = br#"{"id":"evt-fresh-sig","eventType":"connection.failed","payload":{"referenceCompany":{"id":"co"},"connection":{"id":"dc"}}}"#;
    produce_at(
        &broker.bootstrap(),
        &names.ingest,
        fresh,
        &rust_signed("msg_fresh", now_secs(), fresh),
        hour_ago * 1000,
    );
    let forged = br#"{"id":"evt-forged","eventType":"connection.failed","payload":{"referenceCompany":{"id":"co"},"connection":{"id":"dc"}}}"#;
    let mut headers = rust_signed("msg_forged", now_secs(), old);
    headers.push(("x-origin".into(), b"not codat".to_vec()));
    produce_at(
        &broker.bootstrap(),
        &names.ingest,
        forged,
        &headers,
        now_secs() * 1000,
    );

    let connector = Connector::start(
        &broker.bootstrap(),
        &names,
        &[
            ("CODAT_STREAM__NORMALIZE__VERIFY_SIGNATURES", "true"),
            (
                "CODAT_STREAM__NORMALIZE__SIGNATURE_SECRETS",
                "env:TEST_HOOK_SECRET",
            ),
            ("TEST_HOOK_SECRET", SECRET_A),
        ],
    );
    let outputs = connector.expect_outputs(&broker.bootstrap(), &names, 4);
    let topic = format!("{}connection.failed", names.prefix);
    let envelope = outputs
        .iter()
        .find(|m| header_str(m, "ce_id").as_deref() == Some(SEED_ID))
        .unwrap_or_else(|| panic!("the seed's envelope; log: {}", connector.raw_log_text()));
    assert_eq!(envelope.topic(), topic);
    assert_eq!(envelope.key(), Some(SEED_COMPANY.as_bytes()));
    assert_eq!(
        header_str(envelope, "ce_type").as_deref(),
        Some("connection.failed")
    );
    assert_eq!(
        header_str(envelope, "webhook-id").as_deref(),
        Some("msg_seed_connection_failed")
    );
    let old_envelope = outputs
        .iter()
        .find(|m| header_str(m, "ce_id").as_deref() == Some("evt-old"))
        .expect("the hour-old signature on the hour-old record is within tolerance");
    assert_eq!(old_envelope.topic(), topic);
    let dead: Vec<_> = outputs.iter().filter(|m| m.topic() == names.dlq).collect();
    assert_eq!(dead.len(), 2);
    for d in &dead {
        assert_eq!(
            header_str(d, "codat_stream.dlq.reason").as_deref(),
            Some("invalid_signature")
        );
        assert!(d.payload() == Some(&fresh[..]) || d.payload() == Some(&forged[..]));
    }
    let m = connector.metrics();
    assert_eq!(
        m.sum(
            "codat_stream_dead_lettered_total",
            &[("reason", "invalid_signature")]
        ),
        2.0
    );
}
