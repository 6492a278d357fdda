//! [`Secret`]: a configuration string that is never printed, logged or
//! serialised, only handed to the code that authenticates with it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a non-empty secret shows as.
pub const MASK: &str = "********";

/// A secret configuration value (a password, a token).
///
/// `Debug`, `Display` and `Serialize` show [`MASK`] instead of the value
/// (an empty secret shows as empty, so "not set" stays visible), so a
/// secret cannot leak through a log line, an error or `check-config`.
/// Serialising is therefore one-way: it cannot round-trip a secret.
/// [`Secret::expose`] is the one way to read it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself: only for the code that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What the secret shows as: empty, or [`MASK`].
    fn shown(&self) -> &'static str {
        if self.0.is_empty() { "" } else { MASK }
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.shown(), f)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.shown())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug_display_or_serialised_form() {
        let s = Secret::from("hunter2");
        for shown in [
            format!("{s:?}"),
            format!("{s:#?}"),
            s.to_string(),
            format!("{s:>20}"),
            serde_json::to_string(&s).unwrap_or_default(),
            toml::to_string(&std::collections::BTreeMap::from([("k", &s)])).unwrap_or_default(),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains(MASK), "{shown}");
        }
        assert_eq!(s.expose(), "hunter2");
        assert!(!s.is_empty());
    }

    #[test]
    fn an_empty_secret_shows_as_empty() {
        let s = Secret::default();
        assert!(s.is_empty());
        assert_eq!(format!("{s:?}"), "\"\"");
        assert_eq!(s.to_string(), "");
        assert_eq!(serde_json::to_string(&s).unwrap_or_default(), "\"\"");
    }

    #[test]
    fn a_secret_deserialises_from_a_string() {
        let s: Secret = serde_json::from_str("\"tok-123\"").unwrap_or_default();
        assert_eq!(s.expose(), "tok-123");
    }
}
