//! Activities: `POST/GET /accounts/{id}/activities`, `POST /activities/batch`.
//!
//! - **Log** (`POST`, admin / manager / agent on its own accounts): `type` ∈ call, email,
//!   sms, letter, note, promise_to_pay, dispute (`status_change` and `payment` are written
//!   by the system only: `400`); `note` ≤ 2,000 characters (newlines allowed); `outcome`
//!   only on calls (right_party_contact, no_answer, left_message, wrong_number). A
//!   `promise_to_pay` needs `promise_amount` (1..=balance; above the balance is a `422`) and
//!   `promise_date` from the debtor's today (in `debtor_timezone`) to 90 days later (else
//!   `400`), and moves the account to `promise_to_pay`; a `dispute` moves it to `disputed`.
//!   The status move (version bump, a `status_change` activity) is in the same transaction as
//!   the activity. Open promises carry the sparse `promises-by-date` keys
//!   (`shared::activities::promise_keys`).
//! - **Call compliance** (Regulation F, 12 CFR 1006.14(b) and 1006.6(b)(1)(i)): a call is
//!   refused with a `422` naming the rule when the debtor's local time is before 08:00 or
//!   after 21:00 (`call-outside-hours`), the account had a right-party conversation in the
//!   last 7 days (`call-after-conversation`), or already has 7 call attempts in the last 7
//!   days (`call-frequency-limit`). The attempts live in one call-log item per account
//!   (`sk = CALLS`: attempt times of the last 7 days, last right-party contact, version),
//!   written in the same transaction as the call under a condition on its version: counting
//!   is exact under any concurrency (a lost race reads again and re-checks).
//! - **Timeline** (`GET`, every role; agents only their accounts): newest first (ULID order),
//!   signed cursors, `limit` 1..100 (default 25), `type` filter.
//! - **Batch** (`POST /activities/batch`, every role): `{account_ids: [≤ 100], limit: 1..=50
//!   (default 10)}` → the latest `limit` activities of each account: one `BatchGetItem` for
//!   the accounts, then the Queries in parallel (at most 16 at once). Unknown, deleted and
//!   (for agents) unassigned ids are reported per id in `errors`, not a failure of the call.
//!
//! "Now" is a parameter of [`dispatch`], so tests are deterministic.

use std::collections::{HashMap, HashSet};

use futures::stream::{self, StreamExt};
use http::header::CACHE_CONTROL;
use http::{HeaderValue, StatusCode};
use lambda_http::Request;
use serde::{Deserialize, Serialize};
use shared::accounts::model::{format_date, parse_date};
use shared::accounts::{readable, rules, writable, Account, AccountRepo, AccountStatus};
use shared::activities::{Activity, ActivityStore, ActivityType, CallOutcome};
use shared::auth::{authorize, Action, BearerSecurity, Caller, Role, Scope};
use shared::domain::{Id, MinorUnits, Timestamp};
use shared::error::FieldError;
use shared::http::{
    json, page_limit, path_param, route_key, unknown_route, HttpResult, Validation, MAX_PAGE_LIMIT,
};
use shared::metrics;
use shared::metrics::names::{self, dimension};
use shared::platform::{InitError, Platform};
use shared::validation::check_amount;
use shared::ApiError;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// Calls are allowed from 08:00 to 21:00 debtor-local time.
pub const CALL_HOURS: (u32, u32) = (8, 21);
/// The longest note.
pub const MAX_NOTE_CHARS: usize = 2000;
/// How far ahead a promise may be dated.
pub const MAX_PROMISE_DAYS: i64 = 90;
/// Accounts per batch call, activities per account in a batch, parallel Queries.
pub const MAX_BATCH_IDS: usize = 100;
pub const MAX_BATCH_LIMIT: usize = 50;
pub const BATCH_PARALLELISM: usize = 16;

/// The shared platform (config, clients, authenticator, cursors, rate limits) and the
/// stores this function reads and writes through, built once per cold start.
pub struct App {
    pub platform: Platform,
    pub accounts: AccountRepo,
    pub activities: ActivityStore,
}

impl App {
    pub fn new(platform: Platform) -> Self {
        let tables = &platform.config.tables;
        let client = &platform.clients.dynamodb;
        Self {
            accounts: AccountRepo::new(
                client.clone(),
                tables.accounts.clone(),
                tables.activities.clone(),
            ),
            activities: ActivityStore::new(
                client.clone(),
                tables.accounts.clone(),
                tables.activities.clone(),
            ),
            platform,
        }
    }

