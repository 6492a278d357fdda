//! `codat-stream normalize` and `schema`, run as the real binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_codat-stream"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const LEGACY_PUSH: &str = r#"{"ClientId":"c1","ClientName":"Bank of Dave","CompanyId":"co1","DataConnectionId":"dc1","RuleId":"r1","RuleType":"Push Operation Status Changed()","AlertId":"al1","Message":"m","Data":{"dataType":"invoices","status":"Failed","pushOperationKey":"pk1"}}"#;

#[test]
fn a_legacy_body_on_stdin_prints_the_mapped_envelope() {
    let out = run(
        &["normalize", "--timestamp-ms", "1700000000000"],
        LEGACY_PUSH.as_bytes(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = &lines(&out)[0];
    assert_eq!(env["type"], "invoices.write.unsuccessful");
    assert_eq!(env["id"], "al1");
    assert_eq!(env["shape"], "LEGACY_RULE");
    assert_eq!(env["companyId"], "co1");
    assert_eq!(env["time"], 1_700_000_000_000i64);
    let payload: Value = serde_json::from_str(env["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["status"], "Failed");
    assert_eq!(payload["id"], "pk1");
    assert_eq!(payload["connectionId"], "dc1");
}

#[test]
fn json_lines_keep_order_and_rejections_exit_2() {
    let input = format!("{LEGACY_PUSH}\n\nnot json\n{{\"type\":\"hello.world\",\"data\":{{}}}}\n");
    let out = run(
        &["normalize", "-", "--header", "webhook-id=msg_9"],
        input.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(2));
    let got = lines(&out);
    assert_eq!(got.len(), 3, "one line per body, blank lines skipped");
    assert_eq!(got[0]["type"], "invoices.write.unsuccessful");
    assert_eq!(got[1]["rejected"]["reason"], "invalid_json");
    assert!(
        got[1]["rejected"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    assert_eq!(got[2]["id"], "msg_9");
    assert_eq!(got[2]["ingest"]["offset"], 2);
}

#[test]
fn the_bundled_sample_covers_every_shape_and_rejection() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/webhooks.jsonl");
    let out = run(&["normalize", sample], b"");
    assert_eq!(out.status.code(), Some(2));
    let got = lines(&out);
    assert_eq!(got.len(), 121);
    let shapes: std::collections::BTreeSet<_> =
        got.iter().filter_map(|l| l["shape"].as_str()).collect();
    assert_eq!(shapes.len(), 3);
    let reasons: std::collections::BTreeSet<_> = got
        .iter()
        .filter_map(|l| l["rejected"]["reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 8, "{reasons:?}");
}

#[test]
fn usage_errors_exit_1() {
    assert_eq!(
        run(&["normalize", "--no-such-flag"], b"").status.code(),
        Some(1)
    );
    assert_eq!(
        run(&["normalize", "/no/such/file"], b"").status.code(),
        Some(1)
    );
    assert_eq!(run(&["frobnicate"], b"").status.code(), Some(1));
    assert_eq!(run(&["--help"], b"").status.code(), Some(0));
}

#[test]
fn schema_prints_the_avsc_file() {
    let out = run(&["schema"], b"");
    assert_eq!(out.status.code(), Some(0));
    let file = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/envelope.avsc"
    ))
    .unwrap();
    assert_eq!(out.stdout, file);
}
