//! What is written for one consumed record: the envelope record (key,
//! CloudEvents binary-mode headers, Avro value) or, for a rejected body,
//! the dead-letter record (the original, untouched, plus reason headers).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::core::envelope::Envelope;
use crate::core::normalize::IngestMeta;
use crate::core::rejection::{RejectReason, Rejection};
use crate::kafka::out_headers::OutHeaders;
use crate::kafka::record_headers::RawHeader;

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

/// Dead-letter header on a shortened copy: `true`.
pub const DLQ_TRUNCATED: &str = "codat_stream.dlq.truncated";
/// Dead-letter header on a shortened copy: the original value's size.
pub const DLQ_ORIGINAL_VALUE_BYTES: &str = "codat_stream.dlq.original_value_bytes";
/// Dead-letter header on a shortened copy: the original key's size.
pub const DLQ_ORIGINAL_KEY_BYTES: &str = "codat_stream.dlq.original_key_bytes";
/// Dead-letter header on a shortened copy: how many headers the original had.
pub const DLQ_ORIGINAL_HEADER_COUNT: &str = "codat_stream.dlq.original_header_count";
/// Dead-letter header on a shortened copy: SHA-256 (hex) of the original value.
pub const DLQ_VALUE_SHA256: &str = "codat_stream.dlq.value_sha256";
/// Dead-letter header key prefix standing for an ingest header whose key is
/// not UTF-8 (Kafka's protocol defines header keys as strings; Confluent's
/// Python client fails on such a record): the rest of the key is the
/// original key's bytes in unpadded base64url, the value is unchanged.
pub const DLQ_HEADER_KEY_B64: &str = "codat_stream.dlq.header_key_b64.";

/// How often a record was sent back by `codat-stream dlq replay`. The one
/// reserved header a dead letter keeps from its input, so a record that
/// fails again is not replayed past `--max-replays`.
pub const REPLAYS_HEADER: &str = "codat_stream.replays";

/// Input headers under this prefix are never copied: the connector's own
/// dead-letter headers must not be forgeable by a producer.
pub const RESERVED_HEADER_PREFIX: &[u8] = b"codat_stream.";

/// How much of the value a shortened dead letter keeps, at most.
pub const TRUNCATED_VALUE_BYTES: usize = 16 * 1024;

/// librdkafka's per-record overhead (RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD) plus
/// the worst-case varints of each header, for a size check that is never
/// below librdkafka's own.
const RECORD_OVERHEAD: usize = 36;
const HEADER_OVERHEAD: usize = 10;

/// One record to produce, owning its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// Destination topic (shared: one per routed type).
    pub topic: std::sync::Arc<str>,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: OutHeaders,
}

impl OutRecord {
    /// The size librdkafka checks against `message.max.bytes`, or a little more.
    pub fn wire_size(&self) -> usize {
        let len = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::len);
        let headers = HEADER_OVERHEAD * self.headers.len() + self.headers.bytes_len();
        RECORD_OVERHEAD + len(&self.key) + len(&self.value) + headers
    }
}

/// The buffers of a record librdkafka has copied, written into again for
/// the next record: no allocation per record, and memory that is still in
/// cache (a fresh allocation's was not).
#[derive(Debug, Default)]
pub struct Spare {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: OutHeaders,
}

impl Spare {
    /// Most a spare keeps: a rare large record's buffers are freed, not held.
    pub const MAX_BYTES: usize = 64 * 1024;

    /// `record`'s buffers, unless they hold more than [`Spare::MAX_BYTES`].
    pub fn of(record: OutRecord) -> Option<Spare> {
        let spare = Spare {
            key: record.key.unwrap_or_default(),
            value: record.value.unwrap_or_default(),
            headers: record.headers,
        };
        let held = spare.key.capacity() + spare.value.capacity() + spare.headers.capacity_bytes();
        (held <= Self::MAX_BYTES).then_some(spare)
    }
}

/// The consumed record, as a dead letter needs it.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value.
    pub value: Option<&'a [u8]>,
    /// Headers, bytes as they came.
    pub headers: &'a [RawHeader<'a>],
    /// Where it was read.
    pub ingest: IngestMeta<'a>,
}

