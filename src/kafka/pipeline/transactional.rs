//! Exactly-once on the hot loop: when a transaction ends (committed once
//! every output is acknowledged, or aborted and rewound), and what an
//! abort undoes.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::warn;

use super::{ACK_WAIT, Hot, Io, PipelineError, REWIND_TIMEOUT, TXN_ACK_WAIT, lock};
use crate::config::Settings;
use crate::kafka::delivery::Deliveries;
use crate::kafka::offsets::Ticket;
use crate::kafka::processor::{Delivered, Prepared};
use crate::kafka::transaction::{Transactions, TxnError};
use crate::ops::events::{InternalEvent, TransactionAborted, TransactionCommitted};

/// Registers the transactional id, retrying while the cluster cannot
/// answer (a restarted instance fences its predecessor here); a shutdown
/// ends the wait.
pub(super) fn init(
    settings: &Settings,
    deliveries: &Deliveries<Delivered>,
    stop: &AtomicBool,
) -> Result<Transactions, PipelineError> {
    let txn = Transactions::new(settings);
    loop {
        match txn.init(deliveries.producer()) {
            Ok(()) => return Ok(txn),
            Err(KafkaError::Transaction(e))
                if e.is_retriable() && !stop.load(Ordering::Relaxed) =>
            {
                warn!(error = %e, "waiting for the cluster to register the transactional id");
            }
            Err(KafkaError::Transaction(e))
                if e.code() == RDKafkaErrorCode::TransactionalIdAuthorizationFailed =>
            {
                return Err(PipelineError::TransactionalIdNotAuthorized {
                    id: settings.transactional_id(),
                    source: KafkaError::Transaction(e),
                });
            }
            Err(e) => return Err(PipelineError::Kafka(e)),
        }
    }
}

impl Hot<'_, '_> {
    /// Commits the open transaction once every output is acknowledged, or
    /// aborts it and rewinds (partitions revoked, an output refused or
    /// failing, the commit refused); returns the input records an abort
    /// gave back (0 when committed). A fatal error (fenced) stops the
    /// pipeline: a newer instance holds the transactional id.
    pub(super) async fn end_transaction<F: Future<Output = ()> + Clone>(
        &mut self,
        shutdown: &F,
    ) -> Result<usize, PipelineError> {
        if !self.io.txn.as_ref().is_some_and(Transactions::pending) {
            return Ok(0);
        }
        if self.sync_assignment() {
            return self.abort_and_rewind("partitions were revoked");
        }
        let wait = self
            .io
            .txn
            .as_ref()
            .map_or(TXN_ACK_WAIT, |t| t.ack_wait().min(TXN_ACK_WAIT));
        let deadline = Instant::now() + wait;
        while !self.io.deliveries.is_empty()
            && !self.io.deliveries.failing()
            && !self.io.deliveries.uncertain()
            && !self.doomed()
        {
            if Instant::now() >= deadline {
                return self.abort_and_rewind("outputs not acknowledged in time");
            }
            self.io.deliveries.poll(ACK_WAIT, &mut self.io.outcomes);
            self.settle_all(shutdown).await;
        }
        if self.io.deliveries.failing() {
            return self.abort_and_rewind("an output failed");
        }
        if self.io.deliveries.uncertain() {
            return self.abort_and_rewind(
                "an output was acknowledged without an offset: written or not, unknown",
            );
        }
        if let Some(why) = self.io.txn.as_ref().and_then(Transactions::doomed) {
            let why = why.to_owned();
            return self.abort_and_rewind(&why);
        }
        // Waiting above polled the consumer: a revoke there must not be
        // followed by a commit of the revoked partitions' offsets.
        if self.sync_assignment() {
            return self.abort_and_rewind("partitions were revoked");
        }
        let Some(txn) = self.io.txn.as_mut() else {
            return Ok(0);
        };
        match txn.commit(
            self.io.deliveries.producer(),
            self.io.consumer,
            self.io.health,
        ) {
            Ok(records) => {
                TransactionCommitted { records }.emit(self.io.metrics);
                Ok(0)
            }
            Err(TxnError::Fatal(e)) => Err(PipelineError::Kafka(e)),
            Err(TxnError::Abortable(e)) => self.abort_and_rewind(&e.to_string()),
        }
    }

    fn doomed(&self) -> bool {
        self.io.txn.as_ref().is_some_and(|t| t.doomed().is_some())
    }

    /// Aborts the open transaction, forgets what was in flight or kept,
    /// seeks back to where the transaction began, and restores the
    /// de-duplication windows (they held the aborted outputs' ids).
    /// Returns the input records the aborted transaction covered: they are
    /// consumed again.
    pub(super) fn abort_and_rewind(&mut self, why: &str) -> Result<usize, PipelineError> {
        let Some(txn) = self.io.txn.as_mut() else {
            return Ok(0);
        };
        TransactionAborted { why }.emit(self.io.metrics);
        let records = match txn.abort(self.io.deliveries.producer(), self.io.health) {
            Ok(records) => records,
            Err(TxnError::Fatal(e) | TxnError::Abortable(e)) => {
                return Err(PipelineError::Kafka(e));
            }
        };
        // Sought before the tracker forgets the aborted records: the rewind
        // targets are those of the partitions' current assignment epochs.
        let tracker = self.io.tracker;
        txn.rewind(self.io.consumer, |p| lock(tracker).epoch(p), REWIND_TIMEOUT)?;
        self.io.deliveries.discard_all();
        self.io.outcomes.clear();
        self.io.deferred.clear();
        self.io.deferred_bytes = 0;
        self.io.to_store.clear();
        lock(tracker).revoke_all();
        if let Some(dedup) = self.processor.dedup() {
            let assigned = dedup.partitions();
            if let Err(error) = dedup.restore(&assigned) {
                crate::ops::events::DedupRestoreFailed { error: &error }.emit(self.io.metrics);
            }
        }
        Ok(records)
    }
}

impl Io<'_> {
    /// An output (or a suppression) is about to go into the transaction.
    pub(super) fn in_transaction(&mut self) {
        if let Some(txn) = self.txn.as_mut() {
            txn.record(self.deliveries.producer());
        }
    }

    /// Notes a consumed record's position (where an abort rewinds to).
    pub(super) fn consumed_in_transaction(&mut self, ticket: &Ticket) {
        if let Some(txn) = self.txn.as_mut() {
            txn.consumed(ticket);
        }
    }

    /// The open transaction may only be aborted (no-op at-least-once).
    pub(super) fn doom(&mut self, why: &str) {
        if let Some(txn) = self.txn.as_mut() {
            txn.doom(why.to_owned());
        }
    }

    /// Keeps a refused record's replacement for when it comes again.
    pub(super) fn stash(&mut self, prepared: Prepared, ticket: &Ticket) {
        if let Some(txn) = self.txn.as_mut() {
            txn.stash(ticket, prepared);
        }
    }
}
