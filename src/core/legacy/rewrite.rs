//! Rewrites one legacy rules body into an event: its type by the mapping
//! table, its fields moved into the event payload layout, and everything
//! with no place there kept in the legacy section. Nothing is dropped.

use std::borrow::Cow;

use super::mapping::{self, Constant, RuleRow, Source, TypeRule};
use crate::core::envelope::{LegacyRule, TypeOrigin};
use crate::core::event_type;
use crate::core::raw_json::{self, JsonFault, Kind, OutJson, RawObject};
use crate::core::rejection::{RejectReason, Rejection, excerpt};

const SHAPE: &str = "legacy rule";

/// A legacy body, rewritten.
#[derive(Debug)]
pub struct LegacyEvent<'a> {
    /// `AlertId`.
    pub id: Cow<'a, str>,
    /// The mapped event type.
    pub event_type: Cow<'a, str>,
    /// Who named the type.
    pub type_origin: TypeOrigin,
    /// `RuleType` as sent.
    pub rule_type: Cow<'a, str>,
    /// The table row that matched.
    pub rule: &'static RuleRow,
    /// `CompanyId`.
    pub company_id: Option<Cow<'a, str>>,
    /// `DataConnectionId`, else `Data.dataConnectionId`.
    pub connection_id: Option<Cow<'a, str>>,
    /// `ClientId`.
    pub client_id: Option<Cow<'a, str>>,
    /// `Data.dataType`.
    pub data_type: Option<Cow<'a, str>>,
    /// The legacy section.
    pub legacy: LegacyRule<'a>,
    /// The payload in the event layout, as JSON text.
    pub payload: String,
}

/// The members of one object, with a note of which ones found a place.
struct Members<'o, 'a> {
    object: &'o RawObject<'a>,
    placed: Vec<bool>,
}

impl<'o, 'a> Members<'o, 'a> {
    fn new(object: &'o RawObject<'a>) -> Self {
        Members {
            object,
            placed: vec![false; object.members.len()],
        }
    }

    /// Index and value of the first member named `key`, ignoring ASCII case
    /// (legacy casing is inconsistent: `dataType` but `DailyQuota`).
    fn find(&self, key: &str) -> Option<(usize, &'a str)> {
        self.object
            .members
            .iter()
            .enumerate()
            .find(|(_, (k, _))| k.eq_ignore_ascii_case(key))
            .map(|(i, (_, v))| (i, *v))
    }

    /// The string at `key` (null counts as absent), without placing it.
    fn peek_str(&self, key: &str, label: &str) -> Result<Option<(usize, Cow<'a, str>)>, Rejection> {
        let Some((i, raw)) = self.find(key) else {
            return Ok(None);
        };
        Ok(str_value(raw, label)?.map(|s| (i, s)))
    }

    /// Like `peek_str`, and marks the member placed (it goes to an envelope field).
    fn take_str(&mut self, key: &str, label: &str) -> Result<Option<Cow<'a, str>>, Rejection> {
        let Some((i, raw)) = self.find(key) else {
            return Ok(None);
        };
        self.placed[i] = true;
        str_value(raw, label)
    }

    /// The members that found no place, as an object.
    fn leftovers(&self) -> OutJson<'a> {
        let mut out = OutJson::object();
        for ((k, v), placed) in self.object.members.iter().zip(&self.placed) {
            if !placed {
                out.push_member(k.clone(), OutJson::Raw(v));
            }
        }
        out
    }
}

/// The string `raw` holds (null counts as absent); any other kind is
/// refused as mistyped.
fn str_value<'a>(raw: &'a str, label: &str) -> Result<Option<Cow<'a, str>>, Rejection> {
    match raw_json::kind(raw) {
        Kind::Null => Ok(None),
        Kind::String => raw_json::as_str(raw).map_err(|f| f.at(&format!("`{label}`"))),
        other => Err(Rejection::mistyped(label, "a string", other.name())),
    }
}

