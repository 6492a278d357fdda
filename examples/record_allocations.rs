//! Heap allocations per record on the hot thread's own work: what
//! `Processor::process` does for one consumed record (normalise, encode,
//! build the output record and its headers, keep the input copy; the sent
//! record's buffers reused for the next, as the pipeline does), counted
//! by a global allocator over the bundled sample corpus
//! (`samples/webhooks.jsonl`), each body with two ingest headers as a
//! `receive`-fed record carries. Like instruction counts, the figure does
//! not move with machine load.
//!
//! ```text
//! cargo run --release --example record_allocations [ROUNDS] [process|normalize]
//! ```
//!
//! `normalize` counts the core's normaliser alone, for the split.
//!
//! librdkafka's own allocations (its copy of the record and headers) are
//! C allocations and not counted here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use codat_stream::config::Settings;
use codat_stream::core::normalize::IngestMeta;
use codat_stream::kafka::output::{Input, Spare};
use codat_stream::kafka::processor::{OutputKind, Processor};
use codat_stream::ops::health::Health;
use codat_stream::ops::metrics::Metrics;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(20, |n| n.parse().unwrap_or(20));
    let normalize_only = std::env::args().nth(2).as_deref() == Some("normalize");
    let options = codat_stream::NormalizeOptions::default();
    let mut settings = Settings::default();
    settings.topics.create = false;
    let settings: &'static Settings = Box::leak(Box::new(settings));
    let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new().expect("metrics")));
    let health: &'static Health = Box::leak(Box::new(Health::default()));
    let mut processor = Processor::new(settings, metrics, health).expect("processor");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let sample = include_bytes!("../samples/webhooks.jsonl");
    let bodies = codat_stream::cli::body_file::split_bodies(sample);
    let headers: [(&[u8], Option<&[u8]>); 2] = [
        (b"webhook-id", Some(b"msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")),
        (b"webhook-timestamp", Some(b"1723137034")),
    ];
    let never = futures::future::pending::<()>();
    let mut run = |count: bool| {
        let (mut records, mut envelopes) = (0u64, 0u64);
        let start = (
            ALLOCATIONS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        );
        for (i, body) in bodies.iter().enumerate() {
            let input = Input {
                key: Some(b"company-7"),
                value: Some(body),
                headers: &headers,
                ingest: IngestMeta {
                    topic: "codat.webhooks.raw",
                    partition: (i % 6) as i32,
                    offset: i as i64,
                    timestamp_ms: 1_723_137_034_015,
                },
            };
            records += 1;
            if normalize_only {
                let h = codat_stream::kafka::record_headers::HeaderSlice(&headers);
                let normalized = codat_stream::normalize(body, &h, &input.ingest, &options);
                envelopes += u64::from(normalized.is_ok());
                continue;
            }
            let prepared = runtime
                .block_on(processor.process(&input, &never))
                .expect("no hold without a broker or registry");
            envelopes += u64::from(matches!(prepared.kind, OutputKind::Envelope { .. }));
            // As the pipeline does once librdkafka has copied the record:
            // its buffers are the next record's.
            if let Some(spare) = Spare::of(prepared.record) {
                processor.recycle(spare);
            }
        }
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - start.0;
        let bytes = BYTES.load(Ordering::Relaxed) - start.1;
        (count, records, envelopes, allocations, bytes)
    };
    // The first round resolves metric handles and routes: not per record.
    run(false);
    let (mut records, mut envelopes, mut allocations, mut bytes) = (0, 0, 0, 0);
    for _ in 0..rounds {
        let (_, r, e, a, b) = run(true);
        (records, envelopes, allocations, bytes) =
            (records + r, envelopes + e, allocations + a, bytes + b);
    }
    println!(
        "records={records} envelopes={envelopes} allocations/record={:.2} bytes/record={:.0}",
        allocations as f64 / records as f64,
        bytes as f64 / records as f64
    );
}
