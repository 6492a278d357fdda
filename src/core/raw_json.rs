//! Borrowed JSON: one-level object scans that keep values as raw text, and a
//! small ordered tree for writing JSON built from those raw pieces.
//!
//! Normalisation only needs a handful of fields from each body, so it reads
//! one object level at a time and leaves every value as a slice of the
//! input's text: no `serde_json::Value` tree, and payloads pass through byte
//! for byte. The body is validated once, as a whole; the levels below are
//! then split by [`crate::core::json_trusted`] without validating again.

use std::borrow::Cow;
use std::fmt;

use std::fmt::Write as _;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::core::json_trusted;

use crate::core::json_string::BorrowedStr;
pub use crate::core::json_string::{JsonFault, decode_scanned};

/// The members of one JSON object, in input order, values left as their
/// JSON text (valid JSON, no surrounding space).
#[derive(Debug, Default)]
pub struct RawObject<'a> {
    /// (key, value text) pairs; duplicates are kept so callers can refuse them.
    pub members: Vec<(Cow<'a, str>, &'a str)>,
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
                    members.push((key, value.get()));
                }
                Ok(RawObject { members })
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> RawObject<'a> {
    /// Splits `raw` (valid JSON text: a slice of a validated body) as an
    /// object; `Ok(None)` when it is any other JSON value. A key whose
    /// escapes do not decode, or a key that appears twice, is a fault:
    /// silently taking one copy would disagree with readers that take the
    /// other.
    pub fn parse(raw: &'a str) -> Result<Option<Self>, JsonFault> {
        let Some(members) = json_trusted::object_members(raw)? else {
            return Ok(None);
        };
        let object = RawObject { members };
        object.check_unique(false)?;
        Ok(Some(object))
    }

    /// Refuses a key that appears twice (ignoring ASCII case when
    /// `ignore_case`, for bodies whose keys are matched that way).
    pub fn check_unique(&self, ignore_case: bool) -> Result<(), JsonFault> {
        check_unique_keys(&self.members, ignore_case)
    }

    /// The member whose key equals `key` exactly (keys are unique once parsed).
    pub fn get(&self, key: &str) -> Option<&'a str> {
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

