//! Producing test inputs and reading outputs and committed offsets.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::*;

/// One record to load into the ingest topic.
#[derive(Clone, Debug)]
pub struct Input {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Input {
    pub fn body(value: impl Into<Vec<u8>>) -> Input {
        Input {
            key: None,
            value: value.into(),
            headers: Vec::new(),
        }
    }
}

/// Produces every input to `topic` and waits for each acknowledgement,
/// in librdkafka's ordinary batches (a consumer resuming inside a batch
/// must skip to its offset: Kafka serves the whole batch).
pub fn produce(bootstrap: &str, topic: &str, inputs: &[Input]) {
    produce_with(bootstrap, topic, inputs, &[]);
}

/// Like [`produce`], with extra producer properties.
pub fn produce_with(bootstrap: &str, topic: &str, inputs: &[Input], extra: &[(&str, &str)]) {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let producer: FutureProducer = config.create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut pending = futures::stream::FuturesUnordered::new();
        for input in inputs {
            let mut headers = OwnedHeaders::new();
            for (k, v) in &input.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: v.as_deref(),
                });
            }
            let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                .payload(input.value.as_slice())
                .headers(headers);
            if let Some(k) = &input.key {
                r = r.key(k.as_slice());
            }
            loop {
                match producer.send_result(r) {
                    Ok(f) => {
                        pending.push(f);
                        break;
                    }
                    Err((_, back)) => {
                        r = back;
                        // Queue full: let deliveries complete.
                        use futures::StreamExt;
                        let _ = pending.next().await;
                    }
                }
            }
        }
        use futures::StreamExt;
        while let Some(d) = pending.next().await {
            d.unwrap()
                .unwrap_or_else(|(e, _)| panic!("produce failed: {e}"));
        }
    });
}

/// Consumes every topic `select` accepts (re-checking the topic list as
/// topics appear) from the beginning until `want(records so far)` holds or
/// `within` passes; returns what was read.
pub fn consume_until(
    bootstrap: &str,
    select: impl Fn(&str) -> bool,
    within: Duration,
    mut want: impl FnMut(&[OwnedMessage]) -> bool,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let deadline = Instant::now() + within;
    let mut assigned: std::collections::HashSet<(String, i32)> = Default::default();
    let mut next_refresh = Instant::now();
    let mut got = Vec::new();
    while !want(&got) && Instant::now() < deadline {
        if Instant::now() >= next_refresh {
            next_refresh = Instant::now() + Duration::from_millis(500);
            if let Ok(metadata) = consumer.fetch_metadata(None, Duration::from_secs(5)) {
                let mut tpl = TopicPartitionList::new();
                for t in metadata.topics().iter().filter(|t| select(t.name())) {
                    for p in t.partitions() {
                        if assigned.insert((t.name().to_owned(), p.id())) {
                            tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)
                                .unwrap();
                        }
                    }
                }
                if tpl.count() > 0 {
                    consumer.incremental_assign(&tpl).unwrap();
                }
            }
        }
        // Errors (the broker restarting) are transient for a reader: keep polling.
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            got.push(m.detach());
        }
    }
    got
}

/// Reads the deployment's output topics (envelopes, catch-all, dead
/// letters) until at least `n` records are there or `within` passes.
pub fn read_outputs(
    bootstrap: &str,
    names: &Names,
    n: usize,
    within: Duration,
) -> Vec<OwnedMessage> {
    consume_until(bootstrap, |t| is_output(names, t), within, |m| m.len() >= n)
}

/// The value of header `name` of a record.
pub fn header(m: &OwnedMessage, name: &str) -> Option<Vec<u8>> {
    // Read as bytes: rdkafka's `Headers::iter` panics on non-UTF-8 keys.
    let headers = codat_stream::kafka::record_headers::header_pairs(m.headers()?.as_borrowed());
    headers
        .into_iter()
        .find(|(k, _)| *k == name.as_bytes())
        .and_then(|(_, v)| v.map(<[u8]>::to_vec))
}

