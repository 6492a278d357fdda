//! The hot loop's bookkeeping: the consumer and the deliveries, what is in
//! flight (records and bytes, and when there is no room), records kept
//! while a record waits, offsets stored once acknowledged, and the
//! per-topic consumed counters.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use prometheus::local::LocalHistogram;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use tracing::{debug, warn};

use super::bounds::Bounds;
use super::{DEFER_MAX_BYTES, KEEP_ALIVE, PAUSE_AFTER};
use crate::config::Settings;
use crate::core::dedup::IdDigest;
use crate::core::envelope::Shape;
use crate::core::normalize::IngestMeta;
use crate::kafka::client_errors;
use crate::kafka::consumer::IngestContext;
use crate::kafka::dedup::changelog_value;
use crate::kafka::delivery::{Deliveries, Outcome};
use crate::kafka::offsets::{OffsetTracker, Partition, Ticket};
use crate::kafka::output::{Input, InputCopy};
use crate::kafka::processor::{Delivered, OutputKind, Prepared, shape_label};
use crate::kafka::record_headers::InHeaders;
use crate::kafka::transaction::Transactions;
use crate::ops::events::{Client, DuplicateSuppressed, InternalEvent};
use crate::ops::health::{Health, now_ms};
use crate::ops::metrics::Metrics;

/// A record consumed while the partitions were paused: its ticket is
/// registered, it is processed once the wait is over.
pub(super) struct Deferred {
    pub(super) ticket: Ticket,
    pub(super) input: Box<InputCopy>,
    pub(super) consumed_at: Instant,
}

/// The consumer, deliveries and bookkeeping of the hot loop.
pub(super) struct Io<'r> {
    pub(super) consumer: &'r BaseConsumer<IngestContext>,
    pub(super) deliveries: &'r mut Deliveries<Delivered>,
    pub(super) tracker: &'r Mutex<OffsetTracker>,
    pub(super) health: &'r Health,
    pub(super) metrics: &'r Metrics,
    /// Delivery outcomes not yet settled.
    pub(super) outcomes: Vec<Outcome<Delivered>>,
    /// Records consumed while a record waited, in order.
    pub(super) deferred: VecDeque<Deferred>,
    /// Bytes they hold.
    pub(super) deferred_bytes: usize,
    /// Offsets to store at the end of this batch of outcomes.
    pub(super) to_store: Vec<(Partition, i64)>,
    pub(super) paused: bool,
    pub(super) no_room_since: Option<Instant>,
    pub(super) max_records: usize,
    pub(super) max_bytes: usize,
    pub(super) topic_counters: HashMap<String, TopicCounters>,
    /// The last consumed record's partition and its topic's counters.
    pub(super) last_partition: Option<(Partition, TopicCounters)>,
    /// `processing_latency_seconds` and `event_age_seconds`, observed per
    /// record without atomics and published once per batch of outcomes.
    pub(super) latency: LocalHistogram,
    pub(super) event_age: LocalHistogram,
    /// When the batch being consumed started, if one is: its records'
    /// consumption time (one clock read per batch, not per record).
    pub(super) batch_started: Option<Instant>,
    /// When the outcomes being settled were taken, monotonic and wall
    /// (ms): their acknowledgement time, read once per batch.
    pub(super) clock: (Instant, i64),
    /// The de-duplication changelog, when de-duplication is on.
    pub(super) changelog: Option<String>,
    /// Exactly-once: the transaction outputs and offsets go into.
    pub(super) txn: Option<Transactions>,
    /// Where a bounded run stops; `None` for `run`.
    pub(super) bounds: Option<Bounds>,
}

impl<'r> Io<'r> {
    pub(super) fn new(
        settings: &Settings,
        consumer: &'r BaseConsumer<IngestContext>,
        deliveries: &'r mut Deliveries<Delivered>,
        tracker: &'r Mutex<OffsetTracker>,
        health: &'r Health,
        metrics: &'r Metrics,
    ) -> Self {
        let changelog = settings
            .dedup
            .enabled
            .then(|| settings.dedup_changelog_topic());
        Io {
            consumer,
            deliveries,
            tracker,
            health,
            metrics,
            outcomes: Vec::new(),
            deferred: VecDeque::new(),
            deferred_bytes: 0,
            to_store: Vec::new(),
            paused: false,
            no_room_since: None,
            max_records: settings.pipeline.max_in_flight,
            max_bytes: settings.pipeline.max_in_flight_bytes,
            topic_counters: HashMap::new(),
            last_partition: None,
            latency: metrics.processing_latency.local(),
            event_age: metrics.event_age.local(),
            batch_started: None,
            clock: (Instant::now(), now_ms()),
            changelog,
            txn: None,
            bounds: None,
        }
    }

