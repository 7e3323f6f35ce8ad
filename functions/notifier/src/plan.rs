//! From stream records to messages, and who may receive each: pure functions, so every rule
//! is tested without DynamoDB or a socket.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use aws_lambda_events::dynamodb::EventRecord;
use serde_json::{json, Value};
use shared::activities::{Activity, CALL_LOG_SK};
use shared::auth::Role;
use shared::bulk::{JobRecord, JOB_SK};
use shared::config::TableName;
use shared::dashboard::{Change, Item, Scope, Tracked};
use shared::domain::Id;
use shared::dynamo::attributes::text;
use shared::imports::keys::IMPORT_SK;
use shared::imports::Import;
use shared::payments::plans::Plan;
use shared::payments::Payment;
use shared::realtime::{Subscription, Topic};

/// The table a stream record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Accounts,
    Payments,
    Activities,
    Jobs,
    Plans,
}

impl Source {
    /// The tables whose records move the dashboard aggregates.
    pub fn tracked(self) -> Option<Tracked> {
        match self {
            Source::Accounts => Some(Tracked::Accounts),
            Source::Payments => Some(Tracked::Payments),
            Source::Activities => Some(Tracked::Activities),
            Source::Plans => Some(Tracked::Plans),
            Source::Jobs => None,
        }
    }
}

/// The tables the notifier's event source mappings read, by configured name.
#[derive(Debug, Clone)]
pub struct StreamTables {
    pub accounts: TableName,
    pub payments: TableName,
    pub activities: TableName,
    pub jobs: TableName,
    pub plans: TableName,
}

/// The table name in a stream ARN (shared with the audit writer).
pub use shared::dynamo::table_of_stream_arn as table_of_arn;

impl StreamTables {
    pub fn source_of(&self, arn: &str) -> Option<Source> {
        let table = table_of_arn(arn)?;
        [
            (&self.accounts, Source::Accounts),
            (&self.payments, Source::Payments),
            (&self.activities, Source::Activities),
            (&self.jobs, Source::Jobs),
            (&self.plans, Source::Plans),
        ]
        .into_iter()
        .find(|(name, _)| name.as_str() == table)
        .map(|(_, source)| source)
    }
}

/// One stream record, classified, its images as SDK items.
#[derive(Debug, Clone)]
pub struct Record {
    /// What `batchItemFailures` names.
    pub sequence: String,
    pub event_id: String,
    /// `INSERT`, `MODIFY` or `REMOVE`.
    pub event_name: String,
    /// `None`: a table this function does not know (a misconfigured mapping); ignored.
    pub source: Option<Source>,
    pub old: Option<Item>,
    pub new: Option<Item>,
}

fn image(item: serde_dynamo::Item) -> Option<Item> {
    let item: Item = item.into();
    (!item.is_empty()).then_some(item)
}

impl Record {
    pub fn from_event(tables: &StreamTables, record: EventRecord) -> Self {
        let source = record
            .event_source_arn
            .as_deref()
            .and_then(|arn| tables.source_of(arn));
        Self {
            sequence: record.change.sequence_number.unwrap_or_default(),
            event_id: record.event_id,
            event_name: record.event_name,
            source,
            old: image(record.change.old_image),
            new: image(record.change.new_image),
        }
    }

    fn is(&self, name: &str) -> bool {
        self.event_name == name
    }
}

/// The changes of the records that feed the aggregates (applied in one call).
pub fn changes(records: &[Record]) -> Vec<Change> {
    records
        .iter()
        .filter_map(|r| {
            Some(Change {
                event_id: r.event_id.clone(),
                table: r.source?.tracked()?,
                old: r.old.clone(),
                new: r.new.clone(),
            })
        })
        .collect()
}

/// Who, among a message's subscribers, receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// An account's event: an agent receives it only while the account is assigned to it;
    /// every other role receives it.
    Account(Id),
    /// Every subscriber (`job:{id}` is open to admins and managers only, at subscribe).
    Everyone,
    /// `dashboard.changed`: other roles receive every scope that moved; an agent only its
    /// own scope, and only if it moved.
    Dashboard(BTreeSet<Scope>),
}

/// Spacing of a topic's messages (job progress and dashboard changes, which can be many per
/// second and where only the latest state matters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pace {
    pub topic: Topic,
    /// A final state: sent at once, never held back.
    pub urgent: bool,
}

