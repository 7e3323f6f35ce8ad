//! Payment plans: `POST /accounts/{id}/plans`, `GET /accounts/{id}/plans`,
//! `POST /accounts/{id}/plans/{plan_id}/cancel`.
//!
//! They live in the payments function because the ledger applies every completed payment,
//! refund and reversal to the account's active plan in the payment's own transaction
//! (`shared::payments::ledger`): one function owns the Plans table's writes with the
//! payments' (see `shared::payments::plans` for the item layout).
//!
//! - **Create** (admin, manager, agent on its own accounts; viewers `403`): `frequency`
//!   (`weekly` | `biweekly` | `monthly`), `first_due_date` (`YYYY-MM-DD`, today (UTC) to a
//!   year ahead), exactly one of `installment_count` (1..=120, equal amounts, the last takes
//!   the remainder) and `installment_amount` (the last is what remains), optional
//!   `total_amount` (default: the balance; never above it) and `currency` (must be the
//!   account's). One transaction writes the plan as the account's only active plan
//!   (`409 plan-exists` when there is one), moves the account to `payment_plan` conditional
//!   on the version read (re-read and re-checked when it moved) and logs the
//!   `status_change`. Refused with `409 account-not-open` (field `status`) on a `paid`,
//!   `closed` or `disputed` account; a deleted account is a `404` like everywhere else.
//!   `Idempotency-Key` is optional here (the one-active-plan rule already refuses a blind
//!   retry with a `409`); with one, a retry answers the first `201` as payments do.
//! - **List** (every role; agents their accounts): `{items, next_cursor: null}`, the
//!   active plan first then the ended ones newest first (an account has a handful), each
//!   with its schedule: due date, amount, paid amount, status (`due`, `partly_paid`,
//!   `paid`, `missed`).
//! - **Cancel** (as create; `If-Match` = the plan's ETag, `428` without, `412` stale):
//!   ends the active plan as `cancelled` and moves an account in `payment_plan` back to
//!   `active` with a `status_change`, in one transaction. An ended plan is a `409`.

use http::header::{CACHE_CONTROL, ETAG, LOCATION};
use http::{HeaderValue, StatusCode};
use lambda_http::Request;
use serde::{Deserialize, Serialize};
use shared::accounts::model::parse_date;
use shared::accounts::{not_found, readable, writable, Account, AccountStatus};
use shared::activities::status_change;
use shared::auth::{authorize, Action, Caller};
use shared::domain::{Currency, Id, MinorUnits, Timestamp};
use shared::dynamo::retry::{backoff, CONFLICT_RETRIES};
use shared::error::FieldError;
use shared::http::{header, json, path_param, route_key, HttpResult, Validation};
use shared::idempotency;
use shared::payments::plans::schedule::{self, Split};
use shared::payments::plans::{Frequency, Plan, PlanStatus, PlanView, WriteOutcome};
use shared::validation::check_amount;
use shared::ApiError;
use utoipa::ToSchema;

use crate::{acquired, if_match, settle_claim, App};

/// How far ahead a plan's first installment may be.
pub const MAX_FIRST_DUE_DAYS: i64 = 366;

/// A plan to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlanBody {
    pub frequency: Frequency,
    /// `YYYY-MM-DD`, from today (UTC) to a year ahead.
    #[schema(value_type = String, format = Date, example = "2027-01-15")]
    pub first_due_date: String,
    /// 1..=120 installments of equal amounts (the last takes the remainder). Give this or
    /// `installment_amount`.
    #[schema(minimum = 1, maximum = 120)]
    pub installment_count: Option<u32>,
    /// Minor units per installment (the last is what remains). Give this or
    /// `installment_count`.
    #[schema(value_type = Option<shared::domain::Amount>)]
    pub installment_amount: Option<MinorUnits>,
    /// Minor units the plan covers; default the account's balance, never above it.
    #[schema(value_type = Option<shared::domain::Amount>)]
    pub total_amount: Option<MinorUnits>,
    /// ISO 4217; when given, must be the account's currency.
    #[schema(value_type = Option<String>, example = "USD")]
    pub currency: Option<Currency>,
}

/// A validated plan request (what does not depend on the account).
#[derive(Debug, Clone)]
pub struct NewPlan {
    pub frequency: Frequency,
    pub first_due_date: time::Date,
    pub split: Split,
    pub total_amount: Option<MinorUnits>,
    pub currency: Option<Currency>,
}

