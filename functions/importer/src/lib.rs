//! The imports queue's consumer: S3 reports a placement file uploaded (`ObjectCreated`,
//! through SQS), and its accounts are created exactly once per row.
//!
//! For each file:
//!
//! 1. Its import (the key is `imports/<id>.csv`) must be waiting or running; an ended
//!    import ignores the event (a re-uploaded file creates nothing).
//! 2. The size S3 reports must be the size declared at `POST /imports` (the upload URL
//!    signs it on AWS; moto does not check signatures, so it is checked here too).
//! 3. **Check pass**: the file is streamed once to check what makes it unreadable as a
//!    whole — empty, not UTF-8, a row with more or fewer columns than the header, not CSV —
//!    and the header against the mapping (unknown or missing required columns). Any of
//!    these fails the import with a clear `error` before a single account is written. The
//!    pass also counts the rows (`total_rows`, for progress).
//! 4. **Write pass**: the file is streamed again in chunks of [`CHUNK_ROWS`] rows. Each row
//!    is validated by `POST /accounts`'s own code and created through
//!    `AccountRepo::create_many` (each reference claimed in the same transaction, 50
//!    accounts to a transaction, [`BATCH_CONCURRENCY`] transactions at a time); in mode
//!    `upsert` a taken reference updates its account instead ([`upsert`]); rows neither
//!    created nor updated are recorded with line, column and reason; the chunk is counted once (see
//!    `shared::imports`). Chunks counted by an earlier delivery are skipped.
//! 5. The import ends `completed`, or `completed_with_errors` when a row failed or was a
//!    duplicate.
//!
//! A file is handled by one invocation, start to end (the function's 15-minute timeout is
//! hundreds of thousands of rows); fanning a large file out over several invocations by
//! byte range or row chunk is not built yet. An error that may pass (S3, DynamoDB) fails
//! the message, SQS delivers it again, and the import resumes at its first uncounted chunk.

pub mod csv_stream;
pub mod notification;
pub mod row;
pub mod upsert;

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use shared::accounts::{is_assignable, Account, AccountRepo, WriteConflict, MAX_CREATE_BATCH};
use shared::auth::users::UserRepo;
use shared::config::Config;
use shared::domain::{Id, Timestamp};
use shared::dynamo::DataError;
use shared::imports::keys::import_of_key;
use shared::imports::{
    Columns, Counts, Field, Import, ImportMode, ImportState, ImportStore, RowError, RowReason,
};

use crate::csv_stream::{Read, Row};
use crate::notification::{objects_created, ObjectCreated};

/// Rows per chunk: the unit of counting and of resuming.
pub const CHUNK_ROWS: usize = 500;
/// Rows of a chunk validated at once (an agent's check is a read, once per agent).
pub const ROW_CONCURRENCY: usize = 32;
/// Transactions of [`MAX_CREATE_BATCH`] accounts in flight at once.
pub const BATCH_CONCURRENCY: usize = 4;

pub type InitError = Box<dyn std::error::Error + Send + Sync>;

/// Configuration and clients, built once per cold start.
pub struct App {
    pub store: ImportStore,
    pub accounts: AccountRepo,
    pub users: UserRepo,
    pub s3: aws_sdk_s3::Client,
}

impl App {
    pub fn new(
        config: &Config,
        clients: &shared::clients::Clients,
        s3: aws_sdk_s3::Client,
    ) -> Self {
        let tables = &config.tables;
        Self {
            store: ImportStore::new(
                clients.dynamodb.clone(),
                tables.jobs.clone(),
                tables.accounts.clone(),
            ),
            accounts: AccountRepo::new(
                clients.dynamodb.clone(),
                tables.accounts.clone(),
                tables.activities.clone(),
            ),
            users: UserRepo::new(clients.dynamodb.clone(), tables.users.clone()),
            s3,
        }
    }

    pub async fn from_env() -> Result<Self, InitError> {
        let config = Config::from_env()?;
        let sdk = shared::clients::sdk_config().await;
        let clients = shared::clients::Clients::new(&sdk);
        clients.prime(&config.tables.accounts).await;
        Ok(Self::new(&config, &clients, aws_sdk_s3::Client::new(&sdk)))
    }
}

