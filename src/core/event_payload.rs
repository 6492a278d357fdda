//! Where the reference ids sit inside a current event's payload: a small
//! table per field, read without decoding the rest of the payload.

use std::borrow::Cow;

use crate::core::event_type;
use crate::core::json_trusted;
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
    let Some(object) = RawObject::parse(payload).map_err(|f| f.at("`payload`"))? else {
        return Ok(PayloadRefs::default());
    };
    let company_paths = COMPANY_ID_PATHS
        .iter()
        .find(|(prefix, _)| event_type.starts_with(prefix))
        .map_or(&[][..], |(_, paths)| *paths);
    let company_id = first_str(&object, company_paths)?;
    let connection_id = first_str(&object, CONNECTION_ID_PATHS)?;
    let data_type = match event_type::write_data_type(event_type) {
        Some(dt) => Some(Cow::Owned(dt.to_owned())),
        None => single_read_data_type(&object).map_err(|f| at_path(f, "dataTypes[]"))?,
    };
    Ok(PayloadRefs {
        company_id,
        connection_id,
        data_type,
    })
}

/// The string at the first of `paths` that holds one.
fn first_str<'a>(
    object: &RawObject<'a>,
    paths: &[&str],
) -> Result<Option<Cow<'a, str>>, Rejection> {
    for path in paths {
        if let Some(s) = str_at(object, path).map_err(|f| at_path(f, path))? {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

fn at_path(fault: JsonFault, path: &str) -> Rejection {
    fault.at(&format!("`payload` on the way to `{path}`"))
}

/// The string at a dotted path (`[]` = first array element).
fn str_at<'a>(object: &RawObject<'a>, path: &str) -> Result<Option<Cow<'a, str>>, JsonFault> {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let (key, first_item) = match head.strip_suffix("[]") {
        Some(key) => (key, true),
        None => (head, false),
    };
    let Some(mut value) = object.get(key) else {
        return Ok(None);
    };
    if first_item {
        match json_trusted::array_items(value).next() {
            Some(first) => value = first,
            None => return Ok(None),
        }
    }
    match rest {
        None => raw_json::as_str(value),
        Some(rest) => match RawObject::parse(value)? {
            Some(inner) => str_at(&inner, rest),
            None => Ok(None),
        },
    }
}

/// The data type of a read event that lists exactly one.
fn single_read_data_type<'a>(object: &RawObject<'a>) -> Result<Option<Cow<'a, str>>, JsonFault> {
    let Some(list) = object.get("dataTypes") else {
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
