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
//! The loop is here; its bookkeeping (the consumer and deliveries, what is
//! in flight, offsets stored once acknowledged) is in `io.rs`.
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

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use tracing::{debug, info, warn};

use crate::config::{Guarantee, Settings};
use crate::kafka::consumer::{IngestContext, commit_stored};
use crate::kafka::delivery::{Deliveries, Outcome};
use crate::kafka::ingest_watch::IngestWatch;
use crate::kafka::offsets::{OffsetTracker, Ticket};
use crate::kafka::output::Input;
use crate::kafka::processor::{Delivered, Processor, ProcessorError, StartError, Step};
use crate::kafka::record_headers::InHeaders;
use crate::kafka::transaction::Transactions;
use crate::ops::events::{DedupRestoreFailed, DedupRestored, InternalEvent};
use crate::ops::health::{Health, now_ms};
use crate::ops::metrics::Metrics;
use crate::registry::value_format;

mod bounds;
mod io;
mod transactional;

pub use bounds::Bounds;
use io::{Io, ingest_meta, lock};

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
    /// The drain bound passed first, or the last transaction was aborted;
    /// this many records were not acknowledged and committed, and will be
    /// consumed again.
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
    run_with(settings, None, shutdown, health, metrics).await
}

/// [`run`] over a range: stops by itself, drained, once every partition
/// of `bounds` reached its end (or earlier, at `shutdown`).
pub async fn run_bounded(
    settings: Settings,
    bounds: Bounds,
    shutdown: impl Future<Output = ()> + Send + 'static,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> Result<RunOutcome, PipelineError> {
    run_with(settings, Some(bounds), shutdown, health, metrics).await
}

async fn run_with(
    settings: Settings,
    bounds: Option<Bounds>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> Result<RunOutcome, PipelineError> {
    let runtime = tokio::runtime::Handle::current();
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(HOT_THREAD.to_owned())
        .spawn(move || {
            let outcome = runtime.block_on(run_here(settings, bounds, shutdown, health, metrics));
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
    bounds: Option<Bounds>,
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
    hot.io.bounds = bounds;
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
    let mut deliveries = Deliveries::new(
        &settings.producer_config(),
        health.clone(),
        metrics.clone(),
        settings.pipeline.produce_retry_backoff_max_ms,
    )?;
    if exactly_once {
        deliveries = deliveries.transactional();
    }
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
            "drain timed out, or its last transaction was aborted: \
             uncommitted records will be consumed again"
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
            if drain_deadline.is_none() {
                let why = if stop.load(Ordering::Relaxed) {
                    Some("shutdown requested")
                } else {
                    self.bounds_reached().then_some("the range's end reached")
                };
                if let Some(why) = why {
                    self.io.health.draining.store(true, Ordering::Relaxed);
                    drain_deadline = Some(Instant::now() + drain_timeout);
                    info!(in_flight = self.io.deliveries.len(), "{why}: draining");
                }
            }
            if let Some(deadline) = drain_deadline {
                // An uncertain transaction only waits to be aborted.
                if self.io.deliveries.is_empty() || self.io.deliveries.uncertain() {
                    // Records of a last transaction aborted are not
                    // committed: the run did not drain.
                    return self.end_transaction(shutdown).await;
                }
                if Instant::now() >= deadline {
                    let abandoned = self.io.deliveries.len();
                    let aborted = self.abort_and_rewind("the drain timeout passed")?;
                    return Ok(abandoned.max(aborted));
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
            let uncertain = self.io.deliveries.uncertain();
            if uncertain || self.io.txn.as_ref().is_some_and(Transactions::due) {
                // Records an abort gave back are consumed again.
                self.end_transaction(shutdown).await?;
            }
            if consumed == 0 && self.io.deliveries.is_empty() && drain_deadline.is_none() {
                self.idle(shutdown).await?;
            }
        }
    }

    /// A bounded run reached the end of every partition, and holds no
    /// record kept while it waited (those are processed before the drain).
    fn bounds_reached(&mut self) -> bool {
        let consumer = self.io.consumer;
        self.io.deferred.is_empty()
            && self
                .io
                .bounds
                .as_mut()
                .is_some_and(|b| b.finished(consumer))
    }

    /// Consumes up to a batch while there is room; returns how many.
    async fn consume_batch<F: Future<Output = ()> + Clone>(
        &mut self,
        shutdown: &F,
    ) -> Result<usize, PipelineError> {
        let consumer = self.io.consumer;
        let mut n = 0;
        self.io.batch_started = Some(Instant::now());
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
        self.io.batch_started = None;
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
        self.io.batch_started = None;
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
        let consumed_at = self.io.batch_started.unwrap_or_else(Instant::now);
        if !self.io.admit(message) {
            return Ok(());
        }
        let revoked = self.sync_assignment();
        // Registered first: its position is where a rewind seeks a
        // partition assigned (again) since the last record.
        let ticket = self.io.register(message);
        if revoked && self.io.txn.as_ref().is_some_and(Transactions::pending) {
            // Revoked mid-transaction: abort it and rewind; this record is
            // fetched again.
            return self.abort_and_rewind("partitions were revoked").map(drop);
        }
        let headers = InHeaders::of(message);
        let input = Input {
            key: message.key(),
            value: message.payload(),
            headers: headers.pairs(),
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
        if let Some(spare) = self.io.deliveries.take_spare() {
            self.processor.recycle(spare);
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
            self.io.clock = (Instant::now(), now_ms());
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