/// Handles one SQS batch; the messages that should be retried are returned.
pub async fn handle(app: &App, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        if let Err(err) = handle_record(app, &record).await {
            let id = record.message_id.clone().unwrap_or_default();
            tracing::warn!(message_id = %id, error = %err, "import message failed; SQS will retry it");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

async fn handle_record(app: &App, record: &SqsMessage) -> Result<(), DataError> {
    let body = record.body.as_deref().unwrap_or_default();
    let objects = match objects_created(body) {
        Ok(objects) => objects,
        Err(problem) => {
            tracing::error!(problem = %problem, "dropping a message that is not an S3 notification");
            return Ok(());
        }
    };
    for object in objects {
        import_object(app, &object).await?;
    }
    Ok(())
}

/// Imports one uploaded file (see the module docs for the steps).
pub async fn import_object(app: &App, object: &ObjectCreated) -> Result<(), DataError> {
    let Some(id) = import_of_key(&object.key) else {
        tracing::warn!(key = %object.key, "an object that is no import's file");
        return Ok(());
    };
    let Some(import) = app.store.get(id).await? else {
        tracing::warn!(import = %id, "a file for an unknown import");
        return Ok(());
    };
    if import.state.is_final() {
        tracing::info!(import = %id, state = %import.state, "the import already ended; the upload is ignored");
        return Ok(());
    }
    // The rows become accounts on behalf of the import's creator (the audit trail's actor).
    let actor = shared::audit::Actor::on_behalf(import.created_by, None, format!("import:{id}"));
    shared::audit::acting(actor, import_file(app, object, &import)).await
}

/// Checks and imports the file of `import` (not ended yet).
async fn import_file(app: &App, object: &ObjectCreated, import: &Import) -> Result<(), DataError> {
    let id = import.id;
    if let Some(size) = object.size.filter(|size| *size != import.size) {
        let error = format!(
            "the uploaded file has {size} bytes, but {} were declared",
            import.size
        );
        app.store.end(id, ImportState::Failed, Some(&error)).await?;
        return Ok(());
    }
    let (columns, total) = match check(app, object, import).await? {
        Ok(checked) => checked,
        Err(error) => {
            tracing::info!(import = %id, error = %error, "the file was refused");
            app.store.end(id, ImportState::Failed, Some(&error)).await?;
            return Ok(());
        }
    };
    if !app.store.start(id, total).await? {
        return Ok(());
    }
    let counts = write(app, object, import, &columns).await?;
    let state = if counts.failed + counts.duplicates > 0 {
        ImportState::CompletedWithErrors
    } else {
        ImportState::Completed
    };
    app.store.end(id, state, None).await?;
    Ok(())
}

/// Streams the object from S3 in batches of `batch` rows.
async fn open(
    app: &App,
    object: &ObjectCreated,
    batch: usize,
) -> Result<tokio::sync::mpsc::Receiver<Read>, DataError> {
    let output = app
        .s3
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await
        .map_err(|err| {
            DataError::unavailable(format!(
                "reading {} from S3: {}",
                object.key,
                aws_sdk_s3::error::DisplayErrorContext(&err)
            ))
        })?;
    Ok(csv_stream::read(output.body, batch))
}

/// The check pass: the header's columns and the number of rows, or why the file cannot be
/// imported at all (the outer error: S3 failed, try again).
async fn check(
    app: &App,
    object: &ObjectCreated,
    import: &Import,
) -> Result<Result<(Columns, u64), String>, DataError> {
    let mut reads = open(app, object, CHUNK_ROWS).await?;
    let mut columns = None;
    let mut total = 0u64;
    while let Some(read) = reads.recv().await {
        match read {
            Read::Header(header) => match csv_stream::columns(&header, &import.column_mapping) {
                Ok(resolved) => columns = Some(resolved),
                Err(error) => return Ok(Err(error)),
            },
            Read::Rows(rows) => total += rows.len() as u64,
            Read::Bad(error) => return Ok(Err(error)),
            Read::Failed(error) => return Err(DataError::unavailable(error)),
        }
    }
    Ok(columns
        .map(|columns| (columns, total))
        .ok_or_else(|| "the file is empty: no header row".to_owned()))
}

/// The write pass: every chunk not counted yet is written and counted; answers the
/// import's counts over every chunk.
async fn write(
    app: &App,
    object: &ObjectCreated,
    import: &Import,
    columns: &Columns,
) -> Result<Counts, DataError> {
    let counted = app.store.counted_chunks(import.id).await?;
    let agents = Agents::default();
    let mut reads = open(app, object, CHUNK_ROWS).await?;
    let mut chunk = 0u64;
    let mut total = Counts::default();
    while let Some(read) = reads.recv().await {
        let rows = match read {
            Read::Header(_) => continue,
            Read::Rows(rows) => rows,
            // The check pass read the same object: it changed or the stream broke.
            Read::Bad(error) | Read::Failed(error) => return Err(DataError::unavailable(error)),
        };
        if ImportStore::is_counted(&counted, chunk) {
            chunk += 1;
            continue;
        }
        let outcomes = write_rows(app, import, columns, &rows, &agents).await?;
        let mut counts = Counts {
            rows_read: rows.len() as u64,
            ..Counts::default()
        };
        let mut errors = Vec::new();
        for outcome in outcomes {
            match outcome {
                RowOutcome::Created => counts.created += 1,
                RowOutcome::Updated => counts.updated += 1,
                RowOutcome::Refused(error) => {
                    match error.reason {
                        RowReason::Duplicate => counts.duplicates += 1,
                        RowReason::Invalid => counts.failed += 1,
                    }
                    errors.push(error);
                }
            }
        }
        app.store.record_rows(import.id, &errors).await?;
        app.store.count_chunk(import.id, chunk, counts).await?;
        total.add(counts);
        chunk += 1;
    }
    // Chunks counted by earlier deliveries are in the stored counters.
    Ok(match app.store.get(import.id).await? {
        Some(stored) => stored.counts,
        None => total,
    })
}

/// Whether each agent named in the file may be assigned accounts, asked once per import.
#[derive(Default)]
struct Agents(Mutex<HashMap<Id, bool>>);

impl Agents {
    async fn assignable(&self, users: &UserRepo, agent: Id) -> Result<bool, DataError> {
        if let Some(known) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&agent) {
            return Ok(*known);
        }
        let ok = is_assignable(users, agent).await?;
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(agent, ok);
        Ok(ok)
    }
}

/// What became of one row.
enum RowOutcome {
    /// Its account was created (now, or by an earlier delivery of this row).
    Created,
    /// Mode `upsert`: the account with its reference has its values.
    Updated,
    Refused(RowError),
}

/// Writes one chunk's rows: each valid row's account is created (in transactions of
/// [`MAX_CREATE_BATCH`], [`BATCH_CONCURRENCY`] at once), and a row whose reference or id
/// is taken is settled one by one ([`settle_conflict`]). One outcome per row, in order.
async fn write_rows(
    app: &App,
    import: &Import,
    columns: &Columns,
    rows: &[Row],
    agents: &Agents,
) -> Result<Vec<RowOutcome>, DataError> {
    let now = Timestamp::now();
    let prepared: Vec<Result<Account, RowOutcome>> = stream::iter(rows)
        .map(|row| prepare_row(app, import, columns, row, now, agents))
        .buffered(ROW_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let accounts: Vec<&Account> = prepared.iter().filter_map(|p| p.as_ref().ok()).collect();
    let batches: Vec<Vec<Account>> = accounts
        .chunks(MAX_CREATE_BATCH)
        .map(|batch| batch.iter().map(|a| (*a).clone()).collect())
        .collect();
    let created: Vec<Result<(), WriteConflict>> = stream::iter(&batches)
        .map(|batch| app.accounts.create_many(batch))
        .buffered(BATCH_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    let mut created = created.into_iter();
    let mut outcomes = Vec::with_capacity(rows.len());
    for (row, prepared) in rows.iter().zip(prepared) {
        outcomes.push(match prepared {
            Err(refused) => refused,
            Ok(account) => match created.next() {
                Some(Ok(())) => RowOutcome::Created,
                _ => settle_conflict(app, import, columns, row, &account).await?,
            },
        });
    }
    Ok(outcomes)
}

/// A row refused at `field` for `reason`.
fn refused(
    columns: &Columns,
    row: &Row,
    field: Field,
    reason: RowReason,
    message: String,
) -> RowOutcome {
    RowOutcome::Refused(RowError {
        line: row.line,
        column: columns.column_name(field).unwrap_or_default().to_owned(),
        reason,
        message,
    })
}

/// The account one row creates, validated as `POST /accounts` validates (its agent too),
/// or the row's refusal.
async fn prepare_row(
    app: &App,
    import: &Import,
    columns: &Columns,
    row: &Row,
    now: Timestamp,
    agents: &Agents,
) -> Result<Result<Account, RowOutcome>, DataError> {
    let account = match row::account(columns, row, import.id, now) {
        Ok(account) => account,
        Err(error) => return Ok(Err(RowOutcome::Refused(error))),
    };
    if let Some(agent) = account.assigned_agent_id {
        if !agents.assignable(&app.users, agent).await? {
            return Ok(Err(refused(
                columns,
                row,
                Field::AssignedAgentId,
                RowReason::Invalid,
                "assigned_agent_id: is not an enabled user with role agent".to_owned(),
            )));
        }
    }
    Ok(Ok(account))
}

/// A row whose account was not created because its reference (or its id) is taken: it
/// was created by an earlier delivery of this row, or it is a duplicate, or in mode
/// `upsert` it updates the account that has its reference.
async fn settle_conflict(
    app: &App,
    import: &Import,
    columns: &Columns,
    row: &Row,
    account: &Account,
) -> Result<RowOutcome, DataError> {
    let owner = app.store.reference_owner(&account.reference).await?;
    if owner == Some(account.id) {
        return Ok(RowOutcome::Created);
    }
    let duplicate = |message: String| {
        refused(
            columns,
            row,
            Field::Reference,
            RowReason::Duplicate,
            message,
        )
    };
    match (import.mode, owner) {
        (ImportMode::Upsert, Some(owner)) => {
            match upsert::update(&app.accounts, owner, account, columns, import.created_by).await? {
                upsert::Upserted::Updated => Ok(RowOutcome::Updated),
                upsert::Upserted::Deleted => Ok(duplicate(format!(
                    "reference {} belongs to a deleted account",
                    account.reference
                ))),
            }
        }
        _ => Ok(duplicate(format!(
            "reference {} is already used by another account",
            account.reference
        ))),
    }
}
