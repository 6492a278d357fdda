//! The normaliser: raw webhook bytes + record headers + ingest coordinates
//! in, one [`Envelope`] or a [`Rejection`] out. Pure: no I/O, no clock, no
//! global state, so the same input always gives the same output.

use std::borrow::Cow;

use serde_json::value::RawValue;
use uuid::Uuid;

use crate::core::envelope::{
    Envelope, IdSource, Ingest, PAYLOAD_CONTENT_TYPE, SPEC_VERSION, Shape, TimeSource,
};
use crate::core::event_payload;
use crate::core::event_type;
use crate::core::headers::HeaderLookup;
use crate::core::json_scan;
use crate::core::legacy;
use crate::core::raw_json::{self, Kind, OutJson, RawObject};
use crate::core::redact::Redaction;
use crate::core::rejection::{RejectReason, Rejection};
use crate::core::signature::Verifier;
use crate::core::timestamp;
use crate::core::webhook_shape;

/// The header Codat (Standard Webhooks) sets on every delivery; stable
/// across retries of one message.
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";

/// Longest `webhook-id` header value used as an id; longer ones are ignored.
pub const MAX_WEBHOOK_ID_LEN: usize = 256;

/// Namespace of the UUIDv5 ids derived from bodies that carry no id.
pub const DERIVED_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5d0c_4f7e_2b61_4c1a_9e3f_c0da_7572_ea11);

/// Default CloudEvents `source`.
pub const DEFAULT_SOURCE: &str = "urn:codat:webhooks";

/// Default body size limit: 1 MiB, Kafka's default maximum message size.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Settings of the normaliser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizeOptions {
    /// Bodies larger than this are rejected with `body_too_large`.
    pub max_body_bytes: usize,
    /// The CloudEvents `source` of every envelope.
    pub source: String,
    /// Payload paths to redact before the envelope is written (none by default).
    pub redact: Redaction,
    /// Standard Webhooks signatures to check before anything else, with
    /// the timestamp tolerance measured against the ingest record's
    /// timestamp (none by default).
    pub verify: Option<Verifier>,
}

impl Default for NormalizeOptions {
    fn default() -> Self {
        NormalizeOptions {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            source: DEFAULT_SOURCE.to_owned(),
            redact: Redaction::default(),
            verify: None,
        }
    }
}

/// Where a raw record was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestMeta<'a> {
    /// Ingest topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Record timestamp, ms since the epoch (the shell supplies the read
    /// time when the record has none).
    pub timestamp_ms: i64,
}

/// Normalises one raw webhook body, then redacts its payload when
/// redaction is configured.
pub fn normalize<'a, H: HeaderLookup + ?Sized>(
    body: &'a [u8],
    headers: &H,
    ingest: &IngestMeta<'a>,
    options: &'a NormalizeOptions,
) -> Result<Envelope<'a>, Rejection> {
    // An unauthenticated body is not interpreted at all.
    if let Some(verifier) = &options.verify {
        let now_secs = ingest.timestamp_ms.div_euclid(1000);
        verifier
            .verify(body, headers, now_secs)
            .map_err(|failure| {
                Rejection::new(
                    RejectReason::InvalidSignature,
                    format!("{} ({})", failure.message(), failure.label()),
                )
            })?;
    }
    let mut envelope = envelope_of(body, headers, ingest, options)?;
    // Without redaction the payload stays borrowed: no parse, no copy.
    if options.redact.is_active()
        && let Some((payload, paths)) = options.redact.apply(&envelope.payload)?
    {
        envelope.payload = Cow::Owned(payload);
        envelope.redacted_paths = paths;
    }
    Ok(envelope)
}

