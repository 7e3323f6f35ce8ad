//! Payments: `POST/GET /accounts/{id}/payments`, `PATCH /accounts/{id}/payments/{pid}`.
//!
//! - **Record** (`POST`, admin / manager / agent on its own accounts): `amount` in minor
//!   units (a JSON integer, `1 ≤ amount ≤ balance`), `currency` equal to the account's,
//!   `method` ∈ card, ach, check, cash, wire, optional `status` (`pending` or `completed`,
//!   default `completed`), `reference` (≤ 100 characters), `received_at` (not in the future;
//!   60 s of client clock skew tolerated; default now). A completed payment is one
//!   `TransactWriteItems` (payment item, conditional balance decrement + version bump,
//!   `status = paid` at 0, a `payment` activity): see `shared::payments`. A pending payment
//!   writes the payment and its activity under a condition that the account exists.
//! - **Idempotency-Key** header: required on `POST` (`400` without). Scoped to the caller
//!   and route, hashed with the request, 24 h (see `shared::idempotency`). A retry with the
//!   same key and body answers the first response (`Idempotent-Replayed: true`); another
//!   body with the same key is a `422`; a retry while the first is still running is a `409`
//!   with `Retry-After: 1`. **Only a successful (2xx) response is stored**: a request that
//!   failed did nothing, so its key is released and the client may retry it.
//! - **History** (`GET`, every role; agents only their accounts): newest first, signed
//!   cursors, `limit` 1..100 (default 25), `status` filter.
//! - **Status** (`PATCH`, admin / manager, `If-Match` = the payment's ETag): pending →
//!   completed | failed, completed → refunded | reversed, anything else `409`. Completing
//!   debits the balance as recording does; refunding or reversing credits it back and
//!   reopens a paid account (`active`); each logs a `payment` activity in the same
//!   transaction (plus a `status_change` activity when the account's status moves).
//! - Invariant: `balance == original_balance − Σ completed payments`.
//!
//! Problems: `422` `amount-exceeds-balance`, `currency-mismatch`, `idempotency-key-reused`;
//! `409` `conflict` (transition not allowed, key in progress, contention after retries);
//! `412` stale `If-Match`; `428` missing `If-Match`.

pub mod plans;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_MATCH, LOCATION};
use http::{HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use shared::accounts::{not_found, readable, writable, Account};
use shared::auth::{authorize, Action, BearerSecurity, Caller, Scope};
use shared::domain::{Currency, Id, MinorUnits, Timestamp};
use shared::http::{
    header, json, page_limit, path_param, route_key, unknown_route, HttpResult, Validation,
    MAX_PAGE_LIMIT,
};
use shared::idempotency::{self, Claim, IdempotencyStore, StoredResponse};
use shared::metrics;
use shared::metrics::names::{self, dimension};
use shared::payments::{
    BalanceChange, Ledger, LedgerRefusal, Payment, PaymentMethod, PaymentStatus, PaymentWrite,
};
use shared::platform::{InitError, Platform};
use shared::validation::check_amount;
use shared::ApiError;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// Client clock skew tolerated on `received_at`.
pub const RECEIVED_AT_SKEW_SECS: i64 = 60;

/// The shared platform (config, clients, authenticator, cursors, rate limits) and this
/// function's stores, built once per cold start.
pub struct App {
    pub platform: Platform,
    pub ledger: Ledger,
    pub idempotency: IdempotencyStore,
}

impl App {
    pub fn new(platform: Platform) -> Self {
        let tables = &platform.config.tables;
        let client = &platform.clients.dynamodb;
        Self {
            ledger: Ledger::new(
                client.clone(),
                tables.accounts.clone(),
                tables.payments.clone(),
                tables.activities.clone(),
                tables.plans.clone(),
            ),
            idempotency: IdempotencyStore::new(client.clone(), tables.idempotency.clone()),
            platform,
        }
    }

    pub async fn from_env() -> Result<Self, InitError> {
        Ok(Self::new(
            Platform::from_env(|tables| &tables.payments).await?,
        ))
    }
}

/// The HTTP API of this function, merged into `/openapi.json` by the docs function.
#[derive(OpenApi)]
#[openapi(
    paths(record_payment, list_payments, change_payment_status, plans::create_plan, plans::list_plans, plans::cancel_plan),
    components(schemas(RecordPaymentBody, ChangeStatusBody, PaymentPage, Payment, PaymentMethod, PaymentStatus,
        plans::CreatePlanBody, plans::PlanPage, shared::payments::plans::PlanView, shared::payments::plans::InstallmentView,
        shared::payments::plans::Frequency, shared::payments::plans::PlanStatus, shared::payments::plans::InstallmentStatus)),
    modifiers(&BearerSecurity),
    tags((name = "payments", description = "Payments of an account"),
         (name = "plans", description = "Payment plans of an account: installments, the payments applied to them, missed installments"))
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
        "POST /accounts/{id}/payments" => record_payment(app, caller, &req, now).await,
        "GET /accounts/{id}/payments" => list_payments(app, caller, &req).await,
        "PATCH /accounts/{id}/payments/{pid}" => {
            change_payment_status(app, caller, &req, now).await
        }
        "POST /accounts/{id}/plans" => plans::create_plan(app, caller, &req, now).await,
        "GET /accounts/{id}/plans" => plans::list_plans(app, caller, &req).await,
        "POST /accounts/{id}/plans/{plan_id}/cancel" => {
            plans::cancel_plan(app, caller, &req, now).await
        }
        other => Err(unknown_route(other)),
    }
}

