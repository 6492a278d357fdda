//! `codat-stream receive` against deliveries signed by libraries no one
//! here wrote (the Python `standardwebhooks` and `svix` packages): every
//! valid one is stored byte for byte with its headers, keyed by the event
//! id; every forgery is refused 401, counted by reason and never stored.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::Message;
use support::*;

fn event_body(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","eventType":"connection.failed","generatedDate":"2024-08-08T17:10:34.015Z","payload":{{"referenceCompany":{{"id":"co-é"}},"connection":{{"id":"dc"}}}}}}"#
    )
}

#[test]
fn python_signed_webhooks_are_stored_byte_for_byte_and_forgeries_refused() {
    let broker = Broker::shared();
    let topic = unique("ingest").replace('-', "_");
    broker.create_topic(&topic, 2);
    let receiver = Receiver::start(&broker.bootstrap(), &topic, &[]);
    receiver.wait_ready(Duration::from_secs(60));
    let now = now_secs();

    // (case, library, secrets, timestamp): all accepted.
    let valid: Vec<(&str, &str, &[&str], Option<i64>)> = vec![
        ("swh-a", "standardwebhooks", &[SECRET_A], None),
        ("swh-b", "standardwebhooks", &[SECRET_B], None),
        ("svix-a", "svix", &[SECRET_A], None),
        ("svix-b", "svix", &[SECRET_B], None),
        (
            "rotating",
            "standardwebhooks",
            &[SECRET_WRONG, SECRET_B],
            None,
        ),
        (
            "four-min-old",
            "standardwebhooks",
            &[SECRET_A],
            Some(now - 240),
        ),
        ("four-min-ahead", "svix", &[SECRET_A], Some(now + 240)),
    ];
    let bodies: Vec<String> = valid
        .iter()
        .map(|(case, ..)| event_body(&format!("evt-{case}")))
        .collect();
    let requests: Vec<Sign> = valid
        .iter()
        .zip(&bodies)
        .map(|((case, library, secrets, timestamp), body)| Sign {
            library,
            secrets,
            id: case,
            timestamp: *timestamp,
            body,
        })
        .collect();
    let signed = python_sign(&requests);

    // Forgeries, each signed by the libraries too, then spoilt.
    let refused_requests = [
        Sign {
            library: "standardwebhooks",
            secrets: &[SECRET_A],
            id: "tampered",
            timestamp: None,
            body: &event_body("evt-tampered"),
        },
        Sign {
            library: "standardwebhooks",
            secrets: &[SECRET_WRONG],
            id: "wrong",
            timestamp: None,
            body: &event_body("evt-wrong"),
        },
        Sign {
            library: "svix",
            secrets: &[SECRET_A],
            id: "expired",
            timestamp: Some(now - 400),
            body: &event_body("evt-expired"),
        },
        Sign {
            library: "standardwebhooks",
            secrets: &[SECRET_A],
            id: "future",
            timestamp: Some(now + 400),
            body: &event_body("evt-future"),
        },
        Sign {
            library: "standardwebhooks",
            secrets: &[SECRET_A],
            id: "missing",
            timestamp: None,
            body: &event_body("evt-missing"),
        },
        Sign {
            library: "standardwebhooks",
            secrets: &[SECRET_A],
            id: "dup",
            timestamp: None,
            body: &event_body("evt-dup"),
        },
        Sign {
            library: "svix",
            secrets: &[SECRET_A],
            id: "mixed",
            timestamp: None,
            body: &event_body("evt-mixed"),
        },
    ];
    let forged = python_sign(&refused_requests);
    let mut expected_failures: HashMap<&str, f64> = HashMap::new();
    for (i, (request, headers)) in refused_requests.iter().zip(&forged).enumerate() {
        let mut headers = headers.clone();
        let mut body = request.body.as_bytes().to_vec();
        let reason = match request.id {
            "tampered" => {
                // One byte of the company id changed.
                let at = body.iter().rposition(|&b| b == b'c').unwrap();
                body[at] = b'C';
                "no_match"
            }
            "wrong" => "no_match",
            "expired" => "timestamp_too_old",
            "future" => "timestamp_too_new",
            "dup" => {
                let sig = headers
                    .iter()
                    .find(|(k, _)| k == "webhook-signature")
                    .unwrap()
                    .clone();
                headers.push(sig);
                "duplicate_header"
            }
            "mixed" => {
                // svix-id and svix-timestamp, but the signature under the
                // standard name: the two sets are never mixed.
                for (k, _) in headers.iter_mut().filter(|(k, _)| k == "svix-signature") {
                    *k = "webhook-signature".into();
                }
                "missing_header"
            }
            _ => {
                let dropped = ["webhook-id", "webhook-timestamp", "webhook-signature"][i % 3];
                headers.retain(|(k, _)| k != dropped);
                "missing_header"
            }
        };
        *expected_failures.entry(reason).or_default() += 1.0;
        let (status, _) = receiver.post(SIGNED_PATH, &headers, &body);
        assert_eq!(status, 401, "{}", request.id);
    }
    // Each header missing in turn, on copies of one valid delivery.
    for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut headers = signed[0].clone();
        headers.retain(|(k, _)| k != missing);
        let (status, _) = receiver.post(SIGNED_PATH, &headers, bodies[0].as_bytes());
        assert_eq!(status, 401, "without {missing}");
        *expected_failures.entry("missing_header").or_default() += 1.0;
    }

    // Legacy: the configured Authorization value, and a wrong one.
    let legacy = r#"{"ClientId":"cl","CompanyId":"co","RuleType":"DataConnectionStatusChanged","AlertId":"alert-legacy-1","Data":{"newStatus":"Linked","oldStatus":"PendingAuth"}}"#;
    let auth = |v: &str| {
        vec![
            ("Authorization".to_owned(), v.as_bytes().to_vec()),
            ("webhook-id".to_owned(), b"msg_legacy".to_vec()),
        ]
    };
    assert_eq!(
        receiver
            .post(LEGACY_PATH, &auth("Bearer nope"), legacy.as_bytes())
            .0,
        401
    );
    assert_eq!(receiver.post(LEGACY_PATH, &[], legacy.as_bytes()).0, 401);
    *expected_failures.entry("bad_credentials").or_default() += 2.0;
    // A signed delivery on the legacy path is not authenticated there.
    assert_eq!(
        receiver
            .post(LEGACY_PATH, &signed[0], bodies[0].as_bytes())
            .0,
        401
    );
    *expected_failures.entry("bad_credentials").or_default() += 1.0;

    for (headers, body) in signed.iter().zip(&bodies) {
        let mut headers = headers.clone();
        headers.push(("X-Trace".into(), b"trace \xff bytes".to_vec()));
        let (status, answer) = receiver.post(SIGNED_PATH, &headers, body.as_bytes());
        assert_eq!(status, 200, "{answer}; log: {}", receiver.raw_log_text());
    }
    assert_eq!(
        receiver
            .post(LEGACY_PATH, &auth(LEGACY_AUTH), legacy.as_bytes())
            .0,
        200
    );

    let want = bodies.len() + 1;
    let records = read_topic(&broker.bootstrap(), &topic, Duration::from_secs(60), |m| {
        m.len() >= want
    });
    assert_eq!(
        records.len(),
        want,
        "exactly the accepted deliveries are stored"
    );
    for ((headers, body), (case, ..)) in signed.iter().zip(&bodies).zip(&valid) {
        let record = records
            .iter()
            .find(|m| m.payload() == Some(body.as_bytes()))
            .unwrap_or_else(|| panic!("{case} not stored"));
        assert_eq!(
            record.key(),
            Some(format!("evt-{case}").as_bytes()),
            "keyed by the event id"
        );
        let stored = all_headers(record);
        for (k, v) in headers {
            assert!(
                stored.contains(&(k.as_bytes().to_vec(), v.clone())),
                "{case}: {k} kept"
            );
        }
        assert!(
            stored.contains(&(b"x-trace".to_vec(), b"trace \xff bytes".to_vec())),
            "{stored:?}"
        );
        for name in ["content-type", "content-length", "host"] {
            assert!(stored.iter().any(|(k, _)| k == name.as_bytes()), "{name}");
        }
    }
    let legacy_record = records
        .iter()
        .find(|m| m.payload() == Some(legacy.as_bytes()))
        .unwrap();
    assert_eq!(
        legacy_record.key(),
        Some(&b"alert-legacy-1"[..]),
        "keyed by AlertId"
    );
    let stored = all_headers(legacy_record);
    assert!(
        !stored.iter().any(|(k, _)| k == b"authorization"),
        "credentials never stored"
    );
    assert!(stored.contains(&(b"webhook-id".to_vec(), b"msg_legacy".to_vec())));

    let m = receiver.metrics();
    for (reason, n) in &expected_failures {
        assert_eq!(
            m.sum(
                "codat_stream_receive_auth_failures_total",
                &[("reason", reason)]
            ),
            *n,
            "{reason}"
        );
    }
    let refused: f64 = expected_failures.values().sum();
    assert_eq!(
        m.sum(
            "codat_stream_receive_requests_total",
            &[("outcome", "unauthorized")]
        ),
        refused
    );
    assert_eq!(
        m.sum(
            "codat_stream_receive_requests_total",
            &[("outcome", "accepted")]
        ),
        want as f64
    );
    // No log line carries a body or a secret.
    let log = receiver.raw_log_text();
    for needle in [
        "co-é",
        "co-\\u00e9",
        "MfKQ9r8",
        "legacy-rules-token",
        "Linked",
    ] {
        assert!(!log.contains(needle), "{needle} in the log");
    }
}
