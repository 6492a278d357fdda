//! Event type names: the rule that makes them safe in a topic name, and
//! Codat's published catalog (used to label where a type came from).

use crate::envelope::TypeOrigin;
use crate::rejection::{RejectReason, Rejection, excerpt};

/// Longest accepted event type; with a topic prefix it stays under Kafka's
/// 249-character topic limit.
pub const MAX_EVENT_TYPE_LEN: usize = 200;

/// Codat's platform-wide and solution-specific event types, as published.
/// `{dataType}.write.successful|unsuccessful` are matched by pattern.
pub const CATALOG: &[&str] = &[
    "company.created",
    "company.deleted",
    "connection.created",
    "connection.connected",
    "connection.disconnected",
    "connection.reconnected",
    "connection.failed",
    "connection.deleted",
    "read.completed",
    "read.completed.initial",
    "client.rateLimit.reached",
    "client.rateLimit.reset",
    "bankFeeds.sourceAccount.connected",
    "bankFeeds.sourceAccount.disconnected",
    "expenses.sync.successful",
    "expenses.sync.unsuccessful",
    "reports.categorizedBankStatement.generate.successful",
    "reports.categorizedBankStatement.generate.unsuccessful",
    "reports.creditModel.generate.successful",
    "reports.creditModel.generate.unsuccessful",
    "reports.spendAnalysis.generate.successful",
    "reports.spendAnalysis.generate.unsuccessful",
    "AccountCategoriesUpdated",
];

/// Checks that `t` is dot-separated segments of `[A-Za-z0-9_-]`, none empty,
/// at most [`MAX_EVENT_TYPE_LEN`] bytes: safe as a Kafka topic name suffix
/// and as a metric label.
pub fn validate(t: &str) -> Result<(), Rejection> {
    let ok_len = !t.is_empty() && t.len() <= MAX_EVENT_TYPE_LEN;
    let ok_chars = t.split('.').all(|seg| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
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

/// Whether `t` is in Codat's catalog (a listed type, or a data-type write).
pub fn is_catalogued(t: &str) -> bool {
    if CATALOG.contains(&t) {
        return true;
    }
    match t.split_once(".write.") {
        Some((data_type, outcome)) => {
            !data_type.is_empty()
                && !data_type.contains('.')
                && (outcome == "successful" || outcome == "unsuccessful")
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
    let (data_type, _) = t.split_once(".write.")?;
    (!data_type.is_empty() && !data_type.contains('.')).then_some(data_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_catalog_and_new_types() {
        for t in CATALOG {
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
    fn catalog_membership() {
        assert!(is_catalogued("connection.failed"));
        assert!(is_catalogued("bills.write.unsuccessful"));
        assert!(!is_catalogued("bills.write.pending"));
        assert!(!is_catalogued("a.b.write.successful"));
        assert!(!is_catalogued("hello.world"));
        assert_eq!(write_data_type("bills.write.successful"), Some("bills"));
        assert_eq!(write_data_type("read.completed"), None);
    }
}
