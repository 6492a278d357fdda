//! Borrowed JSON: one-level object scans that keep values as raw text, and a
//! small ordered tree for writing JSON built from those raw pieces.
//!
//! Normalisation only needs a handful of fields from each body, so it reads
//! one object level at a time and leaves every value as a `&RawValue` slice of
//! the input: no `serde_json::Value` tree, and payloads pass through byte for
//! byte.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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
struct BorrowedStr<'a>(Cow<'a, str>);

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

/// The members of one JSON object, in input order, values left as raw text.
#[derive(Debug, Default)]
pub struct RawObject<'a> {
    /// (key, raw value) pairs; duplicates are kept so callers can refuse them.
    pub members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(BorrowedStr(key)) = map.next_key()? {
                    let value: &'de RawValue = map.next_value()?;
                    members.push((key, value));
                }
                Ok(RawObject { members })
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> RawObject<'a> {
    /// Scans `raw` as an object; `Ok(None)` when it is any other JSON value.
    /// A key whose escapes do not decode, or a key that appears twice, is
    /// a fault: silently taking one copy would disagree with readers that
    /// take the other.
    pub fn parse(raw: &'a RawValue) -> Result<Option<Self>, JsonFault> {
        if kind(raw) != Kind::Object {
            return Ok(None);
        }
        // `raw` is valid JSON, so the only way the scan fails is a key
        // whose escapes are not Unicode text.
        let object: RawObject =
            serde_json::from_str(raw.get()).map_err(|_| JsonFault::BadString)?;
        object.check_unique(false)?;
        Ok(Some(object))
    }

    /// Refuses a key that appears twice (ignoring ASCII case when
    /// `ignore_case`, for bodies whose keys are matched that way).
    pub fn check_unique(&self, ignore_case: bool) -> Result<(), JsonFault> {
        let members = &self.members;
        let found = if members.len() <= 16 {
            // Few keys: a quadratic scan is cheaper than hashing.
            let same = |a: &str, b: &str| {
                if ignore_case {
                    a.eq_ignore_ascii_case(b)
                } else {
                    a == b
                }
            };
            members
                .iter()
                .enumerate()
                .find(|(i, (k, _))| members[..*i].iter().any(|(prev, _)| same(prev, k)))
                .map(|(_, (k, _))| k)
        } else if ignore_case {
            // Many keys: hashing keeps a hostile 1 MB body of distinct keys
            // linear (a quadratic scan took minutes).
            let mut seen = std::collections::HashSet::with_capacity(members.len());
            members
                .iter()
                .map(|(k, _)| k)
                .find(|k| !seen.insert(k.to_ascii_lowercase()))
        } else {
            let mut seen: std::collections::HashSet<&str> =
                std::collections::HashSet::with_capacity(members.len());
            members
                .iter()
                .map(|(k, _)| k)
                .find(|k: &&Cow<'a, str>| !seen.insert(k))
        };
        match found {
            Some(k) => Err(JsonFault::DuplicateKey(k.to_string())),
            None => Ok(()),
        }
    }

    /// The member whose key equals `key` exactly (keys are unique once parsed).
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| *v)
    }

    /// The string value at `key`: `Ok(None)` when absent or not a string,
    /// an error when it is a string that does not decode.
    pub fn get_str(&self, key: &str) -> Result<Option<Cow<'a, str>>, JsonFault> {
        match self.get(key) {
            Some(raw) => as_str(raw),
            None => Ok(None),
        }
    }
}

/// The JSON kind of a raw value, read from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `null`
    Null,
    /// `true` / `false`
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl Kind {
    /// The kind's name as used in rejection messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        }
    }
}

/// The kind of `raw` (a `RawValue` is always valid JSON with no leading space).
pub fn kind(raw: &RawValue) -> Kind {
    match raw.get().as_bytes().first() {
        Some(b'n') => Kind::Null,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'"') => Kind::String,
        Some(b'[') => Kind::Array,
        Some(b'{') => Kind::Object,
        _ => Kind::Number,
    }
}

/// Decodes `raw` as a string, borrowing when it has no escapes: `Ok(None)`
/// when it is not a string; a fault when its escapes do not decode (never
/// "absent": the value is there, it is just unusable).
pub fn as_str(raw: &RawValue) -> Result<Option<Cow<'_, str>>, JsonFault> {
    if kind(raw) != Kind::String {
        return Ok(None);
    }
    serde_json::from_str::<BorrowedStr>(raw.get())
        .map(|s| Some(s.0))
        .map_err(|_| JsonFault::BadString)
}

/// The elements of a raw JSON array; `None` when `raw` is not an array.
pub fn array_items(raw: &RawValue) -> Option<Vec<&RawValue>> {
    if kind(raw) != Kind::Array {
        return None;
    }
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<&'de RawValue>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(items)
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_seq(V).ok()
}

