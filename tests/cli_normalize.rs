//! `codat-stream normalize` and `schema`, run as the real binary; inputs
//! of gigabytes are refused or streamed without being read whole.

#[path = "support/child.rs"]
mod child;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

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

/// The sample covers every shape and the rejections a JSON Lines file can
/// show by example; the reasons it cannot (sizes, bytes, escapes) are fed
/// by `every_normaliser_reason_is_reachable_through_the_cli`.
#[test]
fn the_bundled_sample_covers_every_shape_and_eight_rejections() {
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
    let expected: std::collections::BTreeSet<&str> = [
        "invalid_json",
        "invalid_event_type",
        "invalid_field",
        "invalid_utf8",
        "missing_field",
        "not_an_object",
        "unknown_legacy_rule_type",
        "unknown_shape",
    ]
    .into();
    assert_eq!(reasons, expected);
}

/// One body per reason the normaliser can give, through the CLI: the set
/// of reasons printed is exactly the normaliser's (every one reachable).
#[test]
fn every_normaliser_reason_is_reachable_through_the_cli() {
    let cases: &[(&str, &[u8])] = &[
        ("body_too_large", &[b'{'; 300]),
        ("invalid_utf8", b"{\"type\":\"a.b\",\"data\":\"\xff\"}"),
        ("invalid_json", b"not json"),
        (
            "duplicate_key",
            br#"{"id":"d","id":"e","eventType":"a.b","payload":{}}"#,
        ),
        (
            "invalid_string",
            br#"{"id":"\ud800","eventType":"a.b","payload":{}}"#,
        ),
        ("not_an_object", b"[1]"),
        ("unknown_shape", br#"{"hello":"world"}"#),
        ("missing_field", br#"{"id":"m","eventType":"a.b"}"#),
        (
            "invalid_field",
            br#"{"id":7,"eventType":"a.b","payload":{}}"#,
        ),
        (
            "invalid_event_type",
            br#"{"id":"t","eventType":"../x","payload":{}}"#,
        ),
        (
            "unknown_legacy_rule_type",
            br#"{"RuleType":"No Such Rule","AlertId":"a"}"#,
        ),
    ];
    let normaliser: std::collections::BTreeSet<&str> = codat_stream::RejectReason::ALL
        .iter()
        .filter(|r| r.is_body_reason())
        .map(|r| r.code())
        .collect();
    let fed: std::collections::BTreeSet<&str> = cases.iter().map(|(r, _)| *r).collect();
    assert_eq!(fed, normaliser, "one case per normaliser reason");
    for (reason, body) in cases {
        let out = run(&["normalize", "-", "--max-body-bytes", "200"], body);
        assert_eq!(out.status.code(), Some(2), "{reason}");
        let got = lines(&out);
        assert_eq!(got.len(), 1, "{reason}: {got:?}");
        assert_eq!(got[0]["rejected"]["reason"], *reason, "{got:?}");
    }
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

const THREE_GIB: u64 = 3 << 30;
/// Far above the binary's own (~10 MiB), far below the inputs.
const PEAK_RSS_LIMIT_MIB: u64 = 64;

/// Runs `normalize` on `file`, as a path or (`via_stdin`) as stdin.
fn normalize_file(file: &std::path::Path, via_stdin: bool) -> (Output, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_codat-stream"));
    cmd.arg("normalize")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if via_stdin {
        cmd.arg("-")
            .stdin(Stdio::from(std::fs::File::open(file).unwrap()));
    } else {
        cmd.arg(file).stdin(Stdio::null());
    }
    child::finish_within(cmd.spawn().unwrap(), Duration::from_secs(120))
}

#[test]
fn a_huge_single_body_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let nul_bytes = dir.path().join("zeros.bin");
    child::sparse_file(&nul_bytes, b"", THREE_GIB, b"");
    let pretty = dir.path().join("pretty.json");
    child::sparse_file(&pretty, b"{\n  \"type\": \"", THREE_GIB, b"\"\n}\n");
    for (file, via_stdin) in [(&nul_bytes, false), (&nul_bytes, true), (&pretty, false)] {
        let (out, took) = normalize_file(file, via_stdin);
        let what = format!("{} (stdin: {via_stdin})", file.display());
        assert_eq!(out.status.code(), Some(2), "{what}");
        let got = lines(&out);
        assert_eq!(got.len(), 1, "{what}: {got:?}");
        assert_eq!(got[0]["rejected"]["reason"], "body_too_large", "{what}");
        assert!(
            got[0]["rejected"]["message"]
                .as_str()
                .unwrap()
                .contains("the rest of the input was not read"),
            "{what}: {got:?}"
        );
        assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
    }
    let peak = child::children_peak_rss_mib();
    assert!(peak < PEAK_RSS_LIMIT_MIB, "peak RSS {peak} MiB");
}

#[test]
fn an_over_long_json_line_is_rejected_and_the_lines_after_it_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bodies.jsonl");
    let head = format!("{LEGACY_PUSH}\n");
    let tail = format!("\n{LEGACY_PUSH}\n");
    // The second line is a 256 MiB hole of NUL bytes.
    child::sparse_file(&file, head.as_bytes(), 256 << 20, tail.as_bytes());
    let (out, _) = normalize_file(&file, false);
    assert_eq!(out.status.code(), Some(2));
    let got = lines(&out);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0]["type"], "invoices.write.unsuccessful");
    assert_eq!(got[1]["rejected"]["reason"], "body_too_large");
    assert!(
        got[1]["rejected"]["message"]
            .as_str()
            .unwrap()
            .contains("the limit is 1048576 bytes")
    );
    assert_eq!(got[2]["type"], "invoices.write.unsuccessful");
    assert_eq!(got[2]["ingest"]["offset"], 2);
    let peak = child::children_peak_rss_mib();
    assert!(peak < PEAK_RSS_LIMIT_MIB, "peak RSS {peak} MiB");
}

