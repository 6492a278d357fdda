//! Where the reference ids sit inside a current event's payload: a small
//! table per field, read without decoding the rest of the payload.

use std::borrow::Cow;

use crate::core::event_type;
use crate::core::json_scan::SplitObject;
use crate::core::json_trusted::{self, Nested};
use crate::core::raw_json::{self, JsonFault, RawObject};
use crate::core::rejection::Rejection;

/// Company id locations by event type prefix: the first row whose prefix
/// matches gives the paths, tried in order. From an audit of every event
/// schema in Codat's webhook OpenAPI: `company.*` payloads are the company
/// itself (CompanyWebhook); `bankFeeds.sourceAccount.*` payloads may carry
/// only the deprecated `companyId` (SourceAccountWebhook, "Unique
/// identifier for your SMB in Codat"); every other event schema has
/// `referenceCompany.id` and nowhere else.
pub const COMPANY_ID_PATHS: &[(&str, &[&str])] = &[
    ("company.", &["id"]),
    (
        "bankFeeds.sourceAccount.",
        &["referenceCompany.id", "companyId"],
    ),
    ("", &["referenceCompany.id"]),
];

/// Connection id locations, tried in order: connection events, write and
/// bank-feed events, read events (the only places the OpenAPI's event
/// schemas hold one; `connection.integrationId` and `sourceId` name the
/// integration, not the connection).
pub const CONNECTION_ID_PATHS: &[&str] =
    &["connection.id", "connectionId", "dataTypes[].connectionId"];

/// The reference ids found in an event payload.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PayloadRefs<'a> {
    /// The company the event is about.
    pub company_id: Option<Cow<'a, str>>,
    /// The data connection it concerns.
    pub connection_id: Option<Cow<'a, str>>,
    /// The data type it concerns.
    pub data_type: Option<Cow<'a, str>>,
}

/// Reads the reference ids of an event of type `event_type` from `payload`.
/// Fields of unexpected JSON type are treated as absent: the payload is
/// Codat's to shape and always passes through untouched. But a repeated key
/// or an undecodable string on the way to an id is refused: taking one copy
/// (or none) would give the envelope a different company than every other
/// reader of the same payload sees.
pub fn refs<'a>(event_type: &str, payload: &'a str) -> Result<PayloadRefs<'a>, Rejection> {
    match json_trusted::object_members_nested(payload, &is_path_head) {
        Ok(Some(split)) => refs_of_split(event_type, Ok(split)),
        Ok(None) => Ok(PayloadRefs::default()),
        Err(fault) => refs_of_split(event_type, Err(fault)),
    }
}

/// [`refs`] of a payload object already split (with its path heads, as
/// [`json_trusted::object_members_nested`] splits them), or the fault of
/// one of its keys.
pub fn refs_of_split<'a>(
    event_type: &str,
    split: SplitObject<'a>,
) -> Result<PayloadRefs<'a>, Rejection> {
    let at_payload = |f: JsonFault| f.at("`payload`");
    let (members, nested) = split.map_err(at_payload)?;
    raw_json::check_unique_keys(&members, false).map_err(at_payload)?;
    let payload = Level {
        members: &members,
        nested: &nested,
    };
    let company_paths = COMPANY_ID_PATHS
        .iter()
        .find(|(prefix, _)| event_type.starts_with(prefix))
        .map_or(&[][..], |(_, paths)| *paths);
    let company_id = first_str(&payload, company_paths)?;
    let connection_id = first_str(&payload, CONNECTION_ID_PATHS)?;
    let data_type = match event_type::write_data_type(event_type) {
        Some(dt) => Some(Cow::Owned(dt.to_owned())),
        None => single_read_data_type(&payload).map_err(|f| at_path(f, "dataTypes[]"))?,
    };
    Ok(PayloadRefs {
        company_id,
        connection_id,
        data_type,
    })
}

/// Whether `key` leads to an object on some id path (`referenceCompany`,
/// `connection`): those are split in the payload's own scan.
/// (`the_path_heads_are_those_of_the_tables` keeps the two in step.)
pub fn is_path_head(key: &str) -> bool {
    matches!(key, "referenceCompany" | "connection")
}

/// `s.split_once('.')` for the short paths here, without a searcher.
fn split_dot(s: &str) -> Option<(&str, &str)> {
    let at = s.bytes().position(|b| b == b'.')?;
    Some((s.get(..at)?, s.get(at + 1..)?))
}

/// One object level: its members, and those of its members split ahead.
struct Level<'l, 'a> {
    members: &'l [(Cow<'a, str>, &'a str)],
    nested: &'l Nested<'a>,
}

