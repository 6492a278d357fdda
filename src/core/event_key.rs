//! The id an ingest record is keyed by, read from the raw body with one
//! strict, bounded scan of its top level: the event's `id`, or a legacy
//! body's `AlertId`. The same id the normaliser gives the envelope (and
//! de-duplication compares), so every copy of an event lands on one
//! partition.

use std::borrow::Cow;

use crate::core::normalize::MAX_WEBHOOK_ID_LEN;
use crate::core::raw_json::{self, RawObject};

/// The body's event id: `id` (events, generic messages), or `AlertId`
/// (legacy rule bodies, recognised by `RuleType`; both matched ignoring
/// case as the normaliser does). `None` when the body is not a JSON
/// object, repeats a key, or has no usable id (empty, not a string, or
/// longer than [`MAX_WEBHOOK_ID_LEN`]): the caller falls back to the
/// `webhook-id` header. The scan is linear in the body and its nesting is
/// bounded by serde_json's recursion limit.
pub fn event_id(body: &[u8]) -> Option<Cow<'_, str>> {
    let text = std::str::from_utf8(body).ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // One pass: fails alike for invalid JSON, a non-object and a key
    // that does not decode.
    let top: RawObject = serde_json::from_str(text).ok()?;
    top.check_unique(false).ok()?;
    let named = |key: &str| {
        let mut found = top
            .members
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(key));
        match (found.next(), found.next()) {
            (Some((_, v)), None) => Some(*v),
            _ => None,
        }
    };
    let legacy = top
        .members
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("RuleType"));
    let value = if legacy {
        named("AlertId")?
    } else {
        top.get("id")?
    };
    let id = raw_json::as_str(value).ok()??;
    (!id.is_empty() && id.len() <= MAX_WEBHOOK_ID_LEN).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(body: &str) -> Option<String> {
        event_id(body.as_bytes()).map(Cow::into_owned)
    }

    #[test]
    fn events_legacy_bodies_and_refusals() {
        assert_eq!(
            id(r#"{"id":"e-1","eventType":"a.b","payload":{}}"#).as_deref(),
            Some("e-1")
        );
        assert_eq!(
            id("\u{feff}{\"id\":\"e\\u002d2\",\"type\":\"a\",\"data\":{}}").as_deref(),
            Some("e-2")
        );
        assert_eq!(
            id(r#"{"RuleType":"x","alertid":"al-1","id":"ignored"}"#).as_deref(),
            Some("al-1")
        );
        for none in [
            "",
            "not json",
            "[1]",
            r#"{"id":1}"#,
            r#"{"id":""}"#,
            r#"{"id":"a","id":"b"}"#,
            r#"{"RuleType":"x","AlertId":"a","alertId":"b"}"#,
            r#"{"RuleType":"x","id":"a"}"#,
            r#"{"id":"\ud800"}"#,
            &format!(r#"{{"id":"{}"}}"#, "x".repeat(MAX_WEBHOOK_ID_LEN + 1)),
            &format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)),
        ] {
            assert_eq!(id(none), None, "{:.40}", none);
        }
        assert!(event_id(b"{\"id\":\"\xff\"}").is_none());
    }
}
