//! Files of webhook bodies, as `codat-stream normalize` reads them: one
//! JSON document (pretty-printed or not), or JSON Lines, one body per line.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::envelope::Envelope;
use crate::rejection::Rejection;

/// Splits `input` into bodies. When the whole input is one JSON value it is
/// one body; otherwise each non-blank line is a body (blank lines are
/// skipped, a trailing `\r` is dropped).
pub fn split_bodies(input: &[u8]) -> Vec<&[u8]> {
    if let Ok(text) = std::str::from_utf8(input)
        && !text.trim().is_empty()
        && serde_json::from_str::<&RawValue>(text).is_ok()
    {
        return vec![input];
    }
    input
        .split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .collect()
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
    use crate::rejection::RejectReason;

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

    #[test]
    fn rejection_line_format() {
        let line = outcome_line(&Err(Rejection::new(RejectReason::InvalidJson, "bad \"x\"")));
        assert_eq!(
            line,
            r#"{"rejected":{"reason":"invalid_json","message":"bad \"x\""}}"#
        );
    }
}
