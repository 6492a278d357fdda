//! Loading: built-in defaults, then the TOML file, then the environment
//! (`CODAT_STREAM__SECTION__KEY`), secrets resolved from their references,
//! then validation, before anything connects.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::secrets::SecretRef;
use crate::config::settings::{KafkaSettings, Settings};
use crate::config::{ConfigError, source};

impl Settings {
    /// Loads defaults, then `file` (if given), then the environment, and validates.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Settings::load`] with the environment given explicitly (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let defaults =
            config::Config::try_from(&Settings::default()).map_err(|e| source::load_error(&e))?;
        let mut builder = config::Config::builder().add_source(defaults);
        if let Some(path) = file {
            // Parsed here first, so a syntax error is reported without the
            // offending line; the config crate then parses it again.
            let text = source::read_toml(path)?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        builder = builder.add_source(source::environment(env.clone()));
        let mut settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| source::load_error(&e))?;
        settings.kafka.normalize_env_keys();
        let unresolved = settings.resolve_secrets(&env);
        settings.validate_with(unresolved)?;
        Ok(settings)
    }

    /// Reads every [`SecretRef`] from the environment or its file; one
    /// problem per secret that cannot be read, naming the setting.
    fn resolve_secrets(&mut self, env: &BTreeMap<String, String>) -> Vec<String> {
        let mut problems = Vec::new();
        let mut resolve = |setting: String, refs: &mut Vec<SecretRef>| {
            for (i, r) in refs.iter_mut().enumerate() {
                if let Err(why) = r.resolve(env) {
                    problems.push(format!("{setting}[{i}]: {why}"));
                }
            }
        };
        resolve(
            "normalize.signature_secrets".into(),
            &mut self.normalize.signature_secrets,
        );
        for (name, e) in &mut self.receive.endpoints {
            resolve(format!("receive.endpoints.{name}.secrets"), &mut e.secrets);
            resolve(
                format!("receive.endpoints.{name}.authorization"),
                &mut e.authorization,
            );
        }
        problems
    }
}

