//! The output side of the pipeline: produces records, re-sends the ones the
//! broker refuses (with backoff, for as long as it takes), and hands
//! acknowledgements back in batches.
//!
//! A record the broker refuses for good ([`is_permanent`]: too large, not
//! allowed on that topic, invalid) is handed back as [`Outcome::Refused`]
//! instead of being re-sent forever: one such record used to hold its
//! partition for good.
//!
//! The producer is polled inline by the loop's own thread: delivery
//! reports are served by `poll` on that thread and collected in a batch,
//! with no hand-off to another thread (a `ThreadedProducer` and a channel
//! cost a context switch per wake-up, and a quarter of the CPU in the
//! end-to-end benchmark's profile before that).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::bindings as rdsys;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, DeliveryResult, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::statistics::Statistics;

use crate::backoff::Backoff;
use crate::kafka::client_errors;
use crate::kafka::fast_hash::FastMap;
use crate::kafka::out_headers::OutHeaders;
use crate::kafka::output::{OutRecord, Spare};
use crate::kafka::record_headers::{header_pairs, owned_headers_of};
use crate::ops::events::{
    ChangelogWriteFailed, Client, InternalEvent, ProduceFailed, ProduceRecovered, ProduceRefused,
    UnconfirmedInTransaction,
};
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;

/// The slot of records nothing waits for: never in `pending`, so their
/// reports find nothing to settle.
const UNTRACKED: usize = usize::MAX;

/// How long to wait before re-offering a record librdkafka's queue had no room for.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);
/// Longest sleep of a wait for reports between two non-blocking polls.
const WAIT_STEP: Duration = Duration::from_millis(1);
/// Most events one drain serves (a bound, not a limit reached in practice:
/// each event carries a batch of reports).
const MAX_POLLS_PER_DRAIN: usize = 4096;

/// One delivery report: the record's slot, its outcome, and, unless it was
/// acknowledged, a copy of what was sent: once librdkafka has taken a
/// record, its copy is the only one, and a re-send or a dead letter is
/// made from what the report hands back.
type Report = (usize, Delivered, Option<Sent>);

/// A record's key, value and headers, copied from its delivery report.
#[derive(Debug)]
struct Sent {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: OutHeaders,
}

impl Sent {
    fn of(message: &BorrowedMessage<'_>) -> Self {
        use rdkafka::Message;
        Sent {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|h| header_pairs(h).into_iter().collect())
                .unwrap_or_default(),
        }
    }
}

/// What librdkafka reported for one record.
#[derive(Debug, Clone)]
enum Delivered {
    /// Written: the broker gave it an offset.
    Acked,
    /// Reported delivered without an offset. librdkafka's idempotent
    /// producer "implicitly acks" a request that failed when a later
    /// request to the partition succeeds, assuming the broker wrote both;
    /// Kafka accepts a later sequence first on a partition new to the
    /// producer (a just-created topic, a leader change), so the failed
    /// request's records were never written (seen on Apache Kafka 4.4 with
    /// librdkafka 2.12.1; confluent-kafka-go issue 921). Persistence is
    /// unknown: re-sent, at worst a duplicate.
    Unconfirmed,
    Failed(KafkaError),
}

impl Delivered {
    /// From a report's offset (or error).
    fn of(report: Result<i64, &KafkaError>) -> Self {
        match report {
            Ok(offset) if offset >= 0 => Delivered::Acked,
            Ok(_) => Delivered::Unconfirmed,
            Err(e) => Delivered::Failed(e.clone()),
        }
    }
}

/// The `code` label of a [`Delivered::Unconfirmed`] report.
const ACK_WITHOUT_OFFSET: &str = "AckWithoutOffset";

/// The error a record [`Delivered::Unconfirmed`] is re-sent for.
struct AckWithoutOffset;

impl std::fmt::Display for AckWithoutOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "reported delivered without an offset (implicitly acknowledged after a failed \
             request): persistence unknown, re-sending",
        )
    }
}

