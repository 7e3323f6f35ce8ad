//! The notifier: the DynamoDB Streams consumer of the Accounts, Payments, Activities and
//! Jobs tables. Per batch:
//!
//! 1. **Aggregates first.** The accounts, payments and activities records go to
//!    [`AggregateStore::apply`] in one call (exactly once per `eventID`, so a redelivered
//!    batch changes nothing twice). If that fails, the batch's first record is reported
//!    failed and nothing is sent: Lambda retries the whole batch, which is safe because the
//!    apply is idempotent, and no client hears of a change the dashboard does not show.
//! 2. **Messages** (`{"type", "id", "data"}`, see [`plan`]): `payment.recorded`,
//!    `payment.status_changed`, `activity.logged` to `payments` / `activities` and
//!    `account:{id}`; `job.progress` to `job:{id}`; `import.progress` to `import:{id}`; one
//!    `dashboard.changed` to `dashboard`
//!    when counters moved. `id` is the stream record's `eventID`, so a client drops the
//!    repeats that at-least-once delivery brings.
//! 3. **Recipients**: each topic's subscribers are Queried once per batch; a connection
//!    following two of a message's topics gets it once. Each subscriber's user is checked
//!    against its **current** state ([`UserStateCache`], the REST authenticator's cache and
//!    rule, `AUTH_CACHE_SECONDS`): a connection whose user is disabled or deleted, whose
//!    token version moved since `$connect` (role or password change, sessions revoked), or
//!    whose current role may not follow one of its topics (`shared::realtime::role_may_follow`)
//!    gets nothing; it is removed with its subscriptions and closed through `@connections`
//!    `DELETE`, so its client reconnects with a fresh token under the current rules. A
//!    failed user read fails the batch like a failed subscriber Query (nothing is pushed to
//!    someone unchecked). An agent gets an account's events
//!    only while the account is assigned to it (one `GetItem` per account per batch, only
//!    when an agent is among the subscribers), and of `dashboard.changed` only its own scope.
//! 4. **Posting** (`PostToConnection`, 32 at a time): a gone connection (410) is removed
//!    with its subscriptions; throttling, 5xx and timeouts are retried by the SDK (three
//!    attempts with backoff), then the record is reported as the first failure and later
//!    records are not started, so Lambda resumes at that record.
//!
//! # Coalescing (`job.progress`, `import.progress`, `dashboard.changed`)
//!
//! A bulk job of 10,000 accounts moves its job item hundreds of times, and every payment
//! moves the dashboard: clients need the latest state a few times per second, not every
//! step (an import moves its item once per chunk of rows). Within a batch only the latest
//! image of each job and import is sent and at most one
//! `dashboard.changed`. Across batches each instance remembers when it last sent on each
//! such topic; a message due sooner than [`MIN_INTERVAL`] after the previous one waits out
//! the remainder (at most [`MIN_INTERVAL`]) and is then sent. Waiting instead of dropping
//! means the last state always arrives; a job's or import's final state never waits. (Instances do not
//! share this memory; with the streams' one-instance-per-shard ordering that is rarely more
//! than one instance per table.)
//!
//! One JSON summary line per invocation: records, messages, sent, gone connections,
//! duplicates skipped by the aggregates, the failed record if any.

pub mod plan;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_apigatewaymanagement::config::retry::RetryConfig;
use aws_sdk_apigatewaymanagement::config::timeout::TimeoutConfig;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::stream::{self, StreamExt, TryStreamExt};
use shared::accounts::keys::account_pk;
use shared::auth::{Caller, UserRepo, UserStateCache};
use shared::config::{Config, ConfigError, TableName};
use shared::dashboard::AggregateStore;
use shared::domain::Id;
use shared::dynamo::DataError;
use shared::metrics::{self, names};
use shared::platform::InitError;
use shared::realtime::{role_may_follow, ConnectionRepo, Subscription, Topic};

use crate::plan::{Assignments, Outgoing, Record, StreamTables};

/// Posts in flight at once.
const POST_CONCURRENCY: usize = 32;
/// Subscriber Queries and account reads in flight at once.
const READ_CONCURRENCY: usize = 16;
/// The least time between two paced messages on one topic (a few per second).
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// Entries of the pacing memory above which old ones are forgotten.
const PACER_CAPACITY: usize = 1024;
/// The users' state cache time of [`App::new`] (the authenticator's default); `main` reads
/// `AUTH_CACHE_SECONDS`.
const DEFAULT_AUTH_CACHE: Duration = Duration::from_secs(5);

