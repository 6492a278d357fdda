//! `codat-stream receive` as a child process, a small HTTP/1.1 client to
//! post webhooks to it, and Codat's signatures made by the Python
//! `standardwebhooks` and `svix` libraries (tests/python/sign_webhook.py).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// Two Standard Webhooks secrets (24-byte keys), for rotation.
pub const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const SECRET_B: &str = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24=";
/// A secret no endpoint is configured with.
pub const SECRET_WRONG: &str = "whsec_d3Jvbmctc2VjcmV0LXdyb25nLXdyb25nISE=";

/// The signed path and the legacy (Authorization) path every receiver has.
pub const SIGNED_PATH: &str = "/webhooks/codat";
pub const LEGACY_PATH: &str = "/webhooks/rules";
pub const LEGACY_AUTH: &str = "Bearer legacy-rules-token-1";

/// A running `codat-stream receive`, killed on drop.
pub struct Receiver {
    pub child: Child,
    pub log: Arc<Mutex<Vec<serde_json::Value>>>,
    pub raw_log: PathBuf,
    /// host:port webhooks are posted to.
    pub listen: String,
    /// host:port of /metrics, /healthz, /readyz.
    pub http: String,
}

impl Receiver {
    /// A receiver producing to `topic`, with a signed endpoint
    /// ([`SECRET_A`] and [`SECRET_B`], from the environment and a file)
    /// and a legacy one ([`LEGACY_AUTH`]); `extra_env` overrides.
    pub fn start(bootstrap: &str, topic: &str, extra_env: &[(&str, &str)]) -> Receiver {
        let dir = std::env::temp_dir().join(unique("receiver"));
        std::fs::create_dir_all(&dir).unwrap();
        let secret_file = dir.join("secret-b");
        std::fs::write(&secret_file, format!("{SECRET_B}\n")).unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_codat-stream"));
        cmd.arg("receive")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CODAT_STREAM__KAFKA__BOOTSTRAP_SERVERS", bootstrap)
            .env("CODAT_STREAM__RECEIVE__TOPIC", topic)
            .env("CODAT_STREAM__RECEIVE__LISTEN", &listen)
            .env("CODAT_STREAM__HTTP__LISTEN", &http)
            .env(
                "CODAT_STREAM__RECEIVE__ENDPOINTS__EVENTS__PATH",
                SIGNED_PATH,
            )
            .env(
                "CODAT_STREAM__RECEIVE__ENDPOINTS__EVENTS__SECRETS",
                format!("env:TEST_HOOK_SECRET_A,file:{}", secret_file.display()),
            )
            .env("TEST_HOOK_SECRET_A", SECRET_A)
            .env("CODAT_STREAM__RECEIVE__ENDPOINTS__RULES__PATH", LEGACY_PATH)
            .env(
                "CODAT_STREAM__RECEIVE__ENDPOINTS__RULES__AUTHORIZATION",
                "env:TEST_RULES_AUTH",
            )
            .env("TEST_RULES_AUTH", LEGACY_AUTH)
            .env(
                "CODAT_STREAM__KAFKA__COMMON__TOPIC_METADATA_REFRESH_INTERVAL_MS",
                "1000",
            )
            .env("CODAT_STREAM__LOG__FORMAT", "json")
            .env("CODAT_STREAM__LOG__LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let raw_log = dir.join("receiver.log");
        let raw_path = raw_log.clone();
        std::thread::spawn(move || {
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
        Receiver {
            child,
            log,
            raw_log,
            listen,
            http,
        }
    }

    /// Waits until `/readyz` answers 200 (brokers reachable, topic there).
    pub fn wait_ready(&self, within: Duration) {
        wait_for("the receiver to be ready", within, || {
            http_get(&self.http, "/readyz").is_some_and(|(s, _)| s == 200)
        });
    }

    /// POSTs `body` to `path` on a fresh connection: (status, body).
    pub fn post(&self, path: &str, headers: &[(String, Vec<u8>)], body: &[u8]) -> (u16, String) {
        let mut c = HttpConn::connect(&self.listen);
        c.post(path, headers, body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}; log: {}", self.raw_log_text()))
    }

    /// Its metrics, parsed.
    pub fn metrics(&self) -> Metrics {
        let (status, body) = http_get(&self.http, "/metrics").expect("/metrics answers");
        assert_eq!(status, 200);
        Metrics::parse(&body)
    }

    pub fn sigterm(&self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "receiver did not exit within {within:?}; log: {}",
                self.raw_log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn raw_log_text(&self) -> String {
        std::fs::read_to_string(&self.raw_log).unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One kept-alive HTTP/1.1 connection: requests one after another.
pub struct HttpConn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    host: String,
}

impl HttpConn {
    pub fn connect(addr: &str) -> HttpConn {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        HttpConn {
            stream,
            reader,
            host: addr.to_owned(),
        }
    }

    /// Sends a POST and reads the answer: (status, body).
    pub fn post(
        &mut self,
        path: &str,
        headers: &[(String, Vec<u8>)],
        body: &[u8],
    ) -> std::io::Result<(u16, String)> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        for (k, v) in headers {
            request.extend_from_slice(k.as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(v);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body);
        self.stream.write_all(&request)?;
        self.read_response()
    }

    /// Writes raw bytes (a hand-made request).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one response with a Content-Length body.
    pub fn read_response(&mut self) -> std::io::Result<(u16, String)> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not a status line: {line:?}")))?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((k, v)) = trimmed.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// Request headers as (name, value bytes).
pub type HeaderList = Vec<(String, Vec<u8>)>;

/// A delivery: its headers and body.
pub type Delivery = (HeaderList, Vec<u8>);

/// One signing request for tests/python/sign_webhook.py.
#[derive(Clone, Debug)]
pub struct Sign<'a> {
    pub library: &'a str,
    pub secrets: &'a [&'a str],
    pub id: &'a str,
    /// Seconds since the epoch; None = now (the library then verifies it too).
    pub timestamp: Option<i64>,
    pub body: &'a str,
}

/// Signs every request with the Python libraries, in one process:
/// the headers of each, in order.
pub fn python_sign(requests: &[Sign<'_>]) -> Vec<Vec<(String, Vec<u8>)>> {
    let python = super::python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sign_webhook.py");
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} (scripts/test.sh installs it): {e}"));
    let mut input = String::new();
    for r in requests {
        let line = serde_json::json!({
            "library": r.library,
            "secrets": r.secrets,
            "id": r.id,
            "timestamp": r.timestamp,
            "body": r.body,
        });
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "sign_webhook.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<(String, Vec<u8>)>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let map: BTreeMap<String, String> = serde_json::from_str(l).unwrap();
            map.into_iter().map(|(k, v)| (k, v.into_bytes())).collect()
        })
        .collect();
    assert_eq!(lines.len(), requests.len());
    lines
}

/// Now, seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The records of `topic`, read from the beginning until `want` holds or
/// `within` passes.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    within: Duration,
    want: impl FnMut(&[rdkafka::message::OwnedMessage]) -> bool,
) -> Vec<rdkafka::message::OwnedMessage> {
    consume_until(bootstrap, |t| t == topic, within, want)
}

/// Every header of a record, in order, as bytes.
pub fn all_headers(m: &rdkafka::message::OwnedMessage) -> Vec<(Vec<u8>, Vec<u8>)> {
    use rdkafka::Message;
    m.headers()
        .map(|h| {
            codat_stream::kafka::record_headers::header_pairs(h.as_borrowed())
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

/// A signed `connection.failed` delivery of event `id` ([`SECRET_A`]):
/// (headers, body); `receive` keys its record by `id`.
pub fn signed_delivery(id: &str) -> Delivery {
    let body = format!(
        r#"{{"id":"{id}","eventType":"connection.failed","payload":{{"referenceCompany":{{"id":"co"}},"connection":{{"id":"dc"}}}}}}"#
    );
    let ts = now_secs();
    let key = codat_stream::core::signature::SigningKey::parse(SECRET_A).unwrap();
    let headers = vec![
        ("webhook-id".to_owned(), format!("msg_{id}").into_bytes()),
        ("webhook-timestamp".to_owned(), ts.to_string().into_bytes()),
        (
            "webhook-signature".to_owned(),
            codat_stream::core::signature::sign(&key, &format!("msg_{id}"), ts, body.as_bytes())
                .into_bytes(),
        ),
    ];
    (headers, body.into_bytes())
}