/// An owned copy of the consumed record, kept with an envelope until the
/// broker acknowledges it, so a refused envelope can still be dead-lettered.
#[derive(Debug, Clone)]
pub struct InputCopy {
    /// The ingest topic's name, the key's bytes, the value's, then the
    /// headers' keys and values: one buffer, one allocation.
    bytes: Vec<u8>,
    topic_len: usize,
    key_len: Option<usize>,
    value_len: Option<usize>,
    /// Where the headers start in `bytes`, and their lengths as
    /// [`OutHeaders`] keeps them.
    headers_at: usize,
    header_entries: Vec<(usize, Option<usize>)>,
    partition: i32,
    offset: i64,
    timestamp_ms: i64,
}

impl InputCopy {
    /// Copies `input`.
    pub fn of(input: &Input<'_>) -> Self {
        let (key, value) = (
            input.key.unwrap_or_default(),
            input.value.unwrap_or_default(),
        );
        let topic = input.ingest.topic.as_bytes();
        let header_bytes: usize = input
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len))
            .sum();
        let mut bytes = Vec::with_capacity(topic.len() + key.len() + value.len() + header_bytes);
        bytes.extend_from_slice(topic);
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        let headers_at = bytes.len();
        let mut header_entries = Vec::with_capacity(input.headers.len());
        for (k, v) in input.headers {
            bytes.extend_from_slice(k);
            bytes.extend_from_slice(v.unwrap_or_default());
            header_entries.push((k.len(), v.map(<[u8]>::len)));
        }
        InputCopy {
            bytes,
            key_len: input.key.map(<[u8]>::len),
            value_len: input.value.map(<[u8]>::len),
            headers_at,
            header_entries,
            topic_len: topic.len(),
            partition: input.ingest.partition,
            offset: input.ingest.offset,
            timestamp_ms: input.ingest.timestamp_ms,
        }
    }

    /// Bytes held, for the in-flight memory bound.
    pub fn size(&self) -> usize {
        self.bytes.len() - self.topic_len
    }

    /// The headers as borrowed pairs, for [`InputCopy::input`].
    pub fn header_refs(&self) -> Vec<RawHeader<'_>> {
        crate::kafka::out_headers::packed(&self.bytes[self.headers_at..], &self.header_entries)
            .collect()
    }

    /// A borrowed view of the copy, with `headers` from [`InputCopy::header_refs`].
    pub fn input<'a>(&'a self, headers: &'a [RawHeader<'a>]) -> Input<'a> {
        let (topic, record) = self.bytes[..self.headers_at].split_at(self.topic_len);
        let key_len = self.key_len.unwrap_or(0);
        Input {
            key: self.key_len.map(|k| &record[..k]),
            value: self.value_len.map(|v| &record[key_len..key_len + v]),
            headers,
            ingest: IngestMeta {
                // Copied from a &str: a char boundary, valid UTF-8.
                topic: std::str::from_utf8(topic).unwrap_or_default(),
                partition: self.partition,
                offset: self.offset,
                timestamp_ms: self.timestamp_ms,
            },
        }
    }
}

fn is_reserved_header(key: &[u8]) -> bool {
    key.len() >= RESERVED_HEADER_PREFIX.len()
        && key[..RESERVED_HEADER_PREFIX.len()].eq_ignore_ascii_case(RESERVED_HEADER_PREFIX)
}

fn is_dropped(key: &[u8], drop_headers: &[String]) -> bool {
    is_reserved_header(key)
        || drop_headers
            .iter()
            .any(|h| h.as_bytes().eq_ignore_ascii_case(key))
}

