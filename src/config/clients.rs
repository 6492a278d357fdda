//! librdkafka client configurations built from the settings: the consumer,
//! the producer, `receive`'s producer, the admin client and `decode`'s
//! read-only consumer. The properties that hold the delivery guarantee are
//! set last, so pass-through properties cannot undo them.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

use crate::config::settings::{Guarantee, Settings};

/// librdkafka properties codat-stream sets itself: overriding them would
/// break the delivery guarantee or duplicate a typed setting.
pub const MANAGED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "transactional.id",
];

/// librdkafka's prefetch bound (`queued.max.messages.kbytes`), KiB: 16 MiB.
pub const PREFETCH_KBYTES: &str = "16384";

/// How long librdkafka postpones a partition's next fetch once the prefetch
/// queue is past its bound (`fetch.queue.backoff.ms`), ms. librdkafka's
/// 1000 starved the loop: it drained the full queue in half a second and
/// then waited out the rest of the second, capping every drain on the mock
/// cluster at 66,300 events/s (0.5x the floor); at 20 ms, 118,900-170,600
/// (docs/performance.md).
pub const FETCH_QUEUE_BACKOFF_MS: &str = "20";

impl Settings {
    /// librdkafka configuration of the consumer.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        // Defaults first, so pass-through properties can override them.
        // KIP-848's protocol assigns on the broker, incrementally; librdkafka
        // refuses a client-side assignor with it.
        if !self.kafka.consumer_group_protocol_is_consumer() {
            c.set("partition.assignment.strategy", "cooperative-sticky");
        }
        c.set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", &self.ingest.auto_offset_reset)
            // Bound librdkafka's prefetch queue in bytes (its default is
            // 64 MiB), so memory stays bounded however large the backlog.
            // The record-count threshold stays librdkafka's: a low one
            // (10,000 was tried) starved the consumer at a quarter of the
            // broker's pace, through the same back-off as below.
            .set("queued.max.messages.kbytes", PREFETCH_KBYTES)
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
        self.set_statistics_interval(&mut c);
        apply(&mut c, &self.kafka.common);
        apply(&mut c, &self.kafka.consumer);
        c.set("bootstrap.servers", &self.kafka.bootstrap_servers)
            .set("group.id", &self.ingest.group_id)
            // Offsets are stored only once the output is acknowledged.
            .set("enable.auto.offset.store", "false");
        if self.guarantee() == Guarantee::ExactlyOnce {
            // Offsets are committed inside each transaction, never apart;
            // and only committed transactions' records are read.
            c.set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed");
        }
        c
    }

    /// librdkafka configuration of the producer.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        // Never time a message out: the ingest topic is durable, so waiting
        // out a broker outage in librdkafka (which retries in order, keeping
        // idempotence) beats failing deliveries and re-sending them.
        c.set("linger.ms", "5")
            .set("message.timeout.ms", "0")
            .set("compression.type", "lz4");
        self.set_statistics_interval(&mut c);
        apply(&mut c, &self.kafka.common);
        apply(&mut c, &self.kafka.producer);
        c.set("bootstrap.servers", &self.kafka.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("acks", "all");
        if self.guarantee() == Guarantee::ExactlyOnce {
            let timeout = self.delivery.transaction_timeout_ms;
            // A message may not outlive its transaction.
            c.set("transactional.id", self.transactional_id())
                .set("transaction.timeout.ms", timeout.to_string())
                .set(
                    "message.timeout.ms",
                    timeout.saturating_sub(5_000).to_string(),
                );
        }
        c
    }

    /// librdkafka configuration of `receive`'s producer: acks=all,
    /// idempotent, and, as for `run`, records never time out inside
    /// librdkafka: a request not acknowledged within
    /// `receive.ack_timeout_ms` is answered 503 while its record stays
    /// queued (delivered when the broker returns: a duplicate of Codat's
    /// retry, keyed the same, which `dedup` removes). Timing it out would
    /// not spare that duplicate: a record in flight when its request is
    /// answered 503 may already be written. The queue is bounded in bytes
    /// (64 MiB, not librdkafka's 1 GiB), so an outage bounds memory: when
    /// it is full, requests are answered 503 at their deadline.
    pub fn receive_producer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        let largest = self.receive.max_body_bytes + self.receive.max_header_bytes + 4096;
        c.set("message.max.bytes", largest.max(1_000_000).to_string())
            .set("queue.buffering.max.kbytes", "65536")
            // The partition Kafka's Java clients pick for the same key, so
            // a receiver and any Java producer of the ingest topic agree.
            .set("partitioner", "murmur2_random");
        self.set_statistics_interval(&mut c);
        apply(&mut c, &self.kafka.common);
        apply(&mut c, &self.kafka.producer);
        c.set("bootstrap.servers", &self.kafka.bootstrap_servers)
            .set("message.timeout.ms", "0")
            .set("enable.idempotence", "true")
            .set("acks", "all");
        c
    }

    /// librdkafka configuration of a read-only consumer (for `decode`): its
    /// own group, never committing, from the earliest offset.
    pub fn inspect_consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        apply(&mut c, &self.kafka.common);
        apply(&mut c, &self.kafka.consumer);
        c.set("bootstrap.servers", &self.kafka.bootstrap_servers)
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        c
    }

    /// librdkafka configuration of the admin client.
    pub fn admin_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        apply(&mut c, &self.kafka.common);
        c.set("bootstrap.servers", &self.kafka.bootstrap_servers);
        c
    }

    fn set_statistics_interval(&self, c: &mut ClientConfig) {
        c.set(
            "statistics.interval.ms",
            self.metrics.kafka_statistics_interval_ms.to_string(),
        );
    }

    /// The producer's `transactional.id` in exactly-once mode.
    pub fn transactional_id(&self) -> String {
        if !self.delivery.transactional_id.is_empty() {
            return self.delivery.transactional_id.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .and_then(|h| host_name(h.as_bytes()))
            .or_else(|| read_prefix("/etc/hostname", 256).and_then(|h| host_name(&h)))
            .unwrap_or_else(|| "codat-stream".to_owned());
        format!("{}-{host}", self.ingest.group_id)
    }
}