    pub async fn from_env() -> Result<Self, InitError> {
        Ok(Self::new(
            Platform::from_env(|tables| &tables.activities).await?,
        ))
    }
}

/// The HTTP API of this function, merged into `/openapi.json` by the docs function.
#[derive(OpenApi)]
#[openapi(
    paths(log_activity, timeline, batch),
    components(schemas(LogActivityBody, ActivityPage, BatchBody, BatchAnswer, BatchResult, BatchError, Activity, ActivityType, CallOutcome)),
    modifiers(&BearerSecurity),
    tags((name = "activities", description = "Account timelines: calls, emails, letters, notes, promises, disputes"))
)]
pub struct ApiDoc;

/// Authenticates the caller and routes the request.
pub async fn handle(app: &App, req: Request) -> HttpResult {
    let caller = app.platform.authenticator.authenticate(&req).await?;
    dispatch(app, &caller, req, Timestamp::now()).await
}

/// Routes a request of an authenticated caller; `now` is injectable for tests.
pub async fn dispatch(app: &App, caller: &Caller, req: Request, now: Timestamp) -> HttpResult {
    match route_key(&req).as_str() {
        "POST /accounts/{id}/activities" => log_activity(app, caller, &req, now).await,
        "GET /accounts/{id}/activities" => timeline(app, caller, &req).await,
        "POST /activities/batch" => batch(app, caller, &req).await,
        other => Err(unknown_route(other)),
    }
}

fn with_cache(mut response: lambda_http::Response<lambda_http::Body>) -> HttpResult {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(response)
}

// ------------------------------------------------------------------ log

/// An activity to log.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogActivityBody {
    /// call, email, sms, letter, note, promise_to_pay, dispute.
    #[serde(rename = "type")]
    pub activity_type: ActivityType,
    /// ≤ 2,000 characters.
    #[serde(default)]
    pub note: Option<String>,
    /// Calls only.
    #[serde(default)]
    pub outcome: Option<CallOutcome>,
    /// Promises only: minor units, 1..=balance (and at most 10^12,
    /// `shared::validation::MAX_AMOUNT`).
    #[serde(default)]
    #[schema(value_type = Option<shared::domain::Amount>)]
    pub promise_amount: Option<MinorUnits>,
    /// Promises only: `YYYY-MM-DD`, from the debtor's today to 90 days later.
    #[serde(default)]
    #[schema(format = Date)]
    pub promise_date: Option<String>,
}

/// A log request that passed the checks that need no account.
#[derive(Debug, Clone)]
pub struct NewActivity {
    pub activity_type: ActivityType,
    pub note: String,
    pub outcome: Option<CallOutcome>,
    pub promise: Option<(MinorUnits, time::Date)>,
}

/// Validates a log body (`400` listing every bad field).
pub fn validate_log(body: LogActivityBody) -> Result<NewActivity, ApiError> {
    let mut v = Validation::new();
    let kind = body.activity_type;
    if kind.is_system() {
        v.add(
            "type",
            "status_change, payment and field_change activities are written by the system only",
        );
    }
    let note = body.note.unwrap_or_default().trim().to_owned();
    if note.chars().count() > MAX_NOTE_CHARS {
        v.add(
            "note",
            format!("must be at most {MAX_NOTE_CHARS} characters"),
        );
    } else if note
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        v.add("note", "must not contain control characters");
    }
    if body.outcome.is_some() && kind != ActivityType::Call {
        v.add("outcome", "only calls have an outcome");
    }
    let mut promise = None;
    if kind == ActivityType::PromiseToPay {
        let amount = match body.promise_amount {
            None => {
                v.add("promise_amount", "a promise to pay needs an amount");
                None
            }
            Some(a) => check_amount(&mut v, "promise_amount", a, 1).then_some(a),
        };
        let date = match body.promise_date.as_deref() {
            None => {
                v.add("promise_date", "a promise to pay needs a date");
                None
            }
            Some(raw) => v.check("promise_date", parse_date(raw.trim())),
        };
        if let (Some(amount), Some(date)) = (amount, date) {
            promise = Some((amount, date));
        }
    } else {
        if body.promise_amount.is_some() {
            v.add(
                "promise_amount",
                "only a promise_to_pay has a promise amount",
            );
        }
        if body.promise_date.is_some() {
            v.add("promise_date", "only a promise_to_pay has a promise date");
        }
    }
    v.finish()?;
    Ok(NewActivity {
        activity_type: kind,
        note,
        outcome: body.outcome,
        promise,
    })
}

