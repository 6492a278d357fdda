//! Reading JSON text that has been validated already: a slice of a body
//! serde_json accepted. Objects are split into members, arrays into items
//! and strings decoded with no second validation pass, so a payload read
//! for its ids costs one quick scan instead of a full parse per level.
//!
//! The strict checks stay: every key of an object read here is decoded
//! (an undecodable one is a fault), and
//! `raw_json::RawObject::parse` refuses
//! repeated keys on top.
//! Nesting is skipped with a counter, never recursion, so any depth the
//! validator let through is safe here.
//!
//! Given text that is NOT valid JSON the results are meaningless, but the
//! functions still never panic and always end.

use std::borrow::Cow;

use crate::core::json_string::{self, JsonFault};

/// The members of the object `text` (valid JSON, no surrounding space)
/// in input order, keys decoded, values as text; `Ok(None)` when `text`
/// is any other value; a fault for a key that does not decode. Repeated
/// keys are all kept: refusing them is the caller's choice.
pub fn object_members(text: &str) -> Result<Option<Members<'_>>, JsonFault> {
    object_members_nested(text, &|_| false).map(|found| found.map(|(members, _)| members))
}

/// [`object_members`], and in the same scan the members of each object
/// value whose key `descend` accepts, so a level read on the way to an id
/// is not scanned twice. Their faults are kept, not raised: a level the
/// reader never visits must not refuse the body.
pub fn object_members_nested<'a>(
    text: &'a str,
    descend: &dyn Fn(&str) -> bool,
) -> Result<Option<(Members<'a>, Nested<'a>)>, JsonFault> {
    let mut at = Cursor { text, i: 0 };
    if at.peek() != Some(b'{') {
        return Ok(None);
    }
    let mut nested = Vec::new();
    let members = at.members(descend, &mut nested)?;
    Ok(Some((members, nested)))
}

/// Members split ahead of need: (index of the member, its object's members).
pub type Nested<'a> = Vec<(usize, Result<Members<'a>, JsonFault>)>;

/// An object's (decoded key, value text) pairs.
pub type Members<'a> = Vec<(Cow<'a, str>, &'a str)>;

/// The items of a validated JSON array, in order; empty when `text` is
/// not an array.
pub fn array_items(text: &str) -> ArrayItems<'_> {
    let mut at = Cursor { text, i: 0 };
    let open = at.peek() == Some(b'[');
    at.i += 1;
    ArrayItems { at, done: !open }
}

/// Iterator of [`array_items`].
#[derive(Debug)]
pub struct ArrayItems<'a> {
    at: Cursor<'a>,
    done: bool,
}

impl<'a> Iterator for ArrayItems<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let at = &mut self.at;
        at.space();
        if matches!(at.peek(), None | Some(b']')) {
            self.done = true;
            return None;
        }
        let item = at.value();
        at.space();
        match at.peek() {
            Some(b',') => at.i += 1,
            _ => self.done = true,
        }
        Some(item)
    }
}

