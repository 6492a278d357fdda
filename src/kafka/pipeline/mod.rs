//! The pipeline: consume raw webhooks -> normalise -> produce the envelope
//! (or dead-letter the record) -> store the input offset once acknowledged.
//!
//! Guarantee: at-least-once. An input offset is stored for commit only when
//! the output record for it, and for every earlier offset of its partition,
//! has been acknowledged by the broker (acks=all, idempotent producer). A
//! crash re-delivers what was not committed; nothing is skipped. What a
//! record can do to the loop is set by the failure taxonomy in
//! [`crate::kafka::processor`]: a permanent failure becomes a dead letter, a
//! transient one holds the record (and its partition) while it is retried.
//!
//! Exactly-once (`delivery.guarantee`): the same loop, with the outputs,
//! changelog records and committable offsets going into a transaction that
//! [`transactional`] commits or aborts and rewinds.
//!
//! One OS thread (`codat-hot`) does the whole hot path: it polls the
//! consumer in batches, registers each record's ticket at poll, normalises,
//! encodes and sends, polls the producer inline (delivery reports on the
//! same thread), and stores offsets once per batch. The rare waits (topic
//! creation, the schema registry) are futures driven on the same thread;
//! while one waits, the assigned partitions are paused and the consumer is
//! still polled, so the group never evicts a member that is waiting on
//! purpose.
//!
//! In-flight work is bounded by `pipeline.max_in_flight` records and
//! `pipeline.max_in_flight_bytes`: past either, the loop stops consuming
//! (pausing its partitions if that lasts) until acknowledgements arrive, and
//! librdkafka's prefetch queue is bounded in bytes in the consumer config,
//! so memory stays bounded however large the backlog.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::FutureExt;
use prometheus::IntCounter;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use tracing::{debug, info, warn};

use crate::config::{Guarantee, Settings};
use crate::core::dedup::IdDigest;
use crate::core::envelope::Shape;
use crate::core::normalize::IngestMeta;
use crate::kafka::client_errors;
use crate::kafka::consumer::{IngestContext, commit_stored};
use crate::kafka::dedup::changelog_value;
use crate::kafka::delivery::{Deliveries, Outcome};
use crate::kafka::ingest_watch::IngestWatch;
use crate::kafka::offsets::{OffsetTracker, Partition, Ticket};
use crate::kafka::output::{Input, InputCopy};
use crate::kafka::processor::{
    Delivered, OutputKind, Prepared, Processor, ProcessorError, StartError, Step, shape_label,
};
use crate::kafka::record_headers::InHeaders;
use crate::kafka::transaction::Transactions;
use crate::ops::events::{
    Client, DedupRestoreFailed, DedupRestored, DuplicateSuppressed, InternalEvent,
};
use crate::ops::health::{Health, now_ms};
use crate::ops::metrics::Metrics;
use crate::registry::value_format;

mod transactional;

/// The hot thread's name (liveness tests find it by this name).
pub const HOT_THREAD: &str = "codat-hot";

/// Most records consumed before the producer is polled again.
const BATCH: usize = 512;
/// How long an idle loop blocks on the consumer.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// How long the loop waits for acknowledgements when it cannot consume.
const ACK_WAIT: Duration = Duration::from_millis(5);
/// How often the consumer is polled while a record waits on purpose.
const KEEP_ALIVE: Duration = Duration::from_millis(100);
/// Exactly-once: longest wait for a transaction's outputs before aborting.
const TXN_ACK_WAIT: Duration = Duration::from_secs(30);
/// Exactly-once: bound on reading the committed offsets to rewind to.
const REWIND_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes kept from the consumer while a record waits, before pausing.
const DEFER_MAX_BYTES: usize = 16 * 1024 * 1024;
/// How long without room (or a record waiting) before the partitions are
/// paused, so the group keeps a member that holds back on purpose (its
/// `max.poll.interval.ms` is 5 minutes by default). Not sooner: pausing
/// drops librdkafka's prefetched records and a resume fetches them again
/// from inside a record batch, while memory is already bounded without a
/// pause (the prefetch queue in bytes, `DEFER_MAX_BYTES` kept). Chosen
/// first for tansu 0.6, which skipped the rest of such a batch; kept on
/// Apache Kafka for the re-fetch it saves (README, "Choices revisited").
const PAUSE_AFTER: Duration = Duration::from_secs(30);

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every in-flight record was acknowledged and committed.
    Drained,
    /// The drain bound passed first; this many records were not
    /// acknowledged and will be consumed again.
    DrainTimedOut {
        /// Records abandoned.
        abandoned: usize,
    },
}

