//! The legacy -> event mapping as data: which event type each legacy
//! `RuleType` becomes (Codat's migration guide), how connection status
//! transitions and push statuses pick a type, and where each legacy field
//! lands in the event payload layout.

use crate::core::envelope::TypeOrigin;

/// How a rule's event type is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeRule {
    /// Always this event type.
    Fixed(&'static str),
    /// By `Data.oldStatus` -> `Data.newStatus`, from [`CONNECTION_TRANSITIONS`].
    ConnectionTransition,
    /// `{Data.dataType}.` + the suffix for `Data.status` in [`PUSH_STATUSES`].
    PushStatus,
    /// Always `{Data.dataType}.write.unsuccessful`.
    PushTimedOut,
}

/// The event payload layout a legacy body is rewritten into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `connection.*`: `referenceCompany` + `connection`.
    Connection,
    /// `read.completed*`: `referenceCompany` + `dataTypes[]`.
    Read,
    /// `{dataType}.write.*`: `referenceCompany`, `connectionId`, `id`, `status`.
    Write,
    /// `expenses.sync.*`: `referenceCompany` + `syncId`.
    ExpensesSync,
    /// `client.rateLimit.*`: client-wide, no company.
    RateLimit,
    /// `AccountCategoriesUpdated`: `referenceCompany` + `modifiedDate`.
    AccountCategories,
}

/// A constant a rule's meaning implies, set when the body did not carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constant {
    /// A JSON boolean.
    Bool(bool),
    /// A JSON string.
    Str(&'static str),
    /// A JSON integer.
    Int(i64),
}

/// `read.completed`'s dataset status for a sync that completed: the
/// OpenAPI's replication notes for DataSyncCompleted and DatasetDataChanged
/// say to check `dataTypes[].status` is "Success", but the status enum
/// (ReadCompletedWebhook, "Dataset status") has no such value and its
/// example carries "Complete": the schema decides.
pub const READ_STATUS_COMPLETE: Constant = Constant::Str("Complete");

/// One legacy rule type.
#[derive(Debug)]
pub struct RuleRow {
    /// The rule's type name, as Codat's OpenAPI document files it.
    pub name: &'static str,
    /// Every spelling seen in Codat's material (display names and type
    /// names), matched by [`rule_key_eq`]: case, spaces, `_`, `-` and `()` ignored.
    pub spellings: &'static [&'static str],
    /// How its event type is chosen.
    pub type_rule: TypeRule,
    /// The payload layout it is rewritten into.
    pub layout: Layout,
    /// Payload fields implied by the rule itself: (payload path, value).
    pub constants: &'static [(&'static str, Constant)],
}

