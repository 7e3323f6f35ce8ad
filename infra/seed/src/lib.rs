//! Realistic accounts for the Accounts table, written with parallel `BatchWriteItem`s
//! (unprocessed items retried with backoff). Used by `make seed`, `make run DEMO=1` and
//! `make bench-accounts`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use futures::StreamExt;
use rand::seq::IndexedRandom;
use rand::Rng;
use shared::accounts::keys::reference_pk;
use shared::accounts::{Account, AccountStatus, DpdBucket};
use shared::domain::{Currency, Id, MinorUnits, Timestamp};

const FIRST: [&str; 24] = [
    "James", "María", "Wei", "Olivia", "José", "Aisha", "Liam", "Zoë", "Noah", "Chloé", "Mateo",
    "Amelia", "Luca", "Sofía", "Ethan", "Hana", "Lucas", "Ingrid", "Omar", "Emma", "Jürgen",
    "Priya", "Björn", "Ava",
];
const LAST: [&str; 24] = [
    "Smith",
    "García",
    "Chen",
    "Johnson",
    "Müller",
    "Nguyen",
    "Brown",
    "O'Connor",
    "Rossi",
    "Kowalski",
    "Dubois",
    "Patel",
    "Silva",
    "Jones",
    "Andersson",
    "Kim",
    "Novák",
    "López",
    "Williams",
    "Schäfer",
    "Martin",
    "Haddad",
    "Taylor",
    "Fernández",
];
const ZONES: [(&str, &str); 6] = [
    ("+1", "America/New_York"),
    ("+1", "America/Chicago"),
    ("+1", "America/Los_Angeles"),
    ("+44", "Europe/London"),
    ("+49", "Europe/Berlin"),
    ("+81", "Asia/Tokyo"),
];
const TAGS: [&str; 6] = [
    "vip",
    "legal",
    "hardship",
    "skip-trace",
    "bankruptcy",
    "callback",
];

/// Placeholder agents for `make seed` and the benches, which have no users to assign: fixed
/// ids so a re-seed keeps them. `make run DEMO=1` passes real agents instead (`--agents`).
pub fn agents(count: usize) -> Vec<Id> {
    (0..count)
        .map(|i| {
            format!("01JAGENT{:018}", i)
                .replace(['I', 'L', 'O', 'U'], "0")
                .parse()
                .unwrap_or_else(|_| Id::generate())
        })
        .collect()
}

/// One realistic account; `n` makes its reference unique within `run`.
pub fn account(rng: &mut impl Rng, run: &str, n: u64, agents: &[Id]) -> Account {
    let first = FIRST.choose(rng).copied().unwrap_or("Ann");
    let last = LAST.choose(rng).copied().unwrap_or("Lee");
    let (country, zone) = *ZONES.choose(rng).unwrap_or(&ZONES[0]);
    let currency = match (zone, rng.random_range(0..10)) {
        ("Europe/London", _) => "GBP",
        ("Europe/Berlin", _) => "EUR",
        ("Asia/Tokyo", _) => "JPY",
        (_, 0) => "CAD",
        _ => "USD",
    };
    let status = {
        let roll = rng.random_range(0..100);
        match roll {
            0..=54 => AccountStatus::Active,
            55..=69 => AccountStatus::PromiseToPay,
            70..=79 => AccountStatus::PaymentPlan,
            80..=86 => AccountStatus::Disputed,
            87..=94 => AccountStatus::Paid,
            _ => AccountStatus::Closed,
        }
    };
    // Log-uniform original balance from 50.00 to 25,000.00.
    let original = (5_000_f64 * (500_f64).powf(rng.random::<f64>())) as i64;
    let original = if currency == "JPY" {
        original / 100 * 100 + 100
    } else {
        original
    };
    let balance = match status {
        AccountStatus::Paid => 0,
        AccountStatus::Active => original,
        _ => rng.random_range(original / 4..=original),
    };
    let now = time::OffsetDateTime::now_utc();
    let created = now - time::Duration::seconds(rng.random_range(0..365 * 86_400));
    let updated = created + (now - created) * rng.random::<f64>();
    let due = now.date() + time::Duration::days(rng.random_range(-200..=30));
    let phone = format!(
        "{country}{}",
        rng.random_range(2_000_000_000_u64..9_999_999_999)
    );
    let mut tags: Vec<String> = TAGS
        .iter()
        .filter(|_| rng.random_range(0..8) == 0)
        .map(|t| (*t).to_owned())
        .collect();
    tags.sort();
    let mut account = Account {
        id: Id::generate(),
        reference: format!("CP-{run}-{n:07}"),
        debtor_name: format!("{first} {last}"),
        debtor_email: format!(
            "{}.{}{}@example.com",
            shared::accounts::search::fold(first),
            shared::accounts::search::fold(last).replace(' ', ""),
            n
        ),
        debtor_phone: phone,
        debtor_timezone: zone.to_owned(),
        currency: currency
            .parse::<Currency>()
            .unwrap_or_else(|_| unreachable!()),
        original_balance: MinorUnits(original),
        balance: MinorUnits(balance),
        status,
        assigned_agent_id: (rng.random_range(0..10) < 8)
            .then(|| agents.choose(rng).copied())
            .flatten(),
        due_date: due,
        days_past_due: 0,
        dpd_bucket: DpdBucket::Current,
        tags,
        version: 1,
        created_at: Timestamp::from(created),
        updated_at: Timestamp::from(updated),
        deleted_at: None,
        applied_bulk_jobs: Default::default(),
    };
    account.refresh_dpd(now.date());
    account
}

