//! The real `codat-stream` binary as a child process, and its HTTP endpoint.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::OwnedMessage;

use super::*;

/// Names for one connector deployment under test.
#[derive(Clone, Debug)]
pub struct Names {
    pub ingest: String,
    pub group: String,
    pub prefix: String,
    pub dlq: String,
    pub catch_all: String,
}

impl Names {
    pub fn new() -> Names {
        let id = unique("t").replace('-', "_");
        Names {
            ingest: format!("{id}.ingest"),
            group: format!("{id}.group"),
            prefix: format!("{id}.out."),
            dlq: format!("{id}.dlq"),
            catch_all: format!("{id}.unrouted"),
        }
    }
}

/// The connector's setting for its consumer group protocol.
pub const GROUP_PROTOCOL_ENV: &str = "CODAT_STREAM__KAFKA__CONSUMER__GROUP_PROTOCOL";

/// The connector's environment for consumer group `protocol`: `classic`
/// (the default) or `consumer` (KIP-848).
pub fn group_protocol_env(protocol: &str) -> Vec<(&'static str, &'static str)> {
    match protocol {
        "classic" => Vec::new(),
        "consumer" => vec![(GROUP_PROTOCOL_ENV, "consumer")],
        other => panic!("no group protocol {other}"),
    }
}

/// A running `codat-stream run` process, killed on drop. Its JSON log lines
/// are collected as they come.
pub struct Connector {
    pub child: Child,
    pub log: Arc<Mutex<Vec<serde_json::Value>>>,
    pub raw_log: PathBuf,
    /// host:port of its /metrics, /healthz and /readyz endpoint.
    pub http: String,
    /// The thread collecting its log; it ends when the process's stderr closes.
    pub reader: Option<std::thread::JoinHandle<()>>,
}

impl Connector {
    pub fn start(bootstrap: &str, names: &Names, extra_env: &[(&str, &str)]) -> Connector {
        Self::start_with_config(bootstrap, names, extra_env, None)
    }

    /// Like [`Connector::start`], with `run --config FILE` (the environment still wins).
    pub fn start_with_config(
        bootstrap: &str,
        names: &Names,
        extra_env: &[(&str, &str)],
        config: Option<&Path>,
    ) -> Connector {
        let dir = std::env::temp_dir().join(unique("connector-log"));
        let http = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_codat-stream"));
        cmd.arg("run");
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CODAT_STREAM__KAFKA__BOOTSTRAP_SERVERS", bootstrap)
            .env("CODAT_STREAM__INGEST__TOPICS", &names.ingest)
            .env("CODAT_STREAM__INGEST__GROUP_ID", &names.group)
            .env("CODAT_STREAM__OUTPUT__TOPIC_PREFIX", &names.prefix)
            .env("CODAT_STREAM__OUTPUT__DEAD_LETTER_TOPIC", &names.dlq)
            .env("CODAT_STREAM__OUTPUT__CATCH_ALL_TOPIC", &names.catch_all)
            .env("CODAT_STREAM__TOPICS__PARTITIONS", "2")
            .env(
                "CODAT_STREAM__KAFKA__COMMON__TOPIC_METADATA_REFRESH_INTERVAL_MS",
                "1000",
            )
            .env("CODAT_STREAM__HTTP__LISTEN", &http)
            .env(
                "CODAT_STREAM__METRICS__KAFKA_STATISTICS_INTERVAL_MS",
                "1000",
            )
            .env("CODAT_STREAM__LOG__FORMAT", "json")
            .env("CODAT_STREAM__LOG__LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // A crashed member expires in 6 s. Under KIP-848's protocol the
        // broker sets that (`group.consumer.session.timeout.ms`, 6 s on the
        // test broker) and librdkafka refuses the client-side settings.
        let kip_848 = extra_env
            .iter()
            .any(|(k, v)| *k == GROUP_PROTOCOL_ENV && *v == "consumer");
        if !kip_848 {
            cmd.env("CODAT_STREAM__KAFKA__CONSUMER__SESSION_TIMEOUT_MS", "6000")
                .env(
                    "CODAT_STREAM__KAFKA__CONSUMER__HEARTBEAT_INTERVAL_MS",
                    "500",
                );
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let raw_log = dir.with_extension("log");
        let raw_path = raw_log.clone();
        let reader = std::thread::spawn(move || {
            use std::io::Write;
            let mut raw = std::fs::File::create(raw_path).unwrap();
            // By bytes: a line that is not UTF-8 must not stop the reading,
            // or the child blocks on a full pipe and looks hung.
            for line in BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line);
                let _ = writeln!(raw, "{line}");
                if let Ok(v) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        Connector {
            child,
            log,
            raw_log,
            http,
            reader: Some(reader),
        }
    }

    /// GET `path` from its HTTP endpoint: (status, body); None when it does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.http, path)
    }

    /// Its metrics, parsed; panics when /metrics does not answer.
    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics").expect("/metrics answers");
        assert_eq!(status, 200);
        Metrics::parse(&body)
    }

    /// The sum of metric `name`'s samples, or 0 while /metrics does not answer yet.
    pub fn metric(&self, name: &str) -> f64 {
        self.get("/metrics")
            .filter(|(status, _)| *status == 200)
            .map_or(0.0, |(_, body)| Metrics::parse(&body).sum(name, &[]))
    }

    /// Whether some log line's message contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l["message"].as_str().is_some_and(|m| m.contains(text)))
    }

    /// The log lines whose message contains `text`.
    pub fn lines(&self, text: &str) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l["message"].as_str().is_some_and(|m| m.contains(text)))
            .cloned()
            .collect()
    }

    pub fn wait_started(&self, within: Duration) {
        wait_for("the connector to start", within, || {
            self.logged("partitions assigned")
        });
    }

    /// Waits for it to start, then for exactly `n` output records (60 s each).
    pub fn expect_outputs(&self, bootstrap: &str, names: &Names, n: usize) -> Vec<OwnedMessage> {
        self.wait_started(Duration::from_secs(60));
        let out = read_outputs(bootstrap, names, n, Duration::from_secs(60));
        assert_eq!(
            out.len(),
            n,
            "one output per input; connector log: {}",
            self.raw_log_text()
        );
        out
    }

    pub fn sigterm(&self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.read_whole_log();
    }

    /// Waits for the process to exit, then for its last log lines to be
    /// collected (they may still sit in the pipe when it has exited).
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.read_whole_log();
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "connector did not exit within {within:?}; log: {}",
                self.raw_log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Once the process has exited: waits until its stderr is read to the end.
    fn read_whole_log(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    pub fn raw_log_text(&self) -> String {
        std::fs::read_to_string(&self.raw_log).unwrap_or_default()
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET (so no chunked responses): (status, body), or None when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Sends `sig` to the connector (SIGINT, SIGTERM, ...).
pub fn signal(c: &Connector, sig: i32) {
    unsafe {
        libc::kill(c.child.id() as i32, sig);
    }
}
