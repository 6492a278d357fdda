//! Test support for the real-broker tests: an Apache Kafka broker
//! (tests/support/broker.rs), the real `codat-stream` binary as a child
//! process, and produce/consume helpers. Nothing here sleeps to
//! synchronise: every wait is a poll of a condition with a deadline.

#![allow(dead_code)]

pub mod acl;
pub mod broker;
pub mod connector;
pub mod consumers;
pub mod kafka_io;
pub mod mock_kafka;
pub mod pki;
pub mod procfs;
pub mod prometheus;
pub mod proxy;
pub mod receiver;
pub mod registry;

// One flat surface for the tests; each test crate uses part of it.
#[allow(unused_imports)]
pub use {
    acl::*, broker::*, connector::*, kafka_io::*, pki::*, prometheus::*, proxy::*, receiver::*,
};

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Polls `cond` every 20 ms until it holds or `within` passes.
pub fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child when the parent thread dies, even on abort.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// The JSON lines a command printed, after checking it exited 0.
pub fn json_lines(out: &std::process::Output, what: &str) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what} printed {l:?}: {e}")))
        .collect()
}

/// The Python of the tests' virtual environment (scripts/test.sh makes it),
/// or `CODAT_STREAM_TEST_PYTHON`.
pub fn python() -> String {
    std::env::var("CODAT_STREAM_TEST_PYTHON").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/python-venv/bin/python").to_owned()
    })
}

/// Path of the repository's fixtures.
pub fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}
