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

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::{Parser, Subcommand};
use rand::RngCore;
use shared::auth::keys::KeySet;
use shared::auth::password::policy_errors;
use shared::auth::users::{NewUser, UserRepo};
use shared::auth::{PasswordHasher, Role};
use shared::config::TableName;

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
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::SeedAdmin {
            table_prefix,
            email,
            name,
            wait_secs,
        } => seed_admin(table_prefix, email, name, Duration::from_secs(wait_secs)).await,
    }
}

async fn seed_admin(
    table_prefix: Option<String>,
    email: String,
    name: String,
    wait: Duration,
) -> Result<()> {
    let users_table = match table_prefix {
        Some(prefix) => format!("{prefix}UsersTable"),
        None => std::env::var("USERS_TABLE")
            .context("set USERS_TABLE (or pass --table-prefix) to name the Users table")?,
    };
    let parameter = std::env::var("JWT_KEYS_PARAMETER")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_KEYS_PARAMETER.to_owned());
    let sdk = shared::clients::sdk_config().await;

    ensure_key_set(&aws_sdk_ssm::Client::new(&sdk), &parameter).await?;

    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    wait_for_table(&dynamodb, &users_table, wait).await?;
    let repo = UserRepo::new(dynamodb, TableName::new(users_table.clone()));
    if let Some(existing) = repo.find_by_email(&email).await.map_err(api)? {
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
