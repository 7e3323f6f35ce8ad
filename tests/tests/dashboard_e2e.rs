//! The dashboard end to end: accounts, payments (one refunded), a note, a soft delete and a
//! bulk status change through the API; the gateway's DynamoDB Streams sources drive the real
//! `notifier`, which materialises the aggregates; `GET /dashboard/summary` must then equal
//! what the API's own reads add up to, for everyone and per agent, and the reconciliation
//! (`collectpro-admin reconcile` and `shared::dashboard::reconcile`) must find no drift.
//!
//! Run under `infra/stack.sh` after `cargo build --workspace --bins`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::{bin_dir, Stack, StackOptions};
use reqwest::StatusCode;
use serde_json::{json, Map, Value};
use shared::config::Tables;
use shared::dashboard::reconcile::reconcile;
use shared::dashboard::AggregateStore;
use shared::domain::Timestamp;

/// How long the stream may take to drain (the gateway polls every 250 ms; generous for a
/// loaded CI machine).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

const STATUSES: [&str; 6] = [
    "active",
    "promise_to_pay",
    "payment_plan",
    "disputed",
    "paid",
    "closed",
];
const BUCKETS: [&str; 5] = ["current", "1-30", "31-60", "61-90", "90+"];
const METHODS: [&str; 5] = ["card", "ach", "check", "cash", "wire"];
const ACTIVITY_TYPES: [&str; 10] = [
    "call",
    "email",
    "sms",
    "letter",
    "note",
    "promise_to_pay",
    "dispute",
    "status_change",
    "payment",
    "field_change",
];

/// The UTC day `offset_days` from now, `YYYY-MM-DD`.
fn day(offset_days: i64) -> String {
    let now = Timestamp::now().unix_seconds();
    let then = Timestamp::from_unix_seconds(now + offset_days * 86_400).unwrap();
    shared::accounts::model::format_date(then.as_offset_date_time().date())
}

fn today() -> String {
    day(0)
}

/// The UTC day of an RFC 3339 time.
fn utc_date(rfc3339: &str) -> String {
    let at: Timestamp = rfc3339.parse().unwrap();
    shared::accounts::model::format_date(at.as_offset_date_time().date())
}

async fn ok(stack: &Stack, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
    let (status, answer) = stack.send(method, path, Some(token), body).await;
    assert!(status.is_success(), "{method} {path}: {status} {answer}");
    answer
}

