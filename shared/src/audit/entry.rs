//! From one stream record to its audit entry: a pure function, so every rule (which items
//! are audited, the entity, the verb, the actor, the diff) is tested without DynamoDB.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::actor::{attribute, Actor};
use super::fields::{classify, FieldClass, REDACTED};
use crate::domain::Timestamp;
use crate::payments::plans::model::ACTIVE_SK as PLAN_ACTIVE_SK;

/// An item as a stream record carries it.
pub type Image = HashMap<String, AttributeValue>;

/// The audited tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Accounts,
    Payments,
    Users,
    Jobs,
    /// Payment plans (pk account id; sk `ACTIVE` while active, the plan id once ended).
    Plans,
}

/// What happened to the item, as the stream says (`INSERT`, `MODIFY`, `REMOVE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Insert,
    Modify,
    Remove,
}

impl EventKind {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "INSERT" => Some(Self::Insert),
            "MODIFY" => Some(Self::Modify),
            "REMOVE" => Some(Self::Remove),
            _ => None,
        }
    }
}

/// One stream record, as the audit writer needs it.
#[derive(Debug, Clone)]
pub struct StreamChange {
    /// The record's `eventID`: the audit entry's key (a redelivery writes nothing twice).
    pub event_id: String,
    pub kind: EventKind,
    pub source: Source,
    pub old: Option<Image>,
    pub new: Option<Image>,
    /// The stream's `ApproximateCreationDateTime`: when the change is not stamped.
    pub approximate_at: Option<Timestamp>,
    /// DynamoDB's own deletions (TTL) carry this principal.
    pub by_dynamodb: bool,
}

/// One changed field: its old and new value (`null`: absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldChange {
    pub field: String,
    #[schema(value_type = Object)]
    pub old: Value,
    #[schema(value_type = Object)]
    pub new: Value,
}

/// One audited change (`GET /audit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// The stream record's `eventID`.
    pub id: String,
    /// When the change was written (the writer's stamp; the stream's time without one).
    pub at: Timestamp,
    /// `account:{id}`, `payment:{id}`, `plan:{id}`, `user:{id}`, `job:{id}`, `import:{id}`.
    pub entity: String,
    /// The entity whose trail this entry belongs to: an account's payments and plans are part of
    /// `account:{id}`; every other entity is its own subject.
    pub subject: String,
    /// `create`, `update`, `delete`, or the verb the change tells: `record`, `complete`,
    /// `fail`, `refund`, `reverse` (payments), `disable`, `enable`, `role_change`,
    /// `password_change` (users), `cancel`, `finish` (jobs and imports).
    pub action: String,
    /// A user id, `system:<job>`, `anonymous` (a request before sign-in) or `unattributed`.
    pub actor_id: String,
    /// The user's role, `system`, or `unknown`.
    pub actor_role: String,
    /// The API request of the change (API changes only).
    pub request_id: Option<String>,
    /// The caller's IP (API changes only).
    pub source_ip: Option<String>,
    /// What the change went through when not a request: `bulk:{job}`, `import:{id}`.
    pub via: Option<String>,
    pub changes: Vec<FieldChange>,
}

/// The entity of an item and the subject whose trail it belongs to; `None` for the items
/// that are not records of their own (reference and email claims, counters, chunk
/// markers, failures, row errors).
fn entity_of(source: Source, image: &Image) -> Option<(String, String)> {
    let text = |name: &str| match image.get(name) {
        Some(AttributeValue::S(value)) => Some(value.as_str()),
        _ => None,
    };
    let pk = text("pk")?;
    match source {
        Source::Accounts => {
            let id = pk.strip_prefix("ACCOUNT#")?;
            let entity = format!("account:{id}");
            Some((entity.clone(), entity))
        }
        Source::Payments => Some((format!("payment:{}", text("sk")?), format!("account:{pk}"))),
        // The active plan is the `ACTIVE` item; an ended one moves under its id.
        Source::Plans => Some((format!("plan:{}", text("id")?), format!("account:{pk}"))),
        Source::Users => {
            let entity = format!("user:{}", pk.strip_prefix("USER#")?);
            Some((entity.clone(), entity))
        }
        Source::Jobs => {
            let kind = match text("sk")? {
                crate::bulk::JOB_SK => "job",
                crate::imports::keys::IMPORT_SK => "import",
                _ => return None,
            };
            let entity = format!("{kind}:{pk}");
            Some((entity.clone(), entity))
        }
    }
}

