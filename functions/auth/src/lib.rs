//! Sign-up, sign-in and sessions.
//!
//! - `POST /auth/register`: anyone; creates a `pending` user, which may do nothing but sign
//!   in, read `/auth/me` and sign out until an admin grants a role (`PATCH /users/{id}`):
//!   debtor data is regulated, so a stranger reads nothing (why a role and not invitations:
//!   `shared::auth::rbac`). `201` with the user, `409` when the email is taken in any case
//!   (uniqueness is DynamoDB's, see `shared::auth::users`). `SELF_REGISTRATION=off` (template
//!   parameter `SelfRegistration`) turns it off: `403` problem `registration-disabled`, before
//!   the body is read.
//! - `POST /auth/login`: `{access_token, refresh_token, token_type: "Bearer", expires_in}`.
//! - `POST /auth/refresh`: rotates (new pair); a spent token presented again revokes its
//!   whole family (every session descended from that login) and answers `401`.
//! - `POST /auth/logout`: signed in; revokes the family of the refresh token in the body.
//! - `POST /auth/logout-all`: signed in (any role, `pending` too); ends every session of the
//!   caller: every refresh-token family is revoked and every access token retired (token
//!   version bump), this request's own included. `204`.
//! - `POST /auth/password`: signed in (not `pending`); `{current_password, new_password}`,
//!   the policy applies to the new one; ends every session like `logout-all` (a stolen
//!   session must not survive the change). `204`; sign in again with the new password. A
//!   wrong current password counts as a failed sign-in, and during a lock the answer is the
//!   login's `423` without any check (a stolen access token is no way around the lock).
//! - `GET /auth/me`: the caller.
//!
//! # Failed logins, lockout, enumeration
//!
//! An unknown email and a wrong password get the same `401` problem (same body) and about the
//! same time: an unknown email is verified against a dummy argon2 hash with the same
//! parameters and costs the same reads (email item + one user `GetItem`). The 5th failed login
//! in a row (`MAX_FAILED_LOGINS`) locks the account for 15 minutes (`LOCKOUT_SECONDS`).
//! While locked, **every** attempt gets the same **`423 Locked`** with `Retry-After` and the
//! password is **not checked**: an answer that differed between a right and a wrong password
//! would let an attacker keep guessing through the lock (the lock would then only slow the
//! guessing down to the argon2 cost, and a `423` would confirm the guess). The lock does
//! reveal that the email has an account, to whoever triggered it by failing five times; that
//! is the price of a lock that stops guessing. It ends by time or when an admin unlocks with
//! `PATCH /users/{id}` `{"unlock": true}`. A disabled user who gives the right password gets
//! `403`.
//!
//! # Rate limits
//!
//! Login: per source IP and per email (`LOGIN_LIMIT_PER_IP`, `LOGIN_LIMIT_PER_EMAIL`);
//! register: per IP and per email (`REGISTER_LIMIT_*`); logout: per user
//! (`WRITE_LIMIT_PER_USER`). Fixed windows on DynamoDB, see `shared::rate_limit`; over a
//! limit: `429` with `Retry-After`.

/// Refresh tokens live in `shared` (the users function revokes them too); re-exported so
/// `auth::refresh::...` keeps naming them.
pub use shared::auth::refresh;

use std::time::Duration;

use garde::Validate;
use http::StatusCode;
use lambda_http::Request;
use serde::{Deserialize, Serialize};
use shared::auth::password::policy_errors;
use shared::auth::token::ACCESS_TOKEN_TTL_SECS;
use shared::auth::users::{NewUser, UserItem, UserRepo};
use shared::auth::{BearerSecurity, PasswordHasher, Role, User};
use shared::config::{optional_from, Lookup};
use shared::domain::Timestamp;
use shared::http::{empty, json, route_key, source_ip, unknown_route, HttpResult};
use shared::metrics::{self, names};
use shared::platform::{InitError, Platform};
use shared::rate_limit::hashed;
use shared::validation::{no_control, trimmed};
use shared::{ApiError, FieldError};
use utoipa::{OpenApi, ToSchema};

use refresh::{revoke_all_sessions, RefreshStore, Refreshed};

