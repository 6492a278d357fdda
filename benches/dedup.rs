//! Memory and speed of the de-duplication window: 10 million distinct ids
//! in one window. `cargo bench --bench dedup`; prints RSS growth, bytes per
//! id and offers per second (one core).

use std::time::Instant;

use codat_stream::core::dedup::{DedupWindow, Remember, digest};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    const IDS: usize = 10_000_000;
    const WEEK_MS: u64 = 7 * 24 * 3_600_000;
    let before = rss_bytes();
    let mut window = DedupWindow::new(WEEK_MS);
    let started = Instant::now();
    let base = 1_700_000_000_000i64;
    for i in 0..IDS {
        // A Codat-like id: a UUID-length string.
        let id = format!("{i:08x}-7f3c-4a1e-9b2d-{:012x}", i * 7919);
        let at = base + (i as i64) * 50;
        assert_eq!(window.offer(&digest(&id), at, true), Remember::New);
    }
    let secs = started.elapsed().as_secs_f64();
    let grown = rss_bytes().saturating_sub(before);
    println!("| ids in window | RSS growth | bytes per id | offers/s (digest + insert) |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {IDS} | {:.0} MB | {:.1} | {:.0} |",
        grown as f64 / 1e6,
        grown as f64 / IDS as f64,
        IDS as f64 / secs
    );
    assert_eq!(window.len(), IDS);
}
