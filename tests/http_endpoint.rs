//! The operator's HTTP endpoint under abuse (`http::serve` on a loopback
//! port): a flood of idle and slow-loris connections cannot keep `/healthz`
//! from answering, idle connections are closed, keep-alive and request
//! heads are bounded, only bodiless GETs are served, and no liveness
//! timeout wraps `/healthz` into failing.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use codat_stream::ops::health::Health;
use codat_stream::ops::http::{self, Status};
use codat_stream::ops::metrics::Metrics;
use support::wait_for;

/// More idle connections than the endpoint keeps open (256).
const IDLE_FLOOD: usize = 400;
const SLOW_LORIS: usize = 20;
/// What a Kubernetes probe with `timeoutSeconds: 1` allows.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

struct Endpoint {
    addr: String,
    health: Arc<Health>,
    _runtime: tokio::runtime::Runtime,
}

fn start(liveness_timeout_ms: u64) -> Endpoint {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(http::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let health = Arc::new(Health::default());
    health.beat();
    let status = Status {
        health: health.clone(),
        metrics: Arc::new(Metrics::new().unwrap()),
        liveness_timeout_ms,
    };
    runtime.spawn(http::serve(listener, status));
    Endpoint {
        addr,
        health,
        _runtime: runtime,
    }
}

/// Whether the server still holds `stream` open (nothing to read yet).
fn is_open(stream: &TcpStream) -> bool {
    matches!(stream.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// A connection, or None when the server's accept queue is full (a server
/// that stops accepting would otherwise leave connect waiting for minutes).
fn connect(addr: &str) -> Option<TcpStream> {
    let addr = addr.parse().ok()?;
    TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()
}

fn connect_idle(addr: &str) -> Option<TcpStream> {
    let stream = connect(addr)?;
    stream.set_nonblocking(true).ok()?;
    Some(stream)
}

/// Sets the flag when dropped: the attackers stop however the test ends.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Keeps `n` connections open that never send a byte, reopening (at most
/// 50 per 50 ms) those the server closes, until `stop`. `attempts` counts
/// connection attempts.
fn hold_idle_flood(addr: &str, n: usize, stop: &AtomicBool, attempts: &AtomicUsize) {
    let mut held: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    for _round in 0..1_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let closed = held.iter_mut().filter(|s| !s.as_ref().is_some_and(is_open));
        for slot in closed.take(50) {
            *slot = connect_idle(addr);
            attempts.fetch_add(1, Ordering::Relaxed);
        }
        // Pacing the attacker, not synchronising with the server.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Keeps `n` connections sending a request head one byte per 500 ms (a
/// head that never ends), reopening those the server closes, until `stop`.
fn hold_slow_loris(addr: &str, n: usize, stop: &AtomicBool) {
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut held: Vec<Option<(TcpStream, usize)>> = (0..n).map(|_| None).collect();
    for _round in 0..200 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        for slot in &mut held {
            let (mut stream, sent) = match slot.take() {
                Some(s) => s,
                None => match connect(addr) {
                    Some(s) => (s, 0),
                    None => continue,
                },
            };
            let byte = head.get(sent).copied().unwrap_or(b'a');
            if stream.write_all(&[byte]).is_ok() {
                *slot = Some((stream, sent + 1));
            }
        }
        // The attack's pace: one byte per connection per 500 ms.
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn probe_healthz(addr: &str) -> (std::io::Result<u16>, Duration) {
    let started = Instant::now();
    let status = http::probe(addr, "/healthz", PROBE_TIMEOUT);
    (status, started.elapsed())
}

#[test]
fn healthz_answers_within_a_second_while_idle_and_slow_connections_flood_it() {
    let endpoint = start(60_000);
    let stop = AtomicBool::new(false);
    let attempts = AtomicUsize::new(0);
    let answers = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| hold_idle_flood(&endpoint.addr, IDLE_FLOOD, &stop, &attempts));
        s.spawn(|| hold_slow_loris(&endpoint.addr, SLOW_LORIS, &stop));
        wait_for("the flood to be open", Duration::from_secs(20), || {
            attempts.load(Ordering::Relaxed) >= IDLE_FLOOD
        });
        // Probes spread over more than a header timeout, so the flood is
        // also probed after the server has closed and the attacker reopened.
        let mut answers = Vec::new();
        for _ in 0..12 {
            endpoint.health.beat();
            answers.push(probe_healthz(&endpoint.addr));
            std::thread::sleep(Duration::from_millis(250));
        }
        answers
    });
    for (i, (status, took)) in answers.iter().enumerate() {
        assert!(
            matches!(status, Ok(200)) && *took < PROBE_TIMEOUT,
            "probe {i} during the flood: {status:?} after {took:?}"
        );
    }
}

#[test]
fn a_huge_liveness_timeout_keeps_healthz_up_while_the_loop_beats() {
    for timeout in [u64::MAX, i64::MAX as u64 + 1, 1 << 63 | 12345] {
        let endpoint = start(timeout);
        for _ in 0..3 {
            endpoint.health.beat();
            let (status, _) = probe_healthz(&endpoint.addr);
            assert_eq!(status.unwrap(), 200, "liveness_timeout_ms = {timeout}");
        }
    }
}

#[test]
fn a_stalled_loop_still_fails_healthz() {
    let endpoint = start(1_000);
    let now = endpoint.health.last_loop_ms.load(Ordering::Relaxed);
    endpoint
        .health
        .last_loop_ms
        .store(now - 5_000, Ordering::Relaxed);
    assert_eq!(probe_healthz(&endpoint.addr).0.unwrap(), 503);
    // A clock stepped back is not a stall.
    endpoint
        .health
        .last_loop_ms
        .store(now + 60_000, Ordering::Relaxed);
    assert_eq!(probe_healthz(&endpoint.addr).0.unwrap(), 200);
}

#[test]
fn an_idle_connection_is_closed_within_the_header_timeout() {
    let endpoint = start(60_000);
    let idle = connect_idle(&endpoint.addr).unwrap();
    let opened = Instant::now();
    wait_for(
        "the server to close an idle connection",
        Duration::from_secs(5),
        || !is_open(&idle),
    );
    assert!(opened.elapsed() >= Duration::from_secs(1), "not at once");
}

/// Sends `request` and reads what comes back until the server closes (a
/// reset after a refusal ends it too; the read timeout bounds it).
fn exchange(addr: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may refuse before reading all of it.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut chunk) {
        answer.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_kept_alive_connection_serves_a_bounded_number_of_requests() {
    const MAX_REQUESTS_PER_CONNECTION: usize = 100;
    let endpoint = start(60_000);
    let request = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let pipelined = request.repeat(MAX_REQUESTS_PER_CONNECTION + 5);
    let answer = exchange(&endpoint.addr, pipelined.as_bytes());
    assert_eq!(
        answer.matches("HTTP/1.1 200 OK").count(),
        MAX_REQUESTS_PER_CONNECTION
    );
    assert!(answer.to_ascii_lowercase().contains("connection: close"));
}

#[test]
fn only_small_bodiless_gets_are_served() {
    let endpoint = start(60_000);
    let addr = &endpoint.addr;
    let status_of = |answer: String| answer.split_whitespace().nth(1).map(str::to_owned);

    let post = "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(
        status_of(exchange(addr, post.as_bytes())).as_deref(),
        Some("405")
    );

    let get_with_body = "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(
        status_of(exchange(addr, get_with_body.as_bytes())).as_deref(),
        Some("413")
    );

    let big_head = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    assert_eq!(
        status_of(exchange(addr, big_head.as_bytes())).as_deref(),
        Some("431")
    );

    let plain = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(
        status_of(exchange(addr, plain.as_bytes())).as_deref(),
        Some("200")
    );
}
