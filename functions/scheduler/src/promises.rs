//! Settles promises to pay whose date has passed: `kept` or `broken`.
//!
//! Open promises carry the sparse `promises-by-date` keys (`promise_pk = PROMISE#<0..7>`,
//! `promise_sk = <promise date>#<account id>#<activity id>`,
//! `shared::activities::promise_keys`), so the promises due for settlement are one Query per
//! shard (`promise_sk < <today>`), never a Scan.
//!
//! A promise is **kept** when the account's completed payments received after the promise
//! was made and on or before its date (in the debtor's time zone) add up to the promised
//! amount, or the account is paid off (balance 0); otherwise it is **broken**. Each payment
//! is weighed against each promise on its own: one payment can keep two overlapping
//! promises it covers. A promise whose date is still today in the debtor's time zone (a
//! debtor west of UTC when the job runs just after midnight UTC) waits for the next run.
//!
//! Settling removes the index keys and sets `promise_state` (`kept` | `broken`) and
//! `promise_settled_on` (`YYYY-MM-DD`, the run's UTC day) on the activity item, conditional
//! on the keys still being there — the dashboard aggregates count promises from exactly
//! these two attributes. A broken promise of an account in `promise_to_pay` with no other
//! open promise dated today or later also returns the account to `active` (version bump,
//! status index key moved, a `status_change` activity by [`crate::SYSTEM_ACTOR`] noted
//! "(broken promise)") in the same `TransactWriteItems` as the settlement, conditional on
//! the account's version: a crash leaves either both or neither, and a lost race re-reads
//! the account and decides again. A second run finds no keys and changes nothing.

use std::collections::BTreeMap;

use crate::SchedulerError;
use futures::future::join_all;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use shared::accounts::{Account, AccountStatus};
use shared::activities::{status_change, Activity, PROMISE_SHARDS};
use shared::domain::{Id, MinorUnits, Timestamp};
use shared::dynamo::retry::{backoff, CONFLICT_RETRIES};
use shared::dynamo::DataError;
use shared::payments::Payment;
use shared::promises::{PromiseState, Reactivation};

use crate::{system_actor, App};

/// Accounts settled at once.
const ACCOUNT_CONCURRENCY: usize = 8;

/// What a broken-promises run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PromiseReport {
    /// Open promises dated before today (UTC) found on the index.
    pub examined: u64,
    pub kept: u64,
    pub broken: u64,
    /// Accounts returned from `promise_to_pay` to `active` by a broken promise.
    pub reactivated: u64,
    /// Promises whose date is still today in the debtor's time zone: left for the next run.
    pub deferred: u64,
    /// Promises another run settled between our Query and our write.
    pub already_settled: u64,
}

impl PromiseReport {
    fn add(&mut self, other: PromiseReport) {
        self.examined += other.examined;
        self.kept += other.kept;
        self.broken += other.broken;
        self.reactivated += other.reactivated;
        self.deferred += other.deferred;
        self.already_settled += other.already_settled;
    }
}

/// Settles every open promise dated before the UTC day of `now`.
pub async fn run(app: &App, now: Timestamp) -> Result<PromiseReport, SchedulerError> {
    let today = now.as_offset_date_time().date();
    let shards = join_all((0..PROMISE_SHARDS).map(|shard| app.promises.due(shard, today))).await;
    let mut by_account: BTreeMap<Id, Vec<Activity>> = BTreeMap::new();
    for shard in shards {
        for promise in shard? {
            by_account
                .entry(promise.account_id)
                .or_default()
                .push(promise);
        }
    }
    let actor = system_actor();
    let results: Vec<Result<PromiseReport, SchedulerError>> = stream::iter(by_account)
        .map(|(account, mut promises)| async move {
            promises.sort_by_key(|p| (p.promise_date, p.id));
            settle_account(app, account, &promises, now, actor).await
        })
        .buffer_unordered(ACCOUNT_CONCURRENCY)
        .collect()
        .await;
    let mut report = PromiseReport::default();
    for result in results {
        report.add(result?);
    }
    Ok(report)
}

/// The debtor's time zone (UTC when the stored name is unknown or the account is gone).
fn zone_of(account: Option<&Account>) -> jiff::tz::TimeZone {
    account
        .and_then(|a| jiff::tz::db().get(&a.debtor_timezone).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC)
}

/// The calendar date of an instant in a time zone.
fn local_date(zone: &jiff::tz::TimeZone, at: Timestamp) -> Result<time::Date, SchedulerError> {
    let instant = jiff::Timestamp::from_second(at.unix_seconds())
        .map_err(|err| SchedulerError::Calendar(err.to_string()))?;
    let date = instant.to_zoned(zone.clone()).date();
    let month = time::Month::try_from(date.month() as u8)
        .map_err(|err| SchedulerError::Calendar(err.to_string()))?;
    time::Date::from_calendar_date(i32::from(date.year()), month, date.day() as u8)
        .map_err(|err| SchedulerError::Calendar(err.to_string()))
}

