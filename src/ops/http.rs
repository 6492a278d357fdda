//! The operator's HTTP endpoint: `/metrics` (Prometheus text format),
//! `/healthz` (liveness: the processing loop goes round) and `/readyz`
//! (readiness: started, brokers reachable, nothing failing, not draining).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::ops::health::{Health, now_ms};
use crate::ops::metrics::Metrics;

/// Most connections open at once. Past it the oldest is closed to make room:
/// a flood of idle or slow connections then costs a probe one accept, not a
/// wait for a slot (scrapers and probes need a handful, each for milliseconds).
pub const MAX_CONNECTIONS: usize = 256;

/// Time a client has to send a request head; hyper restarts it while a
/// kept-alive connection waits for its next request, so it is also the idle
/// keep-alive limit. Probes send their request as soon as they connect.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection is closed this long after it was accepted, whatever it is
/// doing: a client reading its answer slowly cannot keep a slot either.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(10);

/// Requests served on one kept-alive connection; the last answer says
/// `Connection: close`.
pub const MAX_REQUESTS_PER_CONNECTION: u32 = 100;

/// Largest request head (request line and headers); a probe's is ~100 bytes.
/// Larger heads are answered 431.
pub const MAX_HEADER_BYTES: usize = 4096;

/// hyper's per-connection read buffer; 8 KiB is the smallest it accepts.
const READ_BUFFER_BYTES: usize = 8192;

/// What the endpoint reports on.
#[derive(Clone)]
pub struct Status {
    /// Liveness and readiness flags.
    pub health: Arc<Health>,
    /// The metric registry.
    pub metrics: Arc<Metrics>,
    /// `/healthz` fails when the loop has been still this long.
    pub liveness_timeout_ms: u64,
}

/// Binds `addr`; the returned listener is served by [`serve`].
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    info!(address = %listener.local_addr()?, "http endpoint listening (/metrics, /healthz, /readyz)");
    Ok(listener)
}

/// Serves requests until the task is dropped. Every connection is accepted
/// at once (never left waiting in the kernel's queue behind others).
pub async fn serve(listener: TcpListener, status: Status) {
    let open = OpenConnections::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait, don't spin.
                warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (slot, closed) = open.admit();
        tokio::spawn(serve_connection(stream, peer, status.clone(), closed, slot));
    }
}

/// One connection, until it ends, reaches [`CONNECTION_LIFETIME`], or is
/// closed to make room (`closed` resolves).
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    status: Status,
    closed: oneshot::Receiver<()>,
    _slot: Slot,
) {
    let served = AtomicU32::new(0);
    let service = service_fn(move |req| {
        let mut response = respond(&req, &status);
        if served.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_REQUESTS_PER_CONNECTION {
            close_after(&mut response);
        }
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = connection_builder().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        ended = tokio::time::timeout(CONNECTION_LIFETIME, connection) => match ended {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!(error = %e, %peer, "http connection ended"),
            Err(_) => debug!(%peer, "http connection closed at its lifetime"),
        },
        _ = closed => debug!(%peer, "http connection closed to make room for a newer one"),
    }
}

fn connection_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(READ_BUFFER_BYTES)
        .max_header_size(MAX_HEADER_BYTES);
    builder
}

/// The open connections, oldest first. Dropping a connection's sender
/// wakes its task, which then drops the socket.
#[derive(Clone, Default)]
struct OpenConnections(Arc<Mutex<Table>>);

#[derive(Default)]
struct Table {
    next_id: u64,
    by_age: BTreeMap<u64, oneshot::Sender<()>>,
}

/// A connection's place in [`OpenConnections`], given up when its task ends.
struct Slot {
    id: u64,
    open: OpenConnections,
}

impl OpenConnections {
    /// Registers a new connection, closing the oldest ones past the cap.
    fn admit(&self) -> (Slot, oneshot::Receiver<()>) {
        let (close, closed) = oneshot::channel();
        let mut table = self.lock();
        let id = table.next_id;
        table.next_id += 1;
        table.by_age.insert(id, close);
        while table.by_age.len() > MAX_CONNECTIONS {
            table.by_age.pop_first();
        }
        let slot = Slot {
            id,
            open: self.clone(),
        };
        (slot, closed)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent whatever panicked while holding it.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.lock().by_age.remove(&self.id);
    }
}

