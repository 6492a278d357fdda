//! The direct Avro writer (`src/avro_writer.rs`) writes exactly the bytes
//! apache-avro's generic writer writes for the same envelope, for arbitrary
//! envelopes (every optional field absent or present, any text, any
//! number), and those bytes decode back to the same envelope.

use std::borrow::Cow;

use codat_stream::EnvelopeCodec;
use codat_stream::core::envelope::{
    Envelope, IdSource, Ingest, LegacyRule, Shape, TimeSource, TypeOrigin,
};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = Cow<'static, str>> {
    prop_oneof![Just(String::new()), ".{0,40}", "[a-z.]{150,200}",].prop_map(Cow::Owned)
}

fn opt() -> impl Strategy<Value = Option<Cow<'static, str>>> {
    proptest::option::of(text())
}

fn legacy() -> impl Strategy<Value = Option<LegacyRule<'static>>> {
    proptest::option::of(
        (opt(), opt(), opt(), proptest::option::of(".{0,30}")).prop_map(
            |(rule_id, client_name, message, unmapped)| LegacyRule {
                rule_id,
                client_name,
                message,
                unmapped,
            },
        ),
    )
}

fn ingest() -> impl Strategy<Value = Ingest<'static>> {
    (text(), any::<i32>(), any::<i64>(), any::<i64>(), opt()).prop_map(
        |(topic, partition, offset, timestamp, webhook_id)| Ingest {
            topic,
            partition,
            offset,
            timestamp,
            webhook_id,
        },
    )
}

fn enums() -> impl Strategy<Value = (IdSource, TypeOrigin, TimeSource, Shape)> {
    (
        prop_oneof![
            Just(IdSource::Body),
            Just(IdSource::WebhookIdHeader),
            Just(IdSource::Derived)
        ],
        prop_oneof![
            Just(TypeOrigin::CodatCatalog),
            Just(TypeOrigin::CodatUnlisted),
            Just(TypeOrigin::CodatStream)
        ],
        prop_oneof![Just(TimeSource::Event), Just(TimeSource::Ingest)],
        prop_oneof![
            Just(Shape::Event),
            Just(Shape::LegacyRule),
            Just(Shape::Generic)
        ],
    )
}

fn envelope() -> impl Strategy<Value = Envelope<'static>> {
    let ids = (text(), text(), text(), text(), any::<i64>());
    let refs = (opt(), opt(), opt(), opt(), opt(), opt());
    let rest = (
        legacy(),
        proptest::option::of(".{0,30}"),
        text(),
        text(),
        ingest(),
        opt(),
        proptest::collection::vec(text(), 0..4),
    );
    (ids, enums(), refs, rest).prop_map(|(ids, enums, refs, rest)| Envelope {
        id: ids.0,
        id_source: enums.0,
        event_type: ids.1,
        type_origin: enums.1,
        source: ids.2,
        specversion: ids.3,
        time: ids.4,
        time_source: enums.2,
        subject: refs.0,
        company_id: refs.1,
        connection_id: refs.2,
        client_id: refs.3,
        data_type: refs.4,
        shape: enums.3,
        legacy_rule_type: refs.5,
        legacy: rest.0,
        extensions: rest.1,
        datacontenttype: rest.2,
        payload: rest.3,
        ingest: rest.4,
        time_original: rest.5,
        redacted_paths: rest.6,
    })
}

fn codec() -> &'static EnvelopeCodec {
    static CODEC: std::sync::OnceLock<EnvelopeCodec> = std::sync::OnceLock::new();
    CODEC.get_or_init(|| EnvelopeCodec::new().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn direct_writer_is_byte_identical_to_apache_avro(e in envelope()) {
        let codec = codec();
        let mut direct = Vec::new();
        codec.encode_into(&e, &mut direct).unwrap();
        let mut reference = Vec::new();
        codec.encode_with_apache_avro(&e, &mut reference).unwrap();
        prop_assert_eq!(&direct, &reference);
        // The buffer is reserved once, for the whole datum.
        prop_assert!(direct.len() <= codat_stream::core::avro_writer::len_bound(&e));
        prop_assert_eq!(codec.decode(&direct).unwrap(), e);
    }
}
