//! Event type names: the rule that makes them safe in a topic name, and
//! Codat's published catalog (used to label where a type came from).

use crate::core::envelope::TypeOrigin;
use crate::core::rejection::{RejectReason, Rejection, excerpt};

/// Longest accepted event type; with a topic prefix it stays under Kafka's
/// 249-character topic limit.
pub const MAX_EVENT_TYPE_LEN: usize = 200;

/// Where Codat publishes a catalog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// A webhook of Codat's webhook OpenAPI document
    /// (`codat-webhooks-openapi.json`, `webhooks`).
    OpenApi,
    /// Only the event-type table of Codat's docs ("Webhook event types",
    /// listed under Lending and Spend Insights): no OpenAPI schema yet.
    EventTypeTable,
}

/// Codat's platform-wide and solution-specific event types, each with
/// where it is published. `{dataType}.write.successful|unsuccessful` are
/// listed by data type in [`WRITE_DATA_TYPES`].
pub const CATALOG: &[(&str, Published)] = &[
    ("company.created", Published::OpenApi),
    ("company.deleted", Published::OpenApi),
    ("connection.created", Published::OpenApi),
    ("connection.connected", Published::OpenApi),
    ("connection.disconnected", Published::OpenApi),
    ("connection.reconnected", Published::OpenApi),
    ("connection.failed", Published::OpenApi),
    ("connection.deleted", Published::OpenApi),
    ("read.completed", Published::OpenApi),
    ("read.completed.initial", Published::OpenApi),
    ("client.rateLimit.reached", Published::OpenApi),
    ("client.rateLimit.reset", Published::OpenApi),
    ("bankFeeds.sourceAccount.connected", Published::OpenApi),
    ("bankFeeds.sourceAccount.disconnected", Published::OpenApi),
    ("expenses.sync.successful", Published::OpenApi),
    ("expenses.sync.unsuccessful", Published::OpenApi),
    (
        "reports.categorizedBankStatement.generate.successful",
        Published::OpenApi,
    ),
    (
        "reports.categorizedBankStatement.generate.unsuccessful",
        Published::OpenApi,
    ),
    (
        "reports.creditModel.generate.successful",
        Published::EventTypeTable,
    ),
    (
        "reports.creditModel.generate.unsuccessful",
        Published::EventTypeTable,
    ),
    (
        "reports.spendAnalysis.generate.successful",
        Published::EventTypeTable,
    ),
    (
        "reports.spendAnalysis.generate.unsuccessful",
        Published::EventTypeTable,
    ),
    // Filed in the OpenAPI as a webhook; it still arrives in the legacy shape.
    ("AccountCategoriesUpdated", Published::OpenApi),
];

/// The data types the OpenAPI publishes `{dataType}.write.successful` and
/// `{dataType}.write.unsuccessful` webhooks for (DataTypeWriteWebhook).
pub const WRITE_DATA_TYPES: &[&str] = &[
    "bills",
    "bankTransactions",
    "items",
    "suppliers",
    "directCosts",
    "invoices",
    "bankAccounts",
    "purchaseOrders",
    "billPayments",
    "directIncomes",
    "journalEntries",
    "chartOfAccounts",
    "billCreditNotes",
    "creditNotes",
    "customers",
    "journals",
    "transfers",
    "payments",
];

/// The outcomes of a published write event.
pub const WRITE_OUTCOMES: &[&str] = &["successful", "unsuccessful"];

/// The bytes of an event type: `[A-Za-z0-9_-]` and the dot.
const SEGMENT_OR_DOT: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.';
        c += 1;
    }
    table
};

/// Checks that `t` is dot-separated segments of `[A-Za-z0-9_-]`, none empty,
/// at most [`MAX_EVENT_TYPE_LEN`] bytes: safe as a Kafka topic name suffix
/// and as a metric label.
pub fn validate(t: &str) -> Result<(), Rejection> {
    let ok_len = !t.is_empty() && t.len() <= MAX_EVENT_TYPE_LEN;
    // Every byte a segment byte or a dot, and every segment non-empty: no
    // dot first, last or after another dot. A table, not a branch per
    // byte: this runs on every event.
    let b = t.as_bytes();
    let ok_chars = b.iter().all(|&c| SEGMENT_OR_DOT[usize::from(c)])
        && b.first() != Some(&b'.')
        && b.last() != Some(&b'.')
        && !b.windows(2).any(|w| w == b"..");
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(Rejection::new(
            RejectReason::InvalidEventType,
            format!(
                "event type {} is not usable in a topic name: it must be 1-{MAX_EVENT_TYPE_LEN} \
                 characters of dot-separated [A-Za-z0-9_-] segments",
                excerpt(t)
            ),
        ))
    }
}