fn payment_response(status: StatusCode, payment: &Payment) -> HttpResult {
    let mut response = json(status, payment)?;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&payment.etag()) {
        headers.insert(ETAG, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(response)
}

fn refusal(refusal: LedgerRefusal, account: Id) -> ApiError {
    match refusal {
        LedgerRefusal::AccountGone => not_found(account),
        LedgerRefusal::ExceedsBalance { balance } => ApiError::unprocessable(
            "amount-exceeds-balance",
            format!("the amount is more than the account's balance ({balance})"),
        ),
        LedgerRefusal::PaymentExists => ApiError::conflict("the payment already exists"),
        LedgerRefusal::PaymentChanged => {
            ApiError::precondition_failed("the payment changed since it was read; read it again")
        }
        LedgerRefusal::Contended => {
            let mut err =
                ApiError::conflict("the account is being updated by other requests; retry shortly");
            err.retry_after = Some(1);
            err
        }
        LedgerRefusal::ClaimLost => {
            let mut err = ApiError::conflict(
                "a retry with this Idempotency-Key took this request over; retry shortly for its answer",
            );
            err.retry_after = Some(1);
            err
        }
    }
}

// ------------------------------------------------------------------ record

/// A payment to record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordPaymentBody {
    /// Minor units, 1..=10^12 (`shared::validation::MAX_AMOUNT`) and not above the balance.
    #[schema(value_type = shared::domain::Amount, example = 2500)]
    pub amount: MinorUnits,
    /// ISO 4217; must be the account's currency.
    #[schema(value_type = String, example = "USD")]
    pub currency: Currency,
    pub method: PaymentMethod,
    /// `pending` or `completed` (default).
    #[schema(value_type = Option<NewPaymentStatus>)]
    pub status: Option<PaymentStatus>,
    /// The payer's or processor's reference, ≤ 100 characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub reference: Option<String>,
    /// When the money was received (RFC 3339, not in the future; default now).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub received_at: Option<Timestamp>,
}

/// The statuses a payment may be recorded with (`validate_record`); the OpenAPI schema of
/// `RecordPaymentBody::status`.
pub const NEW_PAYMENT_STATUSES: [PaymentStatus; 2] =
    [PaymentStatus::Pending, PaymentStatus::Completed];

