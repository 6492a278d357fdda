use proptest::prelude::*;
use serde_json::Value;
use serde_json::value::RawValue;

use super::*;
use crate::core::json_trusted;
use crate::core::raw_json::RawObject;

fn is_body(key: &str) -> bool {
    key == "payload" || key == "data"
}

fn is_head(key: &str) -> bool {
    key == "referenceCompany" || key == "connection"
}

fn scan_body(text: &str) -> Option<Scanned<'_>> {
    scan(text, &is_body, &is_head)
}

/// serde_json's verdict on a body: valid JSON and an object.
fn serde_accepts_object(text: &str) -> bool {
    serde_json::from_str::<&RawValue>(text).is_ok_and(|raw| raw.get().starts_with('{'))
}

/// What the old path gives: serde_json's split of the top level, and the
/// trusted split of each body member that is an object.
fn assert_splits_as_before(text: &str, scanned: &Scanned<'_>) {
    let theirs: RawObject = serde_json::from_str(text).expect("serde_json accepts it");
    assert_eq!(scanned.top, theirs.members, "{text}");
    let mut want = Vec::new();
    for (at, (key, value)) in theirs.members.iter().enumerate() {
        if is_body(key) && value.starts_with('{') {
            let split = json_trusted::object_members_nested(value, &is_head);
            want.push((at, split.map(|s| s.expect("an object"))));
        }
    }
    assert_eq!(scanned.split, want, "{text}");
}

#[test]
fn bodies_split_as_serde_json_and_the_trusted_split_do() {
    let text = r#" { "id" : "e\u0031", "payload" : { "referenceCompany" : {"id":"co","x":[1,{"y":"]}"}]},
        "connection":{"id":"dc"}, "n": -0.5E+3, "z": null, "connection2": {"a":true} },
        "data": [1], "generatedDate": "2024-08-08T17:10:34Z" } "#;
    let scanned = scan_body(text).expect("valid");
    assert_splits_as_before(text, &scanned);
    assert_eq!(scanned.split.len(), 1, "data is no object");
    let Ok((members, nested)) = &scanned.split[0].1 else {
        panic!("keys decode");
    };
    assert_eq!(members.len(), 5);
    assert_eq!(nested.len(), 2, "referenceCompany and connection");
}