/// Whether `t` is in Codat's catalog: a listed type, or a write outcome
/// of one of the [`WRITE_DATA_TYPES`] (any other data type is unlisted).
pub fn is_catalogued(t: &str) -> bool {
    if CATALOG.iter().any(|(listed, _)| *listed == t) {
        return true;
    }
    match split_write(t) {
        Some((data_type, outcome)) => {
            WRITE_DATA_TYPES.contains(&data_type) && WRITE_OUTCOMES.contains(&outcome)
        }
        None => false,
    }
}

/// The origin of a type Codat sent: catalogued or not yet listed.
pub fn origin_of_codat_type(t: &str) -> TypeOrigin {
    if is_catalogued(t) {
        TypeOrigin::CodatCatalog
    } else {
        TypeOrigin::CodatUnlisted
    }
}

/// The data type a write event is about: the `{dataType}` of
/// `{dataType}.write.<outcome>`.
pub fn write_data_type(t: &str) -> Option<&str> {
    let (data_type, _) = split_write(t)?;
    (!data_type.is_empty() && !data_type.contains('.')).then_some(data_type)
}

/// `t.split_once(".write.")`, without the general substring searcher
/// (whose set-up cost more than the rest of a type's checks).
fn split_write(t: &str) -> Option<(&str, &str)> {
    const WRITE: &str = ".write.";
    let dots = t.bytes().enumerate().filter(|&(_, b)| b == b'.');
    dots.map(|(i, _)| i).find_map(|i| {
        let rest = t.get(i..)?.strip_prefix(WRITE)?;
        Some((t.get(..i)?, rest))
    })
}

/// Every event type known in advance: the catalog, the data-type writes and
/// codat-stream's own connection type.
pub fn known_event_types() -> Vec<String> {
    let mut types: Vec<String> = CATALOG.iter().map(|(t, _)| (*t).to_owned()).collect();
    for dt in WRITE_DATA_TYPES {
        for outcome in WRITE_OUTCOMES {
            types.push(format!("{dt}.write.{outcome}"));
        }
    }
    types.push(crate::core::legacy::mapping::CONNECTION_OTHER_TRANSITION.to_owned());
    types
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_catalog_and_new_types() {
        for (t, _) in CATALOG {
            validate(t).unwrap();
        }
        validate("invoices.write.successful").unwrap();
        validate("banking-accounts.write.pending").unwrap();
        validate("some.future_type").unwrap();
    }

    #[test]
    fn refuses_what_a_topic_cannot_hold() {
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a.",
            "a b",
            "a/b",
            "ünï",
            "a*",
            "codat.x\n",
        ] {
            assert_eq!(
                validate(bad).unwrap_err().reason,
                RejectReason::InvalidEventType,
                "{bad:?}"
            );
        }
        assert!(validate(&"a".repeat(MAX_EVENT_TYPE_LEN)).is_ok());
        assert!(validate(&"a".repeat(MAX_EVENT_TYPE_LEN + 1)).is_err());
    }

    #[test]
    fn split_write_is_split_once() {
        for t in [
            "a.write.b",
            ".write.",
            "a.b.write.c.write.d",
            "write",
            "a.writ.e",
            "a..write.b",
            "ü.write.x",
        ] {
            assert_eq!(split_write(t), t.split_once(".write."), "{t}");
        }
    }

    #[test]
    fn catalog_membership() {
        assert!(is_catalogued("connection.failed"));
        assert!(is_catalogued("bills.write.unsuccessful"));
        assert!(!is_catalogued("bills.write.pending"));
        assert!(!is_catalogued("a.b.write.successful"));
        assert!(!is_catalogued("hello.world"));
        assert!(is_catalogued("reports.creditModel.generate.successful"));
        assert!(is_catalogued("reports.spendAnalysis.generate.unsuccessful"));
    }

    /// Issue 12, item 6: any `{x}.write.successful` was called Codat's own.
    #[test]
    fn writes_of_unpublished_data_types_are_unlisted() {
        assert_eq!(WRITE_DATA_TYPES.len(), 18, "the OpenAPI's 18 data types");
        for dt in WRITE_DATA_TYPES {
            for outcome in WRITE_OUTCOMES {
                let t = format!("{dt}.write.{outcome}");
                assert_eq!(origin_of_codat_type(&t), TypeOrigin::CodatCatalog, "{t}");
            }
        }
        for t in ["widgets.write.successful", "accounts.write.unsuccessful"] {
            assert_eq!(origin_of_codat_type(t), TypeOrigin::CodatUnlisted, "{t}");
        }
        assert_eq!(write_data_type("widgets.write.successful"), Some("widgets"));
        assert_eq!(write_data_type("bills.write.successful"), Some("bills"));
        assert_eq!(write_data_type("read.completed"), None);
    }

    #[test]
    fn known_types_are_valid_and_distinct() {
        let types = known_event_types();
        let distinct: std::collections::HashSet<_> = types.iter().collect();
        assert_eq!(distinct.len(), types.len());
        for t in &types {
            validate(t).unwrap();
        }
        assert!(types.contains(&"invoices.write.successful".to_string()));
    }
}
