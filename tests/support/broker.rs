//! A tansu broker process per test, on a free loopback port.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::*;

/// The pinned broker; scripts/test.sh installs it.
pub const TANSU: &str = "tansu";

/// How the broker keeps data.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Nothing survives a restart.
    Memory,
    /// A SQLite file in the broker's directory: survives a restart.
    Sqlite,
}

/// A tansu broker process, killed on drop.
pub struct Broker {
    pub port: u16,
    /// The port clients are told to use (a proxy's), when not `port`.
    advertised_port: u16,
    dir: tempfile::TempDir,
    storage: Storage,
    child: Option<Child>,
}

impl Broker {
    pub fn start(storage: Storage) -> Broker {
        let port = free_port();
        Self::start_advertising(storage, port, port)
    }

    /// A broker listening on `port` that tells clients to connect to `advertised`.
    pub fn start_advertising(storage: Storage, port: u16, advertised: u16) -> Broker {
        let mut b = Broker {
            port,
            advertised_port: advertised,
            dir: tempfile::tempdir().unwrap(),
            storage,
            child: None,
        };
        b.restart();
        b
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.advertised_port)
    }

    /// Starts the broker process (again), on the same port and storage.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised_port);
        let engine = match self.storage {
            Storage::Memory => "memory://tansu/".to_owned(),
            Storage::Sqlite => "sqlite://tansu.db".to_owned(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .unwrap();
        let mut cmd = Command::new(TANSU);
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
            "--storage-engine",
            &engine,
        ])
        .current_dir(self.dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        die_with_parent(&mut cmd);
        self.child = Some(cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {TANSU} (run scripts/test.sh to install it): {e}")
        }));
        let port = self.port;
        wait_for("the broker to listen", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Kills the broker process (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let results = rt
            .block_on(admin.create_topics(
                &[topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            ))
            .unwrap();
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e:?}"));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until a new member joining `group` is given partitions of
/// `topic`, i.e. the broker has expired a crashed member. A probe joins,
/// and leaves again if it is given nothing; tansu does not start a new
/// generation when a dead member expires after a newcomer joined, so the
/// probe retries rather than waiting in the group.
///
/// tansu workaround (restart only after the crashed member expires). Real
/// Kafka's coordinator removes the dead member once its session times out
/// and rebalances the group, newcomer included, whenever it joined.
pub fn wait_group_accepts_new_member(bootstrap: &str, group: &str, topic: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        assert!(
            Instant::now() < deadline,
            "group {group} gave a new member no partitions within {within:?}"
        );
        let probe: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        probe.subscribe(&[topic]).unwrap();
        let attempt_end = Instant::now() + Duration::from_secs(3);
        let mut assigned = false;
        while Instant::now() < attempt_end && !assigned {
            let _ = probe.poll(Duration::from_millis(100));
            assigned = probe.assignment().map(|a| a.count() > 0).unwrap_or(false);
        }
        probe.unsubscribe();
        drop(probe);
        if assigned {
            return;
        }
    }
}

/// The cluster's metadata for every topic.
pub fn cluster_metadata(bootstrap: &str) -> rdkafka::metadata::Metadata {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap()
}
