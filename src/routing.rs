//! Routing: which topic an envelope of a given type goes to. Input can
//! never create topics without bound: past `max_topics` distinct per-type
//! topics, new types go to the catch-all topic.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::config::OutputSettings;

/// Why an envelope went to the catch-all topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchAllReason {
    /// The distinct-topic cap was reached.
    TopicCap,
    /// Its topic could not be created.
    TopicUnavailable,
    /// Its topic would be an ingest topic (a loop).
    IngestTopic,
}

/// A routing decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The topic to produce to.
    pub topic: String,
    /// Set when the envelope went to the catch-all topic.
    pub catch_all: Option<CatchAllReason>,
    /// True the first time this type is routed to the catch-all (log once).
    pub first_catch_all_for_type: bool,
}

/// Routes event types to topics and remembers which topics it has handed out.
#[derive(Debug)]
pub struct Router {
    prefix: String,
    overrides: BTreeMap<String, String>,
    max_topics: usize,
    catch_all: String,
    ingest: HashSet<String>,
    /// type -> topic for every type routed to its own topic so far.
    routed: HashMap<String, String>,
    /// Types sent to the catch-all; bounded, only to log each once.
    caught: HashSet<String>,
    unavailable: HashSet<String>,
}

/// How many catch-all types are remembered for log-once purposes.
const MAX_REMEMBERED_CAUGHT: usize = 10_000;

impl Router {
    /// A router for these output settings; `ingest_topics` are never routed to.
    pub fn new(output: &OutputSettings, ingest_topics: &[String]) -> Self {
        Router {
            prefix: output.topic_prefix.clone(),
            overrides: output.topic_overrides.clone(),
            max_topics: output.max_topics,
            catch_all: output.catch_all_topic.clone(),
            ingest: ingest_topics.iter().cloned().collect(),
            routed: HashMap::new(),
            caught: HashSet::new(),
            unavailable: HashSet::new(),
        }
    }

    /// The topic an event type maps to, ignoring the cap.
    pub fn topic_for(&self, event_type: &str) -> String {
        match self.overrides.get(event_type) {
            Some(t) => t.clone(),
            None => format!("{}{}", self.prefix, event_type),
        }
    }

    /// The catch-all topic.
    pub fn catch_all_topic(&self) -> &str {
        &self.catch_all
    }

    /// Routes one envelope of type `event_type` (already validated).
    pub fn route(&mut self, event_type: &str) -> Route {
        if let Some(topic) = self.routed.get(event_type) {
            return Route {
                topic: topic.clone(),
                catch_all: None,
                first_catch_all_for_type: false,
            };
        }
        let topic = self.topic_for(event_type);
        let reason = if self.unavailable.contains(event_type) {
            Some(CatchAllReason::TopicUnavailable)
        } else if self.ingest.contains(&topic) {
            Some(CatchAllReason::IngestTopic)
        } else if self.distinct_topics() >= self.max_topics && !self.is_topic_in_use(&topic) {
            Some(CatchAllReason::TopicCap)
        } else {
            None
        };
        match reason {
            None => {
                self.routed.insert(event_type.to_owned(), topic.clone());
                Route {
                    topic,
                    catch_all: None,
                    first_catch_all_for_type: false,
                }
            }
            Some(reason) => {
                let first = self.caught.len() < MAX_REMEMBERED_CAUGHT
                    && self.caught.insert(event_type.to_owned());
                Route {
                    topic: self.catch_all.clone(),
                    catch_all: Some(reason),
                    first_catch_all_for_type: first,
                }
            }
        }
    }

    /// Marks a type whose topic could not be created: it goes to the
    /// catch-all from now on.
    pub fn mark_unavailable(&mut self, event_type: &str) {
        self.routed.remove(event_type);
        if self.unavailable.len() < MAX_REMEMBERED_CAUGHT {
            self.unavailable.insert(event_type.to_owned());
        }
    }

    fn distinct_topics(&self) -> usize {
        self.routed.values().collect::<HashSet<_>>().len()
    }

    fn is_topic_in_use(&self, topic: &str) -> bool {
        self.routed.values().any(|t| t == topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(max: usize) -> Router {
        let mut o = OutputSettings {
            max_topics: max,
            ..OutputSettings::default()
        };
        o.topic_overrides
            .insert("connection.failed".into(), "alerts.connections".into());
        Router::new(&o, &["codat.webhooks.raw".to_string()])
    }

    #[test]
    fn prefix_and_overrides() {
        let mut r = router(10);
        assert_eq!(
            r.route("invoices.write.successful").topic,
            "codat.invoices.write.successful"
        );
        assert_eq!(r.route("connection.failed").topic, "alerts.connections");
    }

    #[test]
    fn past_the_cap_new_types_go_to_the_catch_all_logged_once() {
        let mut r = router(2);
        assert_eq!(r.route("a.one").catch_all, None);
        assert_eq!(r.route("a.two").catch_all, None);
        let third = r.route("a.three");
        assert_eq!(third.topic, "codat.unrouted");
        assert_eq!(third.catch_all, Some(CatchAllReason::TopicCap));
        assert!(third.first_catch_all_for_type);
        assert!(!r.route("a.three").first_catch_all_for_type);
        // Types already routed keep their topics.
        assert_eq!(r.route("a.one").topic, "codat.a.one");
    }

    #[test]
    fn an_ingest_topic_is_never_an_output() {
        let mut r = router(10);
        let route = r.route("webhooks.raw");
        assert_eq!(route.catch_all, Some(CatchAllReason::IngestTopic));
    }

    #[test]
    fn unavailable_topics_fall_back_to_the_catch_all() {
        let mut r = router(10);
        assert_eq!(r.route("x.y").catch_all, None);
        r.mark_unavailable("x.y");
        assert_eq!(
            r.route("x.y").catch_all,
            Some(CatchAllReason::TopicUnavailable)
        );
    }
}
