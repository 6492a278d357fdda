//! Validation of [`Settings`]: ranges and cross-field rules. Every problem
//! is reported at once, one line each, naming the setting, so a deployment
//! is fixed in one round; a secret's value is never part of a message.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use crate::config::ConfigError;
use crate::config::clients::MANAGED_PROPERTIES;
use crate::config::secrets::SecretRef;
use crate::config::settings::{MAX_TOPIC_LEN, MAX_TOPIC_PREFIX_LEN, Settings};
use crate::core::event_type;
use crate::core::signature::{Credentials, SigningKey};

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
        self.validate_with(Vec::new())
    }

    /// Like [`Settings::validate`], reporting `earlier` problems (secrets
    /// that could not be read) with the rest.
    pub(super) fn validate_with(&self, earlier: Vec<String>) -> Result<(), ConfigError> {
        let mut p = Problems(earlier);
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
        check_signatures(self, &mut p);
        check_receive(self, &mut p);
        check_delivery(self, &mut p);
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
    check_group_protocol(s, p);
}

/// Consumer properties librdkafka refuses under KIP-848's protocol: the
/// broker decides them (session, heartbeat) or assigns itself.
const CLASSIC_ONLY: &[&str] = &[
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "partition.assignment.strategy",
    "group.protocol.type",
];

