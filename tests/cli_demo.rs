//! `codat-stream demo`, README's main-job command, run as the real binary:
//! it needs no broker and accounts for every sample webhook.

use std::process::Command;

#[test]
fn demo_routes_every_sample_and_dead_letters_the_invalid_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_codat-stream"))
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Loaded 121 sample webhooks"), "{stdout}");
    assert!(stdout.contains("the pipeline ended Drained"), "{stdout}");
    assert!(stdout.contains("121 records landed on"), "{stdout}");
    // Per-topic counts: the 8 invalid samples on the dead-letter topic,
    // and e.g. both connection.failed examples on their own topic.
    let count = |topic: &str| -> usize {
        stdout
            .lines()
            .find_map(|l| {
                let mut parts = l.split_whitespace();
                let n = parts.next()?.parse().ok()?;
                (parts.next()? == topic).then_some(n)
            })
            .unwrap_or(0)
    };
    assert_eq!(count("codat.dlq"), 8, "{stdout}");
    assert_eq!(count("codat.connection.failed"), 2, "{stdout}");
    assert_eq!(count("codat.invoices.write.unsuccessful"), 5, "{stdout}");
    // One decoded envelope per topic.
    assert!(
        stdout.contains("== codat.connection.failed (2 records), first one:\n{\"id\":"),
        "{stdout}"
    );
}
