//! An Apache Kafka broker for the tests: one KRaft node (combined broker and
//! controller), formatted fresh in a directory of its own under
//! `target/kafka-runs/`, on free loopback ports, started from the jars
//! `scripts/test.sh` copies into `target/kafka/libs` (the version pinned in
//! `scripts/kafka/pom.xml`).
//!
//! [`Broker::shared`] is one broker per test binary, for tests that only
//! need topics and groups of their own (every name comes from `unique`);
//! [`Broker::start`] is a broker of the test's own, for tests that stop,
//! restart or put a proxy in front of it; [`Broker::start_split`] one whose
//! controller runs in a process of its own, for tests that crash the broker
//! (see there). A broker that a failing test drops keeps its directory and
//! log, and the path is printed.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::*;

/// Where scripts/test.sh puts the broker's jars.
pub fn kafka_libs() -> PathBuf {
    std::env::var_os("CODAT_STREAM_KAFKA_LIBS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kafka/libs"))
}

/// A KRaft broker process, killed (SIGKILL) on drop.
pub struct Broker {
    pub port: u16,
    advertised_port: u16,
    controller_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// The shared broker is never dropped; its process dies with the test binary.
    owned: bool,
    /// Secured listeners, for a broker from [`Broker::start_secured`].
    security: Option<Security>,
    /// The KRaft controller's own process, for a broker from
    /// [`Broker::start_split`].
    split: Option<Split>,
}

/// A controller in a process of its own, and what a restart waits for.
struct Split {
    controller: Option<Child>,
    /// Times the controller had fenced the broker when it was last killed:
    /// a restart waits for one more.
    fenced_at_stop: Option<usize>,
}

/// The split controller's node id (the broker is 1).
const SPLIT_CONTROLLER_ID: &str = "2";

/// How long the split controller waits for a broker's heartbeat before it
/// fences it (the broker beats every 250 ms).
const SPLIT_SESSION_MS: &str = "3000";

/// A secured broker's listeners and identities. Besides PLAINTEXT (the
/// tests' own superuser door: its principal is `User:ANONYMOUS`) it has a
/// `SASL_SSL` listener (SCRAM-SHA-512) and an `SSL` listener that requires a
/// client certificate (the principal is its CN), and `StandardAuthorizer`:
/// a principal may do only what an ACL grants it.
pub struct Security {
    pub pki: Pki,
    pub sasl_ssl_port: u16,
    pub ssl_port: u16,
    /// The broker's certificate (subject alternative name `IP:127.0.0.1`
    /// only, so `localhost` is a host name that does not match).
    pub server: Issued,
}

/// How many SCRAM users a secured broker has ([`scram_user`]).
pub const SCRAM_USERS: usize = 16;

/// SCRAM-SHA-512 user `n` of a secured broker: (name, password). Each test
/// takes a user of its own, so its ACLs are its own.
pub fn scram_user(n: usize) -> (String, String) {
    assert!(n < SCRAM_USERS, "a secured broker has {SCRAM_USERS} users");
    (format!("connector-{n}"), format!("scram-secret-{n}-Zq8wX4"))
}

impl Broker {
    /// A plaintext broker of the test's own, on a free port.
    pub fn start() -> Broker {
        let port = free_port();
        Self::start_advertising(port, port)
    }

    /// A broker listening on `port` that tells clients to connect to
    /// `advertised` (a proxy's port).
    pub fn start_advertising(port: u16, advertised: u16) -> Broker {
        let mut b = Broker {
            port,
            advertised_port: advertised,
            controller_port: free_port(),
            dir: run_dir(),
            child: None,
            owned: true,
            security: None,
            split: None,
        };
        b.format();
        b.restart();
        b
    }

