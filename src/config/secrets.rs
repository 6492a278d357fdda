//! Secrets given by reference: `env:NAME` (an environment variable),
//! `file:/path` (a file's content, e.g. a mounted Kubernetes Secret), or
//! the value itself (discouraged: it then sits in the file). References
//! are shown as written by `check-config` (a variable's name or a path is
//! no secret); a value given directly is shown as `********`. Resolved
//! once, at load time, so a missing variable or file is a configuration
//! error before anything listens.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::core::secret::{MASK, Secret};

/// Largest secret file read: a secret is a line, not a document.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// A secret as configured, and its value once resolved.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretRef {
    source: String,
    value: Secret,
}

/// Where a [`SecretRef`] takes its value from.
enum Origin<'a> {
    Env(&'a str),
    File(&'a str),
    Inline,
}

impl SecretRef {
    /// A reference (or inline value), unresolved.
    pub fn new(source: impl Into<String>) -> SecretRef {
        SecretRef {
            source: source.into(),
            value: Secret::default(),
        }
    }

    fn origin(&self) -> Origin<'_> {
        if let Some(name) = self.source.strip_prefix("env:") {
            Origin::Env(name)
        } else if let Some(path) = self.source.strip_prefix("file:") {
            Origin::File(path)
        } else {
            Origin::Inline
        }
    }

    /// The resolved value ([`SecretRef::resolve`] first).
    pub fn value(&self) -> &Secret {
        &self.value
    }

    /// How it is shown: the reference, or [`MASK`] for an inline value.
    pub fn shown(&self) -> &str {
        match self.origin() {
            Origin::Env(_) | Origin::File(_) => &self.source,
            Origin::Inline if self.source.is_empty() => "",
            Origin::Inline => MASK,
        }
    }

    /// Reads the value from the environment `env` or the file; the error
    /// names the variable or file and why, never a value.
    pub fn resolve(&mut self, env: &BTreeMap<String, String>) -> Result<(), String> {
        let value = match self.origin() {
            Origin::Env(name) => env
                .get(name)
                .cloned()
                .ok_or_else(|| format!("environment variable {name} is not set"))?,
            Origin::File(path) => read_secret_file(path)?,
            Origin::Inline => self.source.clone(),
        };
        let value = value.trim_end_matches(['\n', '\r']).to_owned();
        if value.trim().is_empty() {
            return Err(match self.origin() {
                Origin::Env(name) => format!("environment variable {name} is empty"),
                Origin::File(path) => format!("file {path} is empty"),
                Origin::Inline => "is empty".to_owned(),
            });
        }
        self.value = Secret::new(value);
        Ok(())
    }
}

fn read_secret_file(path: &str) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read file {path}: {e}"))?;
    let mut text = String::new();
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read file {path}: {e}"))?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!(
            "file {path} is larger than {MAX_SECRET_FILE_BYTES} bytes"
        ));
    }
    Ok(text)
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.shown(), f)
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.shown())
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SecretRef, D::Error> {
        String::deserialize(deserializer).map(SecretRef::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_and_show_as_written_inline_values_masked() {
        let env = BTreeMap::from([("HOOK".to_owned(), "whsec-from-env".to_owned())]);
        let mut r = SecretRef::new("env:HOOK");
        r.resolve(&env).unwrap();
        assert_eq!(r.value().expose(), "whsec-from-env");
        assert_eq!(format!("{r:?}"), "\"env:HOOK\"");

        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"whsec-from-file\n").unwrap();
        let mut r = SecretRef::new(format!("file:{}", f.path().display()));
        r.resolve(&env).unwrap();
        assert_eq!(r.value().expose(), "whsec-from-file");

        let mut r = SecretRef::new("whsec-inline");
        r.resolve(&env).unwrap();
        assert_eq!(r.value().expose(), "whsec-inline");
        assert_eq!(r.shown(), MASK);
        assert!(!format!("{r:?}").contains("inline"));
        assert!(!serde_json::to_string(&r).unwrap().contains("inline"));

        for (bad, needle) in [
            ("env:NOPE", "NOPE is not set"),
            ("file:/no/such/secret", "cannot read file /no/such/secret"),
        ] {
            let e = SecretRef::new(bad).resolve(&env).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }
}
