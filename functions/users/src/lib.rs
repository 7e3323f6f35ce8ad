//! User administration (role `admin` only, `Action::ManageUsers`).
//!
//! - `GET /users?limit=1..100&cursor=...`: newest first, one `Query` on the sparse GSI
//!   `users-by-created`; `next_cursor` is HMAC-signed (`shared::cursor`).
//! - `POST /users`: create a user with any role (password policy applies).
//! - `PATCH /users/{id}`: change `name`, `role` (granting one to a self-registered
//!   `pending` user included), `disabled`, or `unlock`; optional `If-Match` with the `ETag`
//!   (`"<version>"`) of the user. Disabling or changing the role ends every session of the
//!   user: its access tokens are retired (token version) and every refresh-token family is
//!   revoked (`shared::auth::refresh`), so re-enabling the user later does not bring an old
//!   refresh token back. The last enabled admin cannot be demoted or disabled (`422
//!   last-admin`; race-safe: an admin counter in the same transaction).
//! - `POST /users/{id}/sessions/revoke`: ends every session of the user the same way
//!   (a lost laptop) without changing anything else. `204`.
//!
//! Writes count against the caller's `WRITE_LIMIT_PER_USER`.

use garde::Validate;
use http::StatusCode;
use lambda_http::Request;
use serde::{Deserialize, Serialize};
use shared::auth::password::policy_errors;
use shared::auth::refresh::{self, revoke_all_sessions, RefreshStore};
use shared::auth::users::{NewUser, UserChanges, UserItem, UserRepo};
use shared::auth::{authorize, Action, BearerSecurity, Caller, PasswordHasher, Role, User};
use shared::domain::Id;
use shared::http::{header, json, path_param, route_key, unknown_route, HttpResult};
use shared::platform::{InitError, Platform};
use shared::validation::{no_control, trimmed, trimmed_opt};
use shared::{ApiError, FieldError};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// The shared platform and this function's repository, built once per cold start.
pub struct App {
    pub platform: Platform,
    pub users: UserRepo,
    /// To revoke a user's refresh-token families (disable, role change, sessions/revoke).
    pub refresh: RefreshStore,
    pub hasher: PasswordHasher,
}

impl App {
    /// `refresh_ttl_secs`: `REFRESH_TOKEN_TTL_SECONDS` (revoked families' markers are kept
    /// that long).
    pub fn new(platform: Platform, refresh_ttl_secs: i64) -> Result<Self, ApiError> {
        let dynamodb = &platform.clients.dynamodb;
        let tables = &platform.config.tables;
        Ok(Self {
            users: UserRepo::new(dynamodb.clone(), tables.users.clone()),
            refresh: RefreshStore::new(
                dynamodb.clone(),
                tables.refresh_tokens.clone(),
                refresh_ttl_secs,
            ),
            hasher: PasswordHasher::new()?,
            platform,
        })
    }

    pub async fn from_env() -> Result<Self, InitError> {
        let ttl = refresh::ttl_from(&shared::config::env_lookup)?;
        Ok(Self::new(
            Platform::from_env(|tables| &tables.users).await?,
            ttl,
        )?)
    }
}

/// The HTTP API of this function, merged into `/openapi.json` by the docs function.
#[derive(OpenApi)]
#[openapi(
    paths(list_users, create_user, update_user, revoke_sessions),
    components(schemas(UserPage, CreateUserBody, UpdateUserBody, User, Role)),
    modifiers(&BearerSecurity),
    tags((name = "users", description = "User administration (admin only)"))
)]
pub struct ApiDoc;

