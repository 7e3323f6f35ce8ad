//! Shared by the payments integration tests: an `App` on freshly provisioned tables,
//! accounts written straight through the accounts repository, and requests through
//! `dispatch` with an injected caller and clock.

#![allow(dead_code)]

use http::StatusCode;
use payments::{dispatch, App};
use serde_json::Value;
use shared::accounts::{Account, AccountRepo};
use shared::auth::{Caller, Role};
use shared::config::Config;
use shared::domain::{Id, Timestamp};
use shared::rate_limit::RateLimits;
use shared::testing::{body_json, TestRequest};

pub struct Fixture {
    pub app: App,
    pub config: Config,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub repo: AccountRepo,
    pub admin: Caller,
}

pub async fn fixture() -> Fixture {
    let platform = shared::testing::platform(RateLimits::off()).await;
    let config = platform.config.clone();
    let dynamodb = platform.clients.dynamodb.clone();
    let app = App::new(platform);
    let repo = AccountRepo::new(
        dynamodb.clone(),
        config.tables.accounts.clone(),
        config.tables.activities.clone(),
    );
    Fixture {
        app,
        config,
        dynamodb,
        repo,
        admin: caller(Role::Admin),
    }
}

pub fn caller(role: Role) -> Caller {
    Caller {
        user_id: Id::generate(),
        role,
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: http::HeaderMap,
}

impl Fixture {
    /// A new account with `balance` in `currency`, optionally assigned to `agent`.
    pub async fn account(&self, balance: i64, currency: &str, agent: Option<Id>) -> Account {
        let account = Account {
            currency: currency.parse().unwrap(),
            assigned_agent_id: agent,
            ..shared::testing::account(balance, Timestamp::now())
        };
        self.repo.create(&account).await.unwrap().unwrap();
        account
    }

    pub async fn stored(&self, id: Id) -> Account {
        self.repo.get(id).await.unwrap().unwrap()
    }

    pub async fn call(&self, caller: &Caller, req: TestRequest) -> Answer {
        self.call_at(caller, req, Timestamp::now()).await
    }

    pub async fn call_at(&self, caller: &Caller, req: TestRequest, now: Timestamp) -> Answer {
        let response =
            shared::http::serve(req.build(), |req| dispatch(&self.app, caller, req, now)).await;
        Answer {
            status: response.status(),
            body: body_json(&response),
            headers: response.headers().clone(),
        }
    }

    pub async fn pay(&self, caller: &Caller, account: Id, body: &Value, key: &str) -> Answer {
        self.call(caller, record(account, body, Some(key))).await
    }

    /// A payment as a well-behaved client sends it: a `409` or `503` with `Retry-After` (the
    /// account busy with other payments, the key's first request still running, DynamoDB
    /// slow or throttling) is sent again with the same key after that many seconds, up to
    /// `attempts` times in all. The final
    /// answer and how many sends it took.
    pub async fn pay_following_retry_after(
        &self,
        caller: &Caller,
        account: Id,
        body: &Value,
        key: &str,
        attempts: u32,
    ) -> (Answer, u32) {
        let mut sent = 1;
        loop {
            let answer = self.pay(caller, account, body, key).await;
            let wait = answer
                .headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            match wait {
                Some(secs)
                    if matches!(
                        answer.status,
                        StatusCode::CONFLICT | StatusCode::SERVICE_UNAVAILABLE
                    ) && sent < attempts =>
                {
                    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
                    sent += 1;
                }
                _ => return (answer, sent),
            }
        }
    }

    /// Every payment of the account (all pages).
    pub async fn history(&self, account: Id, query: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let mut q = query.to_owned();
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let answer = self
                .call(&self.admin, list(account).query(q.trim_start_matches('&')))
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            items.extend(answer.body["items"].as_array().unwrap().clone());
            match answer.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return items,
            }
        }
        panic!("paging did not end");
    }

    /// Moves a payment to `status` (reading its ETag first).
    pub async fn set_status(&self, account: Id, payment: &str, status: &str) -> Answer {
        let current = self
            .history(account, "limit=100")
            .await
            .into_iter()
            .find(|p| p["id"] == payment)
            .unwrap();
        let etag = format!("\"{}\"", current["version"]);
        self.call(
            &self.admin,
            patch(account, payment, &serde_json::json!({ "status": status }))
                .header("if-match", &etag),
        )
        .await
    }
}

pub fn record(account: Id, body: &Value, key: Option<&str>) -> TestRequest {
    let path = format!("/accounts/{account}/payments");
    let mut req = TestRequest::new("POST /accounts/{id}/payments", &path)
        .path_param("id", &account.to_string())
        .json(body);
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    req
}

pub fn list(account: Id) -> TestRequest {
    TestRequest::new(
        "GET /accounts/{id}/payments",
        &format!("/accounts/{account}/payments"),
    )
    .path_param("id", &account.to_string())
}

pub fn patch(account: Id, payment: &str, body: &Value) -> TestRequest {
    TestRequest::new(
        "PATCH /accounts/{id}/payments/{pid}",
        &format!("/accounts/{account}/payments/{payment}"),
    )
    .path_param("id", &account.to_string())
    .path_param("pid", payment)
    .json(body)
}

pub fn key() -> String {
    format!("key-{}", Id::generate())
}
