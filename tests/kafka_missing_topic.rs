//! Against Apache Kafka (the shared test broker): `run` started before an
//! ingest topic exists, as a newcomer following README does, says which
//! topic it waits for and how to create it, answers `/readyz` 503 with the
//! reason, and consumes the topic within seconds of its creation, not after
//! librdkafka's 5-minute metadata refresh.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// librdkafka's own default: the test connector's 1 s would hide the wait.
const DEFAULT_REFRESH: (&str, &str) = (
    "CODAT_STREAM__KAFKA__COMMON__TOPIC_METADATA_REFRESH_INTERVAL_MS",
    "300000",
);

const AWAITED: &str = "ingest topic does not exist yet";

/// The case librdkafka alone took 5 minutes over: the consumer is in its
/// group (one ingest topic exists) when the other one is created.
#[test]
fn a_second_ingest_topic_created_while_the_first_is_consumed_is_consumed_within_seconds() {
    let broker = Broker::shared();
    let bootstrap = broker.bootstrap();
    let names = Names::new();
    let present = format!("{}.present", names.ingest);
    broker.create_topic(&present, 1);
    let topics = format!("{present},{}", names.ingest);
    let env = [DEFAULT_REFRESH, ("CODAT_STREAM__INGEST__TOPICS", &topics)];
    let connector = Connector::start(&bootstrap, &names, &env);
    connector.wait_started(Duration::from_secs(60));
    wait_for("the missing topic logged", Duration::from_secs(30), || {
        connector.logged(AWAITED)
    });
    // The group is settled on the first topic; the second comes later.
    create_then_consume(broker, &names, &connector);
    connector.sigterm();
}

/// The only ingest topic missing: named in the log and `/readyz` (under
/// KIP-848's protocol librdkafka reports no error for it), then consumed.
#[test]
fn a_missing_ingest_topic_is_named_then_consumed_once_created() {
    missing_at_start_up("classic");
}

#[test]
fn a_missing_ingest_topic_is_named_then_consumed_once_created_under_kip_848() {
    missing_at_start_up("consumer");
}

fn missing_at_start_up(protocol: &str) {
    let broker = Broker::shared();
    let bootstrap = broker.bootstrap();
    let names = Names::new();
    let mut env = group_protocol_env(protocol);
    env.push(DEFAULT_REFRESH);
    let connector = Connector::start(&bootstrap, &names, &env);
    wait_for(
        "/readyz to name the missing topic",
        Duration::from_secs(60),
        || {
            connector.get("/readyz").is_some_and(|(status, body)| {
                status == 503 && body.contains("an ingest topic does not exist")
            })
        },
    );
    wait_for("the missing topic logged", Duration::from_secs(30), || {
        connector.logged(AWAITED)
    });
    create_then_consume(broker, &names, &connector);
    wait_for("/readyz 200", Duration::from_secs(10), || {
        connector.get("/readyz").is_some_and(|(s, _)| s == 200)
    });
    connector.sigterm();
}

/// Creates `names.ingest`, produces to it and expects every output within
/// 20 s; then checks the log said it once, named it and how to create it,
/// and said when it was found.
fn create_then_consume(broker: &Broker, names: &Names, connector: &Connector) {
    let bootstrap = broker.bootstrap();
    broker.create_topic(&names.ingest, 2);
    let created = Instant::now();
    let inputs: Vec<Input> = generated_inputs(6, 0).into_iter().map(|(i, _)| i).collect();
    produce(&bootstrap, &names.ingest, &inputs);
    let out = read_outputs(&bootstrap, names, inputs.len(), Duration::from_secs(20));
    assert_eq!(
        out.len(),
        inputs.len(),
        "consumed within 20 s of the topic's creation ({:?} since); connector log: {}",
        created.elapsed(),
        connector.raw_log_text()
    );
    // Said once (the repeat is minutes away), naming the topic and how to
    // create it; then that it was found.
    let awaited = connector.lines(AWAITED);
    assert_eq!(awaited.len(), 1, "{}", connector.raw_log_text());
    assert_eq!(awaited[0]["topic"], names.ingest.as_str());
    let create = awaited[0]["create"].as_str().unwrap_or_default();
    assert!(
        create.starts_with("kafka-topics.sh --bootstrap-server ")
            && create.contains(&format!("--create --topic {} ", names.ingest)),
        "{create}"
    );
    wait_for(
        "the topic's appearance logged",
        Duration::from_secs(10),
        || connector.logged("ingest topic exists now"),
    );
}
