//! `make bench-import ROWS=100000`: in one run on the same DynamoDB Local, a placement import
//! of ROWS rows from `POST /imports` to its final state through the whole local stack
//! (`POST /imports` behind the local gateway, the file PUT to moto's S3 with the presigned
//! URL, moto's bucket notification into the imports queue, the gateway's SQS event source
//! driving the real `importer` binary; `GET /imports/{id}` polled every 100 ms) against a raw
//! `BatchWriteItem` loop writing the same accounts straight to a copy of the Accounts table on
//! the same DynamoDB Local. Prints figures and the ratio; never fails on a timer.
//!
//! The baseline writes, for each of the same ROWS accounts (the same values as the file's
//! rows, built with `POST /accounts`' own `new_account`; references `BENCH-<run>-R<i>` where
//! the file has `BENCH-<run>-I<i>`, ids of their own), what an account is in the Accounts
//! table: the account item (`Account::to_stamped_item`) and its reference claim (`pk` =
//! `reference_pk`, `account_id`); 25 items to a request, [`RAW_IN_FLIGHT`] requests in
//! flight, `UnprocessedItems` retried. The items are built before the clock starts.
//!
//! It writes them into a copy of the template's Accounts table made at start (the same key
//! schema, GSIs, stream and TTL settings, read back with `DescribeTable`) that no stream
//! consumer reads. On the real table, notifier and audit-writer consume every record the
//! loop writes and, sharing one DynamoDB Local, slow it several-fold (about 60 against about
//! 400 items/s in one measurement on the shared 2-core machine), so the baseline would
//! measure the consumers' backlog rather than DynamoDB; and waiting for them to drain
//! 2 x ROWS records between the phases would take longer than the benchmark itself.
//!
//! A third phase measures the floor under the import: the same accounts created in the copy
//! by `AccountRepo::create_many` alone (the importer's own conditional transactions, as many
//! in flight, nothing else). Creating an account and claiming its reference must be atomic
//! (a crash between the two would leave a claim without its account, or two accounts with one
//! reference), and `BatchWriteItem` has no conditions; DynamoDB Local runs transactions one at
//! a time (`docs/payments.md`), so on this machine the floor itself is several times the
//! `BatchWriteItem` loop. The run prints the import against both.
//!
//! The order is fixed: a warm-up of raw writes into the copy (DynamoDB Local's JIT), the
//! baseline, the transactional floor, then the import; before each timed phase the run waits (untimed) until no
//! function has been busy for 3 s. For the same reason as the copy, the stack's DynamoDB
//! Streams mappings are disabled while the import is timed
//! (`RunningGateway::enable_stream_mappings`, as `UpdateEventSourceMapping --no-enabled`):
//! on AWS the notifier, the audit writer and the dashboard aggregates run on the stream, not
//! on the table's write path, so both phases measure the writes alone. They are enabled again
//! once the import has ended, and the time they take to drain its records is printed, not
//! timed. The import's time runs from `POST /imports` to the final state and includes the
//! upload (printed apart) and the importer's cold start.
//!
//! Run under `infra/stack.sh` after `cargo build --profile bench-fast --workspace --bins`,
//! with `COLLECTPRO_BIN_DIR` naming that build's binaries (the Makefile target does both).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeValue, BillingMode, GlobalSecondaryIndex, LocalSecondaryIndex, PutRequest,
    StreamSpecification, TimeToLiveSpecification, WriteRequest,
};
use e2e::{Stack, StackOptions};
use futures::stream::{self, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::accounts::keys::reference_pk;
use shared::accounts::{Account, AccountRepo, MAX_CREATE_BATCH};
use shared::audit::{acting, Actor};
use shared::clients::Clients;
use shared::config::{Config, TableName};
use shared::domain::{Id, MinorUnits, Timestamp};

/// Items per `BatchWriteItem` request (DynamoDB's maximum).
const BATCH_ITEMS: usize = 25;
/// `BatchWriteItem` requests in flight in the raw baseline.
const RAW_IN_FLIGHT: usize = 8;
/// Accounts written raw before anything is timed, at most.
const WARM_UP_ACCOUNTS: usize = 2_000;
/// How often the import is polled.
const POLL: Duration = Duration::from_millis(100);
/// How often its progress is printed while it runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// No function busy for this long: the stream consumers have drained.
const QUIET: Duration = Duration::from_secs(3);
/// The longest wait for the stream consumers to drain before going on anyway.
const SETTLE_BOUND: Duration = Duration::from_secs(3600);
/// The importer's logical id in the template.
const IMPORTER: &str = "ImporterFunction";

/// The placement file's header: the column set of `tests/tests/imports_e2e.rs` (`Acct No`
/// is mapped to `reference` at `POST /imports`).
const HEADER: &str = "Acct No,debtor_name,debtor_email,debtor_phone,debtor_timezone,currency,original_balance,due_date,tags";

const FIRST: [&str; 16] = [
    "Ann", "Bob", "Carla", "Dmitri", "Elena", "Farid", "Grace", "Hiroshi", "Ines", "Jamal", "Kate",
    "Luis", "Maria", "Noah", "Olga", "Priya",
];
const LAST: [&str; 16] = [
    "Smith", "O'Brien", "Garcia", "Nguyen", "Muller", "Kowalski", "Rossi", "Tanaka", "Silva",
    "Okafor", "Johnson", "Dubois", "Novak", "Haddad", "Larsen", "Patel",
];
/// Time zone, currency and phone prefix of a debtor's country.
const REGIONS: [(&str, &str, &str); 6] = [
    ("America/New_York", "USD", "+1212555"),
    ("America/Chicago", "USD", "+1312555"),
    ("America/Los_Angeles", "USD", "+1415555"),
    ("Europe/London", "GBP", "+44207946"),
    ("Europe/Berlin", "EUR", "+49301234"),
    ("Europe/Madrid", "EUR", "+34911234"),
];
const TAGS: [&str; 6] = [
    "",
    "vip",
    "new",
    "medical",
    "retail;vip",
    "telecom;disputed",
];

/// A well-mixed hash of `i` (SplitMix64): the same values on every run, no RNG needed.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One debtor of the benchmark: the values of a row of the file, and of the baseline's
/// account.
struct Debtor {
    name: String,
    email: String,
    phone: String,
    timezone: &'static str,
    currency: &'static str,
    /// Minor units.
    balance: i64,
    due_date: String,
    /// `;`-separated, as in the file.
    tags: &'static str,
}

impl Debtor {
    fn new(i: usize) -> Self {
        let h = mix(i as u64);
        let pick = |shift: u32, len: usize| ((h >> shift) as usize) % len;
        let first = FIRST[pick(0, FIRST.len())];
        let last = LAST[pick(8, LAST.len())];
        let (timezone, currency, phone_prefix) = REGIONS[pick(16, REGIONS.len())];
        // Due dates over two and a half years around today: every aging bucket.
        let due =
            time::macros::date!(2025 - 01 - 01) + time::Duration::days((h >> 24) as i64 % 900);
        Self {
            name: format!("{first} {last}"),
            email: format!(
                "{}.{}{i}@example.com",
                first.to_lowercase(),
                last.to_lowercase().replace('\'', "")
            ),
            phone: format!("{phone_prefix}{:04}", i % 10_000),
            timezone,
            currency,
            balance: 5_000 + ((h >> 34) % 2_500_000) as i64,
            due_date: shared::accounts::model::format_date(due),
            tags: TAGS[pick(56, TAGS.len())],
        }
    }

    /// The file's row for this debtor with `reference`.
    fn csv_row(&self, reference: &str) -> String {
        format!(
            "{reference},{},{},{},{},{},{},{},{}\n",
            self.name,
            self.email,
            self.phone,
            self.timezone,
            self.currency,
            self.balance,
            self.due_date,
            self.tags
        )
    }

    /// The account the importer would create from this debtor's row, with `reference`,
    /// validated by `POST /accounts`' own code.
    fn account(&self, reference: String, now: Timestamp) -> anyhow::Result<Account> {
        let body = accounts::CreateAccountBody {
            reference,
            debtor_name: self.name.clone(),
            debtor_email: self.email.clone(),
            debtor_phone: self.phone.clone(),
            debtor_timezone: self.timezone.to_owned(),
            currency: self.currency.to_owned(),
            original_balance: MinorUnits(self.balance),
            status: None,
            assigned_agent_id: None,
            due_date: self.due_date.clone(),
            tags: self
                .tags
                .split(';')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        accounts::new_account(body, now).map_err(|err| anyhow::anyhow!("{err:?}"))
    }
}

/// The `BatchWriteItem` requests (of [`BATCH_ITEMS`] items) that write `accounts` as an
/// account is in the Accounts table: its item and its reference claim. Stamped as the
/// importer stamps them (a user acting through an import).
async fn write_requests(accounts: &[Account]) -> anyhow::Result<Vec<Vec<WriteRequest>>> {
    let actor = Actor::on_behalf(Id::generate(), None, format!("import:{}", Id::generate()));
    acting(actor, async {
        let mut items = Vec::with_capacity(accounts.len() * 2);
        for account in accounts {
            items.push(account.to_stamped_item()?);
            items.push(HashMap::from([
                (
                    "pk".to_owned(),
                    AttributeValue::S(reference_pk(&account.reference)),
                ),
                (
                    "account_id".to_owned(),
                    AttributeValue::S(account.id.to_string()),
                ),
            ]));
        }
        let requests = items
            .into_iter()
            .map(|item| {
                Ok(WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build()?)
                    .build())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(requests.chunks(BATCH_ITEMS).map(<[_]>::to_vec).collect())
    })
    .await
}

/// Creates `copy`, a table like `table`: the same key schema, attribute definitions, global
/// and local secondary indexes, stream and TTL settings (billing on demand, as the gateway
/// provisions every table). No event source reads its stream.
async fn copy_table(clients: &Clients, table: &str, copy: &str) -> anyhow::Result<()> {
    let client = &clients.dynamodb;
    let described = client
        .describe_table()
        .table_name(table)
        .send()
        .await?
        .table
        .ok_or_else(|| anyhow::anyhow!("no table {table}"))?;
    let mut create = client
        .create_table()
        .table_name(copy)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(described.attribute_definitions)
        .set_key_schema(described.key_schema);
    for index in described.global_secondary_indexes.unwrap_or_default() {
        create = create.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .set_index_name(index.index_name)
                .set_key_schema(index.key_schema)
                .set_projection(index.projection)
                .build()?,
        );
    }
    for index in described.local_secondary_indexes.unwrap_or_default() {
        create = create.local_secondary_indexes(
            LocalSecondaryIndex::builder()
                .set_index_name(index.index_name)
                .set_key_schema(index.key_schema)
                .set_projection(index.projection)
                .build()?,
        );
    }
    if let Some(stream) = described.stream_specification {
        create = create.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(stream.stream_enabled)
                .set_stream_view_type(stream.stream_view_type)
                .build()?,
        );
    }
    create.send().await?;
    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await?
        .time_to_live_description;
    if let Some(attribute) = ttl.and_then(|t| t.attribute_name) {
        client
            .update_time_to_live()
            .table_name(copy)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(attribute)
                    .build()?,
            )
            .send()
            .await?;
    }
    Ok(())
}