/// Rewrites a legacy rules body (its top-level object) into an event.
pub fn rewrite<'a>(body: &RawObject<'a>) -> Result<LegacyEvent<'a>, Rejection> {
    // Legacy keys are matched ignoring case, so `AlertId` and `alertid`
    // together are ambiguous: refuse rather than pick one.
    body.check_unique(true).map_err(|f| f.at("the body"))?;
    let mut top = Members::new(body);

    let rule_type = top
        .take_str("RuleType", "RuleType")?
        .ok_or_else(|| Rejection::missing("RuleType", SHAPE))?;
    let rule = mapping::find_rule(&rule_type).ok_or_else(|| {
        Rejection::new(
            RejectReason::UnknownLegacyRuleType,
            format!(
                "legacy RuleType {} matches no rule of the legacy -> event mapping",
                excerpt(&rule_type)
            ),
        )
    })?;
    let id = top
        .take_str("AlertId", "AlertId")?
        .ok_or_else(|| Rejection::missing("AlertId", SHAPE))?;
    let client_id = top.take_str("ClientId", "ClientId")?;
    let company_id = top.take_str("CompanyId", "CompanyId")?;
    let top_connection_id = top.take_str("DataConnectionId", "DataConnectionId")?;
    let legacy = LegacyRule {
        rule_id: top.take_str("RuleId", "RuleId")?,
        client_name: top.take_str("ClientName", "ClientName")?,
        message: top.take_str("Message", "Message")?,
        unmapped: None,
    };

    let data_object = match top.find("Data") {
        None => RawObject::default(),
        Some((i, raw)) => {
            top.placed[i] = true;
            match raw_json::kind(raw) {
                Kind::Null => RawObject::default(),
                Kind::Object => {
                    let at_data = |f: JsonFault| f.at("`Data`");
                    let data = RawObject::parse(raw).map_err(at_data)?.unwrap_or_default();
                    data.check_unique(true).map_err(at_data)?;
                    data
                }
                other => return Err(Rejection::mistyped("Data", "an object", other.name())),
            }
        }
    };
    let mut data = Members::new(&data_object);

    let data_type = data.take_str("dataType", "Data.dataType")?;
    let connection_id = match top_connection_id {
        Some(id) => Some(id),
        None => data.take_str("dataConnectionId", "Data.dataConnectionId")?,
    };

    let (event_type, type_origin) = event_type_for(rule, &data, data_type.as_deref())?;
    event_type::validate(&event_type)?;

    let mut payload = OutJson::object();
    for (from, path) in mapping::field_moves(rule.layout) {
        let (members, key) = match from {
            Source::Top(key) => (&mut top, *key),
            Source::Data(key) => (&mut data, *key),
        };
        let Some((i, value)) = members.find(key) else {
            continue;
        };
        let redundant = matches!(payload.get_path(path), Some(OutJson::Raw(existing)) if raw_json::same_value(existing, value));
        if redundant || payload.set_path(path, OutJson::Raw(value)) {
            members.placed[i] = true;
        }
    }
    for (path, constant) in rule.constants {
        let value = match constant {
            Constant::Bool(b) => OutJson::Bool(*b),
            Constant::Str(s) => OutJson::Str(Cow::Borrowed(s)),
            Constant::Int(n) => OutJson::Int(*n),
        };
        payload.set_path(path, value);
    }

    let mut unmapped = top.leftovers();
    let data_left = data.leftovers();
    if !data_left.is_empty_object() {
        // Keep the body's own spelling of the `Data` key.
        let key = top
            .find("Data")
            .map(|(i, _)| body.members[i].0.clone())
            .unwrap_or(Cow::Borrowed("Data"));
        unmapped.push_member(key, data_left);
    }

    Ok(LegacyEvent {
        id,
        event_type,
        type_origin,
        rule_type,
        rule,
        company_id,
        connection_id,
        client_id,
        data_type,
        legacy: LegacyRule {
            unmapped: (!unmapped.is_empty_object()).then(|| unmapped.to_json_string()),
            ..legacy
        },
        payload: payload.to_json_string(),
    })
}