    /// Whether another record may be taken; pauses the partitions when
    /// there has been no room for a while, so the consumer can still be
    /// polled (group membership) without taking records.
    pub(super) fn room(&mut self) -> bool {
        let room = self.deliveries.len() < self.max_records
            && self.deliveries.bytes() < self.max_bytes
            && self.txn.as_mut().is_none_or(Transactions::may_resume);
        if room {
            self.no_room_since = None;
            self.set_paused(false);
        } else {
            let since = *self.no_room_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= PAUSE_AFTER {
                self.set_paused(true);
                self.keep_alive();
            }
        }
        room
    }

    /// Drives `work` (a processor step) to its end; the common case is
    /// ready at once. If it waits (registry, admin API), the consumer and
    /// producer are still polled meanwhile, what the consumer hands over is
    /// kept for later, and once the wait lasts (or what is kept grows) the
    /// partitions are paused. Short waits (a type's first topic creation)
    /// do not pause: a pause and resume fetch again from inside a record
    /// batch, a re-fetch of what was already prefetched.
    pub(super) async fn drive<T>(&mut self, work: impl Future<Output = T>) -> T {
        let mut work = pin!(work);
        if let Poll::Ready(done) = futures::poll!(work.as_mut()) {
            return done;
        }
        let was_paused = self.paused;
        let started = Instant::now();
        let mut tick = tokio::time::interval(KEEP_ALIVE);
        let done = loop {
            tokio::select! {
                biased;
                done = work.as_mut() => break done,
                _ = tick.tick() => {
                    if started.elapsed() >= PAUSE_AFTER || self.deferred_bytes >= DEFER_MAX_BYTES {
                        self.set_paused(true);
                    }
                    self.keep_alive();
                }
            }
        };
        if !was_paused {
            self.set_paused(false);
        }
        done
    }

    /// While paused: serve the group and the delivery reports; a record
    /// the consumer still hands over is registered and kept for later.
    pub(super) fn keep_alive(&mut self) {
        let consumer = self.consumer;
        while let Some(polled) = consumer.poll(Duration::ZERO) {
            match polled {
                Ok(message) if !self.admit(&message) => {}
                Ok(message) => {
                    let ticket = self.register(&message);
                    let headers = InHeaders::of(&message);
                    let input = Input {
                        key: message.key(),
                        value: message.payload(),
                        headers: headers.pairs(),
                        ingest: ingest_meta(&message),
                    };
                    let input = Box::new(InputCopy::of(&input));
                    self.deferred_bytes += input.size();
                    self.deferred.push_back(Deferred {
                        ticket,
                        input,
                        consumed_at: Instant::now(),
                    });
                }
                Err(e) => {
                    warn!(error = %e, "consume error");
                    break;
                }
            }
        }
        self.deliveries.poll(Duration::ZERO, &mut self.outcomes);
    }

