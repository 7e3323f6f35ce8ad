//! Configuration, read once from the environment at cold start.
//!
//! `template.yaml` hands every function the same set of variables through `Globals`
//! (table names from `!Ref`, the queue URL, the stage); the local gateway resolves them to
//! local names. A missing or malformed variable is a [`ConfigError`] that names it, so `main`
//! fails init with one clear log line instead of panicking on the first request.

use std::fmt;

/// A configuration variable that is missing or unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Where variables come from: the process environment in `main`, a map in tests (which
/// run many configurations in one process).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment as a [`Lookup`].
pub fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads one required variable from the environment; empty counts as missing.
pub fn required(name: &'static str) -> Result<String, ConfigError> {
    required_from(&env_lookup, name)
}

/// Reads one required variable from `lookup`; empty counts as missing.
pub fn required_from(lookup: Lookup<'_>, name: &'static str) -> Result<String, ConfigError> {
    match lookup(name) {
        Some(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(ConfigError::Missing(name)),
    }
}

/// Reads one variable that has a default from the environment, parsing it into `T`.
pub fn optional<T>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    optional_from(&env_lookup, name, default)
}

/// Reads one variable that has a default from `lookup`, parsing it into `T`.
pub fn optional_from<T>(
    lookup: Lookup<'_>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    match lookup(name) {
        Some(value) if !value.trim().is_empty() => {
            value
                .trim()
                .parse()
                .map_err(|err: T::Err| ConfigError::Invalid {
                    name,
                    reason: err.to_string(),
                })
        }
        _ => Ok(default),
    }
}

/// The name of a DynamoDB table, as the template's `!Ref` resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName(String);

impl TableName {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&TableName> for String {
    fn from(value: &TableName) -> Self {
        value.0.clone()
    }
}

/// Every table of the system, one field per table. See `template.yaml` for keys, indexes,
/// streams and TTL; the split is written down in the README ("Data model").
#[derive(Debug, Clone)]
pub struct Tables {
    pub users: TableName,
    pub refresh_tokens: TableName,
    pub accounts: TableName,
    pub payments: TableName,
    pub activities: TableName,
    pub idempotency: TableName,
    pub jobs: TableName,
    pub connections: TableName,
    pub aggregates: TableName,
    pub rate_limits: TableName,
    /// Payment plans (issue 18): `shared::plans`.
    pub plans: TableName,
}

impl Tables {
    /// The environment variable each table's name comes from, in declaration order.
    pub const VARIABLES: [&'static str; 11] = [
        "USERS_TABLE",
        "REFRESH_TOKENS_TABLE",
        "ACCOUNTS_TABLE",
        "PAYMENTS_TABLE",
        "ACTIVITIES_TABLE",
        "IDEMPOTENCY_TABLE",
        "JOBS_TABLE",
        "CONNECTIONS_TABLE",
        "AGGREGATES_TABLE",
        "RATE_LIMITS_TABLE",
        "PLANS_TABLE",
    ];

    pub fn from_lookup(lookup: Lookup<'_>) -> Result<Self, ConfigError> {
        let table = |name| required_from(lookup, name).map(TableName::new);
        Ok(Self {
            users: table("USERS_TABLE")?,
            refresh_tokens: table("REFRESH_TOKENS_TABLE")?,
            accounts: table("ACCOUNTS_TABLE")?,
            payments: table("PAYMENTS_TABLE")?,
            activities: table("ACTIVITIES_TABLE")?,
            idempotency: table("IDEMPOTENCY_TABLE")?,
            jobs: table("JOBS_TABLE")?,
            connections: table("CONNECTIONS_TABLE")?,
            aggregates: table("AGGREGATES_TABLE")?,
            rate_limits: table("RATE_LIMITS_TABLE")?,
            plans: table("PLANS_TABLE")?,
        })
    }

    /// Whether `table` is keyed by `pk` and `sk`; the others by `pk` alone, as
    /// `template.yaml` declares them (a test primes every table against the template's).
    pub fn has_sort_key(&self, table: &TableName) -> bool {
        [
            &self.payments,
            &self.activities,
            &self.jobs,
            &self.connections,
            &self.aggregates,
            &self.plans,
        ]
        .contains(&table)
    }

    /// Every table, for readiness checks and test set-up.
    pub fn all(&self) -> [&TableName; 11] {
        [
            &self.users,
            &self.refresh_tokens,
            &self.accounts,
            &self.payments,
            &self.activities,
            &self.idempotency,
            &self.jobs,
            &self.connections,
            &self.aggregates,
            &self.rate_limits,
            &self.plans,
        ]
    }
}

/// Every queue of the system, by URL.
#[derive(Debug, Clone)]
pub struct Queues {
    pub bulk: String,
    pub bulk_dlq: String,
}

impl Queues {
    pub fn from_lookup(lookup: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            bulk: required_from(lookup, "BULK_QUEUE_URL")?,
            bulk_dlq: required_from(lookup, "BULK_DLQ_URL")?,
        })
    }

    pub fn all(&self) -> [&str; 2] {
        [&self.bulk, &self.bulk_dlq]
    }
}

/// What every function knows about where it runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// `local`, `dev`, `prod`: goes into logs and the health body.
    pub stage: String,
    pub tables: Tables,
    pub queues: Queues,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    pub fn from_lookup(lookup: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            stage: required_from(lookup, "STAGE")?,
            tables: Tables::from_lookup(lookup)?,
            queues: Queues::from_lookup(lookup)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_parses_or_names_the_variable() {
        // A name no other test sets, so the process-wide environment is ours.
        std::env::set_var("COLLECTPRO_TEST_OPTIONAL", "not-a-number");
        let err = optional::<u32>("COLLECTPRO_TEST_OPTIONAL", 5).unwrap_err();
        assert!(
            err.to_string().contains("COLLECTPRO_TEST_OPTIONAL"),
            "{err}"
        );
        std::env::set_var("COLLECTPRO_TEST_OPTIONAL", " 42 ");
        assert_eq!(optional::<u32>("COLLECTPRO_TEST_OPTIONAL", 5).unwrap(), 42);
        std::env::remove_var("COLLECTPRO_TEST_OPTIONAL");
        assert_eq!(optional::<u32>("COLLECTPRO_TEST_OPTIONAL", 5).unwrap(), 5);
    }

    #[test]
    fn required_names_the_missing_variable() {
        let err = required("COLLECTPRO_TEST_SURELY_UNSET").unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable COLLECTPRO_TEST_SURELY_UNSET is not set"
        );
    }
}
