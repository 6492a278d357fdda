//! Routing: which topic an envelope of a given type goes to. Input can
//! never create topics without bound nor name a topic it should not reach:
//! - the dead-letter, catch-all and ingest topics are reserved: a type whose
//!   topic would be one of them goes to the catch-all topic;
//! - Codat's catalog types and the operator's overrides always get their own
//!   topic (they are created at start-up or chosen by the operator);
//! - every other type counts toward `max_topics`, and so does a type whose
//!   topic the cluster refused: past the cap, new types go to the catch-all,
//!   so at most `max_topics` creation attempts are ever made for input.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::config::OutputSettings;
use crate::kafka::fast_hash::FastMap;
pub use crate::ops::labels::CatchAllReason;

/// A routing decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The topic to produce to.
    pub topic: Arc<str>,
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
    catch_all: Arc<str>,
    /// Topics no envelope may be routed to by its type.
    reserved: HashSet<String>,
    /// Types that always get their own topic (catalog, overrides).
    exempt: HashSet<String>,
    /// type -> topic for every type routed to its own topic so far
    /// (bounded by the cap and the catalog: hashed fast, once a record).
    routed: FastMap<String, Arc<str>>,
    /// Of `routed`, the types that count toward the cap.
    counted: usize,
    /// Types sent to the catch-all; bounded, only to log each once.
    caught: HashSet<String>,
    /// Types whose topic was refused; each counts toward the cap.
    unavailable: HashSet<String>,
}

/// How many catch-all types are remembered for log-once purposes.
const MAX_REMEMBERED_CAUGHT: usize = 10_000;

impl Router {
    /// A router for these output settings. `ingest_topics` are reserved
    /// with the dead-letter and catch-all topics; `known_types` (Codat's
    /// catalog) always get their own topic.
    pub fn new(output: &OutputSettings, ingest_topics: &[String], known_types: &[String]) -> Self {
        let mut reserved: HashSet<String> = ingest_topics.iter().cloned().collect();
        reserved.insert(output.dead_letter_topic.clone());
        reserved.insert(output.catch_all_topic.clone());
        let mut exempt: HashSet<String> = known_types.iter().cloned().collect();
        exempt.extend(output.topic_overrides.keys().cloned());
        Router {
            prefix: output.topic_prefix.clone(),
            overrides: output.topic_overrides.clone(),
            max_topics: output.max_topics,
            catch_all: Arc::from(output.catch_all_topic.as_str()),
            reserved,
            exempt,
            routed: FastMap::default(),
            counted: 0,
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

    /// Whether `topic` is reserved (never an envelope's own topic).
    pub fn is_reserved(&self, topic: &str) -> bool {
        self.reserved.contains(topic)
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
        let topic: Arc<str> = Arc::from(self.topic_for(event_type));
        let exempt = self.exempt.contains(event_type);
        let reason = if self.reserved.contains(&*topic) {
            Some(CatchAllReason::ReservedTopic)
        } else if self.unavailable.contains(event_type) {
            Some(CatchAllReason::TopicUnavailable)
        } else if !exempt && self.counted + self.unavailable.len() >= self.max_topics {
            Some(CatchAllReason::TopicCap)
        } else {
            None
        };
        match reason {
            None => {
                self.counted += usize::from(!exempt);
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

    /// Marks a type whose topic was refused: it goes to the catch-all from
    /// now on, and still counts toward the cap (so refusals cannot make
    /// input trigger creation attempts without bound).
    pub fn mark_unavailable(&mut self, event_type: &str) {
        if self.routed.remove(event_type).is_some() && !self.exempt.contains(event_type) {
            self.counted -= 1;
        }
        self.unavailable.insert(event_type.to_owned());
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
        Router::new(
            &o,
            &["codat.webhooks.raw".to_string()],
            &[
                "connection.failed".to_string(),
                "read.completed".to_string(),
            ],
        )
    }

    #[test]
    fn prefix_and_overrides() {
        let mut r = router(10);
        assert_eq!(
            &*r.route("invoices.write.successful").topic,
            "codat.invoices.write.successful"
        );
        assert_eq!(&*r.route("connection.failed").topic, "alerts.connections");
    }

    #[test]
    fn past_the_cap_new_types_go_to_the_catch_all_logged_once() {
        let mut r = router(2);
        assert_eq!(r.route("a.one").catch_all, None);
        assert_eq!(r.route("a.two").catch_all, None);
        let third = r.route("a.three");
        assert_eq!(&*third.topic, "codat.unrouted");
        assert_eq!(third.catch_all, Some(CatchAllReason::TopicCap));
        assert!(third.first_catch_all_for_type);
        assert!(!r.route("a.three").first_catch_all_for_type);
        // Types already routed keep their topics.
        assert_eq!(&*r.route("a.one").topic, "codat.a.one");
    }

    /// Issue 9, finding 5: `eventType: "dlq"` put an envelope into `codat.dlq`.
    #[test]
    fn reserved_topics_are_never_an_output() {
        let mut r = router(10);
        for t in ["webhooks.raw", "dlq", "unrouted"] {
            let route = r.route(t);
            assert_eq!(route.catch_all, Some(CatchAllReason::ReservedTopic), "{t}");
            assert_eq!(&*route.topic, "codat.unrouted");
        }
    }

    /// Issue 9, finding 5: junk types filled `max_topics` before catalog
    /// types, so `connection.failed` could land on the catch-all.
    #[test]
    fn catalog_types_get_their_own_topic_past_the_cap() {
        let mut r = router(2);
        for t in ["junk.a", "junk.b", "junk.c"] {
            r.route(t);
        }
        assert_eq!(r.route("junk.c").catch_all, Some(CatchAllReason::TopicCap));
        let route = r.route("read.completed");
        assert_eq!(
            (&*route.topic, route.catch_all),
            ("codat.read.completed", None)
        );
        assert_eq!(&*r.route("connection.failed").topic, "alerts.connections");
    }

    /// Issue 9, finding 5: refused topics did not count toward the cap, so
    /// under ACLs input could cause unbounded CreateTopics calls.
    #[test]
    fn refused_types_count_toward_the_cap() {
        let mut r = router(3);
        let mut attempts = 0;
        for i in 0..1000 {
            let t = format!("junk.t{i}");
            if r.route(&t).catch_all.is_none() {
                attempts += 1;
                r.mark_unavailable(&t);
            }
        }
        assert_eq!(
            attempts, 3,
            "one creation attempt per slot of the cap, then none"
        );
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