/// How one settlement ended.
enum Settled {
    /// Written by this run; `reactivated`: the account went back to `active` with it.
    Done { reactivated: bool },
    /// Another run removed the keys first.
    Already,
}

/// Settles the due promises of one account, oldest date first.
async fn settle_account(
    app: &App,
    account_id: Id,
    promises: &[Activity],
    now: Timestamp,
    actor: Id,
) -> Result<PromiseReport, SchedulerError> {
    let mut report = PromiseReport::default();
    let mut account = app.accounts.get(account_id).await?;
    let zone = zone_of(account.as_ref());
    let local_today = local_date(&zone, now)?;
    let payments = match promises.iter().map(|p| p.created_at).min() {
        Some(earliest) => {
            app.promises
                .completed_payments(account_id, earliest)
                .await?
        }
        None => Vec::new(),
    };
    for promise in promises {
        report.examined += 1;
        let Some(date) = promise.promise_date else {
            tracing::warn!(account_id = %account_id, activity_id = %promise.id, "an indexed promise has no promise_date; left alone");
            continue;
        };
        if date >= local_today {
            report.deferred += 1;
            continue;
        }
        let state = if kept(account.as_ref(), &payments, promise, date, &zone)? {
            PromiseState::Kept
        } else {
            PromiseState::Broken
        };
        match settle(app, promise, state, &mut account, now, local_today, actor).await? {
            Settled::Done { reactivated } => {
                match state {
                    PromiseState::Kept => report.kept += 1,
                    PromiseState::Broken => report.broken += 1,
                }
                if reactivated {
                    report.reactivated += 1;
                }
            }
            Settled::Already => report.already_settled += 1,
        }
    }
    Ok(report)
}

/// Whether the promise was kept: the account is paid off, or the completed payments
/// received from the promise's making to the end of its date (debtor's time) cover it.
fn kept(
    account: Option<&Account>,
    payments: &[Payment],
    promise: &Activity,
    date: time::Date,
    zone: &jiff::tz::TimeZone,
) -> Result<bool, SchedulerError> {
    if account.is_some_and(|a| a.status == AccountStatus::Paid || a.balance == MinorUnits(0)) {
        return Ok(true);
    }
    let promised = promise.promise_amount.map_or(0, |a| a.0);
    let mut paid: i64 = 0;
    for payment in payments {
        if payment.received_at >= promise.created_at
            && local_date(zone, payment.received_at)? <= date
        {
            paid = paid.saturating_add(payment.amount.0);
        }
    }
    Ok(paid >= promised)
}

/// Writes one settlement: alone, or with the account's return to `active` when the
/// promise is broken and nothing else keeps the account in `promise_to_pay`.
async fn settle(
    app: &App,
    promise: &Activity,
    state: PromiseState,
    account: &mut Option<Account>,
    now: Timestamp,
    local_today: time::Date,
    actor: Id,
) -> Result<Settled, SchedulerError> {
    let settled_on = now.as_offset_date_time().date();
    let mut attempts = 0_u32;
    loop {
        let candidate = match (state, account.as_ref()) {
            (PromiseState::Broken, Some(a))
                if a.deleted_at.is_none() && a.status == AccountStatus::PromiseToPay =>
            {
                Some(a.clone())
            }
            _ => None,
        };
        let observed = match candidate {
            Some(a) if !app.promises.has_open_promise(a.id, local_today).await? => Some(a),
            _ => None,
        };
        let Some(observed) = observed else {
            return Ok(if app.promises.settle(promise, state, settled_on).await? {
                Settled::Done { reactivated: false }
            } else {
                Settled::Already
            });
        };
        let mut next = observed.clone();
        next.status = AccountStatus::Active;
        next.updated_at = now;
        next.version = observed.version + 1;
        let mut moved = status_change(
            observed.id,
            observed.status,
            AccountStatus::Active,
            actor,
            now,
        );
        moved.note.push_str(" (broken promise)");
        match app
            .promises
            .settle_and_reactivate(promise, settled_on, &observed, &next, &moved)
            .await?
        {
            Reactivation::Done => {
                *account = Some(next);
                return Ok(Settled::Done { reactivated: true });
            }
            Reactivation::AlreadySettled => return Ok(Settled::Already),
            // The account changed since it was read: read it again and decide again.
            Reactivation::AccountChanged => *account = app.accounts.get(observed.id).await?,
            Reactivation::Conflict => tokio::time::sleep(backoff(attempts)).await,
        }
        attempts += 1;
        if attempts > CONFLICT_RETRIES {
            return Err(DataError::unavailable(format!(
                "account {} kept changing while its broken promise was settled; the next run retries",
                observed.id
            ))
            .into());
        }
    }
}
