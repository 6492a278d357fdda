//! A JSON value written as block-style YAML, for `codat-stream asyncapi`.
//! Every string is written double-quoted with JSON's escapes, which YAML's
//! double-quoted scalars share, so no string can be read back as another
//! type (`"on"`, `"1.0"`) or break the layout; keys are written plain when
//! they are identifiers.

use serde_json::Value;

/// `value` as a YAML document.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&key_text(key));
        out.push(':');
        write_child(out, value, indent);
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        write_child(out, item, indent);
    }
}

/// The value after `key:` or `-`: inline when a scalar or empty, else on
/// the following lines, indented.
fn write_child(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, indent + 2);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        // JSON text of a string, number, bool or null is valid YAML.
        other => other.to_string(),
    }
}

/// A key plain when it is an identifier YAML reads back as the same string
/// (`$ref`, `ce_id`, `codat_stream.dlq.reason`), else double-quoted.
fn key_text(key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$' || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_maps_sequences_and_quoting() {
        let v = json!({
            "a": {"b": [1, {"c": "x"}, []], "on": true},
            "$ref": "#/x",
            "k y": "line\n\"two\"",
            "e": {}
        });
        assert_eq!(
            to_yaml(&v),
            "$ref: \"#/x\"\na:\n  b:\n    - 1\n    -\n      c: \"x\"\n    - []\n  \"on\": true\n\
             e: {}\n\"k y\": \"line\\n\\\"two\\\"\"\n"
        );
    }
}