/// Codat's migration guide, one row per legacy rule type.
pub const RULES: &[RuleRow] = &[
    RuleRow {
        name: "ClientRateLimitReached",
        spellings: &[
            "Rate Limit Reached",
            "ClientRateLimitReached",
            "Client rate limit exceeded",
            "Client rate limit reached",
        ],
        type_rule: TypeRule::Fixed("client.rateLimit.reached"),
        layout: Layout::RateLimit,
        // The quota is used up when the limit is reached: the OpenAPI's
        // client.rateLimit.reached example carries `quotaRemaining: 0`,
        // which the legacy body leaves out.
        constants: &[("quotaRemaining", Constant::Int(0))],
    },
    RuleRow {
        name: "ClientRateLimitReset",
        spellings: &[
            "Rate Limit Reset",
            "ClientRateLimitReset",
            "Client Rate Limit Reset",
        ],
        type_rule: TypeRule::Fixed("client.rateLimit.reset"),
        layout: Layout::RateLimit,
        constants: &[],
    },
    RuleRow {
        name: "DataConnectionStatusChanged",
        spellings: &[
            "DataConnectionStatusChanged",
            "Company data connection status changed",
        ],
        type_rule: TypeRule::ConnectionTransition,
        layout: Layout::Connection,
        constants: &[],
    },
    RuleRow {
        name: "DataSyncCompleted",
        spellings: &["Data sync completed", "DataSyncCompleted"],
        type_rule: TypeRule::Fixed("read.completed"),
        layout: Layout::Read,
        constants: &[("dataTypes[].status", READ_STATUS_COMPLETE)],
    },
    RuleRow {
        name: "DataSyncStatusChangedToError",
        spellings: &[
            "Data Sync Status Changed To Error",
            "DataSyncStatusChangedToError",
            "Dataset status has changed to an error state",
        ],
        type_rule: TypeRule::Fixed("read.completed"),
        layout: Layout::Read,
        constants: &[],
    },
    RuleRow {
        name: "DatasetDataChanged",
        spellings: &["Dataset data changed", "DatasetDataChanged"],
        type_rule: TypeRule::Fixed("read.completed"),
        layout: Layout::Read,
        constants: &[
            ("dataTypes[].status", READ_STATUS_COMPLETE),
            ("dataTypes[].recordsModified", Constant::Bool(true)),
        ],
    },
    RuleRow {
        name: "NewCompanySynchronized",
        spellings: &[
            "New company synchronised",
            "New company synchronized",
            "NewCompanySynchronized",
            "NewCompanySynchronised",
        ],
        type_rule: TypeRule::Fixed("read.completed.initial"),
        layout: Layout::Read,
        // No status: the rule covers every data type of the first sync,
        // of which only "at least one" succeeded (the OpenAPI's words).
        constants: &[],
    },
    RuleRow {
        name: "PushOperationStatusChanged",
        spellings: &[
            "Push Operation Status Changed()",
            "PushOperationStatusChanged",
            "Push operation status has changed",
        ],
        type_rule: TypeRule::PushStatus,
        layout: Layout::Write,
        constants: &[],
    },
    RuleRow {
        name: "PushOperationTimedOut",
        spellings: &[
            "Push Operation Timed Out",
            "PushOperationTimedOut",
            "Push operation has timed out",
        ],
        type_rule: TypeRule::PushTimedOut,
        layout: Layout::Write,
        constants: &[("status", Constant::Str("TimedOut"))],
    },
    RuleRow {
        name: "SyncCompleted",
        spellings: &["Sync Completed", "SyncCompleted", "Expenses sync completed"],
        type_rule: TypeRule::Fixed("expenses.sync.successful"),
        layout: Layout::ExpensesSync,
        constants: &[],
    },
    RuleRow {
        name: "SyncFailed",
        spellings: &["Sync Failed", "SyncFailed", "Expenses sync failed"],
        type_rule: TypeRule::Fixed("expenses.sync.unsuccessful"),
        layout: Layout::ExpensesSync,
        constants: &[],
    },
    RuleRow {
        name: "SyncConnectionDeleted",
        spellings: &["Sync Connection Deleted", "SyncConnectionDeleted"],
        type_rule: TypeRule::Fixed("connection.deleted"),
        layout: Layout::Connection,
        constants: &[],
    },
    RuleRow {
        name: "AccountCategoriesUpdated",
        spellings: &["Account Categories Updated", "AccountCategoriesUpdated"],
        type_rule: TypeRule::Fixed("AccountCategoriesUpdated"),
        layout: Layout::AccountCategories,
        constants: &[],
    },
];

/// A side of a connection status transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No status: absent, null or empty.
    None,
    /// Any status at all, including none.
    Any,
    /// This status (matched like rule names).
    Is(&'static str),
}

/// DataConnectionStatusChanged: (oldStatus, newStatus) -> event type, first
/// match wins.
pub const CONNECTION_TRANSITIONS: &[(Status, Status, &str)] = &[
    (
        Status::None,
        Status::Is("PendingAuth"),
        "connection.created",
    ),
    (
        Status::Is("PendingAuth"),
        Status::Is("Linked"),
        "connection.connected",
    ),
    (
        Status::Is("Linked"),
        Status::Is("Unlinked"),
        "connection.disconnected",
    ),
    (
        Status::Is("Linked"),
        Status::Is("Deauthorized"),
        "connection.disconnected",
    ),
    (
        Status::Is("Unlinked"),
        Status::Is("Linked"),
        "connection.reconnected",
    ),
    (
        Status::Is("Deauthorized"),
        Status::Is("Linked"),
        "connection.reconnected",
    ),
    (Status::Any, Status::Is("Deleted"), "connection.deleted"),
];

/// codat-stream's own type for any other connection transition (the guide
/// gives none); `Data.oldStatus` stays in the legacy section and
/// `payload.connection.status` holds the new one.
pub const CONNECTION_OTHER_TRANSITION: &str = "connection.statusChanged";

/// PushOperationStatusChanged: `Data.status` -> type suffix after
/// `{dataType}.`, and who named it (CODAT_CATALOG becomes CODAT_UNLISTED
/// for a data type outside `event_type::WRITE_DATA_TYPES`).
pub const PUSH_STATUSES: &[(&str, &str, TypeOrigin)] = &[
    ("Success", "write.successful", TypeOrigin::CodatCatalog),
    ("Successful", "write.successful", TypeOrigin::CodatCatalog),
    ("Failed", "write.unsuccessful", TypeOrigin::CodatCatalog),
    ("TimedOut", "write.unsuccessful", TypeOrigin::CodatCatalog),
    ("Pending", "write.pending", TypeOrigin::CodatStream),
];