/// The OpenAPI schema of a new payment's `status`: [`NEW_PAYMENT_STATUSES`].
pub struct NewPaymentStatus;

impl utoipa::PartialSchema for NewPaymentStatus {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let names: Vec<serde_json::Value> = NEW_PAYMENT_STATUSES
            .iter()
            .filter_map(|status| serde_json::to_value(status).ok())
            .collect();
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(names))
            .into()
    }
}

impl ToSchema for NewPaymentStatus {}

/// A validated payment request.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub amount: MinorUnits,
    pub currency: Currency,
    pub method: PaymentMethod,
    pub status: PaymentStatus,
    pub reference: Option<String>,
    pub received_at: Timestamp,
}

/// Validates a record body (`400` listing every bad field).
pub fn validate_record(body: RecordPaymentBody, now: Timestamp) -> Result<NewPayment, ApiError> {
    let mut v = Validation::new();
    check_amount(&mut v, "amount", body.amount, 1);
    let status = body.status.unwrap_or(PaymentStatus::Completed);
    if !NEW_PAYMENT_STATUSES.contains(&status) {
        v.add("status", "a new payment is pending or completed");
    }
    let reference = body.reference.map(|r| r.trim().to_owned());
    if let Some(reference) = &reference {
        if reference.is_empty() || reference.chars().count() > 100 {
            v.add("reference", "must be 1 to 100 characters");
        } else if reference.chars().any(char::is_control) {
            v.add("reference", "must not contain control characters");
        }
    }
    let received_at = body.received_at.unwrap_or(now);
    if received_at.unix_seconds() > now.unix_seconds() + RECEIVED_AT_SKEW_SECS {
        v.add("received_at", "must not be in the future");
    }
    v.finish()?;
    Ok(NewPayment {
        amount: body.amount,
        currency: body.currency,
        method: body.method,
        status,
        reference,
        received_at,
    })
}

/// Records a payment (`Idempotency-Key` required).
#[utoipa::path(post, path = "/accounts/{id}/payments", tag = "payments", request_body = RecordPaymentBody,
    params(("id" = shared::domain::Id, Path, description = "Account id (ULID)"),
           ("Idempotency-Key" = String, Header, pattern = "^[\\x21-\\x7E]{1,255}$", description = "Required; a retry with the same key and body answers the first response")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Recorded; ETag and Location set", body = Payment),
        (status = 400, description = "Invalid field or missing Idempotency-Key", body = shared::error::Problem),
        (status = 403, description = "Role may not record, or not the agent's account", body = shared::error::Problem),
        (status = 404, description = "No such account", body = shared::error::Problem),
        (status = 409, description = "Same key still in progress, or contention", body = shared::error::Problem),
        (status = 422, description = "Amount above balance, other currency, key reused with another body", body = shared::error::Problem)))]