/// What the raw loop did.
struct Raw {
    elapsed: Duration,
    items: usize,
    /// Items DynamoDB answered as unprocessed and that were sent again.
    retried: u64,
    /// Requests that failed and were sent again.
    errors: u64,
}

/// Sends `batches` with [`RAW_IN_FLIGHT`] requests in flight, each until every item of it is
/// written.
async fn raw_writes(clients: &Clients, table: &str, batches: Vec<Vec<WriteRequest>>) -> Raw {
    let items = batches.iter().map(Vec::len).sum();
    let retried = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let started = Instant::now();
    stream::iter(batches)
        .map(|requests| {
            let client = clients.dynamodb.clone();
            let (retried, errors) = (&retried, &errors);
            async move {
                let mut pending = HashMap::from([(table.to_owned(), requests)]);
                let mut attempt = 0u32;
                while !pending.is_empty() {
                    if attempt > 0 {
                        tokio::time::sleep(Duration::from_millis(10 << attempt.min(6))).await;
                    }
                    attempt += 1;
                    match client
                        .batch_write_item()
                        .set_request_items(Some(pending.clone()))
                        .send()
                        .await
                    {
                        Ok(out) => {
                            pending = out.unprocessed_items.unwrap_or_default();
                            pending.retain(|_, requests| !requests.is_empty());
                            let left: usize = pending.values().map(Vec::len).sum();
                            retried.fetch_add(left as u64, Ordering::Relaxed);
                            if left == 0 {
                                attempt = 0;
                            }
                        }
                        Err(err) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            eprintln!(
                                "raw BatchWriteItem failed, retrying: {}",
                                aws_sdk_dynamodb::error::DisplayErrorContext(&err)
                            );
                        }
                    }
                }
            }
        })
        .buffer_unordered(RAW_IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    Raw {
        elapsed: started.elapsed(),
        items,
        retried: retried.into_inner(),
        errors: errors.into_inner(),
    }
}

