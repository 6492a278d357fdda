//! What is written for one consumed record: the envelope record (key,
//! CloudEvents binary-mode headers, Avro value) or, for a rejected body,
//! the dead-letter record (the original, untouched, plus reason headers).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::envelope::Envelope;
use crate::normalize::IngestMeta;
use crate::rejection::Rejection;

/// Content type of envelope record values (Avro single-object encoding).
pub const ENVELOPE_CONTENT_TYPE: &str = "application/avro";

/// Headers codat-stream sets on envelope records; ingest headers of these
/// names are not copied, so each appears once.
pub const ENVELOPE_HEADERS: &[&str] = &[
    "ce_specversion",
    "ce_id",
    "ce_type",
    "ce_source",
    "ce_time",
    "ce_subject",
    "content-type",
];

/// Dead-letter header: the rejection's reason code.
pub const DLQ_REASON: &str = "codat_stream.dlq.reason";
/// Dead-letter header: the rejection's message.
pub const DLQ_MESSAGE: &str = "codat_stream.dlq.message";
/// Dead-letter header: the ingest topic.
pub const DLQ_TOPIC: &str = "codat_stream.dlq.topic";
/// Dead-letter header: the ingest partition.
pub const DLQ_PARTITION: &str = "codat_stream.dlq.partition";
/// Dead-letter header: the ingest offset.
pub const DLQ_OFFSET: &str = "codat_stream.dlq.offset";
/// Dead-letter header: the ingest record timestamp (ms since the epoch).
pub const DLQ_TIMESTAMP: &str = "codat_stream.dlq.timestamp";

/// One record to produce, owning its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// Destination topic.
    pub topic: String,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The envelope record: key = company, else client, else event id.
pub fn envelope_record<'h>(
    topic: String,
    envelope: &Envelope<'_>,
    value: Vec<u8>,
    ingest_headers: impl Iterator<Item = (&'h str, Option<&'h [u8]>)>,
    drop_headers: &[String],
) -> OutRecord {
    let mut headers: Vec<(String, Option<Vec<u8>>)> = ingest_headers
        .filter(|(k, _)| {
            !ENVELOPE_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(k))
                && !drop_headers.iter().any(|h| h.eq_ignore_ascii_case(k))
        })
        .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
        .collect();
    let mut set = |k: &str, v: &str| headers.push((k.to_owned(), Some(v.as_bytes().to_vec())));
    set("ce_specversion", &envelope.specversion);
    set("ce_id", &envelope.id);
    set("ce_type", &envelope.event_type);
    set("ce_source", &envelope.source);
    set("ce_time", &rfc3339_millis(envelope.time));
    if let Some(subject) = &envelope.subject {
        set("ce_subject", subject);
    }
    set("content-type", ENVELOPE_CONTENT_TYPE);
    OutRecord {
        topic,
        key: Some(envelope.routing_key().as_bytes().to_vec()),
        value: Some(value),
        headers,
    }
}

/// The dead-letter record: original key, value and headers unchanged,
/// plus the reason and the ingest coordinates.
pub fn dead_letter_record<'h>(
    topic: String,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    ingest_headers: impl Iterator<Item = (&'h str, Option<&'h [u8]>)>,
    ingest: &IngestMeta<'_>,
    rejection: &Rejection,
) -> OutRecord {
    let mut headers: Vec<(String, Option<Vec<u8>>)> = ingest_headers
        .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
        .collect();
    let mut set = |k: &str, v: String| headers.push((k.to_owned(), Some(v.into_bytes())));
    set(DLQ_REASON, rejection.reason.code().to_owned());
    set(DLQ_MESSAGE, rejection.message.clone());
    set(DLQ_TOPIC, ingest.topic.to_owned());
    set(DLQ_PARTITION, ingest.partition.to_string());
    set(DLQ_OFFSET, ingest.offset.to_string());
    set(DLQ_TIMESTAMP, ingest.timestamp_ms.to_string());
    OutRecord {
        topic,
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        headers,
    }
}

/// RFC 3339 with milliseconds, UTC (`2024-08-08T17:10:34.015Z`).
pub fn rfc3339_millis(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejection::RejectReason;
    use crate::{NormalizeOptions, normalize};

    const INGEST: IngestMeta<'static> = IngestMeta {
        topic: "in",
        partition: 2,
        offset: 9,
        timestamp_ms: 1_723_137_034_015,
    };

    fn header<'r>(r: &'r OutRecord, k: &str) -> Option<&'r str> {
        r.headers
            .iter()
            .find(|(h, _)| h == k)
            .map(|(_, v)| std::str::from_utf8(v.as_deref().unwrap()).unwrap())
    }

    #[test]
    fn envelope_records_carry_cloudevents_headers_and_ingest_headers() {
        let opts = NormalizeOptions::default();
        let body = br#"{"id":"e1","eventType":"connection.failed","generatedDate":"2024-08-08T17:10:34.015Z","payload":{"referenceCompany":{"id":"co"}}}"#;
        let env = normalize(body, &(), &INGEST, &opts).unwrap();
        let ingest = [
            ("webhook-id", Some(&b"msg_1"[..])),
            ("Authorization", Some(&b"Bearer s3cret"[..])),
            ("content-type", Some(&b"application/json"[..])),
        ];
        let r = envelope_record(
            "codat.connection.failed".into(),
            &env,
            vec![1, 2],
            ingest.into_iter(),
            &["authorization".into()],
        );
        assert_eq!(r.key.as_deref(), Some(&b"co"[..]));
        assert_eq!(header(&r, "webhook-id"), Some("msg_1"));
        assert_eq!(
            header(&r, "Authorization"),
            None,
            "credentials are not copied"
        );
        assert_eq!(header(&r, "ce_id"), Some("e1"));
        assert_eq!(header(&r, "ce_type"), Some("connection.failed"));
        assert_eq!(header(&r, "ce_time"), Some("2024-08-08T17:10:34.015Z"));
        assert_eq!(header(&r, "ce_subject"), Some("co"));
        assert_eq!(header(&r, "ce_specversion"), Some("1.0"));
        assert_eq!(header(&r, "content-type"), Some(ENVELOPE_CONTENT_TYPE));
        assert_eq!(
            r.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .count(),
            1
        );
    }

    #[test]
    fn dead_letters_keep_the_original_and_say_why() {
        let rej = Rejection::new(RejectReason::InvalidJson, "body is not valid JSON");
        let ingest = [("Authorization", Some(&b"x"[..])), ("h", None)];
        let r = dead_letter_record(
            "codat.dlq".into(),
            Some(b"k"),
            Some(b"\xffraw"),
            ingest.into_iter(),
            &INGEST,
            &rej,
        );
        assert_eq!(r.value.as_deref(), Some(&b"\xffraw"[..]));
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(
            &r.headers[0],
            &("Authorization".to_string(), Some(b"x".to_vec()))
        );
        assert_eq!(
            &r.headers[1],
            &("h".to_string(), None),
            "null header values stay null"
        );
        assert_eq!(header(&r, DLQ_REASON), Some("invalid_json"));
        assert_eq!(header(&r, DLQ_MESSAGE), Some("body is not valid JSON"));
        assert_eq!(header(&r, DLQ_TOPIC), Some("in"));
        assert_eq!(header(&r, DLQ_PARTITION), Some("2"));
        assert_eq!(header(&r, DLQ_OFFSET), Some("9"));
        assert_eq!(header(&r, DLQ_TIMESTAMP), Some("1723137034015"));
    }
}
