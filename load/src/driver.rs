//! The users of the load and what they do over HTTP: set-up (users, accounts), the mix's
//! actions, and what the consistency check needs to know afterwards (opening balances, the
//! idempotency keys answered, the payment ids created).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::mix::Action;

/// The password of every user the load creates.
pub const PASSWORD: &str = "a load test passphrase, long enough";
pub const OPENING_BALANCE: i64 = 1_000_000;

/// A signed-in user.
#[derive(Debug)]
pub struct User {
    pub id: String,
    pub email: String,
    pub role: String,
    pub access: Mutex<String>,
    /// Held across a refresh: a refresh token is single-use (its reuse revokes the family).
    pub refresh: tokio::sync::Mutex<String>,
    /// Accounts assigned to the user (agents).
    pub accounts: Vec<String>,
}

/// A payment the load sent: its key, what it asked for, and what answered.
#[derive(Debug, Clone)]
pub struct SentPayment {
    pub account: String,
    pub key: String,
    pub amount: i64,
    pub body: Value,
    /// Payment ids answered for this key (one per successful answer, retries included).
    pub ids: Vec<String>,
    /// A transport error or 5xx left the outcome unknown.
    pub unknown: bool,
}

/// What the run remembers for the consistency check.
#[derive(Debug, Default)]
pub struct Ledger {
    pub payments: Vec<SentPayment>,
    /// (user, account) → ETag last seen.
    pub etags: HashMap<(String, String), String>,
    /// (user, filter) → next cursor of the last first page.
    pub cursors: HashMap<(String, &'static str), String>,
}

/// The HTTP side of the load.
pub struct Driver {
    pub http: reqwest::Client,
    pub base: String,
    pub admin: String,
    pub agents: Vec<Arc<User>>,
    pub managers: Vec<Arc<User>>,
    pub ledger: Mutex<Ledger>,
}

/// One answer: the endpoint it counts under, its status (0: no answer), how long it took.
pub struct Answer {
    pub endpoint: &'static str,
    pub status: u16,
    pub latency: Duration,
}

impl Driver {
    pub async fn sign_in(
        http: &reqwest::Client,
        base: &str,
        email: &str,
        password: &str,
    ) -> Result<(String, String)> {
        let response = http
            .post(format!("{base}/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != StatusCode::OK {
            bail!("login of {email}: {status} {body}");
        }
        Ok((
            body["access_token"].as_str().unwrap_or_default().to_owned(),
            body["refresh_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ))
    }

    /// Creates `agents` agents with `accounts_per_agent` accounts each and `managers`
    /// managers, as the admin, `parallel` requests at a time.
    pub async fn set_up(
        base: &str,
        admin_password: &str,
        agents: usize,
        accounts_per_agent: usize,
        managers: usize,
        parallel: usize,
    ) -> Result<Driver> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .timeout(Duration::from_secs(30))
            .build()?;
        let (admin, _) = Self::sign_in(&http, base, "admin@collectpro.local", admin_password)
            .await
            .context("the admin signs in (COLLECTPRO_ADMIN_PASSWORD)")?;
        let run = ulid::Ulid::new().to_string().to_lowercase();
        let mut users = Vec::new();
        for (role, count) in [("agent", agents), ("manager", managers)] {
            for n in 0..count {
                let email = format!("load-{run}-{role}{n}@example.com");
                let (status, user) = send(
                    &http,
                    Method::POST,
                    &format!("{base}/users"),
                    &admin,
                    Some(json!({"email": email, "name": format!("Load {role} {n}"), "password": PASSWORD, "role": role})),
                )
                .await?;
                if status != StatusCode::CREATED {
                    bail!("creating a {role}: {status} {user}");
                }
                let (access, refresh) = Self::sign_in(&http, base, &email, PASSWORD).await?;
                users.push(User {
                    id: user["id"].as_str().unwrap_or_default().to_owned(),
                    email,
                    role: role.to_owned(),
                    access: Mutex::new(access),
                    refresh: tokio::sync::Mutex::new(refresh),
                    accounts: Vec::new(),
                });
            }
        }
        // Accounts, `parallel` creations at a time, assigned round-robin to the agents.
        let agent_ids: Vec<String> = users
            .iter()
            .filter(|u| u.role == "agent")
            .map(|u| u.id.clone())
            .collect();
        let wanted = agent_ids.len() * accounts_per_agent;
        let created: Vec<(usize, String)> =
            futures::future::try_join_all((0..parallel).map(|worker| {
                let (http, admin, agent_ids) = (http.clone(), admin.clone(), agent_ids.clone());
                let base = base.to_owned();
                async move {
                    let mut mine = Vec::new();
                    for n in (worker..wanted).step_by(parallel) {
                        let agent = n % agent_ids.len();
                        let body = json!({
                            "reference": format!("LOAD-{}", ulid::Ulid::new()),
                            "debtor_name": format!("Load Debtor {n}"),
                            "debtor_email": "debtor@example.com",
                            "debtor_phone": "+14155550123",
                            "debtor_timezone": "America/New_York",
                            "currency": "USD",
                            "original_balance": OPENING_BALANCE,
                            "due_date": "2026-06-01",
                            "assigned_agent_id": agent_ids[agent],
                        });
                        let (status, account) = send(
                            &http,
                            Method::POST,
                            &format!("{base}/accounts"),
                            &admin,
                            Some(body),
                        )
                        .await?;
                        if status != StatusCode::CREATED {
                            bail!("creating an account: {status} {account}");
                        }
                        mine.push((agent, account["id"].as_str().unwrap_or_default().to_owned()));
                    }
                    Ok::<_, anyhow::Error>(mine)
                }
            }))
            .await?
            .into_iter()
            .flatten()
            .collect();
        let mut agents_out = Vec::new();
        let mut managers_out = Vec::new();
        let mut agent_index = 0;
        for mut user in users {
            if user.role == "agent" {
                user.accounts = created
                    .iter()
                    .filter(|(a, _)| *a == agent_index)
                    .map(|(_, id)| id.clone())
                    .collect();
                agent_index += 1;
                agents_out.push(Arc::new(user));
            } else {
                managers_out.push(Arc::new(user));
            }
        }
        Ok(Driver {
            http,
            base: base.to_owned(),
            admin,
            agents: agents_out,
            managers: managers_out,
            ledger: Mutex::default(),
        })
    }

    /// Every account of the run.
    pub fn accounts(&self) -> Vec<String> {
        self.agents
            .iter()
            .flat_map(|a| a.accounts.iter().cloned())
            .collect()
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Performs `action` as a user the action suits; answers what was asked and how it went.
    pub async fn act(&self, action: Action, roll: u64) -> Answer {
        let agent = &self.agents[roll as usize % self.agents.len()];
        let account = agent.accounts[(roll / 7) as usize % agent.accounts.len()].clone();
        let started = Instant::now();
        let token = agent.access.lock().map(|t| t.clone()).unwrap_or_default();
        let (endpoint, status): (&'static str, u16) = match action {
            Action::Login => {
                let mut refresh = agent.refresh.lock().await;
                let r = self
                    .post_json(
                        "/auth/login",
                        None,
                        json!({"email": agent.email, "password": PASSWORD}),
                        None,
                    )
                    .await;
                if let Some(body) = r.1.as_ref().filter(|_| r.0 == 200) {
                    store_tokens(agent, &mut refresh, body);
                }
                ("POST /auth/login", r.0)
            }
            Action::Refresh => {
                let mut refresh = agent.refresh.lock().await;
                let r = self
                    .post_json(
                        "/auth/refresh",
                        None,
                        json!({"refresh_token": *refresh}),
                        None,
                    )
                    .await;
                if let Some(body) = r.1.as_ref().filter(|_| r.0 == 200) {
                    store_tokens(agent, &mut refresh, body);
                }
                ("POST /auth/refresh", r.0)
            }
            Action::Me => ("GET /auth/me", self.get("/auth/me", &token, None).await.0),
            Action::ListAccounts | Action::ListAccountsNextPage => {
                let filters = ["status=active", "sort=-balance", "min_balance=1000"];
                let filter = filters[(roll % 3) as usize];
                let key = (agent.id.clone(), filter);
                let cursor = self.ledger().cursors.get(&key).cloned();
                let (path, endpoint) = match (action, cursor) {
                    (Action::ListAccountsNextPage, Some(c)) => (
                        format!("/accounts?{filter}&limit=25&cursor={c}"),
                        "GET /accounts (next page)",
                    ),
                    _ => (format!("/accounts?{filter}&limit=25"), "GET /accounts"),
                };
                let (status, _, body) = self.get(&path, &token, None).await;
                if endpoint == "GET /accounts" {
                    if let Some(next) = body.as_ref().and_then(|b| b["next_cursor"].as_str()) {
                        self.ledger().cursors.insert(key, next.to_owned());
                    }
                }
                (endpoint, status)
            }
            Action::ReadAccount => {
                let key = (agent.id.clone(), account.clone());
                let etag = self.ledger().etags.get(&key).cloned();
                let (status, new_etag, _) = self
                    .get(&format!("/accounts/{account}"), &token, etag.as_deref())
                    .await;
                if let Some(e) = new_etag {
                    self.ledger().etags.insert(key, e);
                }
                ("GET /accounts/{id}", status)
            }
            Action::RecordPayment | Action::RetryPayment => {
                let retry = if action == Action::RetryPayment {
                    let ledger = self.ledger();
                    let n = ledger.payments.len();
                    (n > 0).then(|| {
                        (
                            roll as usize % n,
                            ledger.payments[roll as usize % n].clone(),
                        )
                    })
                } else {
                    None
                };
                let (index, sent) = match retry {
                    Some((i, p)) => (Some(i), p),
                    None => {
                        let amount = rand::rng().random_range(100..=5_000);
                        let sent = SentPayment {
                            account: account.clone(),
                            key: ulid::Ulid::new().to_string(),
                            amount,
                            body: json!({"amount": amount, "currency": "USD", "method": "card"}),
                            ids: Vec::new(),
                            unknown: false,
                        };
                        (None, sent)
                    }
                };
                let path = format!("/accounts/{}/payments", sent.account);
                let owner = self
                    .agents
                    .iter()
                    .find(|a| a.accounts.contains(&sent.account))
                    .unwrap_or(agent);
                let owner_token = owner.access.lock().map(|t| t.clone()).unwrap_or_default();
                let (status, body) = self
                    .post_json(
                        &path,
                        Some(&owner_token),
                        sent.body.clone(),
                        Some(&sent.key),
                    )
                    .await;
                let id = body
                    .as_ref()
                    .filter(|_| (200..300).contains(&status))
                    .and_then(|b| b["id"].as_str())
                    .map(str::to_owned);
                let unknown = status == 0 || status >= 500;
                let mut ledger = self.ledger();
                let entry = match index {
                    Some(i) => &mut ledger.payments[i],
                    None => {
                        ledger.payments.push(sent);
                        ledger.payments.last_mut().expect("just pushed")
                    }
                };
                entry.ids.extend(id);
                entry.unknown |= unknown;
                (
                    if action == Action::RetryPayment {
                        "POST /accounts/{id}/payments (retry)"
                    } else {
                        "POST /accounts/{id}/payments"
                    },
                    status,
                )
            }
            Action::ListPayments => (
                "GET /accounts/{id}/payments",
                self.get(
                    &format!("/accounts/{account}/payments?limit=25"),
                    &token,
                    None,
                )
                .await
                .0,
            ),
            Action::LogActivity => {
                let body = json!({"type": "note", "note": "Debtor asked for a call back next week about a payment plan."});
                (
                    "POST /accounts/{id}/activities",
                    self.post_json(
                        &format!("/accounts/{account}/activities"),
                        Some(&token),
                        body,
                        None,
                    )
                    .await
                    .0,
                )
            }
            Action::ReadTimeline => (
                "GET /accounts/{id}/activities",
                self.get(
                    &format!("/accounts/{account}/activities?limit=25"),
                    &token,
                    None,
                )
                .await
                .0,
            ),
            Action::Dashboard => {
                let manager = &self.managers[roll as usize % self.managers.len()];
                let token = manager.access.lock().map(|t| t.clone()).unwrap_or_default();
                (
                    "GET /dashboard/summary",
                    self.get("/dashboard/summary", &token, None).await.0,
                )
            }
        };
        Answer {
            endpoint,
            status,
            latency: started.elapsed(),
        }
    }

    /// GET with an optional `If-None-Match`: status, ETag, JSON body.
    async fn get(
        &self,
        path: &str,
        token: &str,
        etag: Option<&str>,
    ) -> (u16, Option<String>, Option<Value>) {
        let mut request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let etag = response
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                (status, etag, response.json().await.ok())
            }
            Err(_) => (0, None, None),
        }
    }

    async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
        key: Option<&str>,
    ) -> (u16, Option<Value>) {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        match request.send().await {
            Ok(response) => (response.status().as_u16(), response.json().await.ok()),
            Err(_) => (0, None),
        }
    }

    /// Sends the bulk job (add a tag to `accounts`) as the admin; answers its id.
    pub async fn start_bulk_job(&self, accounts: &[String]) -> Result<String> {
        let body = json!({"account_ids": accounts, "changes": {"add_tags": ["load-test"]}});
        let (status, job) = send(
            &self.http,
            Method::POST,
            &format!("{}/bulk/accounts", self.base),
            &self.admin,
            Some(body),
        )
        .await?;
        if status != StatusCode::ACCEPTED {
            bail!("the bulk job was refused: {status} {job}");
        }
        Ok(job["job_id"].as_str().unwrap_or_default().to_owned())
    }

    /// The bulk job once it has finished (or `bound` has passed).
    pub async fn bulk_job(&self, id: &str, bound: Duration) -> Result<Value> {
        let deadline = Instant::now() + bound;
        loop {
            let (_, job) = send(
                &self.http,
                Method::GET,
                &format!("{}/bulk/jobs/{id}", self.base),
                &self.admin,
                None,
            )
            .await?;
            let state = job["state"].as_str().unwrap_or_default();
            if !matches!(state, "queued" | "running") || Instant::now() > deadline {
                return Ok(job);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every payment of `account` (all pages), as the admin.
    pub async fn payments_of(&self, account: &str) -> Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("{}/accounts/{account}/payments?limit=100", self.base);
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = send(&self.http, Method::GET, &path, &self.admin, None).await?;
            if status != StatusCode::OK {
                bail!("payments of {account}: {status} {page}");
            }
            all.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(all),
            }
        }
    }

    /// An account as the admin.
    pub async fn account(&self, account: &str) -> Result<Value> {
        let (status, body) = send(
            &self.http,
            Method::GET,
            &format!("{}/accounts/{account}", self.base),
            &self.admin,
            None,
        )
        .await?;
        if status != StatusCode::OK {
            bail!("account {account}: {status} {body}");
        }
        Ok(body)
    }

    /// Payment ids the load saw created, by account.
    pub fn created_payments(&self) -> BTreeMap<String, Vec<SentPayment>> {
        let mut by_account: BTreeMap<String, Vec<SentPayment>> = BTreeMap::new();
        for p in &self.ledger().payments {
            by_account
                .entry(p.account.clone())
                .or_default()
                .push(p.clone());
        }
        by_account
    }
}

fn store_tokens(user: &User, refresh_slot: &mut String, body: &Value) {
    if let (Some(access), Some(refresh)) = (
        body["access_token"].as_str(),
        body["refresh_token"].as_str(),
    ) {
        if let Ok(mut a) = user.access.lock() {
            *a = access.to_owned();
        }
        *refresh_slot = refresh.to_owned();
    }
}

/// One JSON request with a bearer token: status and body.
async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value)> {
    let mut request = http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}