#[test]
fn a_bad_key_in_a_split_level_is_kept_as_its_fault() {
    let text = r#"{"payload":{"\ud800":1,"referenceCompany":{"id":"a"}},"x":{"\udc00":2}}"#;
    let scanned = scan_body(text).expect("valid JSON: the fault is the reader's");
    assert_splits_as_before(text, &scanned);
    assert_eq!(scanned.split[0].1, Err(JsonFault::BadString));
    let inner = r#"{"payload":{"referenceCompany":{"\ud800":"a"}}}"#;
    let scanned = scan_body(inner).expect("valid");
    assert_splits_as_before(inner, &scanned);
    // A bad top-level key is named by the old path.
    assert!(scan_body(r#"{"\ud800":1}"#).is_none());
}

#[test]
fn key_faults_are_kept_where_the_trusted_split_keeps_them() {
    for text in [
        // Under `connection`: the nested level's fault.
        r#"{"payload":{"connection":{"\udc00":1},"x":1}}"#,
        // In a payload object not split: no fault (not read).
        r#"{"payload":{"other":{"\ud800":1}}}"#,
        // An escaped key that decodes to a body key is split.
        r#"{"\u0070ayload":{"referenceCompany":{"id":"co"}}}"#,
    ] {
        assert_splits_as_before(text, &scan_body(text).expect("valid"));
    }
    // A bad top-level key after the payload still hands the body back.
    assert!(scan_body(r#"{"payload":{},"\ud800":1}"#).is_none());
}

/// A body repeating `payload` (refused later as a duplicate) splits no
/// more than two: without the bound each copy reserved 640 bytes of
/// members, about 45 MB for 1 MiB of `"data":{"a":1},`.
#[test]
fn repeated_body_keys_are_split_at_most_twice() {
    let many = format!(
        "{{{}\"payload\":{{\"connection\":{{}},\"connection\":{{}},\"connection\":{{}}}}}}",
        r#""data":{"a":1},"#.repeat(10_000)
    );
    let scanned = scan_body(&many).expect("valid JSON");
    assert_eq!(scanned.top.len(), 10_001);
    assert_eq!(scanned.split.len(), MAX_SPLIT_PER_LEVEL);
    let one = r#"{"payload":{"connection":{},"connection":{},"connection":{"id":1}}}"#;
    let scanned = scan_body(one).expect("valid");
    let Ok((_, nested)) = &scanned.split[0].1 else {
        panic!("keys decode");
    };
    assert_eq!(nested.len(), MAX_SPLIT_PER_LEVEL);
}

#[test]
fn anything_serde_json_refuses_is_refused() {
    for text in [
        "",
        " ",
        "[]",
        "\"{}\"",
        "{",
        "{}}",
        "{} x",
        "{}{}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\" 1}",
        "{\"a\":1,}",
        "{,\"a\":1}",
        "{\"a\":1 \"b\":2}",
        "{a:1}",
        "{'a':1}",
        "{\"a\":[1,]}",
        "{\"a\":[,1]}",
        "{\"a\":[1 2]}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":+1}",
        "{\"a\":-}",
        "{\"a\":1e}",
        "{\"a\":1e+}",
        "{\"a\":0x10}",
        "{\"a\":NaN}",
        "{\"a\":Infinity}",
        "{\"a\":tru}",
        "{\"a\":nul}",
        "{\"a\":True}",
        "{\"a\":\"x\ny\"}",
        "{\"a\":\"x\u{1}\"}",
        "{\"a\":\"x\ty\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\u12g4\"}",
        "{\"a\":\"\\\"}",
        "{\"a\":\"x}",
        "{\"a\u{0}\":1}",
        "\u{feff}{}",
        "{\"a\":1}\u{0}",
        "{\"a\":1}\u{a0}",
        "{\"a\":\"\\",
        "{\"a\":\"\\u12",
        "{\"a\":\"\\u00",
        "{\"a\":tr",
        "{\"a\":-",
        "{\"a\":\u{b}1}",
        "{\"a\":\u{c}1}",
    ] {
        assert!(!serde_accepts_object(text), "serde_json accepts {text:?}");
        assert!(scan_body(text).is_none(), "{text:?}");
    }
}

/// Deeper nesting is left to the old path, which skips any depth without
/// recursion (`tests/never_panics.rs` sends 50,000 levels through it).
#[test]
fn nesting_past_the_bound_is_left_to_the_old_path() {
    let nest = |depth: usize| {
        let inner = depth - 1;
        format!(
            "{{\"payload\":{}1{}}}",
            "[".repeat(inner),
            "]".repeat(inner)
        )
    };
    let deepest = nest(MAX_DEPTH);
    assert_splits_as_before(&deepest, &scan_body(&deepest).expect("at the bound"));
    let deeper = nest(MAX_DEPTH + 1);
    assert!(serde_accepts_object(&deeper));
    assert!(scan_body(&deeper).is_none());
    // Far deeper: refused at the bound, not after a million frames.
    let hostile = format!("{{\"a\":{}", "[".repeat(1_000_000));
    assert!(scan_body(&hostile).is_none());
}

#[test]
fn plain_string_text_ends_at_a_quote_a_backslash_or_a_control_character() {
    for text in [
        "",
        "abc",
        "abcdefgh",
        "abcdefghijklmnop",
        "ab\"cdefghij\"",
        "abcdefghij\\x\"",
        "abcdefghij\u{1f}x",
        "abcdefg\u{0}",
        "\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{1}",
        "é€😀é€😀\"",
        "\u{9f}\u{a0}\u{c0}\u{ff}ab\ncd",
    ] {
        let want = text
            .bytes()
            .position(|b| b == b'"' || b == b'\\' || b < 0x20)
            .unwrap_or(text.len());
        assert_eq!(skip_string_text(text.as_bytes(), 0), want, "{text:?}");
    }
}

/// Keys that include those the scan splits under.
fn json() -> impl Strategy<Value = Value> {
    crate::core::json_strategy::json("payload|data|referenceCompany|connection|[a-z\"\\\\{]{0,4}")
}

/// A body-like object: the generated value under `payload`, beside others.
fn body() -> impl Strategy<Value = String> {
    (json(), json(), any::<bool>()).prop_map(|(payload, other, pretty)| {
        let mut top = serde_json::Map::new();
        top.insert("id".into(), Value::from("e1"));
        top.insert("payload".into(), payload);
        top.insert("other".into(), other);
        let top = Value::Object(top);
        if pretty {
            serde_json::to_string_pretty(&top).unwrap()
        } else {
            serde_json::to_string(&top).unwrap()
        }
    })
}

proptest! {
    /// The word scan stops where a byte-by-byte scan does, on any bytes.
    #[test]
    fn the_word_scan_stops_where_a_byte_scan_does(
        bytes in prop::collection::vec(
            prop_oneof![any::<u8>(), prop::sample::select(b"\"\\\x00\x1f\x20\x21\x7f\x80\xff".to_vec())],
            0..40,
        ),
        from in 0..8usize,
    ) {
        let from = from.min(bytes.len());
        let want = bytes[from..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .map_or(bytes.len(), |p| from + p);
        prop_assert_eq!(skip_string_text(&bytes, from), want);
    }

    /// Every valid body is accepted and split as serde_json and the
    /// trusted split split it.
    #[test]
    fn valid_bodies_are_accepted_and_split_alike(text in body()) {
        let scanned = scan_body(&text);
        prop_assert!(scanned.is_some(), "refused: {}", text);
        assert_splits_as_before(&text, &scanned.unwrap());
    }

    /// A body broken anywhere, by any byte, is never accepted unless
    /// serde_json accepts it too (and then split alike).
    #[test]
    fn a_broken_body_is_never_accepted_where_serde_json_refuses_it(
        text in body(),
        at in any::<prop::sample::Index>(),
        byte in prop::sample::select(b"\"\\{}[],: 0123456789.eE+-tfnul\x01\x1f\x7fab".to_vec()),
        how in 0..3u8,
    ) {
        let mut bytes = text.into_bytes();
        let at = at.index(bytes.len() + 1);
        match how {
            0 => bytes.insert(at, byte),
            1 if at < bytes.len() => { bytes.remove(at); }
            _ if at < bytes.len() => bytes[at] = byte,
            _ => bytes.push(byte),
        }
        let Ok(text) = String::from_utf8(bytes) else { return Ok(()) };
        if let Some(scanned) = scan_body(&text) {
            prop_assert!(serde_accepts_object(&text), "accepted: {}", text);
            // Its top-level keys decode too (else the old path names them).
            prop_assert!(serde_json::from_str::<RawObject>(&text).is_ok(), "{}", text);
            assert_splits_as_before(&text, &scanned);
        }
    }
}
