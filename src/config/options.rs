//! What the settings build for the core: the normaliser's options
//! (redaction, source, signature checks) and how each `receive` endpoint
//! authenticates deliveries.

use crate::config::secrets::SecretRef;
use crate::config::settings::{EndpointSettings, Settings};
use crate::core::normalize::NormalizeOptions;
use crate::core::redact::{RedactMode, Redaction};
use crate::core::signature::{Credentials, SigningKey, Verifier};

/// How one endpoint authenticates deliveries, built from its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointAuth {
    /// Standard Webhooks signatures.
    Signatures(Verifier),
    /// Legacy `Authorization` values.
    Authorization(Credentials),
    /// None (`allow_unauthenticated = true`).
    Unauthenticated,
}

impl Settings {
    /// The normaliser's options.
    pub fn normalize_options(&self) -> NormalizeOptions {
        let n = &self.normalize;
        let mode = if n.redact_mode == "hash" {
            RedactMode::Hash(n.redact_key.clone())
        } else {
            RedactMode::Remove
        };
        NormalizeOptions {
            max_body_bytes: n.max_body_bytes,
            source: n.source.clone(),
            redact: Redaction {
                paths: n.redact.clone(),
                mode,
            },
            verify: n
                .verify_signatures
                .then(|| verifier(&n.signature_secrets, n.signature_tolerance_ms)),
        }
    }

    /// How `endpoint` authenticates deliveries (its secrets were checked
    /// by validation; one that does not parse is left out).
    pub fn endpoint_auth(&self, endpoint: &EndpointSettings) -> EndpointAuth {
        if !endpoint.secrets.is_empty() {
            EndpointAuth::Signatures(verifier(
                &endpoint.secrets,
                self.receive.timestamp_tolerance_ms,
            ))
        } else if !endpoint.authorization.is_empty() {
            let values: Vec<&str> = endpoint
                .authorization
                .iter()
                .map(|r| r.value().expose())
                .collect();
            EndpointAuth::Authorization(Credentials::valid_of(&values))
        } else {
            EndpointAuth::Unauthenticated
        }
    }
}

/// A verifier of the secrets that parse (validation refused the others).
fn verifier(secrets: &[SecretRef], tolerance_ms: u64) -> Verifier {
    let keys = secrets
        .iter()
        .filter_map(|r| SigningKey::parse(r.value().expose()).ok())
        .collect();
    Verifier::new(keys, tolerance_ms / 1000)
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;
    use crate::config::testing::env;
    use crate::core::secret::Secret;

    /// Issue 12, item 7: redaction is configured under `[normalize]`, every
    /// problem reported at once, the key never shown.
    #[test]
    fn redaction_settings_are_validated_and_reach_the_normaliser() {
        let err = Settings::load_with_env(
            None,
            env(&[
                (
                    "CODAT_STREAM__NORMALIZE__REDACT",
                    "referenceCompany.name,a..b",
                ),
                ("CODAT_STREAM__NORMALIZE__REDACT_MODE", "hash"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("normalize.redact[1]"), "{err}");
        assert!(err.contains("normalize.redact_key"), "{err}");
        let err = Settings::load_with_env(
            None,
            env(&[("CODAT_STREAM__NORMALIZE__REDACT_MODE", "blur")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("normalize.redact_mode"), "{err}");

        let s = Settings::load_with_env(
            None,
            env(&[
                (
                    "CODAT_STREAM__NORMALIZE__REDACT",
                    "referenceCompany.name,tags[]",
                ),
                ("CODAT_STREAM__NORMALIZE__REDACT_MODE", "hash"),
                ("CODAT_STREAM__NORMALIZE__REDACT_KEY", "redact-key-value"),
            ]),
        )
        .unwrap();
        let options = s.normalize_options();
        assert_eq!(options.redact.paths, ["referenceCompany.name", "tags[]"]);
        assert_eq!(
            options.redact.mode,
            crate::core::redact::RedactMode::Hash(Secret::new("redact-key-value"))
        );
        assert!(!s.to_masked_toml().contains("redact-key-value"));
        assert!(!Settings::default().normalize_options().redact.is_active());
    }
}
