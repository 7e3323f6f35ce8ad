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
//! 4. **Write pass**: the file is written in parts of [`App::part_rows`] rows (a whole
//!    number of chunks of [`CHUNK_ROWS`] rows; see [`part`]): this invocation writes the
//!    first, and the others go to the imports queue, so a large file is written by several
//!    invocations at once, each streaming its own byte range. Each row is validated by
//!    `POST /accounts`'s own code and created through `AccountRepo::create_many` (each
//!    reference claimed in the same transaction, 25 accounts to a transaction,
//!    [`BATCH_CONCURRENCY`] transactions at a time); in mode `upsert` a taken reference
//!    updates its account instead ([`upsert`]); rows neither created nor updated are
//!    recorded with line, column and reason; each chunk is counted once (see
//!    `shared::imports`). Chunks counted by an earlier delivery are skipped.
//! 5. Whoever counts the last rows ends the import: `completed`, or
//!    `completed_with_errors` when a row failed or was a duplicate.
//!
//! An error that may pass (S3, SQS, DynamoDB) fails the message, SQS delivers it again (in
//! seconds: `shared::queue::redelivery_delay`), and its part resumes at its first uncounted
//! chunk. A redelivered notification checks the file again and sends its parts again: a
//! part written twice writes nothing twice.

pub mod csv_stream;
pub mod notification;
pub mod part;
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

use crate::csv_stream::{Read, Row, Start};
use crate::notification::{objects_created, ObjectCreated};
use crate::part::{ImporterMessage, Part, RowStart};
use shared::queue::QueueSender;

/// Rows per chunk: the unit of counting and of resuming.
pub const CHUNK_ROWS: usize = 500;
/// Rows of a chunk validated at once (an agent's check is a read, once per agent).
pub const ROW_CONCURRENCY: usize = 32;
/// Transactions of [`MAX_CREATE_BATCH`] accounts in flight at once.
pub const BATCH_CONCURRENCY: usize = 4;

pub type InitError = Box<dyn std::error::Error + Send + Sync>;

/// Rows per part of a file by default ([`PART_ROWS_VARIABLE`]).
pub const DEFAULT_PART_ROWS: u64 = 10_000;
/// The environment variable that sets [`App::part_rows`] (template parameter
/// `ImportPartRows`).
pub const PART_ROWS_VARIABLE: &str = "IMPORT_PART_ROWS";
/// The environment variable naming the imports queue (parts are sent to it).
pub const QUEUE_VARIABLE: &str = "IMPORT_QUEUE_URL";

/// Configuration and clients, built once per cold start.
pub struct App {
    pub store: ImportStore,
    pub accounts: AccountRepo,
    pub users: UserRepo,
    pub s3: aws_sdk_s3::Client,
    /// The imports queue: parts of a large file are sent to it, and a failed message's
    /// visibility is shortened on it.
    pub queue: QueueSender,
    /// Rows per part: a multiple of [`CHUNK_ROWS`] (a setting is rounded up to one).
    pub part_rows: u64,
}

impl App {
    pub fn new(
        config: &Config,
        clients: &shared::clients::Clients,
        s3: aws_sdk_s3::Client,
        queue_url: String,
        part_rows: u64,
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
            queue: QueueSender::new(clients.sqs.clone(), queue_url),
            part_rows: part_rows.max(1).div_ceil(CHUNK_ROWS as u64) * CHUNK_ROWS as u64,
        }
    }

    pub async fn from_env() -> Result<Self, InitError> {
        let config = Config::from_env()?;
        let sdk = shared::clients::sdk_config().await;
        let clients = shared::clients::Clients::new(&sdk);
        clients
            .prime(&config.tables, |tables| &tables.accounts)
            .await;
        let queue_url =
            std::env::var(QUEUE_VARIABLE).map_err(|_| format!("{QUEUE_VARIABLE} is not set"))?;
        let part_rows = match std::env::var(PART_ROWS_VARIABLE) {
            Ok(value) => value.parse().map_err(|_| {
                format!("{PART_ROWS_VARIABLE} must be a whole number, not {value:?}")
            })?,
            Err(_) => DEFAULT_PART_ROWS,
        };
        Ok(Self::new(
            &config,
            &clients,
            aws_sdk_s3::Client::new(&sdk),
            queue_url,
            part_rows,
        ))
    }
}