/// Per-instance memory of when each paced topic was last sent to (see the module docs).
#[derive(Debug, Default)]
pub struct Pacer {
    last: Mutex<HashMap<Topic, Instant>>,
}

impl Pacer {
    /// How long a message on `topic` must wait from `now`, and books its send time. An
    /// `urgent` message (a final state) never waits.
    pub fn delay(&self, topic: &Topic, urgent: bool, now: Instant) -> Duration {
        let Ok(mut last) = self.last.lock() else {
            return Duration::ZERO;
        };
        let delay = match last.get(topic) {
            Some(previous) if !urgent => (*previous + MIN_INTERVAL)
                .saturating_duration_since(now)
                .min(MIN_INTERVAL),
            _ => Duration::ZERO,
        };
        if last.len() >= PACER_CAPACITY {
            last.retain(|_, at| now.saturating_duration_since(*at) < MIN_INTERVAL);
        }
        last.insert(topic.clone(), now + delay);
        delay
    }
}

/// Configuration and clients, built once per cold start.
pub struct App {
    pub tables: StreamTables,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub aggregates: AggregateStore,
    pub connections: ConnectionRepo,
    /// The WebSocket API's `@connections` endpoint.
    pub management: aws_sdk_apigatewaymanagement::Client,
    pub pacer: Pacer,
    /// Subscribers' users, as the REST authenticator sees them.
    pub users: UserStateCache,
}

/// The `@connections` endpoint: on AWS `https://{api}.execute-api.{region}.amazonaws.com/{stage}`
/// (set by the template); locally the gateway's own WebSocket address.
pub const MANAGEMENT_ENDPOINT: &str = "WEBSOCKET_MANAGEMENT_ENDPOINT";

/// Reads and checks the management endpoint.
pub fn management_endpoint(lookup: shared::config::Lookup<'_>) -> Result<String, ConfigError> {
    let endpoint = shared::config::required_from(lookup, MANAGEMENT_ENDPOINT)?;
    if endpoint.starts_with("https://") || endpoint.starts_with("http://") {
        Ok(endpoint.trim_end_matches('/').to_owned())
    } else {
        Err(ConfigError::Invalid {
            name: MANAGEMENT_ENDPOINT,
            reason: format!("{endpoint:?} is not an http(s) URL"),
        })
    }
}

impl App {
    pub fn new(config: &Config, sdk: &SdkConfig, management_endpoint: &str) -> Self {
        let tables = &config.tables;
        let dynamodb = shared::clients::dynamodb(sdk);
        // Short timeouts: a post that hangs holds the whole shard; the SDK's standard retry
        // (three attempts, exponential backoff with jitter) covers throttling, 5xx and
        // timeouts, and never retries a 410.
        let management = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
            .endpoint_url(management_endpoint)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(1))
                    .operation_attempt_timeout(Duration::from_secs(2))
                    .operation_timeout(Duration::from_secs(7))
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(50)),
            )
            .build();
        Self {
            tables: StreamTables {
                accounts: tables.accounts.clone(),
                payments: tables.payments.clone(),
                activities: tables.activities.clone(),
                jobs: tables.jobs.clone(),
                plans: tables.plans.clone(),
            },
            aggregates: AggregateStore::new(dynamodb.clone(), tables.aggregates.clone()),
            connections: ConnectionRepo::new(dynamodb.clone(), tables.connections.clone()),
            management: aws_sdk_apigatewaymanagement::Client::from_conf(management),
            users: UserStateCache::new(
                UserRepo::new(dynamodb.clone(), tables.users.clone()),
                DEFAULT_AUTH_CACHE,
            ),
            dynamodb,
            pacer: Pacer::default(),
        }
    }

    /// The same, with the users' state cached for `ttl` (`AUTH_CACHE_SECONDS`).
    pub fn with_auth_cache(mut self, users_table: &TableName, ttl: Duration) -> Self {
        self.users = UserStateCache::new(
            UserRepo::new(self.dynamodb.clone(), users_table.clone()),
            ttl,
        );
        self
    }

    pub async fn from_env() -> Result<Self, InitError> {
        let lookup = &shared::config::env_lookup;
        let config = Config::from_lookup(lookup)?;
        let endpoint = management_endpoint(lookup)?;
        let cache = shared::auth::authenticator::cache_ttl_from(lookup)?;
        let sdk = shared::clients::sdk_config().await;
        let app = Self::new(&config, &sdk, &endpoint).with_auth_cache(&config.tables.users, cache);
        // The first batch's first call is the aggregates' transaction: open that connection now.
        shared::clients::Clients::new(&sdk)
            .prime(&config.tables, |tables| &tables.aggregates)
            .await;
        Ok(app)
    }

    fn accounts_table(&self) -> &TableName {
        &self.tables.accounts
    }
}