// `normalize --config FILE` (issue 24): the file's [normalize] settings
// apply, so a user sees what a body becomes before running the pipeline.

/// Codat's seed `connection.failed` body (its documentation's example).
fn seed_body() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/docs/000--1.json"
    ))
    .unwrap()
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// Runs `normalize` with `env` set and returns (status, stdout, stderr).
fn run_with_env(
    args: &[&str],
    stdin: &[u8],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_codat-stream"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_config_files_redaction_and_source_apply_and_the_key_is_never_printed() {
    let config = config_file(
        "[normalize]\nsource = \"urn:example:preview\"\n\
         redact = [\"referenceCompany.name\", \"referenceCompany.tags\"]\n\
         redact_mode = \"hash\"\nredact_key = \"hunter2-redact-key\"\n",
    );
    let path = config.path().to_str().unwrap();
    let (code, stdout, stderr) = run_with_env(
        &["normalize", "--config", path],
        seed_body().as_bytes(),
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let env: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(env["source"], "urn:example:preview");
    assert_eq!(
        env["redactedPaths"],
        serde_json::json!(["referenceCompany.name", "referenceCompany.tags"])
    );
    let payload: Value = serde_json::from_str(env["payload"].as_str().unwrap()).unwrap();
    let name = payload["referenceCompany"]["name"].as_str().unwrap();
    assert!(name.starts_with("hmac-sha256:"), "{name}");
    assert!(!stdout.contains("Toft stores"), "{stdout}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains("hunter2"), "{text}");
    }

    // A flag overrides the file.
    let (code, stdout, _) = run_with_env(
        &["normalize", "--config", path, "--source", "urn:flag"],
        seed_body().as_bytes(),
        &[],
    );
    assert_eq!(code, Some(0));
    assert!(stdout.contains("\"source\":\"urn:flag\""), "{stdout}");

    // Without --config nothing is redacted.
    let (_, stdout, _) = run_with_env(&["normalize"], seed_body().as_bytes(), &[]);
    assert!(stdout.contains("Toft stores"), "{stdout}");
}

#[test]
fn a_config_files_signature_checks_apply_with_the_secret_from_the_environment() {
    use codat_stream::core::signature::{SigningKey, sign};
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let config = config_file(
        "[normalize]\nverify_signatures = true\nsignature_secrets = [\"env:PREVIEW_HOOK_SECRET\"]\n",
    );
    let path = config.path().to_str().unwrap();
    let body = seed_body();
    let ts: i64 = 1_700_000_000;
    let signature = sign(
        &SigningKey::parse(SECRET).unwrap(),
        "msg_1",
        ts,
        body.as_bytes(),
    );
    let ts_ms = (ts * 1000).to_string();
    let headers = |sig: &str| {
        vec![
            "normalize".to_owned(),
            "--config".to_owned(),
            path.to_owned(),
            "--timestamp-ms".to_owned(),
            ts_ms.clone(),
            "--header".to_owned(),
            "webhook-id=msg_1".to_owned(),
            "--header".to_owned(),
            format!("webhook-timestamp={ts}"),
            "--header".to_owned(),
            format!("webhook-signature={sig}"),
        ]
    };
    let env = [("PREVIEW_HOOK_SECRET", SECRET)];
    let args = headers(&signature);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run_with_env(&args, body.as_bytes(), &env);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("\"type\":\"connection.failed\""),
        "{stdout}"
    );

    // Signed for another body: refused, exit 2, and the secret not shown.
    let forged = sign(&SigningKey::parse(SECRET).unwrap(), "msg_1", ts, b"{}");
    let args = headers(&forged);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run_with_env(&args, body.as_bytes(), &env);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stdout.contains("\"reason\":\"invalid_signature\""),
        "{stdout}"
    );
    for text in [&stdout, &stderr] {
        assert!(!text.contains("MfKQ9r8"), "{text}");
    }

    // The variable unset: a configuration error naming the setting, exit 1.
    let (code, stdout, stderr) = run_with_env(&args, body.as_bytes(), &[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("normalize.signature_secrets[0]"),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn a_missing_or_broken_config_is_refused_without_echoing_it() {
    let (code, stdout, stderr) = run_with_env(
        &["normalize", "--config", "/no/such/codat-stream.toml"],
        b"{}",
        &[],
    );
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stderr.contains("/no/such/codat-stream.toml"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");

    for (toml, needle) in [
        // Unterminated string holding a secret: the position, not the line.
        (
            "[normalize]\nredact_key = \"hunter2-unterminated\n",
            "line 2",
        ),
        // A value of the wrong type.
        (
            "[normalize]\nredact = \"hunter2-not-a-list\"\n",
            "normalize.redact",
        ),
        // An unknown key, named; its value not.
        ("[normalize]\nredact_kee = \"hunter2-typo\"\n", "redact_kee"),
        // Hash mode without a key, and a bad path: every problem at once.
        (
            "[normalize]\nredact = [\"a..b\"]\nredact_mode = \"hash\"\n",
            "normalize.redact_key",
        ),
        // Not a config file at all.
        (
            "\u{0}\u{1}hunter2-binary\u{ff}",
            "cannot load configuration",
        ),
    ] {
        let config = config_file(toml);
        let (code, stdout, stderr) = run_with_env(
            &["normalize", "--config", config.path().to_str().unwrap()],
            b"{}",
            &[],
        );
        assert_eq!(code, Some(1), "{toml}: {stdout}{stderr}");
        assert!(stderr.contains(needle), "{toml}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{toml}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
    }
}
