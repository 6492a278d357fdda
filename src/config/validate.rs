//! Validation of [`Settings`]: ranges and cross-field rules. Every problem
//! is reported at once, one line each, naming the setting, so a deployment
//! is fixed in one round; a secret's value is never part of a message.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use super::{
    ConfigError, MANAGED_PROPERTIES, MAX_TOPIC_LEN, MAX_TOPIC_PREFIX_LEN, Settings, is_topic_byte,
};
use crate::core::event_type;

/// One hour, the longest any timeout or interval may be: longer ones are
/// typing mistakes, and unbounded ones overflow time arithmetic.
const HOUR_MS: u64 = 3_600_000;

/// The problems found so far, one message each.
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, message: impl Into<String>) {
        self.0.push(message.into());
    }

    /// Refuses `value` outside `range`, naming `setting` and the range.
    fn range(&mut self, setting: &str, value: u64, range: RangeInclusive<u64>) {
        if !range.contains(&value) {
            self.add(format!(
                "{setting} must be between {} and {}",
                range.start(),
                range.end()
            ));
        }
    }

    /// Like [`Problems::range`] for milliseconds, with the range readable.
    fn range_ms(&mut self, setting: &str, value: u64, range: RangeInclusive<u64>) {
        if !range.contains(&value) {
            self.add(format!(
                "{setting} must be between {} and {} ({} to {})",
                range.start(),
                range.end(),
                human_ms(*range.start()),
                human_ms(*range.end())
            ));
        }
    }

    fn into_result(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.0))
        }
    }
}

