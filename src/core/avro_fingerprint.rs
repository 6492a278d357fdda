//! The Avro specification's Parsing Canonical Form and its CRC-64-AVRO
//! fingerprint, as fastavro, Java's `SchemaNormalization` and schema stores
//! compute them.
//!
//! apache-avro 0.22's own canonical form keeps a logical type's primitive
//! as `{"type":"long"}` where the spec's [PRIMITIVES] rule writes `"long"`,
//! so its fingerprint of any schema with a logical type differs from every
//! other library's. Single-object records carry this module's fingerprint;
//! [`apache_avro_fingerprint`] stays for reading records written before.

use serde_json::{Map, Value};

/// Why a schema has no canonical form.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CanonicalFormError {
    /// The text is not JSON.
    #[error("schema is not JSON: {0}")]
    Json(String),
    /// A JSON value that is no Avro schema.
    #[error("not an Avro schema: {0}")]
    NotASchema(String),
}

const PRIMITIVES: &[&str] = &[
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The attributes [STRIP] keeps, in the order [ORDER] writes them.
const KEPT: &[&str] = &[
    "name", "type", "fields", "symbols", "items", "values", "size",
];

/// The Parsing Canonical Form of the schema in `json`.
pub fn parsing_canonical_form(json: &str) -> Result<String, CanonicalFormError> {
    let schema: Value =
        serde_json::from_str(json).map_err(|e| CanonicalFormError::Json(e.to_string()))?;
    let mut out = String::with_capacity(json.len() / 2);
    canonical(&schema, "", &mut out)?;
    Ok(out)
}

fn canonical(schema: &Value, namespace: &str, out: &mut String) -> Result<(), CanonicalFormError> {
    match schema {
        Value::String(name) => push_str(out, &full_name(name, namespace)),
        Value::Array(branches) => {
            out.push('[');
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(branch, namespace, out)?;
            }
            out.push(']');
        }
        Value::Object(attrs) => canonical_object(attrs, namespace, out)?,
        other => return Err(CanonicalFormError::NotASchema(other.to_string())),
    }
    Ok(())
}

fn canonical_object(
    attrs: &Map<String, Value>,
    namespace: &str,
    out: &mut String,
) -> Result<(), CanonicalFormError> {
    let kind = match attrs.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        // `{"type": <schema>}` is that schema.
        Some(inner) => return canonical(inner, namespace, out),
        None => {
            return Err(CanonicalFormError::NotASchema(
                "an object without `type`".into(),
            ));
        }
    };
    // [PRIMITIVES]: `{"type":"long","logicalType":...}` is just `"long"`.
    if PRIMITIVES.contains(&kind) {
        push_str(out, kind);
        return Ok(());
    }
    let named = matches!(kind, "record" | "error" | "enum" | "fixed");
    let (name, inner_ns) = if named {
        let name = attrs
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| CanonicalFormError::NotASchema(format!("a {kind} without a name")))?;
        let ns = attrs
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(namespace);
        let full = full_name(name, ns);
        let inner_ns = full
            .rsplit_once('.')
            .map(|(ns, _)| ns.to_owned())
            .unwrap_or_default();
        (Some(full), inner_ns)
    } else {
        (None, namespace.to_owned())
    };
    out.push('{');
    let mut first = true;
    for key in KEPT {
        let Some(value) = attrs.get(*key) else {
            continue;
        };
        if !first {
            out.push(',');
        }
        first = false;
        push_str(out, key);
        out.push(':');
        match *key {
            "name" => push_str(out, name.as_deref().unwrap_or_default()),
            // [FULLNAMES]: a record's error type is written as a record.
            "type" => push_str(out, if kind == "error" { "record" } else { kind }),
            "fields" => canonical_fields(value, &inner_ns, out)?,
            "items" | "values" => canonical(value, &inner_ns, out)?,
            // Symbols are strings, sizes integers: written as JSON.
            _ => out.push_str(&value.to_string()),
        }
    }
    out.push('}');
    Ok(())
}

