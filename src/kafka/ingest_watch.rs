//! Waiting for a missing ingest topic. librdkafka looks for a subscribed
//! topic it has not seen only on its periodic metadata refresh
//! (`topic.metadata.refresh.interval.ms`, 5 minutes by default) once the
//! consumer is in its group: with two ingest topics, one of them created
//! later, the new one was consumed 5 minutes after its creation.
//!
//! So while an ingest topic is missing, the loop asks for the cluster's
//! metadata every 2 s. The request lists all topics, which is what lets
//! librdkafka's group logic see the new topic and rejoin at once (a partial
//! request does not update the group: rdkafka_metadata.c). The log names
//! the topic and how to create it, once, then every 5 minutes; `/readyz`
//! says an ingest topic does not exist while it is so.
//!
//! The request is made on the loop's thread, bounded by 1 s, and only
//! while a topic is missing: then at most that pause every 2 s for the
//! records of the other ingest topics.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use crate::config::Settings;
use crate::ops::events::{IngestTopicAppeared, IngestTopicAwaited, InternalEvent};
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;

/// How often the metadata is asked for while a topic is missing.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// Bound on one request (the loop waits for it).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the log repeats that a topic is still awaited.
const REMIND_EVERY: Duration = Duration::from_secs(300);

/// What the loop knows about its ingest topics' existence.
pub struct IngestWatch {
    topics: Vec<String>,
    /// Shown in the suggested command (not a secret).
    bootstrap: String,
    partitions: i32,
    /// Missing at the last answer, each with when it was last logged.
    missing: Vec<(String, Instant)>,
    next_probe: Instant,
    /// Until the first answer, every topic is in doubt.
    answered: bool,
}

impl IngestWatch {
    /// A watch that asks at once (on the loop's first turn).
    pub fn new(settings: &Settings) -> IngestWatch {
        IngestWatch {
            topics: settings.ingest.topics.clone(),
            bootstrap: settings.kafka.bootstrap_servers.clone(),
            partitions: settings.topics.partitions,
            missing: Vec::new(),
            next_probe: Instant::now(),
            answered: false,
        }
    }

    /// Called on every turn of the loop; cheap unless a request is due: at
    /// start-up, and while a topic is missing (as last seen here, or as the
    /// consumer reported it).
    pub fn tick<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        health: &Health,
        metrics: &Metrics,
    ) {
        let now = Instant::now();
        if now < self.next_probe {
            return;
        }
        self.next_probe = now + PROBE_EVERY;
        let doubted = !self.answered || !self.missing.is_empty();
        if !doubted && !health.ingest_topic_missing.load(Ordering::Relaxed) {
            return;
        }
        // Brokers unreachable: nothing is learnt; other paths report that.
        let Ok(metadata) = consumer.fetch_metadata(None, PROBE_TIMEOUT) else {
            return;
        };
        let present = |topic: &str| {
            metadata
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none())
        };
        let missing: Vec<String> = self
            .topics
            .iter()
            .filter(|t| !present(t))
            .cloned()
            .collect();
        let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
        self.answered = true;
        self.seen(&missing, now, metrics);
        health
            .ingest_topic_missing
            .store(!self.missing.is_empty(), Ordering::Relaxed);
    }

    /// Records the topics missing now: a newly missing one is logged at
    /// once, a still missing one every `REMIND_EVERY`, a found one once.
    fn seen(&mut self, missing: &[&str], now: Instant, metrics: &Metrics) {
        for (topic, _) in self
            .missing
            .iter()
            .filter(|(t, _)| !missing.contains(&&**t))
        {
            IngestTopicAppeared { topic }.emit(metrics);
        }
        let mut next = Vec::with_capacity(missing.len());
        for topic in missing {
            let logged = self
                .missing
                .iter()
                .find(|(t, _)| t == topic)
                .map(|(_, at)| *at)
                .filter(|at| now.duration_since(*at) < REMIND_EVERY);
            let logged = logged.unwrap_or_else(|| {
                self.awaited(topic).emit(metrics);
                now
            });
            next.push(((*topic).to_owned(), logged));
        }
        self.missing = next;
    }

    fn awaited<'a>(&'a self, topic: &'a str) -> IngestTopicAwaited<'a> {
        IngestTopicAwaited {
            topic,
            every_secs: PROBE_EVERY.as_secs(),
            create: format!(
                "kafka-topics.sh --bootstrap-server {} --create --topic {topic} --partitions {}",
                self.bootstrap, self.partitions
            ),
        }
    }

    /// The topics missing at the last answer.
    pub fn missing(&self) -> impl Iterator<Item = &str> {
        self.missing.iter().map(|(t, _)| t.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> IngestWatch {
        let mut settings = Settings::default();
        settings.ingest.topics = vec!["a".into(), "b".into()];
        IngestWatch::new(&settings)
    }

    #[test]
    fn a_missing_topic_is_remembered_until_it_appears() {
        let metrics = Metrics::new().unwrap();
        let mut w = watch();
        let t0 = Instant::now();
        w.seen(&["b"], t0, &metrics);
        assert_eq!(w.missing().collect::<Vec<_>>(), ["b"]);
        let logged_at = w.missing[0].1;
        // Still missing soon after: not logged again (the time kept).
        w.seen(&["b"], t0 + Duration::from_secs(10), &metrics);
        assert_eq!(w.missing[0].1, logged_at);
        // Minutes later: logged again.
        let later = t0 + REMIND_EVERY + Duration::from_secs(1);
        w.seen(&["b"], later, &metrics);
        assert_eq!(w.missing[0].1, later);
        w.seen(&[], later, &metrics);
        assert_eq!(w.missing().count(), 0);
    }

    #[test]
    fn the_suggested_command_creates_the_awaited_topic() {
        let w = watch();
        let event = w.awaited("codat.webhooks.raw");
        assert_eq!(
            event.create,
            "kafka-topics.sh --bootstrap-server localhost:9092 --create \
             --topic codat.webhooks.raw --partitions 3"
        );
    }
}