/// Validates a create body (`400` listing every bad field).
pub fn validate_plan(body: CreatePlanBody, now: Timestamp) -> Result<NewPlan, ApiError> {
    let mut v = Validation::new();
    let today = now.as_offset_date_time().date();
    let first = v.check("first_due_date", parse_date(&body.first_due_date));
    if let Some(first) = first {
        if first < today {
            v.add("first_due_date", "must be today or later");
        } else if (first - today).whole_days() > MAX_FIRST_DUE_DAYS {
            v.add(
                "first_due_date",
                format!("must be within {MAX_FIRST_DUE_DAYS} days"),
            );
        }
    }
    let split = match (body.installment_count, body.installment_amount) {
        (Some(count), None) => Some(Split::Count(count)),
        (None, Some(amount)) => {
            check_amount(&mut v, "installment_amount", amount, 1).then_some(Split::Amount(amount))
        }
        (Some(_), Some(_)) => {
            v.add(
                "installment_amount",
                "give installment_count or installment_amount, not both",
            );
            None
        }
        (None, None) => {
            v.add(
                "installment_count",
                "give installment_count or installment_amount",
            );
            None
        }
    };
    if let Some(total) = body.total_amount {
        check_amount(&mut v, "total_amount", total, 1);
    }
    v.finish()?;
    match (first, split) {
        (Some(first_due_date), Some(split)) => Ok(NewPlan {
            frequency: body.frequency,
            first_due_date,
            split,
            total_amount: body.total_amount,
            currency: body.currency,
        }),
        _ => Err(ApiError::internal("validation passed without its values")),
    }
}

/// The `409` of an account whose status does not allow a plan.
fn account_not_open(account: &Account) -> ApiError {
    ApiError::conflict(format!(
        "a payment plan needs an open account; this one is {}",
        account.status
    ))
    .with_errors(vec![FieldError::new(
        "status",
        format!(
            "the account is {}; plans are for active, promise_to_pay or payment_plan accounts",
            account.status
        ),
    )])
}

/// The plan `new` makes on `account` (re-checked against every read of the account).
fn plan_for(
    new: &NewPlan,
    account: &Account,
    plan_id: Id,
    caller: &Caller,
    now: Timestamp,
) -> Result<Plan, ApiError> {
    if matches!(
        account.status,
        AccountStatus::Paid | AccountStatus::Closed | AccountStatus::Disputed
    ) {
        return Err(account_not_open(account));
    }
    if new.currency.is_some_and(|c| c != account.currency) {
        return Err(ApiError::unprocessable(
            "currency-mismatch",
            format!("the account is in {}", account.currency),
        )
        .with_errors(vec![FieldError::new(
            "currency",
            format!("must be the account's currency, {}", account.currency),
        )]));
    }
    let total = new.total_amount.unwrap_or(account.balance);
    if total > account.balance {
        return Err(ApiError::unprocessable(
            "amount-exceeds-balance",
            format!(
                "the plan's total is more than the account's balance ({})",
                account.balance
            ),
        )
        .with_errors(vec![FieldError::new(
            "total_amount",
            format!("must not exceed the balance, {}", account.balance),
        )]));
    }
    let installments = schedule::build(new.frequency, new.first_due_date, total, new.split)
        .map_err(|err| {
            let field = if new.total_amount.is_none() && err.field == "total_amount" {
                "balance"
            } else {
                err.field
            };
            ApiError::invalid_field(field, err.message)
        })?;
    Ok(Plan {
        id: plan_id,
        account_id: account.id,
        status: PlanStatus::Active,
        frequency: new.frequency,
        currency: account.currency,
        total_amount: total,
        installments,
        receipts: Vec::new(),
        created_by: caller.user_id,
        version: 1,
        created_at: now,
        updated_at: now,
        ended_at: None,
    })
}