fn canonical_fields(fields: &Value, ns: &str, out: &mut String) -> Result<(), CanonicalFormError> {
    let fields = fields
        .as_array()
        .ok_or_else(|| CanonicalFormError::NotASchema("`fields` is not an array".into()))?;
    out.push('[');
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let name = field.get("name").and_then(Value::as_str);
        let (Some(name), Some(schema)) = (name, field.get("type")) else {
            return Err(CanonicalFormError::NotASchema(
                "a field without name or type".into(),
            ));
        };
        out.push_str("{\"name\":");
        push_str(out, name);
        out.push_str(",\"type\":");
        canonical(schema, ns, out)?;
        out.push('}');
    }
    out.push(']');
    Ok(())
}

/// [FULLNAMES]: a name with no dot takes the enclosing namespace.
fn full_name(name: &str, namespace: &str) -> String {
    if PRIMITIVES.contains(&name) || name.contains('.') || namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

/// [STRINGS]: a JSON string literal.
fn push_str(out: &mut String, s: &str) {
    // Serialising a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// CRC-64-AVRO (Rabin) of `bytes`, as the 8 little-endian bytes that
/// single-object encoding writes.
pub fn crc64_avro(bytes: &[u8]) -> [u8; 8] {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    let mut fp = EMPTY;
    for b in bytes {
        fp = (fp >> 8) ^ TABLE[((fp ^ u64::from(*b)) & 0xff) as usize];
    }
    fp.to_le_bytes()
}

const TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (0xc15d_213a_a4d7_a795 & (0u64.wrapping_sub(fp & 1)));
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
};

/// The spec's single-object fingerprint of the schema in `json`.
pub fn fingerprint(json: &str) -> Result<[u8; 8], CanonicalFormError> {
    Ok(crc64_avro(parsing_canonical_form(json)?.as_bytes()))
}

/// The fingerprint codat-stream wrote before it followed the spec
/// (apache-avro 0.22's canonical form), kept so those records still decode.
pub fn apache_avro_fingerprint(schema: &apache_avro::Schema) -> [u8; 8] {
    let fp = schema.fingerprint::<apache_avro::rabin::Rabin>();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&fp.bytes[..8]);
    bytes
}

/// Lower-case hex of a fingerprint, as fastavro and error messages print it.
pub fn hex(fingerprint: &[u8; 8]) -> String {
    fingerprint.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fastavro 1.13's `fingerprint('"int"', "CRC-64-AVRO")`, the same
    /// little-endian bytes Java's implementation gives.
    #[test]
    fn fingerprint_of_int_matches_fastavro() {
        assert_eq!(hex(&fingerprint(r#""int""#).unwrap()), "8f5c393f1ad57572");
    }

    #[test]
    fn canonical_form_follows_the_spec_rules() {
        let schema = r#"{"type":"record","name":"R","namespace":"a.b","doc":"x","fields":[
            {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"},"doc":"d"},
            {"name":"e","type":{"symbols":["A"],"type":"enum","name":"E"}},
            {"name":"u","type":["null",{"type":"array","items":"E"}],"default":null},
            {"name":"f","type":{"type":"fixed","size":4,"name":"x.F"}}]}"#;
        assert_eq!(
            parsing_canonical_form(schema).unwrap(),
            r#"{"name":"a.b.R","type":"record","fields":[{"name":"t","type":"long"},{"name":"e","type":{"name":"a.b.E","type":"enum","symbols":["A"]}},{"name":"u","type":["null",{"type":"array","items":"a.b.E"}]},{"name":"f","type":{"name":"x.F","type":"fixed","size":4}}]}"#
        );
    }

    #[test]
    fn non_schemas_are_errors_not_panics() {
        assert!(parsing_canonical_form("{").is_err());
        assert!(parsing_canonical_form("7").is_err());
        assert!(parsing_canonical_form(r#"{"name":"x"}"#).is_err());
        assert!(parsing_canonical_form(r#"{"type":"record","fields":[]}"#).is_err());
    }
}