/// codat-stream's own suffix for a push status not in [`PUSH_STATUSES`]
/// (absent, or one Codat adds later).
pub const PUSH_OTHER_STATUS: &str = "write.statusChanged";

/// Where a legacy value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A top-level key (PascalCase in Codat's bodies).
    Top(&'static str),
    /// A key inside `Data` (casing varies between rules).
    Data(&'static str),
}

/// Legacy field -> event payload path (`a.b`, `[]` = first array element),
/// per layout; keys are matched without regard to ASCII case. Older legacy
/// bodies carry `Data.companyName`: it goes to `referenceCompany.name` in
/// every layout with a company, where event payloads have it (and where
/// `normalize.redact` finds it in either shape).
pub fn field_moves(layout: Layout) -> &'static [(Source, &'static str)] {
    use Source::{Data, Top};
    match layout {
        Layout::Connection => &[
            (Top("CompanyId"), "referenceCompany.id"),
            (Data("companyName"), "referenceCompany.name"),
            (Top("DataConnectionId"), "connection.id"),
            (Data("dataConnectionId"), "connection.id"),
            (Data("newStatus"), "connection.status"),
            (Data("platformKey"), "connection.integrationKey"),
        ],
        Layout::Read => &[
            (Top("CompanyId"), "referenceCompany.id"),
            (Data("companyName"), "referenceCompany.name"),
            (Top("DataConnectionId"), "dataTypes[].connectionId"),
            (Data("dataType"), "dataTypes[].dataType"),
            (Data("datasetStatus"), "dataTypes[].status"),
        ],
        Layout::Write => &[
            (Top("CompanyId"), "referenceCompany.id"),
            (Data("companyName"), "referenceCompany.name"),
            (Top("DataConnectionId"), "connectionId"),
            (Data("pushOperationKey"), "id"),
            (Data("pushOperationGuid"), "id"),
            (Data("status"), "status"),
        ],
        Layout::ExpensesSync => &[
            (Top("CompanyId"), "referenceCompany.id"),
            (Data("companyName"), "referenceCompany.name"),
            (Data("syncId"), "syncId"),
        ],
        Layout::RateLimit => &[
            (Data("DailyQuota"), "dailyQuota"),
            (Data("QuotaRemaining"), "quotaRemaining"),
            (Data("ExpiresUtc"), "expiryDate"),
        ],
        Layout::AccountCategories => &[
            (Top("CompanyId"), "referenceCompany.id"),
            (Data("companyName"), "referenceCompany.name"),
            (Data("modifiedDate"), "modifiedDate"),
        ],
    }
}

/// Whether `a` and `b` name the same rule or status: ASCII case, white
/// space, `_`, `-`, `(` and `)` are ignored ("Push Operation Status Changed()"
/// = "PushOperationStatusChanged").
pub fn rule_key_eq(a: &str, b: &str) -> bool {
    significant(a).eq(significant(b))
}

fn significant(s: &str) -> impl Iterator<Item = u8> + '_ {
    s.bytes()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'_' | b'-' | b'(' | b')'))
        .map(|b| b.to_ascii_lowercase())
}

/// The table row for a `RuleType` value, matched tolerantly.
pub fn find_rule(rule_type: &str) -> Option<&'static RuleRow> {
    // The body's spelling is reduced once, not once per spelling in the
    // table (45 of them); a longer one than any spelling matches none.
    let mut key = [0u8; 64];
    let mut len = 0;
    for b in significant(rule_type) {
        *key.get_mut(len)? = b;
        len += 1;
    }
    let key = key.get(..len)?;
    RULES.iter().find(|row| {
        row.spellings
            .iter()
            .any(|s| significant(s).eq(key.iter().copied()))
    })
}

fn status_matches(pattern: Status, status: Option<&str>) -> bool {
    let status = status.filter(|s| !s.trim().is_empty());
    match pattern {
        Status::Any => true,
        Status::None => status.is_none(),
        Status::Is(name) => status.is_some_and(|s| rule_key_eq(name, s)),
    }
}

/// The event type for a connection status transition, and who named it.
pub fn connection_transition_type(
    old: Option<&str>,
    new: Option<&str>,
) -> (&'static str, TypeOrigin) {
    CONNECTION_TRANSITIONS
        .iter()
        .find(|(from, to, _)| status_matches(*from, old) && status_matches(*to, new))
        .map(|(_, _, t)| (*t, TypeOrigin::CodatCatalog))
        .unwrap_or((CONNECTION_OTHER_TRANSITION, TypeOrigin::CodatStream))
}

