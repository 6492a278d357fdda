//! Start-up of the record step: the output topics, the de-duplication
//! changelog and the envelope's schema subjects, each waited out while the
//! cluster or registry is unavailable and refused for good otherwise.

use std::future::Future;

use tracing::warn;

use super::{Processor, beating};
use crate::backoff::Backoff;
use crate::core::event_type::known_event_types;
use crate::registry::client::RegistryError;

/// Why start-up could not finish.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Output topics could not be created.
    #[error(transparent)]
    Topics(#[from] crate::kafka::topics::TopicError),
    /// The schema registry refused or did not answer.
    #[error("cannot register the envelope schema: {0}")]
    Registry(#[from] RegistryError),
}

impl Processor<'_> {
    /// The topics made at start-up: dead letters, catch-all, every known type.
    pub fn startup_topics(&self) -> Vec<String> {
        let mut startup = vec![
            self.settings.output.dead_letter_topic.clone(),
            self.settings.output.catch_all_topic.clone(),
        ];
        startup.extend(
            known_event_types()
                .iter()
                .map(|t| self.router.topic_for(t))
                .filter(|t| !self.router.is_reserved(t)),
        );
        startup.sort();
        startup.dedup();
        startup
    }

    /// Creates the start-up topics and registers their subjects, waiting out
    /// broker and registry trouble; `Ok(false)` if `shutdown` came first.
    pub async fn start(&mut self, shutdown: impl Future<Output = ()>) -> Result<bool, StartError> {
        let shutdown = std::pin::pin!(shutdown);
        let startup = self.startup_topics();
        let work = async {
            self.ensure_startup_topics(&startup).await?;
            self.ensure_changelog().await?;
            let dlq = self.settings.output.dead_letter_topic.clone();
            for topic in startup.iter().filter(|t| **t != dlq) {
                self.register_at_start_up(topic).await?;
            }
            Ok::<(), StartError>(())
        };
        tokio::select! {
            () = shutdown => Ok(false),
            done = work => done.map(|()| true),
        }
    }

    async fn ensure_startup_topics(&mut self, startup: &[String]) -> Result<(), StartError> {
        let mut backoff = Backoff::new(self.settings.pipeline.produce_retry_backoff_max_ms);
        loop {
            match beating(self.health, self.topics.ensure(startup)).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => {
                    warn!(error = %e, "waiting for the cluster to create output topics");
                    beating(self.health, backoff.wait()).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The de-duplication changelog, when de-duplication is on.
    async fn ensure_changelog(&mut self) -> Result<(), StartError> {
        let Some(changelog) = self.dedup.as_ref().map(|d| d.changelog().to_owned()) else {
            return Ok(());
        };
        let ingest = &self.settings.ingest.topics;
        // A day past the window, so compaction never races expiry.
        let retention_ms = self.settings.dedup.window_ms + 24 * 3_600_000;
        let mut backoff = Backoff::new(self.settings.pipeline.produce_retry_backoff_max_ms);
        loop {
            let creating = self
                .topics
                .ensure_changelog(&changelog, ingest, retention_ms);
            match beating(self.health, creating).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => {
                    warn!(error = %e, "waiting for the cluster to create the de-duplication changelog");
                    beating(self.health, backoff.wait()).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Registers `topic`'s subject; a registry that does not answer is
    /// waited out (a deploy during a registry outage must not crash-loop),
    /// one that refuses is a start-up error.
    async fn register_at_start_up(&mut self, topic: &str) -> Result<(), StartError> {
        let Some(ids) = self.schema_ids.as_mut() else {
            return Ok(());
        };
        let mut backoff = Backoff::new(self.settings.pipeline.produce_retry_backoff_max_ms);
        loop {
            match beating(self.health, ids.id_for(topic)).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_transient() => {
                    warn!(error = %e, "waiting for the schema registry");
                    beating(self.health, backoff.wait()).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
