//! The output side of the pipeline: produces records, re-sends the ones the
//! broker refuses (with backoff, for as long as it takes), and hands
//! acknowledgements back in batches.
//!
//! librdkafka's own thread reports each delivery into a channel; the
//! pipeline drains many reports per wake-up instead of polling one future
//! per record, which kept the threads ping-ponging (a quarter of the CPU in
//! the end-to-end benchmark's profile).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::output::OutRecord;
use crate::pipeline::Health;

/// Most delivery reports taken per wake-up.
const BATCH: usize = 4096;

/// How long to wait before re-offering a record librdkafka's queue had no room for.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

/// One delivery report: the record's slot and its outcome.
type Report = (usize, KafkaResult<()>);

/// Producer callbacks: delivery reports into the channel; client errors
/// mark the brokers unreachable, so readiness drops during an outage even
/// while nothing is consumed.
pub struct OutputContext {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    reports: mpsc::UnboundedSender<Report>,
}

impl ClientContext for OutputContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            if !self.health.brokers_down.swap(true, Ordering::Relaxed) {
                warn!(%error, reason, "kafka producer error: every broker is unreachable");
            }
        } else {
            warn!(%error, reason, "kafka producer error");
        }
    }

    fn stats(&self, statistics: Statistics) {
        self.metrics.record_statistics("producer", &statistics);
    }
}

impl ProducerContext for OutputContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        };
        // The receiver is gone only when the pipeline has stopped.
        let _ = self.reports.send((slot, outcome));
    }
}

/// A record on its way, with what the pipeline gets back when it is acknowledged.
struct Pending<T> {
    record: OutRecord,
    /// Built once; taken by the first send, rebuilt for re-sends.
    headers: Option<OwnedHeaders>,
    token: T,
    backoff: Backoff,
    failing: bool,
}

/// Records in flight to the broker; `T` is what each acknowledgement returns.
pub struct Deliveries<T> {
    producer: ThreadedProducer<OutputContext>,
    reports: mpsc::UnboundedReceiver<Report>,
    pending: HashMap<usize, Pending<T>>,
    next_slot: usize,
    resend_at: BinaryHeap<Reverse<(Instant, usize)>>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    backoff_max_ms: u64,
    buf: Vec<Report>,
}

impl<T> Deliveries<T> {
    /// A producer from `config` (acks=all, idempotent: set by the caller).
    pub fn new(
        config: &rdkafka::ClientConfig,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        backoff_max_ms: u64,
    ) -> KafkaResult<Deliveries<T>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let producer = config.create_with_context(OutputContext {
            health: health.clone(),
            metrics: metrics.clone(),
            reports: tx,
        })?;
        Ok(Deliveries {
            producer,
            reports: rx,
            pending: HashMap::new(),
            next_slot: 0,
            resend_at: BinaryHeap::new(),
            health,
            metrics,
            backoff_max_ms,
            buf: Vec::with_capacity(BATCH),
        })
    }

    /// Records not yet acknowledged.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether every record was acknowledged.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Starts producing `record`; `token` comes back once it is acknowledged.
    pub fn send(&mut self, record: OutRecord, token: T) {
        let slot = self.next_slot;
        self.next_slot = self.next_slot.wrapping_add(1);
        let headers = build_headers(&record);
        self.pending.insert(
            slot,
            Pending {
                record,
                headers: Some(headers),
                token,
                backoff: Backoff::new(self.backoff_max_ms),
                failing: false,
            },
        );
        self.offer(slot);
    }

    /// Hands `slot`'s record to librdkafka, or schedules another try.
    fn offer(&mut self, slot: usize) {
        let Some(p) = self.pending.get_mut(&slot) else {
            return;
        };
        let headers = p.headers.take().unwrap_or_else(|| build_headers(&p.record));
        let mut r =
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(&p.record.topic, slot).headers(headers);
        if let Some(k) = &p.record.key {
            r = r.key(k.as_slice());
        }
        if let Some(v) = &p.record.value {
            r = r.payload(v.as_slice());
        }
        match self.producer.send(r) {
            Ok(()) => {}
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                // No room in librdkafka's queue: not a failure, try again shortly.
                self.resend_at
                    .push(Reverse((Instant::now() + QUEUE_FULL_WAIT, slot)));
            }
            Err((e, _)) => self.failed(slot, &e),
        }
    }

    /// Counts a failed attempt and schedules a re-send with backoff.
    fn failed(&mut self, slot: usize, error: &KafkaError) {
        let Some(p) = self.pending.get_mut(&slot) else {
            return;
        };
        let code = match error {
            KafkaError::MessageProduction(code) => format!("{code:?}"),
            other => other
                .rdkafka_error_code()
                .map_or_else(|| "Other".to_owned(), |c| format!("{c:?}")),
        };
        self.metrics
            .produce_errors
            .with_label_values(&[&code])
            .inc();
        self.metrics.produce_retries.inc();
        if !p.failing {
            p.failing = true;
            // One warning when producing starts failing, not one per record.
            if self.health.failing_records.fetch_add(1, Ordering::Relaxed) == 0 {
                warn!(%error, topic = %p.record.topic, "produce failed; re-sending with backoff (partitions held)");
            } else {
                debug!(%error, topic = %p.record.topic, "produce failed");
            }
        }
        let wait = p.backoff.next_delay();
        self.resend_at.push(Reverse((Instant::now() + wait, slot)));
    }

    /// Waits until records are acknowledged and appends their tokens to
    /// `acked`; re-sends due records meanwhile. Cancel-safe: nothing is
    /// lost if the future is dropped at its await point.
    pub async fn acknowledged(&mut self, acked: &mut Vec<T>) {
        loop {
            let due = self.resend_at.peek().map(|Reverse((at, _))| *at);
            let got_reports = tokio::select! {
                n = self.reports.recv_many(&mut self.buf, BATCH) => {
                    if n == 0 {
                        // Closed: only when the producer is gone; nothing more will come.
                        std::future::pending::<()>().await;
                    }
                    true
                }
                () = sleep_until_opt(due), if due.is_some() => false,
            };
            if got_reports {
                let reports = std::mem::take(&mut self.buf);
                for (slot, outcome) in &reports {
                    match outcome {
                        Ok(()) => {
                            if let Some(p) = self.pending.remove(slot) {
                                self.health.brokers_down.store(false, Ordering::Relaxed);
                                if p.failing
                                    && self.health.failing_records.fetch_sub(1, Ordering::Relaxed)
                                        == 1
                                {
                                    info!("produce recovered: every re-sent record acknowledged");
                                }
                                acked.push(p.token);
                            }
                        }
                        Err(e) => self.failed(*slot, e),
                    }
                }
                self.buf = reports;
                self.buf.clear();
            }
            let now = Instant::now();
            while let Some(Reverse((at, slot))) = self.resend_at.peek().copied() {
                if at > now {
                    break;
                }
                self.resend_at.pop();
                self.offer(slot);
            }
            if !acked.is_empty() {
                return;
            }
        }
    }

    /// Waits up to `timeout` for librdkafka to send what it holds.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.producer.flush(timeout)
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn build_headers(record: &OutRecord) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (key, value) in &record.headers {
        headers = headers.insert(Header {
            key,
            value: value.as_deref(),
        });
    }
    headers
}
