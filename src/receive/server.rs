//! The webhook listener: connections accepted at once and served with
//! bounded heads, read deadlines and a bounded count; on shutdown, no
//! more connections, in-flight requests finished (their records
//! acknowledged), then done.
//!
//! The flood-proofing follows `ops::http`: every connection is accepted
//! immediately and, past `receive.max_connections`, the oldest one that is
//! *not in the middle of a request* is closed to make room, so idle or
//! slow-head connections cannot hold the listener while a request whose
//! record is being produced is never cut. A head must arrive within
//! `receive.header_timeout_ms` (hyper's timer, also the keep-alive idle
//! limit), a body within `receive.body_timeout_ms`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::config::ReceiveSettings;
use crate::ops::metrics::Metrics;
use crate::receive::handler::Receiver;

/// A kept-alive connection is closed gracefully (after its current
/// request) this long after it was accepted.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// hyper's per-connection read buffer floor.
const MIN_READ_BUFFER_BYTES: usize = 8192;

/// Limits of the listener, from `[receive]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most open connections.
    pub max_connections: usize,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Most request headers.
    pub max_headers: usize,
    /// Time to send a head.
    pub header_timeout: Duration,
    /// How long in-flight requests have on shutdown.
    pub drain_timeout: Duration,
}

impl Limits {
    /// The limits configured in `[receive]`.
    pub fn of(r: &ReceiveSettings) -> Limits {
        Limits {
            max_connections: r.max_connections,
            max_header_bytes: r.max_header_bytes,
            max_headers: r.max_headers,
            header_timeout: Duration::from_millis(r.header_timeout_ms),
            drain_timeout: Duration::from_millis(r.drain_timeout_ms),
        }
    }
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every in-flight request was answered.
    Completely,
    /// `drain_timeout` passed with requests still open.
    TimedOut,
}

/// Serves `listener` until `shutdown` completes, then stops accepting and
/// waits (at most `limits.drain_timeout`) for open requests to be answered.
pub async fn serve(
    listener: TcpListener,
    receiver: Arc<Receiver>,
    metrics: Arc<Metrics>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Each connection task holds a sender; when the last is dropped, every
    // connection has ended (mini-redis's shutdown pattern).
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let open = OpenConnections::new(limits.max_connections, metrics.clone());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait, don't spin.
                warn!(error = %e, "webhook accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some((slot, evicted)) = open.admit() else {
            debug!(%peer, "every webhook connection is in a request: refusing a new one");
            continue;
        };
        let connection = Connection {
            receiver: receiver.clone(),
            limits: limits.clone(),
            stop: stop_rx.clone(),
            evicted,
            slot,
            _done: done_tx.clone(),
        };
        tokio::spawn(connection.serve(stream, peer));
    }
    drop(listener);
    info!("webhook listener closed: finishing in-flight requests");
    let _ = stop_tx.send(true);
    drop(done_tx);
    match tokio::time::timeout(limits.drain_timeout, done_rx.recv()).await {
        Ok(_) => Drained::Completely,
        Err(_) => Drained::TimedOut,
    }
}

/// One accepted connection and what it needs.
struct Connection {
    receiver: Arc<Receiver>,
    limits: Limits,
    stop: watch::Receiver<bool>,
    evicted: oneshot::Receiver<()>,
    slot: Slot,
    _done: mpsc::Sender<()>,
}

impl Connection {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let Connection {
            receiver,
            limits,
            mut stop,
            mut evicted,
            slot,
            _done,
        } = self;
        let busy = slot.busy.clone();
        let service = service_fn(move |req| {
            let receiver = receiver.clone();
            let busy = busy.clone();
            async move {
                let _busy = Busy::set(&busy);
                Ok::<_, Infallible>(receiver.handle(req).await)
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes.max(MIN_READ_BUFFER_BYTES))
            .max_header_size(limits.max_header_bytes)
            .max_headers(limits.max_headers);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let lifetime = tokio::time::sleep(CONNECTION_LIFETIME);
        tokio::pin!(lifetime);
        let mut closing = false;
        loop {
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(e) = ended {
                        debug!(error = %e, %peer, "webhook connection ended");
                    }
                    break;
                }
                // Shutdown or the lifetime: finish the current request, if
                // any, then close (hyper's graceful shutdown).
                _ = stop.wait_for(|stopping| *stopping), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = &mut lifetime, if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                // Chosen to make room while between requests: close now.
                _ = &mut evicted => {
                    debug!(%peer, "webhook connection closed to make room for a newer one");
                    break;
                }
            }
        }
        drop(slot);
    }
}