/// Creates `accounts` in the Accounts table's copy `table` exactly as the importer's write
/// pass creates a chunk's (`AccountRepo::create_many`: [`MAX_CREATE_BATCH`] accounts and
/// their reference claims to a conditional transaction, [`importer::BATCH_CONCURRENCY`] in
/// flight), with nothing else: no file, no queue, no validation, no counts. The floor of any
/// import that creates each account and claims its reference atomically (nothing half
/// written), on this DynamoDB Local; answers the time it took.
async fn raw_transactions(
    clients: &Clients,
    table: &str,
    activities: &TableName,
    accounts: &[Account],
) -> anyhow::Result<Duration> {
    let repo = AccountRepo::new(
        clients.dynamodb.clone(),
        TableName::new(table),
        activities.clone(),
    );
    let started = Instant::now();
    let outcomes: Vec<_> = acting(
        Actor::on_behalf(Id::generate(), None, format!("import:{}", Id::generate())),
        stream::iter(accounts.chunks(MAX_CREATE_BATCH))
            .map(|batch| repo.create_many(batch))
            .buffered(importer::BATCH_CONCURRENCY)
            .collect(),
    )
    .await;
    let elapsed = started.elapsed();
    for outcome in outcomes {
        anyhow::ensure!(
            outcome?.iter().all(Result::is_ok),
            "a raw transaction found a taken reference"
        );
    }
    Ok(elapsed)
}