    /// A plaintext broker whose KRaft controller runs in a process of its
    /// own, as production clusters run them: [`Broker::stop`] kills the
    /// broker alone, the controller fences it, and [`Broker::restart`]
    /// waits for that before the broker comes back. A combined node
    /// restarted at once cannot do this: its controller, restarted with it,
    /// still holds the dead broker's registration until its session expires
    /// (9 s), fences it then, every partition is briefly without a leader,
    /// and the transaction coordinator drops the commit markers it had yet
    /// to write as if the partitions were deleted ("Couldn't find leader
    /// endpoint ... likely deleted"). Seen on Apache Kafka 4.4: a
    /// transaction committed before the crash kept its outputs but lost
    /// its input offsets, and exactly-once showed 850 duplicates.
    pub fn start_split() -> Broker {
        let port = free_port();
        let mut b = Broker {
            port,
            advertised_port: port,
            controller_port: free_port(),
            dir: run_dir(),
            child: None,
            owned: true,
            security: None,
            split: Some(Split {
                controller: None,
                fenced_at_stop: None,
            }),
        };
        b.format();
        b.restart();
        b
    }

    /// A broker of the test's own with secured listeners and ACLs ([`Security`]).
    pub fn start_secured() -> Broker {
        let port = free_port();
        let dir = run_dir();
        let pki = Pki::new(&dir.join("pki"), "codat-stream test CA");
        let server = pki.issue("kafka-broker", &["IP:127.0.0.1"], Validity::Current);
        let mut b = Broker {
            port,
            advertised_port: port,
            controller_port: free_port(),
            dir,
            child: None,
            owned: true,
            split: None,
            security: Some(Security {
                pki,
                sasl_ssl_port: free_port(),
                ssl_port: free_port(),
                server,
            }),
        };
        b.format();
        b.restart();
        b
    }