/// Every item of a list, following `next_cursor`.
async fn all_items(stack: &Stack, path: &str, token: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let page_path = match &cursor {
            Some(c) => format!("{path}{sep}limit=100&cursor={c}"),
            None => format!("{path}{sep}limit=100"),
        };
        let page = ok(stack, "GET", &page_path, token, None).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

/// The dashboard blocks an expectation covers, in the summary's shape.
#[derive(Default)]
struct Expected {
    accounts: i64,
    by_status: BTreeMap<String, i64>,
    by_bucket: BTreeMap<String, i64>,
    outstanding: BTreeMap<String, i64>,
    collected: BTreeMap<String, i64>,
    methods: BTreeMap<String, (i64, BTreeMap<String, i64>)>,
    activities: BTreeMap<String, i64>,
}

impl Expected {
    fn account(&mut self, account: &Value) {
        self.accounts += 1;
        *self
            .by_status
            .entry(account["status"].as_str().unwrap().into())
            .or_default() += 1;
        *self
            .by_bucket
            .entry(account["dpd_bucket"].as_str().unwrap().into())
            .or_default() += 1;
        let balance = account["balance"].as_i64().unwrap();
        if balance != 0 {
            *self
                .outstanding
                .entry(account["currency"].as_str().unwrap().into())
                .or_default() += balance;
        }
    }

    fn payment(&mut self, payment: &Value) {
        let currency: String = payment["currency"].as_str().unwrap().into();
        let amount = payment["amount"].as_i64().unwrap();
        *self.collected.entry(currency.clone()).or_default() += amount;
        let method = self
            .methods
            .entry(payment["method"].as_str().unwrap().into())
            .or_default();
        method.0 += 1;
        *method.1.entry(currency).or_default() += amount;
    }

    fn activity(&mut self, activity: &Value) {
        *self
            .activities
            .entry(activity["type"].as_str().unwrap().into())
            .or_default() += 1;
    }

    fn every<const N: usize>(names: [&str; N], counts: &BTreeMap<String, i64>) -> Value {
        names
            .iter()
            .map(|n| ((*n).to_owned(), json!(counts.get(*n).copied().unwrap_or(0))))
            .collect::<Map<_, _>>()
            .into()
    }

    /// The figures of a summary (or of one `agents` entry) that this expectation covers.
    fn json(&self) -> Value {
        let methods: Map<String, Value> = METHODS
            .iter()
            .map(|m| {
                let (count, amount) = self.methods.get(*m).cloned().unwrap_or_default();
                ((*m).to_owned(), json!({"count": count, "amount": amount}))
            })
            .collect();
        let today = json!({
            "collected": self.collected,
            "payments_by_method": methods,
            "activities": Self::every(ACTIVITY_TYPES, &self.activities),
        });
        json!({
            "accounts": {
                "total": self.accounts,
                "by_status": Self::every(STATUSES, &self.by_status),
                "by_dpd_bucket": Self::every(BUCKETS, &self.by_bucket),
            },
            "outstanding": self.outstanding,
            "today": today,
            // Everything happened today, so this month's figures are today's.
            "month": today,
        })
    }
}

/// The covered figures of a summary block (promises are not exercised here).
fn figures(block: &Value) -> Value {
    let period = |p: &Value| {
        json!({
            "collected": p["collected"],
            "payments_by_method": p["payments_by_method"],
            "activities": p["activities"],
        })
    };
    json!({
        "accounts": block["accounts"],
        "outstanding": block["outstanding"],
        "today": period(&block["today"]),
        "month": period(&block["month"]),
    })
}

fn agent_entry<'a>(summary: &'a Value, agent: &str) -> &'a Value {
    summary["agents"]
        .as_array()
        .and_then(|agents| agents.iter().find(|a| a["agent_id"] == agent))
        .unwrap_or(&Value::Null)
}

/// `ACCOUNTS_TABLE` → `<prefix>AccountsTable`, as the gateway names the template's tables.
fn tables(prefix: &str) -> Tables {
    Tables::from_lookup(&|variable| {
        let logical: String = variable
            .split('_')
            .map(|w| w[..1].to_owned() + &w[1..].to_ascii_lowercase())
            .collect();
        Some(format!("{prefix}{logical}"))
    })
    .unwrap()
}

