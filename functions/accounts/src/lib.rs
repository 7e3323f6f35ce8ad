//! Accounts: `GET/POST /accounts`, `GET/PATCH/DELETE /accounts/{id}`.
//!
//! - Lists are Query-only (see `shared::accounts::keys` for the access pattern → index
//!   table and `shared::accounts::list` for the sharded merge and signed cursors).
//! - `POST` claims the reference (`REF#<reference>`) in the same transaction: `409` when taken.
//! - `GET /accounts/{id}` answers with a strong `ETag` (`"<version>"`) and honours
//!   `If-None-Match` (`304`); list pages carry a weak `ETag` over the page.
//!   `Cache-Control: private, no-cache` everywhere: a client may keep a copy but revalidates.
//! - `GET /accounts/{id}`'s `ETag` is `"<version>-<days_past_due>"`: aging changes with the
//!   calendar without a version bump, so it is part of the tag (no `304` for stale aging).
//! - `PATCH` needs `If-Match` (`428` without, `412` when stale; only the version part of the
//!   tag is compared), is conditional on the version and increments it. Which role may
//!   change which field, and which changes are logged (`status_change`, `field_change`, in
//!   the same transaction), is the one table in `shared::accounts::rules`. Fields only
//!   payments change are a `400`; `paid` on a balance above 0 is a `422`.
//! - `assigned_agent_id` must name an enabled agent (`shared::accounts::check_assignable`).
//! - Bodies go through the same checks as every route (`shared::http::json_bytes`: JSON
//!   `Content-Type`, size limit) before they are parsed.
//! - `DELETE` is soft: `deleted_at` is set and every index key removed, so the account
//!   leaves every list; reads answer `404`; payments and activities stay.
//! - RBAC: every role reads; admin and manager write; an agent sees only its accounts and
//!   may PATCH only those, only the fields `shared::accounts::rules` gives it. Writes count
//!   against the caller's `WRITE_LIMIT_PER_USER`.
//!
//! [`handle`] authenticates and calls [`dispatch`], which tests call with a `Caller`.

use std::collections::BTreeSet;

use http::header::{IF_MATCH, LOCATION};
use http::{HeaderValue, StatusCode};
use lambda_http::Request;
use serde::{Deserialize, Deserializer, Serialize};
use shared::accounts::model::parse_date;
use shared::accounts::{
    check_assignable, not_found, readable, rules, writable, Account, AccountRepo, AccountStatus,
    DpdBucket, ListRequest, Sort, WriteConflict,
};
use shared::auth::users::UserRepo;
use shared::auth::{authorize, Action, Caller, Scope};
use shared::domain::{Currency, Id, MinorUnits, Timestamp};
use shared::http::{
    empty, header, json, json_or_not_modified, none_match, page_limit, path_param, route_key,
    unknown_route, with_cache_headers, HttpResult, Validation, Validator, MAX_PAGE_LIMIT,
};
use shared::platform::{InitError, Platform};
use shared::validation::{check_amount, MAX_AMOUNT};
use shared::ApiError;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// The shared platform, the account repository and the users (who accounts may be
/// assigned to), built once per cold start.
pub struct App {
    pub platform: Platform,
    pub repo: AccountRepo,
    pub users: UserRepo,
}

impl App {
    pub fn new(platform: Platform) -> Self {
        let tables = &platform.config.tables;
        Self {
            repo: AccountRepo::new(
                platform.clients.dynamodb.clone(),
                tables.accounts.clone(),
                tables.activities.clone(),
            ),
            users: UserRepo::new(platform.clients.dynamodb.clone(), tables.users.clone()),
            platform,
        }
    }

    pub async fn from_env() -> Result<Self, InitError> {
        Ok(Self::new(
            Platform::from_env(|tables| &tables.accounts).await?,
        ))
    }
}

/// The HTTP API of this function, merged into `/openapi.json` by the docs function.
#[derive(OpenApi)]
#[openapi(
    paths(list_accounts, create_account, get_account, update_account, delete_account),
    components(schemas(AccountPage, CreateAccountBody, UpdateAccountBody, Account, AccountStatus, DpdBucket)),
    tags((name = "accounts", description = "Debtor accounts"))
)]
pub struct ApiDoc;

