//! Configuration: built-in defaults < a TOML file < environment variables
//! (`CODAT_STREAM__SECTION__KEY`), validated before anything connects.
//! Secrets are never echoed: not by `check-config`, not in an error.
//!
//! One job per file: the settings types and their defaults (`settings`),
//! loading (`load`, reading sources without echoing them in `source`,
//! secrets by reference in `secrets`), validation (`validate`), the
//! librdkafka client configs (`clients`), the core's options (`options`)
//! and how secrets are shown (`masking`).

mod clients;
mod load;
mod masking;
mod options;
mod secrets;
mod settings;
mod source;
#[cfg(test)]
mod testing;
mod validate;

pub use crate::core::secret::{MASK, Secret};
pub use clients::{MANAGED_PROPERTIES, PREFETCH_KBYTES};
pub use masking::{is_secret_key, mask_property, mask_url};
pub use options::EndpointAuth;
pub use secrets::SecretRef;
pub use settings::{
    DedupSettings, DeliverySettings, ENV_PREFIX, EndpointSettings, Guarantee, HttpSettings,
    IngestSettings, KafkaSettings, LogSettings, MAX_TOPIC_LEN, MAX_TOPIC_PREFIX_LEN,
    MetricsSettings, NormalizeSettings, OutputSettings, PipelineSettings, ReceiveSettings,
    SchemaRegistrySettings, Settings, TopicSettings, ValueFormat,
};
pub use validate::check_topic;

/// Why configuration could not be used. Messages name the file, line and
/// column or the setting, never a value: it may be a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or parsed, or a value has the wrong type
    /// or a key is unknown.
    #[error("cannot load configuration: {0}")]
    Load(String),
    /// Values out of range or inconsistent: every problem found, one each.
    #[error("invalid configuration:{}", one_per_line(.0))]
    Invalid(Vec<String>),
}

fn one_per_line(problems: &[String]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}
