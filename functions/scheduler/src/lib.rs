//! The scheduled batch jobs (EventBridge schedules → this one function).
//!
//! The schedule's `Input` is the whole event (EventBridge replaces the scheduled event by
//! it, and the local gateway does the same): `{"job":"aging"}`, `{"job":"broken_promises"}`,
//! `{"job":"missed_installments"}` or `{"job":"cleanup"}`. Anything else is an error, so a mistyped schedule shows up as a
//! failed invocation instead of a silent no-op.
//!
//! - [`aging`] (nightly): stores the new `dpd_bucket` / `days_past_due` of the accounts whose
//!   bucket changes today.
//! - [`promises`] (nightly): settles the promises to pay dated before today as `kept` or
//!   `broken`; a broken promise returns its `promise_to_pay` account to `active`.
//! - [`installments`] (nightly): marks payment-plan installments missed past the grace
//!   period; a plan that missed too many is broken and its account returns to `active`.
//! - [`cleanup`] (hourly): removes expired WebSocket connections (with their subscriptions)
//!   and expired idempotency keys that TTL has not deleted yet.
//!
//! Every job is idempotent (a second run changes nothing), never Scans a table a Query can
//! serve, returns a report of counts (the invocation's response) and logs it as one JSON
//! line. "Now" is a parameter of [`handle`], so tests craft data around a chosen day.

pub mod aging;
pub mod cleanup;
pub mod installments;
pub mod promises;

use serde::Serialize;
use shared::accounts::aging::AgingStore;
use shared::accounts::AccountRepo;
use shared::clients::Clients;
use shared::config::Config;
use shared::domain::{Id, Timestamp};
use shared::dynamo::DataError;
use shared::idempotency::IdempotencyStore;
use shared::metrics;
use shared::metrics::names::{self, dimension};
use shared::payments::plans::PlanStore;
use shared::platform::InitError;
use shared::promises::PromiseStore;
use shared::realtime::ConnectionRepo;

/// The actor of the changes the system makes on its own (the `status_change` activity of a
/// broken promise): the all-zero ULID, which no user id can be (ids are generated with a
/// time and randomness), so the timeline shows "system" rather than some user.
pub const SYSTEM_ACTOR: &str = "00000000000000000000000000";

/// [`SYSTEM_ACTOR`] as an id.
pub fn system_actor() -> Id {
    Id::from(ulid::Ulid::nil())
}

/// Why a run failed. No client sees it: EventBridge retries the invocation, and the error
/// is logged with the job's name.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The schedule's Input names no job this function runs (a template error).
    #[error("unknown job {0}: expected aging, broken_promises, missed_installments or cleanup (the schedule's Input)")]
    UnknownJob(String),
    /// A date that the time-zone calendar cannot represent.
    #[error("a date out of range: {0}")]
    Calendar(String),
    #[error(transparent)]
    Data(#[from] DataError),
}

/// The stores the jobs use, built once per cold start.
pub struct App {
    pub accounts: AccountRepo,
    pub aging: AgingStore,
    pub promises: PromiseStore,
    pub connections: ConnectionRepo,
    pub idempotency: IdempotencyStore,
    pub plans: PlanStore,
    /// Grace period and missed installments that break a plan (`installments`).
    pub plan_rules: installments::PlanRules,
}

impl App {
    pub fn new(config: &Config, clients: &Clients) -> Self {
        let tables = &config.tables;
        let dynamodb = &clients.dynamodb;
        Self {
            accounts: AccountRepo::new(
                dynamodb.clone(),
                tables.accounts.clone(),
                tables.activities.clone(),
            ),
            aging: AgingStore::new(dynamodb.clone(), tables.accounts.clone()),
            promises: PromiseStore::new(
                dynamodb.clone(),
                tables.accounts.clone(),
                tables.activities.clone(),
                tables.payments.clone(),
            ),
            connections: ConnectionRepo::new(dynamodb.clone(), tables.connections.clone()),
            idempotency: IdempotencyStore::new(dynamodb.clone(), tables.idempotency.clone()),
            plans: PlanStore::new(
                dynamodb.clone(),
                tables.plans.clone(),
                tables.accounts.clone(),
                tables.activities.clone(),
            ),
            plan_rules: installments::PlanRules::default(),
        }
    }

