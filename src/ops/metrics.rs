//! Prometheus metrics: every counter, gauge and histogram the connector
//! exports, under one prefix (`codat_stream_`), with bounded labels.
//!
//! Label values come only from bounded sets: configured ingest topics and
//! their partitions, reason codes, shapes, librdkafka error codes, broker
//! names, and event types that the router gave a topic of their own (capped
//! by `output.max_topics`; types past the cap are counted as `_unrouted`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use rdkafka::statistics::Statistics;

use crate::ops::labels::{CatchAllReason, RebalanceKind, ReceiveOutcome};

/// The prefix of every metric name.
pub const PREFIX: &str = "codat_stream";

/// The `event_type` label of envelopes routed to the catch-all topic.
pub const UNROUTED_TYPE_LABEL: &str = "_unrouted";

/// Errors building the metric registry (a programming error: duplicate names).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Every metric of one connector process.
pub struct Metrics {
    registry: Registry,
    /// Records consumed, by ingest topic.
    pub records_consumed: IntCounterVec,
    /// Bytes of record values consumed, by ingest topic.
    pub consumed_bytes: IntCounterVec,
    /// Envelopes acknowledged by the broker, by event type and shape.
    pub envelopes_produced: IntCounterVec,
    /// Bodies the normaliser rejected, by reason code.
    pub parse_failures: IntCounterVec,
    /// Dead-letter records acknowledged by the broker, by reason code.
    pub dead_lettered: IntCounterVec,
    /// Envelopes routed to the catch-all topic, by cause.
    pub catch_all_routed: IntCounterVec,
    /// Copies of events already produced within the window, by shape.
    pub duplicates_suppressed: IntCounterVec,
    /// Exactly-once transactions, by outcome (committed, aborted).
    pub transactions: IntCounterVec,
    /// Input records covered by committed transactions.
    pub transaction_records: IntCounter,
    /// Ids in the de-duplication windows.
    pub dedup_ids: IntGauge,
    /// New ids not remembered because the windows were full.
    pub dedup_not_remembered: IntCounter,
    /// Ingest records without a key while de-duplication is on.
    pub dedup_unkeyed_records: IntCounter,
    /// Time to restore assigned partitions' windows from the changelog.
    pub dedup_restore_seconds: Histogram,
    /// Failed produce attempts, by librdkafka error.
    pub produce_errors: IntCounterVec,
    /// Records re-sent after a failed produce.
    pub produce_retries: IntCounter,
    /// Records consumed and not yet acknowledged.
    pub in_flight: IntGauge,
    /// Seconds from consuming a record to the broker acknowledging its output.
    pub processing_latency: Histogram,
    /// Seconds from an event's `time` to its envelope being acknowledged.
    pub event_age: Histogram,
    /// Messages the group is behind the partition's end, per assigned partition.
    pub consumer_lag: IntGaugeVec,
    lag_labels: Mutex<HashSet<(String, String)>>,
    /// Offset commits the broker accepted.
    pub offset_commits: IntCounter,
    /// Offset commits that failed.
    pub offset_commit_failures: IntCounter,
    /// Rebalance callbacks, by kind (assign, revoke, error).
    pub rebalances: IntCounterVec,
    /// Partitions assigned to this member.
    pub assigned_partitions: IntGauge,
    /// 1 when /readyz would answer 200.
    pub ready: IntGauge,
    /// Broker round-trip time (librdkafka's rolling window), by client and quantile.
    pub broker_rtt: GaugeVec,
    /// Broker request errors and timeouts seen by librdkafka, by client and kind.
    pub broker_request_errors: IntCounterVec,
    error_totals: Mutex<HashMap<(String, String, &'static str), u64>>,
    /// librdkafka queue sizes, by client and queue.
    pub kafka_queue: IntGaugeVec,
    /// Bytes of records librdkafka holds prefetched for the consumer.
    pub consumer_prefetch_bytes: IntGauge,
    /// Schema registry requests that failed (after the client's retries).
    pub schema_registry_errors: IntCounter,
    /// `receive`: webhook requests answered, by outcome.
    pub receive_requests: IntCounterVec,
    /// `receive`: deliveries refused as not authentic, by reason.
    pub receive_auth_failures: IntCounterVec,
    /// `receive`: seconds from a request's head to its answer.
    pub receive_request_duration: Histogram,
    /// `receive`: body bytes acknowledged by the broker.
    pub receive_body_bytes: IntCounter,
    /// `receive`: requests being read, verified or produced.
    pub receive_in_flight: IntGauge,
    /// `receive`: open webhook connections.
    pub receive_connections: IntGauge,
    /// `receive`: connections closed to make room for newer ones.
    pub receive_connections_evicted: IntCounter,
    /// Seconds since the Unix epoch when the process started.
    pub start_time: Gauge,
    /// Always 1, labelled with the version.
    _build: IntGaugeVec,
}

fn name(n: &str) -> String {
    format!("{PREFIX}_{n}")
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        // CPU seconds, resident memory, open files: process_* by convention.
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let counter_vec = |n: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name(n), help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let counter = |n: &str, help: &str| {
            let c = IntCounter::with_opts(Opts::new(name(n), help))?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let gauge = |n: &str, help: &str| {
            let g = IntGauge::with_opts(Opts::new(name(n), help))?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let gauge_vec = |n: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name(n), help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let histogram = |n: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name(n), help).buckets(buckets))?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };

        let broker_rtt = GaugeVec::new(
            Opts::new(
                name("kafka_broker_rtt_seconds"),
                "Broker round-trip time over librdkafka's last statistics window.",
            ),
            &["client", "broker", "quantile"],
        )?;
        registry.register(Box::new(broker_rtt.clone()))?;
        let start_time = Gauge::with_opts(Opts::new(
            name("start_time_seconds"),
            "Start time of the process, seconds since the Unix epoch.",
        ))?;
        registry.register(Box::new(start_time.clone()))?;
        let build = IntGaugeVec::new(
            Opts::new(name("build_info"), "Always 1; the version as a label."),
            &["version"],
        )?;
        registry.register(Box::new(build.clone()))?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);

        // Webhook processing is sub-millisecond; broker acknowledgements take
        // milliseconds to seconds; an outage holds records for minutes.
        let latency_buckets = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0, 300.0,
        ];
        // Codat retries deliveries for hours; platforms replay days-old backlogs.
        let age_buckets = vec![
            0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0, 604800.0,
        ];

        let m = Metrics {
            records_consumed: counter_vec(
                "records_consumed_total",
                "Records consumed from the ingest topics.",
                &["topic"],
            )?,
            consumed_bytes: counter_vec(
                "consumed_bytes_total",
                "Bytes of record values consumed from the ingest topics.",
                &["topic"],
            )?,
            envelopes_produced: counter_vec(
                "envelopes_produced_total",
                "Envelopes acknowledged by the broker, by event type (\"_unrouted\" past the \
                 routing cap) and webhook shape.",
                &["event_type", "shape"],
            )?,
            parse_failures: counter_vec(
                "parse_failures_total",
                "Bodies that could not be normalised, by reason code.",
                &["reason"],
            )?,
            dead_lettered: counter_vec(
                "dead_lettered_total",
                "Records acknowledged on the dead-letter topic, by reason code.",
                &["reason"],
            )?,
            catch_all_routed: counter_vec(
                "catch_all_routed_total",
                "Envelopes routed to the catch-all topic, by cause (topic_cap, topic_unavailable, reserved_topic).",
                &["cause"],
            )?,
            duplicates_suppressed: counter_vec(
                "duplicates_suppressed_total",
                "Copies of events already produced within the de-duplication window, not produced again, by the suppressed copy's shape.",
                &["shape"],
            )?,
            transactions: counter_vec(
                "transactions_total",
                "Exactly-once transactions, by outcome (committed, aborted).",
                &["outcome"],
            )?,
            transaction_records: counter(
                "transaction_records_total",
                "Input records whose outputs and offsets were committed in a transaction (exactly-once).",
            )?,
            dedup_ids: gauge("dedup_ids", "Event ids in the de-duplication windows.")?,
            dedup_not_remembered: counter(
                "dedup_not_remembered_total",
                "New event ids produced but not remembered: the windows were full (dedup.max_ids).",
            )?,
            dedup_unkeyed_records: counter(
                "dedup_unkeyed_records_total",
                "Ingest records without a key while de-duplication is on (copies may land on other partitions).",
            )?,
            dedup_restore_seconds: histogram(
                "dedup_restore_seconds",
                "Time to restore newly assigned partitions' de-duplication windows from the changelog.",
                vec![0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 120.0],
            )?,
            produce_errors: counter_vec(
                "produce_errors_total",
                "Failed produce attempts, by librdkafka error.",
                &["error"],
            )?,
            produce_retries: counter(
                "produce_retries_total",
                "Records re-sent after a failed produce attempt.",
            )?,
            in_flight: gauge(
                "in_flight_records",
                "Records consumed whose output is not yet acknowledged.",
            )?,
            processing_latency: histogram(
                "processing_latency_seconds",
                "Seconds from consuming a record to the broker acknowledging its output.",
                latency_buckets,
            )?,
            event_age: histogram(
                "event_age_seconds",
                "Seconds from the event's time to its envelope being acknowledged.",
                age_buckets,
            )?,
            consumer_lag: gauge_vec(
                "consumer_lag",
                "Records between the group's position and the end of each assigned partition.",
                &["topic", "partition"],
            )?,
            lag_labels: Mutex::new(HashSet::new()),
            offset_commits: counter(
                "offset_commits_total",
                "Offset commits the broker accepted.",
            )?,
            offset_commit_failures: counter(
                "offset_commit_failures_total",
                "Offset commits that failed.",
            )?,
            rebalances: counter_vec(
                "rebalances_total",
                "Rebalance callbacks, by kind (assign, revoke, error).",
                &["kind"],
            )?,
            assigned_partitions: gauge(
                "assigned_partitions",
                "Ingest partitions assigned to this member.",
            )?,
            ready: gauge("ready", "1 when /readyz answers 200, else 0.")?,
            broker_rtt,
            broker_request_errors: counter_vec(
                "kafka_broker_request_errors_total",
                "Request errors seen by librdkafka, by client and kind (tx, rx, timeout).",
                &["client", "broker", "kind"],
            )?,
            error_totals: Mutex::new(HashMap::new()),
            kafka_queue: gauge_vec(
                "kafka_queue_messages",
                "librdkafka queue sizes, by client and queue (producer, reply, fetch).",
                &["client", "queue"],
            )?,
            consumer_prefetch_bytes: gauge(
                "consumer_prefetch_bytes",
                "Bytes of records librdkafka holds prefetched for the consumer, not yet \
                 consumed (bounded by queued.max.messages.kbytes plus one fetch).",
            )?,
            schema_registry_errors: counter(
                "schema_registry_errors_total",
                "Schema registry lookups that failed after retries (producing pauses meanwhile).",
            )?,
            receive_requests: counter_vec(
                "receive_requests_total",
                "Webhook requests answered by `receive`, by outcome (accepted is the only 2xx).",
                &["outcome"],
            )?,
            receive_auth_failures: counter_vec(
                "receive_auth_failures_total",
                "Webhook deliveries refused 401 as not authentic, by reason.",
                &["reason"],
            )?,
            receive_request_duration: histogram(
                "receive_request_duration_seconds",
                "Seconds from a webhook request's head to its answer (the broker's acknowledgement included).",
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    15.0,
                ],
            )?,
            receive_body_bytes: counter(
                "receive_body_bytes_total",
                "Bytes of webhook bodies acknowledged by the broker.",
            )?,
            receive_in_flight: gauge(
                "receive_in_flight_requests",
                "Webhook requests being read, verified or produced.",
            )?,
            receive_connections: gauge(
                "receive_connections",
                "Open connections on the webhook listener.",
            )?,
            receive_connections_evicted: counter(
                "receive_connections_evicted_total",
                "Webhook connections closed (between requests) to make room for newer ones.",
            )?,
            start_time,
            _build: build,
            registry,
        };
        m.start_time
            .set(crate::ops::health::now_ms() as f64 / 1000.0);
        // Series that exist from the start at 0, so rate() and alerts see
        // them before the first failure rather than an absent series.
        for reason in crate::core::rejection::RejectReason::ALL {
            m.parse_failures.with_label_values(&[reason.code()]);
            m.dead_lettered.with_label_values(&[reason.code()]);
        }
        for cause in CatchAllReason::ALL.map(CatchAllReason::label) {
            m.catch_all_routed.with_label_values(&[cause]);
        }
        for outcome in ["committed", "aborted"] {
            m.transactions.with_label_values(&[outcome]);
        }
        for kind in RebalanceKind::ALL.map(RebalanceKind::label) {
            m.rebalances.with_label_values(&[kind]);
        }
        Ok(m)
    }

    /// Starts `receive`'s labelled series at 0 (only `receive` exports them).
    pub fn init_receive(&self) {
        for outcome in ReceiveOutcome::ALL {
            self.receive_requests.with_label_values(&[outcome.label()]);
        }
        for reason in crate::core::signature::SignatureFailure::ALL {
            self.receive_auth_failures
                .with_label_values(&[reason.label()]);
        }
    }

    /// Starts the per-topic series of the ingest topics at 0.
    pub fn init_ingest_topics(&self, topics: &[String]) {
        for t in topics {
            self.records_consumed.with_label_values(&[t.as_str()]);
            self.consumed_bytes.with_label_values(&[t.as_str()]);
        }
    }

    /// The registry, for tests and custom exporters.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec fails only on invalid metric names (fixed above).
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Folds one librdkafka statistics report into the metrics.
    /// `client` is "consumer" or "producer".
    pub fn record_statistics(&self, client: &'static str, stats: &Statistics) {
        for broker in stats.brokers.values() {
            // Bootstrap entries (nodeid -1) duplicate the real brokers.
            if broker.nodeid >= 0 {
                self.record_broker(client, broker);
            }
        }
        self.kafka_queue
            .with_label_values(&[client, "reply"])
            .set(stats.replyq);
        if client == "producer" {
            self.kafka_queue
                .with_label_values(&[client, "producer"])
                .set(i64::try_from(stats.msg_cnt).unwrap_or(i64::MAX));
        } else {
            self.record_consumer_partitions(stats);
        }
    }

    fn record_broker(&self, client: &str, broker: &rdkafka::statistics::Broker) {
        let broker_name = broker.name.as_str();
        if let Some(rtt) = &broker.rtt
            && rtt.cnt > 0
        {
            self.broker_rtt
                .with_label_values(&[client, broker_name, "avg"])
                .set(rtt.avg as f64 / 1e6);
            self.broker_rtt
                .with_label_values(&[client, broker_name, "p99"])
                .set(rtt.p99 as f64 / 1e6);
        }
        for (kind, total) in [
            ("tx", broker.txerrs),
            ("rx", broker.rxerrs),
            ("timeout", broker.req_timeouts),
        ] {
            self.advance_error_total(client, broker_name, kind, total);
        }
    }

    /// The consumer's fetch queue, prefetched bytes and per-partition lag.
    fn record_consumer_partitions(&self, stats: &Statistics) {
        // The consumer forwards every assigned partition's fetch queue to its
        // one consumer queue, and librdkafka reports each partition's
        // `fetchq_size` through that forward: every partition repeats the
        // shared queue's bytes (4 partitions all reporting 5,210,778 at
        // once). So the largest, not the sum, which would count the queue
        // once per partition. (That queue is also what
        // `queued.max.messages.kbytes` bounds.) The same holds for the
        // message count, `fetchq_cnt`.
        let (mut fetchq, mut prefetch_bytes) = (0i64, 0i64);
        let mut current = HashSet::new();
        for topic in stats.topics.values() {
            // -1 is librdkafka's internal unassigned partition.
            for p in topic.partitions.values().filter(|p| p.partition >= 0) {
                fetchq = fetchq.max(p.fetchq_cnt);
                prefetch_bytes =
                    prefetch_bytes.max(i64::try_from(p.fetchq_size).unwrap_or(i64::MAX));
                if p.consumer_lag >= 0 {
                    let labels = (topic.topic.clone(), p.partition.to_string());
                    self.consumer_lag
                        .with_label_values(&[labels.0.as_str(), labels.1.as_str()])
                        .set(p.consumer_lag);
                    current.insert(labels);
                }
            }
        }
        self.kafka_queue
            .with_label_values(&["consumer", "fetch"])
            .set(fetchq);
        self.consumer_prefetch_bytes.set(prefetch_bytes);
        let mut known = self.lag_labels.lock().unwrap_or_else(|p| p.into_inner());
        // Partitions no longer reported (revoked) stop exporting a stale lag.
        for gone in known.difference(&current) {
            let _ = self
                .consumer_lag
                .remove_label_values(&[gone.0.as_str(), gone.1.as_str()]);
        }
        *known = current;
    }

    /// librdkafka reports running totals; Prometheus counters take increments.
    fn advance_error_total(&self, client: &str, broker: &str, kind: &'static str, total: u64) {
        let mut totals = self.error_totals.lock().unwrap_or_else(|p| p.into_inner());
        let last = totals
            .entry((client.to_owned(), broker.to_owned(), kind))
            .or_insert(0);
        let counter = self
            .broker_request_errors
            .with_label_values(&[client, broker, kind]);
        if total >= *last {
            counter.inc_by(total - *last);
        }
        // A smaller total means librdkafka re-created the broker handle; count
        // from the new base.
        *last = total;
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_the_prefix_and_counters_end_in_total() {
        let m = Metrics::new().unwrap();
        m.records_consumed.with_label_values(&["t"]).inc();
        m.produce_retries.inc();
        let text = m.render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (metric, kind) = (parts[2], parts[3]);
            assert!(
                metric.starts_with("codat_stream_") || metric.starts_with("process_"),
                "{line}"
            );
            if kind == "counter" {
                assert!(metric.ends_with("_total"), "{line}");
            }
            if kind == "histogram" {
                assert!(metric.ends_with("_seconds"), "{line}");
            }
        }
        assert!(text.contains("codat_stream_records_consumed_total{topic=\"t\"} 1"));
    }

    #[test]
    fn statistics_set_lag_and_forget_revoked_partitions() {
        let m = Metrics::new().unwrap();
        let stats = |parts: &[(i32, i64)]| -> Statistics {
            let partitions = parts
                .iter()
                .map(|&(n, lag)| {
                    let p = rdkafka::statistics::Partition {
                        partition: n,
                        fetchq_cnt: 2,
                        // Each assigned partition reports the one consumer
                        // queue's bytes; the unassigned -1 is ignored.
                        fetchq_size: if n < 0 { 1 << 40 } else { 3_000 },
                        consumer_lag: lag,
                        ..Default::default()
                    };
                    (n, p)
                })
                .collect();
            let topic = rdkafka::statistics::Topic {
                topic: "in".into(),
                partitions,
                ..Default::default()
            };
            Statistics {
                topics: [("in".to_owned(), topic)].into_iter().collect(),
                ..Default::default()
            }
        };
        m.record_statistics("consumer", &stats(&[(0, 5), (1, 7), (-1, 9)]));
        let text = m.render();
        assert!(text.contains(r#"codat_stream_consumer_lag{partition="0",topic="in"} 5"#));
        assert!(text.contains(r#"codat_stream_consumer_lag{partition="1",topic="in"} 7"#));
        assert!(
            text.contains(
                r#"codat_stream_kafka_queue_messages{client="consumer",queue="fetch"} 2"#
            )
        );
        assert!(
            text.contains("codat_stream_consumer_prefetch_bytes 3000\n"),
            "the shared queue counted once: {text}"
        );
        m.record_statistics("consumer", &stats(&[(1, 3)]));
        let text = m.render();
        assert!(!text.contains(r#"partition="0""#), "{text}");
        assert!(text.contains(r#"codat_stream_consumer_lag{partition="1",topic="in"} 3"#));
    }
}
