//! `collectpro-admin`: operator commands against a stack, local or deployed.
//!
//! `seed-admin` (idempotent):
//! 1. creates the access-token key set in SSM Parameter Store (SecureString, a random
//!    32-byte key) unless the parameter exists; the value is never printed;
//! 2. creates the user `admin@collectpro.local` (role admin) with the password from
//!    `COLLECTPRO_ADMIN_PASSWORD`, or a generated one that it prints once, unless a user with
//!    that email exists (its password is then left alone).
//!
//! It reads the same variables as the functions: `USERS_TABLE` (or `--table-prefix P`, which
//! names it `P` + `UsersTable` like the local gateway does), `JWT_KEYS_PARAMETER` (default
//! `/collectpro/jwt-keys`, the template's default), and the SDK's region, credentials and
//! `AWS_ENDPOINT_URL_*` endpoints (so under `infra/stack.sh` it talks to DynamoDB Local and
//! moto, and with AWS credentials to a real deployment).
//!
//! `seed-demo-users` (idempotent; for `make run DEMO=1`): creates `manager@collectpro.local`,
//! `viewer@collectpro.local` and `agent1@collectpro.local` … `agent5@collectpro.local` with
//! the password in `COLLECTPRO_ADMIN_PASSWORD` (required: demo users get no generated
//! password), through `UserRepo::create` like any user. A user whose email exists is left as
//! it is. It prints the five agents' ids on stdout, one per line (what
//! `seed --demo --agents` takes), and what it did on stderr.
//!
//! `reconcile` (read-only unless `--repair`): recomputes the dashboard aggregates from the
//! accounts, payments and activities tables (parallel Scans) and compares them with the
//! Aggregates table (`shared::dashboard::reconcile`); prints each drifting counter and a
//! one-line summary. Exit status: 0 when they agree, 1 when a counter drifts, 2 when it
//! could not run. Tables come from `--table-prefix P` (`P` + `AccountsTable`, ... like the
//! local gateway names them) or the functions' variables (`ACCOUNTS_TABLE`, ...).
//! `--repair` sets each drifting counter to the recomputed value, on the condition that it
//! still holds the value read: it is for an idle system (no stream records in flight), since
//! the recomputation and the stored counters are two reads at different moments.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use clap::{Parser, Subcommand};
use rand::RngCore;
use shared::auth::keys::KeySet;
use shared::auth::password::policy_errors;
use shared::auth::users::{NewUser, UserItem, UserRepo};
use shared::auth::{PasswordHasher, Role};
use shared::config::{TableName, Tables};
use shared::dashboard::reconcile::{reconcile, Drift};
use shared::dashboard::AggregateStore;

const DEFAULT_KEYS_PARAMETER: &str = "/collectpro/jwt-keys";
const ADMIN_EMAIL: &str = "admin@collectpro.local";

#[derive(Parser)]
#[command(name = "collectpro-admin", about = "CollectPro operator commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the JWT key set parameter (if absent) and the first admin (if absent).
    SeedAdmin {
        /// Users table = PREFIX + "UsersTable" (the local gateway's naming); else USERS_TABLE.
        #[arg(long)]
        table_prefix: Option<String>,
        /// The admin's email.
        #[arg(long, default_value = ADMIN_EMAIL)]
        email: String,
        /// The admin's display name.
        #[arg(long, default_value = "Administrator")]
        name: String,
        /// Keep retrying this long while the Users table does not exist yet (a gateway that
        /// is still provisioning).
        #[arg(long, default_value_t = 0)]
        wait_secs: u64,
    },
    /// Create the demo manager, viewer and five agents (if absent); print the agents' ids.
    SeedDemoUsers {
        /// Users table = PREFIX + "UsersTable" (the local gateway's naming); else USERS_TABLE.
        #[arg(long)]
        table_prefix: Option<String>,
    },
    /// Recompute the dashboard aggregates from the tables and report drift (exit 1).
    Reconcile {
        /// Tables = PREFIX + "AccountsTable", ... (the local gateway's naming); else the
        /// functions' variables (ACCOUNTS_TABLE, ...).
        #[arg(long)]
        table_prefix: Option<String>,
        /// Overwrite each drifting counter with the recomputed value (idle system only).
        #[arg(long)]
        repair: bool,
    },
}