/// Settings of this function beyond the shared ones.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `MAX_FAILED_LOGINS`, default 5.
    pub max_failed_logins: u32,
    /// `LOCKOUT_SECONDS`, default 900.
    pub lockout: Duration,
    /// `REFRESH_TOKEN_TTL_SECONDS`, default 30 days.
    pub refresh_ttl_secs: i64,
    /// `SELF_REGISTRATION`: `open` (default) or `off`.
    pub self_registration: bool,
}

/// `SELF_REGISTRATION`: `open` (default) or `off`; anything else ends init naming the value.
pub fn self_registration(lookup: Lookup<'_>) -> Result<bool, shared::config::ConfigError> {
    match optional_from(lookup, "SELF_REGISTRATION", "open".to_owned())?.as_str() {
        "open" => Ok(true),
        "off" => Ok(false),
        other => Err(shared::config::ConfigError::Invalid {
            name: "SELF_REGISTRATION",
            reason: format!("{other:?} is neither open nor off"),
        }),
    }
}

impl Settings {
    pub fn from_lookup(lookup: Lookup<'_>) -> Result<Self, shared::config::ConfigError> {
        Ok(Self {
            max_failed_logins: optional_from(lookup, "MAX_FAILED_LOGINS", 5_u32)?,
            lockout: Duration::from_secs(optional_from(lookup, "LOCKOUT_SECONDS", 900_u64)?),
            refresh_ttl_secs: refresh::ttl_from(lookup)?,
            self_registration: self_registration(lookup)?,
        })
    }
}

/// The shared platform and this function's stores, built once per cold start.
pub struct App {
    pub platform: Platform,
    pub users: UserRepo,
    pub refresh: RefreshStore,
    pub hasher: PasswordHasher,
    pub settings: Settings,
}

impl App {
    pub fn new(platform: Platform, settings: Settings) -> Result<Self, ApiError> {
        let dynamodb = &platform.clients.dynamodb;
        let tables = &platform.config.tables;
        Ok(Self {
            users: UserRepo::new(dynamodb.clone(), tables.users.clone()),
            refresh: RefreshStore::new(
                dynamodb.clone(),
                tables.refresh_tokens.clone(),
                settings.refresh_ttl_secs,
            ),
            hasher: PasswordHasher::new()?,
            settings,
            platform,
        })
    }

    /// Everything from the environment; the key set from SSM; the DynamoDB connection primed.
    pub async fn from_env() -> Result<Self, InitError> {
        let settings = Settings::from_lookup(&shared::config::env_lookup)?;
        let platform = Platform::from_env(|tables| &tables.users).await?;
        Ok(Self::new(platform, settings)?)
    }
}

/// The HTTP API of this function, merged into `/openapi.json` by the docs function.
#[derive(OpenApi)]
#[openapi(
    paths(register, login, refresh_tokens, logout, logout_all, change_password, me),
    components(schemas(RegisterBody, LoginBody, RefreshBody, PasswordBody, TokenPair, User, Role)),
    modifiers(&BearerSecurity),
    tags((name = "auth", description = "Sign-up, sign-in, sessions"))
)]
pub struct ApiDoc;

/// Routes a request by the route key API Gateway matched.
pub async fn handle(app: &App, req: Request) -> HttpResult {
    match route_key(&req).as_str() {
        "POST /auth/register" => register(app, req).await,
        "POST /auth/login" => login(app, req).await,
        "POST /auth/refresh" => refresh_tokens(app, req).await,
        "POST /auth/logout" => logout(app, req).await,
        "POST /auth/logout-all" => logout_all(app, req).await,
        "POST /auth/password" => change_password(app, req).await,
        "GET /auth/me" => me(app, req).await,
        other => Err(unknown_route(other)),
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// Unique, case-insensitive.
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
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    #[serde(deserialize_with = "trimmed")]
    #[garde(length(chars, min = 1, max = 254), custom(no_control))]
    #[schema(
        min_length = 1,
        max_length = 254,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub email: String,
    #[garde(length(chars, min = 1, max = 1024))]
    #[schema(min_length = 1, max_length = 1024)]
    pub password: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    #[serde(deserialize_with = "trimmed")]
    #[garde(length(chars, min = 1, max = 256), custom(no_control))]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    #[garde(length(chars, min = 1, max = 1024))]
    #[schema(min_length = 1, max_length = 1024)]
    pub current_password: String,
    /// 12..=128 characters, not a common password, not the email.
    #[garde(length(chars, max = 1024))]
    #[schema(min_length = 12, max_length = 128)]
    pub new_password: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenPair {
    /// A JWT for `Authorization: Bearer`, valid `expires_in` seconds.
    pub access_token: String,
    /// Opaque; spend it once on `POST /auth/refresh`.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_in: i64,
}

/// Password policy errors as field errors.
pub fn check_password(password: &str, email: &str) -> Result<(), ApiError> {
    let errors = policy_errors(password, email);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(
            errors
                .into_iter()
                .map(|message| FieldError::new("password", message))
                .collect(),
        ))
    }
}