/// Producer callbacks: delivery reports into a batch the loop takes after
/// each `poll` (contended only while a transaction call's flush, on a
/// helper thread, polls too); client errors
/// mark the brokers unreachable, so readiness drops during an outage even
/// while nothing is consumed.
pub struct OutputContext {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    reports: Mutex<Vec<Report>>,
    /// Reports received so far: tells a non-blocking poll that found one.
    received: AtomicUsize,
}

impl ClientContext for OutputContext {
    fn error(&self, error: KafkaError, reason: &str) {
        client_errors::observe(
            &self.health,
            &self.metrics,
            Client::Producer,
            &error,
            reason,
        );
    }

    fn stats(&self, statistics: Statistics) {
        self.metrics.record_statistics("producer", &statistics);
    }
}

impl ProducerContext for OutputContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        let outcome = Delivered::of(
            result
                .as_ref()
                .map(rdkafka::Message::offset)
                .map_err(|(e, _)| e),
        );
        let sent = match (&outcome, result) {
            (Delivered::Acked, _) => None,
            _ if slot == UNTRACKED => None,
            (_, Ok(message) | Err((_, message))) => Some(Sent::of(message)),
        };
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((slot, outcome, sent));
        self.received.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether the broker (or librdkafka) refuses this record for good:
/// re-sending the same bytes can never succeed, so the pipeline must send
/// something else (a dead letter, a smaller one) rather than hold the
/// partition forever. Every other error is transient: re-sent with backoff.
pub fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::InvalidTimestamp
            | RDKafkaErrorCode::UnsupportedForMessageFormat
            | RDKafkaErrorCode::InvalidArgument
            | RDKafkaErrorCode::BadMessage
            // librdkafka: the topic is not in the cluster's metadata (with
            // `topics.create = false` and no auto-creation); it fails every
            // later send to that topic at once, so re-sending cannot help.
            | RDKafkaErrorCode::UnknownTopic
    )
}

/// What became of one record.
pub enum Outcome<T> {
    /// The broker acknowledged it.
    Acked(T),
    /// The broker refused it for good ([`is_permanent`]).
    Refused(Refusal<T>),
}

/// A record refused for good, handed back so the pipeline can send
/// something else, or [`Deliveries::hold`] it when nothing else can be sent.
pub struct Refusal<T> {
    /// What the pipeline attached to the record.
    pub token: T,
    /// The record as it was sent.
    pub record: OutRecord,
    /// Why the broker refused it.
    pub code: RDKafkaErrorCode,
    retry: Retry,
    /// What the token holds, still counted if the record is held.
    token_bytes: usize,
}

impl<T> Refusal<T> {
    /// A refusal as the broker would give it, for tests of what replaces it.
    #[doc(hidden)]
    pub fn synthetic(token: T, record: OutRecord, code: RDKafkaErrorCode) -> Self {
        Refusal {
            token,
            record,
            code,
            retry: Retry {
                backoff: Backoff::new(100),
                failing: false,
            },
            token_bytes: 0,
        }
    }
}

/// Re-send state that survives a hand-back.
struct Retry {
    backoff: Backoff,
    failing: bool,
}

/// A record on its way, with what the pipeline gets back when it is acknowledged.
struct Pending<T> {
    /// The record until librdkafka takes it; then its topic alone (its
    /// bytes are back from the report if it must be sent again).
    record: OutRecord,
    /// librdkafka holds the record's only copy.
    taken: bool,
    /// Built once; taken by the first send, rebuilt for re-sends.
    headers: Option<OwnedHeaders>,
    token: T,
    retry: Retry,
    /// Bytes held for this record (its own and what its token holds).
    bytes: usize,
    /// Of those, the token's.
    token_bytes: usize,
}

