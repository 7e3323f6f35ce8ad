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

use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use futures::future::join_all;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use shared::accounts::keys::{account_pk, index_key};
use shared::accounts::model::format_date;
use shared::accounts::{Account, AccountStatus};
use shared::activities::{status_change, Activity, PROMISE_SHARDS};
use shared::domain::{Id, MinorUnits, Timestamp};
use shared::dynamo::retry::{backoff, cancellation_codes, CONFLICT_RETRIES};
use shared::dynamo::{for_each_page, read_all};
use shared::error::condition_held;
use shared::payments::{Payment, PaymentStatus};
use shared::ApiError;

use shared::dynamo::attributes::{n, s};

use crate::{system_actor, App};

/// The promises-by-date index.
pub const INDEX: &str = "promises-by-date";

/// Accounts settled at once.
const ACCOUNT_CONCURRENCY: usize = 8;

/// How much earlier than a promise a payment's id (its recording time) may be while its
/// `received_at` is still after the promise: `received_at` may lie up to a minute in the
/// future of the recording (client clock skew); five minutes is a safe bound. Only narrows
/// the payments Query; the decision uses `received_at`.
const RECORDING_SKEW_MS: u64 = 5 * 60 * 1000;

/// How a promise was settled (the `promise_state` attribute; part of the contract with the
/// dashboard aggregates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromiseState {
    Kept,
    Broken,
}

