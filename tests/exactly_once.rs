//! Exactly-once mode (`delivery.guarantee = "exactly-once"`) through the
//! real binary, on Apache Kafka (`Broker::shared`, one KRaft node): outputs
//! and offsets in committed transactions, three SIGKILLs and a rebalance
//! with each input exactly once on the outputs (`read_committed`), a zombie
//! fenced by a newer instance, and a revoke mid-transaction whose aborted
//! outputs stay invisible. The crash and revoke tests run under both
//! consumer group protocols (`classic`, and KIP-848's `consumer`).
//! `tests/dedup.rs` runs its retry scenario in this mode too.

mod support;

use std::time::Duration;

use support::*;

const PARTITIONS: i32 = 4;
/// The output types of `generated_inputs`.
const TYPES: [&str; 4] = [
    "connection.failed",
    "invoices.write.successful",
    "connection.connected",
    "read.completed",
];

/// The connector's settings for exactly-once with transactional id
/// `<group>-<id>` (unique per test, shared by instances given the same
/// `id`), under consumer group `protocol`.
fn env(names: &Names, id: &str, protocol: &str) -> Vec<(&'static str, &'static str)> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut e = vec![
        ("CODAT_STREAM__TOPICS__CREATE", "false"),
        ("CODAT_STREAM__DELIVERY__GUARANTEE", "exactly-once"),
        (
            "CODAT_STREAM__DELIVERY__TRANSACTIONAL_ID",
            leak(format!("{}-{id}", names.group)),
        ),
        ("CODAT_STREAM__DELIVERY__TRANSACTION_MAX_MS", "100"),
    ];
    e.extend(group_protocol_env(protocol));
    e
}

/// Every topic the connector writes, and the ingest topic.
fn topics(names: &Names) -> Vec<(String, i32)> {
    let mut t = vec![
        (names.ingest.clone(), PARTITIONS),
        (names.dlq.clone(), 2),
        (names.catch_all.clone(), 2),
    ];
    t.extend(TYPES.iter().map(|ty| (format!("{}{ty}", names.prefix), 2)));
    t
}

/// A fresh deployment on the shared broker: its topics, and `n` generated
/// records (one in 50 a dead letter) on the ingest topic: (names, the
/// bootstrap, the input ids).
fn loaded(n: usize) -> (Names, String, Vec<String>) {
    let names = Names::new();
    let broker = Broker::shared();
    for (t, p) in topics(&names) {
        broker.create_topic(&t, p);
    }
    let bootstrap = broker.bootstrap();
    let (inputs, ids): (Vec<Input>, Vec<String>) = generated_inputs(n, 50).into_iter().unzip();
    produce(&bootstrap, &names.ingest, &inputs);
    (names, bootstrap, ids)
}

/// Waits until the connector settled `n` records (envelopes, dead letters).
fn settled(c: &Connector, n: f64) {
    c.wait_started(Duration::from_secs(60));
    wait_for(
        &format!("{n} records settled"),
        Duration::from_secs(120),
        || {
            let m = c.metrics();
            m.sum("codat_stream_envelopes_produced_total", &[])
                + m.sum("codat_stream_dead_lettered_total", &[])
                >= n
        },
    );
}

/// The transaction protocol end to end: 5,000 records (one in 50 a dead
/// letter) in transactions of at most 100 ms; every transaction commits,
/// none aborts, each input's output is read once, and the offsets
/// committed inside the transactions are the group's committed offsets.
#[test]
fn outputs_and_offsets_go_into_committed_transactions() {
    const N: usize = 5_000;
    let (names, bootstrap, ids) = loaded(N);
    let mut c = Connector::start(&bootstrap, &names, &env(&names, "a", "classic"));
    settled(&c, N as f64);
    wait_for(
        "the last transaction committed",
        Duration::from_secs(30),
        || {
            let m = c.metrics();
            m.sum("codat_stream_transaction_records_total", &[]) >= N as f64
        },
    );
    let m = c.metrics();
    let committed = m.sum(
        "codat_stream_transactions_total",
        &[("outcome", "committed")],
    );
    assert!(committed >= 2.0, "{committed} transactions committed");
    assert_eq!(
        m.sum("codat_stream_transactions_total", &[("outcome", "aborted")]),
        0.0
    );
    assert_eq!(
        committed_total(&bootstrap, &names.group, &names.ingest, PARTITIONS),
        N as i64,
        "the transactions committed the group's offsets up to the end"
    );
    c.sigterm();
    assert!(c.wait_exit(Duration::from_secs(60)).success());
    let (seen, total) = seen_ids(&bootstrap, &names, N);
    assert_each_once(&seen, total, &ids);
}