/// What a seed run did.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub accounts: u64,
    pub elapsed: Duration,
    pub retries: u64,
}

impl Stats {
    pub fn per_second(&self) -> f64 {
        self.accounts as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Writes `n` accounts (and their reference items) with `concurrency` batches in flight,
/// about 80 % of them assigned to one of `agents` (none when it is empty); `progress` is told
/// every account written.
pub async fn seed(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    n: u64,
    agents: &[Id],
    concurrency: usize,
    progress: impl Fn(u64) + Sync,
) -> Result<Stats> {
    let started = Instant::now();
    let run: String = Id::generate().to_string()[20..].to_owned();
    let retries = Arc::new(AtomicU64::new(0));
    // 12 accounts + 12 reference items per BatchWriteItem (the limit is 25 requests).
    let per_batch = 12_u64;
    let batches = n.div_ceil(per_batch);
    let results = futures::stream::iter(0..batches)
        .map(|b| {
            let run = &run;
            let retries = retries.clone();
            let progress = &progress;
            async move {
                let mut rng = rand::rng();
                let mut requests = Vec::new();
                let start = b * per_batch;
                let end = (start + per_batch).min(n);
                for i in start..end {
                    let account = account(&mut rng, run, i, agents);
                    let item = account.to_item().map_err(|e| anyhow::anyhow!("{e}"))?;
                    requests.push(put(item)?);
                    let reference = HashMap::from([
                        (
                            "pk".to_owned(),
                            AttributeValue::S(reference_pk(&account.reference)),
                        ),
                        (
                            "account_id".to_owned(),
                            AttributeValue::S(account.id.to_string()),
                        ),
                    ]);
                    requests.push(put(reference)?);
                }
                write_all(client, table, requests, &retries).await?;
                progress(end - start);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    for result in results {
        result?;
    }
    Ok(Stats {
        accounts: n,
        elapsed: started.elapsed(),
        retries: retries.load(Ordering::Relaxed),
    })
}

fn put(item: HashMap<String, AttributeValue>) -> Result<WriteRequest> {
    Ok(WriteRequest::builder()
        .put_request(PutRequest::builder().set_item(Some(item)).build()?)
        .build())
}

/// One BatchWriteItem, retrying unprocessed items with exponential backoff.
async fn write_all(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    mut requests: Vec<WriteRequest>,
    retries: &AtomicU64,
) -> Result<()> {
    let mut delay = Duration::from_millis(20);
    for _ in 0..12 {
        let output = client
            .batch_write_item()
            .request_items(table, requests)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(e)))
            .context("BatchWriteItem")?;
        requests = output
            .unprocessed_items
            .and_then(|mut u| u.remove(table))
            .unwrap_or_default();
        if requests.is_empty() {
            return Ok(());
        }
        retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    anyhow::bail!("items still unprocessed after 12 attempts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_go_only_to_the_given_agents_and_mostly_to_one() {
        let agents = [Id::generate(), Id::generate(), Id::generate()];
        let mut rng = rand::rng();
        let accounts: Vec<Account> = (0..500)
            .map(|n| account(&mut rng, "t", n, &agents))
            .collect();
        assert!(accounts
            .iter()
            .filter_map(|a| a.assigned_agent_id)
            .all(|agent| agents.contains(&agent)));
        let assigned = accounts
            .iter()
            .filter(|a| a.assigned_agent_id.is_some())
            .count();
        assert!(assigned > 300, "about 80 % are assigned, got {assigned}");
        for agent in agents {
            assert!(accounts.iter().any(|a| a.assigned_agent_id == Some(agent)));
        }
    }

    #[test]
    fn no_agents_leaves_accounts_unassigned() {
        let mut rng = rand::rng();
        assert!((0..50).all(|n| account(&mut rng, "t", n, &[]).assigned_agent_id.is_none()));
    }
}
