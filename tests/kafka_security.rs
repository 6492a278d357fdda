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

/// The example configuration in deploy/security/ for this identity.
fn example(id: &Identity) -> std::path::PathBuf {
    let file = match id {
        Identity::Scram { .. } => "scram-tls.toml",
        Identity::Tls(_) => "mtls.toml",
    };
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/security")
        .join(file)
}

/// Starts a connector with deploy/security's example for `id`: the file
/// gives the protocol and mechanism; the environment gives the test's
/// paths, user name and password in place of the example's.
fn start_from_example(broker: &Broker, names: &Names, id: &Identity, mode: Mode) -> Connector {
    let (bootstrap, mut env) = id.env(broker);
    env.retain(|(k, _)| !k.ends_with("SECURITY_PROTOCOL") && !k.ends_with("SASL_MECHANISM"));
    env.extend(mode.env(names));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Connector::start_with_config(&bootstrap, names, &env, Some(&example(id)))
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
fn scram_over_tls_drains_from_the_example_config_with_only_readmes_acls_in_each_mode() {
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
        let connector = start_from_example(broker, &names, &id, mode);
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
fn mtls_drains_from_the_example_config_with_only_readmes_acls() {
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
    let connector = start_from_example(broker, &names, &id, Mode::AtLeastOnce);
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

/// What the connector does when one grant of README's list is missing.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Up and unready: `/readyz` and one ERROR line (this `code`) name the
    /// setting; nothing consumed is committed, so nothing is lost.
    Unready {
        setting: &'static str,
        code: &'static str,
    },
    /// Exits 1 at start-up, its last line naming what to grant.
    Exits(&'static str),
    /// The envelopes go to the catch-all topic (dead letters still to theirs).
    CatchAll,
    /// The dead letters are held (re-sent, unready); envelopes flow.
    DeadLettersHeld,
    /// Everything is written, and one ERROR line says what is degraded.
    Degraded(&'static str),
    /// Not needed by these records: everything is written.
    NotUsed,
}

/// The answer for each grant of [`connector_grants`], in its order.
fn answers(mode: Mode) -> Vec<Answer> {
    use Answer::*;
    let mut a = vec![
        Unready {
            setting: "ingest.topics",
            code: "ingest_topic_not_authorized",
        },
        Unready {
            setting: "ingest.group_id",
            code: "group_not_authorized",
        },
        CatchAll,
        Exits("grant this client CREATE"),
        DeadLettersHeld,
        Exits("grant this client CREATE"),
        NotUsed,
        Exits("grant this client CREATE"),
    ];
    match mode {
        Mode::AtLeastOnce => {}
        Mode::Dedup => a.extend([
            Degraded("cannot restore de-duplication state"),
            Degraded("cannot write the de-duplication changelog"),
            Exits("grant this client CREATE"),
        ]),
        Mode::ExactlyOnce => a.push(Exits("WRITE on TransactionalId")),
    }
    a
}

/// Starts a connector with every grant but `missing` and checks `answer`.
fn without_one_grant(mode: Mode, missing: usize, answer: Answer) {
    let broker = Broker::shared_secured();
    let names = Names::new();
    broker.create_topic(&names.ingest, 2);
    let cn = format!("acl-{mode:?}-{missing}");
    let id = Identity::Tls(broker.security().pki.issue(&cn, &[], Validity::Current));
    let mut grants = connector_grants(&names, mode);
    let removed = grants.remove(missing);
    broker.grant(&id.principal(), &grants);
    let changelog = format!("{}.dedup", names.group);
    if removed == Grant::literal(Resource::Topic, &changelog, "READ") {
        // A fresh changelog needs no reading: give it a record to restore.
        broker.create_topic_with(&changelog, 2, &[("cleanup.policy", "compact")]);
        let remembered = Input {
            key: Some(b"0123456789abcdef".to_vec()),
            value: b"remembered".to_vec(),
            headers: vec![],
        };
        produce(&broker.bootstrap(), &changelog, &[remembered]);
    }
    // 18 valid bodies and 2 that are not JSON.
    let records: Vec<Input> = generated_inputs(20, 10)
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    produce(&broker.bootstrap(), &names.ingest, &records);
    let mut c = start(broker, &names, &id, mode);
    let what = format!("{mode:?} without {removed}: {answer:?}");
    let plain = broker.bootstrap();
    let count = |topic: &dyn Fn(&str) -> bool, n: usize| {
        consume_until(
            &plain,
            |t| topic(t),
            Duration::from_secs(60),
            |m| m.len() >= n,
        )
        .len()
    };
    let envelopes = |t: &str| t.starts_with(&names.prefix);
    match answer {
        Answer::Unready { setting, code } => {
            wait_for(&what, Duration::from_secs(60), || {
                c.get("/readyz")
                    .is_some_and(|(s, b)| s == 503 && b.contains(setting))
            });
            // /readyz can say it before the log line reaches the reader.
            let lines = || {
                c.log
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|l| l["code"] == code)
                    .count()
            };
            wait_for(&what, Duration::from_secs(10), || lines() >= 1);
            assert_eq!(lines(), 1, "{what}: one line");
            assert!(c.child.try_wait().unwrap().is_none(), "{what}: up");
            assert_eq!(
                committed_total(&plain, &names.group, &names.ingest, 2),
                0,
                "{what}"
            );
        }
        Answer::Exits(text) => {
            let status = c.wait_exit(Duration::from_secs(90));
            assert_eq!(status.code(), Some(1), "{what}");
            let log = c.raw_log_text();
            let last = log.lines().last().unwrap_or_default();
            assert!(last.contains(text), "{what}: its last line: {last}");
        }
        Answer::CatchAll => {
            assert_eq!(count(&|t| t == names.catch_all, 18), 18, "{what}");
            assert_eq!(count(&|t| t == names.dlq, 2), 2, "{what}");
        }
        Answer::DeadLettersHeld => {
            assert_eq!(count(&envelopes, 18), 18, "{what}");
            wait_for(&what, Duration::from_secs(60), || {
                c.get("/readyz")
                    .is_some_and(|(s, b)| s == 503 && b.contains("failing to produce"))
            });
            assert!(c.logged("the broker refuses a dead letter: holding its partition"));
            let held = committed_total(&plain, &names.group, &names.ingest, 2);
            assert!(
                held < 20,
                "{what}: nothing committed past a held dead letter"
            );
        }
        Answer::Degraded(text) => {
            assert_eq!(count(&|t| is_output(&names, t), 20), 20, "{what}");
            wait_for(&what, Duration::from_secs(30), || {
                c.lines(text).iter().any(|l| l["level"] == "ERROR")
            });
        }
        Answer::NotUsed => {
            assert_eq!(count(&|t| is_output(&names, t), 20), 20, "{what}");
        }
    }
    c.kill9();
}

/// Each grant of README's list removed in turn (a principal of its own per
/// case): never a crash, never silent loss.
fn each_grant_removed(mode: Mode) {
    let _ = Broker::shared_secured();
    let cases: Vec<_> = answers(mode).into_iter().enumerate().collect();
    assert_eq!(cases.len(), connector_grants(&Names::new(), mode).len());
    // The grants every mode shares are checked in at-least-once mode only.
    let first = if mode == Mode::AtLeastOnce { 0 } else { 8 };
    let threads: Vec<_> = cases
        .into_iter()
        .skip(first)
        .map(|(i, answer)| std::thread::spawn(move || without_one_grant(mode, i, answer)))
        .collect();
    let failed = threads.into_iter().filter_map(|t| t.join().err()).count();
    assert_eq!(failed, 0, "cases failed (their panics are above)");
}

#[test]
fn each_grant_removed_at_least_once() {
    each_grant_removed(Mode::AtLeastOnce);
}

#[test]
fn each_changelog_grant_removed_with_dedup() {
    each_grant_removed(Mode::Dedup);
}

#[test]
fn the_transactional_id_grant_removed_in_exactly_once() {
    each_grant_removed(Mode::ExactlyOnce);
}

fn start_receiver(broker: &Broker, topic: &str, id: &Identity) -> Receiver {
    let (bootstrap, env) = id.env(broker);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Receiver::start(&bootstrap, topic, &env)
}

/// Posts signed deliveries `ids`; each answer's status.
fn post_all(receiver: &Receiver, ids: &[String]) -> Vec<u16> {
    ids.iter()
        .map(|id| {
            let (headers, body) = signed_delivery(id);
            receiver.post(SIGNED_PATH, &headers, &body).0
        })
        .collect()
}

#[test]
fn receive_stores_every_delivery_over_scram_and_mtls_with_write_on_its_topic_only() {
    let broker = Broker::shared_secured();
    let cert = broker
        .security()
        .pki
        .issue("receiver-tls", &[], Validity::Current);
    for id in [Identity::scram(8), Identity::Tls(cert)] {
        let topic = unique("receive-secured");
        broker.create_topic(&topic, 2);
        broker.grant(
            &id.principal(),
            &[Grant::literal(Resource::Topic, &topic, "WRITE")],
        );
        let receiver = start_receiver(broker, &topic, &id);
        receiver.wait_ready(Duration::from_secs(60));
        let ids: Vec<String> = (0..20).map(|i| format!("evt-secured-{i}")).collect();
        assert!(post_all(&receiver, &ids).iter().all(|s| *s == 200));
        let stored = read_topic(&broker.bootstrap(), &topic, Duration::from_secs(30), |m| {
            m.len() >= ids.len()
        });
        assert_eq!(stored.len(), ids.len(), "every 200 is on the topic");
    }
}

#[test]
fn receive_with_a_wrong_password_is_unready_answers_503_and_stores_once_fixed() {
    let broker = Broker::shared_secured();
    let topic = unique("receive-refused");
    broker.create_topic(&topic, 2);
    let good = Identity::scram(9);
    broker.grant(
        &good.principal(),
        &[Grant::literal(Resource::Topic, &topic, "WRITE")],
    );
    let bad = Identity::Scram {
        user: 9,
        password: "not-the-password-Rq2".into(),
    };
    let mut receiver = start_receiver(broker, &topic, &bad);
    wait_for(
        "/readyz to name sasl.password",
        Duration::from_secs(30),
        || {
            http_get(&receiver.http, "/readyz")
                .is_some_and(|(s, b)| s == 503 && b.contains("sasl.password"))
        },
    );
    let ids: Vec<String> = (0..3).map(|i| format!("evt-refused-{i}")).collect();
    // Codat retries what is not answered 2xx.
    assert!(post_all(&receiver, &ids).iter().all(|s| *s == 503));
    assert!(!receiver.raw_log_text().contains("not-the-password-Rq2"));
    receiver.sigterm();
    assert!(receiver.wait_exit(Duration::from_secs(30)).success());

    let receiver = start_receiver(broker, &topic, &good);
    receiver.wait_ready(Duration::from_secs(60));
    assert!(post_all(&receiver, &ids).iter().all(|s| *s == 200));
    let stored = read_topic(&broker.bootstrap(), &topic, Duration::from_secs(30), |m| {
        m.len() >= ids.len()
    });
    assert_eq!(stored.len(), ids.len());
}

/// A distinctive line of a PEM text's body (the base64 between the armour).
fn pem_body_line(pem: &str) -> String {
    pem.lines().nth(2).unwrap().to_owned()
}

#[test]
fn secrets_in_file_and_environment_never_reach_output_logs_metrics_or_dead_letters() {
    let broker = Broker::shared_secured();
    let names = Names::new();
    broker.create_topic(&names.ingest, 2);
    let (user, password) = scram_user(10);
    let id = Identity::scram(10);
    broker.grant(
        &id.principal(),
        &connector_grants(&names, Mode::AtLeastOnce),
    );
    let pki = &broker.security().pki;
    let cert = pki.issue("secrets-check", &[], Validity::Current);
    let key_password = "key-pass-Vb81sQ";
    let key_pem = pki.encrypted_key(&cert, key_password);
    let token = "bearer-token-Jm4tK0";
    // The password and an (encrypted) private key in the file, the key's
    // password and a token in the environment; librdkafka's own debug
    // output on for security and configuration.
    let config = broker.dir().join(unique("secrets")).with_extension("toml");
    let toml = format!(
        "[kafka.common]\n\
         \"security.protocol\" = \"SASL_SSL\"\n\
         \"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\
         \"sasl.username\" = \"{user}\"\n\
         \"sasl.password\" = \"{password}\"\n\
         \"ssl.ca.location\" = \"{ca}\"\n\
         \"ssl.key.pem\" = \"\"\"\n{key_pem}\"\"\"\n\
         \"ssl.certificate.pem\" = \"\"\"\n{cert_pem}\"\"\"\n\
         \"debug\" = \"security,conf,broker\"\n",
        ca = pki.ca().display(),
        cert_pem = std::fs::read_to_string(&cert.cert).unwrap(),
    );
    std::fs::write(&config, toml).unwrap();
    let env = [
        (
            "CODAT_STREAM__KAFKA__COMMON__SSL_KEY_PASSWORD",
            key_password,
        ),
        ("CODAT_STREAM__SCHEMA_REGISTRY__BEARER_TOKEN", token),
        ("CODAT_STREAM__LOG__LEVEL", "debug"),
    ];
    let secrets = [
        password.clone(),
        key_password.to_owned(),
        pem_body_line(&key_pem),
        token.to_owned(),
    ];
    let assert_hidden = |what: &str, text: &str| {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{what} shows a secret");
        }
    };

    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_codat-stream"))
        .args(["check-config", "--config"])
        .arg(&config)
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(shown.contains("sasl.password"), "{shown}");
    assert_hidden("check-config", &shown);

    let bootstrap = broker.sasl_ssl_bootstrap();
    let mut c = Connector::start_with_config(&bootstrap, &names, &env, Some(&config));
    let inputs = generated_inputs(20, 10);
    let ids: Vec<String> = inputs.iter().map(|(_, id)| id.clone()).collect();
    let records: Vec<Input> = inputs.into_iter().map(|(i, _)| i).collect();
    produce(&broker.bootstrap(), &names.ingest, &records);
    c.wait_started(Duration::from_secs(60));
    read_ids(&broker.bootstrap(), &names, &ids, Duration::from_secs(60));
    let (_, metrics) = c.get("/metrics").unwrap();
    assert_hidden("/metrics", &metrics);
    let dead = read_topic(
        &broker.bootstrap(),
        &names.dlq,
        Duration::from_secs(30),
        |m| m.len() >= 2,
    );
    assert_eq!(dead.len(), 2);
    for m in &dead {
        for (k, v) in all_headers(m) {
            assert_hidden("a dead letter's headers", &String::from_utf8_lossy(&k));
            assert_hidden("a dead letter's headers", &String::from_utf8_lossy(&v));
        }
    }
    c.sigterm();
    c.wait_exit(Duration::from_secs(30));
    let log = c.raw_log_text();
    assert!(
        log.contains("\"level\":\"DEBUG\""),
        "the log is at debug level"
    );
    assert!(
        log.contains("SASL"),
        "librdkafka's security debug is in the log"
    );
    assert_hidden("the log", &log);
}