/// The debtor's local date and time at `now` (`422` when the time zone is unusable).
pub fn debtor_local(account: &Account, now: Timestamp) -> Result<jiff::Zoned, ApiError> {
    let zone = jiff::tz::db().get(&account.debtor_timezone).map_err(|_| {
        ApiError::unprocessable(
            "unknown-timezone",
            format!(
                "the account's debtor_timezone {} is not a known time zone",
                account.debtor_timezone
            ),
        )
    })?;
    let instant = jiff::Timestamp::from_second(now.unix_seconds()).map_err(ApiError::internal)?;
    Ok(instant.to_zoned(zone))
}

/// Whether a local time is inside the calling hours (08:00 to 21:00 inclusive).
pub fn within_call_hours(local: &jiff::Zoned) -> bool {
    let minutes = i32::from(local.hour()) * 60 + i32::from(local.minute());
    let seconds = minutes * 60 + i32::from(local.second());
    let (open, close) = CALL_HOURS;
    seconds >= (open as i32) * 3600 && seconds <= (close as i32) * 3600
}

/// Logs an activity.
#[utoipa::path(post, path = "/accounts/{id}/activities", tag = "activities", request_body = LogActivityBody,
    params(("id" = shared::domain::Id, Path, description = "Account id (ULID)")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Logged", body = Activity),
        (status = 400, description = "Invalid field, system-only type, promise date out of range", body = shared::error::Problem),
        (status = 403, description = "Role may not log, or not the agent's account", body = shared::error::Problem),
        (status = 404, description = "No such account", body = shared::error::Problem),
        (status = 409, description = "Contention on the account; retry", body = shared::error::Problem),
        (status = 422, description = "Call refused by Regulation F (reason in type and detail), promise above balance", body = shared::error::Problem)))]
pub async fn log_activity(app: &App, caller: &Caller, req: &Request, now: Timestamp) -> HttpResult {
    let scope = authorize(caller, Action::LogActivity)?;
    let account_id: Id = path_param(req, "id")?;
    app.platform
        .limiter
        .check_user_write(caller, app.platform.limits.write_per_user)
        .await?;
    let body: LogActivityBody = shared::http::json_body(req)?;
    let new = validate_log(body)?;
    let activity = log(app, caller, &scope, account_id, new, now)
        .await
        .inspect_err(count_compliance_refusal)?;
    let dimensions = [(dimension::ACTIVITY_TYPE, activity.activity_type.as_str())];
    metrics::record(&names::ACTIVITIES_LOGGED, &dimensions, 1.0);
    json(StatusCode::CREATED, &activity)
}

/// Counts Regulation F's refusals: a call outside the debtor's hours, over the 7-in-7
/// attempts, or within 7 days of a conversation.
fn count_compliance_refusal(err: &ApiError) {
    if matches!(
        err.code,
        "call-outside-hours" | "call-frequency-limit" | "call-after-conversation"
    ) {
        metrics::count(&names::REGULATION_F_REFUSALS);
    }
}

/// The logging itself (what [`log_activity`] does after parsing).
pub async fn log(
    app: &App,
    caller: &Caller,
    scope: &Scope,
    account_id: Id,
    new: NewActivity,
    now: Timestamp,
) -> Result<Activity, ApiError> {
    let account = writable(app.accounts.get(account_id).await?, scope, account_id)?;
    let local = debtor_local(&account, now)?;
    let mut activity = Activity {
        id: Id::generate(),
        account_id,
        activity_type: new.activity_type,
        note: new.note,
        promise_amount: None,
        promise_date: None,
        outcome: new.outcome.map(|o| o.as_str().to_owned()),
        actor_id: caller.user_id,
        created_at: now,
    };
    match new.activity_type {
        ActivityType::Call => {
            if !within_call_hours(&local) {
                return Err(ApiError::unprocessable(
                    "call-outside-hours",
                    format!(
                        "it is {} for the debtor ({}); calls are allowed from 08:00 to 21:00 debtor time (12 CFR 1006.6(b)(1)(i))",
                        local.strftime("%H:%M"),
                        account.debtor_timezone
                    ),
                ));
            }
            app.activities.log_call(&activity, new.outcome, now).await?;
        }
        ActivityType::PromiseToPay | ActivityType::Dispute => {
            let target = if new.activity_type == ActivityType::Dispute {
                AccountStatus::Disputed
            } else {
                AccountStatus::PromiseToPay
            };
            if let Some((amount, date)) = new.promise {
                let today = local.date();
                let today = time::Date::from_calendar_date(
                    i32::from(today.year()),
                    time::Month::try_from(today.month() as u8).map_err(ApiError::internal)?,
                    today.day() as u8,
                )
                .map_err(ApiError::internal)?;
                let latest = today + time::Duration::days(MAX_PROMISE_DAYS);
                if date < today || date > latest {
                    return Err(ApiError::invalid_field(
                        "promise_date",
                        format!(
                            "must be from {} (the debtor's today) to {}",
                            format_date(today),
                            format_date(latest)
                        ),
                    ));
                }
                activity.promise_amount = Some(amount);
                activity.promise_date = Some(date);
            }
            app.activities
                .move_account(account, &activity, target, now, |observed| {
                    move_allowed(caller.role, observed, &activity, target)
                })
                .await?;
        }
        _ => app.activities.put(&activity).await?,
    }
    Ok(activity)
}

