//! No two source files import each other, directly or round a longer
//! circle: a reader can then learn the crate bottom-up, one file at a time,
//! and a file can be understood (and tested) with only what it imports.
//!
//! The check reads `src/` as text: every `crate::` path (in `use`, with its
//! `{...}` groups, or written inline) names the module file it reaches, and
//! the circles of that graph are reported by their file names. `mod.rs`
//! declaring its children is not an import; `super::` and `self::` paths are
//! not followed (they name a parent's re-exports or the file itself).
//! `#[cfg(test)]` items are left out: a test may check one module against
//! another (the Avro writer against the schema it writes), which is the
//! point of the test, not a dependency of the code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`core::normalize`) -> file, for every file under `src/`.
fn module_files(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            // `main.rs` is the binary's crate root: its `crate::` is not the
            // library's, and it imports the library by name.
            if parts == ["main"] {
                continue;
            }
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

/// The text with `//` comments and string literals blanked, so paths in
/// docs and messages are not read as imports.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        // A raw string (r"..", r#".."#): its quotes do not end it.
        if !in_string && c == 'r' && !(prev.is_alphanumeric() || prev == '_') {
            let mut look = chars.clone();
            let mut hashes = 0;
            while look.peek() == Some(&'#') {
                look.next();
                hashes += 1;
            }
            if look.next() == Some('"') {
                let close: String = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let rest: String = look.collect();
                let skipped = rest.find(&close).map_or(rest.len(), |p| p + close.len());
                out.extend(rest[..skipped].chars().filter(|c| *c == '\n'));
                chars = text[text.len() - rest.len() + skipped..].chars().peekable();
                prev = '"';
                continue;
            }
        }
        prev = c;
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_string = false,
                '\n' => out.push('\n'),
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            // A char literal holding a quote must not open a string.
            '\'' => {
                out.push(c);
                let mut look = chars.clone();
                if look.next() == Some('"') && look.next() == Some('\'') {
                    chars.next();
                    chars.next();
                    out.push_str("\"'");
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The code with every `#[cfg(test)]` item (up to its `;` or the brace
/// closing its body) removed.
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let body = rest.find('{');
        let semi = rest.find(';');
        let end = match (body, semi) {
            (Some(b), Some(s)) if s < b => s + 1,
            (Some(b), _) => b + closing_brace(&rest.as_bytes()[b..]),
            (None, Some(s)) => s + 1,
            (None, None) => rest.len(),
        };
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The offset just past the brace closing the one `code` starts with,
/// skipping braces inside string, raw string and char literals (tests hold
/// JSON text such as `"{"` or `'{'`).
fn closing_brace(code: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut i = 0;
    while i < code.len() {
        match code[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            b'"' => i = past_string(code, i + 1),
            b'r' if code.get(i + 1).is_some_and(|c| *c == b'"' || *c == b'#') => {
                let hashes = code[i + 1..].iter().take_while(|c| **c == b'#').count();
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let open = i + 1 + hashes;
                if code.get(open) == Some(&b'"') {
                    i = code[open + 1..]
                        .windows(close.len())
                        .position(|w| w == close.as_slice())
                        .map_or(code.len(), |p| open + 1 + p + close.len() - 1);
                }
            }
            // A char literal ('{', '\'', '\u{7b}'), not a lifetime ('a).
            b'\'' if code.get(i + 1) == Some(&b'\\') => {
                i = code[i + 2..]
                    .iter()
                    .position(|c| *c == b'\'')
                    .map_or(code.len(), |p| i + 2 + p);
            }
            b'\'' if code.get(i + 2) == Some(&b'\'') => i += 2,
            _ => {}
        }
        i += 1;
    }
    code.len()
}

/// The index of the closing `"` of a string whose text starts at `i`.
fn past_string(code: &[u8], mut i: usize) -> usize {
    while i < code.len() {
        match code[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    code.len()
}

/// A small reader of use-trees: `a::b::{c, d::{e, f}}` -> every full path.
struct Paths<'a> {
    s: &'a [u8],
    at: usize,
}

impl Paths<'_> {
    fn skip_space(&mut self) {
        while self.at < self.s.len() && self.s[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn ident(&mut self) -> Option<String> {
        self.skip_space();
        let start = self.at;
        while self.at < self.s.len()
            && (self.s[self.at].is_ascii_alphanumeric() || self.s[self.at] == b'_')
        {
            self.at += 1;
        }
        (self.at > start).then(|| String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        let ok = self.s[self.at..].starts_with(token.as_bytes());
        if ok {
            self.at += token.len();
        }
        ok
    }

    /// Reads one tree after `prefix::`, pushing each complete path.
    fn tree(&mut self, prefix: &[String], out: &mut Vec<Vec<String>>) {
        if self.eat("{") {
            loop {
                if self.eat("}") {
                    return;
                }
                self.tree(prefix, out);
                if !self.eat(",") {
                    self.eat("}");
                    return;
                }
            }
        }
        if self.eat("*") {
            out.push(prefix.to_vec());
            return;
        }
        let Some(name) = self.ident() else {
            out.push(prefix.to_vec());
            return;
        };
        let mut path = prefix.to_vec();
        path.push(name);
        if self.eat("::") {
            self.tree(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Every `crate::` path in a file's code.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("crate::") {
        let start = from + i;
        from = start + "crate::".len();
        // `crate::` inside a longer identifier (`my_crate::`) is not ours.
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let mut reader = Paths { s: bytes, at: from };
        reader.tree(&[], &mut out);
    }
    out
}

/// The module file a path reaches: its longest prefix that is a module.
fn target(path: &[String], modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains_key(m))
}

fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = module_files(src);
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let code = without_tests(&code_only(&std::fs::read_to_string(file).unwrap()));
        let edges: BTreeSet<String> = crate_paths(&code)
            .iter()
            .filter_map(|p| target(p, &modules))
            .filter(|t| t != module && !t.is_empty())
            .collect();
        graph.insert(module.clone(), edges);
    }
    graph
}

/// Each circle once, as the modules along it (Tarjan's strongly connected
/// components of more than one module).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.graph.contains_key(w) {
                continue;
            }
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn no_two_source_files_import_each_other() {
    let src = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let graph = import_graph(src);
    let found = circles(&graph);
    let described: Vec<String> = found
        .iter()
        .map(|c| {
            let edges: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    graph[a]
                        .iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{a} -> {b}"))
                })
                .collect();
            edges.join(", ")
        })
        .collect();
    assert!(
        found.is_empty(),
        "source files importing each other (round a circle):\n  {}",
        described.join("\n  ")
    );
}

/// The reader itself: groups, globs, inline paths, comments and strings.
#[test]
fn the_reader_finds_grouped_and_inline_paths_and_skips_comments() {
    let code = code_only(
        "use crate::core::{normalize::{self, X}, signature::Verifier};\n\
         // use crate::ops::metrics;\n\
         let m = \"crate::ops::events\";\n\
         let c = '\"'; let y = crate::ops::labels::Kind::ALL;\n\
         use my_crate::kafka::x;\n",
    );
    let paths: Vec<String> = crate_paths(&code).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        paths,
        [
            "core::normalize::self",
            "core::normalize::X",
            "core::signature::Verifier",
            "ops::labels::Kind::ALL",
        ]
    );
}

#[test]
fn braces_in_literals_do_not_end_a_test_module_early() {
    let code = "#[cfg(test)]\nmod tests { fn f() { let a = \"{\"; let b = '}'; let c = r#\"}}\"#; crate::x::y(); } }\nuse crate::d;";
    let paths: Vec<String> = crate_paths(&without_tests(code))
        .iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(paths, ["d"]);
}

#[test]
fn test_items_are_left_out() {
    let code = "use crate::a;\n#[cfg(test)]\nuse crate::b;\n#[cfg(test)]\nmod tests { fn f() { { crate::c::x(); } } }\nuse crate::d;";
    let paths: Vec<String> = crate_paths(&without_tests(code))
        .iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(paths, ["a", "d"]);
}

#[test]
fn a_circle_of_three_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(circles(&graph), [["a", "b", "c"]]);
}