/// Waits until the group committed at least `at` offsets in total.
fn progress(bootstrap: &str, names: &Names, at: i64) {
    wait_for(
        &format!("{at} offsets committed"),
        Duration::from_secs(180),
        || committed_total(bootstrap, &names.group, &names.ingest, PARTITIONS) >= at,
    );
}

/// A pseudo-random fraction in [0, 1) from the clock.
fn random_fraction(salt: u64) -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut x = nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x % 10_000) as f64 / 10_000.0
}

/// 50,000 records (one in 50 a dead letter); the connector SIGKILLed at
/// three random points, a second instance joining and leaving (a
/// rebalance), then a SIGTERM: a `read_committed` reader of every output
/// topic (envelopes and dead letters) sees each input exactly once.
#[test]
fn kills_and_a_rebalance_leave_each_input_exactly_once_on_the_outputs() {
    kills_and_a_rebalance("classic");
}

#[test]
fn kills_and_a_rebalance_leave_each_input_exactly_once_under_kip_848() {
    kills_and_a_rebalance("consumer");
}

fn kills_and_a_rebalance(protocol: &str) {
    const N: usize = 50_000;
    let (names, bootstrap, ids) = loaded(N);
    let a_env = env(&names, "a", protocol);
    for k in 0..3u64 {
        // Three kill points, each in its own fifth of the input, at random.
        let at = (k as f64 + random_fraction(k)) / 5.0;
        let mut c = Connector::start(&bootstrap, &names, &a_env);
        progress(&bootstrap, &names, (N as f64 * at) as i64);
        c.kill9();
        eprintln!("killed instance A at {:.1}% committed", at * 100.0);
    }
    let mut a = Connector::start(&bootstrap, &names, &a_env);
    progress(&bootstrap, &names, (N * 7 / 10) as i64);
    assert_group_protocol(&bootstrap, &names.group, protocol);
    let mut b = Connector::start(&bootstrap, &names, &env(&names, "b", protocol));
    wait_for("B assigned partitions", Duration::from_secs(60), || {
        b.metric("codat_stream_assigned_partitions") > 0.0
    });
    progress(&bootstrap, &names, (N * 8 / 10) as i64);
    b.sigterm();
    assert!(b.wait_exit(Duration::from_secs(60)).success());
    progress(&bootstrap, &names, N as i64);
    a.sigterm();
    assert!(a.wait_exit(Duration::from_secs(60)).success());
    let (seen, total) = seen_ids(&bootstrap, &names, N);
    assert_each_once(&seen, total, &ids);
}

