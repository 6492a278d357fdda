//! Where the reference ids sit inside a current event's payload: a small
//! table per field, read without decoding the rest of the payload.

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::event_type;
use crate::raw_json::{self, RawObject};

/// Company id location by event type prefix; the first matching row wins.
/// `company.*` events carry the company itself as the payload.
pub const COMPANY_ID_PATHS: &[(&str, &str)] = &[("company.", "id"), ("", "referenceCompany.id")];

/// Connection id locations, tried in order: connection events, write and
/// bank-feed events, read events.
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
/// Codat's to shape and always passes through untouched.
pub fn refs<'a>(event_type: &str, payload: &'a RawValue) -> PayloadRefs<'a> {
    let Some(object) = RawObject::parse(payload) else {
        return PayloadRefs::default();
    };
    let company_id = COMPANY_ID_PATHS
        .iter()
        .find(|(prefix, _)| event_type.starts_with(prefix))
        .and_then(|(_, path)| str_at(&object, path));
    let connection_id = CONNECTION_ID_PATHS
        .iter()
        .find_map(|path| str_at(&object, path));
    let data_type = match event_type::write_data_type(event_type) {
        Some(dt) => Some(Cow::Owned(dt.to_owned())),
        None => single_read_data_type(&object),
    };
    PayloadRefs {
        company_id,
        connection_id,
        data_type,
    }
}

/// The string at a dotted path (`[]` = first array element).
fn str_at<'a>(object: &RawObject<'a>, path: &str) -> Option<Cow<'a, str>> {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let (key, first_item) = match head.strip_suffix("[]") {
        Some(key) => (key, true),
        None => (head, false),
    };
    let mut value = object.get(key)?;
    if first_item {
        value = *raw_json::array_items(value)?.first()?;
    }
    match rest {
        None => raw_json::as_str(value),
        Some(rest) => str_at(&RawObject::parse(value)?, rest),
    }
}

/// The data type of a read event that lists exactly one.
fn single_read_data_type<'a>(object: &RawObject<'a>) -> Option<Cow<'a, str>> {
    let items = raw_json::array_items(object.get("dataTypes")?)?;
    match items.as_slice() {
        [only] => RawObject::parse(only)?.get_str("dataType"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs_of(t: &str, payload: &'static str) -> PayloadRefs<'static> {
        refs(t, serde_json::from_str(payload).unwrap())
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