/// Failures that stop the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A Kafka client could not be created or subscribed.
    #[error("kafka client: {0}")]
    Kafka(#[from] KafkaError),
    /// The per-record processor could not be built.
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    /// Start-up topics or schema registration failed for good.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The brokers refuse the transactional id: an ACL is missing.
    #[error(
        "kafka refuses this client the transactional id {id:?} (grant the principal WRITE on \
         TransactionalId {id:?}, or a prefix of it; delivery.transactional_id): {source}"
    )]
    TransactionalIdNotAuthorized { id: String, source: KafkaError },
    /// The hot thread could not be started or stopped without a result.
    #[error("the processing thread failed: {0}")]
    Thread(String),
}

/// Runs the pipeline on its own OS thread until `shutdown` completes, then
/// drains and commits. Must be called within a Tokio runtime: the thread
/// drives the rare waits (registry, admin API) with the runtime's timers
/// and I/O.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> Result<RunOutcome, PipelineError> {
    let runtime = tokio::runtime::Handle::current();
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(HOT_THREAD.to_owned())
        .spawn(move || {
            let outcome = runtime.block_on(run_here(settings, shutdown, health, metrics));
            let _ = done.send(outcome);
        })
        .map_err(|e| PipelineError::Thread(e.to_string()))?;
    result
        .await
        .map_err(|_| PipelineError::Thread("it stopped without a result (a panic)".to_owned()))?
}

/// The pipeline on the calling thread.
async fn run_here(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> Result<RunOutcome, PipelineError> {
    health.beat();
    metrics.init_ingest_topics(&settings.ingest.topics);
    let tracker = Arc::new(Mutex::new(OffsetTracker::new()));
    let (consumer, mut deliveries) = clients(&settings, &tracker, &health, &metrics)?;
    let mut processor = Processor::new(&settings, &metrics, &health)?;
    // Shared: the loop and the waits for the broker and registry all watch it.
    let shutdown = Box::pin(shutdown).shared();
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let (shutdown, stop) = (shutdown.clone(), stop.clone());
        async move {
            shutdown.await;
            stop.store(true, Ordering::Relaxed);
        }
    });
    if !serving_callbacks(&deliveries, processor.start(shutdown.clone())).await? {
        info!("shutdown requested during start-up");
        return Ok(RunOutcome::Drained);
    }
    let txn = match settings.guarantee() {
        Guarantee::ExactlyOnce => Some(transactional::init(&settings, &deliveries, &stop)?),
        Guarantee::AtLeastOnce => None,
    };
    subscribe(&settings, &consumer, &health)?;
    let mut hot = Hot {
        processor: &mut processor,
        io: Io::new(
            &settings,
            &consumer,
            &mut deliveries,
            &tracker,
            &health,
            &metrics,
        ),
        watch: IngestWatch::new(&settings),
    };
    hot.io.txn = txn;
    let drain_timeout = Duration::from_millis(settings.pipeline.drain_timeout_ms);
    let abandoned = hot.run_loop(&stop, drain_timeout, &shutdown).await?;
    drop(hot);
    if settings.guarantee() == Guarantee::AtLeastOnce {
        commit_stored(&consumer, "shutdown");
    }
    finish(&deliveries, &health, abandoned)
}

/// Runs start-up (topics, registry) while serving the producer's callbacks,
/// so brokers refusing the credentials or TLS are logged, and `/readyz`
/// says so, while start-up waits for them.
async fn serving_callbacks<T>(
    deliveries: &Deliveries<Delivered>,
    work: impl Future<Output = T>,
) -> T {
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = tick.tick() => deliveries.serve_callbacks(),
        }
    }
}