fn no_store(
    mut response: lambda_http::Response<lambda_http::Body>,
) -> lambda_http::Response<lambda_http::Body> {
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

fn ip_key(req: &Request) -> String {
    source_ip(req).unwrap_or_else(|| "unknown".to_owned())
}

/// The answer to a registration while `SELF_REGISTRATION=off`.
pub fn registration_disabled() -> ApiError {
    ApiError {
        code: "registration-disabled",
        title: "Registration disabled",
        ..ApiError::forbidden("self-registration is turned off; ask an admin for an account")
    }
}

/// Create an account with role `pending` (no access until an admin grants a role).
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterBody,
    responses(
        (status = 201, description = "Created, with role `pending`", body = User),
        (status = 400, description = "Invalid body or weak password", body = shared::error::Problem),
        (status = 403, description = "Self-registration is turned off (`registration-disabled`)", body = shared::error::Problem),
        (status = 409, description = "Email already registered", body = shared::error::Problem),
        (status = 429, description = "Too many registrations", body = shared::error::Problem)))]
async fn register(app: &App, req: Request) -> HttpResult {
    if !app.settings.self_registration {
        return Err(registration_disabled());
    }
    let body: RegisterBody = shared::validation::json(&req)?;
    check_password(&body.password, &body.email)?;
    let limits = &app.platform.limits;
    let (ip, email) = (
        format!("register-ip:{}", ip_key(&req)),
        hashed("register-email", &body.email),
    );
    let (by_ip, by_email) = tokio::join!(
        app.platform.limiter.check(&ip, limits.register_per_ip),
        app.platform
            .limiter
            .check(&email, limits.register_per_email)
    );
    by_ip?;
    by_email?;
    let password_hash = app.hasher.hash_blocking(body.password).await?;
    let user = app
        .users
        .create(NewUser {
            email: body.email,
            name: body.name,
            role: Role::Pending,
            password_hash,
        })
        .await?;
    let mut response = json(StatusCode::CREATED, &User::from(&user))?;
    if let Ok(location) = http::HeaderValue::from_str(&format!("/users/{}", user.id)) {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
    Ok(response)
}

/// `423 Locked` with `Retry-After` while `user` is locked, whatever was presented: every
/// check of a password (sign-in, password change) calls this first and checks nothing
/// during a lock.
fn refuse_if_locked(user: &UserItem, now: Timestamp) -> Result<(), ApiError> {
    if !user.locked_at(now) {
        return Ok(());
    }
    let until = user.locked_until.map(|t| t.unix_seconds()).unwrap_or(0);
    let mut err = ApiError::locked(
        "this account is locked after repeated failed sign-ins; try again later or ask an admin to unlock it",
    );
    err.retry_after = Some((until - now.unix_seconds()).max(1) as u64);
    Err(err)
}

fn bad_credentials() -> ApiError {
    ApiError::unauthorized("invalid email or password")
}

/// Sign in with email and password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in", body = TokenPair),
        (status = 400, description = "Invalid body", body = shared::error::Problem),
        (status = 401, description = "Invalid email or password (same answer for both)", body = shared::error::Problem),
        (status = 403, description = "Right password, but the account is disabled", body = shared::error::Problem),
        (status = 423, description = "The account is locked after repeated failures: the same answer whatever the password (it is not checked); Retry-After", body = shared::error::Problem),
        (status = 429, description = "Too many attempts; Retry-After", body = shared::error::Problem)))]
