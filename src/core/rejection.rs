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
    /// The body is not valid JSON.
    InvalidJson,
    /// An object the normaliser reads repeats a key (exactly, or ignoring
    /// case in legacy bodies, whose keys are matched ignoring case): readers
    /// disagree on which copy counts, so neither is chosen.
    DuplicateKey,
    /// A JSON string (key or value) the normaliser reads has escapes that
    /// do not decode to Unicode text (a lone surrogate such as `"\ud800"`).
    InvalidString,
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
    /// Signature verification is on (`normalize.verify_signatures`) and the
    /// record's Standard Webhooks signature headers are missing, ambiguous,
    /// outside the timestamp tolerance or match no configured secret.
    InvalidSignature,
    /// The record's value is null (a tombstone): there is no body at all.
    NullValue,
    /// The record carries a header Kafka cannot carry on the envelope (a
    /// key that is not UTF-8); decided by the shell.
    InvalidHeader,
    /// The envelope record would exceed the producer's `message.max.bytes`
    /// (the body fits, but the envelope and copied headers do not).
    OutputTooLarge,
    /// The broker refused the envelope record for good (too large for the
    /// broker or topic, invalid record, not authorised on that topic).
    ProduceRefused,
    /// The schema registry refused the envelope's subject, even the catch-all's.
    RegistryRefused,
}

impl RejectReason {
    /// Every reason, for metrics pre-registration and docs.
    pub const ALL: [RejectReason; 17] = [
        RejectReason::BodyTooLarge,
        RejectReason::InvalidUtf8,
        RejectReason::InvalidJson,
        RejectReason::DuplicateKey,
        RejectReason::InvalidString,
        RejectReason::NotAnObject,
        RejectReason::UnknownShape,
        RejectReason::MissingField,
        RejectReason::InvalidField,
        RejectReason::InvalidEventType,
        RejectReason::UnknownLegacyRuleType,
        RejectReason::InvalidSignature,
        RejectReason::NullValue,
        RejectReason::InvalidHeader,
        RejectReason::OutputTooLarge,
        RejectReason::ProduceRefused,
        RejectReason::RegistryRefused,
    ];

    /// Reasons the pure normaliser gives because the body itself is
    /// unusable; the rest are the shell's, for records whose body was fine
    /// but whose output could never be produced as is, and
    /// `invalid_signature` (the body may be fine; it is not authentic).
    pub fn is_body_reason(self) -> bool {
        !matches!(
            self,
            RejectReason::InvalidSignature
                | RejectReason::NullValue
                | RejectReason::InvalidHeader
                | RejectReason::OutputTooLarge
                | RejectReason::ProduceRefused
                | RejectReason::RegistryRefused
        )
    }

    /// Position in [`RejectReason::ALL`], for per-reason tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::BodyTooLarge => "body_too_large",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::DuplicateKey => "duplicate_key",
            RejectReason::InvalidString => "invalid_string",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::UnknownShape => "unknown_shape",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::InvalidEventType => "invalid_event_type",
            RejectReason::UnknownLegacyRuleType => "unknown_legacy_rule_type",
            RejectReason::InvalidSignature => "invalid_signature",
            RejectReason::NullValue => "null_value",
            RejectReason::InvalidHeader => "invalid_header",
            RejectReason::OutputTooLarge => "output_too_large",
            RejectReason::ProduceRefused => "produce_refused",
            RejectReason::RegistryRefused => "registry_refused",
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

    /// `key` appears more than once in the object at `path`.
    pub fn duplicate_key(path: &str, key: &str) -> Self {
        Rejection::new(
            RejectReason::DuplicateKey,
            format!("key {} appears more than once in {path}", excerpt(key)),
        )
    }

    /// A string at `path` whose escapes do not decode.
    pub fn invalid_string(path: &str) -> Self {
        Rejection::new(
            RejectReason::InvalidString,
            format!("a string in {path} has escapes that are not Unicode text (a lone surrogate)"),
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
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "ALL lists reasons in declaration order");
        }
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