/// `group.protocol` is `classic` or `consumer`; with `consumer`, the
/// classic protocol's client-side settings are refused by name here, not
/// by librdkafka when the consumer is built.
fn check_group_protocol(s: &Settings, p: &mut Problems) {
    for (section, props) in [("consumer", &s.kafka.consumer), ("common", &s.kafka.common)] {
        if props
            .get("group.protocol")
            .is_some_and(|v| !["classic", "consumer"].contains(&v.trim()))
        {
            p.add(format!(
                "kafka.{section}.\"group.protocol\" must be \"classic\" or \"consumer\""
            ));
        }
    }
    if !s.kafka.consumer_group_protocol_is_consumer() {
        return;
    }
    for (section, props) in [("consumer", &s.kafka.consumer), ("common", &s.kafka.common)] {
        for key in props.keys().filter(|k| CLASSIC_ONLY.contains(&k.as_str())) {
            p.add(format!(
                "kafka.{section}.\"{key}\" is not supported with group.protocol = \"consumer\" \
                 (the broker's group.consumer.* settings decide it)"
            ));
        }
    }
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

fn check_delivery(s: &Settings, p: &mut Problems) {
    let d = &s.delivery;
    match d.guarantee.as_str() {
        "at-least-once" | "exactly-once" => {}
        _ => p.add("delivery.guarantee must be \"at-least-once\" or \"exactly-once\""),
    }
    p.range(
        "delivery.transaction_max_records",
        wide(d.transaction_max_records),
        1..=1_000_000,
    );
    p.range_ms(
        "delivery.transaction_max_ms",
        d.transaction_max_ms,
        10..=60_000,
    );
    p.range_ms(
        "delivery.transaction_timeout_ms",
        d.transaction_timeout_ms,
        10_000..=900_000,
    );
    if d.transaction_max_ms.saturating_mul(2) > d.transaction_timeout_ms {
        p.add(
            "delivery.transaction_max_ms must be at most half of delivery.transaction_timeout_ms",
        );
    }
    let id = &d.transactional_id;
    // Kafka takes any string; a readable bounded one keeps logs and the
    // coordinator's state sane. The value is not secret, but not echoed.
    if id.chars().count() > 249 || id.chars().any(|c| !c.is_ascii_graphic()) {
        p.add(
            "delivery.transactional_id must be at most 249 printable ASCII characters, no spaces",
        );
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

/// Each resolved secret must be a `whsec_` secret; an unresolved one was
/// reported already.
fn check_signing_secrets(setting: &str, secrets: &[SecretRef], p: &mut Problems) {
    for (i, r) in secrets.iter().enumerate() {
        if !r.value().is_empty()
            && let Err(e) = SigningKey::parse(r.value().expose())
        {
            p.add(format!("{setting}[{i}] {e}"));
        }
    }
}

fn check_signatures(s: &Settings, p: &mut Problems) {
    let n = &s.normalize;
    check_signing_secrets("normalize.signature_secrets", &n.signature_secrets, p);
    if n.verify_signatures && n.signature_secrets.is_empty() {
        p.add(
            "normalize.signature_secrets must list a secret when normalize.verify_signatures is on",
        );
    }
    p.range_ms(
        "normalize.signature_tolerance_ms",
        n.signature_tolerance_ms,
        1_000..=7 * 24 * HOUR_MS,
    );
}

/// Paths a webhook endpoint may not take.
fn path_problem(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        Some("must start with /")
    } else if path.len() > 200 {
        Some("must be at most 200 characters")
    } else if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-~".contains(&b))
    {
        Some("must be made of [A-Za-z0-9/._~-] (no query string)")
    } else {
        None
    }
}

fn check_receive(s: &Settings, p: &mut Problems) {
    let r = &s.receive;
    if r.listen.parse::<std::net::SocketAddr>().is_err() {
        p.add(format!(
            "receive.listen must be an address like 0.0.0.0:8080, not {:?}",
            r.listen
        ));
    }
    if !r.topic.is_empty() {
        p.0.extend(topic_problem("receive.topic", &r.topic));
    }
    p.range(
        "receive.max_body_bytes",
        wide(r.max_body_bytes),
        1_024..=100 * 1_048_576,
    );
    p.range(
        "receive.max_header_bytes",
        wide(r.max_header_bytes),
        1_024..=1_048_576,
    );
    p.range("receive.max_headers", wide(r.max_headers), 8..=1_000);
    p.range_ms(
        "receive.header_timeout_ms",
        r.header_timeout_ms,
        100..=60_000,
    );
    p.range_ms("receive.body_timeout_ms", r.body_timeout_ms, 100..=60_000);
    // Codat waits 15 s for an answer: an acknowledgement later than that
    // would be answered to nobody.
    p.range_ms("receive.ack_timeout_ms", r.ack_timeout_ms, 100..=14_000);
    p.range_ms(
        "receive.timestamp_tolerance_ms",
        r.timestamp_tolerance_ms,
        1_000..=HOUR_MS,
    );
    p.range(
        "receive.max_connections",
        wide(r.max_connections),
        16..=100_000,
    );
    p.range("receive.max_in_flight", wide(r.max_in_flight), 1..=100_000);
    p.range_ms(
        "receive.drain_timeout_ms",
        r.drain_timeout_ms,
        1_000..=HOUR_MS,
    );
    let mut paths = BTreeSet::new();
    for (name, e) in &r.endpoints {
        let at = format!("receive.endpoints.{name}");
        if let Some(problem) = path_problem(&e.path) {
            p.add(format!("{at}.path {problem}"));
        } else if !paths.insert(e.path.as_str()) {
            p.add(format!(
                "{at}.path {:?} is used by another endpoint",
                e.path
            ));
        }
        let methods = usize::from(!e.secrets.is_empty())
            + usize::from(!e.authorization.is_empty())
            + usize::from(e.allow_unauthenticated);
        match methods {
            1 => {}
            0 => p.add(format!(
                "{at} must set secrets (Standard Webhooks), authorization (legacy) or, to \
                 accept anyone, allow_unauthenticated = true"
            )),
            _ => p.add(format!(
                "{at}: set one of secrets, authorization and allow_unauthenticated"
            )),
        }
        check_signing_secrets(&format!("{at}.secrets"), &e.secrets, p);
        for (i, v) in e.authorization.iter().enumerate() {
            if !v.value().is_empty()
                && let Err(e) = Credentials::new(&[v.value().expose()])
            {
                p.add(format!("{at}.authorization[{i}] {e}"));
            }
        }
    }
    let fits = r.max_body_bytes + r.max_header_bytes;
    let configured = [&s.kafka.producer, &s.kafka.common]
        .iter()
        .find_map(|props| props.get("message.max.bytes"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    if !r.endpoints.is_empty()
        && let Some(max) = configured
        && max < fits
    {
        p.add(format!(
            "kafka.producer.\"message.max.bytes\" ({max}) must hold receive.max_body_bytes \
             plus receive.max_header_bytes ({fits})"
        ));
    }
}

impl Settings {
    /// A consumer property in ms; the message never holds the value.
    pub(super) fn consumer_property_ms(&self, key: &str, default: u64) -> Result<u64, String> {
        match self.kafka.consumer.get(key).or(self.kafka.common.get(key)) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("kafka.consumer.\"{key}\" must be a whole number of ms")),
        }
    }
}

fn is_topic_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'
}

/// Checks a Kafka topic name.
pub fn check_topic(setting: &str, t: &str) -> Result<(), ConfigError> {
    match topic_problem(setting, t) {
        Some(problem) => Err(ConfigError::Invalid(vec![problem])),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
