//! What operators watch, checked with real parts: a real Prometheus
//! (Debian's `prometheus`, on loopback) scrapes a connector running against
//! Apache Kafka, and every PromQL expression of the shipped
//! Grafana dashboard and of the shipped rules is evaluated against it and
//! must return data; `promtool` accepts the rules and their unit tests;
//! /readyz answers 503 while the connector drains (held open by cutting the
//! broker off); and, on librdkafka's mock cluster (which can refuse produce
//! requests and commits), each alert's condition is driven through the
//! binary until Prometheus holds the alert pending, while every metric in
//! README's table leaves 0.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
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
    let broker = Broker::shared();
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
    // `receive`'s rules and panels read what only `receive` exports:
    // `receive_alerts_go_pending_and_receive_queries_return_data` checks them.
    for rule in rules.iter().filter(|r| !is_receive_rule(r)) {
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
        if !expr.contains("receive_") && prometheus.query(&expr).is_empty() {
            empty.push(format!("dashboard panel {panel:?}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "queries returning no data:\n{}",
        empty.join("\n")
    );

    // (Whether each alert fires is not judged here: every alert has a `for:`
    // of minutes. `each_alert_goes_pending_when_the_binary_exports_its_condition`
    // drives each condition through the binary.)

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
    // Clients reach the broker through a proxy: taking it down holds the
    // drain open for as long as the test needs (a producer linger alone
    // gave a window a loaded machine could miss).
    let broker_port = free_port();
    let mut proxy = Proxy::new(broker_port);
    let broker = Broker::start_advertising(broker_port, proxy.port);
    proxy.up();
    let names = Names::new();
    broker.create_topic(&names.ingest, 2);
    let inputs: Vec<Input> = generated_inputs(200, 0)
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    produce(&broker.bootstrap(), &names.ingest, &inputs);

    let mut connector = Connector::start(
        &broker.bootstrap(),
        &names,
        &[("CODAT_STREAM__KAFKA__PRODUCER__LINGER_MS", "1000")],
    );
    wait_for("records in flight", Duration::from_secs(60), || {
        connector.metric("codat_stream_in_flight_records") > 0.0
    });
    assert_eq!(connector.get("/readyz").map(|r| r.0), Some(200));
    assert!(
        health_command(&connector.http, "/readyz"),
        "`health` says ready"
    );

    // The broker out of reach: in-flight records cannot be acknowledged,
    // so the drain lasts until the proxy is back (or drain_timeout_ms, 30 s).
    proxy.down();
    connector.sigterm();
    wait_for("/readyz to answer 503", Duration::from_secs(10), || {
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
    assert!(
        connector.child.try_wait().unwrap().is_none(),
        "still draining"
    );
    proxy.up();

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

type Mock = MockCluster<'static, DefaultProducerContext>;

/// Whether a rule (from Prometheus's rules API) is about `receive`.
fn is_receive_rule(rule: &Value) -> bool {
    let text = format!("{} {}", rule["name"], rule["query"]);
    text.contains("receive")
}

/// Alert names in the shipped rules.
fn alert_names() -> Vec<String> {
    std::fs::read_to_string(deploy(RULES))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: ").map(str::to_owned))
        .collect()
}

/// Metric names in the metrics table of docs/operating.md (without the
/// `codat_stream_` prefix).
fn readme_metrics() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operating.md"))
            .unwrap();
    let table = readme
        .split("### Metrics")
        .nth(1)
        .unwrap()
        .split("| metric | meaning |")
        .nth(1)
        .unwrap();
    let mut names = Vec::new();
    for line in table.lines().skip(2) {
        let Some(cell) = line.strip_prefix("| ") else {
            break;
        };
        let cell = cell.split(" | ").next().unwrap();
        for part in cell.split(", ") {
            let name = part.trim_matches('`');
            let name = name.split('{').next().unwrap();
            names.push(name.to_owned());
        }
    }
    assert!(names.len() >= 20, "README metrics: {names:?}");
    names
}

/// The highest value each metric (by name, histograms by `_count`) has had.
#[derive(Default)]
struct Moved(std::collections::BTreeMap<String, f64>);

impl Moved {
    fn scrape(&mut self, c: &Connector) {
        let Some((200, body)) = c.get("/metrics") else {
            return;
        };
        for (name, _, value) in Metrics::parse(&body).samples {
            let e = self.0.entry(name).or_insert(0.0);
            *e = e.max(value);
        }
    }

    fn moved(&self, name: &str) -> bool {
        let full = format!("codat_stream_{name}");
        [full.clone(), format!("{full}_count")]
            .iter()
            .any(|n| self.0.get(n).is_some_and(|v| *v > 0.0))
    }
}

/// Every alert of the shipped rules, each driven through the real binary
/// until Prometheus (scraping it, evaluating the shipped rules) holds it
/// pending: the series it reads really move in the binary's export. (The
/// `for:` durations are minutes; `promtool test rules` covers them.) Along
/// the way every metric in README's table takes a non-zero value.
///
/// librdkafka's mock cluster, hosted here, is the broker: it can refuse
/// produce requests and offset commits on request. Two connector processes
/// serve the same address in turn (Prometheus's one target): the first for
/// traffic, the gap between them for "down", the second for a refusing
/// broker (loaded while nothing consumes, since the mock refuses every
/// client's produce requests alike).
#[test]
fn each_alert_goes_pending_when_the_binary_exports_its_condition() {
    let mock: Mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let names = Names::new();
    mock.create_topic(&names.ingest, 2, 1).unwrap();
    // As if provisioned: lag is reported from the committed offsets.
    commit_offsets(&bootstrap, &names.group, &names.ingest, &[(0, 0), (1, 0)]);
    let env = [
        ("CODAT_STREAM__TOPICS__CREATE", "false"),
        (
            "CODAT_STREAM__PIPELINE__PRODUCE_RETRY_BACKOFF_MAX_MS",
            "200",
        ),
        ("CODAT_STREAM__OUTPUT__MAX_TOPICS", "1"),
    ];
    let mut first = Connector::start(&bootstrap, &names, &env);
    first.wait_started(Duration::from_secs(60));
    let prometheus = Prometheus::start(&first.http);
    let mut moved = Moved::default();
    let mut pending: std::collections::BTreeSet<String> = Default::default();
    let mut wait_pending = |alert: &str, c: Option<&Connector>, moved: &mut Moved| {
        wait_for(
            &format!("alert {alert} pending"),
            Duration::from_secs(120),
            || {
                if let Some(c) = c {
                    moved.scrape(c);
                }
                let Some(v) = prometheus.api("/api/v1/alerts") else {
                    return false;
                };
                let now: Vec<String> = v["data"]["alerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["labels"]["alertname"].as_str().unwrap().to_owned())
                    .collect();
                pending.extend(now.iter().cloned());
                now.iter().any(|a| a == alert)
            },
        );
    };

    // Nothing consumed yet.
    wait_pending("CodatStreamNoInput", Some(&first), &mut moved);

    // Half the bodies invalid, 500 dead letters in a minute: the failure
    // ratio and the spike (rate over 5 min vs over 1 h). Two unlisted types
    // with max_topics = 1: the second goes to the catch-all topic.
    let mut inputs: Vec<Input> = generated_inputs(1_000, 2)
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    for ty in ["custom.one", "custom.two"] {
        inputs.push(Input::body(format!(
            r#"{{"id":"{ty}","eventType":"{ty}","payload":{{}}}}"#
        )));
    }
    produce_with(&bootstrap, &names.ingest, &inputs, &[("linger.ms", "20")]);
    wait_pending("CodatStreamParseFailureRatioHigh", Some(&first), &mut moved);
    wait_pending("CodatStreamDeadLetterSpike", Some(&first), &mut moved);

    // Offset commits refused: the group's lag grows past 10,000.
    mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE; 100_000],
    );
    let backlog: Vec<Input> = generated_inputs(12_000, 0)
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    for chunk in backlog.chunks(4_000) {
        produce_with(&bootstrap, &names.ingest, chunk, &[("linger.ms", "20")]);
        moved.scrape(&first);
    }
    wait_pending("CodatStreamConsumerLagGrowing", Some(&first), &mut moved);
    // Connections cut under the client: librdkafka counts request errors.
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT; 3],
    );
    wait_for("request errors counted", Duration::from_secs(30), || {
        moved.scrape(&first);
        moved.moved("kafka_broker_request_errors_total")
    });
    mock.clear_request_errors(RDKafkaApiKey::OffsetCommit);
    first.sigterm();
    assert_eq!(first.wait_exit(Duration::from_secs(60)).code(), Some(0));
    wait_pending("CodatStreamDown", None, &mut moved);

    // A refusing broker: records held and re-sent, readiness down, and
    // held over 5 s, so their latency is past the p99 threshold (500 of
    // the ~13,500 observations in the 5-minute window: over 1%).
    let held: Vec<Input> = generated_inputs(500, 0)
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    produce_with(&bootstrap, &names.ingest, &held, &[("linger.ms", "20")]);
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_POLICY_VIOLATION; 100_000],
    );
    // On the first's address: the one Prometheus scrapes. Its producer
    // lingers a second per attempt, so each re-sent record waits in
    // librdkafka's queue for most of its retry cycle, where a statistics
    // report counts it (a queue drained at once is 0 whenever it is read).
    let listen = first.http.clone();
    let mut second = Connector::start(
        &bootstrap,
        &names,
        &[
            env[0],
            env[1],
            env[2],
            ("CODAT_STREAM__KAFKA__PRODUCER__LINGER_MS", "1000"),
            ("CODAT_STREAM__HTTP__LISTEN", &listen),
        ],
    );
    second.http = listen;
    wait_pending("CodatStreamProduceRetrying", Some(&second), &mut moved);
    wait_pending("CodatStreamNotReady", Some(&second), &mut moved);
    wait_for("producer queue reported", Duration::from_secs(30), || {
        moved.scrape(&second);
        second
            .get("/metrics")
            .filter(|(status, _)| *status == 200)
            .is_some_and(|(_, body)| {
                let queued = Metrics::parse(&body).sum(
                    "codat_stream_kafka_queue_messages",
                    &[("client", "producer"), ("queue", "producer")],
                );
                queued > 0.0
            })
    });
    // The held records were consumed together at start-up, before the
    // first refusal came back: each is held from before this moment.
    let held_since = std::time::Instant::now();
    wait_for("records held over 5 s", Duration::from_secs(30), || {
        moved.scrape(&second);
        held_since.elapsed() > Duration::from_secs(7)
    });
    mock.clear_request_errors(RDKafkaApiKey::Produce);
    wait_for("held records acknowledged", Duration::from_secs(60), || {
        second.metric("codat_stream_processing_latency_seconds_count") >= 500.0
    });
    wait_pending("CodatStreamLatencyHigh", Some(&second), &mut moved);
    moved.scrape(&second);

    // `receive`'s alerts are driven through `receive`, in
    // `receive_alerts_go_pending_and_receive_queries_return_data`.
    let alerts: Vec<String> = alert_names()
        .into_iter()
        .filter(|a| !a.starts_with("CodatStreamReceive"))
        .collect();
    let missing: Vec<&String> = alerts.iter().filter(|a| !pending.contains(*a)).collect();
    assert!(missing.is_empty(), "alerts never pending: {missing:?}");
    // consumer_prefetch_bytes is librdkafka's fetch queue at the moment of
    // a statistics callback: zero whenever the loop keeps up, as it can on
    // this run; liveness_and_memory's prefetch test fills it on purpose.
    let still: Vec<String> = readme_metrics()
        .into_iter()
        .filter(|m| !moved.moved(m) && m != "consumer_prefetch_bytes")
        .collect();
    assert!(
        still.is_empty(),
        "README metrics that never left 0: {still:?}"
    );
}