/// The type suffix for a push operation status, and who named it.
pub fn push_status_suffix(status: Option<&str>) -> (&'static str, TypeOrigin) {
    status
        .and_then(|s| {
            PUSH_STATUSES
                .iter()
                .find(|(name, _, _)| rule_key_eq(name, s))
        })
        .map(|(_, suffix, origin)| (*suffix, *origin))
        .unwrap_or((PUSH_OTHER_STATUS, TypeOrigin::CodatStream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event_type;

    #[test]
    fn every_spelling_finds_its_own_row_only() {
        for row in RULES {
            for s in row.spellings {
                assert!(significant(s).count() <= 64, "find_rule's buffer: {s}");
                assert_eq!(find_rule(s).map(|r| r.name), Some(row.name), "{s}");
            }
        }
    }

    #[test]
    fn rule_types_match_tolerantly() {
        for (input, name) in [
            (
                "Push Operation Status Changed()",
                "PushOperationStatusChanged",
            ),
            (
                "push operation status changed",
                "PushOperationStatusChanged",
            ),
            (
                "PUSH_OPERATION_STATUS_CHANGED",
                "PushOperationStatusChanged",
            ),
            ("New company synchronized", "NewCompanySynchronized"),
            ("  Rate Limit Reset ", "ClientRateLimitReset"),
            ("dataconnectionstatuschanged", "DataConnectionStatusChanged"),
        ] {
            assert_eq!(find_rule(input).map(|r| r.name), Some(name), "{input}");
        }
        assert!(find_rule("Something Else").is_none());
        assert!(find_rule("").is_none());
    }

    #[test]
    fn connection_transitions_follow_the_guide() {
        let t = |o, n| connection_transition_type(o, n).0;
        assert_eq!(t(None, Some("PendingAuth")), "connection.created");
        assert_eq!(t(Some(""), Some("PendingAuth")), "connection.created");
        assert_eq!(
            t(Some("PendingAuth"), Some("Linked")),
            "connection.connected"
        );
        assert_eq!(
            t(Some("Linked"), Some("Unlinked")),
            "connection.disconnected"
        );
        assert_eq!(
            t(Some("Linked"), Some("Deauthorized")),
            "connection.disconnected"
        );
        assert_eq!(
            t(Some("Unlinked"), Some("Linked")),
            "connection.reconnected"
        );
        assert_eq!(
            t(Some("deauthorized"), Some("linked")),
            "connection.reconnected"
        );
        assert_eq!(t(Some("Linked"), Some("Deleted")), "connection.deleted");
        assert_eq!(
            connection_transition_type(Some("Linked"), Some("PendingAuth")),
            ("connection.statusChanged", TypeOrigin::CodatStream)
        );
        assert_eq!(t(None, Some("Linked")), "connection.statusChanged");
        assert_eq!(t(Some("PendingAuth"), None), "connection.statusChanged");
    }

    #[test]
    fn push_statuses_follow_the_guide() {
        assert_eq!(push_status_suffix(Some("Success")).0, "write.successful");
        assert_eq!(push_status_suffix(Some("Successful")).0, "write.successful");
        assert_eq!(push_status_suffix(Some("Failed")).0, "write.unsuccessful");
        assert_eq!(
            push_status_suffix(Some("Timed Out")).0,
            "write.unsuccessful"
        );
        assert_eq!(
            push_status_suffix(Some("Pending")),
            ("write.pending", TypeOrigin::CodatStream)
        );
        assert_eq!(
            push_status_suffix(None),
            ("write.statusChanged", TypeOrigin::CodatStream)
        );
    }

    #[test]
    fn every_type_the_table_can_produce_is_valid_and_correctly_labelled() {
        for row in RULES {
            if let TypeRule::Fixed(t) = row.type_rule {
                event_type::validate(t).unwrap();
                assert!(event_type::is_catalogued(t), "{t}");
            }
        }
        for (_, _, t) in CONNECTION_TRANSITIONS {
            assert!(event_type::is_catalogued(t), "{t}");
        }
        assert!(!event_type::is_catalogued(CONNECTION_OTHER_TRANSITION));
        for (_, suffix, origin) in PUSH_STATUSES {
            let t = format!("invoices.{suffix}");
            assert_eq!(
                event_type::origin_of_codat_type(&t) == TypeOrigin::CodatCatalog,
                *origin == TypeOrigin::CodatCatalog
            );
        }
    }
}