/// Authenticates the caller and routes the request.
pub async fn handle(app: &App, req: Request) -> HttpResult {
    let caller = app.platform.authenticator.authenticate(&req).await?;
    dispatch(app, &caller, req).await
}

/// Routes a request of an authenticated caller by the route key API Gateway matched.
pub async fn dispatch(app: &App, caller: &Caller, req: Request) -> HttpResult {
    dispatch_at(app, caller, req, Timestamp::now()).await
}

/// [`dispatch`] with the clock injected: `now` stamps writes, and its UTC date is the
/// "today" an account's `days_past_due` (and so its `ETag`) is computed for. Tests move it
/// across midnight.
pub async fn dispatch_at(app: &App, caller: &Caller, req: Request, now: Timestamp) -> HttpResult {
    match route_key(&req).as_str() {
        "GET /accounts" => list_accounts(app, caller, &req, now).await,
        "POST /accounts" => create_account(app, caller, &req, now).await,
        "GET /accounts/{id}" => get_account(app, caller, &req, now).await,
        "PATCH /accounts/{id}" => update_account(app, caller, &req, now).await,
        "DELETE /accounts/{id}" => delete_account(app, caller, &req, now).await,
        other => Err(unknown_route(other)),
    }
}

/// The UTC date of `now`: the day aging is computed for.
fn today_of(now: Timestamp) -> time::Date {
    now.as_offset_date_time().date()
}

// ------------------------------------------------------------------ caching helpers

fn not_modified(etag: &str) -> HttpResult {
    Ok(with_cache_headers(empty(StatusCode::NOT_MODIFIED)?, etag))
}

fn account_response(status: StatusCode, account: &Account) -> HttpResult {
    Ok(with_cache_headers(json(status, account)?, &account.etag()))
}

/// The version an `If-Match` names: `None` for `*`.
fn if_match(req: &Request) -> Result<Option<u64>, ApiError> {
    let value = header(req, IF_MATCH.as_str()).ok_or_else(|| {
        ApiError::precondition_required(
            "send If-Match with the ETag of the account you read (GET /accounts/{id})",
        )
    })?;
    let value = value.trim();
    if value == "*" {
        return Ok(None);
    }
    Account::version_of_etag(value).map(Some).ok_or_else(|| {
        ApiError::invalid_field(
            "If-Match",
            "must be an ETag of this API, e.g. \"3-12\" (GET /accounts/{id})",
        )
    })
}

// ------------------------------------------------------------------ validation

const MAX_TAGS: usize = 20;

fn check_text(v: &mut Validation, field: &str, value: &str, max: usize) {
    if value.trim().is_empty() {
        v.add(field, "must not be empty");
    } else if value.chars().count() > max {
        v.add(field, format!("must be at most {max} characters"));
    } else if value.chars().any(char::is_control) {
        v.add(field, "must not contain control characters");
    }
}

fn check_email(v: &mut Validation, value: &str) {
    let ok = value.len() <= 254
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && match value.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if !ok {
        v.add("debtor_email", "must be an email address");
    }
}

fn check_phone(v: &mut Validation, value: &str) {
    let digits = value.strip_prefix('+').unwrap_or("");
    let ok = (2..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0');
    if !ok {
        v.add(
            "debtor_phone",
            "must be an E.164 phone number, e.g. +14155550123",
        );
    }
}

fn check_timezone(v: &mut Validation, value: &str) {
    if jiff::tz::db().get(value).is_err() {
        v.add(
            "debtor_timezone",
            "must be an IANA time zone, e.g. America/New_York",
        );
    }
}

fn clean_tags(v: &mut Validation, tags: Vec<String>) -> Vec<String> {
    if tags.len() > MAX_TAGS {
        // Checked first: a list over the cap is one error, not one per item.
        v.add("tags", format!("at most {MAX_TAGS} tags"));
        return Vec::new();
    }
    let mut out = BTreeSet::new();
    for (i, tag) in tags.into_iter().enumerate() {
        let tag = tag.trim().to_lowercase();
        let field = format!("tags[{i}]");
        check_text(v, &field, &tag, 40);
        out.insert(tag);
    }
    out.into_iter().collect()
}

fn check_due(v: &mut Validation, value: &str) -> Option<time::Date> {
    v.check("due_date", parse_date(value))
}

// ------------------------------------------------------------------ list

/// The OpenAPI schema of `sort`: the names `Sort::parse` accepts (`Sort::NAMES`).
pub struct SortName;

impl utoipa::PartialSchema for SortName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let names: Vec<&str> = shared::accounts::Sort::NAMES.split(", ").collect();
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(names))
            .into()
    }
}