/// Whether a promise or dispute may move the `observed` account to `target`. The move
/// obeys the same rules as a PATCH of the status (`shared::accounts::rules::status_refusal`):
/// an agent's promise or dispute cannot take an account out of `disputed`, `paid`, `closed`
/// or `payment_plan` — logging a promise is not a way around "an agent never clears a
/// dispute" (`403` naming `type`). A promise must not exceed the balance (`422`).
fn move_allowed(
    role: Role,
    observed: &Account,
    activity: &Activity,
    target: AccountStatus,
) -> Result<(), ApiError> {
    if let Some(why) = rules::status_refusal(role, observed.status, target) {
        return Err(ApiError::forbidden(format!(
            "this {} would move the account from {} to {target}: {why}",
            activity.activity_type.as_str(),
            observed.status
        ))
        .with_errors(vec![FieldError::new("type", why)]));
    }
    match activity.promise_amount {
        Some(amount) if amount > observed.balance => Err(ApiError::unprocessable(
            "promise-exceeds-balance",
            format!(
                "the promise ({amount}) is more than the balance ({})",
                observed.balance
            ),
        )),
        _ => Ok(()),
    }
}

// ------------------------------------------------------------------ timeline

/// Query parameters of `GET /accounts/{id}/activities`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimelineQuery {
    /// 1..100, default 25.
    #[param(value_type = Option<shared::domain::PageLimit>)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// One activity type.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<ActivityType>)]
    pub activity_type: Option<String>,
}

/// A page of activities, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActivityPage {
    pub items: Vec<Activity>,
    pub next_cursor: Option<String>,
}

/// The timeline of an account, newest first.
#[utoipa::path(get, path = "/accounts/{id}/activities", tag = "activities",
    params(("id" = shared::domain::Id, Path, description = "Account id (ULID)"), TimelineQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of activities, newest first", body = ActivityPage),
        (status = 400, description = "Bad limit, type or cursor", body = shared::error::Problem),
        (status = 404, description = "No such account, or not the agent's", body = shared::error::Problem)))]
pub async fn timeline(app: &App, caller: &Caller, req: &Request) -> HttpResult {
    let scope = authorize(caller, Action::ReadActivities)?;
    let account_id: Id = path_param(req, "id")?;
    let query: TimelineQuery = shared::http::query(req)?;
    let mut v = Validation::new();
    let limit = page_limit(&mut v, query.limit.as_deref(), MAX_PAGE_LIMIT);
    let kind = query
        .activity_type
        .as_deref()
        .and_then(|t| v.check("type", t.parse::<ActivityType>()));
    v.finish()?;
    let cursor_scope = format!(
        "activities:{account_id}:{}",
        kind.map(|k| k.as_str()).unwrap_or("")
    );
    let after: Option<String> = app
        .platform
        .cursors
        .resume(&cursor_scope, query.cursor.as_deref())?;
    readable(app.accounts.get(account_id).await?, &scope, account_id)?;
    let (items, next) = app
        .activities
        .timeline(account_id, kind, after, limit)
        .await?;
    let next_cursor = app.platform.cursors.next(&cursor_scope, next.as_ref())?;
    with_cache(json(StatusCode::OK, &ActivityPage { items, next_cursor })?)
}

// ------------------------------------------------------------------ batch

/// The accounts whose latest activities to fetch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// 1 to 100 account ids (duplicates are answered once).
    #[schema(min_items = 1, max_items = 100, value_type = Vec<Id>)]
    pub account_ids: Vec<String>,
    /// Activities per account, 1..=50, default 10.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 50)]
    pub limit: Option<usize>,
}