fn event_type_for<'a>(
    rule: &RuleRow,
    data: &Members<'_, 'a>,
    data_type: Option<&str>,
) -> Result<(Cow<'a, str>, TypeOrigin), Rejection> {
    // A write outcome the guide maps is Codat's only for the data types
    // Codat publishes write events for; any other data type is unlisted.
    let write_type = |suffix: &str, origin: TypeOrigin| {
        let dt = data_type
            .ok_or_else(|| Rejection::missing("Data.dataType", &format!("{} legacy", rule.name)))?;
        let t = format!("{dt}.{suffix}");
        let origin = match origin {
            TypeOrigin::CodatCatalog => event_type::origin_of_codat_type(&t),
            own => own,
        };
        Ok::<_, Rejection>((Cow::Owned(t), origin))
    };
    Ok(match rule.type_rule {
        TypeRule::Fixed(t) => (Cow::Borrowed(t), event_type::origin_of_codat_type(t)),
        TypeRule::ConnectionTransition => {
            let old = data.peek_str("oldStatus", "Data.oldStatus")?;
            let new = data.peek_str("newStatus", "Data.newStatus")?;
            let (t, origin) = mapping::connection_transition_type(
                old.as_ref().map(|(_, s)| s.as_ref()),
                new.as_ref().map(|(_, s)| s.as_ref()),
            );
            (Cow::Borrowed(t), origin)
        }
        TypeRule::PushStatus => {
            let status = data.peek_str("status", "Data.status")?;
            let (suffix, origin) =
                mapping::push_status_suffix(status.as_ref().map(|(_, s)| s.as_ref()));
            write_type(suffix, origin)?
        }
        TypeRule::PushTimedOut => write_type("write.unsuccessful", TypeOrigin::CodatCatalog)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &'static str) -> Result<(LegacyEvent<'static>, serde_json::Value), Rejection> {
        let obj: RawObject = serde_json::from_str(body).unwrap();
        let ev = rewrite(&obj)?;
        let payload = serde_json::from_str(&ev.payload).unwrap();
        Ok((ev, payload))
    }

    #[test]
    fn connection_status_change_moves_fields_and_keeps_old_status() {
        let (ev, p) = run(r#"{"ClientId":"cl","ClientName":"Bank","CompanyId":"co","DataConnectionId":"dc",
            "RuleId":"r","RuleType":"DataConnectionStatusChanged","AlertId":"a","Message":"m",
            "Data":{"dataConnectionId":"dc","newStatus":"Linked","oldStatus":"PendingAuth","platformKey":"gbol"}}"#)
        .unwrap();
        assert_eq!(ev.event_type, "connection.connected");
        assert_eq!(
            p,
            serde_json::json!({"referenceCompany":{"id":"co"},
                "connection":{"id":"dc","status":"Linked","integrationKey":"gbol"}})
        );
        assert_eq!(
            ev.legacy.unmapped.as_deref(),
            Some(r#"{"Data":{"oldStatus":"PendingAuth"}}"#)
        );
        assert_eq!(ev.legacy.rule_id.as_deref(), Some("r"));
        assert_eq!(ev.legacy.client_name.as_deref(), Some("Bank"));
        assert_eq!(ev.legacy.message.as_deref(), Some("m"));
        assert_eq!(ev.client_id.as_deref(), Some("cl"));
    }

    #[test]
    fn conflicting_connection_ids_keep_the_second_in_the_legacy_section() {
        let (ev, p) = run(
            r#"{"RuleType":"DataConnectionStatusChanged","AlertId":"a","DataConnectionId":"one",
            "Data":{"dataConnectionId":"two","newStatus":"PendingAuth"}}"#,
        )
        .unwrap();
        assert_eq!(ev.event_type, "connection.created");
        assert_eq!(p["connection"]["id"], "one");
        assert_eq!(ev.connection_id.as_deref(), Some("one"));
        assert_eq!(
            ev.legacy.unmapped.as_deref(),
            Some(r#"{"Data":{"dataConnectionId":"two"}}"#)
        );
    }

    #[test]
    fn push_status_picks_write_outcome_from_data_type() {
        for (status, t) in [
            ("Success", "invoices.write.successful"),
            ("Failed", "invoices.write.unsuccessful"),
            ("TimedOut", "invoices.write.unsuccessful"),
            ("Pending", "invoices.write.pending"),
            ("Queued", "invoices.write.statusChanged"),
        ] {
            let body = format!(
                r#"{{"RuleType":"PushOperationStatusChanged","AlertId":"a","CompanyId":"c","DataConnectionId":"d",
                "Data":{{"dataType":"invoices","status":"{status}","pushOperationKey":"k"}}}}"#
            );
            let body: &'static str = Box::leak(body.into_boxed_str());
            let (ev, p) = run(body).unwrap();
            assert_eq!(ev.event_type, t);
            assert_eq!(
                p,
                serde_json::json!({"referenceCompany":{"id":"c"},"connectionId":"d","id":"k","status":status})
            );
            assert_eq!(ev.data_type.as_deref(), Some("invoices"));
            assert_eq!(ev.legacy.unmapped, None);
        }
    }

    /// Issue 12, item 6: a push for a data type outside the OpenAPI's 18
    /// was labelled CODAT_CATALOG.
    #[test]
    fn push_of_an_unpublished_data_type_is_unlisted() {
        let (ev, _) = run(r#"{"RuleType":"PushOperationStatusChanged","AlertId":"a",
            "Data":{"dataType":"widgets","status":"Success"}}"#)
        .unwrap();
        assert_eq!(ev.event_type, "widgets.write.successful");
        assert_eq!(ev.type_origin, TypeOrigin::CodatUnlisted);
        let (ev, _) =
            run(r#"{"RuleType":"Push Operation Timed Out","AlertId":"a","Data":{"dataType":"widgets"}}"#)
                .unwrap();
        assert_eq!(ev.type_origin, TypeOrigin::CodatUnlisted);
        let (ev, _) = run(r#"{"RuleType":"PushOperationStatusChanged","AlertId":"a",
            "Data":{"dataType":"widgets","status":"Pending"}}"#)
        .unwrap();
        assert_eq!(ev.type_origin, TypeOrigin::CodatStream);
    }

    #[test]
    fn push_without_data_type_is_a_missing_field() {
        let err =
            run(r#"{"RuleType":"Push Operation Timed Out","AlertId":"a","Data":{}}"#).unwrap_err();
        assert_eq!(err.reason, RejectReason::MissingField);
        assert!(err.message.contains("Data.dataType"), "{}", err.message);
    }

    #[test]
    fn push_data_type_must_make_a_valid_type() {
        let err = run(r#"{"RuleType":"Push Operation Timed Out","AlertId":"a","Data":{"dataType":"in voices"}}"#)
            .unwrap_err();
        assert_eq!(err.reason, RejectReason::InvalidEventType);
    }

    #[test]
    fn rate_limit_keys_are_matched_without_case_and_renamed() {
        let (ev, p) = run(r#"{"RuleType":"Rate Limit Reset","AlertId":"a","ClientId":"c",
            "Data":{"QuotaRemaining":1000,"ResetReason":"new day","dailyQuota":1000,"ExpiresUtc":"2023-05-03T00:00:00Z"}}"#)
        .unwrap();
        assert_eq!(ev.event_type, "client.rateLimit.reset");
        assert_eq!(
            p,
            serde_json::json!({"dailyQuota":1000,"quotaRemaining":1000,"expiryDate":"2023-05-03T00:00:00Z"})
        );
        assert_eq!(
            ev.legacy.unmapped.as_deref(),
            Some(r#"{"Data":{"ResetReason":"new day"}}"#)
        );
    }

    /// Issue 12, item 3: rewritten read bodies carried no status, so a
    /// subscriber replicating DataSyncCompleted / DatasetDataChanged the
    /// OpenAPI's way (check `dataTypes[].status`) dropped them all.
    #[test]
    fn completed_syncs_carry_the_read_status_and_reached_limits_no_quota() {
        for (rule, modified) in [
            ("Data sync completed", None),
            ("Dataset data changed", Some(true)),
        ] {
            let body = format!(
                r#"{{"RuleType":"{rule}","AlertId":"a","CompanyId":"c","Data":{{"dataType":"invoices"}}}}"#
            );
            let (_, p) = run(Box::leak(body.into_boxed_str())).unwrap();
            assert_eq!(p["dataTypes"][0]["status"], "Complete", "{rule}");
            assert_eq!(
                p["dataTypes"][0]
                    .get("recordsModified")
                    .and_then(|v| v.as_bool()),
                modified
            );
        }
        // A status the body carries wins over the implied one.
        let (_, p) = run(r#"{"RuleType":"DataSyncCompleted","AlertId":"a",
            "Data":{"dataType":"invoices","datasetStatus":"Fetching"}}"#)
        .unwrap();
        assert_eq!(p["dataTypes"][0]["status"], "Fetching");
        let (_, p) =
            run(r#"{"RuleType":"Rate Limit Reached","AlertId":"a","Data":{"DailyQuota":5}}"#)
                .unwrap();
        assert_eq!(p, serde_json::json!({"dailyQuota":5,"quotaRemaining":0}));
    }

    #[test]
    fn unknown_top_level_fields_are_kept() {
        let (ev, _) = run(r#"{"RuleType":"Sync Connection Deleted","AlertId":"a","CompanyId":"c","Extra":{"x":[1,2]}}"#).unwrap();
        assert_eq!(ev.company_id.as_deref(), Some("c"));
        assert_eq!(
            ev.legacy.unmapped.as_deref(),
            Some(r#"{"Extra":{"x":[1,2]}}"#)
        );
    }

    /// Issue 9, finding 4: legacy keys are matched ignoring case, so
    /// `CompanyId` beside `companyId` used to take the first silently.
    #[test]
    fn keys_equal_ignoring_case_are_refused() {
        let err = run(r#"{"RuleType":"Sync Connection Deleted","AlertId":"a","CompanyId":"c","companyId":"dup"}"#).unwrap_err();
        assert_eq!(err.reason, RejectReason::DuplicateKey);
    }

    #[test]
    fn unknown_rule_type_and_mistyped_fields_are_rejected() {
        assert_eq!(
            run(r#"{"RuleType":"Made Up","AlertId":"a"}"#)
                .unwrap_err()
                .reason,
            RejectReason::UnknownLegacyRuleType
        );
        assert_eq!(
            run(r#"{"RuleType":"Sync Failed"}"#).unwrap_err().reason,
            RejectReason::MissingField
        );
        assert_eq!(
            run(r#"{"RuleType":"Sync Failed","AlertId":7}"#)
                .unwrap_err()
                .reason,
            RejectReason::InvalidField
        );
        assert_eq!(
            run(r#"{"RuleType":"Sync Failed","AlertId":"a","Data":"x"}"#)
                .unwrap_err()
                .reason,
            RejectReason::InvalidField
        );
        assert_eq!(
            run(r#"{"RuleType":null,"AlertId":"a"}"#)
                .unwrap_err()
                .reason,
            RejectReason::MissingField
        );
    }
}
