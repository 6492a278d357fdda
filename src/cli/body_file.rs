//! Files of webhook bodies, as `codat-stream normalize` reads them: one
//! JSON document (pretty-printed or not), or JSON Lines, one body per line.
//! [`Bodies`] reads them from a file or a pipe holding about one body in
//! memory, so the size of the input never decides the memory used.

use std::io::{self, BufRead, Cursor, Read};

use serde::Serialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::core::envelope::Envelope;
use crate::core::rejection::{RejectReason, Rejection};

/// Splits `input` into bodies. When the whole input is one JSON value it is
/// one body; otherwise each non-blank line is a body (blank lines are
/// skipped, a trailing `\r` is dropped).
pub fn split_bodies(input: &[u8]) -> Vec<&[u8]> {
    if is_one_document(input) {
        return vec![input];
    }
    input
        .split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !is_blank(line))
        .collect()
}

fn is_one_document(input: &[u8]) -> bool {
    std::str::from_utf8(input).is_ok_and(|text| {
        !text.trim().is_empty() && serde_json::from_str::<&RawValue>(text).is_ok()
    })
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The bodies of a stream, read with at most `max_body_bytes` + 2 bytes
/// held at a time:
///
/// - an input of at most `max_body_bytes` is split as [`split_bodies`] does;
/// - a longer input whose first body is a document spanning lines
///   (pretty-printed JSON), or whose first line alone passes the limit, is
///   one body too large: rejected after `max_body_bytes` + 1 bytes, with
///   nothing after them read (it could be gigabytes);
/// - any other longer input is JSON Lines: a line over the limit is
///   rejected as `body_too_large` (read through, not kept) and the lines
///   after it go on.
pub struct Bodies<R> {
    max_body_bytes: usize,
    state: State<R>,
    body: Vec<u8>,
}

enum State<R> {
    Unread(R),
    Lines(io::Chain<Cursor<Vec<u8>>, R>),
    Done,
}

/// What [`Bodies::next_body`] yields: a body, or a rejection of one too large.
pub type Body<'b> = Result<&'b [u8], Rejection>;

impl<R: BufRead> Bodies<R> {
    /// Bodies of `input`; `max_body_bytes` as for [`crate::NormalizeOptions`].
    pub fn new(input: R, max_body_bytes: usize) -> Self {
        Bodies {
            max_body_bytes,
            state: State::Unread(input),
            body: Vec::new(),
        }
    }

    /// The next body, in input order; None at the end of the input.
    pub fn next_body(&mut self) -> io::Result<Option<Body<'_>>> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Unread(input) => self.start(input),
            State::Lines(lines) => {
                self.state = State::Lines(lines);
                self.next_line()
            }
            State::Done => Ok(None),
        }
    }

    /// Reads up to the limit + 1 bytes and decides what the input is.
    fn start(&mut self, mut input: R) -> io::Result<Option<Body<'_>>> {
        let limit = self.max_body_bytes.saturating_add(1);
        let mut prefix = Vec::new();
        input
            .by_ref()
            .take(u64::try_from(limit).unwrap_or(u64::MAX))
            .read_to_end(&mut prefix)?;
        let whole_input = prefix.len() < limit;
        if whole_input && is_one_document(&prefix) {
            self.body = prefix;
            return Ok(Some(Ok(&self.body)));
        }
        if !whole_input && first_body_runs_over(&prefix) {
            return Ok(Some(Err(Rejection::new(
                RejectReason::BodyTooLarge,
                format!(
                    "body is over the limit of {} bytes; the rest of the input was not read",
                    self.max_body_bytes
                ),
            ))));
        }
        self.state = State::Lines(Cursor::new(prefix).chain(input));
        self.next_line()
    }

    /// The next non-blank line, or the rejection of one over the limit.
    fn next_line(&mut self) -> io::Result<Option<Body<'_>>> {
        let State::Lines(input) = &mut self.state else {
            return Ok(None);
        };
        // Room for a line at the limit and its `\r`: `normalize` then
        // rejects a kept line past the limit with its exact size.
        let keep = self.max_body_bytes.saturating_add(2);
        loop {
            let Some(len) = read_line_capped(input, &mut self.body, keep)? else {
                self.state = State::Done;
                return Ok(None);
            };
            if len > keep {
                return Ok(Some(Err(Rejection::new(
                    RejectReason::BodyTooLarge,
                    format!(
                        "body is {len} bytes; the limit is {} bytes",
                        self.max_body_bytes
                    ),
                ))));
            }
            if self.body.ends_with(b"\r") {
                self.body.pop();
            }
            if !is_blank(&self.body) {
                return Ok(Some(Ok(&self.body)));
            }
        }
    }
}

/// Whether `prefix` (the first `max_body_bytes` + 1 bytes of a longer
/// input) starts a body over the limit: its first non-blank line does not
/// end within it, or is the start of a JSON document spanning lines (JSON
/// that is only cut short by the line's end, like a lone `{`).
fn first_body_runs_over(prefix: &[u8]) -> bool {
    let (complete, tail) = match prefix.iter().rposition(|&b| b == b'\n') {
        Some(i) => (&prefix[..i], &prefix[i + 1..]),
        None => (&prefix[..0], prefix),
    };
    let first = complete
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .find(|line| !is_blank(line));
    match first {
        Some(line) => serde_json::from_slice::<IgnoredAny>(line).is_err_and(|e| e.is_eof()),
        None => !is_blank(tail),
    }
}

