//! The documentation cannot drift from the repository: every relative link
//! in README.md and docs/ resolves (the file, and the heading for a
//! `#fragment`), README stays a front door, and every setting the
//! configuration code accepts appears in docs/configuration.md.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md"), repo().join("tests/README.md")];
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages
}

/// Markdown link targets `](target)` outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            code = !code;
            continue;
        }
        if code {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, punctuation
/// other than `-` and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            code = !code;
        } else if !code && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for target in links(&text) {
            if target.starts_with("http") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            if !path.exists() {
                broken.push(format!("{}: {target}", page.display()));
                continue;
            }
            let is_md = path.extension().is_some_and(|e| e == "md");
            if !fragment.is_empty() && is_md {
                let text = std::fs::read_to_string(&path).unwrap();
                if !anchors(&text).contains(&fragment.to_owned()) {
                    broken.push(format!("{}: {target} (no such heading)", page.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn readme_is_a_front_door_linking_every_docs_page() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md is {lines} lines: move the detail to docs/"
    );
    for page in pages() {
        let Ok(rel) = page.strip_prefix(repo().join("docs")) else {
            continue;
        };
        let link = format!("](docs/{})", rel.display());
        assert!(
            readme.contains(&link),
            "README does not link docs/{}",
            rel.display()
        );
    }
}

/// Every `section.key` of the default configuration (as `check-config`
/// prints it) is named in docs/configuration.md.
#[test]
fn every_setting_is_in_the_configuration_reference() {
    let out = Command::new(env!("CARGO_BIN_EXE_codat-stream"))
        .arg("check-config")
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    let mut section = String::new();
    let mut missing = Vec::new();
    let mut seen = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
        } else if let Some((key, _)) = line.split_once(" = ") {
            seen += 1;
            let setting = format!("`{section}.{}`", key.trim().trim_matches('"'));
            if !reference.contains(&setting) {
                missing.push(setting);
            }
        }
    }
    assert!(seen > 50, "check-config printed {seen} settings");
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md: {missing:?}"
    );
}
