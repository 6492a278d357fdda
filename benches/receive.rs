//! `codat-stream receive` under a fixed offered rate, beside a plain HTTP
//! server on the same stack that answers without verifying or producing
//! (`examples/plain_http.rs`), each in its own process, measured the same
//! way.
//!
//! `./scripts/bench.sh` does not run this one; run:
//!
//! ```text
//! cargo build --profile dist --example plain_http
//! cargo bench --profile dist --bench receive -- [--rate 2000] [--secs 15] [--connections 32]
//! ```
//!
//! The load: `--connections` kept-alive HTTP/1.1 connections, each sending
//! its share of `--rate` requests per second on a fixed schedule for
//! `--secs` seconds: request `k` of a connection is due at `start + k *
//! connections / rate` (offset per connection). Latency is measured from
//! when a request was *due*, not when it was sent, so a server that falls
//! behind is charged for the queueing it causes (no coordinated omission).
//! Bodies are the seed `connection.failed` webhook (1.3 KB) with a
//! unique id each, signed beforehand (Standard Webhooks, one secret).
//!
//! The contenders: `codat-stream receive` (the dist profile) producing each body to
//! a fresh Apache Kafka broker's 6-partition topic with `acks=all` and answering
//! 200 only once acknowledged; and the plain server. Over the load window,
//! from /proc of each server's own process: requests/s answered, p50 and
//! p99 latency, CPU-µs per request (utime+stime), peak RSS (VmHWM). The
//! broker's CPU is not the receiver's and is not counted. Results go to
//! `target/bench/receive.json`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use codat_stream::core::signature::{SigningKey, sign};
use serde_json::json;
use support::mock_kafka::example_binary;
use support::procfs::{proc_cpu, proc_hwm};
use support::*;

struct Args {
    rate: u64,
    secs: u64,
    connections: usize,
}

fn args() -> Args {
    let mut a = Args {
        rate: 2000,
        secs: 15,
        connections: 32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse::<u64>().ok());
        match flag.as_str() {
            "--rate" => a.rate = value().unwrap_or(a.rate),
            "--secs" => a.secs = value().unwrap_or(a.secs),
            "--connections" => a.connections = value().map_or(a.connections, |v| v as usize),
            _ => {}
        }
    }
    a
}

/// Requests signed beforehand: (headers, body).
fn deliveries(n: usize) -> Vec<Delivery> {
    let key = SigningKey::parse(SECRET_A).expect("secret");
    let ts = now_secs();
    let template = std::fs::read_to_string(fixtures().join("docs/000--1.json")).expect("seed");
    (0..n)
        .map(|i| {
            let body = template.replace(
                "ba29118f-5406-4e59-b05c-ba307ca38d01",
                &format!("bench-{i:08}"),
            );
            let id = format!("msg_bench_{i}");
            let headers = vec![
                ("webhook-id".to_owned(), id.clone().into_bytes()),
                ("webhook-timestamp".to_owned(), ts.to_string().into_bytes()),
                (
                    "webhook-signature".to_owned(),
                    sign(&key, &id, ts, body.as_bytes()).into_bytes(),
                ),
            ];
            (headers, body.into_bytes())
        })
        .collect()
}

struct Measured {
    answered: usize,
    ok: usize,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_request: f64,
    peak_rss_mb: f64,
}