pub async fn record_payment(
    app: &App,
    caller: &Caller,
    req: &Request,
    now: Timestamp,
) -> HttpResult {
    let scope = authorize(caller, Action::RecordPayment)?;
    let account_id: Id = path_param(req, "id")?;
    let key = idempotency::key_from_header(header(req, idempotency::HEADER))?;
    let body: RecordPaymentBody = shared::http::json_body(req)?;
    let new = validate_record(body, now)?;

    let route = route_key(req);
    let record_id = idempotency::record_key(caller.user_id, &route, &key);
    let hash =
        idempotency::request_hash(req.method().as_str(), req.uri().path(), req.body().as_ref());
    let candidate = Id::generate().to_string();
    // The rate limit, the claim and the account with its active plan (one BatchGetItem)
    // are independent: one round trip for all three. A limited request gives its claim back.
    let change = balance_change(new.status, new.amount);
    let (limited, claim, observed) = tokio::join!(
        app.platform
            .limiter
            .check_user_write(caller, app.platform.limits.write_per_user),
        app.idempotency.claim(&record_id, &hash, &candidate, now),
        app.ledger.observe(account_id, change)
    );
    let (claim_id, payment_id, taken_over) = match (limited, acquired(claim?)?) {
        (Ok(()), Ok(acquired)) => acquired,
        (Ok(()), Err(replayed)) => return Ok(replayed),
        (Err(limited), Ok((claim_id, _, _))) => {
            return settle_claim(app, &record_id, &claim_id, Err(limited), async {}).await
        }
        (Err(limited), Err(_)) => return Err(limited),
    };
    // A takeover of a crashed claim: if that request committed, its payment exists under
    // the key's payment id. Answer it as the first request would have (201, same body),
    // before any check against the account it already changed.
    let committed = if taken_over {
        app.ledger.payment(account_id, payment_id).await?
    } else {
        None
    };
    let outcome = match (committed, observed) {
        (Some(payment), _) => {
            tracing::info!(payment = %payment.id, "replaying a payment a crashed request committed");
            created(&payment).map(|response| Recorded {
                response,
                refresh: None,
                stored: false,
            })
        }
        (None, Ok((account, plan))) => {
            let observed = Observed { account, plan };
            let claim = ClaimRef {
                record_id: &record_id,
                claim_id: &claim_id,
            };
            record(
                app, caller, &scope, account_id, observed, new, payment_id, claim, now,
            )
            .await
        }
        (None, Err(err)) => Err(err.into()),
    };
    let to_refresh = outcome.as_ref().ok().and_then(|recorded| recorded.refresh);
    let refresh = async {
        if let Some(id) = to_refresh {
            app.ledger.refresh_balance_key(id).await;
        }
    };
    match outcome {
        // Stored with the payment, in its transaction: only the key refresh is left.
        Ok(Recorded {
            response,
            stored: true,
            ..
        }) => {
            refresh.await;
            Ok(response)
        }
        other => {
            let outcome = other.map(|recorded| recorded.response);
            settle_claim(app, &record_id, &claim_id, outcome, refresh).await
        }
    }
}

/// The balance change recording a payment of `status` makes: only a completed payment
/// moves the balance.
fn balance_change(status: PaymentStatus, amount: MinorUnits) -> BalanceChange {
    match status {
        PaymentStatus::Completed => BalanceChange::Debit(amount),
        _ => BalanceChange::None,
    }
}

/// What a payment is decided on, read at once next to the claim: the account (`None`: no
/// such account) and its active plan.
pub struct Observed {
    pub account: Option<Account>,
    pub plan: Option<shared::payments::plans::Plan>,
}

/// The idempotency claim a request holds.
#[derive(Clone, Copy)]
pub struct ClaimRef<'a> {
    pub record_id: &'a str,
    pub claim_id: &'a str,
}

/// A recorded payment's answer: the `201`, the account whose `balance_sk` still needs a
/// refresh (none when the pinned write set it), and whether the answer was stored for
/// replay in the payment's own transaction.
pub struct Recorded {
    pub response: Response<Body>,
    pub refresh: Option<Id>,
    pub stored: bool,
}

/// A claimed key: the claim id, the id of the resource to create, whether the claim took
/// over a crashed one (its resource may exist).
pub type Acquired = (String, Id, bool);

/// What a claim lets the request do: `Ok(Ok((claim id, resource id, taken over)))` when
/// the key is ours, `Ok(Err(response))` to replay the first request's answer, the `409` /
/// `422` of a key in progress or reused.
pub fn acquired(claim: Claim) -> Result<Result<Acquired, Response<Body>>, ApiError> {
    match claim {
        Claim::Acquired {
            claim_id,
            resource_id,
            taken_over,
        } => Ok(Ok((
            claim_id,
            resource_id.parse::<Id>().map_err(ApiError::internal)?,
            taken_over,
        ))),
        Claim::Replay(stored) => replay(&stored).map(Err),
        Claim::InProgress => {
            let mut err = ApiError::conflict(
                "a request with this Idempotency-Key is still in progress; retry shortly",
            );
            err.retry_after = Some(1);
            Err(err)
        }
        Claim::Mismatch => Err(ApiError::unprocessable(
            "idempotency-key-reused",
            "this Idempotency-Key was used with a different request; use a new key",
        )),
    }
}

