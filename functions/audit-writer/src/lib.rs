//! The audit writer: the DynamoDB Streams consumer of the Accounts, Payments, Plans, Users
//! and Jobs tables, and the only writer of the Audit table (see `shared::audit`).
//!
//! Per batch, each record becomes at most one entry ([`shared::audit::entry::entry`]: not
//! every item is an audited record, and a change of bookkeeping only is skipped), written
//! with a conditional `PutItem` keyed by the record's `eventID`. Writes run concurrently
//! ([`CONCURRENCY`]); the first record whose write failed is reported as the batch item
//! failure, so Lambda resumes there. Records after it that were written already are
//! rewritten as no-ops (the condition refuses them): a redelivered batch writes nothing
//! twice and no change is skipped. After its retries Lambda sends the batch's description
//! to the OnFailure queue (`StreamFailureQueue`).
//!
//! One JSON summary line per invocation: records, written, duplicates (already written:
//! a redelivery), skipped (not audited), the failed record if any.

use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use futures::stream::{self, StreamExt};
use shared::audit::{entry::entry, AuditStore, EventKind, Source, StreamChange};
use shared::config::{Config, TableName};
use shared::domain::Timestamp;
use shared::dynamo::table_of_stream_arn;
use shared::platform::InitError;

/// Entries written at once.
pub const CONCURRENCY: usize = 16;

/// The audited tables, by configured name.
#[derive(Debug, Clone)]
pub struct AuditedTables {
    pub accounts: TableName,
    pub payments: TableName,
    pub plans: TableName,
    pub users: TableName,
    pub jobs: TableName,
}

impl AuditedTables {
    pub fn new(config: &Config) -> Self {
        let tables = &config.tables;
        Self {
            accounts: tables.accounts.clone(),
            payments: tables.payments.clone(),
            plans: tables.plans.clone(),
            users: tables.users.clone(),
            jobs: tables.jobs.clone(),
        }
    }

    /// The audited table a stream ARN belongs to.
    pub fn source_of(&self, arn: &str) -> Option<Source> {
        let table = table_of_stream_arn(arn)?;
        [
            (&self.accounts, Source::Accounts),
            (&self.payments, Source::Payments),
            (&self.plans, Source::Plans),
            (&self.users, Source::Users),
            (&self.jobs, Source::Jobs),
        ]
        .into_iter()
        .find(|(name, _)| name.as_str() == table)
        .map(|(_, source)| source)
    }

    /// A stream record as the audit sees it; `None` for a table or event it does not know
    /// (a misconfigured mapping: logged and skipped, never retried forever).
    pub fn change_of(&self, record: EventRecord) -> Option<StreamChange> {
        let source = record
            .event_source_arn
            .as_deref()
            .and_then(|arn| self.source_of(arn))?;
        let kind = EventKind::parse(&record.event_name)?;
        let image = |item: shared::dynamo::Item| (!item.is_empty()).then_some(item);
        let seconds = record.change.approximate_creation_date_time.timestamp();
        Some(StreamChange {
            event_id: record.event_id,
            kind,
            source,
            old: image(record.change.old_image.into()),
            new: image(record.change.new_image.into()),
            approximate_at: (seconds > 0)
                .then(|| Timestamp::from_unix_seconds(seconds))
                .flatten(),
            by_dynamodb: record
                .user_identity
                .is_some_and(|who| who.principal_id == "dynamodb.amazonaws.com"),
        })
    }
}

/// Configuration and clients, built once per cold start.
pub struct App {
    pub tables: AuditedTables,
    pub store: AuditStore,
}

impl App {
    pub async fn from_env() -> Result<Self, InitError> {
        let lookup = &shared::config::env_lookup;
        let config = Config::from_lookup(lookup)?;
        let sdk = shared::clients::sdk_config().await;
        let dynamodb = shared::clients::dynamodb(&sdk);
        let store = AuditStore::from_lookup(dynamodb, lookup)?;
        Ok(Self {
            tables: AuditedTables::new(&config),
            store,
        })
    }
}

/// What one record came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Written,
    Duplicate,
    Skipped,
    Failed,
}

/// Handles one stream batch; answers the first record to resume from, if any.
pub async fn handle(app: &App, event: Event) -> DynamoDbEventResponse {
    let records: Vec<(String, Option<StreamChange>)> = event
        .records
        .into_iter()
        .map(|record| {
            let sequence = record.change.sequence_number.clone().unwrap_or_default();
            (sequence, app.tables.change_of(record))
        })
        .collect();
    let outcomes: Vec<Outcome> = stream::iter(&records)
        .map(|(_, change)| async move {
            let Some(entry) = change.as_ref().and_then(entry) else {
                return Outcome::Skipped;
            };
            match app.store.put(&entry).await {
                Ok(true) => Outcome::Written,
                Ok(false) => Outcome::Duplicate,
                Err(err) => {
                    tracing::warn!(event_id = %entry.id, error = %err, "writing an audit entry failed");
                    Outcome::Failed
                }
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let count = |wanted: Outcome| outcomes.iter().filter(|o| **o == wanted).count();
    let failed = outcomes
        .iter()
        .position(|o| *o == Outcome::Failed)
        .map(|i| records[i].0.clone());
    tracing::info!(
        records = records.len(),
        written = count(Outcome::Written),
        duplicates = count(Outcome::Duplicate),
        skipped = count(Outcome::Skipped),
        failed_sequence = failed.as_deref(),
        "audit batch"
    );
    let mut response = DynamoDbEventResponse::default();
    if let Some(sequence) = failed {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(sequence);
        response.batch_item_failures = vec![failure];
    }
    response
}