impl ToSchema for SortName {}

/// The OpenAPI schema of `debtor_timezone`: every IANA name of the time-zone database
/// `check_timezone` reads (jiff's bundled copy), so the two cannot disagree.
pub struct TimeZoneName;

impl utoipa::PartialSchema for TimeZoneName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let names: Vec<String> = jiff::tz::db().available().map(|n| n.to_string()).collect();
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(names))
            .description(Some("An IANA time zone, e.g. America/New_York."))
            .into()
    }
}

impl ToSchema for TimeZoneName {}

/// The OpenAPI schema of a tag: 1 to 40 characters, not blank, no control characters
/// (`check_text(.., 40)`).
pub struct Tag;

impl utoipa::PartialSchema for Tag {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(40))
            .pattern(Some(shared::domain::VISIBLE_TEXT_PATTERN))
            .into()
    }
}

impl ToSchema for Tag {}

/// Query parameters of `GET /accounts` (all optional; unknown ones are a `400`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `active`, `promise_to_pay`, `payment_plan`, `disputed`, `paid`, `closed`.
    #[param(value_type = Option<AccountStatus>)]
    pub status: Option<String>,
    /// Accounts assigned to this agent (an agent may only name itself).
    #[param(value_type = Option<Id>)]
    pub agent_id: Option<String>,
    /// Minor units, inclusive.
    #[param(value_type = Option<shared::domain::AmountOrZero>)]
    pub min_balance: Option<String>,
    /// Minor units, inclusive.
    #[param(value_type = Option<shared::domain::AmountOrZero>)]
    pub max_balance: Option<String>,
    /// `current`, `1-30`, `31-60`, `61-90`, `90+`.
    #[param(value_type = Option<DpdBucket>)]
    pub dpd_bucket: Option<String>,
    /// Prefix of the reference, debtor name, email or phone (case, accents and phone
    /// punctuation ignored); at least 2 letters or digits; not combined with `sort`.
    pub q: Option<String>,
    /// `created_at`, `updated_at`, `balance`, `due_date`, `days_past_due`, each optionally
    /// prefixed with `-` for descending. Default `-created_at`.
    #[param(value_type = Option<SortName>)]
    pub sort: Option<String>,
    /// 1..=100, default 25.
    #[param(value_type = Option<shared::domain::PageLimit>)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page of the same query.
    pub cursor: Option<String>,
}

/// A page of accounts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountPage {
    pub items: Vec<Account>,
    pub next_cursor: Option<String>,
}

/// Validates the query of a list into a request for the repository.
pub fn list_request(
    query: ListQuery,
    scope: &Scope,
) -> Result<(ListRequest, Option<String>), ApiError> {
    let mut v = Validation::new();
    let limit = page_limit(&mut v, query.limit.as_deref(), MAX_PAGE_LIMIT);
    let status = query
        .status
        .as_deref()
        .and_then(|s| v.check("status", s.parse::<AccountStatus>()));
    let agent_id = query
        .agent_id
        .as_deref()
        .and_then(|s| v.check("agent_id", s.parse::<Id>()));
    let balance = |v: &mut Validation, field: &str, raw: Option<&str>| {
        raw.and_then(|s| {
            v.check(
                field,
                s.parse::<i64>()
                    .ok()
                    .filter(|n| (0..=MAX_AMOUNT).contains(n))
                    .ok_or(format!(
                        "must be an integer of minor units from 0 to {MAX_AMOUNT}"
                    )),
            )
        })
    };
    let min_balance = balance(&mut v, "min_balance", query.min_balance.as_deref());
    let max_balance = balance(&mut v, "max_balance", query.max_balance.as_deref());
    if let (Some(min), Some(max)) = (min_balance, max_balance) {
        if min > max {
            v.add("max_balance", "must not be less than min_balance");
        }
    }
    let dpd_bucket = query
        .dpd_bucket
        .as_deref()
        .and_then(|s| v.check("dpd_bucket", s.parse::<DpdBucket>()));
    let sort = query
        .sort
        .as_deref()
        .and_then(|s| v.check("sort", Sort::parse(s)));
    let q = query.q.map(|q| q.trim().to_owned());
    if let Some(q) = &q {
        if q.chars().count() > 100 || q.chars().any(char::is_control) {
            v.add(
                "q",
                "must be at most 100 characters without control characters",
            );
        }
    }
    v.finish()?;
    let scope_agent = match scope {
        Scope::Assigned(agent) => {
            if agent_id.is_some_and(|a| a != *agent) {
                return Err(ApiError::forbidden(
                    "an agent lists only the accounts assigned to it",
                ));
            }
            Some(*agent)
        }
        _ => None,
    };
    Ok((
        ListRequest {
            scope_agent,
            status,
            agent_id,
            min_balance,
            max_balance,
            dpd_bucket,
            q,
            sort,
            limit,
        },
        query.cursor,
    ))
}