/// Ends a claimed request: stores a successful response for replay (next to `after`, the
/// request's own post-write calls) or releases the key of a failed one (it did nothing,
/// so the client may retry it). The write stands whatever happens to the record: a failure
/// to store the response only means a retry waits for the lock to lapse, takes the claim
/// over with the same resource id and answers the stored resource.
pub async fn settle_claim(
    app: &App,
    record_id: &str,
    claim_id: &str,
    outcome: HttpResult,
    after: impl std::future::Future<Output = ()>,
) -> HttpResult {
    match outcome {
        Ok(response) => {
            let stored = to_stored(&response);
            let (completed, ()) = tokio::join!(
                app.idempotency.complete(record_id, claim_id, &stored),
                after
            );
            if let Err(err) = completed {
                tracing::warn!(error = %err, "storing the idempotent response failed");
            }
            Ok(response)
        }
        Err(err) => {
            if let Err(release) = app.idempotency.release(record_id, claim_id).await {
                tracing::warn!(error = %release, "releasing an idempotency claim failed");
            }
            Err(err)
        }
    }
}

/// The response kept for replay: status, body and the headers that matter.
fn to_stored(response: &Response<Body>) -> StoredResponse {
    let body = match response.body() {
        Body::Text(text) => text.clone(),
        Body::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Body::Empty => String::new(),
        _ => String::new(),
    };
    let headers = [CONTENT_TYPE, ETAG, LOCATION]
        .iter()
        .filter_map(|name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| (name.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    StoredResponse {
        status: response.status().as_u16(),
        body,
        headers,
    }
}

fn replay(stored: &StoredResponse) -> HttpResult {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(stored.status).map_err(ApiError::internal)?)
        .header("idempotent-replayed", "true");
    for (name, value) in &stored.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(Body::Text(stored.body.clone()))
        .map_err(ApiError::internal)
}

/// The recording itself, once the key is ours (`observed` as read next to the claim): the
/// payment, its `201` stored under the claim, all in one transaction.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    app: &App,
    caller: &Caller,
    scope: &Scope,
    account_id: Id,
    observed: Observed,
    new: NewPayment,
    payment_id: Id,
    claim: ClaimRef<'_>,
    now: Timestamp,
) -> Result<Recorded, ApiError> {
    let account = writable(observed.account, scope, account_id)?;
    if new.currency != account.currency {
        return Err(ApiError::unprocessable(
            "currency-mismatch",
            format!(
                "the account is in {}; a payment in {} cannot be recorded on it",
                account.currency, new.currency
            ),
        ));
    }
    if new.amount > account.balance {
        return Err(refusal(
            LedgerRefusal::ExceedsBalance {
                balance: account.balance,
            },
            account_id,
        ));
    }
    let payment = Payment {
        id: payment_id,
        account_id,
        amount: new.amount,
        currency: new.currency,
        method: new.method,
        status: new.status,
        reference: new.reference,
        received_at: new.received_at,
        created_by: caller.user_id,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let activity = payment.activity(
        &format!("recorded ({})", payment.status),
        caller.user_id,
        now,
    );
    let response = created(&payment)?;
    let completion =
        app.idempotency
            .completion(claim.record_id, claim.claim_id, &to_stored(&response))?;
    let written = app
        .ledger
        .apply_observed(
            &PaymentWrite::Record(payment.clone()),
            balance_change(payment.status, payment.amount),
            account,
            observed.plan,
            &activity,
            Some(completion),
            now,
        )
        .await?;
    match written {
        Ok((_, refresh)) => {
            let dimensions = [(dimension::CURRENCY, payment.currency.code())];
            metrics::record(&names::PAYMENTS_RECORDED, &dimensions, 1.0);
            metrics::record(&names::PAYMENT_AMOUNT, &dimensions, payment.amount.0 as f64);
            Ok(Recorded {
                response,
                refresh,
                stored: true,
            })
        }
        // A crashed first attempt of this very request (claimed before completions went
        // into the transaction) had committed it: answer that, stored after.
        Err(LedgerRefusal::PaymentExists) => {
            let committed = app
                .ledger
                .payment(account_id, payment_id)
                .await?
                .ok_or_else(|| ApiError::internal("payment vanished after a conflict"))?;
            Ok(Recorded {
                response: created(&committed)?,
                refresh: None,
                stored: false,
            })
        }
        Err(other) => Err(refusal(other, account_id)),
    }
}

/// The `201` of a recorded payment, with its `ETag` and `Location`.
fn created(payment: &Payment) -> HttpResult {
    let mut response = payment_response(StatusCode::CREATED, payment)?;
    if let Ok(location) = HeaderValue::from_str(&format!(
        "/accounts/{}/payments/{}",
        payment.account_id, payment.id
    )) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

// ------------------------------------------------------------------ history

/// Query parameters of `GET /accounts/{id}/payments`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// 1..100, default 25.
    #[param(value_type = Option<shared::domain::PageLimit>)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `pending`, `completed`, `failed`, `refunded`, `reversed`.
    #[param(value_type = Option<PaymentStatus>)]
    pub status: Option<String>,
}

/// A page of payments, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PaymentPage {
    pub items: Vec<Payment>,
    pub next_cursor: Option<String>,
}

