//! What operators watch, checked with real parts: a real Prometheus
//! (Debian's `prometheus`, on loopback) scrapes a connector running against
//! a real broker (tansu), and every PromQL expression of the shipped
//! Grafana dashboard and of the shipped rules is evaluated against it and
//! must return data; `promtool` accepts the rules and their unit tests; and
//! /readyz answers 503 while the connector drains.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::*;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

const RULES: &str = "prometheus/codat-stream.rules.yml";
const RULE_TESTS: &str = "prometheus/codat-stream.rules.test.yml";
const DASHBOARD: &str = "grafana/codat-stream-dashboard.json";

#[test]
fn promtool_accepts_the_rules_and_their_alert_unit_tests() {
    for args in [
        vec!["check", "rules", RULES],
        vec!["test", "rules", RULE_TESTS],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(deploy(""))
            .output()
            .unwrap_or_else(|e| panic!("promtool (scripts/test.sh installs it): {e}"));
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The shipped scrape config, with the rules at their path in this checkout.
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(deploy("prometheus/prometheus.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/codat-stream.rules.yml",
            &deploy(RULES).display().to_string(),
        );
    let file = dir.path().join("prometheus.yml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check config:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Prometheus server on loopback, killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The shipped rules, with the job name the rules and dashboard expect.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: codat-stream\n    static_configs:\n      - targets: ['{target}']\n",
            rules = deploy(RULES).display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("prometheus (scripts/test.sh installs it): {e}"));
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    fn api(&self, path_and_query: &str) -> Option<Value> {
        let (status, body) = http_get(&self.addr, path_and_query)?;
        let v: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && v["status"] == "success").then_some(v)
    }

    /// The result vector of an instant query.
    fn query(&self, promql: &str) -> Vec<Value> {
        let v = self
            .api(&format!("/api/v1/query?query={}", url_encode(promql)))
            .unwrap_or_else(|| panic!("query failed: {promql}"));
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The operands of an expression's top-level comparison and set operators
/// (`a > 5 and deriv(b[5m]) > 0` -> `a`, `5`, `deriv(b[5m])`, `0`): an
/// alert's expression returns nothing while it is not firing, so each
/// operand is evaluated on its own.
fn top_level_operands(expr: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0usize);
    let chars: Vec<(usize, char)> = expr.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ if depth == 0 => {
                let rest = &expr[at..];
                let op = [
                    "==", "!=", ">=", "<=", ">", "<", " and ", " or ", " unless ",
                ]
                .into_iter()
                .find(|op| rest.starts_with(op));
                if let Some(op) = op {
                    parts.push(expr[start..at].trim().to_owned());
                    start = at + op.len();
                    i = chars
                        .iter()
                        .position(|&(a, _)| a >= start)
                        .unwrap_or(chars.len());
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(expr[start..].trim().to_owned());
    parts
}

fn is_number(s: &str) -> bool {
    s.parse::<f64>().is_ok()
}

#[test]
fn operand_splitting() {
    assert_eq!(
        top_level_operands(r#"a{x=~"1|2"} > 5 and deriv(b[5m]) > 0"#),
        vec![r#"a{x=~"1|2"}"#, "5", "deriv(b[5m])", "0"]
    );
    assert_eq!(top_level_operands("up == 0"), vec!["up", "0"]);
    assert_eq!(
        top_level_operands("a > 1 and a > 5 * b"),
        vec!["a", "1", "a", "5 * b"]
    );
}

/// Dashboard queries with Grafana's variables replaced as Grafana would.
fn dashboard_queries() -> Vec<(String, String)> {
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy(DASHBOARD)).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$job", "codat-stream");
            assert!(!expr.contains('$'), "unknown variable in {expr}");
            queries.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    assert!(
        queries.len() >= 20,
        "dashboard has {} queries",
        queries.len()
    );
    queries
}

#[test]
fn prometheus_scrapes_the_connector_and_every_dashboard_and_rule_query_returns_data() {
    let broker = Broker::start(Storage::Memory);
    let names = Names::new();
    broker.create_topic(&names.ingest, 2);
    let connector = Connector::start(&broker.bootstrap(), &names, &[]);
    connector.wait_started(Duration::from_secs(60));

    // Steady traffic, with some bodies that are dead-lettered, for the
    // whole time Prometheus is watching: rates and quantiles need it.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (stop, bootstrap, topic) = (stop.clone(), broker.bootstrap(), names.ingest.clone());
        std::thread::spawn(move || {
            let inputs: Vec<Input> = generated_inputs(2_000, 10)
                .into_iter()
                .map(|(i, _)| i)
                .collect();
            for chunk in inputs.chunks(50).cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                produce(&bootstrap, &topic, chunk);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    wait_for("envelopes produced", Duration::from_secs(60), || {
        connector
            .metrics()
            .sum("codat_stream_envelopes_produced_total", &[])
            > 0.0
    });
    // librdkafka's statistics (lag, round-trip time) arrive once a second.
    wait_for("librdkafka statistics", Duration::from_secs(30), || {
        let m = connector.metrics();
        m.has("codat_stream_consumer_lag") && m.has("codat_stream_kafka_broker_rtt_seconds")
    });

    let prometheus = Prometheus::start(&connector.http);
    wait_for(
        "Prometheus to scrape the connector",
        Duration::from_secs(60),
        || {
            prometheus
                .api(
                    "/api/v1/query?query=count_over_time(up%7Bjob%3D%22codat-stream%22%7D%5B1m%5D)",
                )
                .and_then(|v| {
                    v["data"]["result"][0]["value"][1]
                        .as_str()
                        .map(str::to_owned)
                })
                .and_then(|n| n.parse::<f64>().ok())
                .is_some_and(|n| n >= 8.0)
        },
    );
    assert_eq!(
        prometheus.query(r#"up{job="codat-stream"}"#)[0]["value"][1],
        "1"
    );

    // Every rule group evaluated, no rule in error.
    let mut rules = Vec::new();
    wait_for("every rule evaluated", Duration::from_secs(30), || {
        let Some(v) = prometheus.api("/api/v1/rules") else {
            return false;
        };
        rules = v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        !rules.is_empty()
            && rules.iter().all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            })
    });
    assert!(rules.len() >= 15, "rules: {}", rules.len());
    for rule in &rules {
        assert_eq!(rule["health"], "ok", "rule in error: {rule}");
    }

    let mut empty = Vec::new();
    for rule in &rules {
        let query = rule["query"].as_str().unwrap();
        let name = rule["name"].as_str().unwrap();
        if rule["type"] == "recording" {
            if prometheus.query(name).is_empty() {
                empty.push(format!("recording rule {name}"));
            }
        } else {
            for operand in top_level_operands(query) {
                if !is_number(&operand) && prometheus.query(&operand).is_empty() {
                    empty.push(format!("alert {name}: {operand}"));
                }
            }
        }
    }
    for (panel, expr) in dashboard_queries() {
        if prometheus.query(&expr).is_empty() {
            empty.push(format!("dashboard panel {panel:?}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "queries returning no data:\n{}",
        empty.join("\n")
    );

    // Healthy and fed: no alert is firing.
    let firing = prometheus.query(r#"ALERTS{alertstate="firing"}"#);
    assert!(firing.is_empty(), "alerts firing: {firing:?}");

    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
}

/// `codat-stream health`, the container's health check: true on exit 0.
fn health_command(addr: &str, path: &str) -> bool {
    Command::new(env!("CARGO_BIN_EXE_codat-stream"))
        .args(["health", "--address", addr, "--path", path])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn readiness_answers_503_while_draining_and_liveness_stays_ok() {
    let broker = Broker::start(Storage::Memory);
    let names = Names::new();
    broker.create_topic(&names.ingest, 2);
    let inputs: Vec<Input> = generated_inputs(200, 0)
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    produce(&broker.bootstrap(), &names.ingest, &inputs);

    // A long producer linger holds consumed records in flight for seconds,
    // so the drain is long enough to observe.
    let mut connector = Connector::start(
        &broker.bootstrap(),
        &names,
        &[("CODAT_STREAM__KAFKA__PRODUCER__LINGER_MS", "5000")],
    );
    wait_for("records in flight", Duration::from_secs(60), || {
        connector
            .get("/metrics")
            .map(|(_, body)| Metrics::parse(&body))
            .is_some_and(|m| m.sum("codat_stream_in_flight_records", &[]) > 0.0)
    });
    assert_eq!(connector.get("/readyz").map(|r| r.0), Some(200));
    assert!(
        health_command(&connector.http, "/readyz"),
        "`health` says ready"
    );

    connector.sigterm();
    wait_for("/readyz to answer 503", Duration::from_secs(4), || {
        connector
            .get("/readyz")
            .is_some_and(|(status, body)| status == 503 && body.contains("draining"))
    });
    assert_eq!(connector.get("/healthz").map(|r| r.0), Some(200));
    assert!(health_command(&connector.http, "/healthz"));
    assert!(
        !health_command(&connector.http, "/readyz"),
        "`health` says not ready"
    );
    assert_eq!(
        connector.metrics().sum("codat_stream_ready", &[]),
        0.0,
        "the ready gauge follows /readyz"
    );

    let status = connector.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "log: {}", connector.raw_log_text());
    // Whatever was consumed before the signal was delivered before the exit.
    let stopped = &connector.lines("codat-stream stopped")[0];
    let consumed = stopped["consumed"].as_u64().unwrap() as usize;
    assert!(consumed > 0);
    assert_eq!(stopped["acknowledged"].as_u64(), Some(consumed as u64));
    let out = read_outputs(
        &broker.bootstrap(),
        &names,
        consumed,
        Duration::from_secs(30),
    );
    assert_eq!(out.len(), consumed, "the drain lost nothing");
}