/// Metric names in the `receive` metrics table of docs/receiving.md
/// (without the prefix).
fn readme_receive_metrics() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/receiving.md"))
            .unwrap();
    let table = readme
        .split("Receiving webhooks")
        .nth(1)
        .unwrap()
        .split("| metric | meaning |")
        .nth(1)
        .unwrap();
    let names: Vec<String> = table
        .lines()
        .skip(2)
        .map_while(|l| l.strip_prefix("| `"))
        .map(|cell| cell.split(['`', '{']).next().unwrap().to_owned())
        .collect();
    assert!(names.len() >= 5, "README receive metrics: {names:?}");
    names
}

/// `receive` scraped by a real Prometheus with the shipped rules: its two
/// alerts go pending when the binary exports their conditions (forged
/// deliveries; a broker that does not acknowledge), every `receive` rule
/// and dashboard query returns data, and every metric of README's
/// `receive` table leaves 0.
#[test]
fn receive_alerts_go_pending_and_receive_queries_return_data() {
    let broker_port = free_port();
    let mut proxy = Proxy::new(broker_port);
    let broker = Broker::start_advertising(broker_port, proxy.port);
    proxy.up();
    let topic = unique("ingest").replace('-', "_");
    broker.create_topic(&topic, 2);
    let receiver = Receiver::start(
        &broker.bootstrap(),
        &topic,
        &[
            ("CODAT_STREAM__RECEIVE__ACK_TIMEOUT_MS", "500"),
            ("CODAT_STREAM__RECEIVE__MAX_CONNECTIONS", "16"),
            (
                "CODAT_STREAM__METRICS__KAFKA_STATISTICS_INTERVAL_MS",
                "1000",
            ),
        ],
    );
    receiver.wait_ready(Duration::from_secs(60));
    let prometheus = Prometheus::start(&receiver.http);
    let key = codat_stream::core::signature::SigningKey::parse(SECRET_A).unwrap();
    let post = |id: &str, forged: bool| {
        let body = format!(r#"{{"id":"{id}","eventType":"a.b","payload":{{}}}}"#);
        let ts = now_secs();
        let signed = if forged {
            b"{}".as_slice()
        } else {
            body.as_bytes()
        };
        let sig = codat_stream::core::signature::sign(&key, id, ts, signed);
        let headers = vec![
            ("webhook-id".to_owned(), id.as_bytes().to_vec()),
            ("webhook-timestamp".to_owned(), ts.to_string().into_bytes()),
            ("webhook-signature".to_owned(), sig.into_bytes()),
        ];
        receiver.post(SIGNED_PATH, &headers, body.as_bytes()).0
    };
    // Idle connections past max_connections: some are closed for room.
    let idle: Vec<_> = (0..40)
        .map(|_| std::net::TcpStream::connect(&receiver.listen).unwrap())
        .collect();
    let mut pending = std::collections::BTreeSet::new();
    let alerts_now = |pending: &mut std::collections::BTreeSet<String>| {
        if let Some(v) = prometheus.api("/api/v1/alerts") {
            for a in v["data"]["alerts"].as_array().unwrap() {
                pending.insert(a["labels"]["alertname"].as_str().unwrap().to_owned());
            }
        }
    };
    // Each metric's highest value over the scrapes (gauges fall back to 0).
    let mut moved = std::collections::BTreeMap::<String, f64>::new();
    let scrape = |moved: &mut std::collections::BTreeMap<String, f64>| {
        if let Some((200, body)) = http_get(&receiver.http, "/metrics") {
            for (name, _, value) in Metrics::parse(&body).samples {
                let e = moved.entry(name).or_insert(0.0);
                *e = e.max(value);
            }
        }
    };
    let mut n = 0;
    // The first record to a just-created topic can take longer than the
    // 500 ms deadline (producer id, partition leaders): warm up first.
    wait_for("a first delivery stored", Duration::from_secs(30), || {
        n += 1;
        post(&format!("warm-{n}"), false) == 200
    });
    wait_for(
        "CodatStreamReceiveSignatureFailures pending",
        Duration::from_secs(120),
        || {
            n += 1;
            assert_eq!(post(&format!("ok-{n}"), false), 200);
            assert_eq!(post(&format!("forged-{n}"), true), 401);
            scrape(&mut moved);
            alerts_now(&mut pending);
            pending.contains("CodatStreamReceiveSignatureFailures")
        },
    );
    drop(idle);

    // Every `receive` rule and panel returns data while traffic flows.
    let mut empty = Vec::new();
    wait_for(
        "receive rules evaluated with data",
        Duration::from_secs(60),
        || {
            n += 1;
            post(&format!("ok-{n}"), false);
            empty.clear();
            let rules: Vec<Value> = prometheus
                .api("/api/v1/rules")
                .map(|v| {
                    v["data"]["groups"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .flat_map(|g| g["rules"].as_array().unwrap().clone())
                        .collect()
                })
                .unwrap_or_default();
            for rule in rules.iter().filter(|r| is_receive_rule(r)) {
                let name = rule["name"].as_str().unwrap();
                let query = rule["query"].as_str().unwrap();
                let operands = if rule["type"] == "recording" {
                    vec![name.to_owned()]
                } else {
                    top_level_operands(query)
                };
                for operand in operands.iter().filter(|o| !is_number(o)) {
                    if prometheus.query(operand).is_empty() {
                        empty.push(format!("rule {name}: {operand}"));
                    }
                }
            }
            for (panel, expr) in dashboard_queries() {
                if expr.contains("receive_") && prometheus.query(&expr).is_empty() {
                    empty.push(format!("dashboard panel {panel:?}: {expr}"));
                }
            }
            empty.is_empty()
        },
    );

    // The broker away: 503s at the 500 ms deadline.
    proxy.down();
    let held = {
        let listen = receiver.listen.clone();
        let (headers, body) = (
            vec![("authorization".to_owned(), LEGACY_AUTH.as_bytes().to_vec())],
            b"{}".to_vec(),
        );
        // One request held in flight for its deadline, over and over.
        std::thread::spawn(move || {
            for _ in 0..20 {
                let _ = HttpConn::connect(&listen).post(LEGACY_PATH, &headers, &body);
            }
        })
    };
    wait_for(
        "CodatStreamReceiveUnavailable pending",
        Duration::from_secs(120),
        || {
            n += 1;
            assert_eq!(post(&format!("held-{n}"), false), 503);
            scrape(&mut moved);
            alerts_now(&mut pending);
            pending.contains("CodatStreamReceiveUnavailable")
        },
    );
    let receive_alerts: Vec<String> = alert_names()
        .into_iter()
        .filter(|a| a.starts_with("CodatStreamReceive"))
        .collect();
    assert!(receive_alerts.len() >= 2, "{receive_alerts:?}");
    for alert in &receive_alerts {
        assert!(pending.contains(alert), "{alert} never pending");
    }
    held.join().unwrap();
    let still: Vec<String> = readme_receive_metrics()
        .into_iter()
        .filter(|name| {
            let full = format!("codat_stream_{name}");
            [full.clone(), format!("{full}_count")]
                .iter()
                .all(|n| moved.get(n).is_none_or(|v| *v <= 0.0))
        })
        .collect();
    assert!(
        still.is_empty(),
        "README receive metrics that never left 0: {still:?}"
    );
}