/// `3600000` as `1 h`, `100` as `100 ms`.
fn human_ms(ms: u64) -> String {
    match ms {
        0 => "0 ms".into(),
        _ if ms.is_multiple_of(HOUR_MS) => format!("{} h", ms / HOUR_MS),
        _ if ms.is_multiple_of(60_000) => format!("{} min", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{} s", ms / 1_000),
        _ => format!("{ms} ms"),
    }
}

/// A `usize` as `u64`; saturates where `usize` is wider.
fn wide(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Settings {
    /// Checks ranges and cross-field rules, reporting every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        check_kafka(self, &mut p);
        check_ingest(self, &mut p);
        check_output(self, &mut p);
        check_topic_roles(self, &mut p);
        check_topic_creation(self, &mut p);
        check_pipeline(self, &mut p);
        check_http_and_metrics(self, &mut p);
        check_registry(self, &mut p);
        check_formats(self, &mut p);
        check_redaction(self, &mut p);
        check_dedup(self, &mut p);
        p.into_result()
    }
}

fn check_kafka(s: &Settings, p: &mut Problems) {
    if s.kafka.bootstrap_servers.trim().is_empty() {
        p.add("kafka.bootstrap_servers must not be empty");
    }
    for (section, props) in [
        ("common", &s.kafka.common),
        ("consumer", &s.kafka.consumer),
        ("producer", &s.kafka.producer),
    ] {
        for key in props
            .keys()
            .filter(|k| MANAGED_PROPERTIES.contains(&k.as_str()))
        {
            p.add(format!(
                "kafka.{section}.\"{key}\" is managed by codat-stream (use the typed \
                 setting, or it would weaken the at-least-once guarantee)"
            ));
        }
    }
    check_max_message_bytes(s, p);
}

/// The smallest dead letter (reason, coordinates, sizes, digest) must fit
/// the producer's `message.max.bytes`, or a record could be held forever.
fn check_max_message_bytes(s: &Settings, p: &mut Problems) {
    for (section, props) in [("producer", &s.kafka.producer), ("common", &s.kafka.common)] {
        let Some(value) = props.get("message.max.bytes") else {
            continue;
        };
        match value.trim().parse::<u64>() {
            Ok(n) => p.range(
                &format!("kafka.{section}.\"message.max.bytes\""),
                n,
                65_536..=1_000_000_000,
            ),
            Err(_) => p.add(format!(
                "kafka.{section}.\"message.max.bytes\" must be a whole number of bytes"
            )),
        }
    }
}

fn check_ingest(s: &Settings, p: &mut Problems) {
    let i = &s.ingest;
    if i.topics.is_empty() {
        p.add("ingest.topics must name at least one topic");
    }
    for t in &i.topics {
        p.0.extend(topic_problem("ingest.topics", t));
    }
    if i.group_id.trim().is_empty() {
        p.add("ingest.group_id must not be empty");
    }
    if !["earliest", "latest"].contains(&i.auto_offset_reset.as_str()) {
        p.add(format!(
            "ingest.auto_offset_reset must be \"earliest\" or \"latest\", not {:?}",
            i.auto_offset_reset
        ));
    }
}

fn check_output(s: &Settings, p: &mut Problems) {
    let o = &s.output;
    if o.topic_prefix.is_empty() {
        p.add(
            "output.topic_prefix must not be empty: without a prefix an event type \
             could name any topic of the cluster",
        );
    } else if !is_topic_prefix(&o.topic_prefix) {
        p.add(format!(
            "output.topic_prefix must be at most {MAX_TOPIC_PREFIX_LEN} characters of \
             [A-Za-z0-9._-], hold a letter or digit, and end in \".\", \"_\" or \"-\" \
             (e.g. \"codat.\"), so every output topic is in one namespace"
        ));
    }
    p.0.extend(topic_problem("output.catch_all_topic", &o.catch_all_topic));
    p.0.extend(topic_problem(
        "output.dead_letter_topic",
        &o.dead_letter_topic,
    ));
    for (ty, topic) in &o.topic_overrides {
        if let Err(r) = event_type::validate(ty) {
            p.add(format!("output.topic_overrides key: {}", r.message));
        }
        p.0.extend(topic_problem("output.topic_overrides value", topic));
    }
    p.range("output.max_topics", wide(o.max_topics), 1..=10_000);
}

/// A prefix that keeps every output topic in its own namespace.
fn is_topic_prefix(prefix: &str) -> bool {
    prefix.len() <= MAX_TOPIC_PREFIX_LEN
        && prefix.bytes().all(is_topic_byte)
        && prefix.bytes().any(|b| b.is_ascii_alphanumeric())
        && prefix.ends_with(['.', '_', '-'])
}

/// The ingest, dead-letter and catch-all topics each have one role: a
/// shared topic would loop records or mix raw records with envelopes.
fn check_topic_roles(s: &Settings, p: &mut Problems) {
    let o = &s.output;
    let mut seen = BTreeSet::new();
    for t in s.ingest.topics.iter().filter(|t| !seen.insert(t.as_str())) {
        p.add(format!("ingest.topics lists {t:?} more than once"));
    }
    if o.dead_letter_topic == o.catch_all_topic {
        p.add(
            "output.dead_letter_topic and output.catch_all_topic must differ: \
             raw dead letters and envelopes would mix",
        );
    }
    let outputs = [
        ("output.dead_letter_topic", &o.dead_letter_topic),
        ("output.catch_all_topic", &o.catch_all_topic),
    ]
    .into_iter()
    .chain(
        o.topic_overrides
            .values()
            .map(|t| ("output.topic_overrides value", t)),
    );
    for (name, t) in outputs {
        if s.ingest.topics.contains(t) {
            p.add(format!(
                "{name} {t:?} is also an ingest topic: records would loop"
            ));
        }
    }
    for t in o.topic_overrides.values() {
        if *t == o.dead_letter_topic {
            p.add(format!(
                "output.topic_overrides value {t:?} is the dead-letter topic: \
                 envelopes and raw dead letters would mix"
            ));
        }
    }
}

fn check_topic_creation(s: &Settings, p: &mut Problems) {
    let t = &s.topics;
    p.range(
        "topics.partitions",
        u64::try_from(t.partitions).unwrap_or(0),
        1..=10_000,
    );
    // Kafka's replication factor is a 16-bit number.
    if t.replication_factor != -1 && !(1..=i32::from(i16::MAX)).contains(&t.replication_factor) {
        p.add(format!(
            "topics.replication_factor must be -1 (the broker's default) or between 1 and {}",
            i16::MAX
        ));
    }
    p.range_ms(
        "topics.request_timeout_ms",
        t.request_timeout_ms,
        1_000..=600_000,
    );
    // librdkafka's own bound on a message (message.max.bytes).
    p.range(
        "normalize.max_body_bytes",
        wide(s.normalize.max_body_bytes),
        1..=1_000_000_000,
    );
}

fn check_redaction(s: &Settings, p: &mut Problems) {
    let n = &s.normalize;
    for (i, path) in n.redact.iter().enumerate() {
        if let Some(problem) = crate::core::redact::path_problem(path) {
            p.add(format!("normalize.redact[{i}] {problem}"));
        }
    }
    match n.redact_mode.as_str() {
        "remove" => {}
        "hash" if n.redact_key.is_empty() => {
            p.add("normalize.redact_key must be set when normalize.redact_mode is \"hash\"")
        }
        "hash" => {}
        _ => p.add("normalize.redact_mode must be \"remove\" or \"hash\""),
    }
}

fn check_dedup(s: &Settings, p: &mut Problems) {
    let d = &s.dedup;
    // An hour at least (a window shorter than Codat's first retries would
    // let them through); 90 days at most (memory).
    p.range_ms("dedup.window_ms", d.window_ms, HOUR_MS..=90 * 24 * HOUR_MS);
    p.range("dedup.max_ids", wide(d.max_ids), 1_000..=200_000_000);
    let changelog = s.dedup_changelog_topic();
    let o = &s.output;
    let taken = s.ingest.topics.contains(&changelog)
        || changelog == o.dead_letter_topic
        || changelog == o.catch_all_topic
        || (!o.topic_prefix.is_empty() && changelog.starts_with(&o.topic_prefix));
    if d.enabled && taken {
        p.add(
            "dedup.changelog_topic must not be an ingest or output topic, nor start with \
             output.topic_prefix",
        );
    }
}

fn check_pipeline(s: &Settings, p: &mut Problems) {
    let l = &s.pipeline;
    p.range(
        "pipeline.max_in_flight",
        wide(l.max_in_flight),
        1..=1_000_000,
    );
    p.range(
        "pipeline.max_in_flight_bytes",
        wide(l.max_in_flight_bytes),
        1_048_576..=4_294_967_296,
    );
    p.range_ms(
        "pipeline.drain_timeout_ms",
        l.drain_timeout_ms,
        1_000..=HOUR_MS,
    );
    p.range_ms(
        "pipeline.produce_retry_backoff_max_ms",
        l.produce_retry_backoff_max_ms,
        100..=600_000,
    );
    match s.consumer_property_ms("max.poll.interval.ms", 300_000) {
        Err(message) => p.add(message),
        Ok(max_poll_ms) if l.drain_timeout_ms >= max_poll_ms => p.add(format!(
            "pipeline.drain_timeout_ms ({}) must be shorter than the consumer's \
             max.poll.interval.ms ({max_poll_ms}), or the group evicts the draining member",
            l.drain_timeout_ms
        )),
        Ok(_) => {}
    }
}

fn check_http_and_metrics(s: &Settings, p: &mut Problems) {
    let h = &s.http;
    if !h.listen.is_empty() && h.listen.parse::<std::net::SocketAddr>().is_err() {
        p.add(format!(
            "http.listen must be an address like 0.0.0.0:9464 (or empty to disable), not {:?}",
            h.listen
        ));
    }
    p.range_ms(
        "http.liveness_timeout_ms",
        h.liveness_timeout_ms,
        1_000..=HOUR_MS,
    );
    let interval = s.metrics.kafka_statistics_interval_ms;
    if interval != 0 && !(1_000..=HOUR_MS).contains(&interval) {
        p.add(format!(
            "metrics.kafka_statistics_interval_ms must be 0 (off) or between 1000 and \
             {HOUR_MS} (1 s to 1 h)"
        ));
    }
}

fn check_registry(s: &Settings, p: &mut Problems) {
    let r = &s.schema_registry;
    if let Some(problem) = registry_url_problem(&r.url) {
        p.add(format!("schema_registry.url {problem}"));
    }
    if !["topic", "record"].contains(&r.subject_name_strategy.as_str()) {
        p.add(format!(
            "schema_registry.subject_name_strategy must be \"topic\" or \"record\", not {:?}",
            r.subject_name_strategy
        ));
    }
    if r.basic_auth_user.is_empty() != r.basic_auth_password.is_empty() {
        p.add("schema_registry.basic_auth_user and basic_auth_password go together");
    }
    if !r.bearer_token.is_empty() && !r.basic_auth_user.is_empty() {
        p.add("schema_registry: use basic auth or a bearer token, not both");
    }
    p.range_ms(
        "schema_registry.request_timeout_ms",
        r.request_timeout_ms,
        100..=600_000,
    );
    p.range(
        "schema_registry.max_attempts",
        u64::from(r.max_attempts),
        1..=100,
    );
}

/// What is wrong with a registry URL, if anything. The URL itself is never
/// part of the answer: it may hold credentials or a token.
fn registry_url_problem(url: &str) -> Option<&'static str> {
    if url.is_empty() {
        return None;
    }
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Some("must start with http:// or https://");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        // Credentials in the URL would show in errors and check-config.
        return Some(
            "must not hold credentials: use schema_registry.basic_auth_user and \
             basic_auth_password",
        );
    }
    if rest.contains(['?', '#']) {
        // API paths are appended to the URL, so a query could never work;
        // and a token there would show wherever the URL does.
        return Some(
            "must not hold a query string or fragment: use schema_registry.bearer_token \
             or basic auth for credentials",
        );
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !authority.ends_with(']') => (host, Some(port)),
        _ => (authority, None),
    };
    if host.is_empty() {
        return Some("must name a host");
    }
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Some("must have a numeric port after the host");
    }
    None
}

fn check_formats(s: &Settings, p: &mut Problems) {
    let o = &s.output;
    if !["auto", "confluent", "avro-single-object"].contains(&o.value_format.as_str()) {
        p.add(format!(
            "output.value_format must be \"auto\", \"confluent\" or \"avro-single-object\", not {:?}",
            o.value_format
        ));
    }
    if o.value_format == "confluent" && s.schema_registry.url.is_empty() {
        p.add(
            "output.value_format \"confluent\" needs schema_registry.url (the schema ids come from it)",
        );
    }
    if !["text", "json"].contains(&s.log.format.as_str()) {
        p.add(format!(
            "log.format must be \"text\" or \"json\", not {:?}",
            s.log.format
        ));
    }
}

/// Why `t` is not a valid Kafka topic name, if it is not.
pub(super) fn topic_problem(setting: &str, t: &str) -> Option<String> {
    let valid = !t.is_empty()
        && t.len() <= MAX_TOPIC_LEN
        && t != "."
        && t != ".."
        && t.bytes().all(is_topic_byte);
    (!valid).then(|| {
        format!(
            "{setting}: {t:?} is not a valid topic name (1-{MAX_TOPIC_LEN} characters of [A-Za-z0-9._-])"
        )
    })
}
