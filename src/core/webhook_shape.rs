//! The three body shapes Codat has sent, recognised from top-level keys.

use crate::core::envelope::Shape;
use crate::core::raw_json::RawObject;
use crate::core::rejection::{RejectReason, Rejection};

/// Recognises the shape of a body's top-level object. Precedence, from the
/// most to the least specific: `RuleType` (any case) is a legacy rule;
/// `eventType`, or `type` with `payload`, is an event; `type` with `data` is
/// the generic test message.
pub fn recognise(body: &RawObject<'_>) -> Result<Shape, Rejection> {
    let has = |key: &str| body.members.iter().any(|(k, _)| k == key);
    if body
        .members
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("RuleType"))
    {
        Ok(Shape::LegacyRule)
    } else if has("eventType") || (has("type") && has("payload")) {
        Ok(Shape::Event)
    } else if has("type") && has("data") {
        Ok(Shape::Generic)
    } else {
        Err(Rejection::new(
            RejectReason::UnknownShape,
            "body matches no Codat webhook shape: expected `eventType` (or `type`) with `payload`, \
             `type` with `data`, or a legacy `RuleType`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(s: &str) -> Result<Shape, RejectReason> {
        let obj: RawObject = serde_json::from_str(s).unwrap();
        recognise(&obj).map_err(|r| r.reason)
    }

    #[test]
    fn recognises_each_shape() {
        assert_eq!(
            shape(r#"{"id":"1","eventType":"a.b","payload":{}}"#),
            Ok(Shape::Event)
        );
        assert_eq!(
            shape(r#"{"id":"1","type":"a.b","payload":{}}"#),
            Ok(Shape::Event)
        );
        assert_eq!(shape(r#"{"eventType":"a.b"}"#), Ok(Shape::Event));
        assert_eq!(
            shape(r#"{"type":"hello.world","data":{}}"#),
            Ok(Shape::Generic)
        );
        assert_eq!(shape(r#"{"RuleType":"x"}"#), Ok(Shape::LegacyRule));
        assert_eq!(
            shape(r#"{"ruleType":"x","eventType":"a"}"#),
            Ok(Shape::LegacyRule)
        );
    }

    #[test]
    fn anything_else_is_unknown() {
        for s in [
            r#"{}"#,
            r#"{"type":"x"}"#,
            r#"{"payload":{}}"#,
            r#"{"Type":"x","Data":{}}"#,
        ] {
            assert_eq!(shape(s), Err(RejectReason::UnknownShape), "{s}");
        }
    }
}
