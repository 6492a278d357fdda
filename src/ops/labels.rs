//! Label values of the operational events, each enumerated once: metrics
//! pre-register every value, and the code that reports an event names it
//! through these types, never with a free string. Below both `events` and
//! `metrics`, so neither has to import the other's half.

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

/// A rebalance step, the `kind` label of `rebalances_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceKind {
    /// Partitions assigned to this member.
    Assign,
    /// Partitions taken from this member.
    Revoke,
    /// The rebalance failed.
    Error,
}

impl RebalanceKind {
    /// Every kind, for metrics pre-registration.
    pub const ALL: [RebalanceKind; 3] = [
        RebalanceKind::Assign,
        RebalanceKind::Revoke,
        RebalanceKind::Error,
    ];

    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            RebalanceKind::Assign => "assign",
            RebalanceKind::Revoke => "revoke",
            RebalanceKind::Error => "error",
        }
    }
}

/// Which Kafka client an event is about (the `client` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// The ingest consumer.
    Consumer,
    /// The output producer.
    Producer,
}

impl Client {
    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            Client::Consumer => "consumer",
            Client::Producer => "producer",
        }
    }
}

/// How `receive` answered a webhook request: the `outcome` label of
/// `receive_requests_total`, and the status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveOutcome {
    /// 200: the broker acknowledged the record (`acks=all`).
    Accepted,
    /// 401: the signature or credentials are missing or wrong.
    Unauthorized,
    /// 413: the body is over `receive.max_body_bytes` (or the broker's limit).
    TooLarge,
    /// 400: the request or its body could not be read as HTTP.
    Malformed,
    /// 408: the body did not arrive within `receive.body_timeout_ms`.
    ReadTimeout,
    /// 405: not a POST.
    MethodNotAllowed,
    /// 404: no endpoint at that path.
    NotFound,
    /// 503: the broker did not acknowledge within `receive.ack_timeout_ms`
    /// or refused for now; Codat retries.
    Unavailable,
    /// 503: `receive.max_in_flight` requests are being handled already.
    Busy,
}

impl ReceiveOutcome {
    /// Every outcome, for metrics pre-registration.
    pub const ALL: [ReceiveOutcome; 9] = [
        ReceiveOutcome::Accepted,
        ReceiveOutcome::Unauthorized,
        ReceiveOutcome::TooLarge,
        ReceiveOutcome::Malformed,
        ReceiveOutcome::ReadTimeout,
        ReceiveOutcome::MethodNotAllowed,
        ReceiveOutcome::NotFound,
        ReceiveOutcome::Unavailable,
        ReceiveOutcome::Busy,
    ];

    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            ReceiveOutcome::Accepted => "accepted",
            ReceiveOutcome::Unauthorized => "unauthorized",
            ReceiveOutcome::TooLarge => "too_large",
            ReceiveOutcome::Malformed => "malformed",
            ReceiveOutcome::ReadTimeout => "read_timeout",
            ReceiveOutcome::MethodNotAllowed => "method_not_allowed",
            ReceiveOutcome::NotFound => "not_found",
            ReceiveOutcome::Unavailable => "unavailable",
            ReceiveOutcome::Busy => "busy",
        }
    }

    /// The HTTP status code answered.
    pub fn status(self) -> u16 {
        match self {
            ReceiveOutcome::Accepted => 200,
            ReceiveOutcome::Unauthorized => 401,
            ReceiveOutcome::TooLarge => 413,
            ReceiveOutcome::Malformed => 400,
            ReceiveOutcome::ReadTimeout => 408,
            ReceiveOutcome::MethodNotAllowed => 405,
            ReceiveOutcome::NotFound => 404,
            ReceiveOutcome::Unavailable | ReceiveOutcome::Busy => 503,
        }
    }
}
