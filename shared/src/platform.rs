//! What every authenticated API function builds once per cold start: configuration, the
//! AWS clients, the token key set (from SSM), the authenticator, the cursor signer and the
//! rate limiter. A function's `App` holds a [`Platform`] next to its own repositories, so
//! this wiring exists once instead of in every `lib.rs`.

use aws_config::SdkConfig;

use crate::auth::{AuthSettings, Authenticator, KeySet};
use crate::clients::Clients;
use crate::config::{Config, Lookup, TableName, Tables};
use crate::cursor::CursorSigner;
use crate::rate_limit::{RateLimiter, RateLimits};

/// An init failure: a configuration variable, the key set, or a client.
pub type InitError = Box<dyn std::error::Error + Send + Sync>;

pub struct Platform {
    pub config: Config,
    pub clients: Clients,
    pub authenticator: Authenticator,
    pub cursors: CursorSigner,
    pub limiter: RateLimiter,
    pub limits: RateLimits,
}

impl Platform {
    /// Assembles the parts from what the caller already has (tests build keys themselves).
    pub fn new(
        config: Config,
        clients: Clients,
        keys: &KeySet,
        auth: &AuthSettings,
        limits: RateLimits,
    ) -> Self {
        Self {
            authenticator: Authenticator::new(
                keys,
                auth,
                clients.dynamodb.clone(),
                config.tables.users.clone(),
            ),
            cursors: CursorSigner::from_key_set(keys),
            limiter: RateLimiter::new(clients.dynamodb.clone(), config.tables.rate_limits.clone()),
            limits,
            config,
            clients,
        }
    }

    /// Reads configuration from `lookup` and loads the key set from SSM while the DynamoDB
    /// connection is opened against the table `prime` names (the one the first request
    /// will use), so neither costs the first caller.
    pub async fn load(
        lookup: Lookup<'_>,
        sdk: &SdkConfig,
        prime: fn(&Tables) -> &TableName,
    ) -> Result<Self, InitError> {
        let config = Config::from_lookup(lookup)?;
        let auth = AuthSettings::from_lookup(lookup)?;
        let limits = RateLimits::from_lookup(lookup)?;
        let clients = Clients::new(sdk);
        let (keys, ()) = tokio::join!(auth.load_keys(sdk), clients.prime(&config.tables, prime));
        Ok(Self::new(config, clients, &keys?, &auth, limits))
    }

    /// [`Platform::load`] from the process environment, as `main` does.
    pub async fn from_env(prime: fn(&Tables) -> &TableName) -> Result<Self, InitError> {
        let sdk = crate::clients::sdk_config().await;
        Self::load(&crate::config::env_lookup, &sdk, prime).await
    }
}
