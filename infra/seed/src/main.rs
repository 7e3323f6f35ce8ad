//! `seed`: loads realistic accounts into the Accounts table.
//!
//! The table comes from `--table`, else `ACCOUNTS_TABLE` (the variable the functions read),
//! else `<--table-prefix>AccountsTable` (default prefix `collectpro-local-`, the names
//! `make run` gives its tables); `--provision` instead provisions a fresh copy of the
//! template's tables (random prefix) and prints their environment. Endpoints come from the
//! SDK's variables (`AWS_ENDPOINT_URL_DYNAMODB`; `make seed` points it at `make run`'s
//! DynamoDB Local on port 8000).
//!
//! ```text
//! make seed N=100000          # into make run's stack
//! seed --demo --agents <id,...> # a few hundred accounts for real agents (make run DEMO=1)
//! ```
//!
//! Accounts go to the agents in `--agents` (the ids `collectpro-admin seed-demo-users`
//! prints, so an agent can sign in and see them); without it, to 20 placeholder ids that no
//! user has (`seed::agents`), which is all a load test needs.

use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use shared::domain::Id;

#[derive(Parser)]
#[command(about = "Load realistic accounts into the Accounts table")]
struct Args {
    /// How many accounts.
    #[arg(short, long, default_value_t = 100_000)]
    n: u64,
    /// A few hundred accounts for a demo (overrides -n).
    #[arg(long)]
    demo: bool,
    /// BatchWriteItem calls in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The table name (default: $ACCOUNTS_TABLE, else <table-prefix>AccountsTable).
    #[arg(long)]
    table: Option<String>,
    #[arg(long, default_value = "collectpro-local-")]
    table_prefix: String,
    /// Spread the accounts over these agents' user ids (comma-separated ULIDs) instead of
    /// 20 placeholder ids.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    agents: Option<Vec<Id>>,
    /// Provision a fresh set of the template's tables first (random prefix).
    #[arg(long)]
    provision: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let n = if args.demo { 300 } else { args.n };
    let agents = args.agents.unwrap_or_else(|| seed::agents(20));
    let table = if args.provision {
        let provisioned = local_gateway::provision_for_test().await?;
        for (k, v) in &provisioned.env {
            println!("{k}={v}");
        }
        provisioned
            .env
            .get("ACCOUNTS_TABLE")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the template has no ACCOUNTS_TABLE"))?
    } else {
        args.table
            .or_else(|| std::env::var("ACCOUNTS_TABLE").ok())
            .unwrap_or_else(|| format!("{}AccountsTable", args.table_prefix))
    };
    let sdk = shared::clients::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "table {table} is not there (is `make run` up?): {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )
        })?;
    let bar = ProgressBar::new(n);
    bar.set_style(ProgressStyle::with_template(
        "{spinner} {bar:40} {pos}/{len} accounts {per_sec} eta {eta}",
    )?);
    bar.enable_steady_tick(Duration::from_millis(200));
    let stats = seed::seed(&client, &table, n, &agents, args.concurrency, |k| {
        bar.inc(k)
    })
    .await?;
    bar.finish();
    println!(
        "seeded {} accounts into {table} in {:.1} s: {:.0} accounts/s ({} batch retries)",
        stats.accounts,
        stats.elapsed.as_secs_f64(),
        stats.per_second(),
        stats.retries
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_a_comma_separated_list_of_ulids() {
        let (a, b) = (Id::generate(), Id::generate());
        let args =
            Args::try_parse_from(["seed", "--demo", "--agents", &format!("{a},{b}")]).unwrap();
        assert_eq!(args.agents, Some(vec![a, b]));
        assert!(Args::try_parse_from(["seed", "--agents", "not-an-id"]).is_err());
        assert!(Args::try_parse_from(["seed"]).unwrap().agents.is_none());
    }
}
