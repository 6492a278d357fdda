//! The operator's HTTP endpoint: `/metrics` (Prometheus text format),
//! `/healthz` (liveness: the processing loop goes round) and `/readyz`
//! (readiness: started, brokers reachable, nothing failing, not draining).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::pipeline::{Health, now_ms};

/// Most connections served at once; scrapers and probes need a handful.
const MAX_CONNECTIONS: usize = 64;

/// A connection that sends nothing for this long is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Serves requests until the task is dropped.
pub async fn serve(listener: TcpListener, status: Status) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait, don't spin.
                warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let status = status.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let status = status.clone();
                async move { Ok::<_, Infallible>(respond(&req, &status)) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(error = %e, %peer, "http connection ended");
            }
            drop(permit);
        });
    }
}

fn respond(req: &Request<Incoming>, status: &Status) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            status
                .metrics
                .ready
                .set(i64::from(status.health.is_ready()));
            let mut r = text(StatusCode::OK, status.metrics.render());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => {
            let still_ms = now_ms() - status.health.last_loop_ms.load(Ordering::Relaxed);
            if still_ms <= status.liveness_timeout_ms as i64 {
                text(StatusCode::OK, "ok\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("processing loop stalled for {still_ms} ms\n"),
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