/// Records in flight to the broker; `T` is what each acknowledgement returns.
pub struct Deliveries<T> {
    /// The producer's event queue (the one `poll` serves), to see whether
    /// anything is left to serve. Declared first: dropped before the
    /// producer, as librdkafka wants its queue handles gone first.
    events: MainQueue,
    producer: BaseProducer<OutputContext>,
    /// The last changelog write failed.
    changelog_failing: bool,
    /// Slots are ours, handed out in sequence: hashed fast.
    pending: FastMap<usize, Pending<T>>,
    /// The buffers of the last record librdkafka took, for the next one.
    spare: Option<Spare>,
    next_slot: usize,
    resend_at: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Refused when offered (librdkafka's own checks), reported on the next wait.
    refused_at_send: Vec<(usize, RDKafkaErrorCode)>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    backoff_max_ms: u64,
    bytes: usize,
    buf: Vec<Report>,
    /// Exactly-once: the records are in a transaction.
    transactional: bool,
    /// In a transaction, a record was reported without an offset: written
    /// or not, nobody knows, so the transaction must be aborted. A re-send
    /// would commit a second copy whenever the first had been written.
    uncertain: bool,
}

/// A handle on a client's main queue, for its length only.
pub(crate) struct MainQueue(*mut rdsys::rd_kafka_queue_t);

// SAFETY: librdkafka's queue handles may be used from any thread; this one
// is only asked its length, and destroyed once.
unsafe impl Send for MainQueue {}
unsafe impl Sync for MainQueue {}

impl MainQueue {
    pub(crate) fn of<C: ProducerContext>(producer: &BaseProducer<C>) -> MainQueue {
        // SAFETY: the client is alive; the handle is a new reference,
        // released in `drop`, and the producer outlives it (field order).
        MainQueue(unsafe { rdsys::rd_kafka_queue_get_main(producer.client().native_ptr()) })
    }

    pub(crate) fn is_empty(&self) -> bool {
        // SAFETY: a valid handle until `drop`.
        self.0.is_null() || unsafe { rdsys::rd_kafka_queue_length(self.0) } == 0
    }
}

impl Drop for MainQueue {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: our own reference, released once.
            unsafe { rdsys::rd_kafka_queue_destroy(self.0) }
        }
    }
}

impl<T> Deliveries<T> {
    /// A producer from `config` (acks=all, idempotent: set by the caller).
    pub fn new(
        config: &rdkafka::ClientConfig,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        backoff_max_ms: u64,
    ) -> KafkaResult<Deliveries<T>> {
        let producer = config.create_with_context(OutputContext {
            health: health.clone(),
            metrics: metrics.clone(),
            reports: Mutex::new(Vec::new()),
            received: AtomicUsize::new(0),
        })?;
        Ok(Deliveries {
            events: MainQueue::of(&producer),
            producer,
            changelog_failing: false,
            pending: FastMap::default(),
            spare: None,
            next_slot: 0,
            resend_at: BinaryHeap::new(),
            refused_at_send: Vec::new(),
            health,
            metrics,
            backoff_max_ms,
            bytes: 0,
            buf: Vec::new(),
            transactional: false,
            uncertain: false,
        })
    }

    /// Exactly-once: a record reported without an offset is not re-sent
    /// but makes [`Deliveries::uncertain`] true, for the pipeline to abort
    /// the transaction (the rewind sends it again in the next one).
    pub fn transactional(mut self) -> Self {
        self.transactional = true;
        self
    }

    /// In a transaction, whether a record's persistence is unknown: the
    /// transaction cannot be committed (it might hold a record twice, or
    /// miss one). Cleared by [`Deliveries::discard_all`].
    pub fn uncertain(&self) -> bool {
        self.uncertain
    }

    /// Records not yet acknowledged.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Bytes held by records not yet acknowledged.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether every record was acknowledged.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Starts producing `record`; `token` comes back once it is acknowledged
    /// or refused. `token_bytes` is what the token holds, for the memory bound.
    pub fn send(&mut self, record: OutRecord, token: T, token_bytes: usize) {
        let retry = Retry {
            backoff: Backoff::new(self.backoff_max_ms),
            failing: false,
        };
        let slot = self.insert(record, token, token_bytes, retry);
        self.offer(slot);
    }

    /// Keeps re-sending a refused record with backoff, its partition held and
    /// readiness down: for a record nothing smaller can replace (the
    /// dead-letter topic itself refusing is a configuration problem).
    pub fn hold(&mut self, refusal: Refusal<T>) {
        let Refusal {
            token,
            record,
            code,
            retry,
            token_bytes,
        } = refusal;
        let slot = self.insert(record, token, token_bytes, retry);
        let error = KafkaError::MessageProduction(code);
        self.failed(slot, &error, &error_label(&error));
    }