/// What one invocation did, logged as its summary line.
#[derive(Debug, Default)]
struct Summary {
    messages: usize,
    sent: usize,
    gone: usize,
    dropped: usize,
    /// Connections closed because their user no longer qualifies.
    revoked: usize,
    failed: Option<usize>,
}

/// Handles one stream batch; answers the first record to resume from, if any.
pub async fn handle(app: &App, event: Event) -> DynamoDbEventResponse {
    record_batch_age(&event);
    let records: Vec<Record> = event
        .records
        .into_iter()
        .map(|r| Record::from_event(&app.tables, r))
        .collect();
    let mut summary = Summary::default();
    let (applied, duplicates) = match app.aggregates.apply(&plan::changes(&records)).await {
        Ok(applied) => (applied.scopes, applied.duplicates),
        Err(err) => {
            tracing::warn!(error = %err, "applying the aggregates failed; the batch will be retried");
            summary.failed = (!records.is_empty()).then_some(0);
            return finish(&records, summary, 0);
        }
    };
    let messages = plan::plan(&records, &applied);
    summary.messages = messages.len();
    if let Err(err) = deliver(app, &messages, &mut summary).await {
        tracing::warn!(error = %err, "reading subscribers failed; the batch resumes at its first message");
        summary.failed = messages.iter().map(|m| m.record).min();
    }
    finish(&records, summary, duplicates)
}

/// How far behind the table's changes the notifier runs: the age of the batch's oldest
/// record when the batch starts (the stream's iterator age, as this function sees it).
fn record_batch_age(event: &Event) {
    let oldest = event
        .records
        .iter()
        .map(|r| r.change.approximate_creation_date_time.timestamp_millis())
        .filter(|&ms| ms > 0)
        .min();
    if let Some(oldest) = oldest {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        metrics::record(
            &names::NOTIFIER_BATCH_AGE,
            &[],
            (now - oldest).max(0) as f64,
        );
    }
}

fn finish(records: &[Record], summary: Summary, duplicates: usize) -> DynamoDbEventResponse {
    if summary.sent > 0 {
        metrics::record(&names::WEBSOCKET_MESSAGES_SENT, &[], summary.sent as f64);
    }
    if summary.gone > 0 {
        metrics::record(&names::WEBSOCKET_CONNECTIONS_GONE, &[], summary.gone as f64);
    }
    let failed = summary.failed.and_then(|i| records.get(i));
    tracing::info!(
        records = records.len(),
        messages = summary.messages,
        sent = summary.sent,
        gone = summary.gone,
        dropped = summary.dropped,
        revoked = summary.revoked,
        duplicates,
        failed_sequence = failed.map(|r| r.sequence.as_str()),
        "notifier batch"
    );
    let mut response = DynamoDbEventResponse::default();
    if let Some(record) = failed {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(record.sequence.clone());
        response.batch_item_failures = vec![failure];
    }
    response
}

/// The live subscribers of every topic the messages name.
async fn subscribers(
    app: &App,
    messages: &[Outgoing],
) -> Result<HashMap<Topic, Vec<Subscription>>, DataError> {
    let topics: BTreeSet<&Topic> = messages.iter().flat_map(|m| &m.topics).collect();
    stream::iter(topics)
        .map(|topic| async move {
            let subs = app.connections.subscribers(topic).await?;
            Ok::<_, DataError>((topic.clone(), subs))
        })
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await
}