/// An attribute as JSON (numbers as numbers, sets as arrays).
fn json(value: Option<&AttributeValue>) -> Value {
    value
        .and_then(|v| serde_dynamo::from_attribute_value::<_, Value>(v.clone()).ok())
        .unwrap_or(Value::Null)
}

/// The audited fields that differ between the images, sorted by name.
pub fn diff(old: Option<&Image>, new: Option<&Image>) -> Vec<FieldChange> {
    let empty = Image::new();
    let (old, new) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    fn present(v: Option<&AttributeValue>) -> Option<&AttributeValue> {
        v.filter(|v| !matches!(v, AttributeValue::Null(_)))
    }
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let (before, after) = (present(old.get(name)), present(new.get(name)));
            if before == after {
                return None;
            }
            let (old, new) = match classify(name) {
                FieldClass::Bookkeeping => return None,
                FieldClass::Secret => {
                    let redacted = |v: Option<&AttributeValue>| {
                        v.map_or(Value::Null, |_| Value::from(REDACTED))
                    };
                    (redacted(before), redacted(after))
                }
                FieldClass::Audited => (json(before), json(after)),
            };
            Some(FieldChange {
                field: name.clone(),
                old,
                new,
            })
        })
        .collect()
}

fn text_of<'a>(image: Option<&'a Image>, name: &str) -> Option<&'a str> {
    match image?.get(name) {
        Some(AttributeValue::S(value)) => Some(value),
        _ => None,
    }
}

/// The verb of a change.
fn action(change: &StreamChange, changes: &[FieldChange]) -> String {
    let changed = |field: &str| changes.iter().any(|c| c.field == field);
    let new_text = |name| text_of(change.new.as_ref(), name);
    let verb = match (change.kind, change.source) {
        (EventKind::Insert, Source::Payments) => "record",
        // An ended plan is put under its id as its `ACTIVE` item goes.
        (EventKind::Insert, Source::Plans)
            if text_of(change.new.as_ref(), "sk") != Some(PLAN_ACTIVE_SK) =>
        {
            "end"
        }
        (EventKind::Insert, _) => "create",
        (EventKind::Remove, _) => "delete",
        (EventKind::Modify, Source::Accounts) if changed("deleted_at") => {
            if new_text("deleted_at").is_some() {
                "delete"
            } else {
                "restore"
            }
        }
        (EventKind::Modify, Source::Payments) if changed("status") => {
            match new_text("status").unwrap_or_default() {
                "completed" => "complete",
                "failed" => "fail",
                "refunded" => "refund",
                "reversed" => "reverse",
                _ => "update",
            }
        }
        (EventKind::Modify, Source::Users) if changed("password_hash") => "password_change",
        (EventKind::Modify, Source::Users) if changed("disabled") => {
            let disabled = change.new.as_ref().and_then(|i| i.get("disabled"));
            if matches!(disabled, Some(AttributeValue::Bool(true))) {
                "disable"
            } else {
                "enable"
            }
        }
        (EventKind::Modify, Source::Users) if changed("role") => "role_change",
        (EventKind::Modify, Source::Jobs) if changed("state") => {
            match new_text("state").unwrap_or_default() {
                "cancelled" => "cancel",
                "completed" | "completed_with_errors" | "failed" => "finish",
                _ => "state_change",
            }
        }
        (EventKind::Modify, _) => "update",
    };
    verb.to_owned()
}

/// The actor of a change: the stamp on the new image when this write put it there (a
/// stamp the old image already had is a writer that did not stamp: `unattributed`);
/// DynamoDB itself for TTL deletions.
fn actor_of(change: &StreamChange) -> (Actor, Option<Timestamp>) {
    if change.kind == EventKind::Remove {
        let actor = if change.by_dynamodb {
            Actor::system("dynamodb:ttl")
        } else {
            Actor::unattributed()
        };
        return (actor, None);
    }
    let stamped_at = text_of(change.new.as_ref(), attribute::CHANGED_AT);
    let fresh =
        stamped_at.is_some() && stamped_at != text_of(change.old.as_ref(), attribute::CHANGED_AT);
    match change.new.as_ref().and_then(Actor::from_item) {
        Some(actor) if fresh => (actor, stamped_at.and_then(|at| at.parse().ok())),
        _ => (Actor::unattributed(), None),
    }
}

