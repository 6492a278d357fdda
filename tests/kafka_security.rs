//! codat-stream on a secured Apache Kafka (`Broker::shared_secured`): SCRAM
//! over TLS and mutual TLS, with `StandardAuthorizer` and only the ACLs
//! README's security section lists.

mod support;

use std::time::Duration;

use support::*;

/// How a test's connector proves who it is.
enum Identity {
    /// SCRAM-SHA-512 user `n` over `SASL_SSL`, with this password.
    Scram { user: usize, password: String },
    /// A client certificate over `SSL`.
    Tls(Issued),
}

impl Identity {
    fn scram(user: usize) -> Identity {
        Identity::Scram {
            user,
            password: scram_user(user).1,
        }
    }

    fn principal(&self) -> String {
        match self {
            Identity::Scram { user, .. } => format!("User:{}", scram_user(*user).0),
            Identity::Tls(issued) => format!("User:{}", issued.cn),
        }
    }

    /// The bootstrap address and the connector's environment: settings
    /// from the environment, the password too, the CA and keys from files.
    fn env(&self, broker: &Broker) -> (String, Vec<(String, String)>) {
        let ca = broker.security().pki.ca().display().to_string();
        let common = |k: &str| format!("CODAT_STREAM__KAFKA__COMMON__{k}");
        match self {
            Identity::Scram { user, password } => (
                broker.sasl_ssl_bootstrap(),
                vec![
                    (common("SECURITY_PROTOCOL"), "SASL_SSL".into()),
                    (common("SASL_MECHANISM"), "SCRAM-SHA-512".into()),
                    (common("SASL_USERNAME"), scram_user(*user).0),
                    (common("SASL_PASSWORD"), password.clone()),
                    (common("SSL_CA_LOCATION"), ca),
                ],
            ),
            Identity::Tls(issued) => (
                broker.ssl_bootstrap(),
                vec![
                    (common("SECURITY_PROTOCOL"), "SSL".into()),
                    (common("SSL_CA_LOCATION"), ca),
                    (
                        common("SSL_CERTIFICATE_LOCATION"),
                        issued.cert.display().to_string(),
                    ),
                    (common("SSL_KEY_LOCATION"), issued.key.display().to_string()),
                ],
            ),
        }
    }
}

/// Delivery modes, as `[delivery]` and `[dedup]` set them.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    AtLeastOnce,
    Dedup,
    ExactlyOnce,
}

impl Mode {
    fn env(self, names: &Names) -> Vec<(String, String)> {
        match self {
            Mode::AtLeastOnce => vec![],
            Mode::Dedup => vec![("CODAT_STREAM__DEDUP__ENABLED".into(), "true".into())],
            Mode::ExactlyOnce => vec![
                (
                    "CODAT_STREAM__DELIVERY__GUARANTEE".into(),
                    "exactly-once".into(),
                ),
                (
                    "CODAT_STREAM__DELIVERY__TRANSACTIONAL_ID".into(),
                    format!("{}-txn", names.group),
                ),
            ],
        }
    }
}

/// README's ACL list for a connector deployment in `mode`, with
/// `topics.create` on. Each line of README's table is one entry here.
fn connector_grants(names: &Names, mode: Mode) -> Vec<Grant> {
    use Resource::*;
    let mut g = vec![
        Grant::literal(Topic, &names.ingest, "READ"),
        Grant::literal(Group, &names.group, "READ"),
        Grant::prefixed(Topic, &names.prefix, "WRITE"),
        Grant::prefixed(Topic, &names.prefix, "CREATE"),
        Grant::literal(Topic, &names.dlq, "WRITE"),
        Grant::literal(Topic, &names.dlq, "CREATE"),
        Grant::literal(Topic, &names.catch_all, "WRITE"),
        Grant::literal(Topic, &names.catch_all, "CREATE"),
    ];
    if mode == Mode::Dedup {
        let changelog = format!("{}.dedup", names.group);
        g.push(Grant::literal(Topic, &changelog, "READ"));
        g.push(Grant::literal(Topic, &changelog, "WRITE"));
        g.push(Grant::literal(Topic, &changelog, "CREATE"));
    }
    if mode == Mode::ExactlyOnce {
        g.push(Grant::literal(
            TransactionalId,
            &format!("{}-txn", names.group),
            "WRITE",
        ));
    }
    g
}

fn start(broker: &Broker, names: &Names, id: &Identity, mode: Mode) -> Connector {
    let (bootstrap, mut env) = id.env(broker);
    env.extend(mode.env(names));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Connector::start(&bootstrap, names, &env)
}

/// Feeds `n` generated bodies (some invalid) and waits for each output.
fn drain(broker: &Broker, names: &Names, connector: &Connector, n: usize) {
    let inputs = generated_inputs(n, 10);
    let ids: Vec<String> = inputs.iter().map(|(_, id)| id.clone()).collect();
    let records: Vec<Input> = inputs.into_iter().map(|(i, _)| i).collect();
    produce(&broker.bootstrap(), &names.ingest, &records);
    connector.wait_started(Duration::from_secs(60));
    let seen = read_ids(&broker.bootstrap(), names, &ids, Duration::from_secs(90));
    assert_all_seen(&seen, &ids);
}