/// Accounts, filtered and sorted; agents see only theirs.
#[utoipa::path(get, path = "/accounts", tag = "accounts", security(("bearer" = [])), params(ListQuery),
    responses(
        (status = 200, description = "A page of accounts (weak ETag over the page)", body = AccountPage),
        (status = 304, description = "The page is unchanged (If-None-Match)"),
        (status = 400, description = "Bad filter, sort, limit or cursor", body = shared::error::Problem),
        (status = 401, description = "Not signed in", body = shared::error::Problem)))]
async fn list_accounts(app: &App, caller: &Caller, req: &Request, now: Timestamp) -> HttpResult {
    let scope = authorize(caller, Action::ReadAccounts)?;
    let query: ListQuery = shared::http::query(req)?;
    let (request, cursor) = list_request(query, &scope)?;
    let page = app
        .repo
        .list(
            &request,
            cursor.as_deref(),
            &app.platform.cursors,
            today_of(now),
        )
        .await?;
    tracing::debug!(
        items = page.items.len(),
        items_read = page.items_read,
        "list page"
    );
    let page = AccountPage {
        items: page.items,
        next_cursor: page.next_cursor,
    };
    json_or_not_modified(req, &page, Validator::Weak)
}

// ------------------------------------------------------------------ create

/// A new account. `balance` starts at `original_balance`; `version` at 1.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccountBody {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub reference: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub debtor_name: String,
    #[schema(
        max_length = 254,
        pattern = "^[^@\\s\\x00-\\x1F\\x7F-\\x9F]+@[^@.\\s\\x00-\\x1F\\x7F-\\x9F][^@\\s\\x00-\\x1F\\x7F-\\x9F]*\\.[^@\\s\\x00-\\x1F\\x7F-\\x9F]*[^@.\\s\\x00-\\x1F\\x7F-\\x9F]$"
    )]
    pub debtor_email: String,
    #[schema(pattern = "^\\+[1-9][0-9]{1,14}$")]
    pub debtor_phone: String,
    #[schema(value_type = TimeZoneName)]
    pub debtor_timezone: String,
    /// ISO 4217.
    #[schema(value_type = Currency)]
    pub currency: String,
    /// Minor units, 0..=10^12 (`shared::validation::MAX_AMOUNT`).
    #[schema(value_type = shared::domain::AmountOrZero)]
    pub original_balance: MinorUnits,
    /// Default `active` (`paid` when `original_balance` is 0; `paid` with a balance above 0
    /// is a `422`).
    pub status: Option<AccountStatus>,
    /// An enabled user with role agent.
    pub assigned_agent_id: Option<Id>,
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub due_date: String,
    /// At most 20, each 1 to 40 characters.
    #[serde(default)]
    #[schema(max_items = 20, value_type = Vec<Tag>)]
    pub tags: Vec<String>,
}