    /// The test binary's one secured broker ([`Broker::start_secured`]),
    /// started at first use; tests share it as they share [`Broker::shared`].
    pub fn shared_secured() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(|| spawn_kept(Broker::start_secured))
    }

    /// This broker's secured listeners; panics on a plaintext broker.
    pub fn security(&self) -> &Security {
        self.security
            .as_ref()
            .expect("a broker from Broker::start_secured")
    }

    /// The `SASL_SSL` listener's address.
    pub fn sasl_ssl_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.security().sasl_ssl_port)
    }

    /// The `SSL` (client certificate) listener's address.
    pub fn ssl_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.security().ssl_port)
    }

    /// The directory of this broker's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The test binary's one plaintext broker, started at first use. Tests
    /// sharing it use names of their own; none may stop it.
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(|| spawn_kept(Broker::start))
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.advertised_port)
    }

    fn server_properties(&self) -> String {
        let mut text: String = self.plain_properties();
        if let Some(sec) = &self.security {
            text.push_str(&self.secured_properties(sec));
        }
        text
    }

    fn plain_properties(&self) -> String {
        // A split broker heartbeats often enough to be heard well within
        // its controller's short session; a combined node keeps the default.
        let (roles, voter, heartbeat_ms) = match self.split {
            Some(_) => ("broker", SPLIT_CONTROLLER_ID, "250"),
            None => ("broker,controller", "1", "2000"),
        };
        let p = [
            ("process.roles", roles.to_owned()),
            ("node.id", "1".to_owned()),
            (
                "controller.quorum.voters",
                format!("{voter}@127.0.0.1:{}", self.controller_port),
            ),
            ("broker.heartbeat.interval.ms", heartbeat_ms.to_owned()),
            ("controller.listener.names", "CONTROLLER".to_owned()),
            ("inter.broker.listener.name", "PLAINTEXT".to_owned()),
            ("listeners", self.listeners(self.port)),
            ("advertised.listeners", self.listeners(self.advertised_port)),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL".to_owned(),
            ),
            ("log.dirs", self.dir.join("data").display().to_string()),
            // One node: every internal topic with one replica.
            ("offsets.topic.replication.factor", "1".to_owned()),
            ("transaction.state.log.replication.factor", "1".to_owned()),
            ("transaction.state.log.min.isr", "1".to_owned()),
            (
                "share.coordinator.state.topic.replication.factor",
                "1".to_owned(),
            ),
            ("share.coordinator.state.topic.min.isr", "1".to_owned()),
            // Fewer internal partitions: each is a log and a coordinator to load.
            ("offsets.topic.num.partitions", "4".to_owned()),
            ("transaction.state.log.num.partitions", "4".to_owned()),
            // A group's first rebalance starts at once (the default waits 3 s).
            ("group.initial.rebalance.delay.ms", "0".to_owned()),
            // Records are kept whatever their timestamps (tests write some
            // dated months back, as Codat's retries replayed late would be).
            ("log.retention.ms", "-1".to_owned()),
            // As on the platforms codat-stream joins: topics are created on purpose.
            ("auto.create.topics.enable", "false".to_owned()),
            // The tests use 6 s sessions; the classic protocol's floor is 6 s,
            // the consumer protocol's 45 s unless lowered.
            ("group.consumer.min.session.timeout.ms", "3000".to_owned()),
            ("group.consumer.session.timeout.ms", "6000".to_owned()),
            ("group.consumer.min.heartbeat.interval.ms", "500".to_owned()),
            ("group.consumer.heartbeat.interval.ms", "500".to_owned()),
            // Fast SIGKILL recovery: no unclean-shutdown delay beyond the log check.
            ("num.recovery.threads.per.data.dir", "2".to_owned()),
        ];
        p.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }

    /// The listeners, with PLAINTEXT on `plain_port` (CONTROLLER is not
    /// advertised: the caller adds it).
    fn listeners(&self, plain_port: u16) -> String {
        let mut l = format!("PLAINTEXT://127.0.0.1:{plain_port}");
        if plain_port == self.port && self.split.is_none() {
            l.push_str(&format!(",CONTROLLER://127.0.0.1:{}", self.controller_port));
        }
        if let Some(sec) = &self.security {
            l.push_str(&format!(
                ",SASL_SSL://127.0.0.1:{},SSL://127.0.0.1:{}",
                sec.sasl_ssl_port, sec.ssl_port
            ));
        }
        l
    }

    /// TLS, SCRAM and the authorizer, as a secured platform has them.
    fn secured_properties(&self, sec: &Security) -> String {
        let key_store = sec.pki.key_store(&sec.server);
        let p = [
            ("sasl.enabled.mechanisms", "SCRAM-SHA-512".to_owned()),
            (
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required;".to_owned(),
            ),
            ("ssl.keystore.type", "PEM".to_owned()),
            ("ssl.keystore.location", key_store.display().to_string()),
            ("ssl.truststore.type", "PEM".to_owned()),
            (
                "ssl.truststore.location",
                sec.pki.ca().display().to_string(),
            ),
            ("listener.name.ssl.ssl.client.auth", "required".to_owned()),
            // A certificate's principal is its CN: User:<cn>.
            (
                "ssl.principal.mapping.rules",
                "RULE:^CN=([^,]*)$/$1/,DEFAULT".to_owned(),
            ),
            (
                "authorizer.class.name",
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer".to_owned(),
            ),
            // The PLAINTEXT and CONTROLLER listeners: the broker itself and
            // the tests' set-up. Every other principal needs ACLs.
            ("super.users", "User:ANONYMOUS".to_owned()),
        ];
        p.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }

    /// The split controller's configuration.
    fn controller_properties(&self) -> String {
        let p = [
            ("process.roles", "controller".to_owned()),
            ("node.id", SPLIT_CONTROLLER_ID.to_owned()),
            (
                "controller.quorum.voters",
                format!("{SPLIT_CONTROLLER_ID}@127.0.0.1:{}", self.controller_port),
            ),
            ("controller.listener.names", "CONTROLLER".to_owned()),
            (
                "listeners",
                format!("CONTROLLER://127.0.0.1:{}", self.controller_port),
            ),
            (
                "listener.security.protocol.map",
                "CONTROLLER:PLAINTEXT".to_owned(),
            ),
            (
                "log.dirs",
                self.dir.join("controller").display().to_string(),
            ),
            ("broker.session.timeout.ms", SPLIT_SESSION_MS.to_owned()),
        ];
        p.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }

    /// Writes the configuration and formats the log directory (a new
    /// cluster), and the split controller's.
    fn format(&self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        std::fs::write(self.dir.join("server.properties"), self.server_properties()).unwrap();
        std::fs::write(self.dir.join("log4j2.properties"), LOG4J2).unwrap();
        if self.split.is_some() {
            let config = self.dir.join("controller.properties");
            std::fs::write(&config, self.controller_properties()).unwrap();
            self.format_with(&config);
        }
        self.format_with(&self.dir.join("server.properties"));
    }

    /// Formats the storage of the node configured in `config`.
    fn format_with(&self, config: &Path) {
        let out = self
            .java()
            .args([
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                "--cluster-id",
                // Any 16 bytes in URL-safe base64; each broker is its own cluster.
                "q1Sh-9_ISia_zwGINzRvyQ",
                "--config",
            ])
            .arg(config)
            .args(self.scram_args())
            .output()
            .unwrap_or_else(|e| panic!("cannot run java (scripts/test.sh installs it): {e}"));
        assert!(
            out.status.success(),
            "formatting the broker's storage failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// StorageTool's `--add-scram` for each SCRAM user of a secured broker.
    fn scram_args(&self) -> Vec<String> {
        if self.security.is_none() {
            return Vec::new();
        }
        (0..SCRAM_USERS)
            .flat_map(|n| {
                let (name, password) = scram_user(n);
                [
                    "--add-scram".to_owned(),
                    format!("SCRAM-SHA-512=[name={name},password={password}]"),
                ]
            })
            .collect()
    }

    fn java(&self) -> Command {
        let libs = kafka_libs();
        let version = kafka_version();
        assert!(
            libs.join(format!("kafka_2.13-{version}.jar")).exists(),
            "Apache Kafka {version} is not in {} (scripts/test.sh installs it)",
            libs.display()
        );
        let mut cmd = Command::new("java");
        cmd.arg("-cp")
            .arg(format!("{}/*", libs.display()))
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.join("log4j2.properties").display()
            ))
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    /// Starts the broker process (again), on the same ports and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let needs_controller = self.split.as_ref().is_some_and(|s| s.controller.is_none());
        if needs_controller {
            let controller =
                Some(self.spawn_node("controller.properties", "controller.log", "256m"));
            if let Some(split) = self.split.as_mut() {
                split.controller = controller;
            }
        }
        if let Some(before) = self.split.as_mut().and_then(|s| s.fenced_at_stop.take()) {
            self.wait_fenced(before);
        }
        self.child = Some(self.spawn_node("server.properties", "broker.log", "768m"));
        self.wait_ready();
    }

    /// Starts the Kafka node configured in `config`, logging to `log`.
    fn spawn_node(&self, config: &str, log: &str, heap: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(log))
            .unwrap();
        let mut cmd = self.java();
        // kafka-server-start.sh's JVM flags, with a smaller heap: a test
        // broker holds little, and several run at once on two cores.
        cmd.args([
            "-Xms128m",
            &format!("-Xmx{heap}"),
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            "kafka.Kafka",
        ])
        .arg(self.dir.join(config))
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        die_with_parent(&mut cmd);
        cmd.spawn().expect("java starts")
    }

    /// How often the split controller has fenced the broker (its log says
    /// so each time, when it happens).
    fn times_fenced(&self) -> usize {
        std::fs::read_to_string(self.dir.join("controller.log"))
            .unwrap_or_default()
            .matches("Fencing broker 1 ")
            .count()
    }

    /// Waits until the split controller has fenced the killed broker.
    fn wait_fenced(&self, before: usize) {
        wait_for(
            "the controller to fence the killed broker",
            Duration::from_secs(60),
            || self.times_fenced() > before,
        );
    }

    /// Waits until the broker answers metadata with itself as a broker
    /// (listening is not enough: the controller must have registered it).
    fn wait_ready(&mut self) {
        let port = self.port;
        let bootstrap = format!("127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "the broker exited ({status}) while starting; its log:\n{}",
                    tail(&self.log(), 60)
                );
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let probe: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &bootstrap)
                    .set("log_level", "0")
                    .create()
                    .unwrap();
                let ready = probe
                    .fetch_metadata(None, Duration::from_secs(2))
                    .is_ok_and(|m| !m.brokers().is_empty());
                if ready {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the broker was not ready within 90 s; its log: {}",
                self.dir.join("broker.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the broker process (SIGKILL): no clean shutdown, as in a crash.
    pub fn stop(&mut self) {
        assert!(self.owned, "the shared broker cannot be stopped");
        let fenced = self.split.is_some().then(|| self.times_fenced());
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            if let Some(split) = self.split.as_mut() {
                split.fenced_at_stop = fenced;
            }
        }
    }

    /// The broker process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]);
    }

    pub fn create_topic_with(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .unwrap();
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
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
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let controller = self.split.as_mut().and_then(|s| s.controller.take());
        for mut c in self.child.take().into_iter().chain(controller) {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "the broker's directory and log are kept: {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A broker for the whole test binary. PR_SET_PDEATHSIG fires when the
/// *thread* that spawned the child ends, so it is spawned by a thread that
/// lives as long as the test binary.
fn spawn_kept(start: fn() -> Broker) -> Broker {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("shared-kafka".into())
        .spawn(move || {
            let mut b = start();
            b.owned = false;
            tx.send(b).unwrap();
            loop {
                std::thread::park();
            }
        })
        .unwrap();
    rx.recv().expect("the shared broker started")
}

/// The Kafka version scripts/kafka/pom.xml pins (read from it, so the two
/// cannot disagree).
pub fn kafka_version() -> &'static str {
    const POM: &str = include_str!("../../scripts/kafka/pom.xml");
    POM.split_once("<kafka.version>")
        .and_then(|(_, rest)| rest.split_once("</kafka.version>"))
        .map(|(v, _)| v.trim())
        .expect("scripts/kafka/pom.xml names <kafka.version>")
}

const LOG4J2: &str = "\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
# The configuration dumps and per-request lines say nothing a failing test needs.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
";

/// A new directory for one broker under target/kafka-runs (scripts/test.sh
/// empties it before each run).
fn run_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/kafka-runs")
        .join(unique("broker"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
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

/// Runs one of Kafka's own command-line tools (its main class) against the
/// test broker's jars: (exit success, stdout + stderr).
pub fn kafka_tool(main_class: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!("{}/*", kafka_libs().display()))
        .arg("-Dlog4j2.level=WARN")
        .arg(main_class)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("java runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The type the broker gives `group` ("Classic", or "Consumer" for KIP-848's
/// protocol), as `kafka-consumer-groups --list --type` prints it.
pub fn group_type(bootstrap: &str, group: &str) -> Option<String> {
    let (ok, text) = kafka_tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &["--bootstrap-server", bootstrap, "--list", "--type"],
    );
    assert!(ok, "kafka-consumer-groups failed: {text}");
    text.lines().find_map(|l| {
        let mut cols = l.split_whitespace();
        (cols.next() == Some(group)).then(|| cols.next().unwrap_or_default().to_owned())
    })
}

/// Asserts the broker runs `group` under consumer group `protocol`
/// (`classic` or `consumer`).
pub fn assert_group_protocol(bootstrap: &str, group: &str, protocol: &str) {
    let want = match protocol {
        "classic" => "Classic",
        "consumer" => "Consumer",
        other => panic!("no group protocol {other}"),
    };
    assert_eq!(
        group_type(bootstrap, group).as_deref(),
        Some(want),
        "the broker's type of group {group}"
    );
}