/// The payment history of an account, newest first.
#[utoipa::path(get, path = "/accounts/{id}/payments", tag = "payments",
    params(("id" = shared::domain::Id, Path, description = "Account id (ULID)"), HistoryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of payments, newest first", body = PaymentPage),
        (status = 400, description = "Bad limit, status or cursor", body = shared::error::Problem),
        (status = 404, description = "No such account, or not the agent's", body = shared::error::Problem)))]
pub async fn list_payments(app: &App, caller: &Caller, req: &Request) -> HttpResult {
    let scope = authorize(caller, Action::ReadPayments)?;
    let account_id: Id = path_param(req, "id")?;
    let query: HistoryQuery = shared::http::query(req)?;
    let mut v = Validation::new();
    let limit = page_limit(&mut v, query.limit.as_deref(), MAX_PAGE_LIMIT);
    let status = query
        .status
        .as_deref()
        .and_then(|s| v.check("status", s.parse::<PaymentStatus>()));
    v.finish()?;
    let cursor_scope = format!(
        "payments:{account_id}:{}",
        status.map(|s| s.as_str()).unwrap_or("")
    );
    let after: Option<String> = app
        .platform
        .cursors
        .resume(&cursor_scope, query.cursor.as_deref())?;
    readable(app.ledger.account(account_id).await?, &scope, account_id)?;
    let (items, next) = app.ledger.history(account_id, status, after, limit).await?;
    let next_cursor = app.platform.cursors.next(&cursor_scope, next.as_ref())?;
    let mut response = json(StatusCode::OK, &PaymentPage { items, next_cursor })?;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(response)
}

// ------------------------------------------------------------------ status

/// The status a payment moves to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeStatusBody {
    /// `completed` or `failed` (from pending); `refunded` or `reversed` (from completed).
    pub status: PaymentStatus,
}

/// The version an `If-Match` names (`428` without one); `what` is the resource read.
pub fn if_match(req: &Request, what: &str) -> Result<Option<u64>, ApiError> {
    let value = header(req, IF_MATCH.as_str()).ok_or_else(|| {
        ApiError::precondition_required(format!(
            "send If-Match with the ETag of the {what} you read"
        ))
    })?;
    let value = value.trim();
    if value == "*" {
        return Ok(None);
    }
    value
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| ApiError::invalid_field("If-Match", "must be an ETag of this API, e.g. \"3\""))
}

