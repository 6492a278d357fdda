//! librdkafka's mock cluster in a process of its own
//! (`examples/mock_kafka.rs`), so a test can SIGKILL the connector (or a
//! benchmark measure it) while the cluster, and what it holds, lives on.
//!
//! Nothing is built here: the example binary is found next to the running
//! test or bench executable, in `<target>/<profile>/examples/`. `cargo test`
//! builds examples itself; `cargo bench` does not, so `scripts/bench.sh`
//! runs `cargo build --profile dist --example mock_kafka --example plain_forward`
//! first (its bench executables live in `<target>/dist/deps`, the dist
//! profile's directory). `CODAT_STREAM_EXAMPLES_DIR` overrides the directory.
//!
//! What the mock cluster is (librdkafka 2.12, `rdkafka_mock.c`):
//! - each partition keeps at most 5 MiB of record batches (as sent, i.e.
//!   after compression) and 100,000 batches, dropping the oldest: a
//!   consumer behind them is reset by its `auto.offset.reset` and silently
//!   skips records. Keep what a test needs under about 4 MiB per partition
//!   (more partitions for a larger backlog);
//! - it has no CreateTopics API: run the connector with
//!   `topics.create = false`. A producer's metadata request creates a
//!   missing topic (4 partitions); a consumer's does not, so create ingest
//!   topics (and output topics whose partition count matters) up front,
//!   with [`MockKafka::start`]'s `topics`;
//! - everything is in memory: stopping it loses everything.
//!
//! The process serves until its stdin reaches EOF: it dies with the test
//! process however that ends (the pipe closes), and with [`MockKafka`]'s
//! drop (which also kills it).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the example may take to print its address.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// The directory holding the example binaries of the profile this test or
/// bench was built with.
pub fn examples_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CODAT_STREAM_EXAMPLES_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // <target>/<profile>/deps/<name>-<hash>
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples"))
        .expect("the test executable lives in <target>/<profile>/deps")
}

/// The path of example binary `name`; panics, saying how to build it, when
/// it is not there.
pub fn example_binary(name: &str) -> PathBuf {
    let path = examples_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build --example {name}` (add --profile dist for \
         the benchmark; `cargo test` builds examples, scripts/bench.sh builds them for the bench)",
        path.display()
    );
    path
}

/// A running `mock_kafka` process, killed on drop.
pub struct MockKafka {
    child: Child,
    stdin: Option<ChildStdin>,
    bootstrap: String,
}

impl MockKafka {
    /// Starts a cluster of `brokers` brokers with `topics` (name,
    /// partitions; replication 1) created, and waits for its address.
    pub fn start(brokers: i32, topics: &[(&str, i32)]) -> MockKafka {
        let mut cmd = Command::new(example_binary("mock_kafka"));
        cmd.arg("--brokers").arg(brokers.to_string());
        for (name, partitions) in topics {
            cmd.arg("--topic").arg(format!("{name}:{partitions}"));
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mock_kafka: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(b) = line.strip_prefix("bootstrap=") {
                    let _ = tx.send(b.to_owned());
                }
            }
        });
        let mut mock = MockKafka {
            child,
            stdin,
            bootstrap: String::new(),
        };
        match rx.recv_timeout(START_DEADLINE) {
            Ok(b) if !b.is_empty() => mock.bootstrap = b,
            other => {
                let status = mock.child.try_wait().ok().flatten();
                panic!(
                    "mock_kafka printed no bootstrap line within {START_DEADLINE:?} \
                     ({other:?}; exit status {status:?}; its stderr is above)"
                );
            }
        }
        mock
    }

    /// The cluster's `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// The process id (to measure or signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        // EOF on stdin ends it by itself; the kill makes sure.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
