//! Output topics: created with the admin API (at start-up for the known
//! types, on first use for the rest), with a clear error when the cluster
//! refuses.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{Settings, TopicSettings};

/// Why topics could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The cluster answered with a refusal that retrying will not change.
    #[error(
        "the cluster refused to create topic {topic:?} ({code:?}): grant this client CREATE \
         on it, create it yourself, or set topics.create = false if it exists"
    )]
    Refused {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// The request failed in a way that may pass (broker down, timeout).
    #[error("cannot create topic {topic:?} yet: {source}")]
    Transient {
        /// The topic.
        topic: String,
        /// What failed.
        #[source]
        source: KafkaError,
    },
}

impl TopicError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, TopicError::Transient { .. })
    }
}

/// Creates output topics once each, remembering which exist.
pub struct TopicCreator {
    admin: AdminClient<DefaultClientContext>,
    settings: TopicSettings,
    ready: HashSet<String>,
}

impl TopicCreator {
    /// A creator using the admin client configuration of `settings`.
    pub fn new(settings: &Settings) -> Result<Self, KafkaError> {
        Ok(TopicCreator {
            admin: settings.admin_config().create()?,
            settings: settings.topics.clone(),
            ready: HashSet::new(),
        })
    }

    /// Whether `topic` is known to exist.
    pub fn is_ready(&self, topic: &str) -> bool {
        !self.settings.create || self.ready.contains(topic)
    }

    /// Makes sure each topic exists, creating the missing ones. Topics that
    /// already exist are fine, even when the client may not create topics.
    pub async fn ensure(&mut self, topics: &[String]) -> Result<(), TopicError> {
        if !self.settings.create {
            return Ok(());
        }
        let missing: Vec<&String> = topics.iter().filter(|t| !self.ready.contains(*t)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let new_topics: Vec<NewTopic> = missing.iter().map(|t| self.new_topic(t)).collect();
        let timeout = Duration::from_millis(self.settings.request_timeout_ms);
        let options = AdminOptions::new()
            .operation_timeout(Some(timeout))
            .request_timeout(Some(timeout));
        let results = self
            .admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|source| TopicError::Transient {
                topic: missing[0].clone(),
                source,
            })?;
        let mut first_error = None;
        for result in results {
            if let Err(e) = self.settle(result, timeout) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// A topic to create with the configured partitions, replication and configs.
    fn new_topic<'t>(&'t self, topic: &'t str) -> NewTopic<'t> {
        let replication = TopicReplication::Fixed(self.settings.replication_factor);
        let mut new_topic = NewTopic::new(topic, self.settings.partitions, replication);
        for (k, v) in &self.settings.configs {
            new_topic = new_topic.set(k, v);
        }
        new_topic
    }

    /// One topic's creation result: ready, or why not.
    fn settle(
        &mut self,
        result: Result<String, (String, RDKafkaErrorCode)>,
        timeout: Duration,
    ) -> Result<(), TopicError> {
        match result {
            Ok(topic) | Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                self.ready.insert(topic);
                Ok(())
            }
            // Refused, but it may exist already (created by an operator).
            Err((topic, code)) if is_refusal(code) => {
                if self.exists(&topic, timeout) {
                    self.ready.insert(topic);
                    Ok(())
                } else {
                    Err(TopicError::Refused { topic, code })
                }
            }
            Err((topic, code)) => Err(TopicError::Transient {
                topic,
                source: KafkaError::AdminOp(code),
            }),
        }
    }

    /// Creates the de-duplication changelog (compacted, and deleted past the
    /// window) with as many partitions as the largest ingest topic, so
    /// ingest partition p has changelog partition p. An existing one is
    /// kept as it is.
    pub async fn ensure_changelog(
        &mut self,
        topic: &str,
        ingest: &[String],
        retention_ms: u64,
    ) -> Result<(), TopicError> {
        if !self.settings.create || self.ready.contains(topic) {
            return Ok(());
        }
        let timeout = Duration::from_millis(self.settings.request_timeout_ms);
        let partitions = self.partitions_of(ingest, timeout).max(1);
        let retention = retention_ms.to_string();
        let new_topic = NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(self.settings.replication_factor),
        )
        .set("cleanup.policy", "compact,delete")
        .set("retention.ms", &retention);
        let options = AdminOptions::new()
            .operation_timeout(Some(timeout))
            .request_timeout(Some(timeout));
        let transient = |source| TopicError::Transient {
            topic: topic.to_owned(),
            source,
        };
        let results = self
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(transient)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) if is_refusal(code) => {
                    if !self.exists(&topic, timeout) {
                        return Err(TopicError::Refused { topic, code });
                    }
                }
                Err((_, code)) => return Err(transient(KafkaError::AdminOp(code))),
            }
        }
        self.ready.insert(topic.to_owned());
        Ok(())
    }

    /// The largest partition count among `topics` (0 if none is known).
    fn partitions_of(&self, topics: &[String], timeout: Duration) -> i32 {
        let Ok(metadata) = self.admin.inner().fetch_metadata(None, timeout) else {
            return 0;
        };
        metadata
            .topics()
            .iter()
            .filter(|t| topics.iter().any(|i| i == t.name()))
            .map(|t| i32::try_from(t.partitions().len()).unwrap_or(i32::MAX))
            .max()
            .unwrap_or(0)
    }

    /// Blocks on a metadata request: only called after a refusal, which is rare.
    fn exists(&self, topic: &str, timeout: Duration) -> bool {
        self.admin
            .inner()
            .fetch_metadata(Some(topic), timeout)
            .map(|m| {
                m.topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none())
            })
            .unwrap_or(false)
    }
}

fn is_refusal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::PolicyViolation
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::InvalidPartitions
            | RDKafkaErrorCode::InvalidReplicationFactor
            | RDKafkaErrorCode::InvalidConfig
            | RDKafkaErrorCode::InvalidRequest
            | RDKafkaErrorCode::UnsupportedVersion
    )
}