/// Marks a connection as in a request while alive.
struct Busy<'b>(&'b AtomicBool);

impl<'b> Busy<'b> {
    fn set(flag: &'b AtomicBool) -> Busy<'b> {
        flag.store(true, Ordering::Relaxed);
        Busy(flag)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// The open connections, oldest first, each with its "in a request" flag.
#[derive(Clone)]
struct OpenConnections {
    table: Arc<Mutex<Table>>,
    max: usize,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    by_age: BTreeMap<u64, Entry>,
}

struct Entry {
    /// Dropped to close the connection.
    _close: oneshot::Sender<()>,
    busy: Arc<AtomicBool>,
}

/// A connection's place in [`OpenConnections`], given up when it ends.
struct Slot {
    id: u64,
    busy: Arc<AtomicBool>,
    open: OpenConnections,
}

impl OpenConnections {
    fn new(max: usize, metrics: Arc<Metrics>) -> OpenConnections {
        OpenConnections {
            table: Arc::default(),
            max,
            metrics,
        }
    }

    /// Registers a new connection. At the cap, the oldest connection not
    /// in a request is closed for it; when every one is in a request, the
    /// new connection is refused (`None`).
    fn admit(&self) -> Option<(Slot, oneshot::Receiver<()>)> {
        let mut table = self.lock();
        if table.by_age.len() >= self.max {
            let idle = table
                .by_age
                .iter()
                .find(|(_, e)| !e.busy.load(Ordering::Relaxed))
                .map(|(id, _)| *id)?;
            // Dropping its sender wakes its task, which closes the socket.
            table.by_age.remove(&idle);
            self.metrics.receive_connections_evicted.inc();
        }
        let (close, closed) = oneshot::channel();
        let busy = Arc::new(AtomicBool::new(false));
        let id = table.next_id;
        table.next_id += 1;
        table.by_age.insert(
            id,
            Entry {
                _close: close,
                busy: busy.clone(),
            },
        );
        self.metrics
            .receive_connections
            .set(i64::try_from(table.by_age.len()).unwrap_or(i64::MAX));
        let slot = Slot {
            id,
            busy,
            open: self.clone(),
        };
        Some((slot, closed))
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent whatever panicked while holding it.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.open.lock();
        table.by_age.remove(&self.id);
        self.open
            .metrics
            .receive_connections
            .set(i64::try_from(table.by_age.len()).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_cap_the_oldest_idle_connection_makes_room_never_a_busy_one() {
        use oneshot::error::TryRecvError;
        let metrics = Arc::new(Metrics::new().unwrap());
        let open = OpenConnections::new(3, metrics);
        let mut admitted: Vec<_> = (0..3).map(|_| open.admit().unwrap()).collect();
        admitted[0].0.busy.store(true, Ordering::Relaxed);
        let (_fourth, _) = open.admit().unwrap();
        assert_eq!(admitted[0].1.try_recv(), Err(TryRecvError::Empty), "busy");
        assert_eq!(
            admitted[1].1.try_recv(),
            Err(TryRecvError::Closed),
            "oldest idle"
        );
        assert_eq!(admitted[2].1.try_recv(), Err(TryRecvError::Empty));
        for (slot, _) in &admitted {
            slot.busy.store(true, Ordering::Relaxed);
        }
        _fourth.busy.store(true, Ordering::Relaxed);
        assert!(open.admit().is_none(), "every one in a request");
        assert_eq!(admitted[0].1.try_recv(), Err(TryRecvError::Empty));
    }
}
