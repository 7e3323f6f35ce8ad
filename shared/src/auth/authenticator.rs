//! The one way a function learns who is calling: [`Authenticator::authenticate`] turns the
//! `Authorization: Bearer <access token>` header into a [`Caller`], or a `401`
//! problem+json.
//!
//! Besides the token's own checks (signature with a pinned algorithm, `exp`, `iss`, `aud`),
//! it checks that the user is still enabled and that the token's `ver` is the user's
//! current token version: disabling a user or changing their role bumps that version, so
//! their earlier access tokens stop working. That check is one `GetItem` (two attributes)
//! on the Users table, cached in the instance for [`AuthSettings::cache_ttl`] (default 5 s,
//! `AUTH_CACHE_SECONDS`): a disabled user's token is refused at most that long after the
//! change on a warm instance, at once on every other, and a warm instance serving many
//! requests of one user pays one read per user per 5 s. Only an entry that agrees with the
//! token (enabled, same version) is served from the cache; any disagreement reads again, so a
//! token issued right after a role change made elsewhere is never refused from a stale entry.
//! The cache is its own type, [`UserStateCache`], because the notifier checks WebSocket
//! subscribers against the users' current state with the very same rule and time.
//!
//! Built once per cold start:
//!
//! ```ignore
//! let settings = AuthSettings::from_env()?;
//! let keys = settings.load_keys(&sdk).await?;           // SSM, once
//! let authenticator = Authenticator::new(&keys, &settings, dynamodb.clone(), config.tables.users.clone());
//! // per request:
//! let caller = authenticator.authenticate(&req).await?;
//! let scope = shared::auth::authorize(&caller, Action::ReadAccounts)?;
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lambda_http::Request;

use super::keys::{KeyError, KeySet, KEYS_PARAMETER_VARIABLE};
use super::rbac::{Caller, Role};
use super::token::{AccessClaims, TokenService, DEFAULT_AUDIENCE, DEFAULT_ISSUER};
use super::users::{AuthState, UserRepo};
use crate::config::{optional_from, required_from, ConfigError, Lookup, TableName};
use crate::domain::Id;
use crate::dynamo::DataError;
use crate::error::ApiError;

/// Token settings every authenticating function reads at cold start.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Name of the SSM parameter holding the key set (`JWT_KEYS_PARAMETER`).
    pub keys_parameter: String,
    /// `TOKEN_ISSUER`, default `collectpro`.
    pub issuer: String,
    /// `TOKEN_AUDIENCE`, default `collectpro-api`.
    pub audience: String,
    /// `AUTH_CACHE_SECONDS`, default 5 (0 turns the cache off).
    pub cache_ttl: Duration,
}

impl AuthSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&crate::config::env_lookup)
    }

    pub fn from_lookup(lookup: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            keys_parameter: required_from(lookup, KEYS_PARAMETER_VARIABLE)?,
            issuer: optional_from(lookup, "TOKEN_ISSUER", DEFAULT_ISSUER.to_owned())?,
            audience: optional_from(lookup, "TOKEN_AUDIENCE", DEFAULT_AUDIENCE.to_owned())?,
            cache_ttl: cache_ttl_from(lookup)?,
        })
    }

    /// Reads the key set from SSM (once per cold start).
    pub async fn load_keys(&self, sdk: &aws_config::SdkConfig) -> Result<KeySet, KeyError> {
        KeySet::load_from_ssm(&aws_sdk_ssm::Client::new(sdk), &self.keys_parameter).await
    }

    pub fn token_service(&self, keys: &KeySet) -> TokenService {
        TokenService::new(keys, &self.issuer, &self.audience)
    }
}

/// `AUTH_CACHE_SECONDS` (default 5; 0 turns the cache off): how long a user's state may be
/// served from an instance's memory.
pub fn cache_ttl_from(lookup: Lookup<'_>) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(optional_from(
        lookup,
        "AUTH_CACHE_SECONDS",
        5_u64,
    )?))
}

/// Cache entries beyond this are dropped wholesale (a crude bound on memory).
const MAX_CACHE_ENTRIES: usize = 10_000;

/// Users' current state (`disabled`, `token_version`, `role`), read with one `GetItem` and
/// kept per instance for a short time (see the module docs for the rule).
pub struct UserStateCache {
    users: UserRepo,
    ttl: Duration,
    cache: Mutex<HashMap<Id, (Instant, Option<AuthState>)>>,
}