/// A plan response with its `ETag`.
fn plan_response(status: StatusCode, plan: &Plan) -> HttpResult {
    let mut response = json(status, &plan.view())?;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&plan.etag()) {
        headers.insert(ETAG, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(response)
}

/// The `201` of a created plan, with `Location` (the account's plans).
fn created(plan: &Plan) -> HttpResult {
    let mut response = plan_response(StatusCode::CREATED, plan)?;
    if let Ok(location) = HeaderValue::from_str(&format!("/accounts/{}/plans", plan.account_id)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// The `409` of a contended write.
fn contended() -> ApiError {
    let mut err =
        ApiError::conflict("the account is being updated by other requests; retry shortly");
    err.retry_after = Some(1);
    err
}

/// Creates a payment plan.
#[utoipa::path(post, path = "/accounts/{id}/plans", tag = "plans", request_body = CreatePlanBody,
    params(("id" = shared::domain::Id, Path, description = "Account id (ULID)"),
           ("Idempotency-Key" = Option<String>, Header, pattern = "^[\\x21-\\x7E]{1,255}$", description = "Optional; a retry with the same key and body answers the first response")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; ETag and Location set", body = PlanView),
        (status = 400, description = "Invalid field", body = shared::error::Problem),
        (status = 403, description = "Viewer, or not the agent's account", body = shared::error::Problem),
        (status = 404, description = "No such account", body = shared::error::Problem),
        (status = 409, description = "The account has an active plan (plan-exists), is paid, closed or disputed (field status), or contention", body = shared::error::Problem),
        (status = 422, description = "Total above balance, other currency, key reused with another body", body = shared::error::Problem)))]
pub async fn create_plan(app: &App, caller: &Caller, req: &Request, now: Timestamp) -> HttpResult {
    let scope = authorize(caller, Action::RecordPayment)?;
    let account_id: Id = path_param(req, "id")?;
    let key = header(req, idempotency::HEADER)
        .map(|value| idempotency::key_from_header(Some(value)))
        .transpose()?;
    app.platform
        .limiter
        .check_user_write(caller, app.platform.limits.write_per_user)
        .await?;
    let body: CreatePlanBody = shared::http::json_body(req)?;
    let new = validate_plan(body, now)?;
    let Some(key) = key else {
        let account = writable(app.ledger.account(account_id).await?, &scope, account_id)?;
        return create(app, caller, account, &new, Id::generate(), now).await;
    };
    let record_id = idempotency::record_key(caller.user_id, &route_key(req), &key);
    let hash =
        idempotency::request_hash(req.method().as_str(), req.uri().path(), req.body().as_ref());
    let candidate = Id::generate().to_string();
    let (claim_id, plan_id, taken_over) = match acquired(
        app.idempotency
            .claim(&record_id, &hash, &candidate, now)
            .await?,
    )? {
        Ok(acquired) => acquired,
        Err(replayed) => return Ok(replayed),
    };
    let outcome = async {
        // A takeover of a crashed claim: if that request committed, its plan exists.
        if taken_over {
            let plans = app.ledger.plans().list(account_id).await?;
            if let Some(plan) = plans.into_iter().find(|p| p.id == plan_id) {
                return created(&plan);
            }
        }
        let account = writable(app.ledger.account(account_id).await?, &scope, account_id)?;
        create(app, caller, account, &new, plan_id, now).await
    }
    .await;
    settle_claim(app, &record_id, &claim_id, outcome, async {}).await
}

/// The creation transaction, re-read and re-decided while the account moves under it.
async fn create(
    app: &App,
    caller: &Caller,
    account: Account,
    new: &NewPlan,
    plan_id: Id,
    now: Timestamp,
) -> HttpResult {
    let mut account = account;
    for attempt in 0..=CONFLICT_RETRIES {
        let plan = plan_for(new, &account, plan_id, caller, now)?;
        let moved = (account.status != AccountStatus::PaymentPlan).then(|| {
            let mut moved = status_change(
                account.id,
                account.status,
                AccountStatus::PaymentPlan,
                caller.user_id,
                now,
            );
            moved.note.push_str(&format!(" (payment plan {plan_id})"));
            moved
        });
        match app
            .ledger
            .plans()
            .create(&plan, &account, moved.as_ref())
            .await?
        {
            WriteOutcome::Done => return created(&plan),
            WriteOutcome::PlanChanged => {
                return Err(ApiError::conflict(
                    "the account already has an active payment plan; cancel it first",
                )
                .with_errors(vec![FieldError::new("plan", "an active plan exists")]))
            }
            WriteOutcome::AccountChanged => {
                account = app
                    .ledger
                    .account(account.id)
                    .await?
                    .filter(|a| a.deleted_at.is_none())
                    .ok_or_else(|| not_found(account.id))?;
            }
            WriteOutcome::Conflict => tokio::time::sleep(backoff(attempt)).await,
        }
    }
    Err(contended())
}

/// The plans of an account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanPage {
    pub items: Vec<PlanView>,
    /// Always `null`: an account's plans fit one page.
    pub next_cursor: Option<String>,
}

