//! Opt-in redaction of personal data in envelope payloads: configured
//! payload paths are removed, or replaced by a keyed hash so joins on them
//! still work, before the envelope is written. Off by default; dead letters
//! are never touched (they are the input, byte for byte).
//!
//! Codat removed personal data such as company names from its webhook
//! bodies, yet older legacy bodies still carry `companyName` (rewritten to
//! `referenceCompany.name`) and event payloads carry `referenceCompany.name`,
//! `description` and `tags`. Both shapes are redacted the same way because
//! legacy bodies are rewritten into the event layout first.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use serde_json::value::RawValue;
use sha2::Sha256;

use crate::core::raw_json::{self, Kind, OutJson, RawObject};
use crate::core::rejection::Rejection;
use crate::core::secret::Secret;

/// Prefix of a hashed value, so a reader can tell it from a real one.
pub const HASH_PREFIX: &str = "hmac-sha256:";

/// A redacted payload's JSON text, and the configured paths it lost.
pub type Redacted<'a> = (String, Vec<Cow<'a, str>>);

/// What happens to a redacted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedactMode {
    /// The member is removed.
    Remove,
    /// The value is replaced by `hmac-sha256:<hex>` of its text, keyed.
    Hash(Secret),
}

/// Which payload paths are redacted, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    /// Dotted payload paths; `key[]` means every element of the array `key`.
    pub paths: Vec<String>,
    /// Remove or hash.
    pub mode: RedactMode,
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction {
            paths: Vec::new(),
            mode: RedactMode::Remove,
        }
    }
}

/// Why a path is not usable: empty, or with an empty segment.
pub fn path_problem(path: &str) -> Option<&'static str> {
    if path.trim().is_empty() {
        return Some("is empty");
    }
    let bad = path
        .split('.')
        .any(|seg| seg.strip_suffix("[]").unwrap_or(seg).is_empty());
    bad.then_some("has an empty segment (paths are dotted keys, `key[]` for every array element)")
}

impl Redaction {
    /// Whether redaction is configured at all.
    pub fn is_active(&self) -> bool {
        !self.paths.is_empty()
    }

    /// `payload` (JSON text) with every configured path redacted, and the
    /// paths that were present; `None` when nothing matched, so the payload
    /// stays as it was, byte for byte. Every copy of a repeated key on the
    /// way is redacted: leaving one would leak what the other hid.
    pub fn apply<'a>(&'a self, payload: &str) -> Result<Option<Redacted<'a>>, Rejection> {
        let mut current: Option<String> = None;
        let mut hit = Vec::new();
        for path in &self.paths {
            let text = current.as_deref().unwrap_or(payload);
            let segments: Vec<&str> = path.split('.').collect();
            if let Some(out) = self.apply_path(text, &segments)? {
                current = Some(out);
                hit.push(Cow::Borrowed(path.as_str()));
            }
        }
        Ok(current.map(|text| (text, hit)))
    }

    fn apply_path(&self, text: &str, segments: &[&str]) -> Result<Option<String>, Rejection> {
        let raw: &RawValue = serde_json::from_str(text).map_err(|e| {
            Rejection::new(
                crate::core::rejection::RejectReason::InvalidJson,
                format!("payload is not JSON: {e}"),
            )
        })?;
        Ok(self
            .node(raw.get(), segments)?
            .map(|out| out.to_json_string()))
    }

    /// The object `raw` with `segments` redacted, or `None` when it holds
    /// nothing at that path.
    fn node<'v>(&self, raw: &'v str, segments: &[&str]) -> Result<Option<OutJson<'v>>, Rejection> {
        let Some((head, rest)) = segments.split_first() else {
            return Ok(None);
        };
        if raw_json::kind(raw) != Kind::Object {
            return Ok(None);
        }
        let (key, every) = match head.strip_suffix("[]") {
            Some(key) => (key, true),
            None => (*head, false),
        };
        // Repeated keys are kept (and each redacted), so no uniqueness check.
        let object: RawObject = serde_json::from_str(raw)
            .map_err(|_| Rejection::invalid_string("`payload` on the way to a redacted path"))?;
        let mut changed = false;
        let mut members = Vec::with_capacity(object.members.len());
        for (k, v) in object.members {
            if k != key {
                members.push((k, OutJson::Raw(v)));
                continue;
            }
            let replaced = if every {
                self.elements(v, rest)?
            } else {
                self.member(v, rest)?
            };
            match replaced {
                Replaced::Kept => members.push((k, OutJson::Raw(v))),
                Replaced::Removed => changed = true,
                Replaced::With(out) => {
                    changed = true;
                    members.push((k, out));
                }
            }
        }
        Ok(changed.then_some(OutJson::Object(members)))
    }

    fn member<'v>(&self, value: &'v str, rest: &[&str]) -> Result<Replaced<'v>, Rejection> {
        if rest.is_empty() {
            return self.leaf(value);
        }
        Ok(self
            .node(value, rest)?
            .map_or(Replaced::Kept, Replaced::With))
    }

    /// `key[]`: each element of the array redacted (or descended into).
    fn elements<'v>(&self, value: &'v str, rest: &[&str]) -> Result<Replaced<'v>, Rejection> {
        let Some(items) = raw_json::array_items(value) else {
            return Ok(Replaced::Kept);
        };
        let mut changed = false;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match self.member(item, rest)? {
                Replaced::Kept => out.push(OutJson::Raw(item)),
                Replaced::Removed => changed = true,
                Replaced::With(v) => {
                    changed = true;
                    out.push(v);
                }
            }
        }
        Ok(if changed {
            Replaced::With(OutJson::Array(out))
        } else {
            Replaced::Kept
        })
    }

    fn leaf<'v>(&self, value: &'v str) -> Result<Replaced<'v>, Rejection> {
        match &self.mode {
            RedactMode::Remove => Ok(Replaced::Removed),
            RedactMode::Hash(key) => {
                // A string hashes by its text, so `"a"` and `"\u0061"` join.
                let text = match raw_json::as_str(value) {
                    Ok(Some(s)) => s,
                    Ok(None) => Cow::Borrowed(value),
                    Err(f) => return Err(f.at("`payload` at a redacted path")),
                };
                Ok(Replaced::With(OutJson::Str(Cow::Owned(keyed_hash(
                    key, &text,
                )))))
            }
        }
    }
}