async fn login(app: &App, req: Request) -> HttpResult {
    let body: LoginBody = shared::validation::json(&req)?;
    let limits = &app.platform.limits;
    let (ip, email) = (
        format!("login-ip:{}", ip_key(&req)),
        hashed("login-email", &body.email),
    );
    let (by_ip, by_email) = tokio::join!(
        app.platform.limiter.check(&ip, limits.login_per_ip),
        app.platform.limiter.check(&email, limits.login_per_email)
    );
    if by_ip.is_err() || by_email.is_err() {
        metrics::count(&names::LOGINS_RATE_LIMITED);
    }
    by_ip?;
    by_email?;

    let user = app.users.find_by_email(&body.email).await?;
    let Some(user) = user else {
        // Same work as a known email: one more read and a full verification.
        let _ = app.users.get(shared::domain::Id::generate()).await?;
        app.hasher.verify_blocking(None, body.password).await?;
        return Err(bad_credentials());
    };
    let now = Timestamp::now();
    // Before (and instead of) checking the password: no oracle during a lock.
    refuse_if_locked(&user, now).inspect_err(|_| metrics::count(&names::LOGINS_LOCKED_OUT))?;
    let password_ok = app
        .hasher
        .verify_blocking(Some(user.password_hash.clone()), body.password.clone())
        .await?;
    if !password_ok {
        let lock_until = now.plus(time::Duration::seconds(
            app.settings.lockout.as_secs() as i64
        ));
        if app
            .users
            .record_failed_login(user.id, app.settings.max_failed_logins, lock_until)
            .await?
        {
            tracing::warn!(user = %user.id, "account locked after repeated failed logins");
        }
        return Err(bad_credentials());
    }
    if user.disabled {
        return Err(ApiError::forbidden("this account is disabled"));
    }
    let rehash = if app.hasher.needs_rehash(&user.password_hash) {
        Some(app.hasher.hash_blocking(body.password).await?)
    } else {
        None
    };
    app.users.record_successful_login(&user, rehash).await?;
    let refresh_token = app.refresh.issue(&user).await?;
    token_response(app, &user, refresh_token)
}

fn token_response(app: &App, user: &UserItem, refresh_token: String) -> HttpResult {
    let (access_token, _) =
        app.platform
            .authenticator
            .tokens()
            .issue(user.id, user.role, user.token_version)?;
    json(
        StatusCode::OK,
        &TokenPair {
            access_token,
            refresh_token,
            token_type: "Bearer".to_owned(),
            expires_in: ACCESS_TOKEN_TTL_SECS,
        },
    )
    .map(no_store)
}

fn invalid_refresh() -> ApiError {
    ApiError::unauthorized("the refresh token is invalid, expired or revoked; sign in again")
}

/// Trade a refresh token for a new pair (the old one is spent).
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshBody,
    responses(
        (status = 200, description = "A new pair", body = TokenPair),
        (status = 400, description = "Invalid body", body = shared::error::Problem),
        (status = 401, description = "Unknown, expired, revoked or reused token (a reuse revokes its family)", body = shared::error::Problem)))]
async fn refresh_tokens(app: &App, req: Request) -> HttpResult {
    let body: RefreshBody = shared::validation::json(&req)?;
    match app.refresh.refresh(&app.users, &body.refresh_token).await? {
        Refreshed::Rotated { user, token } => token_response(app, &user, token),
        Refreshed::Invalid => Err(invalid_refresh()),
    }
}

/// Sign out: revoke the refresh token (and every token rotated from the same sign-in).
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshBody,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked (also when the token was unknown or already revoked)"),
        (status = 401, description = "Not signed in", body = shared::error::Problem)))]