/// The payment plans of an account with their schedules.
#[utoipa::path(get, path = "/accounts/{id}/plans", tag = "plans",
    params(("id" = shared::domain::Id, Path, description = "Account id (ULID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The active plan first, then ended plans newest first", body = PlanPage),
        (status = 404, description = "No such account, or not the agent's", body = shared::error::Problem)))]
pub async fn list_plans(app: &App, caller: &Caller, req: &Request) -> HttpResult {
    let scope = authorize(caller, Action::ReadPayments)?;
    let account_id: Id = path_param(req, "id")?;
    readable(app.ledger.account(account_id).await?, &scope, account_id)?;
    let plans = app.ledger.plans().list(account_id).await?;
    let mut response = json(
        StatusCode::OK,
        &PlanPage {
            items: plans.iter().map(Plan::view).collect(),
            next_cursor: None,
        },
    )?;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(response)
}

/// Why a plan the caller names cannot be cancelled: `404` when the account never had it,
/// `409` when it already ended.
async fn not_active(app: &App, account: Id, plan: Id) -> ApiError {
    match app.ledger.plans().list(account).await {
        Ok(plans) => match plans.into_iter().find(|p| p.id == plan) {
            Some(ended) => ApiError::conflict(format!(
                "the plan is already {}; only an active plan can be cancelled",
                ended.status
            )),
            None => ApiError::not_found(format!("no plan {plan} on account {account}")),
        },
        Err(err) => err.into(),
    }
}

/// Cancels the account's active plan.
#[utoipa::path(post, path = "/accounts/{id}/plans/{plan_id}/cancel", tag = "plans",
    params(("id" = shared::domain::Id, Path, description = "Account id (ULID)"),
           ("plan_id" = shared::domain::Id, Path, description = "Plan id (ULID)"),
           ("If-Match" = String, Header, pattern = r#"^(\*|(W/)?"[0-9]{1,19}")$"#, description = "ETag of the plan read")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled", body = PlanView),
        (status = 403, description = "Viewer, or not the agent's account", body = shared::error::Problem),
        (status = 404, description = "No such account or plan", body = shared::error::Problem),
        (status = 409, description = "The plan already ended, or contention", body = shared::error::Problem),
        (status = 412, description = "Stale If-Match", body = shared::error::Problem),
        (status = 428, description = "If-Match missing", body = shared::error::Problem)))]
pub async fn cancel_plan(app: &App, caller: &Caller, req: &Request, now: Timestamp) -> HttpResult {
    let scope = authorize(caller, Action::RecordPayment)?;
    let account_id: Id = path_param(req, "id")?;
    let plan_id: Id = path_param(req, "plan_id")?;
    let expected = if_match(req, "plan")?;
    app.platform
        .limiter
        .check_user_write(caller, app.platform.limits.write_per_user)
        .await?;
    let mut account = writable(app.ledger.account(account_id).await?, &scope, account_id)?;
    for attempt in 0..=CONFLICT_RETRIES {
        let plan = match app.ledger.plans().active(account_id).await? {
            Some(plan) if plan.id == plan_id => plan,
            _ => return Err(not_active(app, account_id, plan_id).await),
        };
        if expected.is_some_and(|v| v != plan.version) {
            return Err(ApiError::precondition_failed(
                "the plan changed since it was read; read it again",
            ));
        }
        let mut ended = plan.clone();
        ended.status = PlanStatus::Cancelled;
        ended.version += 1;
        ended.updated_at = now;
        ended.ended_at = Some(now);
        let reactivate = account.status == AccountStatus::PaymentPlan;
        let moved = reactivate.then(|| {
            let mut moved = status_change(
                account_id,
                AccountStatus::PaymentPlan,
                AccountStatus::Active,
                caller.user_id,
                now,
            );
            moved
                .note
                .push_str(&format!(" (payment plan {plan_id} cancelled)"));
            moved
        });
        let outcome = app
            .ledger
            .plans()
            .end(
                &ended,
                plan.version,
                reactivate.then_some(&account),
                moved.as_ref(),
            )
            .await?;
        match outcome {
            WriteOutcome::Done => return plan_response(StatusCode::OK, &ended),
            // A payment changed the plan in between: decide on the new version.
            WriteOutcome::PlanChanged => {}
            WriteOutcome::AccountChanged => {
                account = writable(app.ledger.account(account_id).await?, &scope, account_id)?;
            }
            WriteOutcome::Conflict => tokio::time::sleep(backoff(attempt)).await,
        }
    }
    Err(contended())
}