/// The ingest consumer and the output producer (makes no network call).
fn clients(
    settings: &Settings,
    tracker: &Arc<Mutex<OffsetTracker>>,
    health: &Arc<Health>,
    metrics: &Arc<Metrics>,
) -> Result<(BaseConsumer<IngestContext>, Deliveries<Delivered>), PipelineError> {
    let mut context = IngestContext::new(tracker.clone(), health.clone(), metrics.clone());
    let exactly_once = settings.guarantee() == Guarantee::ExactlyOnce;
    if settings.dedup.enabled || exactly_once {
        // Windows are restored on assignment, before a partition's first
        // record; a revoke aborts the open transaction.
        context = context.tracking_assignment();
    }
    if exactly_once {
        context = context.transactional();
    }
    let consumer = settings.consumer_config().create_with_context(context)?;
    let deliveries = Deliveries::new(
        &settings.producer_config(),
        health.clone(),
        metrics.clone(),
        settings.pipeline.produce_retry_backoff_max_ms,
    )?;
    Ok((consumer, deliveries))
}

/// Subscribes to the ingest topics: from here on, the connector is started.
fn subscribe(
    settings: &Settings,
    consumer: &BaseConsumer<IngestContext>,
    health: &Health,
) -> Result<(), PipelineError> {
    info!(
        value_format = value_format::name(settings.value_format()),
        "envelope value format"
    );
    let topic_refs: Vec<&str> = settings.ingest.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs)?;
    health.started.store(true, Ordering::Relaxed);
    info!(
        topics = ?settings.ingest.topics,
        group = %settings.ingest.group_id,
        max_in_flight = settings.pipeline.max_in_flight,
        max_in_flight_bytes = settings.pipeline.max_in_flight_bytes,
        "codat-stream started"
    );
    Ok(())
}

/// Flushes and says how the run ended.
fn finish(
    deliveries: &Deliveries<Delivered>,
    health: &Health,
    abandoned: usize,
) -> Result<RunOutcome, PipelineError> {
    if let Err(e) = deliveries.flush(Duration::from_secs(5)) {
        debug!(error = %e, "producer flush at exit");
    }
    info!(
        consumed = health.consumed.load(Ordering::Relaxed),
        acknowledged = health.acknowledged.load(Ordering::Relaxed),
        dead_lettered = health.dead_lettered.load(Ordering::Relaxed),
        "codat-stream stopped"
    );
    if abandoned == 0 {
        info!("drained: every consumed record was acknowledged and committed");
        Ok(RunOutcome::Drained)
    } else {
        warn!(
            abandoned,
            "drain timed out: unacknowledged records will be consumed again"
        );
        Ok(RunOutcome::DrainTimedOut { abandoned })
    }
}

/// The hot loop's state: the processor, and everything else (split so a
/// waiting processor future and the consumer's keep-alive can both borrow).
struct Hot<'r, 's> {
    processor: &'r mut Processor<'s>,
    io: Io<'r>,
    /// Looks for missing ingest topics often, not every 5 minutes.
    watch: IngestWatch,
}

/// A record consumed while the partitions were paused: its ticket is
/// registered, it is processed once the wait is over.
struct Deferred {
    ticket: Ticket,
    input: Box<InputCopy>,
    consumed_at: Instant,
}

/// The consumer, deliveries and bookkeeping of the hot loop.
struct Io<'r> {
    consumer: &'r BaseConsumer<IngestContext>,
    deliveries: &'r mut Deliveries<Delivered>,
    tracker: &'r Mutex<OffsetTracker>,
    health: &'r Health,
    metrics: &'r Metrics,
    /// Delivery outcomes not yet settled.
    outcomes: Vec<Outcome<Delivered>>,
    /// Records consumed while a record waited, in order.
    deferred: VecDeque<Deferred>,
    /// Bytes they hold.
    deferred_bytes: usize,
    /// Offsets to store at the end of this batch of outcomes.
    to_store: Vec<(Partition, i64)>,
    paused: bool,
    no_room_since: Option<Instant>,
    max_records: usize,
    max_bytes: usize,
    topic_counters: HashMap<String, TopicCounters>,
    /// The de-duplication changelog, when de-duplication is on.
    changelog: Option<String>,
    /// Exactly-once: the transaction outputs and offsets go into.
    txn: Option<Transactions>,
}