/// JSON to be written: raw input slices arranged into new objects.
#[derive(Debug, Clone)]
pub enum OutJson<'a> {
    /// An input value, written back byte for byte.
    Raw(&'a RawValue),
    /// A string.
    Str(Cow<'a, str>),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// An object, members in insertion order.
    Object(Vec<(Cow<'a, str>, OutJson<'a>)>),
    /// An array.
    Array(Vec<OutJson<'a>>),
}

impl<'a> OutJson<'a> {
    /// An empty object.
    pub fn object() -> Self {
        OutJson::Object(Vec::new())
    }

    /// Whether this is an object with no members.
    pub fn is_empty_object(&self) -> bool {
        matches!(self, OutJson::Object(m) if m.is_empty())
    }

    /// The member `key` of an object, created as an empty object when absent.
    /// `None` when `self` is not an object or `key` holds a non-container.
    fn child(&mut self, key: &str, array: bool) -> Option<&mut OutJson<'a>> {
        let OutJson::Object(members) = self else {
            return None;
        };
        let at = match members.iter().position(|(k, _)| k == key) {
            Some(at) => at,
            None => {
                let fresh = if array {
                    OutJson::Array(vec![OutJson::object()])
                } else {
                    OutJson::object()
                };
                members.push((Cow::Owned(key.to_owned()), fresh));
                members.len() - 1
            }
        };
        let node = &mut members[at].1;
        if array {
            match node {
                OutJson::Array(items) => items.first_mut(),
                _ => None,
            }
        } else {
            Some(node)
        }
    }

    /// The value at a dotted path (`connection.status`, `dataTypes[].status`:
    /// `[]` means the first element of an array), if set.
    pub fn get_path(&self, path: &str) -> Option<&OutJson<'a>> {
        let mut node = self;
        for seg in path.split('.') {
            let (key, array) = match seg.strip_suffix("[]") {
                Some(key) => (key, true),
                None => (seg, false),
            };
            let OutJson::Object(members) = node else {
                return None;
            };
            node = &members.iter().find(|(k, _)| k == key)?.1;
            if array {
                let OutJson::Array(items) = node else {
                    return None;
                };
                node = items.first()?;
            }
        }
        Some(node)
    }

    /// Sets the value at a dotted path, creating the objects (and one-element
    /// arrays for `[]` segments) on the way. Returns false, changing nothing,
    /// when the path is already set or runs through a non-container.
    pub fn set_path(&mut self, path: &str, value: OutJson<'a>) -> bool {
        if self.get_path(path).is_some() {
            return false;
        }
        let mut segs = path.split('.').peekable();
        let mut node = self;
        while let Some(seg) = segs.next() {
            if segs.peek().is_none() {
                let OutJson::Object(members) = node else {
                    return false;
                };
                members.push((Cow::Owned(seg.to_owned()), value));
                return true;
            }
            let (key, array) = match seg.strip_suffix("[]") {
                Some(key) => (key, true),
                None => (seg, false),
            };
            match node.child(key, array) {
                Some(next) => node = next,
                None => return false,
            }
        }
        false
    }

    /// Inserts `value` at `key` of an object (no-op for non-objects).
    pub fn push_member(&mut self, key: Cow<'a, str>, value: OutJson<'a>) {
        if let OutJson::Object(members) = self {
            members.push((key, value));
        }
    }

    /// Compact JSON text.
    pub fn to_json_string(&self) -> String {
        // Serialising strings, bools and raw JSON into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl PartialEq for OutJson<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (OutJson::Raw(a), OutJson::Raw(b)) => a.get() == b.get(),
            (OutJson::Str(a), OutJson::Str(b)) => a == b,
            (OutJson::Bool(a), OutJson::Bool(b)) => a == b,
            (OutJson::Int(a), OutJson::Int(b)) => a == b,
            (OutJson::Object(a), OutJson::Object(b)) => a == b,
            (OutJson::Array(a), OutJson::Array(b)) => a == b,
            _ => false,
        }
    }
}

impl Serialize for OutJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OutJson::Raw(raw) => raw.serialize(s),
            OutJson::Str(v) => s.serialize_str(v),
            OutJson::Bool(v) => s.serialize_bool(*v),
            OutJson::Int(v) => s.serialize_i64(*v),
            OutJson::Object(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k.as_ref(), v)?;
                }
                map.end()
            }
            OutJson::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
        }
    }
}