/// Keeps only the subscribers whose user still qualifies (see the module docs) and answers
/// the connections that do not.
async fn qualify(
    app: &App,
    subscribers: &mut HashMap<Topic, Vec<Subscription>>,
) -> Result<BTreeSet<String>, DataError> {
    // One check per (user, version, role): usually one per user.
    let grants: HashSet<(Id, Option<u64>, shared::auth::Role)> = subscribers
        .values()
        .flatten()
        .map(|s| (s.user_id, s.token_version, s.role))
        .collect();
    let states: HashMap<(Id, Option<u64>, shared::auth::Role), Option<shared::auth::Role>> =
        stream::iter(grants)
            .map(|grant| async move {
                let (user, version, role) = grant;
                let current = match version {
                    Some(version) => app.users.current(user, version, role).await?,
                    None => None,
                };
                Ok::<_, DataError>((grant, current.map(|state| state.role)))
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
    let mut refused: BTreeSet<String> = BTreeSet::new();
    for (topic, subs) in subscribers.iter() {
        for sub in subs {
            let allowed = states
                .get(&(sub.user_id, sub.token_version, sub.role))
                .copied()
                .flatten()
                .is_some_and(|role| {
                    let caller = Caller {
                        user_id: sub.user_id,
                        role,
                    };
                    role_may_follow(&caller, topic).is_ok()
                });
            if !allowed {
                refused.insert(sub.connection_id.clone());
            }
        }
    }
    for subs in subscribers.values_mut() {
        subs.retain(|s| !refused.contains(&s.connection_id));
    }
    Ok(refused)
}

/// Removes connections and closes them (`@connections` `DELETE`; already gone is fine).
/// A failure leaves a stale connection that the next check (or TTL) removes.
async fn drop_connections(app: &App, connections: BTreeSet<String>) {
    stream::iter(connections)
        .for_each_concurrent(READ_CONCURRENCY, |connection| async move {
            if let Err(err) = app.connections.remove_connection(&connection).await {
                tracing::warn!(connection = %connection, error = %err, "removing a refused connection failed");
            }
            let closed = app
                .management
                .delete_connection()
                .connection_id(&connection)
                .send()
                .await;
            if let Err(err) = closed {
                if !err.as_service_error().is_some_and(|e| e.is_gone_exception()) {
                    tracing::warn!(connection = %connection, error = %aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&err), "closing a refused connection failed");
                }
            }
            tracing::info!(connection = %connection, "connection of a disabled, changed or no longer allowed user dropped");
        })
        .await;
}

/// The assigned agent of each account an agent subscriber might receive events of.
async fn assignments(
    app: &App,
    messages: &[Outgoing],
    subscribers: &HashMap<Topic, Vec<Subscription>>,
) -> Result<Assignments, DataError> {
    let accounts: HashSet<Id> = messages
        .iter()
        .flat_map(|m| {
            m.topics
                .iter()
                .filter_map(|t| subscribers.get(t))
                .flatten()
                .filter_map(|s| m.needs_assignment(s))
        })
        .collect();
    stream::iter(accounts)
        .map(|account| async move {
            let item = app
                .dynamodb
                .get_item()
                .table_name(app.accounts_table().as_str())
                .key("pk", AttributeValue::S(account_pk(account)))
                .projection_expression("assigned_agent_id, deleted_at")
                .send()
                .await?
                .item;
            let agent = item.and_then(|item| {
                // A deleted account's events go to no agent.
                if matches!(item.get("deleted_at"), Some(AttributeValue::S(_))) {
                    return None;
                }
                match item.get("assigned_agent_id") {
                    Some(AttributeValue::S(id)) => id.parse().ok(),
                    _ => None,
                }
            });
            Ok::<_, DataError>((account, agent))
        })
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await
}

/// One post: a body to a connection, on behalf of a record.
struct Delivery {
    record: usize,
    connection: String,
    body: Arc<str>,
    delay: Duration,
}

/// Addresses every message to its recipients (one delivery per connection and message).
fn address(
    app: &App,
    messages: &[Outgoing],
    subscribers: &HashMap<Topic, Vec<Subscription>>,
    assignments: &Assignments,
) -> Vec<Delivery> {
    let now = Instant::now();
    let mut deliveries = Vec::new();
    for message in messages {
        let common = message.body();
        let mut seen: HashSet<&str> = HashSet::new();
        let recipients: Vec<(&str, Arc<str>)> = message
            .topics
            .iter()
            .filter_map(|t| subscribers.get(t))
            .flatten()
            .filter(|s| seen.insert(s.connection_id.as_str()))
            .filter_map(|s| {
                let body = message.body_for(s, assignments, &common)?;
                Some((s.connection_id.as_str(), body))
            })
            .collect();
        if recipients.is_empty() {
            continue;
        }
        let delay = message
            .pace
            .as_ref()
            .map(|p| app.pacer.delay(&p.topic, p.urgent, now))
            .unwrap_or_default();
        deliveries.extend(recipients.into_iter().map(|(connection, body)| Delivery {
            record: message.record,
            connection: connection.to_owned(),
            body,
            delay,
        }));
    }
    // Earlier records first, so a failure stops only what comes after it.
    deliveries.sort_by_key(|d| d.record);
    deliveries
}

/// What became of one post.
enum Posted {
    Sent,
    /// 410: the connection is gone; remove it.
    Gone(String),
    /// Refused for good (403, 413): retrying cannot help; logged and dropped.
    Dropped,
    /// Throttled, 5xx or timed out after the SDK's retries.
    Failed(usize),
    /// Not attempted: an earlier record failed.
    Skipped,
}

async fn post(app: &App, delivery: Delivery, stop: &AtomicUsize) -> Posted {
    if delivery.record > stop.load(Ordering::Relaxed) {
        return Posted::Skipped;
    }
    if !delivery.delay.is_zero() {
        tokio::time::sleep(delivery.delay).await;
    }
    let result = app
        .management
        .post_to_connection()
        .connection_id(&delivery.connection)
        .data(Blob::new(delivery.body.as_bytes()))
        .send()
        .await;
    let Err(err) = result else {
        return Posted::Sent;
    };
    let service = err.as_service_error();
    if service.is_some_and(|e| e.is_gone_exception()) {
        return Posted::Gone(delivery.connection);
    }
    if service.is_some_and(|e| e.is_forbidden_exception() || e.is_payload_too_large_exception()) {
        tracing::warn!(connection = %delivery.connection, error = %aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&err), "post refused; dropped");
        return Posted::Dropped;
    }
    tracing::warn!(connection = %delivery.connection, error = %aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&err), "post failed after retries");
    stop.fetch_min(delivery.record, Ordering::Relaxed);
    Posted::Failed(delivery.record)
}