/// A second instance with the same transactional id fences the first (a
/// zombie: it is still running and holds records): the first stops with
/// exit 1 and says it was fenced, the second carries on and finishes the
/// input, and nothing the zombie sent after the fence is ever committed:
/// each input is on the outputs exactly once.
#[test]
fn a_newer_instance_with_the_same_transactional_id_fences_the_older() {
    const N: usize = 2_000;
    let names = Names::new();
    let broker = Broker::shared();
    for (t, p) in topics(&names) {
        broker.create_topic(&t, p);
    }
    let bootstrap = broker.bootstrap();
    let (inputs, ids): (Vec<Input>, Vec<String>) = generated_inputs(N, 50).into_iter().unzip();
    produce(&bootstrap, &names.ingest, &inputs[..N / 2]);
    let same = env(&names, "same", "classic");
    let mut a = Connector::start(&bootstrap, &names, &same);
    settled(&a, (N / 2) as f64);
    let mut b = Connector::start(&bootstrap, &names, &same);
    b.wait_started(Duration::from_secs(60));
    produce(&bootstrap, &names.ingest, &inputs[N / 2..]);
    let status = a.wait_exit(Duration::from_secs(120));
    assert_eq!(status.code(), Some(1), "the fenced instance exits 1");
    assert!(
        a.raw_log_text().contains("fenced"),
        "it says it was fenced:\n{}",
        a.raw_log_text()
    );
    wait_for("B took every partition", Duration::from_secs(60), || {
        b.metric("codat_stream_assigned_partitions") == PARTITIONS as f64
    });
    progress(&bootstrap, &names, N as i64);
    b.sigterm();
    assert!(b.wait_exit(Duration::from_secs(60)).success());
    let (seen, total) = seen_ids(&bootstrap, &names, N);
    assert_each_once(&seen, total, &ids);
}

/// A second instance joining mid-stream revokes partitions from the first
/// during a transaction: the first aborts it (the abort must finish with
/// outputs in flight: the purged records' reports are served), rewinds,
/// commits transactions again, and both stop cleanly. The aborted outputs
/// are invisible to `read_committed` and the new owner resumes from the
/// committed offsets: each input exactly once.
#[test]
fn a_revoke_mid_transaction_aborts_and_the_instance_goes_on() {
    revoke_mid_transaction("classic");
}

#[test]
fn a_revoke_mid_transaction_aborts_and_the_instance_goes_on_under_kip_848() {
    revoke_mid_transaction("consumer");
}

fn revoke_mid_transaction(protocol: &str) {
    const N: usize = 3_000;
    let (names, bootstrap, ids) = loaded(N);
    // Slow (about 100/s) so that B joins mid-stream.
    let mut a_env = env(&names, "a", protocol);
    a_env.push(("CODAT_STREAM__PIPELINE__MAX_IN_FLIGHT", "10"));
    a_env.push(("CODAT_STREAM__KAFKA__PRODUCER__LINGER_MS", "100"));
    // Long transactions: one is open whenever the revoke lands.
    a_env.retain(|(k, _)| *k != "CODAT_STREAM__DELIVERY__TRANSACTION_MAX_MS");
    a_env.push(("CODAT_STREAM__DELIVERY__TRANSACTION_MAX_MS", "2000"));
    a_env.push(("CODAT_STREAM__DELIVERY__TRANSACTION_MAX_RECORDS", "1000000"));
    let mut a = Connector::start(&bootstrap, &names, &a_env);
    settled(&a, 200.0);
    assert_group_protocol(&bootstrap, &names.group, protocol);
    let mut b = Connector::start(&bootstrap, &names, &env(&names, "b", protocol));
    wait_for(
        "A aborted a transaction on the revoke",
        Duration::from_secs(60),
        || {
            a.metrics()
                .sum("codat_stream_transactions_total", &[("outcome", "aborted")])
                >= 1.0
        },
    );
    let committed = |c: &Connector| {
        c.metrics().sum(
            "codat_stream_transactions_total",
            &[("outcome", "committed")],
        )
    };
    let at_abort = committed(&a);
    b.wait_started(Duration::from_secs(60));
    progress(&bootstrap, &names, N as i64);
    assert!(committed(&a) > at_abort, "A commits again after the abort");
    a.sigterm();
    b.sigterm();
    assert!(
        a.wait_exit(Duration::from_secs(60)).success(),
        "A stops cleanly"
    );
    assert!(
        b.wait_exit(Duration::from_secs(60)).success(),
        "B stops cleanly"
    );
    let (seen, total) = seen_ids(&bootstrap, &names, N);
    assert_each_once(&seen, total, &ids);
}