impl KafkaSettings {
    /// Environment keys arrive lower-cased with `_` where librdkafka has `.`.
    fn normalize_env_keys(&mut self) {
        for props in [&mut self.common, &mut self.consumer, &mut self.producer] {
            *props = std::mem::take(props)
                .into_iter()
                .map(|(k, v)| (k.replace('_', "."), v))
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Settings;
    use crate::config::testing::{SECRET_A, env, load_error, write_toml};

    #[test]
    fn defaults_are_valid() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let f = write_toml(
            "[kafka]\nbootstrap_servers = \"file:9092\"\n[kafka.common]\n\"security.protocol\" = \"SASL_SSL\"\n\
             [ingest]\ntopics = [\"a\", \"b\"]\n[pipeline]\nmax_in_flight = 7\n",
        );
        let s = Settings::load_with_env(
            Some(f.path()),
            env(&[
                ("CODAT_STREAM__KAFKA__BOOTSTRAP_SERVERS", "env:9092"),
                ("CODAT_STREAM__KAFKA__COMMON__SASL_PASSWORD", "hunter2"),
                (
                    "CODAT_STREAM__KAFKA__CONSUMER__FETCH_MAX_BYTES",
                    "104857600",
                ),
                (
                    "CODAT_STREAM__KAFKA__PRODUCER__ENABLE_GAPLESS_GUARANTEE",
                    "true",
                ),
                ("CODAT_STREAM__INGEST__TOPICS", "x,y,z"),
                ("OTHER__KAFKA__BOOTSTRAP_SERVERS", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(s.kafka.bootstrap_servers, "env:9092");
        assert_eq!(s.ingest.topics, ["x", "y", "z"]);
        assert_eq!(s.pipeline.max_in_flight, 7);
        assert_eq!(s.kafka.common["security.protocol"], "SASL_SSL");
        assert_eq!(s.kafka.common["sasl.password"], "hunter2");
        assert_eq!(s.kafka.consumer["fetch.max.bytes"], "104857600");
        assert_eq!(s.kafka.producer["enable.gapless.guarantee"], "true");
        let shown = s.to_masked_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("********"));
        let c = s.consumer_config();
        assert_eq!(c.get("sasl.password"), Some("hunter2"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_setting_named() {
        let f = write_toml("[ingest]\ngroupid = \"x\"\n");
        let err = Settings::load_with_env(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("groupid"), "{err}");

        for (k, v, needle) in [
            (
                "CODAT_STREAM__PIPELINE__MAX_IN_FLIGHT",
                "0",
                "max_in_flight",
            ),
            (
                "CODAT_STREAM__PIPELINE__MAX_IN_FLIGHT",
                "lots",
                "max_in_flight",
            ),
            (
                "CODAT_STREAM__OUTPUT__DEAD_LETTER_TOPIC",
                "bad topic",
                "dead_letter_topic",
            ),
            (
                "CODAT_STREAM__OUTPUT__DEAD_LETTER_TOPIC",
                "codat.webhooks.raw",
                "loop",
            ),
            (
                "CODAT_STREAM__INGEST__AUTO_OFFSET_RESET",
                "sometimes",
                "auto_offset_reset",
            ),
            ("CODAT_STREAM__KAFKA__PRODUCER__ACKS", "1", "managed"),
            (
                "CODAT_STREAM__PIPELINE__DRAIN_TIMEOUT_MS",
                "400000",
                "max.poll.interval.ms",
            ),
            ("CODAT_STREAM__LOG__FORMAT", "xml", "log.format"),
        ] {
            let err = Settings::load_with_env(None, env(&[(k, v)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{k}={v}: {err}");
        }
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = Settings::load_with_env(Some(Path::new("/no/such.toml")), env(&[])).unwrap_err();
        assert!(err.to_string().contains("no/such.toml"), "{err}");
    }

    #[test]
    fn a_toml_syntax_error_gives_the_position_but_not_the_line() {
        for (toml, line) in [
            (
                "[kafka.common]\n\"sasl.password\" = \"hunter2-unterminated\n",
                "line 2",
            ),
            (
                "[log]\nlevel = \"info\"\n[kafka.common]\n\"sasl.password\" = hunter2-bare\n",
                "line 4",
            ),
            (
                "[kafka.common]\n\"sasl.password\" = \"hunter2-trailing\" x\n",
                "line 2",
            ),
        ] {
            let e = load_error(toml, &[]);
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("TOML syntax error") && e.contains(line), "{e}");
            assert!(e.contains(".toml"), "names the file: {e}");
        }
    }

    #[test]
    fn a_duplicate_key_is_named_but_its_values_are_not() {
        let e = load_error(
            "[kafka.common]\n\"sasl.password\" = \"hunter2-first\"\n\"sasl.password\" = \"hunter2-second\"\n",
            &[],
        );
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("duplicate key `sasl.password` at line 3"), "{e}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_not_echoed_from_file_or_environment() {
        let e = load_error("[pipeline]\nmax_in_flight = \"hunter2-file\"\n", &[]);
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("pipeline.max_in_flight"), "{e}");
        let e = load_error(
            "",
            &[("CODAT_STREAM__HTTP__LIVENESS_TIMEOUT_MS", "hunter2-env")],
        );
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("http.liveness_timeout_ms"), "{e}");
        let e = load_error("[kafka]\ncommon = \"hunter2-map\"\n", &[]);
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("kafka.common"), "{e}");
    }

    #[test]
    fn the_shipped_example_config_documents_the_defaults() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/codat-stream.example.toml"
        ));
        let s = Settings::load_with_env(Some(path), env(&[])).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn the_shipped_receive_example_loads_with_its_secrets_set() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/codat-stream.receive.example.toml"
        ));
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(path).unwrap().replace(
            "/var/run/secrets/codat/webhook-secret-next",
            &dir.path().join("next").display().to_string(),
        );
        std::fs::write(dir.path().join("next"), format!("{SECRET_A}\n")).unwrap();
        let f = write_toml(&text);
        let s = Settings::load_with_env(
            Some(f.path()),
            env(&[
                ("CODAT_WEBHOOK_SECRET", SECRET_A),
                ("CODAT_RULES_AUTHORIZATION", "Basic Y29kYXQ6c2VjcmV0"),
            ]),
        )
        .unwrap();
        assert_eq!(s.receive.endpoints.len(), 2);
        assert!(!s.to_masked_toml().contains("Y29kYXQ6c2VjcmV0"));
    }
}