/// Waits until no function of the stack has had an invocation in flight for [`QUIET`] (the
/// stream consumers have drained `what`), [`SETTLE_BOUND`] at most, and says how long it took.
async fn settle(stack: &Stack, what: &str) {
    let started = Instant::now();
    let mut quiet_since = Instant::now();
    let quiet = loop {
        let busy = stack
            .gateway
            .model()
            .functions
            .keys()
            .filter_map(|name| stack.gateway.pool(name))
            .any(|pool| pool.in_flight() > 0);
        if busy {
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= QUIET {
            break true;
        }
        if started.elapsed() > SETTLE_BOUND {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "settle: {} after {:.1} s (stream consumers draining {what}; not timed)",
        if quiet {
            "no function busy"
        } else {
            "STILL BUSY, going on"
        },
        started.elapsed().as_secs_f64()
    );
}

/// Invocations so far of each function of the stack (by logical id).
fn all_invocations(stack: &Stack) -> BTreeMap<String, usize> {
    stack
        .gateway
        .model()
        .functions
        .keys()
        .filter_map(|name| {
            let pool = stack.gateway.pool(name)?;
            Some((name.clone(), pool.stats.invocations.load(Ordering::Relaxed)))
        })
        .collect()
}

/// What the import did, timed.
struct Imported {
    /// `POST /imports` → `201`.
    posted: Duration,
    /// The `PUT` of the file to the presigned URL.
    upload: Duration,
    /// Upload done → the import first seen `running` (notification, queue, the importer's
    /// start and its check pass), when it was seen running at all.
    to_running: Option<Duration>,
    /// `POST /imports` → the final state seen.
    total: Duration,
    /// Polls answered with a 5xx (and repeated).
    failed_polls: usize,
    /// The ended import, as `GET /imports/{id}` answers it.
    body: Value,
}

async fn import(stack: &Stack, file: Vec<u8>) -> anyhow::Result<Imported> {
    // Access tokens last 15 minutes, a large import longer: a fresh one now, another on a 401.
    let sign_in = || stack.token(e2e::ADMIN_EMAIL, e2e::ADMIN_PASSWORD);
    let mut token = sign_in().await;
    let started = Instant::now();
    let (status, created) = stack
        .send(
            "POST",
            "/imports",
            Some(&token),
            Some(json!({
                "size": file.len(),
                "file_name": "bench-placement.csv",
                "mode": "create",
                "column_mapping": {"Acct No": "reference"},
            })),
        )
        .await;
    let posted = started.elapsed();
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "POST /imports: {status} {created}"
    );
    let id = created["import"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let url = created["upload"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let put_started = Instant::now();
    let response = stack.http.put(&url).body(file).send().await?;
    let upload = put_started.elapsed();
    anyhow::ensure!(
        response.status().is_success(),
        "upload: {} {}",
        response.status(),
        response.text().await.unwrap_or_default()
    );
    let uploaded = Instant::now();

    let path = format!("/imports/{id}");
    let mut to_running = None;
    let mut failed_polls = 0;
    let mut reported = Instant::now();
    loop {
        let (status, body) = stack.send("GET", &path, Some(&token), None).await;
        if status == StatusCode::UNAUTHORIZED {
            token = sign_in().await;
            continue;
        }
        if status.is_server_error() {
            // A poll that timed out on the loaded stack (the imports function's 10 s): the
            // import goes on; so does the polling.
            failed_polls += 1;
            eprintln!("GET {path}: {status} {body}; polling on");
            tokio::time::sleep(POLL).await;
            continue;
        }
        anyhow::ensure!(status == StatusCode::OK, "GET {path}: {status} {body}");
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            println!(
                "  {:.0} s: {}, rows_read {} of {}, created {}",
                started.elapsed().as_secs_f64(),
                body["state"].as_str().unwrap_or("?"),
                body["rows_read"],
                body["total_rows"],
                body["created"]
            );
        }
        match body["state"].as_str() {
            Some("awaiting_upload") => {}
            Some("running") => {
                to_running.get_or_insert_with(|| uploaded.elapsed());
            }
            _ => {
                return Ok(Imported {
                    posted,
                    upload,
                    to_running,
                    total: started.elapsed(),
                    failed_polls,
                    body,
                })
            }
        }
        // A hang guard, not a timer on the figures.
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(4 * 3600),
            "the import did not end in 4 hours: {body}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    anyhow::ensure!(rows > 0, "ROWS must be at least 1");
    let stack = Stack::start(StackOptions::unthrottled().with_event_sources()).await;
    let env = stack.gateway.env().clone();
    let lookup = move |name: &str| env.get(name).cloned();
    let config = Config::from_lookup(&lookup)?;
    let clients = Clients::from_env().await;
    let table = config.tables.accounts.as_str().to_owned();
    // The baseline's table: a copy of the Accounts table no stream consumer reads (see the
    // module docs).
    let raw_table = format!("{table}-bench-raw");
    copy_table(&clients, &table, &raw_table).await?;
    let run = ulid::Ulid::new().to_string()[20..].to_owned();
    let debtors: Vec<Debtor> = (0..rows).map(Debtor::new).collect();

    // The file: reference BENCH-<run>-I<i>. The baseline: BENCH-<run>-R<i>, same length.
    let mut file = String::from(HEADER);
    file.push('\n');
    for (i, debtor) in debtors.iter().enumerate() {
        file.push_str(&debtor.csv_row(&format!("BENCH-{run}-I{i:06}")));
    }
    let file = file.into_bytes();
    let file_bytes = file.len();
    let now = Timestamp::now();
    let raw_accounts = debtors
        .iter()
        .enumerate()
        .map(|(i, debtor)| debtor.account(format!("BENCH-{run}-R{i:06}"), now))
        .collect::<anyhow::Result<Vec<_>>>()?;
    drop(debtors);
    let indexes = clients
        .dynamodb
        .describe_table()
        .table_name(&raw_table)
        .send()
        .await?
        .table
        .and_then(|t| t.global_secondary_indexes)
        .map_or(0, |i| i.len());
    println!(
        "bench-import: ROWS = {rows} ({:.1} MB file); import into {table}, baseline into {raw_table} (its copy: {indexes} GSIs, stream on, no consumer); order: warm-up, raw baseline, import",
        file_bytes as f64 / 1e6
    );

    // Warm DynamoDB Local's JIT on the same kind of write (accounts of their own).
    let warm_accounts = raw_accounts
        .iter()
        .take(WARM_UP_ACCOUNTS.min(rows))
        .enumerate()
        .map(|(i, account)| Account {
            id: Id::generate(),
            reference: format!("BENCH-{run}-W{i:06}"),
            ..account.clone()
        })
        .collect::<Vec<_>>();
    let warm = raw_writes(&clients, &raw_table, write_requests(&warm_accounts).await?).await;
    println!(
        "warm-up: {} accounts ({} items) written raw in {:.2} s",
        warm_accounts.len(),
        warm.items,
        warm.elapsed.as_secs_f64()
    );

    let batches = write_requests(&raw_accounts).await?;
    // The transactional floor: the same accounts again, references T<i>, ids of their own.
    let tx_accounts: Vec<Account> = raw_accounts
        .iter()
        .enumerate()
        .map(|(i, account)| Account {
            id: Id::generate(),
            reference: format!("BENCH-{run}-T{i:06}"),
            ..account.clone()
        })
        .collect();
    drop(raw_accounts);
    settle(&stack, "the stack's set-up").await;
    let raw = raw_writes(&clients, &raw_table, batches).await;
    println!(
        "raw baseline: {} items in {:.2} s",
        raw.items,
        raw.elapsed.as_secs_f64()
    );
    settle(&stack, "anything left").await;
    let floor = raw_transactions(
        &clients,
        &raw_table,
        &config.tables.activities,
        &tx_accounts,
    )
    .await?;
    drop(tx_accounts);
    println!(
        "raw transactions: {rows} accounts in {:.2} s",
        floor.as_secs_f64()
    );
    settle(&stack, "anything left").await;

    // The imports API's cold start is not the import's.
    let _ = stack
        .send("GET", "/imports?limit=1", Some(stack.admin()), None)
        .await;
    let invocations = || {
        stack
            .gateway
            .pool(IMPORTER)
            .map_or(0, |pool| pool.stats.invocations.load(Ordering::Relaxed))
    };
    let invocations_before = invocations();
    let others_before = all_invocations(&stack);
    stack.gateway.enable_stream_mappings(false);
    let imported = import(&stack, file).await?;
    let others = all_invocations(&stack);
    let body = &imported.body;
    // An importer invocation still running once the import has ended would be killed by the
    // shutdown: let it finish (60 s at most) and say so.
    let ended = Instant::now();
    while stack
        .gateway
        .pool(IMPORTER)
        .is_some_and(|pool| pool.in_flight() > 0)
        && ended.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let importer_tail = ended.elapsed();
    stack.gateway.enable_stream_mappings(true);
    settle(
        &stack,
        "the import's stream records (mappings enabled again)",
    )
    .await;
    let count = |name: &str| body[name].as_u64().unwrap_or(0);

    let import_s = imported.total.as_secs_f64();
    let upload_s = imported.upload.as_secs_f64();
    let raw_s = raw.elapsed.as_secs_f64();
    println!("ROWS = {rows}");
    println!(
        "raw BatchWriteItem loop ({BATCH_ITEMS} items/request, {RAW_IN_FLIGHT} requests in flight): {rows} accounts = {} items (account + reference claim) in {raw_s:.2} s ({:.0} items/s, {:.0} accounts/s); {} unprocessed items retried, {} failed requests retried",
        raw.items,
        raw.items as f64 / raw_s,
        rows as f64 / raw_s,
        raw.retried,
        raw.errors
    );
    println!(
        "import: POST /imports -> 201 {:.1} ms; upload (PUT {:.1} MB to S3) {upload_s:.2} s; upload -> running {}",
        imported.posted.as_secs_f64() * 1000.0,
        file_bytes as f64 / 1e6,
        imported
            .to_running
            .map(|d| format!("{:.2} s", d.as_secs_f64()))
            .unwrap_or_else(|| "not seen (ended between polls)".to_owned())
    );
    println!(
        "import POST -> {}: {import_s:.2} s ({:.0} rows/s); total_rows {}, rows_read {}, created {}, duplicates {}, failed {} (polled every {} ms, {} polls answered 5xx)",
        body["state"].as_str().unwrap_or("?"),
        rows as f64 / import_s,
        count("total_rows"),
        count("rows_read"),
        count("created"),
        count("duplicates"),
        count("failed"),
        POLL.as_millis(),
        imported.failed_polls
    );
    println!(
        "importer: {} invocation(s), one still in flight for {:.2} s after the import was seen ended",
        invocations() - invocations_before,
        importer_tail.as_secs_f64()
    );
    let during: Vec<String> = others
        .iter()
        .filter(|(name, _)| name.as_str() != IMPORTER)
        .filter_map(|(name, after)| {
            let n = after - others_before.get(name).copied().unwrap_or(0);
            (n > 0).then(|| format!("{name} {n}"))
        })
        .collect();
    println!(
        "other invocations during the import (the polls; stream mappings disabled): {}",
        during.join(", ")
    );
    println!(
        "ratio import / raw: {:.2}x (both without stream consumers; the import's time includes POST /imports and the upload; without the upload: {:.2}x)",
        import_s / raw_s,
        (import_s - upload_s) / raw_s
    );

    let completed = body["state"] == "completed" && count("created") == rows as u64;
    if !completed {
        eprintln!("bench-import: the import did not create every row: {body}");
    }
    let floor_s = floor.as_secs_f64();
    println!(
        "raw transactions (AccountRepo::create_many alone: {MAX_CREATE_BATCH} accounts + claims to a TransactWriteItems, {} in flight): {rows} accounts in {floor_s:.2} s ({:.0} accounts/s); {:.2}x the BatchWriteItem loop",
        importer::BATCH_CONCURRENCY,
        rows as f64 / floor_s,
        floor_s / raw_s
    );
    println!(
        "ratio import / raw transactions: {:.2}x (what the import adds to the writes it cannot avoid)",
        import_s / floor_s
    );
    let _ = clients
        .dynamodb
        .delete_table()
        .table_name(&raw_table)
        .send()
        .await;
    stack.gateway.shutdown().await;
    anyhow::ensure!(completed, "the import did not complete cleanly");
    Ok(())
}
