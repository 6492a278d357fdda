//! A direct Avro binary writer for the envelope: the fields of
//! `schemas/envelope.avsc` written in schema order, with no per-record
//! schema walk, serde dispatch or intermediate values. apache-avro's
//! generic writer cost about 1 µs a body, the largest part of the core's
//! time.
//!
//! It must stay byte-identical to apache-avro's encoding of the same schema:
//! a property test compares the two on arbitrary envelopes, and the schema's
//! fingerprint is pinned ([`ENVELOPE_FINGERPRINT`]) so that editing the
//! `.avsc` fails the tests until this writer is checked against it.

use crate::core::envelope::{Envelope, Ingest, LegacyRule};

/// CRC-64-AVRO fingerprint (little-endian) of the Parsing Canonical Form of
/// `schemas/envelope.avsc` that this writer follows field for field.
/// Editing the schema changes it, which fails
/// `the_writer_follows_the_pinned_schema`: check the fields below against
/// the new schema (and the property test against apache-avro), then update it.
pub const ENVELOPE_FINGERPRINT: [u8; 8] = [0x57, 0xee, 0x5f, 0x2b, 0xf0, 0x4e, 0xfe, 0x6a];

/// Appends the Avro binary datum of `e` to `out`.
pub fn write_envelope(e: &Envelope<'_>, out: &mut Vec<u8>) {
    out.reserve(len_bound(e));
    string(out, &e.id);
    int(out, e.id_source as i64);
    string(out, &e.event_type);
    int(out, e.type_origin as i64);
    string(out, &e.source);
    string(out, &e.specversion);
    int(out, e.time);
    int(out, e.time_source as i64);
    opt_string(out, e.subject.as_deref());
    opt_string(out, e.company_id.as_deref());
    opt_string(out, e.connection_id.as_deref());
    opt_string(out, e.client_id.as_deref());
    opt_string(out, e.data_type.as_deref());
    int(out, e.shape as i64);
    opt_string(out, e.legacy_rule_type.as_deref());
    match &e.legacy {
        None => int(out, 0),
        Some(legacy) => {
            int(out, 1);
            legacy_rule(out, legacy);
        }
    }
    opt_string(out, e.extensions.as_deref());
    string(out, &e.datacontenttype);
    string(out, &e.payload);
    ingest(out, &e.ingest);
    opt_string(out, e.time_original.as_deref());
    array_of_strings(out, e.redacted_paths.iter().map(|p| p.as_ref()));
}

/// Numbers and lengths [`write_envelope`] writes besides one per redacted
/// path: each at most [`MAX_VARINT`] bytes (counted generously: six
/// strings, five numbers, nine optional strings and the legacy union with
/// its four at two each, the ingest's four, the array's two).
const VARINTS: usize = 48;

/// The longest varint of an Avro `long`.
const MAX_VARINT: usize = 10;

/// At least the size of `e`'s datum: [`write_envelope`] reserves it once
/// (a fixed guess left nearly every record to grow the buffer: a tenth of
/// a record's own work).
pub fn len_bound(e: &Envelope<'_>) -> usize {
    let opt = |s: Option<&str>| s.map_or(0, str::len);
    let legacy = e.legacy.as_ref().map_or(0, |l| {
        opt(l.rule_id.as_deref())
            + opt(l.client_name.as_deref())
            + opt(l.message.as_deref())
            + opt(l.unmapped.as_deref())
    });
    let strings = [
        &e.id,
        &e.event_type,
        &e.source,
        &e.specversion,
        &e.datacontenttype,
        &e.payload,
        &e.ingest.topic,
    ]
    .iter()
    .map(|s| s.len())
    .sum::<usize>()
        + [
            e.subject.as_deref(),
            e.company_id.as_deref(),
            e.connection_id.as_deref(),
            e.client_id.as_deref(),
            e.data_type.as_deref(),
            e.legacy_rule_type.as_deref(),
            e.extensions.as_deref(),
            e.time_original.as_deref(),
            e.ingest.webhook_id.as_deref(),
        ]
        .into_iter()
        .map(opt)
        .sum::<usize>()
        + legacy
        + e.redacted_paths.iter().map(|p| p.len()).sum::<usize>();
    strings + MAX_VARINT * (VARINTS + e.redacted_paths.len())
}

fn legacy_rule(out: &mut Vec<u8>, l: &LegacyRule<'_>) {
    opt_string(out, l.rule_id.as_deref());
    opt_string(out, l.client_name.as_deref());
    opt_string(out, l.message.as_deref());
    opt_string(out, l.unmapped.as_deref());
}

fn ingest(out: &mut Vec<u8>, i: &Ingest<'_>) {
    string(out, &i.topic);
    int(out, i64::from(i.partition));
    int(out, i.offset);
    int(out, i.timestamp);
    opt_string(out, i.webhook_id.as_deref());
}

/// An Avro `int` or `long`: zig-zag, then a little-endian base-128 varint.
fn int(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    int(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// A `["null", "string"]` union: branch index, then the string if any.
fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => int(out, 0),
        Some(s) => {
            int(out, 1);
            string(out, s);
        }
    }
}

/// An array of strings: one block with its count, then the end marker.
fn array_of_strings<'s>(out: &mut Vec<u8>, items: impl ExactSizeIterator<Item = &'s str>) {
    if items.len() > 0 {
        int(out, items.len() as i64);
        for item in items {
            string(out, item);
        }
    }
    int(out, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_follows_the_pinned_schema() {
        let now = crate::core::avro_fingerprint::fingerprint(
            crate::core::envelope_avro::ENVELOPE_SCHEMA_JSON,
        )
        .unwrap();
        assert_eq!(
            now, ENVELOPE_FINGERPRINT,
            "schemas/envelope.avsc changed: make src/avro_writer.rs write the new schema, \
             then pin its fingerprint"
        );
    }

    #[test]
    fn varints_follow_the_avro_spec() {
        let enc = |n: i64| {
            let mut v = Vec::new();
            int(&mut v, n);
            v
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(-1), [0x01]);
        assert_eq!(enc(1), [0x02]);
        assert_eq!(enc(-64), [0x7f]);
        assert_eq!(enc(64), [0x80, 0x01]);
        assert_eq!(enc(i64::MIN).len(), 10);
        assert_eq!(enc(i64::MAX).len(), 10);
    }
}