/// Validates a create body into the account to store.
pub fn new_account(body: CreateAccountBody, now: Timestamp) -> Result<Account, ApiError> {
    let mut v = Validation::new();
    let reference = body.reference.trim().to_owned();
    check_text(&mut v, "reference", &reference, 64);
    let debtor_name = body.debtor_name.trim().to_owned();
    check_text(&mut v, "debtor_name", &debtor_name, 200);
    let debtor_email = body.debtor_email.trim().to_owned();
    check_email(&mut v, &debtor_email);
    let debtor_phone = body.debtor_phone.trim().to_owned();
    check_phone(&mut v, &debtor_phone);
    let debtor_timezone = body.debtor_timezone.trim().to_owned();
    check_timezone(&mut v, &debtor_timezone);
    let currency = v.check("currency", body.currency.trim().parse::<Currency>());
    check_amount(&mut v, "original_balance", body.original_balance, 0);
    let due_date = check_due(&mut v, body.due_date.trim());
    let tags = clean_tags(&mut v, body.tags);
    v.finish()?;
    let (Some(currency), Some(due_date)) = (currency, due_date) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let status = body.status.unwrap_or(if body.original_balance.0 == 0 {
        AccountStatus::Paid
    } else {
        AccountStatus::Active
    });
    let account = Account {
        id: Id::generate(),
        reference,
        debtor_name,
        debtor_email,
        debtor_phone,
        debtor_timezone,
        currency,
        original_balance: body.original_balance,
        balance: body.original_balance,
        status,
        assigned_agent_id: body.assigned_agent_id,
        due_date,
        days_past_due: 0,
        dpd_bucket: DpdBucket::Current,
        tags,
        version: 1,
        created_at: now,
        updated_at: now,
        deleted_at: None,
        applied_bulk_jobs: Default::default(),
    }
    .aged(today_of(now));
    rules::check_paid(&account)?;
    Ok(account)
}

/// Create an account (admin, manager).
#[utoipa::path(post, path = "/accounts", tag = "accounts", security(("bearer" = [])), request_body = CreateAccountBody,
    responses(
        (status = 201, description = "Created; ETag and Location set", body = Account),
        (status = 400, description = "Invalid field; assigned_agent_id not an enabled agent", body = shared::error::Problem),
        (status = 403, description = "Role may not create", body = shared::error::Problem),
        (status = 409, description = "Reference taken", body = shared::error::Problem),
        (status = 422, description = "status paid while the balance is above 0", body = shared::error::Problem)))]
async fn create_account(app: &App, caller: &Caller, req: &Request, now: Timestamp) -> HttpResult {
    authorize(caller, Action::CreateAccount)?;
    app.platform
        .limiter
        .check_user_write(caller, app.platform.limits.write_per_user)
        .await?;
    let body: CreateAccountBody = shared::http::json_body(req)?;
    let account = new_account(body, now)?;
    if let Some(agent) = account.assigned_agent_id {
        check_assignable(&app.users, agent, "assigned_agent_id").await?;
    }
    match app.repo.create(&account).await? {
        Ok(()) => {
            let mut response = account_response(StatusCode::CREATED, &account)?;
            if let Ok(location) = HeaderValue::from_str(&format!("/accounts/{}", account.id)) {
                response.headers_mut().insert(LOCATION, location);
            }
            Ok(response)
        }
        Err(_) => Err(ApiError::conflict(format!(
            "reference {} is already used by another account",
            account.reference
        ))),
    }
}

// ------------------------------------------------------------------ read

/// The live account `id` the caller may see.
async fn visible(app: &App, scope: &Scope, id: Id) -> Result<Account, ApiError> {
    readable(app.repo.get(id).await?, scope, id)
}

/// One account, with its ETag.
#[utoipa::path(get, path = "/accounts/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = shared::domain::Id, Path, description = "Account id (ULID)")),
    responses(
        (status = 200, description = "The account; ETag is \"<version>-<days_past_due>\"", body = Account),
        (status = 304, description = "Unchanged (If-None-Match)"),
        (status = 404, description = "No such account, deleted, or not the agent's", body = shared::error::Problem)))]
async fn get_account(app: &App, caller: &Caller, req: &Request, now: Timestamp) -> HttpResult {
    let scope = authorize(caller, Action::ReadAccounts)?;
    let id: Id = path_param(req, "id")?;
    let mut account = visible(app, &scope, id).await?;
    account.refresh_dpd(today_of(now));
    let etag = account.etag();
    if none_match(req, &etag) {
        return not_modified(&etag);
    }
    account_response(StatusCode::OK, &account)
}

// ------------------------------------------------------------------ update

