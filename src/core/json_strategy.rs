//! Arbitrary JSON values for the property tests of the core's JSON
//! readers (`json_trusted`, `json_scan`): every kind, strings full of the
//! bytes a scanner must get right, objects keyed from a pattern.

use proptest::prelude::*;
use serde_json::Value;

/// Values nested up to six levels, object keys matching `keys` (a
/// proptest regex).
pub fn json(keys: &'static str) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[\"\\\\{}\\[\\],: a\u{1}\u{7f}é]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((keys, inner), 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