/// The envelope record: key = company, else client, else event id. An
/// ingest header whose key is not UTF-8 cannot be carried (header keys are
/// strings in Kafka's protocol): the record is rejected as `invalid_header`.
///
/// `encoded.value` holds the Avro value; its key and headers buffers are
/// written into (cleared first).
pub fn envelope_record(
    topic: std::sync::Arc<str>,
    envelope: &Envelope<'_>,
    encoded: Spare,
    ingest_headers: &[RawHeader<'_>],
    drop_headers: &[String],
) -> Result<OutRecord, Rejection> {
    let ingest_bytes: usize = ingest_headers
        .iter()
        .map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len))
        .sum();
    // The envelope's headers, in the order written (`ce_time` between
    // the two lists, formatted in place); the buffer is sized from the same
    // lists, so it never grows (a grow per record was a tenth of the
    // record's own work).
    let before_time = [
        ("ce_specversion", Some(&*envelope.specversion)),
        ("ce_id", Some(&*envelope.id)),
        ("ce_type", Some(&*envelope.event_type)),
        ("ce_source", Some(&*envelope.source)),
    ];
    let after_time = [
        ("ce_subject", envelope.subject.as_deref()),
        ("content-type", Some(ENVELOPE_CONTENT_TYPE)),
    ];
    let envelope_bytes = before_time
        .iter()
        .chain(&after_time)
        .map(|(k, v)| k.len() + v.map_or(0, str::len))
        .sum::<usize>()
        + "ce_time".len()
        + RFC3339_MILLIS_LEN;
    let Spare {
        mut key,
        value,
        mut headers,
    } = encoded;
    headers.reset(ingest_headers.len() + 7, ingest_bytes + envelope_bytes);
    for (k, v) in ingest_headers {
        // Every `ce_*` header is the connector's to set: a producer's
        // `ce_dataschema` would otherwise be trusted by CloudEvents readers.
        let cloudevents = k.len() >= 3 && k[..3].eq_ignore_ascii_case(b"ce_");
        if cloudevents
            || ENVELOPE_HEADERS
                .iter()
                .any(|h| h.as_bytes().eq_ignore_ascii_case(k))
            || is_dropped(k, drop_headers)
        {
            continue;
        }
        if std::str::from_utf8(k).is_err() {
            return Err(Rejection::new(
                RejectReason::InvalidHeader,
                "a record header's key is not UTF-8; Kafka header keys are strings",
            ));
        }
        headers.push(k, *v);
    }
    push_present(&mut headers, &before_time);
    headers.push_with(b"ce_time", |b| rfc3339_millis_into(envelope.time, b));
    push_present(&mut headers, &after_time);
    key.clear();
    key.extend_from_slice(envelope.routing_key().as_bytes());
    Ok(OutRecord {
        topic,
        key: Some(key),
        value: Some(value),
        headers,
    })
}

/// How much of the original a dead letter carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterForm {
    /// Key, value and headers byte for byte (less `drop_headers` and
    /// `codat_stream.*`).
    Full,
    /// Too large for the broker as is: the key and at most
    /// [`TRUNCATED_VALUE_BYTES`] of the value, no ingest headers, and the
    /// original sizes and the value's SHA-256 in headers.
    Truncated,
    /// Even that was refused: only the reason, coordinates, sizes and digest.
    Bare,
}

impl DeadLetterForm {
    /// The next smaller form, if any.
    pub fn smaller(self) -> Option<DeadLetterForm> {
        match self {
            DeadLetterForm::Full => Some(DeadLetterForm::Truncated),
            DeadLetterForm::Truncated => Some(DeadLetterForm::Bare),
            DeadLetterForm::Bare => None,
        }
    }
}

/// The dead-letter record: the original (in `form`) plus the reason and the
/// ingest coordinates.
pub fn dead_letter_record(
    topic: std::sync::Arc<str>,
    input: &Input<'_>,
    rejection: &Rejection,
    drop_headers: &[String],
    form: DeadLetterForm,
) -> OutRecord {
    let mut headers = OutHeaders::with_capacity(input.headers.len() + 12, 256);
    if form == DeadLetterForm::Full {
        for (k, v) in input.headers {
            if !is_dropped(k, drop_headers) || k.eq_ignore_ascii_case(REPLAYS_HEADER.as_bytes()) {
                headers.push(&utf8_header_key(k), *v);
            }
        }
    }
    let mut set = |k: &str, v: String| headers.push(k.as_bytes(), Some(v.as_bytes()));
    set(DLQ_REASON, rejection.reason.code().to_owned());
    set(DLQ_MESSAGE, rejection.message.clone());
    set(DLQ_TOPIC, input.ingest.topic.to_owned());
    set(DLQ_PARTITION, input.ingest.partition.to_string());
    set(DLQ_OFFSET, input.ingest.offset.to_string());
    set(DLQ_TIMESTAMP, input.ingest.timestamp_ms.to_string());
    let value = input.value.unwrap_or_default();
    let (key, value) = match form {
        DeadLetterForm::Full => (
            input.key.map(<[u8]>::to_vec),
            input.value.map(<[u8]>::to_vec),
        ),
        DeadLetterForm::Truncated | DeadLetterForm::Bare => {
            set(DLQ_TRUNCATED, "true".to_owned());
            set(DLQ_ORIGINAL_VALUE_BYTES, value.len().to_string());
            set(
                DLQ_ORIGINAL_KEY_BYTES,
                input.key.map_or(0, <[u8]>::len).to_string(),
            );
            set(DLQ_ORIGINAL_HEADER_COUNT, input.headers.len().to_string());
            set(DLQ_VALUE_SHA256, sha256_hex(value));
            if form == DeadLetterForm::Bare {
                (None, None)
            } else {
                let keep = value.len().min(TRUNCATED_VALUE_BYTES);
                let key = input
                    .key
                    .map(|k| k[..k.len().min(TRUNCATED_VALUE_BYTES)].to_vec());
                (key, Some(value[..keep].to_vec()))
            }
        }
    };
    OutRecord {
        topic,
        key,
        value,
        headers,
    }
}