/// Drives `listen` at the offered rate; measures the server `pid`.
fn drive(listen: &str, pid: u32, path: &str, a: &Args, work: &[Delivery]) -> Measured {
    let per_conn_interval = Duration::from_secs_f64(a.connections as f64 / a.rate as f64);
    let total = (a.rate * a.secs) as usize;
    let cpu_before = proc_cpu(pid);
    let start = Instant::now() + Duration::from_millis(200);
    let threads: Vec<_> = (0..a.connections)
        .map(|c| {
            let listen = listen.to_owned();
            let path = path.to_owned();
            let mine: Vec<Delivery> = work
                .iter()
                .skip(c)
                .step_by(a.connections)
                .take(total / a.connections)
                .cloned()
                .collect();
            let offset = per_conn_interval.mul_f64(c as f64 / a.connections as f64);
            std::thread::spawn(move || {
                let mut conn = HttpConn::connect(&listen);
                let mut out = Vec::with_capacity(mine.len());
                for (k, (headers, body)) in mine.iter().enumerate() {
                    let due = start + offset + per_conn_interval.mul_f64(k as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let status = conn.post(&path, headers, body).map_or(0, |(s, _)| s);
                    if status != 200 {
                        conn = HttpConn::connect(&listen);
                    }
                    out.push((status, Instant::now().duration_since(due)));
                }
                out
            })
        })
        .collect();
    let results: Vec<(u16, Duration)> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("load thread"))
        .collect();
    let window = start.elapsed();
    let cpu = proc_cpu(pid) - cpu_before;
    let mut lat: Vec<f64> = results.iter().map(|(_, d)| d.as_secs_f64() * 1e3).collect();
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    Measured {
        answered: results.len(),
        ok,
        per_sec: results.len() as f64 / window.as_secs_f64(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        cpu_us_per_request: cpu * 1e6 / results.len().max(1) as f64,
        peak_rss_mb: proc_hwm(pid) as f64 / 1e6,
    }
}

fn main() {
    let a = args();
    let total = (a.rate * a.secs) as usize;
    eprintln!("signing {total} requests...");
    let work = deliveries(total);

    // codat-stream receive on a fresh broker.
    let broker = Broker::start();
    let topic = unique("bench-ingest").replace('-', "_");
    broker.create_topic(&topic, 6);
    let receiver = Receiver::start(
        &broker.bootstrap(),
        &topic,
        &[("CODAT_STREAM__LOG__LEVEL", "warn")],
    );
    receiver.wait_ready(Duration::from_secs(60));
    // Warm-up: connections, the producer's id, the first batches.
    let warm = Args {
        rate: 200,
        secs: 2,
        connections: a.connections.min(8),
    };
    drive(
        &receiver.listen,
        receiver.child.id(),
        SIGNED_PATH,
        &warm,
        &deliveries(400),
    );
    eprintln!(
        "receive: {} req/s for {} s from {} connections...",
        a.rate, a.secs, a.connections
    );
    let recv = drive(
        &receiver.listen,
        receiver.child.id(),
        SIGNED_PATH,
        &a,
        &work,
    );
    drop(receiver);
    drop(broker);

    // The plain server.
    let listen = format!("127.0.0.1:{}", free_port());
    let mut plain = Command::new(example_binary("plain_http"))
        .arg(&listen)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("plain_http (cargo build --profile dist --example plain_http)");
    let mut line = String::new();
    BufReader::new(plain.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    drive(&listen, plain.id(), SIGNED_PATH, &warm, &deliveries(400));
    eprintln!("plain_http: the same load...");
    let floor = drive(&listen, plain.id(), SIGNED_PATH, &a, &work);
    let _ = plain.kill();
    let _ = plain.wait();

    println!(
        "\noffered {} req/s for {} s from {} connections ({} requests)\n",
        a.rate, a.secs, a.connections, total
    );
    println!("| | answered/s | 200s | p50 ms | p99 ms | CPU-µs/request | peak RSS MB |");
    println!("|---|---|---|---|---|---|---|");
    for (name, m) in [
        ("codat-stream receive", &recv),
        ("plain_http (no verify, no Kafka)", &floor),
    ] {
        println!(
            "| {name} | {:.0} | {}/{} | {:.2} | {:.2} | {:.0} | {:.1} |",
            m.per_sec, m.ok, m.answered, m.p50_ms, m.p99_ms, m.cpu_us_per_request, m.peak_rss_mb
        );
    }
    println!(
        "| ratio | {:.2} | | {:.1}x | {:.1}x | {:.1}x | {:.1}x |",
        recv.per_sec / floor.per_sec,
        recv.p50_ms / floor.p50_ms,
        recv.p99_ms / floor.p99_ms,
        recv.cpu_us_per_request / floor.cpu_us_per_request,
        recv.peak_rss_mb / floor.peak_rss_mb
    );
    let out = json!({
        "offered_per_sec": a.rate, "secs": a.secs, "connections": a.connections,
        "receive": {"per_sec": recv.per_sec, "ok": recv.ok, "answered": recv.answered, "p50_ms": recv.p50_ms, "p99_ms": recv.p99_ms, "cpu_us_per_request": recv.cpu_us_per_request, "peak_rss_mb": recv.peak_rss_mb},
        "plain_http": {"per_sec": floor.per_sec, "ok": floor.ok, "answered": floor.answered, "p50_ms": floor.p50_ms, "p99_ms": floor.p99_ms, "cpu_us_per_request": floor.cpu_us_per_request, "peak_rss_mb": floor.peak_rss_mb},
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join("receive.json"),
        serde_json::to_string_pretty(&out).unwrap_or_default(),
    );
}
