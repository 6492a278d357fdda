//! JSON string text decoded, and the faults a value the normaliser reads
//! can have though it is valid JSON: the lowest layer of the core's JSON
//! readers (`raw_json` and `json_trusted` both build on it).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::core::rejection::Rejection;

/// Why a JSON value the normaliser reads is unusable, though valid JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonFault {
    /// A string (key or value) whose escapes do not decode to Unicode text.
    BadString,
    /// A key that appears more than once in one object.
    DuplicateKey(String),
}

impl JsonFault {
    /// The rejection for this fault in the value at `path` (built only on
    /// the error path, so reading stays allocation-free).
    pub fn at(self, path: &str) -> Rejection {
        match self {
            JsonFault::BadString => Rejection::invalid_string(path),
            JsonFault::DuplicateKey(key) => Rejection::duplicate_key(path, &key),
        }
    }
}

/// A string that borrows from the input when it holds no escapes.
#[derive(Debug)]
pub(crate) struct BorrowedStr<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for BorrowedStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// `raw_json::decode_string` for a scanner that already knows whether the string
/// holds a `\`.
pub fn decode_scanned(quoted: &str, escaped: bool) -> Result<Cow<'_, str>, JsonFault> {
    if !escaped {
        // The quotes are one byte each: no pattern search needed.
        let inner = match quoted.as_bytes() {
            [b'"', .., b'"'] => quoted.get(1..quoted.len() - 1),
            _ => None,
        };
        return Ok(Cow::Borrowed(inner.unwrap_or(quoted)));
    }
    serde_json::from_str::<BorrowedStr>(quoted)
        .map(|s| s.0)
        .map_err(|_| JsonFault::BadString)
}