/// Finds the recipients, posts, and removes gone connections.
async fn deliver(app: &App, messages: &[Outgoing], summary: &mut Summary) -> Result<(), DataError> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut subscribers = subscribers(app, messages).await?;
    let refused = qualify(app, &mut subscribers).await?;
    summary.revoked = refused.len();
    drop_connections(app, refused).await;
    let assignments = assignments(app, messages, &subscribers).await?;
    let deliveries = address(app, messages, &subscribers, &assignments);
    let stop = AtomicUsize::new(usize::MAX);
    let outcomes: Vec<Posted> = stream::iter(deliveries)
        .map(|d| post(app, d, &stop))
        .buffer_unordered(POST_CONCURRENCY)
        .collect()
        .await;
    let mut gone: BTreeSet<String> = BTreeSet::new();
    for outcome in outcomes {
        match outcome {
            Posted::Sent => summary.sent += 1,
            Posted::Gone(connection) => {
                gone.insert(connection);
            }
            Posted::Dropped => summary.dropped += 1,
            Posted::Failed(record) => {
                summary.failed = Some(summary.failed.map_or(record, |f| f.min(record)));
            }
            Posted::Skipped => {}
        }
    }
    summary.gone = gone.len();
    stream::iter(gone)
        .for_each_concurrent(READ_CONCURRENCY, |connection| async move {
            // A failure leaves a stale connection the next 410 (or TTL) removes.
            if let Err(err) = app.connections.remove_connection(&connection).await {
                tracing::warn!(connection = %connection, error = %err, "removing a gone connection failed");
            }
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_topics_wait_out_the_interval_but_final_states_do_not() {
        let pacer = Pacer::default();
        let job = Topic::Job(Id::generate());
        let t0 = Instant::now();
        assert_eq!(pacer.delay(&job, false, t0), Duration::ZERO);
        // 100 ms later: waits the remaining 150 ms.
        let wait = pacer.delay(&job, false, t0 + Duration::from_millis(100));
        assert_eq!(wait, Duration::from_millis(150));
        // The next one is booked after that one, never more than one interval away.
        let wait = pacer.delay(&job, false, t0 + Duration::from_millis(100));
        assert_eq!(wait, MIN_INTERVAL);
        // A final state goes at once.
        assert_eq!(
            pacer.delay(&job, true, t0 + Duration::from_millis(120)),
            Duration::ZERO
        );
        // Other topics are independent; a quiet topic does not wait.
        assert_eq!(pacer.delay(&Topic::Dashboard, false, t0), Duration::ZERO);
        assert_eq!(
            pacer.delay(&Topic::Dashboard, false, t0 + Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn the_management_endpoint_is_required_and_an_url() {
        let none = |_: &str| None;
        assert!(matches!(
            management_endpoint(&none),
            Err(ConfigError::Missing(MANAGEMENT_ENDPOINT))
        ));
        let bad = |_: &str| Some("localhost:3001".to_owned());
        assert!(matches!(
            management_endpoint(&bad),
            Err(ConfigError::Invalid { .. })
        ));
        let good =
            |_: &str| Some("https://abc.execute-api.us-east-1.amazonaws.com/dev/".to_owned());
        assert_eq!(
            management_endpoint(&good).unwrap(),
            "https://abc.execute-api.us-east-1.amazonaws.com/dev"
        );
    }
}
