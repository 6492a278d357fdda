//! Why a body could not be normalised: a stable reason code for machines
//! (dead-letter headers, metric labels) and a message for people.

use std::fmt;

/// The stable reason codes. Their `code()` strings are a public contract:
/// dashboards, alerts and dead-letter consumers match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The body is larger than the configured limit.
    BodyTooLarge,
    /// The body is not valid UTF-8.
    InvalidUtf8,
    /// The body is not valid JSON (or repeats a key).
    InvalidJson,
    /// The body is JSON but not an object.
    NotAnObject,
    /// The object matches none of the three webhook shapes.
    UnknownShape,
    /// A field the shape requires is absent or null.
    MissingField,
    /// A field has the wrong JSON type or an unusable value.
    InvalidField,
    /// The event type cannot be used in a topic name.
    InvalidEventType,
    /// A legacy `RuleType` that matches no row of the migration table.
    UnknownLegacyRuleType,
}

impl RejectReason {
    /// Every reason, for metrics pre-registration and docs.
    pub const ALL: [RejectReason; 9] = [
        RejectReason::BodyTooLarge,
        RejectReason::InvalidUtf8,
        RejectReason::InvalidJson,
        RejectReason::NotAnObject,
        RejectReason::UnknownShape,
        RejectReason::MissingField,
        RejectReason::InvalidField,
        RejectReason::InvalidEventType,
        RejectReason::UnknownLegacyRuleType,
    ];

    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::BodyTooLarge => "body_too_large",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::UnknownShape => "unknown_shape",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::InvalidEventType => "invalid_event_type",
            RejectReason::UnknownLegacyRuleType => "unknown_legacy_rule_type",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A body that could not be normalised. Messages name fields, never echo
/// field values that could carry personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Rejection {
    /// The stable reason code.
    pub reason: RejectReason,
    /// A human-readable explanation.
    pub message: String,
}

impl Rejection {
    /// A rejection with the given reason and message.
    pub fn new(reason: RejectReason, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
        }
    }

    /// A required field is absent.
    pub fn missing(field: &str, shape: &str) -> Self {
        Rejection::new(
            RejectReason::MissingField,
            format!("{shape} body has no `{field}`"),
        )
    }

    /// A field has the wrong JSON type.
    pub fn mistyped(field: &str, expected: &str, found: &str) -> Self {
        Rejection::new(
            RejectReason::InvalidField,
            format!("`{field}` must be {expected}, found {found}"),
        )
    }
}

/// Shortens `s` for inclusion in a message (type names, rule names), so a
/// hostile body cannot make log lines or headers unbounded.
pub fn excerpt(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut codes: Vec<_> = RejectReason::ALL.iter().map(|r| r.code()).collect();
        assert!(codes.iter().all(|c| {
            c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
        }));
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), RejectReason::ALL.len());
    }

    #[test]
    fn excerpt_bounds_length() {
        let long = "x".repeat(1000);
        assert!(excerpt(&long).len() < 80);
        assert_eq!(excerpt("a.b"), "\"a.b\"");
    }
}