impl PromiseState {
    pub fn as_str(&self) -> &'static str {
        match self {
            PromiseState::Kept => "kept",
            PromiseState::Broken => "broken",
        }
    }
}

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
pub async fn run(app: &App, now: Timestamp) -> Result<PromiseReport, ApiError> {
    let today = now.as_offset_date_time().date();
    let shards = join_all((0..PROMISE_SHARDS).map(|shard| due_promises(app, shard, today))).await;
    let mut by_account: BTreeMap<Id, Vec<Activity>> = BTreeMap::new();
    for shard in shards {
        for promise in shard? {
            by_account
                .entry(promise.account_id)
                .or_default()
                .push(promise);
        }
    }
    let actor = system_actor()?;
    let results: Vec<Result<PromiseReport, ApiError>> = stream::iter(by_account)
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

/// The open promises of one shard dated before `today`, all pages.
async fn due_promises(app: &App, shard: u32, today: time::Date) -> Result<Vec<Activity>, ApiError> {
    let query = app
        .dynamodb
        .query()
        .table_name(app.tables.activities.as_str())
        .index_name(INDEX)
        // `<date>#...` sorts below `<today>` exactly when the date is before today.
        .key_condition_expression("promise_pk = :pk AND promise_sk < :today")
        .expression_attribute_values(":pk", s(format!("PROMISE#{shard}")))
        .expression_attribute_values(":today", s(format_date(today)));
    read_all(query, Activity::from_item).await
}

/// The debtor's time zone (UTC when the stored name is unknown or the account is gone).
fn zone_of(account: Option<&Account>) -> jiff::tz::TimeZone {
    account
        .and_then(|a| jiff::tz::db().get(&a.debtor_timezone).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC)
}

/// The calendar date of an instant in a time zone.
fn local_date(zone: &jiff::tz::TimeZone, at: Timestamp) -> Result<time::Date, ApiError> {
    let instant = jiff::Timestamp::from_second(at.unix_seconds()).map_err(ApiError::internal)?;
    let date = instant.to_zoned(zone.clone()).date();
    let month = time::Month::try_from(date.month() as u8).map_err(ApiError::internal)?;
    time::Date::from_calendar_date(i32::from(date.year()), month, date.day() as u8)
        .map_err(ApiError::internal)
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
) -> Result<PromiseReport, ApiError> {
    let mut report = PromiseReport::default();
    let mut account = app.accounts.get(account_id).await?;
    let zone = zone_of(account.as_ref());
    let local_today = local_date(&zone, now)?;
    let payments = match promises.iter().map(|p| p.created_at).min() {
        Some(earliest) => completed_payments(app, account_id, earliest).await?,
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
) -> Result<bool, ApiError> {
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

/// The completed payments of an account recorded since about `since` (payment ids are
/// ULIDs of their recording time, so this is a key range, not the whole history).
async fn completed_payments(
    app: &App,
    account_id: Id,
    since: Timestamp,
) -> Result<Vec<Payment>, ApiError> {
    let since_ms = since.as_offset_date_time().unix_timestamp_nanos() / 1_000_000;
    let since_ms = u64::try_from(since_ms)
        .unwrap_or(0)
        .saturating_sub(RECORDING_SKEW_MS);
    let from = ulid::Ulid::from_parts(since_ms, 0).to_string();
    let query = app
        .dynamodb
        .query()
        .table_name(app.tables.payments.as_str())
        .key_condition_expression("pk = :pk AND sk >= :from")
        .filter_expression("#status = :completed")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":pk", s(account_id.to_string()))
        .expression_attribute_values(":from", s(from))
        .expression_attribute_values(":completed", s(PaymentStatus::Completed.as_str()))
        .consistent_read(true);
    read_all(query, Payment::from_item).await
}

/// Whether the account has an open promise dated `today` or later (its own Query with a
/// filter on the open-promise key, strongly consistent).
async fn has_open_promise(app: &App, account_id: Id, today: time::Date) -> Result<bool, ApiError> {
    let query = app
        .dynamodb
        .query()
        .table_name(app.tables.activities.as_str())
        .key_condition_expression("pk = :pk")
        // Only open promises carry `promise_sk`, which starts with the promise date.
        .filter_expression("promise_sk >= :today")
        .expression_attribute_values(":pk", s(account_id.to_string()))
        .expression_attribute_values(":today", s(format_date(today)))
        .projection_expression("sk")
        .consistent_read(true);
    let mut found = false;
    for_each_page(query, |items| {
        found = !items.is_empty();
        Ok(!found)
    })
    .await?;
    Ok(found)
}

/// The settlement of a promise: its index keys go, its state and day are recorded, if the
/// keys are still there.
fn settlement(
    app: &App,
    promise: &Activity,
    state: PromiseState,
    today: time::Date,
) -> Result<Update, ApiError> {
    Update::builder()
        .table_name(app.tables.activities.as_str())
        .key("pk", s(promise.account_id.to_string()))
        .key("sk", s(promise.id.to_string()))
        .update_expression(
            "REMOVE promise_pk, promise_sk SET promise_state = :state, promise_settled_on = :today",
        )
        .condition_expression("attribute_exists(promise_pk)")
        .expression_attribute_values(":state", s(state.as_str()))
        .expression_attribute_values(":today", s(format_date(today)))
        .build()
        .map_err(ApiError::internal)
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
) -> Result<Settled, ApiError> {
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
            Some(a) if !has_open_promise(app, a.id, local_today).await? => Some(a),
            _ => None,
        };
        let update = settlement(app, promise, state, settled_on)?;
        let Some(observed) = observed else {
            let result = app
                .dynamodb
                .update_item()
                .table_name(update.table_name())
                .set_key(Some(update.key().clone()))
                .update_expression(update.update_expression())
                .set_condition_expression(update.condition_expression().map(str::to_owned))
                .set_expression_attribute_values(update.expression_attribute_values().cloned())
                .send()
                .await;
            return Ok(if condition_held(result)? {
                Settled::Done { reactivated: false }
            } else {
                Settled::Already
            });
        };
        let mut next = observed.clone();
        next.status = AccountStatus::Active;
        next.updated_at = now;
        next.version = observed.version + 1;
        let key = |name: &str| index_key(&next, name).unwrap_or_default();
        let account_update = Update::builder()
            .table_name(app.tables.accounts.as_str())
            .key("pk", s(account_pk(observed.id)))
            .update_expression(
                "SET #s = :active, status_pk = :spk, #v = #v + :one, updated_at = :now, updated_sk = :usk",
            )
            .condition_expression("#v = :v AND attribute_not_exists(deleted_at)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":active", s(AccountStatus::Active.as_str()))
            .expression_attribute_values(":spk", s(key("status_pk")))
            .expression_attribute_values(":usk", s(key("updated_sk")))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(now.to_string()))
            .expression_attribute_values(":v", n(observed.version))
            .build()
            .map_err(ApiError::internal)?;
        let mut moved = status_change(
            observed.id,
            observed.status,
            AccountStatus::Active,
            actor,
            now,
        );
        moved.note.push_str(" (broken promise)");
        let log = Put::builder()
            .table_name(app.tables.activities.as_str())
            .set_item(Some(moved.to_item()?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(ApiError::internal)?;
        let result = app
            .dynamodb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(TransactWriteItem::builder().update(account_update).build())
            .transact_items(TransactWriteItem::builder().put(log).build())
            .send()
            .await;
        let err = match result {
            Ok(_) => {
                *account = Some(next);
                return Ok(Settled::Done { reactivated: true });
            }
            Err(err) => err,
        };
        match cancellation_codes(&err).as_deref() {
            Some([first, ..]) if first == "ConditionalCheckFailed" => return Ok(Settled::Already),
            Some([_, second, ..]) if second == "ConditionalCheckFailed" => {
                // The account changed since it was read: read it again and decide again.
                *account = app.accounts.get(observed.id).await?;
            }
            Some(codes) if codes.iter().any(|c| c == "TransactionConflict") => {
                tokio::time::sleep(backoff(attempts)).await;
            }
            _ => return Err(err.into()),
        }
        attempts += 1;
        if attempts > CONFLICT_RETRIES {
            return Err(ApiError::unavailable(format!(
                "account {} kept changing while its broken promise was settled; the next run retries",
                observed.id
            )));
        }
    }
}