/// Whether two raw values are the same JSON text once parsed (so `"a"` and
/// `"\u0061"` agree): used to tell a redundant copy from a conflicting one.
pub fn same_value(a: &RawValue, b: &RawValue) -> bool {
    if a.get() == b.get() {
        return true;
    }
    match (
        serde_json::from_str::<serde_json::Value>(a.get()),
        serde_json::from_str::<serde_json::Value>(b.get()),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> &RawValue {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn object_scan_keeps_order_duplicates_and_raw_values() {
        let obj: RawObject =
            serde_json::from_str(r#"{"b": {"x": 1}, "a": "s", "b": [1, 2]}"#).unwrap();
        let keys: Vec<_> = obj.members.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
        assert_eq!(obj.get("b").unwrap().get(), r#"{"x": 1}"#);
        assert_eq!(obj.get_str("a").unwrap().as_deref(), Some("s"));
        assert_eq!(obj.get_str("b").unwrap(), None);
    }

    #[test]
    fn parse_refuses_repeated_and_undecodable_keys() {
        use crate::core::rejection::RejectReason;
        let err = RawObject::parse(raw(r#"{"b":1,"a":2,"b":3}"#)).unwrap_err();
        assert_eq!(err, JsonFault::DuplicateKey("b".into()));
        let rejection = err.at("`payload`");
        assert_eq!(rejection.reason, RejectReason::DuplicateKey);
        assert!(
            rejection.message.contains("`payload`"),
            "{}",
            rejection.message
        );
        let many: String = (0..40).map(|i| format!("\"k{i}\":1,")).collect();
        let err = RawObject::parse(raw(&format!("{{{many}\"k7\":2}}"))).unwrap_err();
        assert_eq!(err, JsonFault::DuplicateKey("k7".into()));
        let err = RawObject::parse(raw(r#"{"\ud800":1}"#)).unwrap_err();
        assert_eq!(err.at("x").reason, RejectReason::InvalidString);
        assert!(RawObject::parse(raw("[1]")).unwrap().is_none());
        let obj = RawObject::parse(raw(r#"{"A":1,"a":2}"#)).unwrap().unwrap();
        assert_eq!(
            obj.check_unique(true),
            Err(JsonFault::DuplicateKey("a".into()))
        );
        let many_cased = format!("{{{many}\"K7\":2}}");
        let obj = RawObject::parse(raw(&many_cased)).unwrap().unwrap();
        assert_eq!(
            obj.check_unique(true),
            Err(JsonFault::DuplicateKey("K7".into()))
        );
    }

    /// Review of issue 9: a legacy body of ~90k distinct keys took minutes
    /// in the case-insensitive check (it was quadratic at any size).
    #[test]
    fn many_distinct_keys_are_checked_in_linear_time() {
        let body: String = (0..90_000).map(|i| format!("\"k{i:05}\":0,")).collect();
        let text = format!("{{{}}}", body.trim_end_matches(','));
        let obj = RawObject::parse(raw(&text)).unwrap().unwrap();
        let started = std::time::Instant::now();
        assert_eq!(obj.check_unique(true), Ok(()));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let s = |r: &'static str| as_str(raw(r));
        assert_eq!(s(r#""a\"b\u0063""#).unwrap().as_deref(), Some("a\"bc"));
        assert!(matches!(s(r#""plain""#), Ok(Some(Cow::Borrowed("plain")))));
        assert_eq!(s("12").unwrap(), None);
        assert_eq!(
            s(r#""\ud800""#),
            Err(JsonFault::BadString),
            "an undecodable string is an error, never absent"
        );
    }

    #[test]
    fn set_path_builds_nested_objects_and_first_array_items() {
        let mut out = OutJson::object();
        assert!(out.set_path("referenceCompany.id", OutJson::Str("c".into())));
        assert!(out.set_path("dataTypes[].dataType", OutJson::Str("invoices".into())));
        assert!(out.set_path("dataTypes[].recordsModified", OutJson::Bool(true)));
        assert!(!out.set_path("referenceCompany.id", OutJson::Str("other".into())));
        assert!(!out.set_path("referenceCompany.id.deeper", OutJson::Bool(true)));
        assert_eq!(
            out.to_json_string(),
            r#"{"referenceCompany":{"id":"c"},"dataTypes":[{"dataType":"invoices","recordsModified":true}]}"#
        );
        assert_eq!(
            out.get_path("dataTypes[].dataType"),
            Some(&OutJson::Str("invoices".into()))
        );
    }

    #[test]
    fn raw_values_are_written_back_verbatim() {
        let mut out = OutJson::object();
        out.push_member("n".into(), OutJson::Raw(raw("1.50")));
        assert_eq!(out.to_json_string(), r#"{"n":1.50}"#);
    }

    #[test]
    fn same_value_compares_parsed_json() {
        assert!(same_value(raw(r#""a""#), raw(r#""\u0061""#)));
        assert!(!same_value(raw(r#""a""#), raw(r#""b""#)));
    }

    #[test]
    fn array_items_splits_top_level_elements() {
        let items = array_items(raw(r#"[{"a":1}, 2, "x"]"#)).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].get(), r#"{"a":1}"#);
        assert!(array_items(raw("{}")).is_none());
    }
}