/// The header's value as text.
pub fn header_str(m: &OwnedMessage, name: &str) -> Option<String> {
    header(m, name).map(|v| String::from_utf8(v).unwrap())
}

/// `n` valid webhook bodies of every shape, each with a unique id, plus
/// every `invalid_every`-th one an invalid body. Returns the inputs and the
/// id each is expected under (envelope `ce_id`, or for dead letters the body).
pub fn generated_inputs(n: usize, invalid_every: usize) -> Vec<(Input, String)> {
    (0..n)
        .map(|i| {
            let id = format!("gen-{i:08}");
            let company = format!("company-{}", i % 97);
            if invalid_every > 0 && i % invalid_every == invalid_every - 1 {
                let body = format!("not json {id}");
                return (Input::body(body.clone()), body);
            }
            let body = match i % 4 {
                0 => format!(r#"{{"id":"{id}","eventType":"connection.failed","generatedDate":"2024-08-08T17:10:34.015Z","payload":{{"referenceCompany":{{"id":"{company}"}},"connection":{{"id":"c-{i}","status":"PendingAuth"}}}}}}"#),
                1 => format!(r#"{{"ClientId":"cl","CompanyId":"{company}","DataConnectionId":"dc-{i}","RuleId":"r","RuleType":"Push Operation Status Changed()","AlertId":"{id}","Message":"m","Data":{{"dataType":"invoices","status":"Success","pushOperationKey":"k-{i}"}}}}"#),
                2 => format!(r#"{{"ClientId":"cl","CompanyId":"{company}","RuleType":"DataConnectionStatusChanged","AlertId":"{id}","Data":{{"newStatus":"Linked","oldStatus":"PendingAuth"}}}}"#),
                _ => format!(r#"{{"id":"{id}","eventType":"read.completed","payload":{{"referenceCompany":{{"id":"{company}"}},"dataTypes":[{{"dataType":"invoices","connectionId":"d"}}]}}}}"#),
            };
            (Input { key: Some(company.into_bytes()), value: body.into_bytes(), headers: vec![("webhook-id".into(), Some(format!("msg_{i}").into_bytes()))] }, id)
        })
        .collect()
}

/// The id a consumed output record stands for: `ce_id` for envelopes, the
/// body for dead letters.
pub fn output_id(m: &OwnedMessage, dlq: &str) -> String {
    if m.topic() == dlq {
        String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()
    } else {
        header_str(m, "ce_id").unwrap_or_default()
    }
}

/// Whether `topic` is an output of the deployment (envelopes, catch-all, dead letters).
pub fn is_output(names: &Names, topic: &str) -> bool {
    topic.starts_with(&names.prefix) || topic == names.dlq || topic == names.catch_all
}

/// Reads the outputs until every expected id is present (or `within`
/// passes); returns how often each id was seen.
pub fn read_ids(
    bootstrap: &str,
    names: &Names,
    expected: &[String],
    within: Duration,
) -> HashMap<String, usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut counted = 0;
    let want: std::collections::HashSet<&String> = expected.iter().collect();
    let mut found = 0;
    consume_until(
        bootstrap,
        |t| is_output(names, t),
        within,
        |msgs| {
            for m in &msgs[counted..] {
                let id = output_id(m, &names.dlq);
                let c = seen.entry(id.clone()).or_default();
                *c += 1;
                if *c == 1 && want.contains(&id) {
                    found += 1;
                }
            }
            counted = msgs.len();
            found == want.len()
        },
    );
    seen
}

/// Asserts every expected id was seen at least once.
pub fn assert_all_seen(seen: &HashMap<String, usize>, expected: &[String]) {
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} ids missing from the output, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(5)]
    );
}