impl Hot<'_, '_> {
    /// Runs until shutdown and the drain end; returns the records abandoned.
    async fn run_loop<F: Future<Output = ()> + Clone>(
        &mut self,
        stop: &AtomicBool,
        drain_timeout: Duration,
        shutdown: &F,
    ) -> Result<usize, PipelineError> {
        let mut drain_deadline: Option<Instant> = None;
        loop {
            self.io.health.beat();
            self.io
                .metrics
                .in_flight
                .set(self.io.deliveries.len() as i64);
            if drain_deadline.is_none() && stop.load(Ordering::Relaxed) {
                self.io.health.draining.store(true, Ordering::Relaxed);
                drain_deadline = Some(Instant::now() + drain_timeout);
                info!(
                    in_flight = self.io.deliveries.len(),
                    "shutdown requested: draining"
                );
            }
            if let Some(deadline) = drain_deadline {
                if self.io.deliveries.is_empty() {
                    self.end_transaction(shutdown).await?;
                    return Ok(0);
                }
                if Instant::now() >= deadline {
                    let abandoned = self.io.deliveries.len();
                    self.abort_and_rewind("the drain timeout passed")?;
                    return Ok(abandoned);
                }
            }
            if drain_deadline.is_none() {
                self.watch
                    .tick(self.io.consumer, self.io.health, self.io.metrics);
            }
            let consumed = match drain_deadline {
                None => self.consume_batch(shutdown).await?,
                Some(_) => 0,
            };
            let wait = if consumed > 0 || self.io.deliveries.is_empty() {
                Duration::ZERO
            } else {
                ACK_WAIT
            };
            self.io.deliveries.poll(wait, &mut self.io.outcomes);
            self.settle_all(shutdown).await;
            if self.io.txn.as_ref().is_some_and(Transactions::due) {
                self.end_transaction(shutdown).await?;
            }
            if consumed == 0 && self.io.deliveries.is_empty() && drain_deadline.is_none() {
                self.idle(shutdown).await?;
            }
        }
    }

    /// Consumes up to a batch while there is room; returns how many.
    async fn consume_batch<F: Future<Output = ()> + Clone>(
        &mut self,
        shutdown: &F,
    ) -> Result<usize, PipelineError> {
        let consumer = self.io.consumer;
        let mut n = 0;
        while n < BATCH && self.io.room() {
            if let Some(d) = self.io.deferred.pop_front() {
                self.io.deferred_bytes -= d.input.size();
                let headers = d.input.header_refs();
                let input = d.input.input(&headers);
                self.handle(&input, d.ticket, d.consumed_at, shutdown).await;
            } else {
                match consumer.poll(Duration::ZERO) {
                    None => break,
                    Some(Err(e)) => {
                        self.io.consume_error(&e);
                        break;
                    }
                    Some(Ok(message)) => self.consumed(&message, shutdown).await?,
                }
            }
            n += 1;
        }
        Ok(n)
    }

    /// Nothing in flight and nothing arrived: block on the consumer a while.
    async fn idle<F: Future<Output = ()> + Clone>(
        &mut self,
        shutdown: &F,
    ) -> Result<(), PipelineError> {
        if !self.io.deferred.is_empty() {
            return Ok(());
        }
        if !self.io.room() {
            // Paused after an abort: wait a little, serving the producer.
            self.io.deliveries.poll(ACK_WAIT, &mut self.io.outcomes);
            return Ok(());
        }
        match self.io.consumer.poll(IDLE_WAIT) {
            Some(Ok(message)) => self.consumed(&message, shutdown).await?,
            Some(Err(e)) => self.io.consume_error(&e),
            None => {}
        }
        Ok(())
    }

