//! Label values of the operational events, each enumerated once: metrics
//! pre-register every value, and the code that reports an event names it
//! through these types, never with a free string.

/// Why an envelope went to the catch-all topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchAllReason {
    /// The distinct-topic cap was reached.
    TopicCap,
    /// Its topic could not be created (or the broker refuses writes to it).
    TopicUnavailable,
    /// Its topic would be a reserved one (dead-letter, catch-all, ingest).
    ReservedTopic,
}

impl CatchAllReason {
    /// Every cause, for metrics pre-registration.
    pub const ALL: [CatchAllReason; 3] = [
        CatchAllReason::TopicCap,
        CatchAllReason::TopicUnavailable,
        CatchAllReason::ReservedTopic,
    ];

    /// The metric label value (`catch_all_routed_total{cause}`).
    pub fn label(self) -> &'static str {
        match self {
            CatchAllReason::TopicCap => "topic_cap",
            CatchAllReason::TopicUnavailable => "topic_unavailable",
            CatchAllReason::ReservedTopic => "reserved_topic",
        }
    }
}