/// The latest activities of one account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResult {
    pub account_id: Id,
    pub activities: Vec<Activity>,
}

/// An account the batch could not answer: `reason` is `not_found` or `forbidden`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchError {
    pub account_id: Id,
    pub reason: String,
    pub message: String,
}

/// The answer of a batch: results and per-id errors, each in request order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchAnswer {
    pub results: Vec<BatchResult>,
    pub errors: Vec<BatchError>,
}

/// The latest activities of many accounts in one call.
#[utoipa::path(post, path = "/activities/batch", tag = "activities", request_body = BatchBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Per account: its latest activities, or why not", body = BatchAnswer),
        (status = 400, description = "No ids, more than 100, a malformed id, bad limit", body = shared::error::Problem)))]
pub async fn batch(app: &App, caller: &Caller, req: &Request) -> HttpResult {
    let scope = authorize(caller, Action::ReadActivities)?;
    let body: BatchBody = shared::http::json_body(req)?;
    let mut v = Validation::new();
    if body.account_ids.is_empty() || body.account_ids.len() > MAX_BATCH_IDS {
        v.add("account_ids", format!("must hold 1 to {MAX_BATCH_IDS} ids"));
    }
    let limit = body.limit.unwrap_or(10);
    if !(1..=MAX_BATCH_LIMIT).contains(&limit) {
        v.add(
            "limit",
            format!("must be an integer from 1 to {MAX_BATCH_LIMIT}"),
        );
    }
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    // Over the cap the list is one error: its items are not checked one by one.
    let items = if body.account_ids.len() > MAX_BATCH_IDS {
        &[][..]
    } else {
        &body.account_ids[..]
    };
    for (i, raw) in items.iter().enumerate() {
        if let Some(id) = v.check(&format!("account_ids[{i}]"), raw.trim().parse::<Id>()) {
            if seen.insert(id) {
                ids.push(id);
            }
        }
    }
    v.finish()?;
    let answer = batch_timelines(app, &scope, &ids, limit).await?;
    with_cache(json(StatusCode::OK, &answer)?)
}

/// The latest `limit` activities of each of `ids`, with per-id errors.
pub async fn batch_timelines(
    app: &App,
    scope: &Scope,
    ids: &[Id],
    limit: usize,
) -> Result<BatchAnswer, ApiError> {
    let live = app.activities.live_accounts(ids).await?;
    let mut errors = Vec::new();
    let mut readable = Vec::new();
    for id in ids {
        match live.get(id) {
            None => errors.push(BatchError {
                account_id: *id,
                reason: "not_found".into(),
                message: format!("no account {id}"),
            }),
            Some(agent) => match scope {
                Scope::Assigned(me) if *agent != Some(*me) => errors.push(BatchError {
                    account_id: *id,
                    reason: "forbidden".into(),
                    message: "not an account assigned to you".into(),
                }),
                _ => readable.push(*id),
            },
        }
    }
    let mut pages: HashMap<Id, Vec<Activity>> = HashMap::new();
    let mut fetched = stream::iter(readable.iter().copied())
        .map(|id| async move { (id, app.activities.timeline(id, None, None, limit).await) })
        .buffer_unordered(BATCH_PARALLELISM);
    while let Some((id, page)) = fetched.next().await {
        pages.insert(id, page?.0);
    }
    let results = readable
        .iter()
        .map(|id| BatchResult {
            account_id: *id,
            activities: pages.remove(id).unwrap_or_default(),
        })
        .collect();
    Ok(BatchAnswer { results, errors })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_types_and_misplaced_fields_are_refused() {
        let body = |json: &str| validate_log(shared::http::parse_json(json.as_bytes()).unwrap());
        assert!(body(r#"{"type":"payment"}"#).is_err());
        assert!(body(r#"{"type":"status_change"}"#).is_err());
        assert!(body(r#"{"type":"note","outcome":"no_answer"}"#).is_err());
        assert!(body(r#"{"type":"promise_to_pay","promise_amount":5}"#).is_err());
        assert!(body(
            r#"{"type":"promise_to_pay","promise_amount":0,"promise_date":"2030-01-01"}"#
        )
        .is_err());
        assert!(body(&format!(
            r#"{{"type":"note","note":"{}"}}"#,
            "x".repeat(2001)
        ))
        .is_err());
        assert!(body(r#"{"type":"note","note":"line\nline"}"#).is_ok());
        assert!(body(r#"{"type":"call","outcome":"left_message"}"#).is_ok());
    }
}
