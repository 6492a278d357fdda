//! `codat-stream dlq replay --from-topic` on Apache Kafka (the shared test
//! broker): today's pipeline over a time range of the ingest topic, into a
//! new output prefix, once, and continued after an interrupt.

mod support;

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rdkafka::Message;
use support::*;

/// The environment of one deployment, writing under `out`'s names.
fn env(broker: &Broker, names: &Names, out: &Names) -> Vec<(String, String)> {
    [
        ("CODAT_STREAM__KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("CODAT_STREAM__INGEST__TOPICS", names.ingest.clone()),
        ("CODAT_STREAM__INGEST__GROUP_ID", names.group.clone()),
        ("CODAT_STREAM__OUTPUT__TOPIC_PREFIX", out.prefix.clone()),
        ("CODAT_STREAM__OUTPUT__DEAD_LETTER_TOPIC", out.dlq.clone()),
        (
            "CODAT_STREAM__OUTPUT__CATCH_ALL_TOPIC",
            out.catch_all.clone(),
        ),
        ("CODAT_STREAM__LOG__LEVEL", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The output names after the upgrade: a new prefix, dead-letter and
/// catch-all topic; the same ingest topic and group.
fn rebuilt(names: &Names) -> Names {
    Names {
        prefix: format!("{}rebuilt.", names.prefix),
        dlq: format!("{}.rebuilt", names.dlq),
        catch_all: format!("{}.rebuilt", names.catch_all),
        ..names.clone()
    }
}

fn rebuild(broker: &Broker, names: &Names, args: &[&str], extra: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_codat-stream"));
    c.args(["dlq", "replay", "--from-topic", &names.ingest, "--json"])
        .args(args)
        .env_clear()
        .envs(env(broker, names, &rebuilt(names)))
        .envs(extra.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null());
    c
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {:?}, stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn ran(mut c: Command) -> serde_json::Value {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}: stdout {}, stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out)
}

fn event(id: &str, event_type: &str) -> Input {
    Input {
        key: Some(format!("co-{id}").into_bytes()),
        value: format!(
            r#"{{"id":"{id}","eventType":"{event_type}","payload":{{"referenceCompany":{{"id":"co-{id}"}}}}}}"#
        )
        .into_bytes(),
        headers: vec![],
    }
}

/// Every record under `names`' outputs, once 1.5 s pass without a new one.
fn all_outputs(broker: &Broker, names: &Names) -> Vec<rdkafka::message::OwnedMessage> {
    let (mut len, mut grew) = (0, std::time::Instant::now());
    read_outputs_until(broker, names, |m| {
        if m.len() != len {
            (len, grew) = (m.len(), std::time::Instant::now());
        }
        grew.elapsed() >= Duration::from_millis(1500)
    })
}

fn read_outputs_until(
    broker: &Broker,
    names: &Names,
    want: impl FnMut(&[rdkafka::message::OwnedMessage]) -> bool,
) -> Vec<rdkafka::message::OwnedMessage> {
    consume_until(
        &broker.bootstrap(),
        |t| is_output(names, t),
        Duration::from_secs(120),
        want,
    )
}

/// How many times each `ce_id` was written, and the dead letters.
fn ids(out: &[rdkafka::message::OwnedMessage], names: &Names) -> (HashMap<String, usize>, usize) {
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut dead = 0;
    for m in out {
        if m.topic() == names.dlq {
            dead += 1;
        } else if let Some(id) = header_str(m, "ce_id") {
            *ids.entry(id).or_default() += 1;
        }
    }
    (ids, dead)
}

fn total(v: &serde_json::Value) -> u64 {
    v.as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum()
}

#[test]
fn a_rebuild_writes_a_time_range_into_a_new_prefix_once_and_leaves_the_connector_alone() {
    let broker = Broker::shared();
    let names = Names::new();
    broker.create_topic(&names.ingest, 3);
    let types = ["connection.failed", "company.created", "sync.completed"];
    let mut before: Vec<Input> = (0..30)
        .map(|i| event(&format!("a-{i}"), types[i % 3]))
        .collect();
    for i in 0..5 {
        before.push(Input {
            key: Some(b"co".to_vec()),
            value: format!("not json {i}").into_bytes(),
            headers: vec![],
        });
    }
    produce(&broker.bootstrap(), &names.ingest, &before);
    // The cut: every record so far was written before it, every later one after.
    let cut = codat_stream::ops::health::now_ms() + 1;
    wait_for("the clock past the cut", Duration::from_secs(1), || {
        codat_stream::ops::health::now_ms() > cut
    });
    let after: Vec<Input> = (0..10)
        .map(|i| event(&format!("b-{i}"), types[0]))
        .collect();
    produce(&broker.bootstrap(), &names.ingest, &after);
    let until = cut.to_string();

    let predicted = ran(rebuild(
        broker,
        &names,
        &["--until", &until, "--dry-run"],
        &[],
    ));
    assert_eq!(predicted["read"], 35, "{predicted}");
    assert_eq!(
        predicted["envelopes"]["connection.failed"], 10,
        "{predicted}"
    );
    assert_eq!(total(&predicted["envelopes"]), 30, "{predicted}");
    assert_eq!(predicted["dead_letters"]["invalid_json"], 5, "{predicted}");

    let done = ran(rebuild(broker, &names, &["--until", &until], &[]));
    assert_eq!(done["complete"], true, "{done}");
    assert_eq!(
        done["read"], 35,
        "the dry run committed no progress: {done}"
    );
    assert_eq!(done["envelopes"], predicted["envelopes"], "{done}");
    assert_eq!(done["dead_letters"], predicted["dead_letters"], "{done}");

    let new = rebuilt(&names);
    let out = all_outputs(broker, &new);
    let (written, dead) = ids(&out, &new);
    assert_eq!(dead, 5);
    assert_eq!(
        written.len(),
        30,
        "the range, not past its end: {written:?}"
    );
    assert!(written.keys().all(|id| id.starts_with("a-")));
    assert!(written.values().all(|n| *n == 1), "each once");

    let again = ran(rebuild(broker, &names, &["--until", &until], &[]));
    assert_eq!(again["read"], 0, "finished: nothing twice: {again}");
    assert_eq!(all_outputs(broker, &new).len(), out.len());

    // The connector's own group, transactional id and changelog untouched:
    // `run` still starts from the beginning, under the old names.
    let run = Connector::start(&broker.bootstrap(), &names, &[]);
    run.expect_outputs(&broker.bootstrap(), &names, 45);
}

#[test]
fn a_rebuild_interrupted_continues_where_it_stopped_and_writes_each_once() {
    let broker = Broker::shared();
    let names = Names::new();
    broker.create_topic(&names.ingest, 2);
    const N: usize = 2_000;
    let inputs: Vec<Input> = (0..N)
        .map(|i| event(&format!("e-{i}"), "connection.failed"))
        .collect();
    produce(&broker.bootstrap(), &names.ingest, &inputs);
    let new = rebuilt(&names);
    // One record in flight at a time: slow enough to interrupt half way.
    let slow = [("CODAT_STREAM__PIPELINE__MAX_IN_FLIGHT", "1")];

    let child = rebuild(broker, &names, &[], &slow)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    read_outputs_until(broker, &new, |m| m.len() >= N / 5);
    // A second rebuild of the same group would split the partitions with
    // the first and each wait for the other's: refused.
    let out = rebuild(broker, &names, &[], &[]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("active members"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let first = child.wait_with_output().unwrap();
    let first = json(&first);
    assert_eq!(first["complete"], false, "interrupted: {first}");
    let read_first = first["read"].as_u64().unwrap();
    assert!(read_first < N as u64, "{first}");

    let second = ran(rebuild(broker, &names, &[], &[]));
    assert_eq!(second["complete"], true, "{second}");
    assert_eq!(
        read_first + second["read"].as_u64().unwrap(),
        N as u64,
        "continued where it stopped: {first} then {second}"
    );
    let (written, _) = ids(&all_outputs(broker, &new), &new);
    assert_eq!(written.len(), N, "every record");
    assert!(written.values().all(|n| *n == 1), "none twice");
}

/// `n` records in one transaction: the partitions' last offsets are
/// commit markers, never delivered to a reader.
fn produce_in_transaction(broker: &Broker, topic: &str, inputs: &[Input]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("transactional.id", unique("upstream"))
        .create()
        .unwrap();
    let t = Duration::from_secs(30);
    producer.init_transactions(t).unwrap();
    producer.begin_transaction().unwrap();
    for i in inputs {
        let mut r = BaseRecord::<[u8], [u8]>::to(topic).payload(&i.value);
        if let Some(k) = &i.key {
            r = r.key(k);
        }
        producer.send(r).unwrap();
    }
    producer.commit_transaction(t).unwrap();
}

#[test]
fn an_exactly_once_rebuild_ends_at_a_range_ending_in_transaction_markers() {
    let broker = Broker::shared();
    let names = Names::new();
    broker.create_topic(&names.ingest, 2);
    for batch in 0..2 {
        let inputs: Vec<Input> = (0..20)
            .map(|i| event(&format!("t{batch}-{i}"), "connection.failed"))
            .collect();
        produce_in_transaction(broker, &names.ingest, &inputs);
    }
    let eos = [("CODAT_STREAM__DELIVERY__GUARANTEE", "exactly-once")];
    let done = ran(rebuild(broker, &names, &[], &eos));
    assert_eq!(done["complete"], true, "{done}");
    assert_eq!(done["read"], 40, "{done}");
    let new = rebuilt(&names);
    let (written, _) = ids(&all_outputs(broker, &new), &new);
    assert_eq!(written.len(), 40);
    assert!(written.values().all(|n| *n == 1), "none twice");
    let again = ran(rebuild(broker, &names, &[], &eos));
    assert_eq!(again["read"], 0, "{again}");
}

#[test]
fn a_rebuild_refuses_a_topic_or_group_not_its_own_before_connecting() {
    let names = Names::new();
    // Nothing listens there: each refusal comes before any connection.
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_codat-stream"))
            .args(["dlq", "replay"])
            .args(args)
            .env_clear()
            .env("CODAT_STREAM__KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
            .env("CODAT_STREAM__INGEST__TOPICS", &names.ingest)
            .env("CODAT_STREAM__INGEST__GROUP_ID", &names.group)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    for (args, says) in [
        (
            vec!["--from-topic", "codat.secret-topic"],
            "--from-topic must name one of ingest.topics",
        ),
        (
            vec!["--from-topic", &names.ingest, "--group", &names.group],
            "must not be the connector's own ingest.group_id",
        ),
        (
            vec!["--from-topic", &names.ingest, "--group", "a group"],
            "--group must be 1 to 200 printable ASCII",
        ),
        (
            vec!["--from-topic", &names.ingest, "--reason", "invalid_json"],
            "cannot be used with",
        ),
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("secret-topic"), "not echoed: {stderr}");
    }
}

#[test]
fn a_rebuild_of_one_partition_writes_its_records_and_starts_the_others_at_their_end() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let broker = Broker::shared();
    let names = Names::new();
    broker.create_topic(&names.ingest, 2);
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    for i in 0..30 {
        let e = event(&format!("p{}-{i}", i % 2), "connection.failed");
        producer
            .send(
                BaseRecord::<[u8], [u8]>::to(&names.ingest)
                    .partition(i % 2)
                    .payload(&e.value),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let done = ran(rebuild(broker, &names, &["--partition", "0"], &[]));
    assert_eq!(done["complete"], true, "{done}");
    assert_eq!(done["read"], 15, "{done}");
    let new = rebuilt(&names);
    let (written, _) = ids(&all_outputs(broker, &new), &new);
    assert_eq!(written.len(), 15);
    assert!(
        written.keys().all(|id| id.starts_with("p0-")),
        "{written:?}"
    );

    // Partition 1 was never the rebuild's: its group starts it at its end,
    // so its history is not fetched only to be skipped.
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", format!("{}.rebuild", names.group))
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(&names.ingest, 1);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    let at = committed.elements()[0].offset();
    assert_eq!(at, rdkafka::Offset::Offset(15), "partition 1 at its end");
}
