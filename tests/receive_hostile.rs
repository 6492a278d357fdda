//! Hostile requests to `receive`: each answered with its status, with
//! bounded work, nothing stored, and the receiver still serving.

mod support;

use std::time::{Duration, Instant};

use codat_stream::core::signature::{SigningKey, sign};
use rdkafka::Message;
use support::*;

fn signed(id: &str, body: &[u8]) -> HeaderList {
    let ts = now_secs();
    let key = SigningKey::parse(SECRET_A).unwrap();
    vec![
        ("webhook-id".to_owned(), id.as_bytes().to_vec()),
        ("webhook-timestamp".to_owned(), ts.to_string().into_bytes()),
        (
            "webhook-signature".to_owned(),
            sign(&key, id, ts, body).into_bytes(),
        ),
    ]
}

/// Sends `raw` on a fresh connection: the status answered and how long it took.
fn raw(listen: &str, raw: &[u8]) -> (u16, Duration) {
    let started = Instant::now();
    let mut c = HttpConn::connect(listen);
    c.send_raw(raw).unwrap();
    let status = c.read_response().map_or(0, |(s, _)| s);
    (status, started.elapsed())
}

fn head(headers: &HeaderList, extra: &str) -> Vec<u8> {
    let mut out = format!("POST {SIGNED_PATH} HTTP/1.1\r\nHost: x\r\n{extra}").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: ").as_bytes());
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn hostile_requests_get_their_status_with_bounded_work_and_nothing_is_stored() {
    let broker = Broker::shared();
    let topic = unique("ingest").replace('-', "_");
    broker.create_topic(&topic, 1);
    let receiver = Receiver::start(
        &broker.bootstrap(),
        &topic,
        &[
            ("CODAT_STREAM__RECEIVE__MAX_BODY_BYTES", "4096"),
            ("CODAT_STREAM__RECEIVE__BODY_TIMEOUT_MS", "1000"),
        ],
    );
    receiver.wait_ready(Duration::from_secs(60));
    let body = br#"{"id":"evt-hostile","eventType":"a.b","payload":{}}"#;
    let listen = receiver.listen.as_str();

    // A head over 16 KiB, and more than 64 headers: 431, never routed.
    let mut huge = signed("h1", body);
    huge.push(("x-huge".into(), vec![b'a'; 20_000]));
    assert_eq!(raw(listen, &head(&huge, "Content-Length: 0\r\n")).0, 431);
    let mut many = signed("h2", body);
    many.extend((0..100).map(|i| (format!("x-many-{i}"), b"v".to_vec())));
    assert_eq!(raw(listen, &head(&many, "Content-Length: 0\r\n")).0, 431);

    // A chunked body past the 4 KiB limit: 413 once the limit is passed.
    let chunk = format!("400\r\n{}\r\n", "a".repeat(1024));
    let mut request = head(&signed("h3", body), "Transfer-Encoding: chunked\r\n");
    for _ in 0..8 {
        request.extend_from_slice(chunk.as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw(listen, &request).0, 413);
    // A declared length past the limit: 413 without waiting for the body.
    let (status, took) = raw(
        listen,
        &head(&signed("h4", body), "Content-Length: 100000000\r\n"),
    );
    assert_eq!(status, 413);
    assert!(
        took < Duration::from_millis(900),
        "refused unread: {took:?}"
    );
    // Broken chunked framing: 400.
    let mut broken = head(&signed("h5", body), "Transfer-Encoding: chunked\r\n");
    broken.extend_from_slice(b"zz\r\nnot a chunk\r\n");
    assert_eq!(raw(listen, &broken).0, 400);
    // A body that stops coming: 408 at receive.body_timeout_ms.
    let mut slow = head(
        &signed("h6", body),
        &format!("Content-Length: {}\r\n", body.len()),
    );
    slow.extend_from_slice(&body[..10]);
    let (status, took) = raw(listen, &slow);
    assert_eq!(status, 408);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );

    let post = |headers: &HeaderList, body: &[u8]| receiver.post(SIGNED_PATH, headers, body).0;
    // Signatures that are not base64, or not v1.
    for bad in [
        "v1,!!!not-base64!!!",
        "v1,",
        "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        "garbage",
    ] {
        let mut h = signed("s1", body);
        h[2].1 = bad.as_bytes().to_vec();
        assert_eq!(post(&h, body), 401, "{bad}");
    }
    // 1,000 entries with the valid one last: refused before any MAC, fast.
    let mut h = signed("s2", body);
    let mut many_sigs = b"v1,x ".repeat(999);
    many_sigs.extend_from_slice(&h[2].1);
    h[2].1 = many_sigs;
    let started = Instant::now();
    assert_eq!(post(&h, body), 401);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    // 1,000 full-size entries do not even fit the head.
    let mut h = signed("s3", body);
    h[2].1 = [h[2].1.as_slice(), b" "].concat().repeat(1000);
    assert_eq!(
        raw(
            listen,
            &head(&h, &format!("Content-Length: {}\r\n", body.len()))
        )
        .0,
        431
    );
    // Two signature headers, each valid: ambiguous, refused.
    let mut h = signed("s4", body);
    h.push(h[2].clone());
    assert_eq!(post(&h, body), 401);
    // Not a POST, not a path, no body.
    let mut c = HttpConn::connect(listen);
    c.send_raw(format!("GET {SIGNED_PATH} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    assert_eq!(c.read_response().unwrap().0, 405);
    assert_eq!(receiver.post("/nope", &signed("s5", body), body).0, 404);
    assert_eq!(post(&signed("s6", b""), b""), 400);

    // Non-UTF-8 header values ride along byte for byte on a valid delivery.
    let mut h = signed("ok-1", body);
    h.push(("x-bytes".into(), b"\xff\xfe\x80 raw".to_vec()));
    assert_eq!(post(&h, body), 200, "{}", receiver.raw_log_text());

    let records = read_topic(&broker.bootstrap(), &topic, Duration::from_secs(30), |m| {
        !m.is_empty()
    });
    assert_eq!(records.len(), 1, "only the valid delivery is stored");
    assert_eq!(records[0].payload(), Some(&body[..]));
    assert!(
        all_headers(&records[0]).contains(&(b"x-bytes".to_vec(), b"\xff\xfe\x80 raw".to_vec()))
    );
    let m = receiver.metrics();
    for (outcome, n) in [
        ("too_large", 2.0),
        ("malformed", 2.0),
        ("read_timeout", 1.0),
        ("unauthorized", 6.0),
        ("method_not_allowed", 1.0),
        ("not_found", 1.0),
        ("accepted", 1.0),
    ] {
        assert_eq!(
            m.sum(
                "codat_stream_receive_requests_total",
                &[("outcome", outcome)]
            ),
            n,
            "{outcome}"
        );
    }
    for (reason, n) in [
        ("no_match", 4.0),
        ("too_many_signatures", 1.0),
        ("duplicate_header", 1.0),
    ] {
        assert_eq!(
            m.sum(
                "codat_stream_receive_auth_failures_total",
                &[("reason", reason)]
            ),
            n,
            "{reason}"
        );
    }
}