fn apply(c: &mut ClientConfig, props: &BTreeMap<String, String>) {
    for (k, v) in props {
        c.set(k, v);
    }
}

/// A host name fit for a transactional id: trimmed, at most 64 printable
/// ASCII characters; `None` if empty or anything else (the fallback is
/// used then, never a mangled name).
fn host_name(raw: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(raw).ok()?.trim();
    let fits = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic());
    fits.then(|| name.to_owned())
}

/// The first `max` bytes of a file, if it can be read.
fn read_prefix(path: &str, max: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(max)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_name_for_the_transactional_id_is_bounded_and_printable() {
        assert_eq!(super::host_name(b" web-7\n").as_deref(), Some("web-7"));
        assert_eq!(super::host_name(b""), None);
        assert_eq!(super::host_name(b"a b"), None);
        assert_eq!(super::host_name(&[0xff, 0xfe]), None);
        assert_eq!(super::host_name("x".repeat(65).as_bytes()), None);
    }

    #[test]
    fn managed_properties_cannot_be_overridden_but_others_can() {
        let mut s = Settings::default();
        s.kafka.producer.insert("linger.ms".into(), "50".into());
        s.kafka
            .consumer
            .insert("fetch.max.bytes".into(), "104857600".into());
        s.validate().unwrap();
        assert_eq!(s.producer_config().get("linger.ms"), Some("50"));
        assert_eq!(s.producer_config().get("acks"), Some("all"));
        assert_eq!(s.producer_config().get("enable.idempotence"), Some("true"));
        assert_eq!(
            s.consumer_config().get("fetch.max.bytes"),
            Some("104857600")
        );
    }

    #[test]
    fn the_consumer_bounds_its_prefetch_and_backs_off_briefly_unless_told_otherwise() {
        let mut s = Settings::default();
        let c = s.consumer_config();
        assert_eq!(c.get("queued.max.messages.kbytes"), Some(PREFETCH_KBYTES));
        assert_eq!(
            c.get("fetch.queue.backoff.ms"),
            Some(FETCH_QUEUE_BACKOFF_MS)
        );
        s.kafka
            .consumer
            .insert("fetch.queue.backoff.ms".into(), "1000".into());
        assert_eq!(
            s.consumer_config().get("fetch.queue.backoff.ms"),
            Some("1000")
        );
    }

    #[test]
    fn the_receive_producer_acknowledges_with_all_replicas_and_never_times_records_out() {
        let s = Settings::default();
        let c = s.receive_producer_config();
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("message.timeout.ms"), Some("0"));
        let max: usize = c.get("message.max.bytes").unwrap().parse().unwrap();
        assert!(max >= s.receive.max_body_bytes + s.receive.max_header_bytes);
    }
}