#[tokio::main]
async fn main() -> Result<ExitCode> {
    match Cli::parse().command {
        Command::SeedAdmin {
            table_prefix,
            email,
            name,
            wait_secs,
        } => seed_admin(table_prefix, email, name, Duration::from_secs(wait_secs))
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::SeedDemoUsers { table_prefix } => seed_demo_users(table_prefix)
            .await
            .map(|()| ExitCode::SUCCESS),
        // Drift (1) and failure (2) differ, so a scheduled check can tell them apart.
        Command::Reconcile {
            table_prefix,
            repair,
        } => Ok(match reconcile_command(table_prefix, repair).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(err) => {
                eprintln!("reconcile: {err:#}");
                ExitCode::from(2)
            }
        }),
    }
}

/// `ACCOUNTS_TABLE` → `AccountsTable`: the template's logical id, which the local gateway
/// appends to its prefix.
fn logical_id(variable: &str) -> String {
    variable
        .split('_')
        .map(|word| {
            let lower = word.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn tables(table_prefix: Option<String>) -> Result<Tables> {
    let tables = match table_prefix {
        Some(prefix) => {
            Tables::from_lookup(&|variable| Some(format!("{prefix}{}", logical_id(variable))))
        }
        None => Tables::from_lookup(&shared::config::env_lookup),
    };
    tables.context("set --table-prefix, or the tables' variables (ACCOUNTS_TABLE, ...)")
}

/// Runs the reconciliation; `Ok(true)` when nothing drifts.
async fn reconcile_command(table_prefix: Option<String>, repair: bool) -> Result<bool> {
    let tables = tables(table_prefix)?;
    let sdk = shared::clients::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    // A missing table is named here; the reconciliation's own errors do not carry causes.
    for table in [
        &tables.accounts,
        &tables.payments,
        &tables.activities,
        &tables.aggregates,
    ] {
        wait_for_table(&dynamodb, table.as_str(), Duration::ZERO).await?;
    }
    let store = AggregateStore::new(dynamodb.clone(), tables.aggregates.clone());
    let started = Instant::now();
    let drift = reconcile(&dynamodb, &tables, &store).await?;
    let elapsed = started.elapsed();
    for d in &drift {
        println!("drift: {d}");
    }
    println!(
        "reconcile: {} drifting counter(s); {}, {}, {} against {} in {:.2} s",
        drift.len(),
        tables.accounts,
        tables.payments,
        tables.activities,
        tables.aggregates,
        elapsed.as_secs_f64()
    );
    if repair && !drift.is_empty() {
        let mut repaired = 0;
        for d in &drift {
            if repair_counter(&dynamodb, &tables.aggregates, d).await? {
                repaired += 1;
            } else {
                println!("repair: {} / {} {} changed meanwhile; left alone (run again on an idle system)", d.key.period.key(), d.key.scope.key(), d.counter);
            }
        }
        println!(
            "repair: {repaired} of {} counter(s) set to the recomputed value",
            drift.len()
        );
    }
    Ok(drift.is_empty())
}

/// Sets one counter to its recomputed value if it still holds the value the reconciliation
/// read (`false` when a write moved it in between).
async fn repair_counter(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &TableName,
    drift: &Drift,
) -> Result<bool> {
    let number = |n: i64| AttributeValue::N(n.to_string());
    // An impossible total is matched as DynamoDB holds it, not as the saturated i64.
    let stored = match &drift.impossible {
        Some(text) => AttributeValue::N(text.clone()),
        None => number(drift.stored),
    };
    let condition = if drift.stored == 0 && drift.impossible.is_none() {
        "attribute_not_exists(#c) OR #c = :stored"
    } else {
        "#c = :stored"
    };
    let result = dynamodb
        .update_item()
        .table_name(table.as_str())
        .key("pk", AttributeValue::S(drift.key.period.key()))
        .key("sk", AttributeValue::S(drift.key.scope.key()))
        .update_expression("SET #c = :expected")
        .condition_expression(condition)
        .expression_attribute_names("#c", &drift.counter)
        .expression_attribute_values(":expected", number(drift.expected))
        .expression_attribute_values(":stored", stored)
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(err) => Err(anyhow::anyhow!(
            "repairing {drift}: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(err)
        )),
    }
}

async fn seed_admin(
    table_prefix: Option<String>,
    email: String,
    name: String,
    wait: Duration,
) -> Result<()> {
    let users_table = users_table(table_prefix)?;
    let parameter = std::env::var("JWT_KEYS_PARAMETER")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_KEYS_PARAMETER.to_owned());
    let sdk = shared::clients::sdk_config().await;

    ensure_key_set(&aws_sdk_ssm::Client::new(&sdk), &parameter).await?;

    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    wait_for_table(&dynamodb, &users_table, wait).await?;
    let repo = UserRepo::new(dynamodb, TableName::new(users_table.clone()));
    if let Some(existing) = repo.find_by_email(&email).await? {
        println!(
            "admin: {email} exists (id {}, role {}); password unchanged",
            existing.id, existing.role
        );
        return Ok(());
    }
    let (password, generated) = match std::env::var("COLLECTPRO_ADMIN_PASSWORD") {
        Ok(password) if !password.is_empty() => (password, false),
        _ => (generate_password(), true),
    };
    let problems = policy_errors(&password, &email);
    if !problems.is_empty() {
        bail!("COLLECTPRO_ADMIN_PASSWORD {}", problems.join(", "));
    }
    let hasher = PasswordHasher::new().map_err(api)?;
    let password_hash = hasher.hash_blocking(password.clone()).await.map_err(api)?;
    let created = repo
        .create(NewUser {
            email: email.clone(),
            name,
            role: Role::Admin,
            password_hash,
        })
        .await;
    match created {
        Ok(user) => {
            println!("admin: created {email} (id {}) in {users_table}", user.id);
            if generated {
                println!("admin: generated password (shown once): {password}");
            } else {
                println!("admin: password from COLLECTPRO_ADMIN_PASSWORD");
            }
        }
        // Another seeder won the race: same outcome.
        Err(err) if err.status == http_conflict() => {
            println!("admin: {email} exists; password unchanged");
        }
        Err(err) => return Err(api(err)),
    }
    Ok(())
}

fn users_table(table_prefix: Option<String>) -> Result<String> {
    match table_prefix {
        Some(prefix) => Ok(format!("{prefix}UsersTable")),
        None => std::env::var("USERS_TABLE")
            .context("set USERS_TABLE (or pass --table-prefix) to name the Users table"),
    }
}

/// The demo users: email, name, role. The agents come last, in the order their ids are
/// printed.
const DEMO_USERS: [(&str, &str, Role); 7] = [
    ("manager@collectpro.local", "Demo Manager", Role::Manager),
    ("viewer@collectpro.local", "Demo Viewer", Role::Viewer),
    ("agent1@collectpro.local", "Agent One", Role::Agent),
    ("agent2@collectpro.local", "Agent Two", Role::Agent),
    ("agent3@collectpro.local", "Agent Three", Role::Agent),
    ("agent4@collectpro.local", "Agent Four", Role::Agent),
    ("agent5@collectpro.local", "Agent Five", Role::Agent),
];

async fn seed_demo_users(table_prefix: Option<String>) -> Result<()> {
    let users_table = users_table(table_prefix)?;
    // No generated fallback as for the admin: seven generated passwords nobody asked for
    // would be useless, and "the admin's password" is easy to tell.
    let password = std::env::var("COLLECTPRO_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
        .context("set COLLECTPRO_ADMIN_PASSWORD (the demo users' password)")?;
    for (email, _, _) in DEMO_USERS {
        let problems = policy_errors(&password, email);
        if !problems.is_empty() {
            bail!(
                "COLLECTPRO_ADMIN_PASSWORD {} (for {email})",
                problems.join(", ")
            );
        }
    }
    let sdk = shared::clients::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    wait_for_table(&dynamodb, &users_table, Duration::ZERO).await?;
    let repo = UserRepo::new(dynamodb, TableName::new(users_table.clone()));
    let hasher = PasswordHasher::new().map_err(api)?;
    let mut agents = Vec::new();
    for (email, name, role) in DEMO_USERS {
        let user = ensure_user(&repo, &hasher, email, name, role, &password).await?;
        if user.role != role {
            eprintln!(
                "demo: {email} has role {} (not {role}); left as it is",
                user.role
            );
        }
        if role == Role::Agent {
            agents.push(user.id);
        }
    }
    // Only the ids on stdout, so a script can take them as they are.
    for id in agents {
        println!("{id}");
    }
    Ok(())
}

/// The user with `email`: the existing one (left as it is), else a new one.
async fn ensure_user(
    repo: &UserRepo,
    hasher: &PasswordHasher,
    email: &str,
    name: &str,
    role: Role,
    password: &str,
) -> Result<UserItem> {
    if let Some(existing) = repo.find_by_email(email).await? {
        eprintln!("demo: {email} exists (id {}); left as it is", existing.id);
        return Ok(existing);
    }
    let password_hash = hasher
        .hash_blocking(password.to_owned())
        .await
        .map_err(api)?;
    let created = repo
        .create(NewUser {
            email: email.to_owned(),
            name: name.to_owned(),
            role,
            password_hash,
        })
        .await;
    match created {
        Ok(user) => {
            eprintln!("demo: created {email} ({role}, id {})", user.id);
            Ok(user)
        }
        // Another seeder created it in between: use theirs.
        Err(err) if err.status == http_conflict() => repo
            .find_by_email(email)
            .await?
            .with_context(|| format!("{email} is taken but its user is not there")),
        Err(err) => Err(api(err)),
    }
}

fn http_conflict() -> http::StatusCode {
    http::StatusCode::CONFLICT
}

fn api(err: shared::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", err.title, err.detail)
}

fn generate_password() -> String {
    let mut bytes = [0_u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn ensure_key_set(ssm: &aws_sdk_ssm::Client, name: &str) -> Result<()> {
    match ssm.get_parameter().name(name).send().await {
        Ok(_) => {
            println!("keys: SSM parameter {name} exists; left as is");
            return Ok(());
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_parameter_not_found()) => {}
        Err(err) => {
            return Err(anyhow::anyhow!(
                "reading SSM parameter {name}: {}",
                aws_sdk_ssm::error::DisplayErrorContext(err)
            ))
        }
    }
    let put = ssm
        .put_parameter()
        .name(name)
        .description("CollectPro access-token key set (JSON: active kid, keys by kid)")
        .value(KeySet::generate_json())
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(false)
        .send()
        .await;
    match put {
        Ok(_) => println!("keys: SSM parameter {name} created (SecureString, one random key)"),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_parameter_already_exists()) =>
        {
            println!("keys: SSM parameter {name} exists; left as is")
        }
        Err(err) => {
            return Err(anyhow::anyhow!(
                "creating SSM parameter {name}: {}",
                aws_sdk_ssm::error::DisplayErrorContext(err)
            ))
        }
    }
    Ok(())
}

async fn wait_for_table(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    wait: Duration,
) -> Result<()> {
    let started = Instant::now();
    loop {
        match dynamodb.describe_table().table_name(table).send().await {
            Ok(_) => return Ok(()),
            Err(err) if started.elapsed() < wait => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => {
                return Err(anyhow::anyhow!(
                    "table {table} is not there: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(err)
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_names_the_tables_like_the_local_gateway() {
        assert_eq!(logical_id("ACCOUNTS_TABLE"), "AccountsTable");
        assert_eq!(logical_id("RATE_LIMITS_TABLE"), "RateLimitsTable");
        let tables = tables(Some("collectpro-local-".into())).unwrap();
        assert_eq!(
            tables.aggregates.as_str(),
            "collectpro-local-AggregatesTable"
        );
        assert_eq!(
            tables.refresh_tokens.as_str(),
            "collectpro-local-RefreshTokensTable"
        );
    }
}