/// Handles one SQS batch; the messages that should be retried are returned.
pub async fn handle(app: &App, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        if let Err(err) = handle_record(app, &record).await {
            let id = record.message_id.clone().unwrap_or_default();
            tracing::warn!(message_id = %id, error = %err, "import message failed; SQS will retry it");
            // Back in seconds, not after the queue's 90-minute visibility timeout.
            app.queue.redeliver_soon(&record).await;
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

async fn handle_record(app: &App, record: &SqsMessage) -> Result<(), DataError> {
    let body = record.body.as_deref().unwrap_or_default();
    if let Ok(ImporterMessage::Part(part)) = serde_json::from_str(body) {
        return import_part(app, &part).await;
    }
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

/// Writes one part of a file sent by the invocation that checked it.
pub async fn import_part(app: &App, part: &Part) -> Result<(), DataError> {
    let id = part.import_id;
    let Some(import) = app.store.get(id).await? else {
        tracing::warn!(import = %id, "a part of an unknown import");
        return Ok(());
    };
    if import.state != ImportState::Running {
        tracing::info!(import = %id, state = %import.state, "the import is not running; its part is ignored");
        return Ok(());
    }
    let actor = shared::audit::Actor::on_behalf(import.created_by, None, format!("import:{id}"));
    shared::audit::acting(actor, async {
        // The header was checked against this mapping before the part was sent.
        let columns = match csv_stream::columns(&part.header, &import.column_mapping) {
            Ok(columns) => columns,
            Err(error) => return Err(DataError::corrupt(error)),
        };
        write_part(app, &import, &columns, part).await?;
        finish_if_complete(app, id).await
    })
    .await
}

/// What the check pass learnt of a file that can be imported.
struct Checked {
    header: Vec<String>,
    columns: Columns,
    total_rows: u64,
    /// Where every part but the first begins.
    part_starts: Vec<RowStart>,
}

/// Checks the file of `import` (not ended yet), sends its parts but the first to the
/// queue, and writes the first.
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
    let checked = match check(app, object, import).await? {
        Ok(checked) => checked,
        Err(error) => {
            tracing::info!(import = %id, error = %error, "the file was refused");
            app.store.end(id, ImportState::Failed, Some(&error)).await?;
            return Ok(());
        }
    };
    if !app.store.start(id, checked.total_rows).await? {
        return Ok(());
    }
    let mut parts = part::parts_of(
        id,
        &object.bucket,
        &object.key,
        &checked.header,
        &checked.part_starts,
        app.part_rows / CHUNK_ROWS as u64,
    );
    let first = parts.remove(0);
    if !parts.is_empty() {
        tracing::info!(import = %id, parts = parts.len() + 1, "the file is written in parts");
        let messages: Vec<ImporterMessage> = parts.into_iter().map(ImporterMessage::Part).collect();
        app.queue.send(&messages).await?;
    }
    write_part(app, import, &checked.columns, &first).await?;
    finish_if_complete(app, id).await
}

/// Ends the import if every row of its file is counted (by whichever part counted last),
/// with the state its counts give.
async fn finish_if_complete(app: &App, id: Id) -> Result<(), DataError> {
    let Some(import) = app.store.get(id).await? else {
        return Ok(());
    };
    let complete = import.state == ImportState::Running
        && import
            .total_rows
            .is_some_and(|total| import.counts.rows_read >= total);
    if complete {
        let state = if import.counts.failed + import.counts.duplicates > 0 {
            ImportState::CompletedWithErrors
        } else {
            ImportState::Completed
        };
        app.store.end(id, state, None).await?;
    }
    Ok(())
}

/// Streams `range` of the object (all of it when `None`) from S3 in batches of `batch` rows.
async fn open(
    app: &App,
    bucket: &str,
    key: &str,
    range: Option<String>,
    start: Start,
    batch: usize,
) -> Result<tokio::sync::mpsc::Receiver<Read>, DataError> {
    let output = app
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_range(range)
        .send()
        .await
        .map_err(|err| {
            DataError::unavailable(format!(
                "reading {key} from S3: {}",
                aws_sdk_s3::error::DisplayErrorContext(&err)
            ))
        })?;
    Ok(csv_stream::read(output.body, start, batch))
}

/// The check pass: the header's columns, the number of rows and where the parts begin, or
/// why the file cannot be imported at all (the outer error: S3 failed, try again).
async fn check(
    app: &App,
    object: &ObjectCreated,
    import: &Import,
) -> Result<Result<Checked, String>, DataError> {
    let mut reads = open(
        app,
        &object.bucket,
        &object.key,
        None,
        Start::Header,
        CHUNK_ROWS,
    )
    .await?;
    let mut header = None;
    let mut total = 0u64;
    let mut part_starts = Vec::new();
    while let Some(read) = reads.recv().await {
        match read {
            Read::Header(cells) => match csv_stream::columns(&cells, &import.column_mapping) {
                Ok(columns) => header = Some((cells, columns)),
                Err(error) => return Ok(Err(error)),
            },
            Read::Rows(rows) => {
                for row in &rows {
                    if total > 0 && total.is_multiple_of(app.part_rows) {
                        part_starts.push(RowStart {
                            line: row.line,
                            byte: row.byte,
                        });
                    }
                    total += 1;
                }
            }
            Read::Bad(error) => return Ok(Err(error)),
            Read::Failed(error) => return Err(DataError::unavailable(error)),
        }
    }
    Ok(header
        .map(|(header, columns)| Checked {
            header,
            columns,
            total_rows: total,
            part_starts,
        })
        .ok_or_else(|| "the file is empty: no header row".to_owned()))
}

/// Writes one part: every chunk of it not counted yet is written and counted.
async fn write_part(
    app: &App,
    import: &Import,
    columns: &Columns,
    part: &Part,
) -> Result<(), DataError> {
    let counted = app.store.counted_chunks(import.id).await?;
    let agents = Agents::default();
    let mut reads = open(
        app,
        &part.bucket,
        &part.key,
        part.range(),
        part.start(),
        CHUNK_ROWS,
    )
    .await?;
    let mut chunk = part.first_chunk;
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
        chunk += 1;
    }
    Ok(())
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
    // Settling reads who holds a reference, so conflicts (every row of a chunk redelivered
    // after a timeout) are settled concurrently; in mode `upsert` settling also updates the
    // holder, and two rows of one reference must update it in file order: one at a time.
    let settling = match import.mode {
        ImportMode::Create => ROW_CONCURRENCY,
        ImportMode::Upsert => 1,
    };
    stream::iter(rows.iter().zip(prepared))
        .map(|(row, prepared)| {
            let written = prepared.as_ref().ok().map(|_| created.next());
            async move {
                match (prepared, written) {
                    (Err(refused), _) => Ok(refused),
                    (Ok(_), Some(Some(Ok(())))) => Ok(RowOutcome::Created),
                    (Ok(account), _) => settle_conflict(app, import, columns, row, &account).await,
                }
            }
        })
        .buffered(settling)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
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