    pub async fn from_env() -> Result<Self, InitError> {
        let config = Config::from_env()?;
        let clients = Clients::from_env().await;
        clients
            .prime(&config.tables, |tables| &tables.accounts)
            .await;
        let mut app = Self::new(&config, &clients);
        app.plan_rules = installments::PlanRules::from_env()?;
        Ok(app)
    }
}

/// The jobs a schedule can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Aging,
    BrokenPromises,
    MissedInstallments,
    Cleanup,
}

impl Job {
    pub fn as_str(&self) -> &'static str {
        match self {
            Job::Aging => "aging",
            Job::BrokenPromises => "broken_promises",
            Job::MissedInstallments => "missed_installments",
            Job::Cleanup => "cleanup",
        }
    }

    /// The job an event names (`{"job": "..."}`); an absent or unknown job is an error.
    pub fn of_event(event: &serde_json::Value) -> Result<Self, SchedulerError> {
        let name = event.get("job").and_then(serde_json::Value::as_str);
        match name {
            Some("aging") => Ok(Job::Aging),
            Some("broken_promises") => Ok(Job::BrokenPromises),
            Some("missed_installments") => Ok(Job::MissedInstallments),
            Some("cleanup") => Ok(Job::Cleanup),
            _ => Err(SchedulerError::UnknownJob(
                name.map_or_else(|| "(none)".to_owned(), |n| format!("{n:?}")),
            )),
        }
    }
}

/// What a run did, by job; the invocation's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Report {
    Aging(aging::AgingReport),
    BrokenPromises(promises::PromiseReport),
    MissedInstallments(installments::InstallmentReport),
    Cleanup(cleanup::CleanupReport),
}

impl Report {
    /// The items the run changed: accounts aged, promises kept or broken, rows removed.
    pub fn changed(&self) -> u64 {
        match self {
            Report::Aging(r) => r.updated,
            Report::BrokenPromises(r) => r.kept + r.broken,
            Report::MissedInstallments(r) => r.missed + r.broken,
            Report::Cleanup(r) => r.connections_removed + r.idempotency_keys_deleted,
        }
    }
}

/// Runs the job the event names as of `now`, logs its report as one JSON line and returns
/// it.
pub async fn handle(
    app: &App,
    event: &serde_json::Value,
    now: Timestamp,
) -> Result<Report, SchedulerError> {
    let job = match Job::of_event(event) {
        Ok(job) => job,
        Err(err) => {
            tracing::error!(event = %event, error = %err, "scheduled event names no known job");
            return Err(err);
        }
    };
    let started = std::time::Instant::now();
    // Every write of the job is stamped `system:scheduler:<job>` (the audit trail's actor).
    let actor = shared::audit::Actor::system(&format!("scheduler:{}", job.as_str()));
    let result = shared::audit::acting(actor, async {
        match job {
            Job::Aging => aging::run(app, now.as_offset_date_time().date())
                .await
                .map(Report::Aging),
            Job::BrokenPromises => promises::run(app, now).await.map(Report::BrokenPromises),
            Job::MissedInstallments => installments::run(app, now)
                .await
                .map(Report::MissedInstallments),
            Job::Cleanup => cleanup::run(app, now).await.map(Report::Cleanup),
        }
    })
    .await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let dimensions = [(dimension::JOB, job.as_str())];
    metrics::record(&names::SCHEDULER_RUNS, &dimensions, 1.0);
    if let Ok(report) = &result {
        metrics::record(
            &names::SCHEDULER_ITEMS,
            &dimensions,
            report.changed() as f64,
        );
    }
    match &result {
        Ok(report) => {
            let report = serde_json::to_value(report).unwrap_or_default();
            tracing::info!(job = job.as_str(), duration_ms, report = %report, "scheduled job finished");
        }
        Err(err) => {
            tracing::error!(job = job.as_str(), duration_ms, error = %err, "scheduled job failed");
        }
    }
    result
}
