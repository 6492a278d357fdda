//! `codat-stream demo`, README's main-job command, run as the real binary:
//! it needs no broker, accounts for every sample webhook in a summary that
//! fits a screen, then shows the seed `connection.failed` webhook's record.

use std::process::Command;

fn demo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_codat-stream"))
        .arg("demo")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The count printed beside `name` in the summary's two-column rows.
fn count(summary: &str, name: &str) -> Option<usize> {
    summary.lines().find_map(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        words
            .chunks(2)
            .find(|pair| pair.len() == 2 && pair[1] == name)
            .and_then(|pair| pair[0].parse().ok())
    })
}

#[test]
fn demo_summarises_every_sample_then_shows_the_seed_record_whole() {
    let stdout = demo(&[]);
    let seed_at = stdout
        .find(
            "Codat's seed connection.failed webhook became this record on codat.connection.failed",
        )
        .unwrap_or_else(|| panic!("no seed record: {stdout}"));
    let summary = &stdout[..seed_at];
    assert!(summary.contains("Loaded 121 sample webhooks"), "{stdout}");
    assert!(summary.contains("the pipeline ended Drained"), "{stdout}");
    assert!(
        summary.contains("121 records landed on 56 topics: 113 envelopes"),
        "{stdout}"
    );
    // Fits a screen: a terminal of 50 lines shows all of it.
    assert!(
        summary.lines().count() <= 45,
        "{} lines before the envelope:\n{summary}",
        summary.lines().count()
    );
    // Per-topic counts, names after the prefix; the dead letters by reason
    // (one invalid sample of each kind).
    assert_eq!(count(summary, "connection.failed"), Some(2), "{summary}");
    assert_eq!(count(summary, "invoices.write.unsuccessful"), Some(5));
    assert!(summary.contains("8 dead letters on codat.dlq"), "{summary}");
    for reason in [
        "invalid_json",
        "not_an_object",
        "unknown_shape",
        "missing_field",
        "invalid_event_type",
        "unknown_legacy_rule_type",
        "invalid_field",
        "invalid_utf8",
    ] {
        assert_eq!(count(summary, reason), Some(1), "{reason}: {summary}");
    }
    assert!(!stdout.contains("\n== "), "no --all sections: {stdout}");

    // The seed record: keyed by its company, its headers, the envelope
    // pretty-printed (one field a line), and its payload parsed.
    let seed = &stdout[seed_at..];
    assert!(
        seed.contains("\nkey: 0498e921-9b53-4396-a412-4f2f5983b0a2\n"),
        "{seed}"
    );
    assert!(seed.contains("\n  webhook-id: msg_demo_0\n"), "{seed}");
    assert!(seed.contains("\n  ce_type: connection.failed\n"), "{seed}");
    assert!(
        seed.contains("\n  \"id\": \"ba29118f-5406-4e59-b05c-ba307ca38d01\",\n"),
        "{seed}"
    );
    assert!(
        seed.contains("\n  \"type\": \"connection.failed\",\n"),
        "{seed}"
    );
    assert!(seed.contains("\"platformName\": \"Basiq\""), "{seed}");
}

#[test]
fn demo_all_prints_every_topics_first_record() {
    let stdout = demo(&["--all"]);
    assert_eq!(stdout.matches("\n== ").count(), 56, "{stdout}");
    assert!(
        stdout.contains("== codat.connection.failed (2 records), first one:\n{\"id\":"),
        "{stdout}"
    );
    assert!(
        stdout.contains("== codat.dlq (8 records), first one:\nreason="),
        "{stdout}"
    );
}