/// Refuses a key that appears twice among `members` (ignoring ASCII case
/// when `ignore_case`).
pub fn check_unique_keys<V>(
    members: &[(Cow<'_, str>, V)],
    ignore_case: bool,
) -> Result<(), JsonFault> {
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
        members.iter().map(|(k, _)| k).find(|k| !seen.insert(k))
    };
    match found {
        Some(k) => Err(JsonFault::DuplicateKey(k.to_string())),
        None => Ok(()),
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

/// The kind of `raw` (valid JSON text with no leading space).
pub fn kind(raw: &str) -> Kind {
    match raw.as_bytes().first() {
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
pub fn as_str(raw: &str) -> Result<Option<Cow<'_, str>>, JsonFault> {
    if kind(raw) != Kind::String {
        return Ok(None);
    }
    decode_string(raw).map(Some)
}

/// Decodes the text of a valid JSON string, quotes included: borrowed
/// when it has no escapes (valid JSON text without `\` is the string
/// itself, so no parser is needed), a fault when its escapes do not decode.
pub fn decode_string(quoted: &str) -> Result<Cow<'_, str>, JsonFault> {
    // In valid string text the first `"` or `\\` after the opening quote
    // is the closing quote unless the string holds an escape.
    let first = json_trusted::skip_plain(quoted.as_bytes(), 1);
    decode_scanned(quoted, quoted.as_bytes().get(first) == Some(&b'\\'))
}

/// The elements of a raw JSON array (valid JSON text); `None` when `raw`
/// is not an array.
pub fn array_items(raw: &str) -> Option<Vec<&str>> {
    (kind(raw) == Kind::Array).then(|| json_trusted::array_items(raw).collect())
}

/// The dot-separated segments of a mapping path: `path.split('.')`
/// without a searcher to set up per call (paths are short; the legacy
/// rewrite splits several per body).
fn segments(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(path);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.bytes().position(|b| b == b'.') {
            Some(at) => {
                rest = text.get(at + 1..);
                text.get(..at)
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// JSON to be written: raw input slices arranged into new objects.
#[derive(Debug, Clone)]
pub enum OutJson<'a> {
    /// An input value (valid JSON text), written back byte for byte.
    Raw(&'a str),
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
    fn child(&mut self, key: &'a str, array: bool) -> Option<&mut OutJson<'a>> {
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
                members.push((Cow::Borrowed(key), fresh));
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
        for seg in segments(path) {
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
    pub fn set_path(&mut self, path: &'a str, value: OutJson<'a>) -> bool {
        if self.get_path(path).is_some() {
            return false;
        }
        let mut segs = segments(path).peekable();
        let mut node = self;
        while let Some(seg) = segs.next() {
            if segs.peek().is_none() {
                let OutJson::Object(members) = node else {
                    return false;
                };
                members.push((Cow::Borrowed(seg), value));
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
        // Room for a typical rewritten payload: growing from empty cost
        // more reallocations than the writing itself.
        let mut out = String::with_capacity(512);
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            OutJson::Raw(raw) => out.push_str(raw),
            OutJson::Str(v) => write_json_str(out, v),
            OutJson::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
            OutJson::Int(v) => {
                // Writing to a String cannot fail.
                let _ = write!(out, "{v}");
            }
            OutJson::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_str(out, k);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
            OutJson::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
        }
    }
}

/// `s` as a JSON string, escaped as serde_json escapes (`"`, `\\` and
/// control characters only; lowercase `\u00xx` where there is no short form).
fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(s.get(plain..i).unwrap_or_default());
        if short.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(short);
        }
        plain = i + 1;
    }
    out.push_str(s.get(plain..).unwrap_or_default());
    out.push('"');
}

impl PartialEq for OutJson<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (OutJson::Raw(a), OutJson::Raw(b)) => a == b,
            (OutJson::Str(a), OutJson::Str(b)) => a == b,
            (OutJson::Bool(a), OutJson::Bool(b)) => a == b,
            (OutJson::Int(a), OutJson::Int(b)) => a == b,
            (OutJson::Object(a), OutJson::Object(b)) => a == b,
            (OutJson::Array(a), OutJson::Array(b)) => a == b,
            _ => false,
        }
    }
}

/// Whether two raw values are the same JSON text once parsed (so `"a"` and
/// `"\u0061"` agree): used to tell a redundant copy from a conflicting one.
pub fn same_value(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_split_as_str_split_does() {
        for path in [
            "",
            ".",
            "a",
            "a.b",
            "a..b",
            ".a.",
            "dataTypes[].status",
            "é.€",
        ] {
            let ours: Vec<&str> = segments(path).collect();
            let theirs: Vec<&str> = path.split('.').collect();
            assert_eq!(ours, theirs, "{path}");
        }
    }

    /// Valid JSON text, checked as the normaliser checks a body.
    fn raw(s: &str) -> &str {
        serde_json::from_str::<&RawValue>(s).unwrap().get()
    }

    #[test]
    fn object_scan_keeps_order_duplicates_and_raw_values() {
        let obj: RawObject =
            serde_json::from_str(r#"{"b": {"x": 1}, "a": "s", "b": [1, 2]}"#).unwrap();
        let keys: Vec<_> = obj.members.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
        assert_eq!(obj.get("b").unwrap(), r#"{"x": 1}"#);
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
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let all: String = (0u8..0x80)
            .map(char::from)
            .chain("é€\u{2028}".chars())
            .collect();
        for s in [all.as_str(), "", "plain", "q\"b\\"] {
            let mut out = String::new();
            write_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
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
        assert_eq!(items[0], r#"{"a":1}"#);
        assert!(array_items(raw("{}")).is_none());
    }
}