#[tokio::test]
async fn the_dashboard_adds_up_to_what_the_api_says_and_reconciles() {
    let stack = Stack::start(StackOptions::unthrottled().with_event_sources()).await;
    let admin = stack.admin().to_owned();
    let (agent_1, agent_1_token) = stack.user_with_role("agent").await;
    let (agent_2, _) = stack.user_with_role("agent").await;
    let run = ulid::Ulid::new().to_string();

    // Ten accounts: four for agent 1, three for agent 2, three unassigned, over three dpd
    // buckets and two currencies.
    let mut ids = Vec::new();
    for i in 0..10 {
        let agent = match i % 3 {
            0 => Some(&agent_1),
            1 => Some(&agent_2),
            _ => None,
        };
        let due = day([5, -10, -45][i % 3]);
        let body = json!({
            "reference": format!("DASH-{run}-{i}"),
            "debtor_name": format!("Debtor {i}"),
            "debtor_email": format!("debtor{i}@example.com"),
            "debtor_phone": "+14155550123",
            "debtor_timezone": "America/New_York",
            "currency": if i % 4 == 3 { "EUR" } else { "USD" },
            "original_balance": 10_000 + i as i64 * 1_000,
            "assigned_agent_id": agent,
            "due_date": due,
        });
        let created = ok(&stack, "POST", "/accounts", &admin, Some(body)).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }

    // Payments: the admin on accounts 0..6 (card, ach, check by turns; account 5 pays in
    // full), agent 1 on its own account 9 (cash), and one of the admin's refunded.
    let mut refund = None;
    for (i, id) in ids.iter().enumerate().take(6) {
        let account = ok(&stack, "GET", &format!("/accounts/{id}"), &admin, None).await;
        let amount = if i == 5 {
            account["balance"].as_i64().unwrap()
        } else {
            1_000 + i as i64 * 100
        };
        let method = ["card", "ach", "check"][i % 3];
        let body = json!({
            "amount": amount,
            "currency": account["currency"],
            "method": method,
        });
        let response = stack
            .request(
                "POST",
                &format!("/accounts/{id}/payments"),
                Some(&admin),
                Some(body),
            )
            .header("idempotency-key", format!("dash-{run}-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        let payment: Value = response.json().await.unwrap();
        if i == 2 {
            refund = Some((id.clone(), payment["id"].as_str().unwrap().to_owned(), etag));
        }
    }
    let response = stack
        .request(
            "POST",
            &format!("/accounts/{}/payments", ids[9]),
            Some(&agent_1_token),
            Some(json!({"amount": 250, "currency": "USD", "method": "cash"})),
        )
        .header("idempotency-key", format!("dash-{run}-agent"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let (account_id, payment_id, etag) = refund.unwrap();
    let response = stack
        .request(
            "PATCH",
            &format!("/accounts/{account_id}/payments/{payment_id}"),
            Some(&admin),
            Some(json!({"status": "refunded"})),
        )
        .header("if-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // An agent's note, a soft delete (account 8 has no history), and a bulk job closing
    // accounts 6 and 7 and one that does not exist.
    ok(
        &stack,
        "POST",
        &format!("/accounts/{}/activities", ids[0]),
        &agent_1_token,
        Some(json!({"type": "note", "note": "left a voicemail script"})),
    )
    .await;
    let (status, _) = stack
        .send(
            "DELETE",
            &format!("/accounts/{}", ids[8]),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let bulk = json!({
        "account_ids": [ids[6], ids[7], ulid::Ulid::new().to_string()],
        "changes": {"status": "closed"},
    });
    let accepted = ok(&stack, "POST", "/bulk/accounts", &admin, Some(bulk)).await;
    let job_path = format!("/bulk/jobs/{}", accepted["job_id"].as_str().unwrap());
    let started = Instant::now();
    let job = loop {
        assert!(
            started.elapsed() < DRAIN_TIMEOUT,
            "the bulk job did not finish"
        );
        let job = ok(&stack, "GET", &job_path, &admin, None).await;
        if job["finished_at"].is_string() {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let last_write = Instant::now();
    assert_eq!(
        (job["succeeded"].as_i64(), job["failed"].as_i64()),
        (Some(2), Some(1)),
        "{job}"
    );

    // What the API says, added up: everyone, and each agent.
    let mut all = Expected::default();
    let mut per_agent: BTreeMap<String, Expected> = BTreeMap::new();
    let accounts = all_items(&stack, "/accounts", &admin).await;
    assert_eq!(accounts.len(), 9, "the deleted one is gone");
    for account in &accounts {
        let id = account["id"].as_str().unwrap();
        let agent = account["assigned_agent_id"].as_str().map(str::to_owned);
        all.account(account);
        if let Some(agent) = &agent {
            per_agent.entry(agent.clone()).or_default().account(account);
        }
        // Nobody was reassigned, so a payment's agent is its account's agent.
        for payment in all_items(&stack, &format!("/accounts/{id}/payments"), &admin).await {
            if payment["status"] == "completed"
                && utc_date(payment["received_at"].as_str().unwrap()) == today()
            {
                all.payment(&payment);
                if let Some(agent) = &agent {
                    per_agent
                        .entry(agent.clone())
                        .or_default()
                        .payment(&payment);
                }
            }
        }
        for activity in all_items(&stack, &format!("/accounts/{id}/activities"), &admin).await {
            if utc_date(activity["created_at"].as_str().unwrap()) == today() {
                all.activity(&activity);
                let actor = activity["actor_id"].as_str().unwrap().to_owned();
                per_agent.entry(actor).or_default().activity(&activity);
            }
        }
    }
    // The breakdown lists agents only: the admin, who recorded payments and ran the bulk
    // job, has figures of its own scope but no entry.
    per_agent.retain(|id, _| *id == agent_1 || *id == agent_2);
    assert_eq!(per_agent.len(), 2);
    assert!(all.collected.values().sum::<i64>() > 0);
    assert!(all.by_status.contains_key("closed") && all.by_status.contains_key("paid"));

    // Poll until the stream has drained into the aggregates.
    let expected_all = all.json();
    let started = Instant::now();
    let summary = loop {
        let summary = ok(&stack, "GET", "/dashboard/summary", &admin, None).await;
        let caught_up = figures(&summary) == expected_all
            && per_agent
                .iter()
                .all(|(agent, e)| figures(agent_entry(&summary, agent)) == e.json());
        if caught_up || started.elapsed() > DRAIN_TIMEOUT {
            break summary;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "FIGURE dashboard matched the API {:?} after the bulk job finished (the API reads took {:?} of it)",
        last_write.elapsed(),
        started.duration_since(last_write)
    );
    assert_eq!(figures(&summary), expected_all, "everyone: {summary:#}");
    for (agent, e) in &per_agent {
        assert_eq!(
            figures(agent_entry(&summary, agent)),
            e.json(),
            "agent {agent}: {summary:#}"
        );
    }
    let listed: Vec<&str> = summary["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent_id"].as_str().unwrap())
        .collect();
    let mut agents = [agent_1.as_str(), agent_2.as_str()];
    agents.sort();
    assert_eq!(listed, agents, "agents only, sorted by id");
    assert!(summary["agents"][0]["name"].is_string(), "{summary:#}");
    assert_eq!(summary["date"], today());
    assert_eq!(summary["accounts"]["total"], 9);

    // An agent's own dashboard is its entry of the admin's.
    let own = ok(&stack, "GET", "/dashboard/summary", &agent_1_token, None).await;
    assert_eq!(own["scope"], "agent");
    assert!(own.get("agents").is_none());
    assert_eq!(figures(&own), figures(agent_entry(&summary, &agent_1)));
    assert_eq!(figures(&own), per_agent[&agent_1].json());

    // Through the gateway: the ETag revalidates to a 304.
    let response = stack
        .request("GET", "/dashboard/summary", Some(&admin), None)
        .send()
        .await
        .unwrap();
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["cache-control"], "private, no-cache");
    let response = stack
        .request("GET", "/dashboard/summary", Some(&admin), None)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let (status, _) = stack.send("GET", "/dashboard/summary", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The reconciliation recomputes the same figures from the tables.
    let sdk = shared::clients::sdk_config().await;
    let clients = shared::clients::Clients::new(&sdk);
    let tables = tables(&stack.prefix);
    let store = AggregateStore::new(clients.dynamodb.clone(), tables.aggregates.clone());
    let drift = reconcile(&clients.dynamodb, &tables, &store).await.unwrap();
    assert!(drift.is_empty(), "drift: {drift:#?}");
    let output = tokio::process::Command::new(bin_dir().join("collectpro-admin"))
        .args(["reconcile", "--table-prefix", &stack.prefix])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("reconcile: 0 drifting counter(s)"),
        "{stdout}"
    );
}