async fn logout(app: &App, req: Request) -> HttpResult {
    let caller = app.platform.authenticator.authenticate(&req).await?;
    let body: RefreshBody = shared::validation::json(&req)?;
    app.platform
        .limiter
        .check_user_write(&caller, app.platform.limits.write_per_user)
        .await?;
    if let Some(stored) = app.refresh.find(&body.refresh_token).await? {
        if stored.user_id == caller.user_id {
            app.refresh.revoke_family(&stored.family_id).await?;
        }
    }
    empty(StatusCode::NO_CONTENT)
}

/// Sign out everywhere: every session of the caller ends.
#[utoipa::path(post, path = "/auth/logout-all", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every refresh token of the caller revoked and every access token retired (this one included)"),
        (status = 401, description = "Not signed in", body = shared::error::Problem),
        (status = 429, description = "Too many writes; Retry-After", body = shared::error::Problem)))]
async fn logout_all(app: &App, req: Request) -> HttpResult {
    let caller = app.platform.authenticator.authenticate(&req).await?;
    app.platform
        .limiter
        .check_user_write(&caller, app.platform.limits.write_per_user)
        .await?;
    revoke_all_sessions(&app.users, &app.refresh, caller.user_id).await?;
    app.platform.authenticator.forget(caller.user_id);
    empty(StatusCode::NO_CONTENT)
}

/// Change one's own password; every session ends (sign in again).
#[utoipa::path(post, path = "/auth/password", tag = "auth", request_body = PasswordBody,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Changed; every refresh token revoked and every access token retired"),
        (status = 400, description = "Invalid body or a new password the policy refuses (`new_password`)", body = shared::error::Problem),
        (status = 401, description = "Not signed in, or the current password is wrong", body = shared::error::Problem),
        (status = 403, description = "A pending user (no role granted yet)", body = shared::error::Problem),
        (status = 409, description = "The user changed meanwhile; retry", body = shared::error::Problem),
        (status = 423, description = "The account is locked after repeated failures (nothing is checked); Retry-After", body = shared::error::Problem),
        (status = 429, description = "Too many writes; Retry-After", body = shared::error::Problem)))]
async fn change_password(app: &App, req: Request) -> HttpResult {
    let caller = app.platform.authenticator.authenticate(&req).await?;
    shared::auth::authorize(&caller, shared::auth::Action::ChangeOwnPassword)?;
    let body: PasswordBody = shared::validation::json(&req)?;
    app.platform
        .limiter
        .check_user_write(&caller, app.platform.limits.write_per_user)
        .await?;
    let user = app
        .users
        .get(caller.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the user no longer exists"))?;
    let errors = policy_errors(&body.new_password, &user.email);
    if !errors.is_empty() {
        return Err(ApiError::validation(
            errors
                .into_iter()
                .map(|message| FieldError::new("new_password", message))
                .collect(),
        ));
    }
    refuse_if_locked(&user, Timestamp::now())?;
    let current_ok = app
        .hasher
        .verify_blocking(Some(user.password_hash.clone()), body.current_password)
        .await?;
    if !current_ok {
        // Counts like a failed sign-in: a stolen access token cannot guess the password
        // faster than the login form could.
        let lock_until = Timestamp::now().plus(time::Duration::seconds(
            app.settings.lockout.as_secs() as i64,
        ));
        app.users
            .record_failed_login(user.id, app.settings.max_failed_logins, lock_until)
            .await?;
        return Err(ApiError {
            errors: vec![FieldError::new(
                "current_password",
                "is not the current password",
            )],
            ..ApiError::unauthorized("the current password is wrong")
        });
    }
    let hash = app.hasher.hash_blocking(body.new_password).await?;
    app.users.set_password(&user, hash).await?;
    app.refresh.revoke_user(user.id).await?;
    app.platform.authenticator.forget(user.id);
    tracing::info!(user = %user.id, "password changed; every session revoked");
    empty(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = User),
        (status = 401, description = "Not signed in", body = shared::error::Problem)))]
async fn me(app: &App, req: Request) -> HttpResult {
    let caller = app.platform.authenticator.authenticate(&req).await?;
    match app.users.get(caller.user_id).await? {
        Some(user) => json(StatusCode::OK, &User::from(&user)).map(no_store),
        None => Err(ApiError::unauthorized("the user no longer exists")),
    }
}
