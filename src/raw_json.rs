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
    /// Scans `raw` as an object; `None` when it is any other JSON value.
    pub fn parse(raw: &'a RawValue) -> Option<Self> {
        if kind(raw) != Kind::Object {
            return None;
        }
        serde_json::from_str(raw.get()).ok()
    }

    /// The first member whose key equals `key` exactly.
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| *v)
    }

    /// The string value at `key`, if that member exists and is a string.
    pub fn get_str(&self, key: &str) -> Option<Cow<'a, str>> {
        self.get(key).and_then(as_str)
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

/// Decodes `raw` as a string, borrowing when it has no escapes.
pub fn as_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    if kind(raw) != Kind::String {
        return None;
    }
    serde_json::from_str::<BorrowedStr>(raw.get())
        .ok()
        .map(|s| s.0)
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
        assert_eq!(obj.get_str("a").as_deref(), Some("s"));
        assert_eq!(obj.get_str("b"), None);
    }

    #[test]
    fn escaped_strings_are_decoded() {
        assert_eq!(as_str(raw(r#""a\"b\u0063""#)).as_deref(), Some("a\"bc"));
        assert!(matches!(
            as_str(raw(r#""plain""#)),
            Some(Cow::Borrowed("plain"))
        ));
        assert_eq!(as_str(raw("12")), None);
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
