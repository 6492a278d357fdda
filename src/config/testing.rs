//! Helpers shared by the configuration's tests.

use crate::config::Settings;

pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn write_toml(text: &str) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// `load_with_env` on `toml`, as the error text.
pub(super) fn load_error(toml: &str, pairs: &[(&str, &str)]) -> String {
    let f = write_toml(toml);
    match Settings::load_with_env(Some(f.path()), env(pairs)) {
        Ok(_) => panic!("accepted: {toml} {pairs:?}"),
        Err(e) => e.to_string(),
    }
}

pub(super) const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