/// Changes to an account; absent fields stay. `balance`, `original_balance`, `currency`,
/// ids, `version` and timestamps are refused (payments change balances).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccountBody {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub reference: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub debtor_name: Option<String>,
    #[schema(
        max_length = 254,
        pattern = "^[^@\\s\\x00-\\x1F\\x7F-\\x9F]+@[^@.\\s\\x00-\\x1F\\x7F-\\x9F][^@\\s\\x00-\\x1F\\x7F-\\x9F]*\\.[^@\\s\\x00-\\x1F\\x7F-\\x9F]*[^@.\\s\\x00-\\x1F\\x7F-\\x9F]$"
    )]
    pub debtor_email: Option<String>,
    #[schema(pattern = "^\\+[1-9][0-9]{1,14}$")]
    pub debtor_phone: Option<String>,
    #[schema(value_type = Option<TimeZoneName>)]
    pub debtor_timezone: Option<String>,
    pub status: Option<AccountStatus>,
    /// An enabled user with role agent; `null` unassigns.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub assigned_agent_id: Option<Option<Id>>,
    #[schema(format = Date)]
    pub due_date: Option<String>,
    /// At most 20, each 1 to 40 characters.
    #[schema(max_items = 20, value_type = Option<Vec<Tag>>)]
    pub tags: Option<Vec<String>>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Id>>, D::Error> {
    Option::<Id>::deserialize(d).map(Some)
}

/// Fields a PATCH may never set.
const READ_ONLY: [(&str, &str); 10] = [
    ("balance", "is changed only by payments"),
    ("original_balance", "is changed only by payments"),
    ("currency", "cannot change once balances exist"),
    ("id", "cannot be changed"),
    ("version", "is set by the server; send If-Match instead"),
    ("created_at", "is set by the server"),
    ("updated_at", "is set by the server"),
    ("deleted_at", "use DELETE /accounts/{id}"),
    ("days_past_due", "is derived from due_date"),
    ("dpd_bucket", "is derived from due_date"),
];

/// Parses a PATCH body: read-only fields are a `400` naming each.
pub fn parse_update(bytes: &[u8]) -> Result<(UpdateAccountBody, Vec<String>), ApiError> {
    let value: serde_json::Value = shared::http::parse_json(bytes)?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::invalid_field("body", "must be a JSON object"));
    };
    let mut v = Validation::new();
    for (field, why) in READ_ONLY {
        if object.contains_key(field) {
            v.add(field, why);
        }
    }
    v.finish()?;
    let fields = object.keys().cloned().collect();
    let body: UpdateAccountBody = shared::http::parse_json(bytes)?;
    Ok((body, fields))
}

/// Applies a validated PATCH to `account`.
pub fn apply_update(
    account: &Account,
    body: UpdateAccountBody,
    now: Timestamp,
) -> Result<Account, ApiError> {
    let mut v = Validation::new();
    let mut next = account.clone();
    if let Some(reference) = body.reference {
        next.reference = reference.trim().to_owned();
        check_text(&mut v, "reference", &next.reference, 64);
    }
    if let Some(name) = body.debtor_name {
        next.debtor_name = name.trim().to_owned();
        check_text(&mut v, "debtor_name", &next.debtor_name, 200);
    }
    if let Some(email) = body.debtor_email {
        next.debtor_email = email.trim().to_owned();
        check_email(&mut v, &next.debtor_email);
    }
    if let Some(phone) = body.debtor_phone {
        next.debtor_phone = phone.trim().to_owned();
        check_phone(&mut v, &next.debtor_phone);
    }
    if let Some(zone) = body.debtor_timezone {
        next.debtor_timezone = zone.trim().to_owned();
        check_timezone(&mut v, &next.debtor_timezone);
    }
    if let Some(status) = body.status {
        next.status = status;
    }
    if let Some(agent) = body.assigned_agent_id {
        next.assigned_agent_id = agent;
    }
    if let Some(due) = body.due_date {
        if let Some(date) = check_due(&mut v, due.trim()) {
            next.due_date = date;
        }
    }
    if let Some(tags) = body.tags {
        next.tags = clean_tags(&mut v, tags);
    }
    v.finish()?;
    next.version = account.version + 1;
    next.updated_at = now;
    next.refresh_dpd(today_of(now));
    Ok(next)
}