    /// One consumed record: registered, then processed and sent.
    async fn consumed<F: Future<Output = ()> + Clone>(
        &mut self,
        message: &BorrowedMessage<'_>,
        shutdown: &F,
    ) -> Result<(), PipelineError> {
        let consumed_at = Instant::now();
        let revoked = self.sync_assignment();
        // Registered first: its position is where a rewind seeks a
        // partition assigned (again) since the last record.
        let ticket = self.io.register(message);
        if revoked && self.io.txn.as_ref().is_some_and(Transactions::pending) {
            // Revoked mid-transaction: abort it and rewind; this record is
            // fetched again.
            return self.abort_and_rewind("partitions were revoked");
        }
        let headers = InHeaders::of(message);
        let input = Input {
            key: message.key(),
            value: message.payload(),
            headers: &headers.pairs,
            ingest: ingest_meta(message),
        };
        self.handle(&input, ticket, consumed_at, shutdown).await;
        Ok(())
    }

    /// Processes a registered record and sends its output.
    async fn handle<F: Future<Output = ()> + Clone>(
        &mut self,
        input: &Input<'_>,
        ticket: Ticket,
        consumed_at: Instant,
        shutdown: &F,
    ) {
        if let Some(prepared) = self.io.txn.as_mut().and_then(|t| t.replacement(&ticket)) {
            // Refused for good in an aborted transaction: its replacement.
            self.io.send(prepared, ticket, consumed_at);
            return;
        }
        let step = self
            .io
            .drive(self.processor.process_step(input, shutdown))
            .await;
        match step {
            Some(Step::Send(prepared)) => self.io.send(prepared, ticket, consumed_at),
            Some(Step::Suppressed(shape)) => self.io.suppressed(ticket, shape),
            // Shutdown while the record was held; it stays uncommitted and
            // is consumed again (so later outputs may not be committed).
            None => self.io.doom("shutdown while a record was held"),
        }
    }

    /// Applies assignment changes to the de-duplication state: revoked
    /// partitions forgotten, assigned ones restored from the changelog
    /// before their first record is processed (this runs first thing for
    /// every consumed record; changes are noted only with de-duplication on).
    /// Returns whether partitions were revoked.
    fn sync_assignment(&mut self) -> bool {
        let Some(changes) = self.io.consumer.context().take_changes() else {
            return false;
        };
        let revoked = !changes.revoked.is_empty();
        if let Some(txn) = self.io.txn.as_mut() {
            for partition in &changes.revoked {
                txn.revoked(partition);
            }
        }
        let Some(dedup) = self.processor.dedup() else {
            return revoked;
        };
        for partition in &changes.revoked {
            dedup.revoked(partition);
        }
        if changes.assigned.is_empty() {
            return revoked;
        }
        let started = Instant::now();
        match dedup.restore(&changes.assigned) {
            Ok(restored) => DedupRestored {
                partitions: restored.partitions,
                records: restored.records,
                seconds: started.elapsed().as_secs_f64(),
                ids: dedup.len(),
            }
            .emit(self.io.metrics),
            Err(error) => DedupRestoreFailed { error: &error }.emit(self.io.metrics),
        }
        revoked
    }

    /// Settles every outcome collected so far, then stores the offsets
    /// they made committable (once per partition).
    async fn settle_all<F: Future<Output = ()> + Clone>(&mut self, shutdown: &F) {
        while !self.io.outcomes.is_empty() {
            for outcome in std::mem::take(&mut self.io.outcomes) {
                match outcome {
                    Outcome::Acked(done) => self.io.acknowledged(done),
                    Outcome::Refused(refusal) => {
                        let (ticket, consumed_at) =
                            (refusal.token.ticket.clone(), refusal.token.consumed_at);
                        let replaced = self
                            .io
                            .drive(self.processor.replacement(refusal, shutdown))
                            .await;
                        match replaced {
                            Ok(Some(prepared)) if self.io.txn.is_some() => {
                                // The refusal dooms the open transaction:
                                // the replacement goes in the next one.
                                self.io.stash(prepared, &ticket);
                            }
                            Ok(Some(prepared)) => self.io.send(prepared, ticket, consumed_at),
                            // Shutdown while held: left uncommitted, consumed again.
                            Ok(None) => self.io.doom("shutdown while a record was held"),
                            Err(refusal) => self.io.deliveries.hold(*refusal),
                        }
                    }
                }
            }
        }
        self.io.store_offsets();
    }
}

