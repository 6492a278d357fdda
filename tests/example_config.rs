//! deploy/codat-stream.example.toml says what every default is, in its
//! settings and in its comments; comments that restate defaults drift (it
//! said the consumer's prefetch was `queued.max.messages.kbytes = 16384`
//! with `queued.min.messages = 10000` long after the code set 32 MiB and no
//! record threshold; the code is back at 16 MiB now, and the second test
//! injects a drifted 32768). This holds each stated default to the code:
//! - `#   key = value` lines under `[kafka.consumer]` / `[kafka.producer]`
//!   are what the code sets in that client's librdkafka configuration;
//! - `# key = value` lines naming a setting of their section are that
//!   setting's default (uncommented ones are checked by loading the file:
//!   `config::load::tests::the_shipped_example_config_documents_the_defaults`).
//!
//! Quoted keys (`# "session.timeout.ms" = ...`) are examples, not defaults.

use codat_stream::config::Settings;

const EXAMPLE: &str = include_str!("../deploy/codat-stream.example.toml");

/// A default the example states: its section, key, value and line number.
#[derive(Debug)]
struct Stated {
    section: String,
    key: String,
    value: String,
    line: usize,
}

/// `#   key = value` (client properties, indented) and `# key = value`
/// (settings) comment lines, with the section they are about: a comment
/// block right above a `[section]` line is about that section (the file
/// introduces each section so), any other is about the one it is in. The
/// value ends at two spaces (a remark may follow) and loses TOML quotes.
fn stated_defaults(text: &str) -> Vec<Stated> {
    let lines: Vec<&str> = text.lines().collect();
    let header = |l: &str| {
        l.strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .map(str::to_owned)
    };
    let mut section = String::new();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some(name) = header(lines[i]) {
            section = name;
            i += 1;
            continue;
        }
        if !lines[i].starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        while i < lines.len() && lines[i].starts_with('#') {
            i += 1;
        }
        let about = lines
            .get(i)
            .and_then(|l| header(l))
            .unwrap_or_else(|| section.clone());
        for (n, line) in lines[start..i].iter().enumerate() {
            if let Some((key, value)) = stated(line) {
                out.push(Stated {
                    section: about.clone(),
                    key,
                    value,
                    line: start + n + 1,
                });
            }
        }
    }
    out
}

/// The key and value a comment line states, if it is `# key = value`.
fn stated(line: &str) -> Option<(String, String)> {
    let (key, value) = line.strip_prefix('#')?.split_once(" = ")?;
    let key = key.trim();
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.';
    if key.is_empty() || !key.chars().all(plain) {
        return None;
    }
    let value = value.split("  ").next().unwrap_or_default().trim();
    Some((key.to_owned(), value.trim_matches('"').to_owned()))
}

/// What the code sets (or defaults) for `stated`, as text; `None` if it
/// sets nothing there.
fn actual(stated: &Stated, defaults: &Settings, as_toml: &toml::Table) -> Option<String> {
    match stated.section.as_str() {
        "kafka.consumer" => defaults
            .consumer_config()
            .get(&stated.key)
            .map(str::to_owned),
        "kafka.producer" => defaults
            .producer_config()
            .get(&stated.key)
            .map(str::to_owned),
        section => {
            let mut table = as_toml;
            for part in section.split('.') {
                table = table.get(part)?.as_table()?;
            }
            Some(match table.get(&stated.key)? {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        }
    }
}

#[test]
fn every_default_the_example_config_states_is_the_codes() {
    let defaults = Settings::default();
    let as_toml = toml::Table::try_from(&defaults).unwrap();
    let stated = stated_defaults(EXAMPLE);
    let wrong: Vec<String> = stated
        .iter()
        .filter_map(|s| {
            let actual = actual(s, &defaults, &as_toml);
            (actual.as_deref() != Some(s.value.as_str())).then(|| {
                format!(
                    "line {}: [{}] {} = {} but the code has {}",
                    s.line,
                    s.section,
                    s.key,
                    s.value,
                    actual.as_deref().unwrap_or("nothing set")
                )
            })
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The check reads what it should: the client properties and a
    // commented setting.
    let checked =
        |section: &str, key: &str| stated.iter().any(|s| s.section == section && s.key == key);
    assert!(
        checked("kafka.consumer", "queued.max.messages.kbytes"),
        "{stated:?}"
    );
    assert!(checked("kafka.producer", "linger.ms"), "{stated:?}");
    assert!(checked("normalize", "redact_key"), "{stated:?}");
}

#[test]
fn a_wrong_stated_default_is_caught() {
    let drifted = EXAMPLE.replace(
        "#   queued.max.messages.kbytes = 16384",
        "#   queued.max.messages.kbytes = 32768",
    ) + "#   queued.min.messages = 10000\n[kafka.consumer]\n[pipeline]\nx = 1\n# max_in_flight = 5\n";
    let defaults = Settings::default();
    let as_toml = toml::Table::try_from(&defaults).unwrap();
    let wrong: Vec<(String, String)> = stated_defaults(&drifted)
        .into_iter()
        .filter(|s| actual(s, &defaults, &as_toml).as_deref() != Some(s.value.as_str()))
        .map(|s| (s.key, s.value))
        .collect();
    assert_eq!(
        wrong,
        [
            ("queued.max.messages.kbytes".to_owned(), "32768".to_owned()),
            ("queued.min.messages".to_owned(), "10000".to_owned()),
            ("max_in_flight".to_owned(), "5".to_owned()),
        ]
    );
}