/// Moves a payment along its status machine, applying its balance effect.
#[utoipa::path(patch, path = "/accounts/{id}/payments/{pid}", tag = "payments", request_body = ChangeStatusBody,
    params(("id" = shared::domain::Id, Path, description = "Account id (ULID)"),
           ("pid" = shared::domain::Id, Path, description = "Payment id (ULID)"),
           ("If-Match" = String, Header, pattern = r#"^(\*|(W/)?"[0-9]{1,19}")$"#, description = "ETag of the payment read")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed; new ETag", body = Payment),
        (status = 403, description = "Only admins and managers change payment status", body = shared::error::Problem),
        (status = 404, description = "No such payment or account", body = shared::error::Problem),
        (status = 409, description = "The transition is not allowed", body = shared::error::Problem),
        (status = 412, description = "Stale If-Match", body = shared::error::Problem),
        (status = 422, description = "Completing would take the balance below 0", body = shared::error::Problem),
        (status = 428, description = "If-Match missing", body = shared::error::Problem)))]
pub async fn change_payment_status(
    app: &App,
    caller: &Caller,
    req: &Request,
    now: Timestamp,
) -> HttpResult {
    authorize(caller, Action::ChangePaymentStatus)?;
    let account_id: Id = path_param(req, "id")?;
    let payment_id: Id = path_param(req, "pid")?;
    let expected = if_match(req, "payment")?;
    app.platform
        .limiter
        .check_user_write(caller, app.platform.limits.write_per_user)
        .await?;
    let body: ChangeStatusBody = shared::http::json_body(req)?;
    let payment = app
        .ledger
        .payment(account_id, payment_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("no payment {payment_id} on account {account_id}"))
        })?;
    if expected.is_some_and(|v| v != payment.version) {
        return Err(refusal(LedgerRefusal::PaymentChanged, account_id));
    }
    transition(app, caller, payment, body.status, now).await
}

/// Applies `to` to `payment` (read at its current version).
pub async fn transition(
    app: &App,
    caller: &Caller,
    payment: Payment,
    to: PaymentStatus,
    now: Timestamp,
) -> HttpResult {
    let from = payment.status;
    if !from.can_become(to) {
        return Err(ApiError::conflict(format!(
            "a {from} payment cannot become {to} (pending → completed | failed; completed → refunded | reversed)"
        )));
    }
    let account_id = payment.account_id;
    let account = app
        .ledger
        .account(account_id)
        .await?
        .filter(|a| a.deleted_at.is_none())
        .ok_or_else(|| not_found(account_id))?;
    let mut next = payment.clone();
    next.status = to;
    next.version = payment.version + 1;
    next.updated_at = now;
    let change = match to {
        PaymentStatus::Completed => BalanceChange::Debit(payment.amount),
        PaymentStatus::Refunded | PaymentStatus::Reversed => BalanceChange::Credit(payment.amount),
        _ => BalanceChange::None,
    };
    let activity = next.activity(&format!("{from} → {to}"), caller.user_id, now);
    let written = app
        .ledger
        .apply(
            &PaymentWrite::Transition {
                payment: next.clone(),
                from,
                expected_version: payment.version,
            },
            change,
            account,
            &activity,
            now,
        )
        .await?;
    match written {
        Ok(_) => {
            if to == PaymentStatus::Refunded {
                let dimensions = [(dimension::CURRENCY, next.currency.code())];
                metrics::record(&names::REFUNDS, &dimensions, 1.0);
            }
            payment_response(StatusCode::OK, &next)
        }
        Err(LedgerRefusal::PaymentChanged) => {
            // Either another request moved it (stale) or its status no longer allows this.
            match app.ledger.payment(account_id, payment.id).await? {
                Some(current) if current.status != from => Err(ApiError::conflict(format!(
                    "the payment is now {}; a {} payment cannot become {to}",
                    current.status, current.status
                ))),
                _ => Err(refusal(LedgerRefusal::PaymentChanged, account_id)),
            }
        }
        Err(other) => Err(refusal(other, account_id)),
    }
}