/// The string at the first of `paths` that holds one.
fn first_str<'a>(level: &Level<'_, 'a>, paths: &[&str]) -> Result<Option<Cow<'a, str>>, Rejection> {
    for path in paths {
        if let Some(s) = str_at(level, path).map_err(|f| at_path(f, path))? {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

fn at_path(fault: JsonFault, path: &str) -> Rejection {
    fault.at(&format!("`payload` on the way to `{path}`"))
}

/// The string at a dotted path (`[]` = first array element).
fn str_at<'a>(level: &Level<'_, 'a>, path: &str) -> Result<Option<Cow<'a, str>>, JsonFault> {
    let (head, rest) = match split_dot(path) {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let (key, first_item) = match head.strip_suffix("[]") {
        Some(key) => (key, true),
        None => (head, false),
    };
    let Some(index) = level.members.iter().position(|(k, _)| k == key) else {
        return Ok(None);
    };
    let Some(&(_, mut value)) = level.members.get(index) else {
        return Ok(None);
    };
    if first_item {
        match json_trusted::array_items(value).next() {
            Some(first) => value = first,
            None => return Ok(None),
        }
    }
    let Some(rest) = rest else {
        return raw_json::as_str(value);
    };
    let split_ahead = level
        .nested
        .iter()
        .find(|(i, _)| *i == index && !first_item);
    let parsed;
    let members = match split_ahead {
        Some((_, Ok(members))) => {
            raw_json::check_unique_keys(members, false)?;
            members
        }
        Some((_, Err(fault))) => return Err(fault.clone()),
        None => match RawObject::parse(value)? {
            Some(inner) => {
                parsed = inner;
                &parsed.members
            }
            None => return Ok(None),
        },
    };
    let inner = Level {
        members,
        nested: &Vec::new(),
    };
    str_at(&inner, rest)
}

/// The data type of a read event that lists exactly one.
fn single_read_data_type<'a>(payload: &Level<'_, 'a>) -> Result<Option<Cow<'a, str>>, JsonFault> {
    let Some((_, list)) = payload.members.iter().find(|(k, _)| k == "dataTypes") else {
        return Ok(None);
    };
    let mut items = json_trusted::array_items(list);
    match (items.next(), items.next()) {
        (Some(only), None) => match RawObject::parse(only)? {
            Some(item) => item.get_str("dataType"),
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs_of(t: &str, payload: &'static str) -> PayloadRefs<'static> {
        refs(t, payload).unwrap()
    }

    #[test]
    fn repeated_keys_and_undecodable_strings_on_the_way_to_an_id_are_refused() {
        use crate::core::rejection::RejectReason;
        let refs_err = |t: &str, p: &'static str| refs(t, p).unwrap_err().reason;
        assert_eq!(
            refs_err(
                "connection.failed",
                r#"{"referenceCompany":{"id":"a","id":"b"}}"#
            ),
            RejectReason::DuplicateKey
        );
        assert_eq!(
            refs_err(
                "connection.failed",
                r#"{"referenceCompany":{"id":"a"},"referenceCompany":{"id":"b"}}"#
            ),
            RejectReason::DuplicateKey
        );
        assert_eq!(
            refs_err(
                "connection.failed",
                r#"{"\ud800":1,"referenceCompany":{"id":"a"}}"#
            ),
            RejectReason::InvalidString
        );
        assert_eq!(
            refs_err(
                "connection.failed",
                r#"{"referenceCompany":{"id":"\udc00"}}"#
            ),
            RejectReason::InvalidString
        );
    }

    #[test]
    fn the_path_heads_are_those_of_the_tables() {
        let paths = COMPANY_ID_PATHS.iter().flat_map(|(_, paths)| paths.iter());
        let paths: Vec<&str> = paths.chain(CONNECTION_ID_PATHS).copied().collect();
        for path in &paths {
            assert_eq!(split_dot(path), path.split_once('.'));
            if let Some((head, _)) = path.split_once('.') {
                assert_eq!(is_path_head(head), !head.ends_with("[]"), "{path}");
            }
        }
        let heads = ["referenceCompany", "connection"];
        for head in heads {
            assert!(paths.iter().any(|p| p.starts_with(&format!("{head}."))));
        }
    }

    #[test]
    fn company_events_carry_the_company_as_payload() {
        let r = refs_of("company.created", r#"{"id":"co","name":"x"}"#);
        assert_eq!(r.company_id.as_deref(), Some("co"));
    }

    #[test]
    fn write_events_use_reference_company_not_operation_id() {
        let r = refs_of(
            "bills.write.successful",
            r#"{"id":"op","referenceCompany":{"id":"co"},"connectionId":"dc"}"#,
        );
        assert_eq!(r.company_id.as_deref(), Some("co"));
        assert_eq!(r.connection_id.as_deref(), Some("dc"));
        assert_eq!(r.data_type.as_deref(), Some("bills"));
    }

    /// Issue 12, item 2: a bank-feed payload with only the deprecated
    /// `companyId` gave the envelope no company, so no per-company key.
    #[test]
    fn bank_feed_events_fall_back_to_the_deprecated_company_id() {
        let r = refs_of(
            "bankFeeds.sourceAccount.connected",
            r#"{"companyId":"co","connectionId":"dc","sourceAccount":{"id":"acc"}}"#,
        );
        assert_eq!(r.company_id.as_deref(), Some("co"));
        assert_eq!(r.connection_id.as_deref(), Some("dc"));
        let both = refs_of(
            "bankFeeds.sourceAccount.disconnected",
            r#"{"referenceCompany":{"id":"ref"},"companyId":"old"}"#,
        );
        assert_eq!(
            both.company_id.as_deref(),
            Some("ref"),
            "referenceCompany first"
        );
        // Only bank-feed schemas have the deprecated field.
        let other = refs_of("connection.failed", r#"{"companyId":"co"}"#);
        assert_eq!(other.company_id, None);
    }

    #[test]
    fn read_events_take_first_connection_and_single_data_type() {
        let one = refs_of(
            "read.completed",
            r#"{"dataTypes":[{"connectionId":"dc","dataType":"invoices"}]}"#,
        );
        assert_eq!(one.connection_id.as_deref(), Some("dc"));
        assert_eq!(one.data_type.as_deref(), Some("invoices"));
        let two = refs_of(
            "read.completed",
            r#"{"dataTypes":[{"connectionId":"dc","dataType":"a"},{"dataType":"b"}]}"#,
        );
        assert_eq!(two.data_type, None);
    }

    #[test]
    fn unexpected_shapes_are_absent_not_errors() {
        let r = refs_of(
            "connection.failed",
            r#"{"referenceCompany":"x","connection":{"id":5},"dataTypes":{}}"#,
        );
        assert_eq!(r, PayloadRefs::default());
        assert_eq!(refs_of("x.y", "[1]"), PayloadRefs::default());
    }
}
