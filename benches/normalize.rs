//! Normalise + Avro-encode throughput over the published examples.
//! `cargo bench --bench normalize`; criterion reports time per body and
//! bodies/s (one core: the loop is single-threaded).

use std::hint::black_box;

use codat_stream::core::envelope_avro::AvroError;
use codat_stream::{EnvelopeCodec, IngestMeta, NormalizeOptions, normalize};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bodies() -> Vec<Vec<u8>> {
    let sample = include_bytes!("../samples/webhooks.jsonl");
    codat_stream::cli::body_file::split_bodies(sample)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
}

fn bench(c: &mut Criterion) {
    let all = bodies();
    let options = NormalizeOptions::default();
    let codec = EnvelopeCodec::new().unwrap();
    let ingest = IngestMeta {
        topic: "codat.webhooks",
        partition: 0,
        offset: 0,
        timestamp_ms: 1_700_000_000_000,
    };

    let mut group = c.benchmark_group("normalize");
    group.throughput(Throughput::Elements(all.len() as u64));
    // The direct writer, and apache-avro's generic writer it replaced: the
    // two figures come from the same run.
    group.bench_function("normalize+avro/fixture-mix", |b| {
        b.iter(|| encode_all(&all, &options, &ingest, |e, out| codec.encode_into(e, out)))
    });
    group.bench_function("normalize+apache-avro/fixture-mix", |b| {
        b.iter(|| {
            encode_all(&all, &options, &ingest, |e, out| {
                codec.encode_with_apache_avro(e, out)
            })
        })
    });
    group.bench_function("normalize-only/fixture-mix", |b| {
        b.iter(|| {
            for body in &all {
                let _ = black_box(normalize(black_box(body), &(), &ingest, &options));
            }
        })
    });
    group.finish();
}

/// Normalises every body and encodes each envelope with `encode`.
fn encode_all(
    all: &[Vec<u8>],
    options: &NormalizeOptions,
    ingest: &IngestMeta<'_>,
    encode: impl Fn(&codat_stream::Envelope<'_>, &mut Vec<u8>) -> Result<(), AvroError>,
) {
    let mut out = Vec::with_capacity(4096);
    for body in all {
        if let Ok(env) = normalize(black_box(body), &(), ingest, options) {
            out.clear();
            encode(&env, &mut out).unwrap();
            black_box(&out);
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
