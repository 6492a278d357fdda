//! The `receive` benchmark's floor: an HTTP server on the same stack as
//! `codat-stream receive` (hyper 1, HTTP/1.1, tokio's multi-threaded
//! runtime, the same head limits) that reads each POST's body and answers
//! 200 at once: no routing table, no signature check, no Kafka. What it
//! costs is what any webhook endpoint on this stack pays at least.
//!
//! ```text
//! plain_http LISTEN_ADDRESS
//! ```
//!
//! Prints `listening` once bound; runs until killed.

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let status = match Limited::new(req.into_body(), 1024 * 1024).collect().await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::PAYLOAD_TOO_LARGE,
    };
    let mut r = Response::new(Full::new(Bytes::from_static(b"stored\n")));
    *r.status_mut() = status;
    Ok(r)
}

fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&address).await?;
        println!("listening");
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let mut builder = http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .max_buf_size(16 * 1024)
                    .max_header_size(16 * 1024)
                    .max_headers(64);
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    })
}