    fn insert(&mut self, record: OutRecord, token: T, token_bytes: usize, retry: Retry) -> usize {
        let slot = self.next_slot;
        // Wraps before UNTRACKED: a tracked slot is never taken for it.
        self.next_slot = (self.next_slot + 1) % UNTRACKED;
        let bytes = record.wire_size() + token_bytes;
        self.bytes += bytes;
        let headers = owned_headers_of(record.headers.iter());
        let pending = Pending {
            record,
            taken: false,
            headers: Some(headers),
            token,
            retry,
            bytes,
            token_bytes,
        };
        self.pending.insert(slot, pending);
        slot
    }

    /// Hands `slot`'s record to librdkafka, or schedules another try.
    fn offer(&mut self, slot: usize) {
        let Some(p) = self.pending.get_mut(&slot) else {
            return;
        };
        let headers = p
            .headers
            .take()
            .unwrap_or_else(|| owned_headers_of(p.record.headers.iter()));
        let mut r =
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(&p.record.topic, slot).headers(headers);
        if let Some(k) = &p.record.key {
            r = r.key(k.as_slice());
        }
        if let Some(v) = &p.record.value {
            r = r.payload(v.as_slice());
        }
        // The record handed back on a refusal borrows ours: dropped here.
        match self.producer.send(r).map_err(|(e, _)| e) {
            Ok(()) => {
                // librdkafka copied it: its buffers go to the next record.
                let emptied = OutRecord {
                    topic: p.record.topic.clone(),
                    key: None,
                    value: None,
                    headers: OutHeaders::default(),
                };
                p.taken = true;
                self.spare = Spare::of(std::mem::replace(&mut p.record, emptied));
            }
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                // No room in librdkafka's queue: not a failure, try again shortly.
                self.resend_at
                    .push(Reverse((Instant::now() + QUEUE_FULL_WAIT, slot)));
            }
            Err(KafkaError::MessageProduction(code)) if is_permanent(code) => {
                self.refused_at_send.push((slot, code));
            }
            Err(e) => self.failed(slot, &e, &error_label(&e)),
        }
    }

    /// Counts a failed attempt and schedules a re-send with backoff.
    fn failed<E: std::fmt::Display>(&mut self, slot: usize, error: &E, code: &str) {
        let Some(p) = self.pending.get_mut(&slot) else {
            return;
        };
        let first_failure = !std::mem::replace(&mut p.retry.failing, true);
        let first_record_failing =
            first_failure && self.health.failing_records.fetch_add(1, Ordering::Relaxed) == 0;
        ProduceFailed {
            error,
            code,
            topic: &p.record.topic,
            first_failure,
            first_record_failing,
        }
        .emit(&self.metrics);
        let wait = p.retry.backoff.next_delay();
        self.resend_at.push(Reverse((Instant::now() + wait, slot)));
    }

    /// Takes `slot` out of flight, settling the failing count.
    fn remove(&mut self, slot: usize) -> Option<Pending<T>> {
        let p = self.pending.remove(&slot)?;
        self.bytes -= p.bytes;
        if p.retry.failing && self.health.failing_records.fetch_sub(1, Ordering::Relaxed) == 1 {
            ProduceRecovered.emit(&self.metrics);
        }
        Some(p)
    }

    fn refused(&mut self, slot: usize, code: RDKafkaErrorCode) -> Option<Outcome<T>> {
        ProduceRefused {
            code: &format!("{code:?}"),
        }
        .emit(&self.metrics);
        let mut p = self.remove(slot)?;
        // A hold re-counts it as failing; until then it is not.
        p.retry.failing = false;
        Some(Outcome::Refused(Refusal {
            token: p.token,
            record: p.record,
            code,
            retry: p.retry,
            token_bytes: p.token_bytes,
        }))
    }

    /// Serves delivery reports for up to `timeout` (returning as soon as
    /// one arrives) and appends the outcomes to `out`; re-sends due records.
    /// Called by the loop's thread: the reports are served on it.
    pub fn poll(&mut self, timeout: Duration, out: &mut Vec<Outcome<T>>) {
        for (slot, code) in std::mem::take(&mut self.refused_at_send) {
            out.extend(self.refused(slot, code));
        }
        let timeout = match self.resend_at.peek() {
            Some(Reverse((at, _))) => timeout.min(at.saturating_duration_since(Instant::now())),
            None => timeout,
        };
        // Reports another caller's poll served are settled at once.
        let served = !self
            .producer
            .context()
            .reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        self.serve(if out.is_empty() && !served {
            timeout
        } else {
            Duration::ZERO
        });
        std::mem::swap(
            &mut self.buf,
            &mut self
                .producer
                .context()
                .reports
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        self.settle_reports(out);
        let now = Instant::now();
        while let Some(Reverse((at, slot))) = self.resend_at.peek().copied() {
            if at > now {
                break;
            }
            self.resend_at.pop();
            self.offer(slot);
        }
    }

    /// Serves the producer's events until a report arrived or `timeout`
    /// passed. Not rust-rdkafka's `poll(timeout)`: that polls on until its
    /// deadline even after reports arrived, and spins through the last
    /// millisecond (librdkafka takes whole milliseconds; the rest rounds
    /// to 0): 15% of the hot thread was in `clock_gettime` there. Here,
    /// non-blocking polls drain what is queued, and a wait sleeps in steps
    /// of at most [`WAIT_STEP`] (reports batch up meanwhile).
    fn serve(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.drain() > 0 {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            std::thread::sleep(WAIT_STEP.min(deadline - now));
        }
    }

    /// Non-blocking polls while events are queued (reports, and the logs,
    /// errors and statistics queued among them; at most
    /// [`MAX_POLLS_PER_DRAIN`]); the reports received.
    fn drain(&self) -> usize {
        let received = || self.producer.context().received.load(Ordering::Relaxed);
        let start = received();
        // Once even when the queue looks empty: it is read without a lock.
        self.producer.poll(Duration::ZERO);
        for _ in 1..MAX_POLLS_PER_DRAIN {
            if self.events.is_empty() {
                break;
            }
            self.producer.poll(Duration::ZERO);
        }
        received() - start
    }

    fn settle_reports(&mut self, out: &mut Vec<Outcome<T>>) {
        let mut reports = std::mem::take(&mut self.buf);
        for (slot, outcome, sent) in &mut reports {
            if *slot == UNTRACKED {
                self.untracked_settled(outcome);
                continue;
            }
            if let Some(sent) = sent.take() {
                self.restore(*slot, sent);
            }
            match outcome {
                Delivered::Acked => {
                    if let Some(p) = self.remove(*slot) {
                        self.health.brokers_answered();
                        out.push(Outcome::Acked(p.token));
                    }
                }
                // Left in flight, not re-sent: the transaction is aborted.
                Delivered::Unconfirmed if self.transactional => self.unconfirmed_in_transaction(),
                Delivered::Unconfirmed => self.failed(*slot, &AckWithoutOffset, ACK_WITHOUT_OFFSET),
                Delivered::Failed(KafkaError::MessageProduction(code)) if is_permanent(*code) => {
                    out.extend(self.refused(*slot, *code));
                }
                Delivered::Failed(e) => self.failed(*slot, e, &error_label(e)),
            }
        }
        self.buf = reports;
        self.buf.clear();
    }

    /// Gives `slot`'s record back its bytes from its report, to be sent
    /// again or handed back.
    fn restore(&mut self, slot: usize, sent: Sent) {
        if let Some(p) = self.pending.get_mut(&slot).filter(|p| p.taken) {
            p.record.key = sent.key;
            p.record.value = sent.value;
            p.record.headers = sent.headers;
            p.taken = false;
        }
    }

    /// The buffers of the last record librdkafka took, for the next record.
    pub fn take_spare(&mut self) -> Option<Spare> {
        self.spare.take()
    }

    /// A report without an offset in a transaction: the transaction is
    /// to be aborted.
    fn unconfirmed_in_transaction(&mut self) {
        self.uncertain = true;
        UnconfirmedInTransaction {
            code: ACK_WITHOUT_OFFSET,
        }
        .emit(&self.metrics);
    }

    /// Serves the producer's callbacks without waiting: before the loop
    /// runs, this is how its errors (a broker refusing the credentials)
    /// reach the log and readiness.
    pub fn serve_callbacks(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// A changelog write's report: nothing waits for it, but a failing
    /// changelog is said (once, then once more after it recovers), since
    /// the ids it would keep are then lost at the next restart.
    fn untracked_settled(&mut self, outcome: &Delivered) {
        let failed = match outcome {
            Delivered::Failed(e) => Some(e),
            // In a transaction it may be missing from the commit, which
            // then cannot promise the ids it keeps: aborted instead.
            Delivered::Unconfirmed if self.transactional => {
                self.unconfirmed_in_transaction();
                None
            }
            Delivered::Acked | Delivered::Unconfirmed => None,
        };
        let was_failing = std::mem::replace(&mut self.changelog_failing, failed.is_some());
        if let Some(error) = failed {
            ChangelogWriteFailed {
                error,
                code: &error_label(error),
                first: !was_failing,
            }
            .emit(&self.metrics);
        }
    }

    /// Waits up to `timeout` for librdkafka to send what it holds.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.producer.flush(timeout)
    }

    /// Produces a record nothing waits for (the de-duplication changelog):
    /// its delivery report is ignored. Returns whether librdkafka took it.
    pub fn send_untracked(
        &mut self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: &[u8],
    ) -> bool {
        let record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, UNTRACKED)
            .partition(partition)
            .key(key)
            .payload(value);
        self.producer.send(record).is_ok()
    }

    /// The producer, for transactions.
    pub fn producer(&self) -> &BaseProducer<OutputContext> {
        &self.producer
    }

    /// Whether a record is being re-sent after a failure.
    pub fn failing(&self) -> bool {
        self.pending.values().any(|p| p.retry.failing)
    }

    /// Forgets every record in flight (an aborted transaction: librdkafka
    /// purged them; their inputs are consumed again after the rewind).
    pub fn discard_all(&mut self) {
        let slots: Vec<usize> = self.pending.keys().copied().collect();
        for slot in slots {
            self.remove(slot);
        }
        self.resend_at.clear();
        self.refused_at_send.clear();
        self.uncertain = false;
        // Purge reports of the aborted records: their slots are gone.
        self.producer.poll(Duration::ZERO);
        self.producer
            .context()
            .reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// When the next re-send is due, if any.
    pub fn next_resend(&self) -> Option<Instant> {
        self.resend_at.peek().map(|Reverse((at, _))| *at)
    }
}