/// A consumer in `group` that never commits by itself: to read or set the
/// group's committed offsets as another member would.
fn group_member(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// The offsets `group` has committed on partitions `0..partitions` of
/// `topic`, asked of the broker (partitions with none are left out).
pub fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, i64> {
    let consumer = group_member(bootstrap, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let Ok(got) = consumer.committed_offsets(tpl, Duration::from_secs(10)) else {
        return BTreeMap::new();
    };
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// The sum of the committed offsets: with every partition read from 0, the
/// number of records the group has committed past.
pub fn committed_total(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    committed_offsets(bootstrap, group, topic, partitions)
        .values()
        .sum()
}

/// Commits `offsets` (partition, next offset to read) for `group`, as a
/// previous member would have.
pub fn commit_offsets(bootstrap: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let consumer = group_member(bootstrap, group);
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .unwrap();
    }
    consumer
        .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
        .unwrap();
}

/// Reads every output topic `read_committed` (librdkafka's default) for
/// 3 s past the `n`-th record, so an extra copy shows: where each input id
/// was found (`topic[partition]@offset`, and a dead letter's input), and the
/// records read.
pub fn seen_ids(bootstrap: &str, names: &Names, n: usize) -> (HashMap<String, Vec<String>>, usize) {
    let (mut len, mut grew) = (0, Instant::now());
    let outputs = consume_until(
        bootstrap,
        |t| is_output(names, t),
        Duration::from_secs(120),
        |m| {
            if m.len() != len {
                (len, grew) = (m.len(), Instant::now());
            }
            len >= n && grew.elapsed() >= Duration::from_secs(3)
        },
    );
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for m in &outputs {
        let mut at = format!("{}[{}]@{}", m.topic(), m.partition(), m.offset());
        if let (Some(p), Some(o)) = (
            header_str(m, "codat_stream.dlq.partition"),
            header_str(m, "codat_stream.dlq.offset"),
        ) {
            // A dead letter: the input it stands for.
            at.push_str(&format!(" from ingest[{p}]@{o}"));
        }
        seen.entry(output_id(m, &names.dlq)).or_default().push(at);
    }
    (seen, outputs.len())
}

/// Asserts each of `ids` was seen once and nothing else was: a failure
/// names how many ids came more than once and where the copies are (for
/// the broker's kept log).
pub fn assert_each_once(seen: &HashMap<String, Vec<String>>, total: usize, ids: &[String]) {
    let mut dup: Vec<_> = seen.iter().filter(|(_, at)| at.len() > 1).collect();
    dup.sort();
    assert!(
        dup.is_empty(),
        "{} ids seen more than once, e.g. {:?}",
        dup.len(),
        &dup[..dup.len().min(8)]
    );
    let counts: HashMap<String, usize> =
        seen.iter().map(|(id, at)| (id.clone(), at.len())).collect();
    assert_all_seen(&counts, ids);
    assert_eq!(total, ids.len(), "each input exactly once");
}

/// What Apache Kafka's Java client reads of the outputs at `isolation`
/// (`tests/java/ReadIds.java`), until `expected` records are in and none
/// came for 3 s: the total, and a line per id read more than once (with
/// where each copy is). A second reader no one here wrote: a duplicate
/// librdkafka's reader shows and Java's does not is a reader's matter.
pub fn java_read_ids(
    bootstrap: &str,
    names: &Names,
    isolation: &str,
    expected: usize,
) -> (usize, Vec<String>) {
    let quoted = |t: &str| t.replace('.', "\\.");
    let pattern = format!(
        "^({}.*|{}|{})$",
        quoted(&names.prefix),
        quoted(&names.dlq),
        quoted(&names.catch_all)
    );
    let out = std::process::Command::new("java")
        .arg("-cp")
        .arg(format!("{}/*", kafka_libs().display()))
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/ReadIds.java"))
        .args([
            bootstrap,
            isolation,
            &pattern,
            &names.dlq,
            &expected.to_string(),
        ])
        .output()
        .expect("java runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ReadIds.java failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total = stdout
        .lines()
        .find_map(|l| l.strip_prefix("total "))
        .and_then(|n| n.trim().parse().ok())
        .expect("ReadIds.java prints its total");
    let dups = stdout
        .lines()
        .filter(|l| l.starts_with("dup "))
        .map(str::to_owned)
        .collect();
    (total, dups)
}