/// The audit entry of a stream record; `None` when the item is not an audited record or
/// the record changes no audited field (see [`super::fields`]).
pub fn entry(change: &StreamChange) -> Option<AuditEntry> {
    let image = change.new.as_ref().or(change.old.as_ref())?;
    // A plan's end is the INSERT of its ended item: the removal of its `ACTIVE` item in the
    // same transaction says nothing more.
    if change.source == Source::Plans && change.kind == EventKind::Remove {
        return None;
    }
    let (entity, subject) = entity_of(change.source, image)?;
    let changes = diff(change.old.as_ref(), change.new.as_ref());
    if changes.is_empty() {
        return None;
    }
    let (actor, stamped_at) = actor_of(change);
    Some(AuditEntry {
        id: change.event_id.clone(),
        at: stamped_at
            .or(change.approximate_at)
            .unwrap_or_else(Timestamp::now),
        entity,
        subject,
        action: action(change, &changes),
        actor_id: actor.id,
        actor_role: actor.role,
        request_id: actor.request_id,
        source_ip: actor.source_ip,
        via: actor.via,
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamo::attributes::{n, s};

    fn image(pairs: &[(&str, AttributeValue)]) -> Image {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn stamped(mut item: Image, actor: &Actor, at: &str) -> Image {
        actor.stamp(at.parse().unwrap()).put_into(&mut item);
        item
    }

    fn change(
        source: Source,
        kind: EventKind,
        old: Option<Image>,
        new: Option<Image>,
    ) -> StreamChange {
        StreamChange {
            event_id: "e-1".into(),
            kind,
            source,
            old,
            new,
            approximate_at: Some("2026-12-01T10:00:00Z".parse().unwrap()),
            by_dynamodb: false,
        }
    }

    #[test]
    fn a_patch_is_an_update_by_its_caller_with_the_fields_it_changed() {
        let agent = Actor {
            id: "01AGENT".into(),
            role: "manager".into(),
            request_id: Some("r-9".into()),
            source_ip: Some("10.1.2.3".into()),
            via: None,
        };
        let old = stamped(
            image(&[
                ("pk", s("ACCOUNT#01A")),
                ("debtor_name", s("Ann")),
                ("version", n(1)),
                ("updated_sk", s("x")),
            ]),
            &Actor::system("import"),
            "2026-12-01T09:00:00Z",
        );
        let new = stamped(
            image(&[
                ("pk", s("ACCOUNT#01A")),
                ("debtor_name", s("Anne")),
                ("version", n(2)),
                ("updated_sk", s("y")),
                ("tags", AttributeValue::L(vec![s("vip")])),
            ]),
            &agent,
            "2026-12-01T09:30:00.5Z",
        );
        let entry = entry(&change(
            Source::Accounts,
            EventKind::Modify,
            Some(old),
            Some(new),
        ))
        .unwrap();
        assert_eq!(entry.entity, "account:01A");
        assert_eq!(entry.subject, "account:01A");
        assert_eq!(entry.action, "update");
        assert_eq!(entry.actor_id, "01AGENT");
        assert_eq!(entry.request_id.as_deref(), Some("r-9"));
        assert_eq!(entry.at.to_string(), "2026-12-01T09:30:00.5Z");
        assert_eq!(
            entry.changes,
            vec![
                FieldChange {
                    field: "debtor_name".into(),
                    old: "Ann".into(),
                    new: "Anne".into()
                },
                FieldChange {
                    field: "tags".into(),
                    old: Value::Null,
                    new: serde_json::json!(["vip"])
                },
            ]
        );
    }

    #[test]
    fn an_unstamped_write_is_unattributed_and_a_key_refresh_is_no_entry() {
        let actor = Actor::system("scheduler:aging");
        let old = stamped(
            image(&[("pk", s("ACCOUNT#01A")), ("balance", n(5))]),
            &actor,
            "2026-12-01T09:00:00Z",
        );
        let mut new = old.clone();
        new.insert("balance_sk".into(), s("k"));
        assert_eq!(
            entry(&change(
                Source::Accounts,
                EventKind::Modify,
                Some(old.clone()),
                Some(new.clone())
            )),
            None
        );
        new.insert("balance".into(), n(4));
        let entry = entry(&change(
            Source::Accounts,
            EventKind::Modify,
            Some(old),
            Some(new),
        ))
        .unwrap();
        assert_eq!(entry.actor_id, "unattributed");
        assert_eq!(entry.at.to_string(), "2026-12-01T10:00:00Z");
        assert_eq!(entry.changes[0].old, serde_json::json!(5));
    }

    #[test]
    fn payments_belong_to_their_account_and_say_what_happened() {
        let actor = Actor::system("x");
        let old = stamped(
            image(&[
                ("pk", s("01ACC")),
                ("sk", s("01PAY")),
                ("status", s("completed")),
            ]),
            &actor,
            "2026-12-01T09:00:00Z",
        );
        let new = stamped(
            image(&[
                ("pk", s("01ACC")),
                ("sk", s("01PAY")),
                ("status", s("refunded")),
            ]),
            &actor,
            "2026-12-01T09:01:00Z",
        );
        let refund = entry(&change(
            Source::Payments,
            EventKind::Modify,
            Some(old.clone()),
            Some(new),
        ))
        .unwrap();
        assert_eq!(
            (
                refund.entity.as_str(),
                refund.subject.as_str(),
                refund.action.as_str()
            ),
            ("payment:01PAY", "account:01ACC", "refund")
        );
        let record = entry(&change(
            Source::Payments,
            EventKind::Insert,
            None,
            Some(old),
        ))
        .unwrap();
        assert_eq!(record.action, "record");
    }

    #[test]
    fn secrets_are_redacted_and_claims_and_counters_are_not_audited() {
        let actor = Actor::system("x");
        let old = stamped(
            image(&[("pk", s("USER#01U")), ("password_hash", s("$argon2id$old"))]),
            &actor,
            "2026-12-01T09:00:00Z",
        );
        let new = stamped(
            image(&[("pk", s("USER#01U")), ("password_hash", s("$argon2id$new"))]),
            &actor,
            "2026-12-01T09:01:00Z",
        );
        let entry = entry(&change(
            Source::Users,
            EventKind::Modify,
            Some(old),
            Some(new),
        ))
        .unwrap();
        assert_eq!(entry.action, "password_change");
        assert_eq!(
            entry.changes,
            vec![FieldChange {
                field: "password_hash".into(),
                old: REDACTED.into(),
                new: REDACTED.into()
            }]
        );
        assert!(!serde_json::to_string(&entry).unwrap().contains("argon2"));

        let claim = image(&[("pk", s("EMAIL#a@b.c")), ("user_id", s("01U"))]);
        assert_eq!(
            super::entry(&change(Source::Users, EventKind::Insert, None, Some(claim))),
            None
        );
        let job = |processed| {
            image(&[
                ("pk", s("01J")),
                ("sk", s("JOB")),
                ("state", s("running")),
                ("processed", n(processed)),
            ])
        };
        assert_eq!(
            super::entry(&change(
                Source::Jobs,
                EventKind::Modify,
                Some(job(1)),
                Some(job(2))
            )),
            None
        );
        let chunk = image(&[("pk", s("01J")), ("sk", s("CHUNK#1"))]);
        assert_eq!(
            super::entry(&change(Source::Jobs, EventKind::Insert, None, Some(chunk))),
            None
        );
    }

    #[test]
    fn a_plan_is_audited_while_active_and_when_it_ends() {
        let actor = Actor::system("x");
        let active = |paid: i64| {
            stamped(
                image(&[
                    ("pk", s("01ACC")),
                    ("sk", s(PLAN_ACTIVE_SK)),
                    ("id", s("01PLAN")),
                    ("paid", n(paid)),
                ]),
                &actor,
                "2026-12-01T09:00:00Z",
            )
        };
        let made = entry(&change(
            Source::Plans,
            EventKind::Insert,
            None,
            Some(active(0)),
        ))
        .unwrap();
        assert_eq!(
            (
                made.entity.as_str(),
                made.subject.as_str(),
                made.action.as_str()
            ),
            ("plan:01PLAN", "account:01ACC", "create")
        );
        let mut ended = active(5);
        ended.insert("sk".into(), s("01PLAN"));
        let end = entry(&change(Source::Plans, EventKind::Insert, None, Some(ended))).unwrap();
        assert_eq!(end.action, "end");
        assert_eq!(
            entry(&change(
                Source::Plans,
                EventKind::Remove,
                Some(active(5)),
                None
            )),
            None
        );
    }

    #[test]
    fn ttl_deletions_are_dynamodbs() {
        let old = image(&[
            ("pk", s("01J")),
            ("sk", s("IMPORT")),
            ("state", s("completed")),
        ]);
        let mut removal = change(Source::Jobs, EventKind::Remove, Some(old), None);
        removal.by_dynamodb = true;
        let entry = entry(&removal).unwrap();
        assert_eq!(
            (
                entry.entity.as_str(),
                entry.action.as_str(),
                entry.actor_id.as_str()
            ),
            ("import:01J", "delete", "system:dynamodb:ttl")
        );
    }
}