impl std::fmt::Debug for UserStateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStateCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl UserStateCache {
    pub fn new(users: UserRepo, ttl: Duration) -> Self {
        Self {
            users,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The state of `user` when it still qualifies for something granted at
    /// `token_version` (enabled, same version, same `role`); `None` otherwise (disabled,
    /// changed, deleted). Served from the cache only when fresh *and* agreeing; a
    /// disagreeing or stale entry is read again, so a token newer than the cached version
    /// (issued right after a change made on another instance) is never refused from memory.
    pub async fn current(
        &self,
        user: Id,
        token_version: u64,
        role: Role,
    ) -> Result<Option<AuthState>, DataError> {
        let agrees = |state: &AuthState| {
            !state.disabled && state.token_version == token_version && state.role == role
        };
        if !self.ttl.is_zero() {
            if let Ok(cache) = self.cache.lock() {
                if let Some((at, Some(state))) = cache.get(&user) {
                    if at.elapsed() < self.ttl && agrees(state) {
                        return Ok(Some(*state));
                    }
                }
            }
        }
        let state = self.users.auth_state(user).await?;
        if !self.ttl.is_zero() {
            if let Ok(mut cache) = self.cache.lock() {
                if cache.len() >= MAX_CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(user, (Instant::now(), state));
            }
        }
        Ok(state.filter(agrees))
    }

    /// Forgets a user's cached state (after this instance changed it).
    pub fn forget(&self, user: Id) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&user);
        }
    }
}

/// Verifies bearer tokens and the user's current state.
pub struct Authenticator {
    tokens: TokenService,
    states: UserStateCache,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens)
            .field("states", &self.states)
            .finish_non_exhaustive()
    }
}

fn unauthorized() -> ApiError {
    ApiError::unauthorized("a valid bearer access token is required")
}

impl Authenticator {
    pub fn new(
        keys: &KeySet,
        settings: &AuthSettings,
        dynamodb: aws_sdk_dynamodb::Client,
        users_table: TableName,
    ) -> Self {
        Self {
            tokens: settings.token_service(keys),
            states: UserStateCache::new(UserRepo::new(dynamodb, users_table), settings.cache_ttl),
        }
    }

    /// The token service (the auth function also issues with it).
    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    /// The users' state cache (the WebSocket function re-checks a connection's user with it).
    pub fn states(&self) -> &UserStateCache {
        &self.states
    }

    /// The caller of `req`, or `401`.
    pub async fn authenticate(&self, req: &Request) -> Result<Caller, ApiError> {
        self.authenticate_claims(req)
            .await
            .map(|(caller, _)| caller)
    }

    /// [`Self::authenticate`] with the token's claims.
    pub async fn authenticate_claims(
        &self,
        req: &Request,
    ) -> Result<(Caller, AccessClaims), ApiError> {
        let token = bearer_token(req).ok_or_else(unauthorized)?;
        self.authenticate_token(token).await
    }

    /// Verifies a raw access token (the WebSocket `$connect` passes it in the query).
    pub async fn authenticate_token(
        &self,
        token: &str,
    ) -> Result<(Caller, AccessClaims), ApiError> {
        let claims = self.tokens.verify(token).map_err(|err| {
            tracing::info!(reason = %err, "access token refused");
            unauthorized()
        })?;
        let user_id: Id = claims.sub.parse().map_err(|_| unauthorized())?;
        let state = self
            .states
            .current(user_id, claims.ver, claims.role)
            .await?;
        match state {
            Some(_) => {
                let caller = Caller {
                    user_id,
                    role: claims.role,
                };
                // The request's writes are this caller's (the audit stamp).
                crate::audit::identify(&caller);
                Ok((caller, claims))
            }
            _ => {
                tracing::info!(user = %user_id, "access token of a disabled, changed or deleted user");
                Err(unauthorized())
            }
        }
    }

    /// Forgets a user's cached state (after this instance changed it).
    pub fn forget(&self, user: Id) {
        self.states.forget(user);
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(req: &Request) -> Option<&str> {
    let value = req
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The OpenAPI `bearer` security scheme (JWT) that signed-in routes name with
/// `security(("bearer" = []))`. Add it with `#[openapi(modifiers(&BearerSecurity))]`.
pub struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}