/// Routes a request by the route key API Gateway matched. Every route is admin-only.
pub async fn handle(app: &App, req: Request) -> HttpResult {
    let route = route_key(&req);
    let caller = app.platform.authenticator.authenticate(&req).await?;
    authorize(&caller, Action::ManageUsers)?;
    match route.as_str() {
        "GET /users" => list_users(app, req).await,
        "POST /users" => create_user(app, &caller, req).await,
        "PATCH /users/{id}" => update_user(app, &caller, req).await,
        "POST /users/{id}/sessions/revoke" => revoke_sessions(app, &caller, req).await,
        other => Err(unknown_route(other)),
    }
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1..=100, default 25.
    #[garde(range(min = 1, max = 100))]
    #[serde(default = "default_limit")]
    #[param(value_type = Option<shared::domain::PageLimit>)]
    pub limit: u16,
    /// `next_cursor` of the previous page.
    #[garde(length(max = 2048))]
    pub cursor: Option<String>,
}

fn default_limit() -> u16 {
    25
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<User>,
    pub next_cursor: Option<String>,
}

const CURSOR_SCOPE: &str = "users";

/// Users, newest first.
#[utoipa::path(get, path = "/users", tag = "users", params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        (status = 400, description = "Bad limit or cursor", body = shared::error::Problem),
        (status = 401, description = "Not signed in", body = shared::error::Problem),
        (status = 403, description = "Not an admin", body = shared::error::Problem)))]
async fn list_users(app: &App, req: Request) -> HttpResult {
    let query: ListQuery = shared::validation::query(&req)?;
    let after: Option<String> = app
        .platform
        .cursors
        .resume(CURSOR_SCOPE, query.cursor.as_deref())?;
    let (items, last) = app.users.list(query.limit, after.as_deref()).await?;
    let next_cursor = app.platform.cursors.next(CURSOR_SCOPE, last.as_ref())?;
    json(
        StatusCode::OK,
        &UserPage {
            items: items.iter().map(User::from).collect(),
            next_cursor,
        },
    )
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    #[serde(deserialize_with = "trimmed")]
    #[garde(email, length(chars, max = 254), custom(no_control))]
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[serde(deserialize_with = "trimmed")]
    #[garde(length(chars, min = 1, max = 100), custom(no_control))]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub name: String,
    /// 12..=128 characters, not a common password, not the email.
    #[garde(length(chars, max = 1024))]
    #[schema(min_length = 12, max_length = 128)]
    pub password: String,
    #[garde(skip)]
    pub role: Role,
}

fn with_etag(
    mut response: lambda_http::Response<lambda_http::Body>,
    user: &UserItem,
) -> lambda_http::Response<lambda_http::Body> {
    if let Ok(etag) = http::HeaderValue::from_str(&format!("\"{}\"", user.version)) {
        response.headers_mut().insert(http::header::ETAG, etag);
    }
    response
}

/// Create a user with a role.
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUserBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = User),
        (status = 400, description = "Invalid body or weak password", body = shared::error::Problem),
        (status = 403, description = "Not an admin", body = shared::error::Problem),
        (status = 409, description = "Email already registered", body = shared::error::Problem)))]
async fn create_user(app: &App, caller: &Caller, req: Request) -> HttpResult {
    let body: CreateUserBody = shared::validation::json(&req)?;
    let policy = policy_errors(&body.password, &body.email);
    if !policy.is_empty() {
        return Err(ApiError::validation(
            policy
                .into_iter()
                .map(|m| FieldError::new("password", m))
                .collect(),
        ));
    }
    app.platform
        .limiter
        .check_user_write(caller, app.platform.limits.write_per_user)
        .await?;
    let password_hash = app.hasher.hash_blocking(body.password).await?;
    let user = app
        .users
        .create(NewUser {
            email: body.email,
            name: body.name,
            role: body.role,
            password_hash,
        })
        .await?;
    tracing::info!(admin = %caller.user_id, user = %user.id, role = %user.role, "user created");
    let mut response = json(StatusCode::CREATED, &User::from(&user))?;
    if let Ok(location) = http::HeaderValue::from_str(&format!("/users/{}", user.id)) {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
    Ok(with_etag(response, &user))
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserBody {
    #[serde(default, deserialize_with = "trimmed_opt")]
    #[garde(length(chars, min = 1, max = 100), custom(no_control))]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub name: Option<String>,
    #[serde(default)]
    #[garde(skip)]
    pub role: Option<Role>,
    #[serde(default)]
    #[garde(skip)]
    pub disabled: Option<bool>,
    /// `true` clears a lockout and the failed-login count.
    #[serde(default)]
    #[garde(skip)]
    pub unlock: Option<bool>,
}

/// Change a user's name, role, disabled flag, or unlock it.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", request_body = UpdateUserBody,
    params(("id" = shared::domain::Id, Path, description = "User id (ULID)"),
           ("If-Match" = Option<String>, Header, description = "ETag of the user")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = User),
        (status = 400, description = "Invalid body", body = shared::error::Problem),
        (status = 403, description = "Not an admin", body = shared::error::Problem),
        (status = 404, description = "No such user", body = shared::error::Problem),
        (status = 409, description = "Changed concurrently", body = shared::error::Problem),
        (status = 412, description = "If-Match does not match", body = shared::error::Problem),
        (status = 422, description = "Would leave no enabled admin (`last-admin`)", body = shared::error::Problem)))]
