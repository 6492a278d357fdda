//! The core's cost in instructions per body, for callgrind: normalise +
//! Avro-encode the bundled sample corpus (`samples/webhooks.jsonl`, the mix
//! `benches/normalize.rs` times) ROUNDS times, nothing else.
//!
//! ```text
//! scripts/core-instructions.sh            # builds, runs under callgrind, prints Ir/body
//! core_instructions [ROUNDS] [all|normalize]
//! ```
//!
//! Wall-clock figures move with whatever else the machine runs; callgrind's
//! instruction counts do not. The loop is in [`run_corpus`], so
//! `--toggle-collect=*run_corpus*` counts the loop alone (corpus loading,
//! codec set-up and process start excluded).

use std::hint::black_box;

use codat_stream::{EnvelopeCodec, IngestMeta, NormalizeOptions, normalize};

/// What one round does to each body.
#[derive(Clone, Copy)]
enum Mode {
    /// Normalise, then Avro-encode the envelope (the bench's main figure).
    All,
    /// Normalise only.
    Normalize,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = match args.next() {
        Some(n) => n.parse().unwrap_or_else(|_| usage()),
        None => 100,
    };
    let mode = match args.next().as_deref() {
        None | Some("all") => Mode::All,
        Some("normalize") => Mode::Normalize,
        Some(_) => usage(),
    };
    let sample = include_bytes!("../samples/webhooks.jsonl");
    let bodies: Vec<&[u8]> = codat_stream::cli::body_file::split_bodies(sample);
    let options = NormalizeOptions::default();
    let codec = EnvelopeCodec::new().unwrap_or_else(|e| panic!("codec: {e}"));
    let mut out = Vec::with_capacity(4096);
    let mut accepted = 0;
    for _ in 0..rounds {
        accepted += run_corpus(&bodies, &options, &codec, &mut out, mode);
    }
    println!(
        "bodies={} rounds={rounds} processed={} accepted={accepted}",
        bodies.len(),
        bodies.len() * rounds
    );
}

fn usage() -> ! {
    eprintln!("usage: core_instructions [ROUNDS] [all|normalize]");
    std::process::exit(2)
}

/// One pass over the corpus; the count of bodies accepted. Never inlined:
/// callgrind toggles collection on this symbol.
#[inline(never)]
fn run_corpus(
    bodies: &[&[u8]],
    options: &NormalizeOptions,
    codec: &EnvelopeCodec,
    out: &mut Vec<u8>,
    mode: Mode,
) -> usize {
    let ingest = IngestMeta {
        topic: "codat.webhooks",
        partition: 0,
        offset: 0,
        timestamp_ms: 1_700_000_000_000,
    };
    let mut accepted = 0;
    for body in bodies {
        let Ok(env) = normalize(black_box(body), &(), &ingest, options) else {
            continue;
        };
        accepted += 1;
        if let Mode::All = mode {
            out.clear();
            if codec.encode_into(&env, out).is_err() {
                panic!("the envelope did not encode");
            }
            black_box(&*out);
        } else {
            black_box(&env);
        }
    }
    accepted
}