/// One message to push, before it is addressed to connections.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The index of the record it comes from: reported as failed if it cannot be pushed.
    pub record: usize,
    pub kind: &'static str,
    /// For client de-duplication: a redelivered record pushes the same id again.
    pub id: String,
    pub data: Value,
    pub topics: Vec<Topic>,
    pub audience: Audience,
    pub pace: Option<Pace>,
}

fn scope_name(scope: &Scope) -> String {
    match scope {
        Scope::All => "all".to_owned(),
        Scope::Agent(id) => format!("agent:{id}"),
    }
}

/// Parses an image; a record that does not parse cannot become one on a retry, so it is
/// logged and skipped rather than failed.
fn parse<T>(
    record: &Record,
    item: &Item,
    from: fn(Item) -> Result<T, shared::dynamo::DataError>,
) -> Option<T> {
    match from(item.clone()) {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::warn!(event_id = %record.event_id, error = %err, "skipping a stream image that does not parse");
            None
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Option<Value> {
    serde_json::to_value(value).ok()
}

fn payment_message(index: usize, record: &Record) -> Option<Outgoing> {
    let new = record.new.as_ref()?;
    let (kind, data, payment) = if record.is("INSERT") {
        text(new, "status")?;
        let payment = parse(record, new, Payment::from_item)?;
        ("payment.recorded", to_json(&payment)?, payment)
    } else if record.is("MODIFY") {
        let from = text(record.old.as_ref()?, "status")?;
        let to = text(new, "status")?;
        if from == to {
            return None;
        }
        let payment = parse(record, new, Payment::from_item)?;
        let data = json!({"payment": to_json(&payment)?, "from": from, "to": to});
        ("payment.status_changed", data, payment)
    } else {
        return None;
    };
    Some(Outgoing {
        record: index,
        kind,
        id: record.event_id.clone(),
        data,
        topics: vec![Topic::Payments, Topic::Account(payment.account_id)],
        audience: Audience::Account(payment.account_id),
        pace: None,
    })
}

fn activity_message(index: usize, record: &Record) -> Option<Outgoing> {
    if !record.is("INSERT") {
        return None;
    }
    let new = record.new.as_ref()?;
    // The call-log counter item shares the table; it is not an activity.
    if text(new, "sk") == Some(CALL_LOG_SK) {
        return None;
    }
    let activity = parse(record, new, Activity::from_item)?;
    Some(Outgoing {
        record: index,
        kind: "activity.logged",
        id: record.event_id.clone(),
        data: to_json(&activity)?,
        topics: vec![Topic::Activities, Topic::Account(activity.account_id)],
        audience: Audience::Account(activity.account_id),
        pace: None,
    })
}

/// A `plan.changed` message of a Plans record (the plan as `GET /accounts/{id}/plans` shows
/// it) to the account's topic: a plan made, a payment applied to it, an installment
/// missed, the plan ended (the ended plan's INSERT; the REMOVE of its `ACTIVE` item that
/// comes with it says nothing more).
fn plan_message(index: usize, record: &Record) -> Option<Outgoing> {
    if !(record.is("INSERT") || record.is("MODIFY")) {
        return None;
    }
    let plan = parse(record, record.new.as_ref()?, Plan::from_item)?;
    Some(Outgoing {
        record: index,
        kind: "plan.changed",
        id: record.event_id.clone(),
        data: to_json(&plan.view())?,
        topics: vec![Topic::Account(plan.account_id)],
        audience: Audience::Account(plan.account_id),
        pace: None,
    })
}

/// A progress message of the Jobs table's record: a bulk job's (`job.progress`, the body of
/// `GET /bulk/jobs/{id}`) or an import's (`import.progress`, the body of `GET /imports/{id}`);
/// `None` for the table's other items (chunks, failures, frozen pages, row errors).
fn progress_message(index: usize, record: &Record) -> Option<Outgoing> {
    if !(record.is("INSERT") || record.is("MODIFY")) {
        return None;
    }
    let new = record.new.as_ref()?;
    let (kind, topic, data, final_state) = match text(new, "sk")? {
        JOB_SK => {
            let job = parse(record, new, JobRecord::from_item)?;
            let data = to_json(&job.to_job().ok()?)?;
            (
                "job.progress",
                Topic::Job(job.id),
                data,
                job.state.is_final(),
            )
        }
        IMPORT_SK => {
            let import = parse(record, new, Import::from_item)?;
            let data = to_json(&import)?;
            let final_state = import.state.is_final();
            (
                "import.progress",
                Topic::Import(import.id),
                data,
                final_state,
            )
        }
        _ => return None,
    };
    Some(Outgoing {
        record: index,
        kind,
        id: record.event_id.clone(),
        data,
        topics: vec![topic.clone()],
        audience: Audience::Everyone,
        pace: Some(Pace {
            topic,
            urgent: final_state,
        }),
    })
}

/// The messages of a batch, in record order: one per payment or activity event, the latest
/// image of each job and import (earlier ones in the batch are superseded), and one
/// `dashboard.changed` when `scopes` (the aggregates' scopes that moved) is not empty.
pub fn plan(records: &[Record], scopes: &BTreeSet<Scope>) -> Vec<Outgoing> {
    let mut messages: Vec<Outgoing> = Vec::new();
    let mut progress: HashMap<Topic, usize> = HashMap::new();
    for (index, record) in records.iter().enumerate() {
        match record.source {
            Some(Source::Payments) => messages.extend(payment_message(index, record)),
            Some(Source::Activities) => messages.extend(activity_message(index, record)),
            Some(Source::Plans) => messages.extend(plan_message(index, record)),
            Some(Source::Jobs) => {
                if let Some(message) = progress_message(index, record) {
                    match progress.get(&message.topics[0]) {
                        Some(&at) => messages[at] = message,
                        None => {
                            progress.insert(message.topics[0].clone(), messages.len());
                            messages.push(message);
                        }
                    }
                }
            }
            Some(Source::Accounts) | None => {}
        }
    }
    let last_tracked = records
        .iter()
        .enumerate()
        .rev()
        .find(|(_, r)| r.source.and_then(Source::tracked).is_some());
    if let (false, Some((index, record))) = (scopes.is_empty(), last_tracked) {
        messages.push(Outgoing {
            record: index,
            kind: "dashboard.changed",
            // Derived from the batch's last record, so a redelivered batch repeats it, yet
            // distinct from that record's own message id.
            id: format!("dashboard:{}", record.event_id),
            data: json!({"scopes": scopes.iter().map(scope_name).collect::<Vec<_>>()}),
            topics: vec![Topic::Dashboard],
            audience: Audience::Dashboard(scopes.clone()),
            pace: Some(Pace {
                topic: Topic::Dashboard,
                urgent: false,
            }),
        });
    }
    messages
}

/// Accounts' assigned agents, as read for this invocation (`None`: unassigned or gone).
pub type Assignments = HashMap<Id, Option<Id>>;

impl Outgoing {
    /// The message as sent to every recipient that gets the common form.
    pub fn body(&self) -> Arc<str> {
        json!({"type": self.kind, "id": self.id, "data": self.data})
            .to_string()
            .into()
    }

    /// Whether a subscriber's role needs the account's assignment to decide.
    pub fn needs_assignment(&self, subscription: &Subscription) -> Option<Id> {
        match self.audience {
            Audience::Account(account) if subscription.role == Role::Agent => Some(account),
            _ => None,
        }
    }

    /// What `subscription` receives of this message (`common` is [`Outgoing::body`]), or
    /// `None` if it is not for it.
    pub fn body_for(
        &self,
        subscription: &Subscription,
        assignments: &Assignments,
        common: &Arc<str>,
    ) -> Option<Arc<str>> {
        let agent = subscription.role == Role::Agent;
        match &self.audience {
            Audience::Everyone => Some(common.clone()),
            Audience::Account(account) => {
                let allowed = !agent
                    || assignments.get(account).copied().flatten() == Some(subscription.user_id);
                allowed.then(|| common.clone())
            }
            Audience::Dashboard(scopes) if agent => {
                let own = Scope::Agent(subscription.user_id);
                scopes.contains(&own).then(|| {
                    json!({"type": self.kind, "id": self.id, "data": {"scopes": [scope_name(&own)]}})
                        .to_string()
                        .into()
                })
            }
            Audience::Dashboard(_) => Some(common.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;
    use shared::dynamo::attributes::{n, s};
    use shared::payments::AGENT_ATTRIBUTE;

    fn tables() -> StreamTables {
        StreamTables {
            accounts: TableName::new("p-AccountsTable"),
            payments: TableName::new("p-PaymentsTable"),
            activities: TableName::new("p-ActivitiesTable"),
            jobs: TableName::new("p-JobsTable"),
            plans: TableName::new("p-PlansTable"),
        }
    }

    fn payment_item(status: &str, account: Id) -> Item {
        let now = shared::domain::Timestamp::now();
        let payment: Payment = serde_json::from_value(json!({
            "id": Id::generate(), "account_id": account, "amount": 2500, "currency": "USD",
            "method": "card", "status": status, "reference": null, "received_at": now,
            "created_by": Id::generate(), "version": 1, "created_at": now, "updated_at": now
        }))
        .unwrap();
        let mut item = payment.to_item().unwrap();
        item.insert(AGENT_ATTRIBUTE.to_owned(), s(Id::generate().to_string()));
        item
    }

    fn record(source: Source, name: &str, old: Option<Item>, new: Option<Item>) -> Record {
        Record {
            sequence: format!("{}", Id::generate().timestamp_ms()),
            event_id: Id::generate().to_string(),
            event_name: name.to_owned(),
            source: Some(source),
            old,
            new,
        }
    }

    fn subscription(role: Role, user: Id, topic: Topic) -> Subscription {
        Subscription {
            pk: format!("TOPIC#{topic}"),
            sk: "c=".into(),
            connection_id: "c=".into(),
            topic,
            user_id: user,
            role,
            expires_at: i64::MAX,
            token_version: Some(0),
        }
    }

    #[test]
    fn the_table_comes_from_the_stream_arn() {
        let arn = "arn:aws:dynamodb:ddblocal:000000000000:table/p-PaymentsTable/stream/2026-11-25T19:17:21.000";
        assert_eq!(table_of_arn(arn), Some("p-PaymentsTable"));
        assert_eq!(tables().source_of(arn), Some(Source::Payments));
        assert_eq!(
            tables().source_of("arn:aws:dynamodb:us-east-1:1:table/p-JobsTable"),
            Some(Source::Jobs)
        );
        assert_eq!(
            tables().source_of("arn:aws:dynamodb:us-east-1:1:table/Other/stream/x"),
            None
        );
        assert_eq!(table_of_arn("arn:aws:sqs:us-east-1:1:queue"), None);
    }

    #[test]
    fn the_sample_stream_event_becomes_a_payment_recorded_message() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/dynamodb-stream-payment.json"
        );
        let event: aws_lambda_events::dynamodb::Event =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let tables = StreamTables {
            payments: TableName::new("collectpro-dev-PaymentsTable"),
            ..tables()
        };
        let records: Vec<Record> = event
            .records
            .into_iter()
            .map(|r| Record::from_event(&tables, r))
            .collect();
        assert_eq!(records[0].source, Some(Source::Payments));
        assert_eq!(changes(&records).len(), 1);
        let messages = plan(&records, &BTreeSet::new());
        assert_eq!(messages.len(), 1);
        let message = &messages[0];
        assert_eq!(message.kind, "payment.recorded");
        assert_eq!(message.id, records[0].event_id);
        assert_eq!(message.data["amount"], 2500);
        let account: Id = serde_json::from_value(message.data["account_id"].clone()).unwrap();
        assert_eq!(
            message.topics,
            vec![Topic::Payments, Topic::Account(account)]
        );
        let body: Value = serde_json::from_str(&message.body()).unwrap();
        assert_eq!(body["type"], "payment.recorded");
        assert_eq!(body["id"], records[0].event_id.as_str());
        assert!(body["data"].get(AGENT_ATTRIBUTE).is_none(), "{body}");
    }

    #[test]
    fn status_changes_are_messages_and_other_updates_are_not() {
        let account = Id::generate();
        let pending = payment_item("pending", account);
        let mut completed = pending.clone();
        completed.insert("status".into(), s("completed"));
        let mut touched = pending.clone();
        touched.insert("version".into(), AttributeValue::N("2".into()));
        let records = [
            record(
                Source::Payments,
                "MODIFY",
                Some(pending.clone()),
                Some(completed),
            ),
            record(
                Source::Payments,
                "MODIFY",
                Some(pending.clone()),
                Some(touched),
            ),
            record(Source::Payments, "REMOVE", Some(pending), None),
        ];
        let messages = plan(&records, &BTreeSet::new());
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].kind, "payment.status_changed");
        assert_eq!(messages[0].data["from"], "pending");
        assert_eq!(messages[0].data["to"], "completed");
        assert_eq!(messages[0].data["payment"]["status"], "completed");
    }

    #[test]
    fn activities_but_not_the_call_log_nor_unparsable_items() {
        let account = Id::generate();
        let activity = shared::activities::status_change(
            account,
            shared::accounts::AccountStatus::Active,
            shared::accounts::AccountStatus::Disputed,
            Id::generate(),
            shared::domain::Timestamp::now(),
        );
        let calls: Item = [
            ("pk".to_owned(), s(account.to_string())),
            ("sk".to_owned(), s(CALL_LOG_SK)),
        ]
        .into();
        let junk: Item = [("pk".to_owned(), s("x")), ("sk".to_owned(), s("y"))].into();
        let records = [
            record(
                Source::Activities,
                "INSERT",
                None,
                Some(activity.to_item().unwrap()),
            ),
            record(Source::Activities, "INSERT", None, Some(calls)),
            record(Source::Activities, "INSERT", None, Some(junk)),
        ];
        let messages = plan(&records, &BTreeSet::new());
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].kind, "activity.logged");
        assert_eq!(
            messages[0].topics,
            vec![Topic::Activities, Topic::Account(account)]
        );
    }

    fn job_item(id: Id, state: &str, processed: u64) -> Item {
        let now = shared::domain::Timestamp::now().to_string();
        [
            ("pk", s(id.to_string())),
            ("sk", s(JOB_SK)),
            ("id", s(id.to_string())),
            ("state", s(state)),
            ("total", AttributeValue::N("10".into())),
            ("processed", AttributeValue::N(processed.to_string())),
            ("created_by", s(Id::generate().to_string())),
            ("created_at", s(&now)),
            ("source", s("ids")),
            ("spec", s(r#"{"changes":{"status":"disputed"}}"#)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    #[test]
    fn only_the_latest_image_of_a_job_in_a_batch_is_sent() {
        let (a, b) = (Id::generate(), Id::generate());
        let mut marker = job_item(a, "running", 0);
        marker.insert("sk".into(), s("CHUNK#1"));
        let records = [
            record(Source::Jobs, "INSERT", None, Some(job_item(a, "queued", 0))),
            record(
                Source::Jobs,
                "MODIFY",
                None,
                Some(job_item(b, "running", 3)),
            ),
            record(
                Source::Jobs,
                "MODIFY",
                None,
                Some(job_item(a, "running", 4)),
            ),
            record(Source::Jobs, "INSERT", None, Some(marker)),
            record(
                Source::Jobs,
                "MODIFY",
                None,
                Some(job_item(a, "completed", 10)),
            ),
        ];
        let messages = plan(&records, &BTreeSet::new());
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert_eq!(messages[0].topics, vec![Topic::Job(a)]);
        assert_eq!(messages[0].record, 4);
        assert_eq!(messages[0].data["state"], "completed");
        assert_eq!(messages[0].data["processed"], 10);
        assert_eq!(
            messages[0].pace,
            Some(Pace {
                topic: Topic::Job(a),
                urgent: true
            })
        );
        assert_eq!(messages[1].data["processed"], 3);
        assert!(!messages[1].pace.as_ref().unwrap().urgent);
    }

    fn import_item(id: Id, state: &str, rows_read: u64) -> Item {
        [
            ("pk", s(id.to_string())),
            ("sk", s(IMPORT_SK)),
            ("id", s(id.to_string())),
            ("state", s(state)),
            ("size", n(100)),
            ("file_name", s("placements.csv")),
            ("rows_read", n(rows_read)),
            ("created", n(rows_read)),
            ("created_by", s(Id::generate().to_string())),
            ("created_at", s("2026-12-01T10:00:00Z")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    #[test]
    fn an_import_reports_its_latest_progress_and_its_row_errors_report_nothing() {
        let (import, job) = (Id::generate(), Id::generate());
        let mut row_error = import_item(import, "running", 0);
        row_error.insert("sk".into(), s("ROW#000000000002"));
        let records = [
            record(
                Source::Jobs,
                "MODIFY",
                None,
                Some(import_item(import, "running", 500)),
            ),
            record(Source::Jobs, "INSERT", None, Some(row_error)),
            record(
                Source::Jobs,
                "MODIFY",
                None,
                Some(job_item(job, "running", 1)),
            ),
            record(
                Source::Jobs,
                "MODIFY",
                None,
                Some(import_item(import, "running", 1000)),
            ),
        ];
        let messages = plan(&records, &BTreeSet::new());
        assert_eq!(messages.len(), 2, "{messages:?}");
        let progress = &messages[0];
        assert_eq!(progress.kind, "import.progress");
        assert_eq!(progress.topics, vec![Topic::Import(import)]);
        assert_eq!(progress.record, 3);
        assert_eq!(progress.data["rows_read"], 1000);
        assert_eq!(progress.data["state"], "running");
        assert_eq!(
            progress.pace,
            Some(Pace {
                topic: Topic::Import(import),
                urgent: false
            })
        );
        assert_eq!(messages[1].topics, vec![Topic::Job(job)]);

        let done = [record(
            Source::Jobs,
            "MODIFY",
            None,
            Some(import_item(import, "completed", 1000)),
        )];
        let messages = plan(&done, &BTreeSet::new());
        assert!(messages[0].pace.as_ref().unwrap().urgent);
    }

    #[test]
    fn agents_receive_their_own_accounts_and_their_own_dashboard_scope() {
        let (agent, other) = (Id::generate(), Id::generate());
        let account = Id::generate();
        let records = [record(
            Source::Payments,
            "INSERT",
            None,
            Some(payment_item("completed", account)),
        )];
        let scopes: BTreeSet<Scope> = [Scope::All, Scope::Agent(agent), Scope::Agent(other)].into();
        let messages = plan(&records, &scopes);
        assert_eq!(messages.len(), 2);
        let (payment, dashboard) = (&messages[0], &messages[1]);
        let assignments: Assignments = [(account, Some(agent))].into();

        let as_agent = subscription(Role::Agent, agent, Topic::Payments);
        let as_other = subscription(Role::Agent, Id::generate(), Topic::Payments);
        let as_viewer = subscription(Role::Viewer, Id::generate(), Topic::Payments);
        let common = payment.body();
        assert_eq!(payment.needs_assignment(&as_agent), Some(account));
        assert_eq!(payment.needs_assignment(&as_viewer), None);
        assert!(payment.body_for(&as_agent, &assignments, &common).is_some());
        assert!(payment.body_for(&as_other, &assignments, &common).is_none());
        assert!(payment
            .body_for(&as_viewer, &assignments, &common)
            .is_some());
        // An account not looked up (or unassigned) goes to no agent.
        assert!(payment
            .body_for(&as_agent, &Assignments::new(), &common)
            .is_none());

        assert_eq!(dashboard.kind, "dashboard.changed");
        assert_eq!(dashboard.id, format!("dashboard:{}", records[0].event_id));
        let common = dashboard.body();
        let full: Value = serde_json::from_str(&common).unwrap();
        assert_eq!(full["data"]["scopes"].as_array().unwrap().len(), 3);
        assert_eq!(full["data"]["scopes"][0], "all");
        let own = dashboard
            .body_for(&as_agent, &assignments, &common)
            .unwrap();
        let own: Value = serde_json::from_str(&own).unwrap();
        assert_eq!(own["data"]["scopes"], json!([format!("agent:{agent}")]));
        assert!(dashboard
            .body_for(&as_other, &assignments, &common)
            .is_none());
        assert_eq!(
            dashboard.body_for(&as_viewer, &assignments, &common),
            Some(common)
        );
    }

    #[test]
    fn plan_records_reach_the_account_topic_and_count_in_the_aggregates() {
        use shared::domain::{MinorUnits, Timestamp};
        use shared::payments::plans::schedule::{build, Split};
        use shared::payments::plans::{Frequency, PlanStatus};
        let account = Id::generate();
        let now = Timestamp::now();
        let active = Plan {
            id: Id::generate(),
            account_id: account,
            status: PlanStatus::Active,
            frequency: Frequency::Weekly,
            currency: "USD".parse().unwrap(),
            total_amount: MinorUnits(200),
            installments: build(
                Frequency::Weekly,
                time::macros::date!(2027 - 01 - 15),
                MinorUnits(200),
                Split::Count(2),
            )
            .unwrap(),
            receipts: Vec::new(),
            created_by: Id::generate(),
            version: 1,
            created_at: now,
            updated_at: now,
            ended_at: None,
        };
        let ended = Plan {
            status: PlanStatus::Cancelled,
            version: 2,
            ended_at: Some(now),
            ..active.clone()
        };
        let records = vec![
            record(
                Source::Plans,
                "REMOVE",
                Some(active.to_item().unwrap()),
                None,
            ),
            record(
                Source::Plans,
                "INSERT",
                None,
                Some(ended.to_item().unwrap()),
            ),
        ];
        let messages = plan(&records, &BTreeSet::new());
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].kind, "plan.changed");
        assert_eq!(messages[0].topics, vec![Topic::Account(account)]);
        assert_eq!(messages[0].data["status"], "cancelled");
        assert_eq!(changes(&records).len(), 2);
        assert_eq!(
            tables().source_of("arn:aws:dynamodb:us-east-1:1:table/p-PlansTable/stream/x"),
            Some(Source::Plans)
        );
    }
}