enum Replaced<'v> {
    Kept,
    Removed,
    With(OutJson<'v>),
}

/// `hmac-sha256:<hex>` of `text` under `key`.
pub fn keyed_hash(key: &Secret, text: &str) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(text.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(HASH_PREFIX.len() + 64);
    out.push_str(HASH_PREFIX);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redaction(paths: &[&str], mode: RedactMode) -> Redaction {
        Redaction {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            mode,
        }
    }

    #[test]
    fn removes_present_paths_and_reports_them() {
        let r = redaction(
            &["referenceCompany.name", "referenceCompany.tags", "absent.x"],
            RedactMode::Remove,
        );
        let (out, hit) = r
            .apply(
                r#"{"referenceCompany":{"id":"co","name":"Toft stores","tags":{"a":1}},"n":1.50}"#,
            )
            .unwrap()
            .unwrap();
        assert_eq!(out, r#"{"referenceCompany":{"id":"co"},"n":1.50}"#);
        assert_eq!(hit, ["referenceCompany.name", "referenceCompany.tags"]);
        assert_eq!(r.apply(r#"{"x":{"name":"n"}}"#).unwrap(), None);
    }

    #[test]
    fn hashes_with_the_key_so_joins_still_work() {
        let r = redaction(&["a.name"], RedactMode::Hash(Secret::new("k1")));
        let (one, _) = r.apply(r#"{"a":{"name":"Toft"}}"#).unwrap().unwrap();
        let (two, _) = r.apply(r#"{"a":{"name":"\u0054oft"}}"#).unwrap().unwrap();
        assert_eq!(one, two, "same text, same hash");
        assert!(one.contains(HASH_PREFIX) && !one.contains("Toft"), "{one}");
        let other_key = redaction(&["a.name"], RedactMode::Hash(Secret::new("k2")));
        assert_ne!(
            other_key
                .apply(r#"{"a":{"name":"Toft"}}"#)
                .unwrap()
                .unwrap()
                .0,
            one
        );
        // RFC 4231 test case 2.
        assert_eq!(
            keyed_hash(&Secret::new("Jefe"), "what do ya want for nothing?"),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn array_paths_reach_every_element_and_repeated_keys_every_copy() {
        let r = redaction(&["dataTypes[].name", "tags[]"], RedactMode::Remove);
        let (out, _) = r
            .apply(r#"{"dataTypes":[{"name":"a","k":1},{"name":"b"}],"tags":["x","y"]}"#)
            .unwrap()
            .unwrap();
        assert_eq!(out, r#"{"dataTypes":[{"k":1},{}],"tags":[]}"#);
        let r = redaction(&["name"], RedactMode::Remove);
        let (out, _) = r
            .apply(r#"{"name":"a","id":1,"name":"b"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(out, r#"{"id":1}"#);
    }

    #[test]
    fn paths_are_checked() {
        assert_eq!(path_problem("referenceCompany.name"), None);
        assert_eq!(path_problem("tags[]"), None);
        assert!(path_problem("").is_some());
        assert!(path_problem("a..b").is_some());
        assert!(path_problem("[]").is_some());
    }
}