/// No line at ERROR from the connector (librdkafka's own lines aside).
fn assert_no_errors(connector: &Connector) {
    let errors: Vec<serde_json::Value> = connector
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l["level"] == "ERROR" && l["target"] != "librdkafka")
        .cloned()
        .collect();
    assert!(errors.is_empty(), "errors logged: {errors:?}");
}

#[test]
fn scram_over_tls_drains_with_only_readmes_acls_in_each_mode() {
    let broker = Broker::shared_secured();
    for (user, mode) in [
        (0, Mode::AtLeastOnce),
        (1, Mode::Dedup),
        (2, Mode::ExactlyOnce),
    ] {
        let names = Names::new();
        broker.create_topic(&names.ingest, 2);
        let id = Identity::scram(user);
        broker.grant(&id.principal(), &connector_grants(&names, mode));
        let connector = start(broker, &names, &id, mode);
        drain(broker, &names, &connector, 200);
        assert_no_errors(&connector);
        assert_eq!(
            connector.get("/readyz").map(|(s, _)| s),
            Some(200),
            "{mode:?}: ready"
        );
    }
}

#[test]
fn mtls_drains_with_only_readmes_acls() {
    let broker = Broker::shared_secured();
    let names = Names::new();
    broker.create_topic(&names.ingest, 2);
    let cert = broker
        .security()
        .pki
        .issue("connector-tls", &[], Validity::Current);
    let id = Identity::Tls(cert);
    broker.grant(
        &id.principal(),
        &connector_grants(&names, Mode::AtLeastOnce),
    );
    let connector = start(broker, &names, &id, Mode::AtLeastOnce);
    drain(broker, &names, &connector, 200);
}

/// A connector that cannot get in: what it says, then a restart with the
/// cause fixed drains everything it was given meanwhile.
struct Refusal {
    /// The identity and environment that fail, and the bootstrap used.
    bad: Identity,
    bootstrap: Option<String>,
    ca: Option<String>,
    /// The identity that works once the operator fixed it.
    good: Identity,
    /// The log's `code` and the setting /readyz and the log name.
    code: &'static str,
    setting: &'static str,
}

fn refused_then_fixed(r: Refusal) {
    let broker = Broker::shared_secured();
    let names = Names::new();
    broker.create_topic(&names.ingest, 2);
    for id in [&r.bad, &r.good] {
        broker.grant(
            &id.principal(),
            &connector_grants(&names, Mode::AtLeastOnce),
        );
    }
    let inputs = generated_inputs(50, 10);
    let ids: Vec<String> = inputs.iter().map(|(_, id)| id.clone()).collect();
    let records: Vec<Input> = inputs.into_iter().map(|(i, _)| i).collect();
    produce(&broker.bootstrap(), &names.ingest, &records);

    let (bootstrap, mut env) = r.bad.env(broker);
    let bootstrap = r.bootstrap.unwrap_or(bootstrap);
    if let Some(ca) = r.ca {
        env.retain(|(k, _)| !k.ends_with("SSL_CA_LOCATION"));
        env.push(("CODAT_STREAM__KAFKA__COMMON__SSL_CA_LOCATION".into(), ca));
    }
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut bad = Connector::start(&bootstrap, &names, &env_refs);
    wait_for(r.code, Duration::from_secs(30), || {
        bad.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l["code"] == r.code && l["level"] == "ERROR")
    });
    let (status, body) = bad.get("/readyz").expect("/readyz answers");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(r.setting),
        "/readyz names {}: {body}",
        r.setting
    );
    let coded = || -> Vec<serde_json::Value> {
        bad.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l["code"] == r.code)
            .cloned()
            .collect()
    };
    let message = coded()[0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains(r.setting),
        "the log names {}: {message}",
        r.setting
    );
    // librdkafka retries, then finds every broker down: still up, still
    // unready, one line for the cause (not one per retry).
    wait_for("every broker down", Duration::from_secs(30), || {
        bad.get("/readyz")
            .is_some_and(|(_, b)| b.contains("brokers unreachable"))
    });
    assert!(bad.child.try_wait().unwrap().is_none(), "it did not exit");
    assert_eq!(coded().len(), 1, "logged once");
    let shown = format!("{body}{}", bad.raw_log_text());
    for (_, v) in &env {
        if v.contains("secret") || v.contains("password") {
            assert!(!shown.contains(v.as_str()), "a secret was shown");
        }
    }
    bad.sigterm();
    assert!(bad.wait_exit(Duration::from_secs(30)).success());

    let good = start(broker, &names, &r.good, Mode::AtLeastOnce);
    good.wait_started(Duration::from_secs(60));
    let seen = read_ids(&broker.bootstrap(), &names, &ids, Duration::from_secs(60));
    assert_all_seen(&seen, &ids);
}

