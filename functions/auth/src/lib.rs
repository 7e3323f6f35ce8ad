//! Sign-up, sign-in and sessions.
//!
//! - `POST /auth/register`: anyone; creates a `viewer`. `201` with the user, `409` when the
//!   email is taken in any case (uniqueness is DynamoDB's, see `shared::auth::users`).
//! - `POST /auth/login`: `{access_token, refresh_token, token_type: "Bearer", expires_in}`.
//! - `POST /auth/refresh`: rotates (new pair); a spent token presented again revokes its
//!   whole family (every session descended from that login) and answers `401`.
//! - `POST /auth/logout`: signed in; revokes the family of the refresh token in the body.
//! - `GET /auth/me`: the caller.
//!
//! # Failed logins, lockout, enumeration
//!
//! An unknown email and a wrong password get the same `401` problem (same body) and about the
//! same time: an unknown email is verified against a dummy argon2 hash with the same
//! parameters and costs the same reads (email item + one user `GetItem`). The 5th failed login
//! in a row (`MAX_FAILED_LOGINS`) locks the account for 15 minutes (`LOCKOUT_SECONDS`).
//! While locked, a wrong password still gets the same `401` (no count, no hint), and only
//! the **right** password gets **`423 Locked`** with `Retry-After`: so the lock is only
//! revealed to someone who knows the password, and enumeration stays impossible. An admin
//! unlocks with `PATCH /users/{id}` `{"unlock": true}`. A disabled user who gives the right
//! password gets `403`.
//!
//! # Rate limits
//!
//! Login: per source IP and per email (`LOGIN_LIMIT_PER_IP`, `LOGIN_LIMIT_PER_EMAIL`);
//! register: per IP and per email (`REGISTER_LIMIT_*`); logout: per user
//! (`WRITE_LIMIT_PER_USER`). Fixed windows on DynamoDB, see `shared::rate_limit`; over a
//! limit: `429` with `Retry-After`.

pub mod refresh;

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
use shared::platform::{InitError, Platform};
use shared::rate_limit::hashed;
use shared::validation::{no_control, trimmed};
use shared::{ApiError, FieldError};
use utoipa::{OpenApi, ToSchema};

use refresh::{RefreshStore, Rotation};

/// Settings of this function beyond the shared ones.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `MAX_FAILED_LOGINS`, default 5.
    pub max_failed_logins: u32,
    /// `LOCKOUT_SECONDS`, default 900.
    pub lockout: Duration,
    /// `REFRESH_TOKEN_TTL_SECONDS`, default 30 days.
    pub refresh_ttl_secs: i64,
}

impl Settings {
    pub fn from_lookup(lookup: Lookup<'_>) -> Result<Self, shared::config::ConfigError> {
        Ok(Self {
            max_failed_logins: optional_from(lookup, "MAX_FAILED_LOGINS", 5_u32)?,
            lockout: Duration::from_secs(optional_from(lookup, "LOCKOUT_SECONDS", 900_u64)?),
            refresh_ttl_secs: optional_from(lookup, "REFRESH_TOKEN_TTL_SECONDS", 30 * 86_400_i64)?,
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
    paths(register, login, refresh_tokens, logout, me),
    components(schemas(RegisterBody, LoginBody, RefreshBody, TokenPair, User, Role)),
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
    pub email: String,
    #[serde(deserialize_with = "trimmed")]
    #[garde(length(chars, min = 1, max = 100), custom(no_control))]
    pub name: String,
    /// 12..=128 characters, not a common password, not the email.
    #[garde(length(chars, max = 1024))]
    pub password: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    #[serde(deserialize_with = "trimmed")]
    #[garde(length(chars, min = 1, max = 254), custom(no_control))]
    pub email: String,
    #[garde(length(chars, min = 1, max = 1024))]
    pub password: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    #[serde(deserialize_with = "trimmed")]
    #[garde(length(chars, min = 1, max = 256), custom(no_control))]
    pub refresh_token: String,
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

/// Create an account (role `viewer`).
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterBody,
    responses(
        (status = 201, description = "Created", body = User),
        (status = 400, description = "Invalid body or weak password", body = shared::error::Problem),
        (status = 409, description = "Email already registered", body = shared::error::Problem),
        (status = 429, description = "Too many registrations", body = shared::error::Problem)))]
async fn register(app: &App, req: Request) -> HttpResult {
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
            role: Role::Viewer,
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
        (status = 423, description = "Right password, but the account is locked after repeated failures; Retry-After", body = shared::error::Problem),
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
    by_ip?;
    by_email?;

    let user = app.users.find_by_email(&body.email).await?;
    let Some(user) = user else {
        // Same work as a known email: one more read and a full verification.
        let _ = app.users.get(shared::domain::Id::generate()).await?;
        app.hasher.verify_blocking(None, body.password).await?;
        return Err(bad_credentials());
    };
    let password_ok = app
        .hasher
        .verify_blocking(Some(user.password_hash.clone()), body.password.clone())
        .await?;
    let now = Timestamp::now();
    if user.locked_at(now) {
        if !password_ok {
            return Err(bad_credentials());
        }
        let until = user.locked_until.map(|t| t.unix_seconds()).unwrap_or(0);
        let mut err = ApiError::locked(
            "this account is locked after repeated failed sign-ins; try again later or ask an admin to unlock it",
        );
        err.retry_after = Some((until - now.unix_seconds()).max(1) as u64);
        return Err(err);
    }
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
    let refresh_token = app.refresh.issue(user.id).await?;
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
    match app.refresh.rotate(&body.refresh_token).await? {
        Rotation::Invalid => Err(invalid_refresh()),
        Rotation::Reused { family_id } => {
            tracing::warn!(family = %family_id, "refresh token reuse: family revoked");
            Err(invalid_refresh())
        }
        Rotation::Rotated {
            token,
            user_id,
            family_id,
        } => match app.users.get(user_id).await? {
            Some(user) if !user.disabled => token_response(app, &user, token),
            _ => {
                app.refresh.revoke_family(&family_id).await?;
                Err(invalid_refresh())
            }
        },
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