/// A dead letter's key for ingest header key `key`: itself when UTF-8,
/// else [`DLQ_HEADER_KEY_B64`] and its bytes in base64url.
pub fn utf8_header_key(key: &[u8]) -> Vec<u8> {
    if std::str::from_utf8(key).is_ok() {
        return key.to_vec();
    }
    use base64::Engine;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
    [DLQ_HEADER_KEY_B64.as_bytes(), encoded.as_bytes()].concat()
}

/// The ingest header key a dead letter's header key stands for (the
/// inverse of [`utf8_header_key`]); `None` for the connector's own
/// `codat_stream.dlq.*` headers.
pub fn original_header_key(key: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    if let Some(encoded) = key.strip_prefix(DLQ_HEADER_KEY_B64.as_bytes()) {
        return base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .ok();
    }
    (!is_reserved_header(key)).then(|| key.to_vec())
}

/// The smallest form of dead letter, from `Full` down, that fits `max_bytes`
/// (`Bare` when none does: it is a few hundred bytes).
pub fn fitting_dead_letter(
    topic: &str,
    input: &Input<'_>,
    rejection: &Rejection,
    drop_headers: &[String],
    max_bytes: usize,
) -> (OutRecord, DeadLetterForm) {
    let mut form = DeadLetterForm::Full;
    loop {
        let record = dead_letter_record(topic.into(), input, rejection, drop_headers, form);
        match form.smaller() {
            Some(next) if record.wire_size() > max_bytes => form = next,
            _ => return (record, form),
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3339 with milliseconds, UTC (`2024-08-08T17:10:34.015Z`).
pub fn rfc3339_millis(ms: i64) -> String {
    let mut text = Vec::with_capacity(24);
    rfc3339_millis_into(ms, &mut text);
    String::from_utf8(text).unwrap_or_default()
}

/// Pushes each header of `list` that has a value: an absent one (no
/// subject) is no header at all, not a null one.
fn push_present(headers: &mut OutHeaders, list: &[(&str, Option<&str>)]) {
    for (k, v) in list {
        if let Some(v) = v {
            headers.push(k.as_bytes(), Some(v.as_bytes()));
        }
    }
}

/// The longest [`rfc3339_millis`]: `YYYY-MM-DDTHH:MM:SS.mmmZ` (a guide
/// for sizing buffers; a longer text would only make one grow).
const RFC3339_MILLIS_LEN: usize = 24;

/// [`rfc3339_millis`], appended to `out` (nothing for a time out of range).
pub fn rfc3339_millis_into(ms: i64, out: &mut Vec<u8>) {
    let len = out.len();
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000);
    if t.is_err() || t.is_ok_and(|t| t.format_into(out, &Rfc3339).is_err()) {
        out.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            .find(|(h, _)| *h == k.as_bytes())
            .map(|(_, v)| std::str::from_utf8(v.unwrap()).unwrap())
    }

    fn envelope() -> crate::Envelope<'static> {
        let opts = Box::leak(Box::new(NormalizeOptions::default()));
        let body = br#"{"id":"e1","eventType":"connection.failed","generatedDate":"2024-08-08T17:10:34.015Z","payload":{"referenceCompany":{"id":"co"}}}"#;
        normalize(body, &(), &INGEST, opts).unwrap()
    }

    #[test]
    fn envelope_records_carry_cloudevents_headers_and_ingest_headers() {
        let env = envelope();
        let ingest: [RawHeader<'_>; 5] = [
            (b"webhook-id", Some(b"msg_1")),
            (b"Authorization", Some(b"Bearer s3cret")),
            (b"content-type", Some(b"application/json")),
            (b"codat_stream.dlq.reason", Some(b"forged")),
            (b"CE_dataschema", Some(b"https://forged")),
        ];
        // Buffers of an earlier record: written over, nothing of it kept.
        let spare = Spare {
            key: b"stale-key".to_vec(),
            value: vec![1, 2],
            headers: OutHeaders::of(&[(b"stale", Some(b"header"))]),
        };
        let r = envelope_record(
            "codat.connection.failed".into(),
            &env,
            spare,
            &ingest,
            &["authorization".into()],
        )
        .unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"co"[..]));
        assert_eq!(r.value.as_deref(), Some(&[1, 2][..]));
        assert_eq!(header(&r, "stale"), None);
        assert_eq!(header(&r, "webhook-id"), Some("msg_1"));
        assert_eq!(
            header(&r, "Authorization"),
            None,
            "credentials are not copied"
        );
        assert_eq!(
            header(&r, "codat_stream.dlq.reason"),
            None,
            "reserved names are not copied"
        );
        assert_eq!(
            header(&r, "CE_dataschema"),
            None,
            "ce_* headers are ours to set"
        );
        assert_eq!(header(&r, "ce_id"), Some("e1"));
        assert_eq!(header(&r, "ce_type"), Some("connection.failed"));
        assert_eq!(header(&r, "ce_time"), Some("2024-08-08T17:10:34.015Z"));
        assert_eq!(header(&r, "ce_subject"), Some("co"));
        assert_eq!(header(&r, "ce_specversion"), Some("1.0"));
        assert_eq!(header(&r, "content-type"), Some(ENVELOPE_CONTENT_TYPE));
        let content_types = r
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(b"content-type"));
        assert_eq!(content_types.count(), 1);
    }

    /// Issue 9, finding 1: a non-UTF-8 header key crash-looped the process.
    #[test]
    fn a_non_utf8_header_key_is_an_invalid_header_rejection() {
        let ingest: [RawHeader<'_>; 1] = [(b"\xff\xfekey", Some(b"v"))];
        let err =
            envelope_record("t".into(), &envelope(), Spare::default(), &ingest, &[]).unwrap_err();
        assert_eq!(err.reason, RejectReason::InvalidHeader);
        // A non-UTF-8 *value* is fine: values are bytes.
        let ingest: [RawHeader<'_>; 1] = [(b"k", Some(b"\xff"))];
        assert!(envelope_record("t".into(), &envelope(), Spare::default(), &ingest, &[]).is_ok());
    }

    fn input<'a>(headers: &'a [RawHeader<'a>], value: &'a [u8]) -> Input<'a> {
        Input {
            key: Some(b"k"),
            value: Some(value),
            headers,
            ingest: INGEST,
        }
    }

    /// Issue 9, finding 7: dead letters copied `authorization` and kept
    /// forged `codat_stream.dlq.*` headers from the input.
    #[test]
    fn dead_letters_keep_the_original_and_say_why() {
        let rej = Rejection::new(RejectReason::InvalidJson, "body is not valid JSON");
        let ingest: [RawHeader<'_>; 4] = [
            (b"Authorization", Some(b"x")),
            (b"h", None),
            (b"\xffk", Some(b"\xfe")),
            (b"Codat_Stream.dlq.reason", Some(b"forged")),
        ];
        let r = dead_letter_record(
            "codat.dlq".into(),
            &input(&ingest, b"\xffraw"),
            &rej,
            &["authorization".into()],
            DeadLetterForm::Full,
        );
        assert_eq!(r.value.as_deref(), Some(&b"\xffraw"[..]));
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        let headers: Vec<_> = r.headers.iter().collect();
        assert_eq!(
            headers[0],
            (&b"h"[..], None),
            "null header values stay null"
        );
        // Issue 21: a key that is not UTF-8 is carried base64url-encoded
        // under the reserved prefix (every client reads the dead letter),
        // its bytes recoverable; the value is kept as it came.
        assert_eq!(
            headers[1],
            (
                &b"codat_stream.dlq.header_key_b64._2s"[..],
                Some(&b"\xfe"[..])
            ),
        );
        assert_eq!(original_header_key(headers[1].0), Some(b"\xffk".to_vec()));
        assert_eq!(original_header_key(b"h"), Some(b"h".to_vec()));
        assert_eq!(original_header_key(DLQ_REASON.as_bytes()), None);
        assert!(
            r.headers
                .iter()
                .all(|(k, _)| std::str::from_utf8(k).is_ok()),
            "every key is UTF-8"
        );
        let reasons = r
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(DLQ_REASON.as_bytes()));
        assert_eq!(reasons.count(), 1, "the forged reason is not copied");
        assert_eq!(header(&r, DLQ_REASON), Some("invalid_json"));
        assert_eq!(header(&r, DLQ_MESSAGE), Some("body is not valid JSON"));
        assert_eq!(header(&r, DLQ_TOPIC), Some("in"));
        assert_eq!(header(&r, DLQ_PARTITION), Some("2"));
        assert_eq!(header(&r, DLQ_OFFSET), Some("9"));
        assert_eq!(header(&r, DLQ_TIMESTAMP), Some("1723137034015"));
        assert_eq!(header(&r, DLQ_TRUNCATED), None);
    }

    /// Issue 9, finding 2: a dead letter too large for the producer was
    /// re-sent forever. The largest form that fits is chosen instead.
    #[test]
    fn an_oversized_dead_letter_is_shortened_with_size_and_digest() {
        let rej = Rejection::new(RejectReason::BodyTooLarge, "big");
        let body = vec![b'x'; 1_000_200];
        let hs: [RawHeader<'_>; 1] = [(b"h", Some(b"v"))];
        let (r, form) = fitting_dead_letter("codat.dlq", &input(&hs, &body), &rej, &[], 1_000_000);
        assert_eq!(form, DeadLetterForm::Truncated);
        assert!(r.wire_size() <= 1_000_000);
        assert_eq!(r.value.as_ref().map(Vec::len), Some(TRUNCATED_VALUE_BYTES));
        assert_eq!(header(&r, DLQ_TRUNCATED), Some("true"));
        assert_eq!(header(&r, DLQ_ORIGINAL_VALUE_BYTES), Some("1000200"));
        assert_eq!(header(&r, DLQ_ORIGINAL_HEADER_COUNT), Some("1"));
        assert_eq!(header(&r, "h"), None);
        let digest = header(&r, DLQ_VALUE_SHA256).unwrap();
        assert_eq!(digest.len(), 64);
        let (small, form) = fitting_dead_letter("codat.dlq", &input(&hs, &body), &rej, &[], 2_000);
        assert_eq!(form, DeadLetterForm::Bare);
        assert_eq!(header(&small, DLQ_VALUE_SHA256), Some(digest));
        assert_eq!((small.key, small.value), (None, None));
        let (fits, form) =
            fitting_dead_letter("codat.dlq", &input(&hs, b"{}"), &rej, &[], 1_000_000);
        assert_eq!(form, DeadLetterForm::Full);
        assert_eq!(fits.value.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn wire_size_is_never_below_librdkafkas_count() {
        let r = OutRecord {
            topic: "t".into(),
            key: Some(vec![0; 10]),
            value: Some(vec![0; 100]),
            headers: [(&b"k"[..], Some(&[0u8; 5][..]))].into_iter().collect(),
        };
        assert!(r.wire_size() >= 10 + 100 + 1 + 5 + 36);
    }

    #[test]
    fn input_copies_round_trip() {
        let hs: [RawHeader<'_>; 1] = [(b"\xff", None)];
        let copy = InputCopy::of(&input(&hs, b"v"));
        let headers = copy.header_refs();
        let i = copy.input(&headers);
        assert_eq!(i.headers, &hs[..]);
        assert_eq!(
            (i.key, i.value, i.ingest),
            (Some(&b"k"[..]), Some(&b"v"[..]), INGEST)
        );
        assert_eq!(copy.size(), 1 + 1 + 1);
    }
}