#[cfg(test)]
impl<T> Deliveries<T> {
    /// For tests: deliveries to a broker no one listens on (librdkafka
    /// reports every broker down), with `health` and fresh metrics.
    pub(crate) fn unreachable(health: Arc<Health>) -> Deliveries<T> {
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1");
        let metrics = Arc::new(Metrics::new().expect("metrics register"));
        Deliveries::new(&config, health, metrics, 100).expect("a producer")
    }
}

fn error_label(error: &KafkaError) -> String {
    match error {
        KafkaError::MessageProduction(code) => format!("{code:?}"),
        other => other
            .rdkafka_error_code()
            .map_or_else(|| "Other".to_owned(), |c| format!("{c:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_authorisation_refusals_are_permanent_outages_are_not() {
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidRecord,
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ] {
            assert!(is_permanent(code), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            assert!(!is_permanent(code), "{code:?}");
        }
    }

    #[test]
    fn a_report_without_an_offset_is_unconfirmed() {
        assert!(matches!(Delivered::of(Ok(0)), Delivered::Acked));
        assert!(matches!(Delivered::of(Ok(41)), Delivered::Acked));
        // librdkafka's RD_KAFKA_OFFSET_INVALID, left on implicitly acked records.
        assert!(matches!(Delivered::of(Ok(-1001)), Delivered::Unconfirmed));
        assert!(matches!(Delivered::of(Ok(-1)), Delivered::Unconfirmed));
        let e = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(matches!(Delivered::of(Err(&e)), Delivered::Failed(_)));
    }

    /// An unconfirmed record is not acknowledged: it stays in flight,
    /// counts as failing (readiness down) and is due to be re-sent.
    #[test]
    fn an_unconfirmed_record_is_held_and_re_sent_not_acknowledged() {
        let health = Arc::new(Health::default());
        let mut d: Deliveries<u32> = Deliveries::unreachable(health.clone());
        let record = || OutRecord {
            topic: "t".into(),
            key: None,
            value: Some(b"v".to_vec()),
            headers: Default::default(),
        };
        d.send(record(), 7, 0);
        // librdkafka took it: only its copy is left, and our buffers are spare.
        assert!(d.pending[&0].taken && d.pending[&0].record.value.is_none());
        assert!(d.take_spare().is_some_and(|s| s.value == b"v"));
        let mut out = Vec::new();
        let sent = Sent {
            key: None,
            value: Some(b"v".to_vec()),
            headers: OutHeaders::default(),
        };
        d.buf.push((0, Delivered::Unconfirmed, Some(sent)));
        d.settle_reports(&mut out);
        assert!(out.is_empty(), "not acknowledged");
        // Re-sent from the report's copy.
        assert_eq!(d.pending[&0].record, record());
        assert!(!d.pending[&0].taken);
        assert_eq!(d.len(), 1, "still in flight");
        assert!(d.failing());
        assert_eq!(health.failing_records.load(Ordering::Relaxed), 1);
        assert!(d.next_resend().is_some(), "due to be re-sent");
        d.buf.push((0, Delivered::Acked, None));
        d.settle_reports(&mut out);
        assert!(matches!(out.as_slice(), [Outcome::Acked(7)]));
        assert!(d.is_empty());
        assert_eq!(health.failing_records.load(Ordering::Relaxed), 0);
    }

    /// In a transaction a re-send of an unconfirmed record would commit two
    /// copies if the first was written (seen on Apache Kafka after a broker
    /// crash): it is never re-sent; the transaction is to be aborted.
    #[test]
    fn an_unconfirmed_record_in_a_transaction_is_not_re_sent_but_makes_it_uncertain() {
        let mut d: Deliveries<u32> =
            Deliveries::unreachable(Arc::new(Health::default())).transactional();
        d.send(
            OutRecord {
                topic: "t".into(),
                key: None,
                value: Some(b"v".to_vec()),
                headers: Default::default(),
            },
            7,
            0,
        );
        assert!(!d.uncertain());
        let mut out = Vec::new();
        d.buf.push((0, Delivered::Unconfirmed, None));
        d.settle_reports(&mut out);
        assert!(out.is_empty(), "not acknowledged");
        assert!(d.uncertain(), "the transaction must be aborted");
        assert!(
            d.next_resend().is_none(),
            "never re-sent in this transaction"
        );
        assert_eq!(d.len(), 1, "in flight until the abort discards it");
        d.discard_all();
        assert!(
            !d.uncertain() && d.is_empty(),
            "the next transaction starts clean"
        );
    }

    /// A changelog record reported without an offset may be missing from
    /// the commit, which would then lose the id it keeps: in a transaction
    /// it makes the transaction uncertain too; at-least-once it is ignored.
    #[test]
    fn an_unconfirmed_changelog_record_makes_only_a_transaction_uncertain() {
        let mut eos: Deliveries<u32> =
            Deliveries::unreachable(Arc::new(Health::default())).transactional();
        let mut alo: Deliveries<u32> = Deliveries::unreachable(Arc::new(Health::default()));
        let mut out = Vec::new();
        for d in [&mut eos, &mut alo] {
            d.buf.push((UNTRACKED, Delivered::Unconfirmed, None));
            d.settle_reports(&mut out);
        }
        assert!(eos.uncertain(), "the transaction must be aborted");
        assert!(!alo.uncertain());
        assert!(out.is_empty());
        let counted = |d: &Deliveries<u32>| {
            d.metrics
                .produce_errors
                .with_label_values(&[ACK_WITHOUT_OFFSET])
                .get()
        };
        assert_eq!(counted(&eos), 1, "counted, as docs/operating.md says");
    }
}