/// Reads one line, through its `\n`, keeping at most `keep` bytes of it in
/// `line`; returns the line's length without the `\n`, or None at the end.
fn read_line_capped(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    keep: usize,
) -> io::Result<Option<usize>> {
    line.clear();
    let mut len = None;
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(len);
        }
        let (part, used, ends) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = keep.saturating_sub(line.len());
        line.extend_from_slice(&part[..part.len().min(room)]);
        len = Some(len.unwrap_or(0usize).saturating_add(part.len()));
        input.consume(used);
        if ends {
            return Ok(len);
        }
    }
}

#[derive(Serialize)]
struct RejectedLine<'r> {
    rejected: RejectedBody<'r>,
}

#[derive(Serialize)]
struct RejectedBody<'r> {
    reason: &'static str,
    message: &'r str,
}

/// One output line: the envelope as JSON (Avro field names, `payload` as a
/// JSON string), or `{"rejected":{"reason":..,"message":..}}`.
pub fn outcome_line(outcome: &Result<Envelope<'_>, Rejection>) -> String {
    let line = match outcome {
        Ok(env) => serde_json::to_string(env),
        Err(rej) => serde_json::to_string(&RejectedLine {
            rejected: RejectedBody {
                reason: rej.reason.code(),
                message: &rej.message,
            },
        }),
    };
    // Serialising these plain structs into a String cannot fail.
    line.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pretty_document_is_one_body() {
        let input = b"{\n  \"type\": \"a\",\n  \"data\": {}\n}\n";
        assert_eq!(split_bodies(input), vec![&input[..]]);
    }

    #[test]
    fn json_lines_are_split_and_blank_lines_skipped() {
        let input = b"{\"a\":1}\r\n\n  \n{\"b\":2}\nnot json\n";
        assert_eq!(
            split_bodies(input),
            vec![&b"{\"a\":1}"[..], &b"{\"b\":2}"[..], &b"not json"[..]]
        );
        assert!(split_bodies(b"").is_empty());
        assert_eq!(split_bodies(b"\xff\n{}"), vec![&b"\xff"[..], &b"{}"[..]]);
    }

    /// Every body `Bodies` reads from `input`; rejections as their messages.
    fn read_all(input: impl Read, max: usize) -> io::Result<Vec<Result<Vec<u8>, String>>> {
        let mut bodies = Bodies::new(io::BufReader::new(input), max);
        let mut all = Vec::new();
        while let Some(body) = bodies.next_body()? {
            all.push(body.map(<[u8]>::to_vec).map_err(|r| r.message));
        }
        Ok(all)
    }

    /// Fails any read: placed after the bytes a test expects to be read.
    struct NotToBeRead;

    impl Read for NotToBeRead {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("read past what was needed"))
        }
    }

    #[test]
    fn inputs_within_the_limit_split_as_split_bodies_does() {
        let inputs: [&[u8]; 6] = [
            b"{\n  \"type\": \"a\",\n  \"data\": {}\n}\n",
            b"{\"a\":1}\r\n\n  \n{\"b\":2}\nnot json\n",
            b"",
            b"\xff\n{}",
            b"not json\n{}",
            b"  \n\t\n",
        ];
        for input in inputs {
            let expected: Vec<_> = split_bodies(input)
                .into_iter()
                .map(|b| Ok(b.to_vec()))
                .collect();
            assert_eq!(read_all(input, 1 << 20).unwrap(), expected, "{input:?}");
        }
    }

    #[test]
    fn an_over_long_line_is_rejected_and_the_lines_after_it_go_on() {
        let input = format!(
            "{{\"a\":1}}\n{}\n\n{{\"b\":2}}\r\n12345678901\n",
            "x".repeat(50)
        );
        assert_eq!(
            read_all(input.as_bytes(), 10).unwrap(),
            vec![
                Ok(b"{\"a\":1}".to_vec()),
                Err("body is 50 bytes; the limit is 10 bytes".into()),
                Ok(b"{\"b\":2}".to_vec()),
                // One byte over: kept, for `normalize` to reject with its size.
                Ok(b"12345678901".to_vec()),
            ]
        );
    }

    #[test]
    fn a_first_body_over_the_limit_is_refused_without_reading_on() {
        let pretty = b"{\n  \"type\": \"a.long.type\",\n  \"data\": {}\n}\n";
        let one_line = [b'x'; 11];
        let nul_bytes = [0u8; 11];
        for input in [&pretty[..], &one_line, &nul_bytes] {
            let got = read_all(input.chain(NotToBeRead), 10).unwrap();
            assert_eq!(got.len(), 1, "{got:?}");
            assert!(
                got[0].as_ref().is_err_and(|m| m.contains("not read")),
                "{got:?}"
            );
        }
    }

    #[test]
    fn rejection_line_format() {
        let line = outcome_line(&Err(Rejection::new(RejectReason::InvalidJson, "bad \"x\"")));
        assert_eq!(
            line,
            r#"{"rejected":{"reason":"invalid_json","message":"bad \"x\""}}"#
        );
    }
}
