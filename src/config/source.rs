//! Reading the configuration file and the environment without ever echoing
//! them: the TOML and config crates quote the offending line or value in
//! their errors, and that line may hold a password. Errors here give the
//! file, line and column, or the setting, and what was expected.

use std::path::Path;

use super::ConfigError;

/// The text of the TOML file at `path`, once it is known to parse.
pub(super) fn read_toml(path: &Path) -> Result<String, ConfigError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Load(format!("cannot read {shown}: {e}")))?;
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(ConfigError::Load(format!(
            "{shown}: {}",
            describe_toml_error(&text, &e)
        )));
    }
    Ok(text)
}

/// What went wrong and where, from the error's kind and position only.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let span = e.span();
    let what = if e.message().starts_with("duplicate key") {
        match span.clone().and_then(|s| key_at(text, s)) {
            Some(key) => format!("duplicate key `{key}`"),
            None => "duplicate key".to_owned(),
        }
    } else if ["overflow", "too large", "too small"]
        .iter()
        .any(|m| e.message().contains(m))
    {
        "number out of range".to_owned()
    } else {
        "TOML syntax error".to_owned()
    };
    match span {
        Some(span) => {
            let (line, column) = line_and_column(text, span.start);
            format!("{what} at line {line}, column {column}")
        }
        None => what,
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// The key at `span` when it looks like a setting name; never anything
/// that could be a value typed in the wrong place.
fn key_at(text: &str, span: std::ops::Range<usize>) -> Option<&str> {
    let key = text.get(span)?.trim().trim_matches(['"', '\'']);
    is_plain_key(key).then_some(key)
}

/// A short run of `[A-Za-z0-9._-]`: a setting or property name.
fn is_plain_key(key: &str) -> bool {
    (1..=100).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The environment variables `CODAT_STREAM__SECTION__KEY` as a source.
pub(super) fn environment(env: impl IntoIterator<Item = (String, String)>) -> config::Environment {
    let prefix = format!("{}__", super::ENV_PREFIX);
    let env: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .collect();
    // Endpoints are named by the operator, so their list keys are found
    // in the environment: `..__RECEIVE__ENDPOINTS__<NAME>__SECRETS`.
    let endpoint_lists: Vec<String> = env
        .keys()
        .filter_map(|k| k.strip_prefix(&format!("{prefix}RECEIVE__ENDPOINTS__")))
        .filter_map(|rest| rest.rsplit_once("__"))
        .filter(|(_, key)| ["SECRETS", "AUTHORIZATION"].contains(key))
        .map(|(name, key)| format!("receive.endpoints.{name}.{key}").to_lowercase())
        .collect();
    let environment = config::Environment::with_prefix(super::ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .list_separator(",")
        .with_list_parse_key("ingest.topics")
        .with_list_parse_key("output.drop_headers")
        .with_list_parse_key("normalize.redact")
        .with_list_parse_key("normalize.signature_secrets");
    endpoint_lists
        .iter()
        .fold(environment, |e, key| e.with_list_parse_key(key))
        .try_parsing(true)
        .source(Some(env))
}

/// A config-crate error as the setting and what it should be, leaving out
/// the value (its `Display` quotes it).
pub(super) fn load_error(e: &config::ConfigError) -> ConfigError {
    ConfigError::Load(describe(e))
}

fn describe(e: &config::ConfigError) -> String {
    use config::ConfigError as E;
    match e {
        E::Type {
            key,
            expected,
            origin,
            ..
        } => {
            let from = origin
                .as_deref()
                .map(|o| format!(" (from {o})"))
                .unwrap_or_default();
            match key {
                Some(key) => format!("{key}: expected {expected}{from}"),
                None => format!("expected {expected}{from}"),
            }
        }
        E::At { error, key, .. } => match key {
            Some(key) => format!("{key}: {}", describe(error)),
            None => describe(error),
        },
        E::NotFound(key) => format!("{key}: missing"),
        E::Message(message) => describe_message(message),
        E::FileParse { .. } => "the file could not be parsed".to_owned(),
        _ => "a setting could not be read".to_owned(),
    }
}

/// serde's messages name the field for unknown and missing fields; any
/// other message may quote a value, so only its kind is kept.
fn describe_message(message: &str) -> String {
    for (prefix, what) in [
        ("unknown field `", "unknown key"),
        ("missing field `", "missing key"),
    ] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let name = rest.split('`').next().unwrap_or_default();
            let expected = rest
                .split_once(", expected ")
                .map(|(_, e)| e)
                .filter(|e| is_description(e))
                .map(|e| format!(" (expected {e})"))
                .unwrap_or_default();
            return if is_plain_key(name) {
                format!("{what} `{name}`{expected}")
            } else {
                format!("{what}{expected}")
            };
        }
    }
    // "invalid type: string \"hunter2\", expected a map": the text after
    // the last ", expected " is the visitor's own description.
    let expected = ["invalid type: ", "invalid value: "]
        .iter()
        .any(|p| message.starts_with(p))
        .then(|| message.rsplit_once(", expected ").map(|(_, e)| e))
        .flatten()
        .filter(|e| is_description(e));
    match expected {
        Some(e) => format!("invalid value, expected {e}"),
        None => "invalid value".to_owned(),
    }
}

/// Text serde describes what it expected with (`a map`, `u64`, the
/// field names of a section).
fn is_description(text: &str) -> bool {
    text.len() <= 500
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" `_,.-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 6), (2, 1));
        assert_eq!(line_and_column(text, 9), (2, 3));
        assert_eq!(line_and_column(text, 999), (3, 1));
    }

    #[test]
    fn only_plain_names_are_quoted_from_the_file() {
        assert_eq!(key_at("sasl.password = 1", 0..13), Some("sasl.password"));
        assert_eq!(key_at("\"a b\" = 1", 0..5), None);
        assert_eq!(key_at("x", 0..9), None);
    }

    #[test]
    fn serde_messages_keep_names_but_not_values() {
        assert_eq!(
            describe_message("unknown field `groupid`, expected one of `topics`, `group_id`"),
            "unknown key `groupid` (expected one of `topics`, `group_id`)"
        );
        assert_eq!(
            describe_message("invalid type: string \"hunter2, expected x\", expected a map"),
            "invalid value, expected a map"
        );
        assert_eq!(
            describe_message("invalid value: string \"hunter2\""),
            "invalid value"
        );
        assert_eq!(
            describe_message("unknown variant `hunter2`, expected `a`"),
            "invalid value"
        );
    }
}