/// The envelope of one raw webhook body, payload as sent (or rewritten).
fn envelope_of<'a, H: HeaderLookup + ?Sized>(
    body: &'a [u8],
    headers: &H,
    ingest: &IngestMeta<'a>,
    options: &'a NormalizeOptions,
) -> Result<Envelope<'a>, Rejection> {
    if body.len() > options.max_body_bytes {
        return Err(Rejection::new(
            RejectReason::BodyTooLarge,
            format!(
                "body is {} bytes; the limit is {} bytes",
                body.len(),
                options.max_body_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        Rejection::new(
            RejectReason::InvalidUtf8,
            format!(
                "body is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    // Some HTTP stacks keep a UTF-8 byte-order mark; JSON parsers refuse it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (top, split) = parse_top_object(text)?;

    let webhook_id = headers
        .header(WEBHOOK_ID_HEADER)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= MAX_WEBHOOK_ID_LEN)
        .map(|v| Cow::Owned(v.to_owned()));
    let ingest = Ingest {
        topic: Cow::Borrowed(ingest.topic),
        partition: ingest.partition,
        offset: ingest.offset,
        timestamp: ingest.timestamp_ms,
        webhook_id,
    };
    let source = Cow::Borrowed(options.source.as_str());

    match webhook_shape::recognise(&top)? {
        Shape::LegacyRule => {
            let ev = legacy::rewrite(&top)?;
            Ok(Envelope {
                id: ev.id,
                id_source: IdSource::Body,
                event_type: ev.event_type,
                type_origin: ev.type_origin,
                source,
                specversion: Cow::Borrowed(SPEC_VERSION),
                time: ingest.timestamp,
                time_source: TimeSource::Ingest,
                subject: ev.company_id.clone(),
                company_id: ev.company_id,
                connection_id: ev.connection_id,
                client_id: ev.client_id,
                data_type: ev.data_type,
                shape: Shape::LegacyRule,
                legacy_rule_type: Some(ev.rule_type),
                legacy: Some(ev.legacy),
                extensions: None,
                datacontenttype: Cow::Borrowed(PAYLOAD_CONTENT_TYPE),
                payload: Cow::Owned(ev.payload),
                ingest,
                time_original: None,
                redacted_paths: Vec::new(),
            })
        }
        shape @ (Shape::Event | Shape::Generic) => {
            event_like(shape, &top, split, body, ingest, source)
        }
    }
}

/// A `payload` or `data` object split in the validating pass, by its
/// index among the top-level members.
type BodySplit<'a> = Vec<(usize, json_scan::SplitObject<'a>)>;

/// Whether the object under `key` is split in the validating pass: the
/// body of an event (`payload`) or a generic message (`data`).
fn is_body_key(key: &str) -> bool {
    matches!(key, "payload" | "data")
}

/// The body's top-level object, or why it is not one.
fn parse_top_object(text: &str) -> Result<(RawObject<'_>, BodySplit<'_>), Rejection> {
    // The common case in one pass: an object with decodable keys,
    // validated and split, its payload too. Anything else fails here and
    // is read again below (by serde_json) only to name the fault.
    if let Some(scanned) = json_scan::scan(text, &is_body_key, &event_payload::is_path_head) {
        let top = RawObject {
            members: scanned.top,
        };
        top.check_unique(false).map_err(|f| f.at("the body"))?;
        return Ok((top, scanned.split));
    }
    if let Ok(top) = serde_json::from_str::<RawObject>(text) {
        top.check_unique(false).map_err(|f| f.at("the body"))?;
        return Ok((top, Vec::new()));
    }
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| {
        Rejection::new(
            RejectReason::InvalidJson,
            format!("body is not valid JSON: {e}"),
        )
    })?;
    let top = RawObject::parse(raw.get()).map_err(|f| f.at("the body"))?;
    let top = top.ok_or_else(|| {
        Rejection::new(
            RejectReason::NotAnObject,
            format!(
                "body is {}, not a JSON object",
                raw_json::kind(raw.get()).name()
            ),
        )
    })?;
    Ok((top, Vec::new()))
}

/// EVENT and GENERIC bodies: the same fields, the body under `payload` or `data`.
fn event_like<'a>(
    shape: Shape,
    top: &RawObject<'a>,
    split: BodySplit<'a>,
    body: &'a [u8],
    ingest: Ingest<'a>,
    source: Cow<'a, str>,
) -> Result<Envelope<'a>, Rejection> {
    let (shape_name, body_key) = match shape {
        Shape::Generic => ("generic", "data"),
        _ => ("event", "payload"),
    };
    let type_key = if top.get("eventType").is_some() {
        "eventType"
    } else {
        "type"
    };
    let event_type = required_str(top, type_key, shape_name)?;
    event_type::validate(&event_type)?;

    let payload = top
        .get(body_key)
        .filter(|raw| raw_json::kind(raw) != Kind::Null)
        .ok_or_else(|| Rejection::missing(body_key, shape_name))?;
    if shape == Shape::Event && raw_json::kind(payload) != Kind::Object {
        return Err(Rejection::mistyped(
            body_key,
            "an object",
            raw_json::kind(payload).name(),
        ));
    }

    // Without a body id, the `webhook-id` header is the id Codat keeps
    // stable across retries, for either shape. Only generic test messages
    // fall back to a derived id: an event with neither is malformed.
    let (id, id_source) = match (optional_str(top, "id")?, &ingest.webhook_id) {
        (Some(id), _) if !id.is_empty() => (id, IdSource::Body),
        (_, Some(h)) => (h.clone(), IdSource::WebhookIdHeader),
        _ if shape == Shape::Event => return Err(Rejection::missing("id", shape_name)),
        _ => (
            Cow::Owned(Uuid::new_v5(&DERIVED_ID_NAMESPACE, body).to_string()),
            IdSource::Derived,
        ),
    };

    // The text is kept as sent (`time` holds UTC milliseconds only); one
    // that does not parse costs the event its time, not the event itself.
    let time_original = generated_date(top)?;
    let (time, time_source) = match time_original.as_deref().and_then(timestamp::parse_millis) {
        Some(ms) => (ms, TimeSource::Event),
        None => (ingest.timestamp, TimeSource::Ingest),
    };

    let mapped = ["id", type_key, "generatedDate", body_key];
    let mut extensions = OutJson::object();
    for (k, v) in &top.members {
        if !mapped.contains(&k.as_ref()) {
            extensions.push_member(k.clone(), OutJson::Raw(v));
        }
    }

    // The payload as split in the validating pass, or split now.
    let at = top.members.iter().position(|(k, _)| k == body_key);
    let refs = match split.into_iter().find(|(i, _)| Some(*i) == at) {
        Some((_, payload)) => event_payload::refs_of_split(&event_type, payload)?,
        None => event_payload::refs(&event_type, payload)?,
    };
    Ok(Envelope {
        id,
        id_source,
        type_origin: event_type::origin_of_codat_type(&event_type),
        event_type,
        source,
        specversion: Cow::Borrowed(SPEC_VERSION),
        time,
        time_source,
        subject: refs.company_id.clone(),
        company_id: refs.company_id,
        connection_id: refs.connection_id,
        client_id: None,
        data_type: refs.data_type,
        shape,
        legacy_rule_type: None,
        legacy: None,
        extensions: (!extensions.is_empty_object()).then(|| extensions.to_json_string()),
        datacontenttype: Cow::Borrowed(PAYLOAD_CONTENT_TYPE),
        payload: Cow::Borrowed(payload),
        ingest,
        time_original,
        redacted_paths: Vec::new(),
    })
}