    pub(super) fn set_paused(&mut self, paused: bool) {
        if self.paused == paused {
            return;
        }
        let assignment = match self.consumer.assignment() {
            Ok(assignment) => assignment,
            Err(e) => {
                warn!(error = %e, "cannot read the assignment to pause or resume it");
                return;
            }
        };
        let done = if paused {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        match done {
            Ok(()) => {
                self.paused = paused;
                debug!(paused, "ingest partitions paused or resumed");
            }
            Err(e) => warn!(error = %e, paused, "cannot pause or resume the ingest partitions"),
        }
    }

    /// A consume error: a refused topic or group is logged once and makes
    /// the connector unready; anything else is logged as it comes.
    pub(super) fn consume_error(&self, e: &KafkaError) {
        client_errors::observe(self.health, self.metrics, Client::Consumer, e, "");
    }

    /// Whether to process a consumed record: past a bounded run's end it
    /// is neither processed nor committed.
    pub(super) fn admit(&mut self, message: &BorrowedMessage<'_>) -> bool {
        self.bounds
            .as_mut()
            .is_none_or(|b| b.admit(message.topic(), message.partition(), message.offset()))
    }

    /// Counts a consumed record and registers its ticket.
    pub(super) fn register(&mut self, message: &BorrowedMessage<'_>) -> Ticket {
        self.health.brokers_answered();
        self.health.consumed.fetch_add(1, Ordering::Relaxed);
        let partition = self.count_consumed(message);
        let ticket = lock(self.tracker).consumed(partition, message.offset());
        self.consumed_in_transaction(&ticket);
        ticket
    }

    pub(super) fn send(&mut self, prepared: Prepared, ticket: Ticket, consumed_at: Instant) {
        if self.txn.is_some() {
            self.in_transaction();
            // Exactly-once: the id is remembered in the same transaction.
            self.write_changelog(prepared.remember.as_ref(), &prepared.input);
        }
        let token_bytes = prepared.input.size();
        let delivered = Delivered {
            ticket,
            prepared_kind: prepared.kind,
            consumed_at,
            input: prepared.input,
            remember: prepared.remember,
        };
        self.deliveries
            .send(prepared.record, delivered, token_bytes);
    }

    /// An acknowledged record: counted, and its offset queued for storing.
    pub(super) fn acknowledged(&mut self, done: Delivered) {
        self.health.acknowledged.fetch_add(1, Ordering::Relaxed);
        let (now, now_ms) = self.clock;
        let latency = now.saturating_duration_since(done.consumed_at);
        self.latency.observe(latency.as_secs_f64());
        match &done.prepared_kind {
            OutputKind::Envelope {
                counter,
                event_time_ms,
                ..
            } => {
                counter.inc();
                let age_ms = (now_ms - event_time_ms).max(0);
                self.event_age.observe(age_ms as f64 / 1000.0);
            }
            OutputKind::DeadLetter { rejection, .. } => {
                self.metrics
                    .dead_lettered
                    .with_label_values(&[rejection.reason.code()])
                    .inc();
                self.health.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.txn.is_none() {
            // After the envelope is acknowledged (at-least-once): a crash
            // before this forgets the id, so a later copy may be produced
            // again; nothing is lost.
            self.write_changelog(done.remember.as_ref(), &done.input);
        }
        self.advance(done.ticket);
    }

    pub(super) fn write_changelog(&mut self, remember: Option<&IdDigest>, input: &InputCopy) {
        let (Some(digest), Some(changelog)) = (remember, &self.changelog) else {
            return;
        };
        let ingest = input.input(&[]).ingest;
        let value = changelog_value(ingest.timestamp_ms, ingest.topic);
        self.deliveries
            .send_untracked(changelog, ingest.partition, digest, &value);
    }

    /// A suppressed duplicate: nothing to send, its offset may advance.
    pub(super) fn suppressed(&mut self, ticket: Ticket, shape: Shape) {
        DuplicateSuppressed {
            shape: shape_label(shape),
        }
        .emit(self.metrics);
        if self.txn.is_some() {
            // Its offset is committed in a transaction: one must be open.
            self.in_transaction();
        }
        self.advance(ticket);
    }

    /// Queues the offset `ticket` makes committable, if any.
    pub(super) fn advance(&mut self, ticket: Ticket) {
        let Some(offset) = lock(self.tracker).acknowledged(&ticket) else {
            return;
        };
        let partition = ticket.partition;
        match self.to_store.iter_mut().find(|(p, _)| *p == partition) {
            Some(slot) => slot.1 = slot.1.max(offset),
            None => self.to_store.push((partition, offset)),
        }
    }

    /// Stores the batch's committable offsets: one call per partition
    /// (exactly-once: they go into the open transaction instead); publishes
    /// the batch's latency and age observations.
    pub(super) fn store_offsets(&mut self) {
        self.latency.flush();
        self.event_age.flush();
        if let Some(txn) = self.txn.as_mut() {
            for (partition, offset) in self.to_store.drain(..) {
                txn.acknowledged(partition, offset);
            }
            return;
        }
        for ((topic, partition), offset) in self.to_store.drain(..) {
            // Fails only if the partition was revoked meanwhile: then it is not ours to commit.
            if let Err(e) = self.consumer.store_offset(&topic, partition, offset) {
                debug!(error = %e, "offset not stored");
            }
        }
    }
}

pub(super) fn ingest_meta<'m>(message: &'m BorrowedMessage<'_>) -> IngestMeta<'m> {
    IngestMeta {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis().unwrap_or_else(now_ms),
    }
}

pub(super) fn lock(tracker: &Mutex<OffsetTracker>) -> MutexGuard<'_, OffsetTracker> {
    tracker.lock().unwrap_or_else(|p| p.into_inner())
}

/// `records_consumed_total` and `consumed_bytes_total` of one ingest topic.
#[derive(Clone)]
pub(super) struct TopicCounters {
    pub(super) records: IntCounter,
    pub(super) bytes: IntCounter,
}

impl Io<'_> {
    /// Counts `message` and returns its partition, its topic's name
    /// interned. Records come in runs from one partition: the last one's
    /// partition and counters are reused without a look-up.
    pub(super) fn count_consumed(&mut self, message: &BorrowedMessage<'_>) -> Partition {
        let (topic, partition) = (message.topic(), message.partition());
        let last = |l: &(Partition, TopicCounters)| l.0.1 == partition && *l.0.0 == *topic;
        let (partition, counters) = match self.last_partition.take().filter(last) {
            Some(hit) => hit,
            None => (
                self.consumer.context().partition(topic, partition),
                self.counters_of(topic),
            ),
        };
        counters.records.inc();
        let bytes = message.payload().map_or(0, <[u8]>::len) as u64;
        counters.bytes.inc_by(bytes);
        self.last_partition = Some((partition.clone(), counters));
        partition
    }

    /// `topic`'s counters. Labelled by the subscribed topic only (a
    /// bounded, configured set), resolved once per topic rather than looked
    /// up per record.
    fn counters_of(&mut self, topic: &str) -> TopicCounters {
        if let Some(counters) = self.topic_counters.get(topic) {
            return counters.clone();
        }
        let counters = TopicCounters {
            records: self.metrics.records_consumed.with_label_values(&[topic]),
            bytes: self.metrics.consumed_bytes.with_label_values(&[topic]),
        };
        self.topic_counters
            .insert(topic.to_owned(), counters.clone());
        counters
    }
}