#[test]
fn a_wrong_password_is_named_unready_and_nothing_is_lost_once_fixed() {
    refused_then_fixed(Refusal {
        bad: Identity::Scram {
            user: 3,
            password: "not-the-password-Xy7".into(),
        },
        bootstrap: None,
        ca: None,
        good: Identity::scram(3),
        code: "sasl_authentication_failed",
        setting: "sasl.password",
    });
}

#[test]
fn an_expired_client_certificate_is_named_unready_and_nothing_is_lost_once_fixed() {
    let pki = &Broker::shared_secured().security().pki;
    refused_then_fixed(Refusal {
        bad: Identity::Tls(pki.issue("connector-renewed", &[], Validity::Expired)),
        bootstrap: None,
        ca: None,
        good: Identity::Tls(pki.issue("connector-renewed", &[], Validity::Current)),
        code: "client_certificate_refused",
        setting: "ssl.certificate.location",
    });
}

#[test]
fn a_client_certificate_from_another_ca_is_named_unready_and_nothing_is_lost_once_fixed() {
    let broker = Broker::shared_secured();
    let other = Pki::new(&broker.dir().join(unique("other-ca")), "another CA");
    refused_then_fixed(Refusal {
        bad: Identity::Tls(other.issue("connector-reissued", &[], Validity::Current)),
        bootstrap: None,
        ca: None,
        good: Identity::Tls(broker.security().pki.issue(
            "connector-reissued",
            &[],
            Validity::Current,
        )),
        code: "client_certificate_refused",
        setting: "ssl.certificate.location",
    });
}

#[test]
fn an_untrusted_broker_certificate_is_named_unready_and_nothing_is_lost_once_fixed() {
    let broker = Broker::shared_secured();
    let other = Pki::new(&broker.dir().join(unique("other-ca")), "another CA");
    refused_then_fixed(Refusal {
        bad: Identity::scram(4),
        bootstrap: None,
        ca: Some(other.ca().display().to_string()),
        good: Identity::scram(4),
        code: "broker_certificate_unverified",
        setting: "ssl.ca.location",
    });
}

#[test]
fn a_host_name_the_certificate_does_not_name_is_refused_and_nothing_is_lost_once_fixed() {
    let broker = Broker::shared_secured();
    // The broker's certificate names IP:127.0.0.1 only.
    refused_then_fixed(Refusal {
        bad: Identity::scram(5),
        bootstrap: Some(
            broker
                .sasl_ssl_bootstrap()
                .replace("127.0.0.1", "localhost"),
        ),
        ca: None,
        good: Identity::scram(5),
        code: "broker_certificate_unverified",
        setting: "kafka.bootstrap_servers",
    });
}

#[test]
fn probe_acls() {
    let _ = Broker::shared_secured();
    let mut handles = Vec::new();
    for mode in [Mode::AtLeastOnce, Mode::Dedup, Mode::ExactlyOnce] {
        let n = connector_grants(&Names::new(), mode).len();
        let skip = match mode { Mode::AtLeastOnce => 0, Mode::Dedup => 8, Mode::ExactlyOnce => 8 };
        for i in skip..n {
            handles.push(std::thread::spawn(move || {
                let broker = Broker::shared_secured();
                let names = Names::new();
                broker.create_topic(&names.ingest, 2);
                let id = Identity::Tls(broker.security().pki.issue(&format!("acl-{}-{i}", mode as u8), &[], Validity::Current));
                let mut grants = connector_grants(&names, mode);
                let removed = grants.remove(i);
                broker.grant(&id.principal(), &grants);
                let inputs = generated_inputs(20, 10);
                let records: Vec<Input> = inputs.into_iter().map(|(i, _)| i).collect();
                produce(&broker.bootstrap(), &names.ingest, &records);
                let mut c = start(broker, &names, &id, mode);
                std::thread::sleep(Duration::from_secs(25));
                let outs = consume_until(&broker.bootstrap(), |t| is_output(&names, t), Duration::from_secs(3), |_| false);
                let mut by_topic = std::collections::BTreeMap::new();
                for m in &outs { *by_topic.entry(rdkafka::Message::topic(m).replace(&names.prefix, "PREFIX.")).or_insert(0) += 1; }
                let alive = c.child.try_wait().unwrap();
                if alive.is_some() { c.kill9(); eprintln!("EXIT LOG {removed}: {}", c.raw_log_text().lines().rev().take(4).collect::<Vec<_>>().join("\n")); }
                let log: Vec<String> = c.log.lock().unwrap().iter().filter(|l| l["level"] != "INFO" && l["target"] != "librdkafka").map(|l| { let mut l = l.clone(); l.as_object_mut().unwrap().remove("timestamp"); l.to_string() }).collect();
                let mut dedup = log.clone(); dedup.sort(); dedup.dedup();
                eprintln!("==== {mode:?} without {removed}: exit {alive:?} readyz {:?} outputs {by_topic:?}\n{}", c.get("/readyz"), dedup.iter().take(8).map(|s| &s[..s.len().min(400)]).collect::<Vec<_>>().join("\n"));
                c.kill9();
            }));
        }
    }
    for h in handles { h.join().unwrap(); }
}
