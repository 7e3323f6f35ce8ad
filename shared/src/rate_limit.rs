//! Rate limits that hold across Lambda instances: fixed-window counters in the RateLimits
//! table.
//!
//! A limit `N/S` allows `N` requests per key in each window of `S` seconds aligned to the
//! epoch. Each request is one `UpdateItem` (`ADD hits :1`, `ReturnValues UPDATED_NEW`) on
//! `pk = RL#<key>#<window start>`, atomic under any concurrency, with `expires_at` set to
//! the window's end plus 60 s for TTL clean-up (a stale item is never read again: the next
//! window has another key, so lazy TTL deletion does not matter). Fixed windows allow up to
//! `2N` in the `S` seconds around a boundary; that is the accepted trade for one write per
//! request.
//!
//! Over the limit: `429` problem with `Retry-After` = seconds until the window ends.
//! Limits are configuration (template parameters → environment), parsed by [`Limit`]'s
//! `FromStr` (`"10/60"`; `"0/60"` or `"off"` disables).

use std::fmt;
use std::str::FromStr;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::config::{optional_from, ConfigError, Lookup, TableName};
use crate::error::ApiError;

/// `max` requests per `window_secs`; `max == 0` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window_secs: u32,
}

impl Limit {
    pub const OFF: Limit = Limit {
        max: 0,
        window_secs: 1,
    };

    pub const fn new(max: u32, window_secs: u32) -> Self {
        Self { max, window_secs }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.max, self.window_secs)
    }
}

impl FromStr for Limit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self::OFF);
        }
        let (max, window) = s
            .split_once('/')
            .ok_or_else(|| "must be <requests>/<seconds>, e.g. 10/60, or off".to_owned())?;
        let max = max.trim().parse().map_err(|_| "bad request count")?;
        let window_secs: u32 = window.trim().parse().map_err(|_| "bad window seconds")?;
        if window_secs == 0 || window_secs > 86_400 {
            return Err("the window must be 1..=86400 seconds".to_owned());
        }
        Ok(Self { max, window_secs })
    }
}

/// The limits of the API, from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `LOGIN_LIMIT_PER_IP`, default `20/60`.
    pub login_per_ip: Limit,
    /// `LOGIN_LIMIT_PER_EMAIL`, default `10/60`.
    pub login_per_email: Limit,
    /// `REGISTER_LIMIT_PER_IP`, default `10/3600`.
    pub register_per_ip: Limit,
    /// `REGISTER_LIMIT_PER_EMAIL`, default `5/3600`.
    pub register_per_email: Limit,
    /// `WRITE_LIMIT_PER_USER`, default `120/60`.
    pub write_per_user: Limit,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            login_per_ip: Limit::new(20, 60),
            login_per_email: Limit::new(10, 60),
            register_per_ip: Limit::new(10, 3600),
            register_per_email: Limit::new(5, 3600),
            write_per_user: Limit::new(120, 60),
        }
    }
}

impl RateLimits {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&crate::config::env_lookup)
    }

    pub fn from_lookup(lookup: Lookup<'_>) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            login_per_ip: optional_from(lookup, "LOGIN_LIMIT_PER_IP", d.login_per_ip)?,
            login_per_email: optional_from(lookup, "LOGIN_LIMIT_PER_EMAIL", d.login_per_email)?,
            register_per_ip: optional_from(lookup, "REGISTER_LIMIT_PER_IP", d.register_per_ip)?,
            register_per_email: optional_from(
                lookup,
                "REGISTER_LIMIT_PER_EMAIL",
                d.register_per_email,
            )?,
            write_per_user: optional_from(lookup, "WRITE_LIMIT_PER_USER", d.write_per_user)?,
        })
    }

    /// Every limit off (tests that are not about limits).
    pub fn off() -> Self {
        Self {
            login_per_ip: Limit::OFF,
            login_per_email: Limit::OFF,
            register_per_ip: Limit::OFF,
            register_per_email: Limit::OFF,
            write_per_user: Limit::OFF,
        }
    }
}

/// Counts requests per key. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    dynamodb: aws_sdk_dynamodb::Client,
    table: TableName,
}

/// A key that carries no personal data (emails are hashed).
pub fn hashed(kind: &str, value: &str) -> String {
    let digest = Sha256::digest(value.trim().to_lowercase().as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("{kind}:{hex}")
}

impl RateLimiter {
    pub fn new(dynamodb: aws_sdk_dynamodb::Client, table: TableName) -> Self {
        Self { dynamodb, table }
    }

    /// Counts one request for `key`; `429` with `Retry-After` once over `limit`.
    pub async fn check(&self, key: &str, limit: Limit) -> Result<(), ApiError> {
        if limit.max == 0 {
            return Ok(());
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let window = i64::from(limit.window_secs);
        let start = now - now.rem_euclid(window);
        let end = start + window;
        let output = self
            .dynamodb
            .update_item()
            .table_name(self.table.as_str())
            .key("pk", AttributeValue::S(format!("RL#{key}#{start}")))
            .update_expression("ADD hits :one SET expires_at = if_not_exists(expires_at, :exp)")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":exp", AttributeValue::N((end + 60).to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await?;
        let hits: u64 = output
            .attributes
            .as_ref()
            .and_then(|a| a.get("hits"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if hits > u64::from(limit.max) {
            tracing::info!(key, %limit, hits, "rate limited");
            return Err(ApiError::too_many_requests((end - now).max(1) as u64));
        }
        Ok(())
    }

    /// The per-user limit on writes, for any function's `POST`/`PATCH`/`DELETE` handlers.
    pub async fn check_user_write(&self, caller: &Caller, limit: Limit) -> Result<(), ApiError> {
        self.check(&format!("write:{}", caller.user_id), limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        assert_eq!("10/60".parse::<Limit>().unwrap(), Limit::new(10, 60));
        assert_eq!(" 5 / 1 ".parse::<Limit>().unwrap(), Limit::new(5, 1));
        assert_eq!("off".parse::<Limit>().unwrap(), Limit::OFF);
        assert!("10".parse::<Limit>().is_err());
        assert!("10/0".parse::<Limit>().is_err());
        let env = std::collections::HashMap::from([("LOGIN_LIMIT_PER_IP", "3/10")]);
        let limits = RateLimits::from_lookup(&|n| env.get(n).map(|v| (*v).to_owned())).unwrap();
        assert_eq!(limits.login_per_ip, Limit::new(3, 10));
        assert_eq!(
            limits.login_per_email,
            RateLimits::default().login_per_email
        );
        let bad = std::collections::HashMap::from([("WRITE_LIMIT_PER_USER", "x")]);
        assert!(RateLimits::from_lookup(&|n| bad.get(n).map(|v| (*v).to_owned())).is_err());
    }

    #[test]
    fn email_keys_are_hashed_case_insensitively() {
        assert_eq!(hashed("e", "A@B.co"), hashed("e", " a@b.co"));
        assert!(!hashed("e", "a@b.co").contains('@'));
    }
}