/// A position in validated JSON text.
#[derive(Debug)]
struct Cursor<'a> {
    text: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    /// At a `{`: the object's members, moving past its `}`. Object values
    /// of keys `descend` accepts are split too, into `nested`.
    fn members(
        &mut self,
        descend: &dyn Fn(&str) -> bool,
        nested: &mut Nested<'a>,
    ) -> Result<Members<'a>, JsonFault> {
        self.i += 1;
        // Codat's objects rarely have more than a dozen members: one
        // allocation, no growth.
        let mut members = Vec::with_capacity(16);
        loop {
            self.space();
            if self.peek() != Some(b'"') {
                break; // the `}` of an empty object
            }
            let (key, escaped) = self.string();
            let key = json_string::decode_scanned(key, escaped)?;
            self.space();
            self.i += 1; // the `:`
            self.space();
            let start = self.i;
            if self.peek() == Some(b'{') && descend(&key) {
                let mut inner = Cursor {
                    text: self.text,
                    i: start,
                };
                let split = inner.members(&|_| false, &mut Vec::new());
                match split {
                    Ok(_) => self.i = inner.i,
                    Err(_) => {
                        self.value();
                    }
                }
                nested.push((members.len(), split));
            } else {
                self.value();
            }
            members.push((key, self.since(start)));
            self.space();
            if self.peek() != Some(b',') {
                break;
            }
            self.i += 1;
        }
        if self.peek() == Some(b'}') {
            self.i += 1;
        }
        Ok(members)
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.i).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.i += 1;
        }
    }

    /// The text from `start` to here (always on ASCII boundaries).
    fn since(&self, start: usize) -> &'a str {
        self.text.get(start..self.i).unwrap_or("")
    }

    /// At an opening quote: moves past the closing one and returns the
    /// string's text, quotes included, and whether it holds an escape.
    /// Only `"` and `\` matter: in valid JSON the byte after a `\` is
    /// never the closing quote.
    fn string(&mut self) -> (&'a str, bool) {
        let bytes = self.text.as_bytes();
        let start = self.i;
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            i = skip_plain(bytes, i);
            match bytes.get(i) {
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(_) => {
                    escaped = true;
                    i += 2; // a `\` and the byte it escapes
                }
                None => break,
            }
        }
        self.i = i.min(bytes.len());
        (self.since(start), escaped)
    }

    /// Moves past one value and returns its text. Containers are skipped
    /// by counting brackets outside strings.
    fn value(&mut self) -> &'a str {
        let start = self.i;
        match self.peek() {
            Some(b'"') => {
                self.string();
            }
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                while let Some(b) = self.peek() {
                    match b {
                        b'"' => {
                            self.string();
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                self.i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                while matches!(self.peek(), Some(b) if !matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\t' | b'\r'))
                {
                    self.i += 1;
                }
            }
        }
        self.since(start)
    }
}

/// The index of the first `"` or `\` at or after `i` (or the end), eight
/// bytes at a time: strings are most of a payload's bytes.
pub fn skip_plain(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The lowest flagged byte of `has(x, b)` is exactly the first `b` in x
    // (the classic zero-byte test: only bytes above a match can misfire).
    let has = |x: u64, b: u8| {
        let y = x ^ (ONES * u64::from(b));
        y.wrapping_sub(ONES) & !y & HIGH
    };
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let found = has(x, b'"') | has(x, b'\\');
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while bytes.get(i).is_some_and(|&b| b != b'"' && b != b'\\') {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str) -> Vec<(String, &str)> {
        let members = object_members(text).unwrap().unwrap();
        members
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v))
            .collect()
    }

    #[test]
    fn objects_split_into_decoded_keys_and_value_text() {
        let text = r#"{ "a" : {"x":[1,"]}\"",{}]} , "b\u0063":"s\"q", "n":-1.5e3,"t":true,"z":null,"e":{},"a":2}"#;
        let got = members(text);
        let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            got,
            [
                ("a", r#"{"x":[1,"]}\"",{}]}"#),
                ("bc", r#""s\"q""#),
                ("n", "-1.5e3"),
                ("t", "true"),
                ("z", "null"),
                ("e", "{}"),
                ("a", "2"),
            ]
        );
        assert!(members("{}").is_empty());
        assert!(object_members("[1]").unwrap().is_none());
        assert!(object_members(r#""{""#).unwrap().is_none());
        let bad = object_members(r#"{"\ud800":1}"#).unwrap_err();
        assert_eq!(bad, JsonFault::BadString);
    }

    #[test]
    fn nested_levels_are_split_in_the_same_scan_and_their_faults_kept() {
        let text = r#"{"a":{"x":1,"y":[{}]},"b":{"\ud800":1},"c":{"k":2},"a2":"{"}"#;
        let descend = |k: &str| k != "c";
        let (members, nested) = object_members_nested(text, &descend).unwrap().unwrap();
        assert_eq!(members, object_members(text).unwrap().unwrap());
        assert_eq!(
            nested.len(),
            2,
            "a and b: c is not descended, a2 is no object"
        );
        assert_eq!(nested[0].0, 0);
        let a = nested[0].1.as_ref().unwrap();
        assert_eq!(a, &object_members(members[0].1).unwrap().unwrap());
        assert_eq!(nested[1], (1, Err(JsonFault::BadString)));
    }

    #[test]
    fn array_items_are_split_at_the_top_level() {
        let items: Vec<_> = array_items(r#"[ {"a":[1,2]}, "x,]" ,3 ]"#).collect();
        assert_eq!(items, [r#"{"a":[1,2]}"#, r#""x,]""#, "3"]);
        assert_eq!(array_items("[]").count(), 0);
        assert_eq!(array_items(r#"{"a":1}"#).count(), 0);
    }

    #[test]
    fn deep_nesting_is_skipped_without_recursion() {
        let deep = format!(
            r#"{{"a":{}1{},"b":"y"}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(members(&deep)[1], ("b".to_owned(), r#""y""#));
    }

    #[test]
    fn plain_runs_end_at_the_first_quote_or_backslash() {
        for text in [
            "",
            "abc",
            "abcdefgh",
            "abcdefghijklmnop",
            "ab\"cdefghij\"",
            "abcdefghij\\x\"",
            "\"",
            "é€\"x",
        ] {
            let want = text
                .bytes()
                .position(|b| b == b'"' || b == b'\\')
                .unwrap_or(text.len());
            assert_eq!(skip_plain(text.as_bytes(), 0), want, "{text}");
        }
    }

    use proptest::prelude::*;
    use serde_json::Value;
    use serde_json::value::RawValue;

    fn json() -> impl Strategy<Value = Value> {
        crate::core::json_strategy::json("[a-z\"\\\\{]{0,4}")
    }

    proptest! {
        /// The trusted split agrees with serde_json's on any valid text,
        /// compact or pretty-printed.
        #[test]
        fn splits_as_serde_json_does(value in json(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            match &value {
                Value::Object(_) => {
                    let ours = object_members(&text).unwrap().unwrap();
                    let theirs: crate::core::raw_json::RawObject =
                        serde_json::from_str(&text).unwrap();
                    prop_assert_eq!(ours, theirs.members);
                }
                Value::Array(_) => {
                    let ours: Vec<&str> = array_items(&text).collect();
                    let theirs: Vec<&RawValue> = serde_json::from_str(&text).unwrap();
                    let theirs: Vec<&str> = theirs.iter().map(|r| r.get()).collect();
                    prop_assert_eq!(ours, theirs);
                }
                _ => prop_assert!(object_members(&text).unwrap().is_none()),
            }
        }
    }

    #[test]
    fn invalid_text_never_panics() {
        for text in [
            "{",
            "{\"",
            "{\"a",
            "{\"a\":",
            "{\"a\":[",
            "{\"a\\",
            "[",
            "[\"",
            "{\"é\":\"\\",
        ] {
            let _ = object_members(text);
            let _ = array_items(text).count();
        }
    }
}