/// Update an account (`If-Match` required).
#[utoipa::path(patch, path = "/accounts/{id}", tag = "accounts", security(("bearer" = [])), request_body = UpdateAccountBody,
    params(("id" = shared::domain::Id, Path, description = "Account id (ULID)"),
           ("If-Match" = String, Header, pattern = r#"^(\*|(W/)?"[0-9]{1,19}(-[0-9]{1,10})?")$"#, description = "ETag of the version read")),
    responses(
        (status = 200, description = "Updated; new ETag", body = Account),
        (status = 400, description = "Invalid or read-only field; assigned_agent_id not an enabled agent", body = shared::error::Problem),
        (status = 403, description = "Not the agent's account, or a field (or status move) the caller's role may not change: `errors` names each field", body = shared::error::Problem),
        (status = 404, description = "No such account", body = shared::error::Problem),
        (status = 409, description = "New reference taken", body = shared::error::Problem),
        (status = 412, description = "Stale If-Match", body = shared::error::Problem),
        (status = 415, description = "Content-Type is not JSON", body = shared::error::Problem),
        (status = 422, description = "status paid while the balance is above 0", body = shared::error::Problem),
        (status = 428, description = "If-Match missing", body = shared::error::Problem)))]
async fn update_account(app: &App, caller: &Caller, req: &Request, now: Timestamp) -> HttpResult {
    let scope = authorize(caller, Action::UpdateAccount)?;
    let id: Id = path_param(req, "id")?;
    let expected = if_match(req)?;
    app.platform
        .limiter
        .check_user_write(caller, app.platform.limits.write_per_user)
        .await?;
    let (body, fields) = parse_update(shared::http::json_bytes(req)?)?;
    let account = writable(app.repo.get(id).await?, &scope, id)?;
    rules::check_fields(caller.role, &fields, account.status, body.status)?;
    let expected = expected.unwrap_or(account.version);
    if expected != account.version {
        return Err(stale(&account));
    }
    let next = apply_update(&account, body, now)?;
    rules::check_paid(&next)?;
    if let Some(agent) = next.assigned_agent_id {
        if next.assigned_agent_id != account.assigned_agent_id {
            check_assignable(&app.users, agent, "assigned_agent_id").await?;
        }
    }
    let activities = rules::audit(&account, &next, caller.user_id, now);
    match app
        .repo
        .replace(&account, &next, expected, &activities)
        .await?
    {
        Ok(()) => account_response(StatusCode::OK, &next),
        Err(WriteConflict::Version) => Err(ApiError::precondition_failed(
            "the account changed since it was read; GET it again and retry",
        )),
        Err(WriteConflict::Reference) => Err(ApiError::conflict(format!(
            "reference {} is already used by another account",
            next.reference
        ))),
    }
}

fn stale(account: &Account) -> ApiError {
    ApiError::precondition_failed(format!(
        "If-Match does not match the current version {}; GET the account again",
        account.etag()
    ))
}

// ------------------------------------------------------------------ delete

/// Soft-delete an account (admin, manager); optional `If-Match`.
#[utoipa::path(delete, path = "/accounts/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = shared::domain::Id, Path, description = "Account id (ULID)")),
    responses(
        (status = 204, description = "Deleted (soft: history stays)"),
        (status = 403, description = "Role may not delete", body = shared::error::Problem),
        (status = 404, description = "No such account", body = shared::error::Problem),
        (status = 412, description = "Stale If-Match", body = shared::error::Problem)))]
async fn delete_account(app: &App, caller: &Caller, req: &Request, now: Timestamp) -> HttpResult {
    authorize(caller, Action::DeleteAccount)?;
    let id: Id = path_param(req, "id")?;
    let expected = match header(req, IF_MATCH.as_str()) {
        Some(_) => if_match(req)?,
        None => None,
    };
    app.platform
        .limiter
        .check_user_write(caller, app.platform.limits.write_per_user)
        .await?;
    let account = app
        .repo
        .get(id)
        .await?
        .filter(|a| a.deleted_at.is_none())
        .ok_or_else(|| not_found(id))?;
    if expected.is_some_and(|v| v != account.version) {
        return Err(stale(&account));
    }
    let mut next = account.clone();
    next.deleted_at = Some(now);
    next.updated_at = now;
    next.version = account.version + 1;
    match app
        .repo
        .replace(&account, &next, account.version, &[])
        .await?
    {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(_) => Err(ApiError::precondition_failed(
            "the account changed while it was being deleted; retry",
        )),
    }
}
