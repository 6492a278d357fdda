//! Parsing the ISO-8601 timestamps Codat puts in `generatedDate`.

use time::OffsetDateTime;
use time::PrimitiveDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// Milliseconds since the Unix epoch for an RFC 3339 timestamp; one with no
/// offset (`2023-05-03T10:00:23`) is read as UTC, as Codat's times are.
pub fn parse_millis(s: &str) -> Option<i64> {
    let dt = match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(dt) => dt,
        Err(_) => {
            let local = format_description!(
                version = 2,
                "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
            );
            PrimitiveDateTime::parse(s, local).ok()?.assume_utc()
        }
    };
    i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_codat_forms() {
        assert_eq!(
            parse_millis("2024-08-08T17:10:34.015Z"),
            Some(1_723_137_034_015)
        );
        assert_eq!(
            parse_millis("2024-09-01T00:00:00Z"),
            Some(1_725_148_800_000)
        );
        assert_eq!(
            parse_millis("2022-10-27T10:22:43.6464237Z"),
            Some(1_666_866_163_646)
        );
        assert_eq!(
            parse_millis("2024-09-01T01:00:00+01:00"),
            Some(1_725_148_800_000)
        );
        assert_eq!(parse_millis("2024-09-01T00:00:00"), Some(1_725_148_800_000));
    }

    #[test]
    fn refuses_non_dates() {
        for bad in [
            "",
            "yesterday",
            "2024-09-01",
            "2024-09-01T23:59:99Z",
            "2024-02-30T00:00:00Z",
        ] {
            assert_eq!(parse_millis(bad), None, "{bad}");
        }
    }
}