/// `generatedDate` as sent: a string's text, any other non-null value's
/// JSON text (it cannot be a date, but it is what Codat sent).
fn generated_date<'a>(top: &RawObject<'a>) -> Result<Option<Cow<'a, str>>, Rejection> {
    match top.get("generatedDate") {
        Some(raw) if raw_json::kind(raw) == Kind::String => optional_str(top, "generatedDate"),
        Some(raw) if raw_json::kind(raw) != Kind::Null => Ok(Some(Cow::Borrowed(raw))),
        _ => Ok(None),
    }
}

/// A string member, or None when absent or null.
fn optional_str<'a>(top: &RawObject<'a>, key: &str) -> Result<Option<Cow<'a, str>>, Rejection> {
    match top.get(key) {
        None => Ok(None),
        Some(raw) => match raw_json::kind(raw) {
            Kind::Null => Ok(None),
            Kind::String => raw_json::as_str(raw).map_err(|f| f.at(&format!("`{key}`"))),
            other => Err(Rejection::mistyped(key, "a string", other.name())),
        },
    }
}

fn required_str<'a>(
    top: &RawObject<'a>,
    key: &str,
    shape: &str,
) -> Result<Cow<'a, str>, Rejection> {
    optional_str(top, key)?.ok_or_else(|| Rejection::missing(key, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INGEST: IngestMeta<'static> = IngestMeta {
        topic: "codat.webhooks",
        partition: 3,
        offset: 42,
        timestamp_ms: 1_700_000_000_000,
    };

    fn opts() -> &'static NormalizeOptions {
        Box::leak(Box::new(NormalizeOptions::default()))
    }

    fn ok(body: &'static str) -> Envelope<'static> {
        normalize(body.as_bytes(), &(), &INGEST, opts()).unwrap()
    }

    fn reason(body: &'static [u8]) -> RejectReason {
        normalize(body, &(), &INGEST, opts()).unwrap_err().reason
    }

    #[test]
    fn event_payload_passes_through_byte_for_byte() {
        let env = ok(
            r#"{"id":"e1","eventType":"connection.failed","generatedDate":"2024-08-08T17:10:34.015Z",
            "payload":{ "referenceCompany" : {"id":"co"}, "connection":{"id":"dc"} }}"#,
        );
        assert_eq!(
            env.payload,
            r#"{ "referenceCompany" : {"id":"co"}, "connection":{"id":"dc"} }"#
        );
        assert!(matches!(env.payload, Cow::Borrowed(_)));
        assert_eq!(env.time, 1_723_137_034_015);
        assert_eq!(env.time_source, TimeSource::Event);
        assert_eq!(env.company_id.as_deref(), Some("co"));
        assert_eq!(env.subject.as_deref(), Some("co"));
        assert_eq!(env.connection_id.as_deref(), Some("dc"));
        assert_eq!(env.ingest.offset, 42);
        assert_eq!(env.extensions, None);
    }

    /// Issue 12, item 4: only UTC milliseconds were kept (`.0154237Z`
    /// became `.015`, `+01:00` was gone), and a generatedDate that did not
    /// parse dead-lettered a real event.
    #[test]
    fn generated_date_text_is_kept_and_a_bad_one_costs_only_the_time() {
        let env = ok(
            r#"{"id":"e","eventType":"a.b","generatedDate":"2024-08-08T18:10:34.0154237+01:00","payload":{}}"#,
        );
        assert_eq!(
            (env.time, env.time_source),
            (1_723_137_034_015, TimeSource::Event)
        );
        assert_eq!(
            env.time_original.as_deref(),
            Some("2024-08-08T18:10:34.0154237+01:00")
        );
        for (date, text) in [
            (r#""soon""#, "soon"),
            ("20240808", "20240808"),
            (r#""""#, ""),
        ] {
            let body =
                format!(r#"{{"id":"e","eventType":"a.b","generatedDate":{date},"payload":{{}}}}"#);
            let env = normalize(body.as_bytes(), &(), &INGEST, opts()).unwrap();
            assert_eq!(
                (env.time, env.time_source),
                (INGEST.timestamp_ms, TimeSource::Ingest)
            );
            assert_eq!(env.time_original.as_deref(), Some(text));
        }
        let env = ok(r#"{"id":"e","eventType":"a.b","generatedDate":null,"payload":{}}"#);
        assert_eq!(
            (env.time_source, env.time_original),
            (TimeSource::Ingest, None)
        );
    }

    #[test]
    fn unknown_well_formed_types_pass_through() {
        let env = ok(r#"{"id":"e1","eventType":"brand.new.thing","payload":{}}"#);
        assert_eq!(env.event_type, "brand.new.thing");
        assert_eq!(
            env.type_origin,
            crate::core::envelope::TypeOrigin::CodatUnlisted
        );
        assert_eq!(env.time, INGEST.timestamp_ms);
        assert_eq!(env.time_source, TimeSource::Ingest);
    }

    #[test]
    fn extra_top_level_fields_become_extensions() {
        let env = ok(r#"{"id":"e1","eventType":"a.b","type":"legacyish","payload":{},"x":[1]}"#);
        assert_eq!(
            env.extensions.as_deref(),
            Some(r#"{"type":"legacyish","x":[1]}"#)
        );
    }

    #[test]
    fn generic_id_comes_from_header_then_body_hash() {
        let body = br#"{"type":"hello.world","data":{"hello":"world"}}"#;
        let headers = [("Webhook-Id", "msg_2abc")];
        let env = normalize(body, &headers[..], &INGEST, opts()).unwrap();
        assert_eq!(
            (env.id.as_ref(), env.id_source),
            ("msg_2abc", IdSource::WebhookIdHeader)
        );
        assert_eq!(env.ingest.webhook_id.as_deref(), Some("msg_2abc"));

        let a = normalize(body, &(), &INGEST, opts()).unwrap();
        let b = normalize(
            body,
            &(),
            &IngestMeta {
                offset: 7,
                ..INGEST
            },
            opts(),
        )
        .unwrap();
        assert_eq!(a.id_source, IdSource::Derived);
        assert_eq!(a.id, b.id, "same body, same id");
        let c = normalize(
            br#"{"type":"hello.world","data":{"hello":"there"}}"#,
            &(),
            &INGEST,
            opts(),
        )
        .unwrap();
        assert_ne!(a.id, c.id);
        assert!(Uuid::parse_str(&a.id).is_ok());
    }

    /// Issue 12, item 5: an event body without `id` was rejected even when
    /// the delivery's `webhook-id` header named it.
    #[test]
    fn event_without_id_takes_the_webhook_id_header() {
        let body =
            br#"{"eventType":"connection.failed","payload":{"referenceCompany":{"id":"co"}}}"#;
        let headers = [("webhook-id", "msg_9")];
        let env = normalize(body, &headers[..], &INGEST, opts()).unwrap();
        assert_eq!(
            (env.id.as_ref(), env.id_source),
            ("msg_9", IdSource::WebhookIdHeader)
        );
        let body = br#"{"id":"","eventType":"a.b","payload":{}}"#;
        let env = normalize(body, &headers[..], &INGEST, opts()).unwrap();
        assert_eq!(env.id, "msg_9");
        let with_id = br#"{"id":"e1","eventType":"a.b","payload":{}}"#;
        let env = normalize(with_id, &headers[..], &INGEST, opts()).unwrap();
        assert_eq!((env.id.as_ref(), env.id_source), ("e1", IdSource::Body));
    }

    #[test]
    fn rejections_have_the_documented_reasons() {
        assert_eq!(reason(b"\xff\xfe"), RejectReason::InvalidUtf8);
        assert_eq!(reason(b""), RejectReason::InvalidJson);
        assert_eq!(reason(b"{\"a\":"), RejectReason::InvalidJson);
        assert_eq!(reason(b"{} trailing"), RejectReason::InvalidJson);
        assert_eq!(
            reason(br#"{"id":"a","id":"b","eventType":"x","payload":{}}"#),
            RejectReason::DuplicateKey
        );
        assert_eq!(reason(b"[1,2]"), RejectReason::NotAnObject);
        assert_eq!(reason(b"null"), RejectReason::NotAnObject);
        assert_eq!(reason(b"{\"hello\":1}"), RejectReason::UnknownShape);
        assert_eq!(
            reason(br#"{"eventType":"a.b","payload":{}}"#),
            RejectReason::MissingField
        );
        assert_eq!(
            reason(br#"{"id":"1","eventType":"a.b"}"#),
            RejectReason::MissingField
        );
        assert_eq!(
            reason(br#"{"id":"1","eventType":"a.b","payload":null}"#),
            RejectReason::MissingField
        );
        assert_eq!(
            reason(br#"{"id":1,"eventType":"a.b","payload":{}}"#),
            RejectReason::InvalidField
        );
        assert_eq!(
            reason(br#"{"id":"1","eventType":"a.b","payload":"x"}"#),
            RejectReason::InvalidField
        );
        assert_eq!(
            reason(br#"{"id":"1","eventType":"../etc","payload":{}}"#),
            RejectReason::InvalidEventType
        );
        assert_eq!(
            reason(br#"{"id":"1","eventType":7,"payload":{}}"#),
            RejectReason::InvalidField
        );
    }

    #[test]
    fn body_size_limit_is_configurable() {
        let small = Box::leak(Box::new(NormalizeOptions {
            max_body_bytes: 10,
            ..NormalizeOptions::default()
        }));
        let err = normalize(br#"{"type":"a","data":{}}"#, &(), &INGEST, small).unwrap_err();
        assert_eq!(err.reason, RejectReason::BodyTooLarge);
        assert!(err.message.contains("limit is 10 bytes"), "{}", err.message);
    }

    #[test]
    fn byte_order_mark_is_tolerated() {
        let env = normalize(
            "\u{feff}{\"type\":\"a.b\",\"data\":1}".as_bytes(),
            &(),
            &INGEST,
            opts(),
        )
        .unwrap();
        assert_eq!(env.payload, "1");
    }

    #[test]
    fn legacy_bodies_take_time_from_ingest_and_keep_rule_type() {
        let env = ok(
            r#"{"RuleType":"Push Operation Status Changed()","AlertId":"al","ClientId":"cl","CompanyId":"co",
            "Data":{"dataType":"invoices","status":"Success","pushOperationKey":"k"}}"#,
        );
        assert_eq!(env.event_type, "invoices.write.successful");
        assert_eq!(env.shape, Shape::LegacyRule);
        assert_eq!(
            env.legacy_rule_type.as_deref(),
            Some("Push Operation Status Changed()")
        );
        assert_eq!(
            (env.time, env.time_source),
            (INGEST.timestamp_ms, TimeSource::Ingest)
        );
        assert_eq!(env.routing_key(), "co");
    }

    #[test]
    fn routing_key_falls_back_to_client_then_id() {
        let env =
            ok(r#"{"RuleType":"Rate Limit Reached","AlertId":"al","ClientId":"cl","Data":{}}"#);
        assert_eq!(env.routing_key(), "cl");
        let env = ok(r#"{"id":"e","eventType":"client.rateLimit.reached","payload":{}}"#);
        assert_eq!(env.routing_key(), "e");
    }

    /// Issue 12, item 2: the bank-feed company keys the record (per-company order).
    #[test]
    fn bank_feed_company_id_keys_the_record() {
        let env = ok(
            r#"{"id":"e","eventType":"bankFeeds.sourceAccount.connected","payload":{"companyId":"co","connectionId":"dc"}}"#,
        );
        assert_eq!(env.company_id.as_deref(), Some("co"));
        assert_eq!(env.subject.as_deref(), Some("co"));
        assert_eq!(env.routing_key(), "co");
    }

    /// Issue 12, item 7: personal data in payloads could not be kept out
    /// of the envelope topics. The same paths redact legacy and event bodies.
    #[test]
    fn redaction_applies_to_legacy_and_event_payloads_alike() {
        use crate::core::redact::RedactMode;
        use crate::core::secret::Secret;
        let redact = |mode| {
            &*Box::leak(Box::new(NormalizeOptions {
                redact: Redaction {
                    paths: vec![
                        "referenceCompany.name".into(),
                        "referenceCompany.description".into(),
                    ],
                    mode,
                },
                ..NormalizeOptions::default()
            }))
        };
        let event = br#"{"id":"e","eventType":"read.completed","payload":{"referenceCompany":{"id":"co","name":"Toft stores","description":"d"}}}"#;
        let legacy = br#"{"RuleType":"New company synchronised","AlertId":"a","CompanyId":"co","Data":{"companyName":"Toft stores"}}"#;
        let removing = redact(RedactMode::Remove);
        let env = normalize(event, &(), &INGEST, removing).unwrap();
        assert_eq!(env.payload, r#"{"referenceCompany":{"id":"co"}}"#);
        assert_eq!(
            env.redacted_paths,
            ["referenceCompany.name", "referenceCompany.description"]
        );
        let env = normalize(legacy, &(), &INGEST, removing).unwrap();
        assert!(!env.payload.contains("Toft"), "{}", env.payload);
        assert_eq!(env.redacted_paths, ["referenceCompany.name"]);

        let hashing = redact(RedactMode::Hash(Secret::new("k")));
        let from_event = normalize(event, &(), &INGEST, hashing).unwrap();
        let from_legacy = normalize(legacy, &(), &INGEST, hashing).unwrap();
        let name = |e: &Envelope| {
            serde_json::from_str::<serde_json::Value>(&e.payload).unwrap()["referenceCompany"]["name"].clone()
        };
        assert_eq!(name(&from_event), name(&from_legacy), "joins still work");
        assert!(
            name(&from_event)
                .as_str()
                .unwrap()
                .starts_with("hmac-sha256:")
        );

        // Off by default: the payload is borrowed from the body, untouched.
        let env = ok(r#"{"id":"e","eventType":"a.b","payload":{"referenceCompany":{"name":"n"}}}"#);
        assert!(matches!(env.payload, Cow::Borrowed(_)));
        assert!(env.redacted_paths.is_empty());
    }

    fn assert_all_rejected(cases: &[&'static [u8]], want: RejectReason) {
        for body in cases {
            let err = normalize(body, &(), &INGEST, opts()).unwrap_err();
            let body = String::from_utf8_lossy(body);
            assert_eq!(err.reason, want, "{body}: {}", err.message);
        }
    }

    /// Issue 9, finding 3: a string whose escapes do not decode was read as
    /// "absent" (exit 0, values gone). Each is now a rejection of its own.
    #[test]
    fn undecodable_strings_are_rejected_never_absent() {
        let cases: &[&[u8]] = &[
            br#"{"RuleType":"Rate Limit Reached","AlertId":"a","Data":{"\ud800":1,"DailyQuota":5}}"#,
            br#"{"RuleType":"Rate Limit Reached","AlertId":"a","ClientName":"\ud800","Data":{}}"#,
            br#"{"RuleType":"Rate Limit Reached","AlertId":"a","Message":"\udfff","Data":{}}"#,
            br#"{"RuleType":"Rate Limit Reached","AlertId":"a","RuleId":"\ud800x","Data":{}}"#,
            br#"{"RuleType":"Rate Limit Reached","AlertId":"a","ClientId":"\ud800","Data":{}}"#,
            br#"{"RuleType":"Rate Limit Reached","AlertId":"a","Data":{"dataType":"\ud800"}}"#,
            br#"{"id":"e","eventType":"a.b","generatedDate":"\ud800","payload":{}}"#,
            br#"{"id":"\ud800","type":"a.b","data":{}}"#,
            br#"{"id":"e","eventType":"connection.failed","payload":{"\ud800":1,"referenceCompany":{"id":"co"}}}"#,
            br#"{"id":"e","eventType":"connection.failed","payload":{"referenceCompany":{"id":"\ud800"}}}"#,
            br#"{"\ud800":1,"id":"e","eventType":"a.b","payload":{}}"#,
        ];
        assert_all_rejected(cases, RejectReason::InvalidString);
    }

    /// Issue 9, finding 3: an object with an undecodable key was called
    /// "an object, not a JSON object".
    #[test]
    fn an_object_with_a_bad_key_is_not_called_not_an_object() {
        let err = normalize(br#"{"\ud800":1}"#, &(), &INGEST, opts()).unwrap_err();
        assert_eq!(err.reason, RejectReason::InvalidString);
        assert!(
            !err.message.contains("not a JSON object"),
            "{}",
            err.message
        );
    }

    /// Issue 9, finding 4: with duplicate keys inside `payload`, the envelope
    /// took the first copy while standard parsers downstream read the last.
    #[test]
    fn duplicate_keys_where_the_normaliser_reads_are_refused() {
        let cases: &[&[u8]] = &[
            br#"{"id":"e","eventType":"connection.failed","payload":{"referenceCompany":{"id":"a","id":"b"}}}"#,
            br#"{"id":"e","eventType":"connection.failed","payload":{"referenceCompany":{"id":"a"},"referenceCompany":{"id":"b"}}}"#,
            br#"{"id":"e","eventType":"company.created","payload":{"id":"a","id":"b"}}"#,
            br#"{"id":"e","eventType":"read.completed","payload":{"dataTypes":[{"dataType":"a","dataType":"b"}]}}"#,
            br#"{"id":"e","eventType":"bills.write.successful","payload":{"connectionId":"a","connectionId":"b"}}"#,
            br#"{"RuleType":"Rate Limit Reached","AlertId":"a","alertid":"b","Data":{}}"#,
            br#"{"RuleType":"Rate Limit Reached","AlertId":"a","Data":{"DailyQuota":1,"dailyquota":2}}"#,
        ];
        assert_all_rejected(cases, RejectReason::DuplicateKey);
        // Repeats deeper than anything read pass through untouched.
        let env = ok(r#"{"id":"e","eventType":"a.b","payload":{"x":{"k":1,"k":2}}}"#);
        assert_eq!(env.payload, r#"{"x":{"k":1,"k":2}}"#);
    }

    /// Issue 13: with verification on, the tolerance is measured against
    /// the ingest record's timestamp, and failures are `invalid_signature`.
    #[test]
    fn signatures_are_checked_against_the_ingest_timestamp() {
        use crate::core::signature::{SigningKey, Verifier, sign};
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let options: &'static NormalizeOptions = Box::leak(Box::new(NormalizeOptions {
            verify: Some(Verifier::new(vec![key.clone()], 300)),
            ..NormalizeOptions::default()
        }));
        let body = br#"{"id":"e1","eventType":"a.b","payload":{}}"#;
        let at = INGEST.timestamp_ms / 1000;
        let headers = |ts: i64, sig: String| -> Vec<(String, String)> {
            vec![
                ("webhook-id".into(), "msg_1".into()),
                ("webhook-timestamp".into(), ts.to_string()),
                ("webhook-signature".into(), sig),
            ]
        };
        // Signed ten minutes before the record was written: too old,
        // however recent the wall clock finds it.
        for (ts, ok) in [(at - 100, true), (at + 100, true), (at - 600, false)] {
            let h = headers(ts, sign(&key, "msg_1", ts, body));
            let got = normalize(body, &h[..], &INGEST, options);
            assert_eq!(got.is_ok(), ok, "{ts}: {got:?}");
        }
        let h = headers(at, sign(&key, "msg_1", at, b"{}"));
        let e = normalize(body, &h[..], &INGEST, options).unwrap_err();
        assert_eq!(e.reason, RejectReason::InvalidSignature);
        let e = normalize(b"not json", &(), &INGEST, options).unwrap_err();
        assert_eq!(e.reason, RejectReason::InvalidSignature, "checked first");
    }
}
