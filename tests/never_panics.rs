//! The normaliser never panics, whatever the bytes: arbitrary input,
//! mutated published examples and random objects built from the keys the
//! shapes use. Whenever it accepts a body, the envelope's type is
//! topic-safe and the envelope encodes to Avro and decodes back unchanged.

use std::sync::OnceLock;

use codat_stream::core::event_type;
use codat_stream::{EnvelopeCodec, IngestMeta, NormalizeOptions, normalize};
use proptest::prelude::*;

const INGEST: IngestMeta<'static> = IngestMeta {
    topic: "t",
    partition: 0,
    offset: 0,
    timestamp_ms: 0,
};

fn codec() -> &'static EnvelopeCodec {
    static CODEC: OnceLock<EnvelopeCodec> = OnceLock::new();
    CODEC.get_or_init(|| EnvelopeCodec::new().unwrap())
}

fn options() -> &'static NormalizeOptions {
    static OPTIONS: OnceLock<NormalizeOptions> = OnceLock::new();
    OPTIONS.get_or_init(|| NormalizeOptions {
        max_body_bytes: 64 * 1024,
        ..NormalizeOptions::default()
    })
}

fn check(body: &[u8]) {
    let headers = [("webhook-id", "msg_1")];
    if let Ok(env) = normalize(body, &headers[..], &INGEST, options()) {
        event_type::validate(&env.event_type).unwrap();
        serde_json::from_str::<serde_json::Value>(&env.payload).expect("payload is JSON");
        let bytes = codec().encode(&env).unwrap();
        assert_eq!(codec().decode(&bytes).unwrap(), env.into_owned());
    }
}

fn published_bodies() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut out = Vec::new();
    for sub in ["openapi", "docs"] {
        for entry in std::fs::read_dir(format!("{dir}/{sub}")).unwrap() {
            out.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
    }
    out.sort();
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let tokens = prop::sample::select(vec![
        b"\"".to_vec(),
        b"{".to_vec(),
        b"}".to_vec(),
        b"[".to_vec(),
        b"]".to_vec(),
        b",".to_vec(),
        b":".to_vec(),
        b"null".to_vec(),
        b"\\u0000".to_vec(),
        b"\xff".to_vec(),
        b"\"RuleType\":\"Push Operation Status Changed()\",".to_vec(),
        b"\"eventType\":\"a..b\",".to_vec(),
        b"\"type\":".to_vec(),
        b"\"data\":".to_vec(),
        b"\"payload\":".to_vec(),
        b"\"Data\":".to_vec(),
        b"1e999".to_vec(),
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), tokens).prop_map(|(i, t)| Mutation::Insert(i, t)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(body: &mut Vec<u8>, m: &Mutation) {
    if body.is_empty() {
        return;
    }
    match m {
        Mutation::Flip(i, b) => {
            let i = i % body.len();
            body[i] = *b;
        }
        Mutation::Delete(i, n) => {
            let i = i % body.len();
            let end = (i + n).min(body.len());
            body.drain(i..end);
        }
        Mutation::Insert(i, t) => {
            let i = i % (body.len() + 1);
            body.splice(i..i, t.iter().copied());
        }
        Mutation::Truncate(i) => body.truncate(i % body.len()),
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "Linked",
            "PendingAuth",
            "Success",
            "Pending",
            "invoices",
            "in voices",
            "a..b",
            "2024-08-08T17:10:34.015Z",
            "not a date",
            "Push Operation Status Changed()",
            "DataConnectionStatusChanged",
            "Rate Limit Reached",
            "connection.failed",
            "x\u{0}y",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "id",
        "eventType",
        "type",
        "generatedDate",
        "payload",
        "data",
        "RuleType",
        "AlertId",
        "ClientId",
        "ClientName",
        "CompanyId",
        "DataConnectionId",
        "RuleId",
        "Message",
        "Data",
        "dataType",
        "status",
        "newStatus",
        "oldStatus",
        "dataConnectionId",
        "referenceCompany",
        "connection",
        "connectionId",
        "dataTypes",
        "DailyQuota",
        "extra",
    ])
    .prop_map(str::to_owned)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&body);
    }

    #[test]
    fn mutated_published_examples(
        pick in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let bodies = published_bodies();
        let mut body = bodies[pick.index(bodies.len())].clone();
        for m in &mutations {
            apply(&mut body, m);
        }
        check(&body);
    }

    #[test]
    fn random_objects_over_the_shapes_keys(
        fields in prop::collection::vec((key(), json_value()), 0..10),
    ) {
        let object: serde_json::Map<_, _> = fields.into_iter().collect();
        check(serde_json::to_string(&object).unwrap().as_bytes());
    }
}

#[test]
fn deep_nesting_neither_overflows_the_stack_nor_is_lost() {
    let big = NormalizeOptions {
        max_body_bytes: 1 << 20,
        ..NormalizeOptions::default()
    };
    // A deeply nested top level is not an object: refused.
    let array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(normalize(array.as_bytes(), &(), &INGEST, &big).is_err());
    // A deeply nested payload is skipped over, not recursed into, and passes through whole.
    let nested = format!("{}1{}", r#"{"a":"#.repeat(50_000), "}".repeat(50_000));
    let body = format!(r#"{{"id":"x","eventType":"a.b","payload":{nested}}}"#);
    let env = normalize(body.as_bytes(), &(), &INGEST, &big).unwrap();
    assert_eq!(env.payload, nested);
    // The same depth inside a legacy Data object is kept in the legacy section.
    let legacy =
        format!(r#"{{"RuleType":"Sync Failed","AlertId":"a","Data":{{"deep":{nested}}}}}"#);
    let env = normalize(legacy.as_bytes(), &(), &INGEST, &big).unwrap();
    let unmapped = env.legacy.unwrap().unmapped.unwrap();
    assert!(unmapped.contains(&nested));
}
