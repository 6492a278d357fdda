//! Running the real binary against inputs too large to read whole: with a
//! deadline (a huge input must not be waited on) and a measure of its peak
//! memory (nor held). Test files include it with `#[path]`.

use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// Waits for `child` at most `within`, polling; kills it and fails past the
/// deadline. Returns its output and how long it ran from this call.
pub fn finish_within(mut child: Child, within: Duration) -> (Output, Duration) {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    (child.wait_with_output().unwrap(), took)
}

/// The largest peak resident memory, in MiB, of the children this test
/// process has waited for: an upper bound on each one's.
pub fn children_peak_rss_mib() -> u64 {
    // SAFETY: getrusage only writes the rusage it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    // Linux reports ru_maxrss in KiB.
    u64::try_from(usage.ru_maxrss).unwrap() / 1024
}

/// A file of `len` bytes, all a hole after `head` (sparse: no disk, no
/// time to write), then `tail`.
pub fn sparse_file(path: &std::path::Path, head: &[u8], len: u64, tail: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(head).unwrap();
    f.set_len(len).unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(tail).unwrap();
}