async fn update_user(app: &App, caller: &Caller, req: Request) -> HttpResult {
    let id: Id = path_param(&req, "id")?;
    let body: UpdateUserBody = shared::validation::json(&req)?;
    if body.name.is_none()
        && body.role.is_none()
        && body.disabled.is_none()
        && body.unlock.is_none()
    {
        return Err(ApiError::invalid_field(
            "body",
            "name, role, disabled or unlock is required",
        ));
    }
    if body.unlock == Some(false) {
        return Err(ApiError::invalid_field("unlock", "only true is meaningful"));
    }
    app.platform
        .limiter
        .check_user_write(caller, app.platform.limits.write_per_user)
        .await?;
    let current = app
        .users
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    if let Some(expected) = header(&req, "if-match") {
        if expected.trim() != "*" && expected.trim() != format!("\"{}\"", current.version) {
            return Err(ApiError::precondition_failed(
                "the user changed since that ETag; read it again",
            ));
        }
    }
    let changes = UserChanges {
        name: body.name,
        role: body.role,
        disabled: body.disabled,
        unlock: body.unlock == Some(true),
    };
    let updated = app.users.update(&current, &changes).await?;
    if updated.token_version != current.token_version {
        // Disabled or role changed: the version moved (access tokens retired and refresh
        // tokens refused); revoke the families too, so the refusal shows in the table.
        app.refresh.revoke_user(id).await?;
    }
    app.platform.authenticator.forget(id);
    tracing::info!(admin = %caller.user_id, user = %id, ?changes, "user updated");
    Ok(with_etag(
        json(StatusCode::OK, &User::from(&updated))?,
        &updated,
    ))
}

/// End every session of a user: refresh tokens revoked, access tokens retired.
#[utoipa::path(post, path = "/users/{id}/sessions/revoke", tag = "users",
    params(("id" = shared::domain::Id, Path, description = "User id (ULID)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every refresh-token family of the user revoked and its access tokens retired"),
        (status = 400, description = "Bad id", body = shared::error::Problem),
        (status = 401, description = "Not signed in", body = shared::error::Problem),
        (status = 403, description = "Not an admin", body = shared::error::Problem),
        (status = 404, description = "No such user", body = shared::error::Problem),
        (status = 429, description = "Too many writes; Retry-After", body = shared::error::Problem)))]
async fn revoke_sessions(app: &App, caller: &Caller, req: Request) -> HttpResult {
    let id: Id = path_param(&req, "id")?;
    app.platform
        .limiter
        .check_user_write(caller, app.platform.limits.write_per_user)
        .await?;
    revoke_all_sessions(&app.users, &app.refresh, id).await?;
    app.platform.authenticator.forget(id);
    tracing::info!(admin = %caller.user_id, user = %id, "every session of the user revoked");
    shared::http::empty(StatusCode::NO_CONTENT)
}