/// Probes and scrapers send bodiless GETs; anything else is answered
/// without reading it and the connection closed.
fn respond(req: &Request<Incoming>, status: &Status) -> Response<Full<Bytes>> {
    let refusal = if req.method() != Method::GET && req.method() != Method::HEAD {
        Some((StatusCode::METHOD_NOT_ALLOWED, "GET only\n"))
    } else if !req.body().is_end_stream() {
        Some((StatusCode::PAYLOAD_TOO_LARGE, "no request body expected\n"))
    } else {
        None
    };
    match refusal {
        Some((code, why)) => {
            let mut r = text(code, why.into());
            close_after(&mut r);
            r
        }
        None => route(req.uri().path(), status),
    }
}

fn route(path: &str, status: &Status) -> Response<Full<Bytes>> {
    match path {
        "/metrics" => {
            status
                .metrics
                .ready
                .set(i64::from(status.health.is_ready()));
            let mut r = text(StatusCode::OK, status.metrics.render());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => {
            let still = still_ms(now_ms(), status.health.last_loop_ms.load(Ordering::Relaxed));
            if still <= status.liveness_timeout_ms {
                text(StatusCode::OK, "ok\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("processing loop stalled for {still} ms\n"),
                )
            }
        }
        "/readyz" => {
            let reasons = status.health.not_ready_reasons();
            if reasons.is_empty() {
                text(StatusCode::OK, "ready\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {}\n", reasons.join(", ")),
                )
            }
        }
        "/" => text(
            StatusCode::OK,
            "codat-stream: /metrics /healthz /readyz\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// How long the loop has been still, in u64 so that no liveness timeout can
/// wrap the comparison; a clock stepped back reads as 0, not negative.
fn still_ms(now_ms: i64, last_loop_ms: i64) -> u64 {
    u64::try_from(now_ms.saturating_sub(last_loop_ms)).unwrap_or(0)
}

fn close_after(response: &mut Response<Full<Bytes>>) {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
}

fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r
}

/// GETs `path` from `addr` (HTTP/1.0) and returns the status code: the
/// container's health check, which has no curl.
pub fn probe(addr: &str, path: &str, timeout: Duration) -> std::io::Result<u16> {
    use std::io::{Error, ErrorKind, Read, Write};
    let target = std::net::ToSocketAddrs::to_socket_addrs(addr)?
        .next()
        .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "address resolves to nothing"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    // The status line is all that is needed; bound what is read.
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, "not an HTTP response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stillness_never_wraps_or_goes_negative() {
        assert_eq!(still_ms(10_000, 4_000), 6_000);
        assert_eq!(still_ms(4_000, 10_000), 0, "clock stepped back");
        assert_eq!(
            still_ms(i64::MAX, i64::MIN),
            u64::try_from(i64::MAX).unwrap()
        );
        assert_eq!(still_ms(i64::MIN, i64::MAX), 0);
        assert_eq!(still_ms(1_700_000_000_000, 0), 1_700_000_000_000);
    }

    #[test]
    fn past_the_cap_the_oldest_connection_is_closed() {
        use oneshot::error::TryRecvError;
        let open = OpenConnections::default();
        let mut admitted: Vec<_> = (0..MAX_CONNECTIONS).map(|_| open.admit()).collect();
        let (_newest, mut newest_closed) = open.admit();
        let (_, oldest_closed) = &mut admitted[0];
        assert_eq!(oldest_closed.try_recv(), Err(TryRecvError::Closed));
        let (_, second_closed) = &mut admitted[1];
        assert_eq!(second_closed.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(newest_closed.try_recv(), Err(TryRecvError::Empty));
        drop(admitted);
        assert_eq!(
            open.lock().by_age.len(),
            1,
            "ended connections give up their slot"
        );
    }
}
