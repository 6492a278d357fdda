//! The pipeline's per-record step never panics and always yields exactly
//! one output, whatever the record holds: arbitrary key, headers (keys and
//! values as raw bytes, including non-UTF-8 and null) and value (including
//! null). Runs `Processor::process` itself, with topic creation off and no
//! registry, so no network is involved. Values range from empty to past
//! the 1 MiB body limit, so the size checks and shortened dead letters run.

use codat_stream::config::Settings;
use codat_stream::core::normalize::IngestMeta;
use codat_stream::kafka::output::Input;
use codat_stream::kafka::processor::{OutputKind, Processor};
use codat_stream::ops::health::Health;
use codat_stream::ops::metrics::Metrics;
use proptest::prelude::*;

fn header() -> impl Strategy<Value = (Vec<u8>, Option<Vec<u8>>)> {
    let key = prop_oneof![
        Just(b"webhook-id".to_vec()),
        Just(b"codat_stream.dlq.reason".to_vec()),
        Just(b"authorization".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    (
        key,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
    )
}

const EVENT: &[u8] =
    br#"{"id":"e","eventType":"connection.failed","payload":{"referenceCompany":{"id":"c"}}}"#;

/// A valid event padded to about `len` bytes: around the 1,000,000-byte
/// producer limit and the 1 MiB body limit.
fn padded_event(len: usize) -> Vec<u8> {
    format!(
        r#"{{"id":"e","eventType":"connection.failed","payload":{{"referenceCompany":{{"id":"c"}},"pad":"{}"}}}}"#,
        "x".repeat(len.saturating_sub(100))
    )
    .into_bytes()
}

fn value() -> impl Strategy<Value = Option<Vec<u8>>> {
    let body = prop_oneof![
        1 => (990_000usize..1_100_000).prop_map(padded_event),
        10 => proptest::collection::vec(any::<u8>(), 0..200),
        20 => Just(EVENT.to_vec()),
        5 => Just(br#"{"id":"e","eventType":"dlq","payload":{}}"#.to_vec()),
        5 => Just(br#"{"RuleType":"Rate Limit Reached","AlertId":"a","Data":{"\ud800":1}}"#.to_vec()),
        10 => "[ -~]{0,120}".prop_map(String::into_bytes),
    ];
    proptest::option::of(body)
}

fn settings() -> &'static Settings {
    static SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();
    SETTINGS.get_or_init(|| {
        let mut settings = Settings::default();
        settings.topics.create = false;
        settings
    })
}

thread_local! {
    // One processor for every case: building its Kafka admin client is the
    // slow part, and routing state carried across cases is a harder test.
    static PROCESSOR: std::cell::RefCell<Processor<'static>> = std::cell::RefCell::new(
        Processor::new(
            settings(),
            Box::leak(Box::new(Metrics::new().unwrap())),
            Box::leak(Box::new(Health::default())),
        )
        .unwrap(),
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    #[test]
    fn any_record_gives_one_output(
        key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        headers in proptest::collection::vec(header(), 0..8),
        value in value(),
    ) {
        let pairs: Vec<_> = headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
        let input = Input {
            key: key.as_deref(),
            value: value.as_deref(),
            headers: &pairs,
            ingest: IngestMeta { topic: "in", partition: 0, offset: 7, timestamp_ms: 1 },
        };
        let settings = settings();
        let prepared = PROCESSOR.with(|p| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(p.borrow_mut().process(&input, &futures::future::pending::<()>()))
        })
        .expect("no hold without a broker or registry");
        let record = prepared.record;
        let keys_ok = headers.iter().all(|(k, _)| std::str::from_utf8(k).is_ok());
        if value.as_deref() == Some(EVENT) && keys_ok {
            prop_assert!(
                matches!(prepared.kind, OutputKind::Envelope { .. }),
                "a valid event with UTF-8 header keys is an envelope"
            );
        }
        prop_assert!(record.wire_size() <= settings.max_message_bytes());
        match prepared.kind {
            OutputKind::Envelope { .. } => {
                prop_assert!(record.topic.starts_with("codat."));
                prop_assert_ne!(&*record.topic, settings.output.dead_letter_topic.as_str());
            }
            OutputKind::DeadLetter { rejection, .. } => {
                prop_assert_eq!(&*record.topic, settings.output.dead_letter_topic.as_str());
                let reasons: Vec<_> = record
                    .headers
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(b"codat_stream.dlq.reason"))
                    .collect();
                prop_assert_eq!(reasons.len(), 1);
                prop_assert_eq!(reasons[0].1, Some(rejection.reason.code().as_bytes()));
                prop_assert!(!record.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(b"authorization")));
            }
        }
    }
}