impl<'r> Io<'r> {
    fn new(
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
            changelog,
            txn: None,
        }
    }

    /// Whether another record may be taken; pauses the partitions when
    /// there has been no room for a while, so the consumer can still be
    /// polled (group membership) without taking records.
    fn room(&mut self) -> bool {
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
    async fn drive<T>(&mut self, work: impl Future<Output = T>) -> T {
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
    fn keep_alive(&mut self) {
        let consumer = self.consumer;
        while let Some(polled) = consumer.poll(Duration::ZERO) {
            match polled {
                Ok(message) => {
                    let ticket = self.register(&message);
                    let headers = InHeaders::of(&message);
                    let input = Input {
                        key: message.key(),
                        value: message.payload(),
                        headers: &headers.pairs,
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

    fn set_paused(&mut self, paused: bool) {
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
    fn consume_error(&self, e: &KafkaError) {
        client_errors::observe(self.health, self.metrics, Client::Consumer, e, "");
    }

    /// Counts a consumed record and registers its ticket.
    fn register(&mut self, message: &BorrowedMessage<'_>) -> Ticket {
        self.health.brokers_answered();
        self.health.consumed.fetch_add(1, Ordering::Relaxed);
        self.count_consumed(message);
        let partition = self
            .consumer
            .context()
            .partition(message.topic(), message.partition());
        let ticket = lock(self.tracker).consumed(partition, message.offset());
        self.consumed_in_transaction(&ticket);
        ticket
    }

    fn send(&mut self, prepared: Prepared, ticket: Ticket, consumed_at: Instant) {
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
    fn acknowledged(&mut self, done: Delivered) {
        self.health.acknowledged.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .processing_latency
            .observe(done.consumed_at.elapsed().as_secs_f64());
        match &done.prepared_kind {
            OutputKind::Envelope {
                counter,
                event_time_ms,
                ..
            } => {
                counter.inc();
                let age_ms = (now_ms() - event_time_ms).max(0);
                self.metrics.event_age.observe(age_ms as f64 / 1000.0);
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

    fn write_changelog(&mut self, remember: Option<&IdDigest>, input: &InputCopy) {
        let (Some(digest), Some(changelog)) = (remember, &self.changelog) else {
            return;
        };
        let ingest = input.input(&[]).ingest;
        let value = changelog_value(ingest.timestamp_ms, ingest.topic);
        self.deliveries
            .send_untracked(changelog, ingest.partition, digest, &value);
    }

    /// A suppressed duplicate: nothing to send, its offset may advance.
    fn suppressed(&mut self, ticket: Ticket, shape: Shape) {
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
    fn advance(&mut self, ticket: Ticket) {
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
    /// (exactly-once: they go into the open transaction instead).
    fn store_offsets(&mut self) {
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

fn ingest_meta<'m>(message: &'m BorrowedMessage<'_>) -> IngestMeta<'m> {
    IngestMeta {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis().unwrap_or_else(now_ms),
    }
}

fn lock(tracker: &Mutex<OffsetTracker>) -> MutexGuard<'_, OffsetTracker> {
    tracker.lock().unwrap_or_else(|p| p.into_inner())
}

/// `records_consumed_total` and `consumed_bytes_total` of one ingest topic.
struct TopicCounters {
    records: IntCounter,
    bytes: IntCounter,
}

impl Io<'_> {
    fn count_consumed(&mut self, message: &BorrowedMessage<'_>) {
        // Labelled by the subscribed topic only (a bounded, configured set),
        // resolved once per topic rather than looked up per record.
        let topic = message.topic();
        let counters = match self.topic_counters.get(topic) {
            Some(counters) => counters,
            None => self
                .topic_counters
                .entry(topic.to_owned())
                .or_insert_with(|| TopicCounters {
                    records: self.metrics.records_consumed.with_label_values(&[topic]),
                    bytes: self.metrics.consumed_bytes.with_label_values(&[topic]),
                }),
        };
        counters.records.inc();
        let bytes = message.payload().map_or(0, <[u8]>::len) as u64;
        counters.bytes.inc_by(bytes);
    }
}
