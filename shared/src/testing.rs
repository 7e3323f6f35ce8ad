//! Test support (feature `test-support`, for dev-dependencies only): API Gateway HTTP API
//! (payload 2.0) requests for calling a function's `handle` directly.
//!
//! ```ignore
//! let req = TestRequest::new("POST /auth/login", "/auth/login")
//!     .json(&serde_json::json!({"email": "a@b.co", "password": "..."}))
//!     .build();
//! let response = shared::http::serve(req, |req| my_fn::handle(&app, req)).await;
//! ```

use serde_json::{json, Map, Value};

use crate::accounts::{Account, AccountStatus, DpdBucket};
use crate::auth::{AuthSettings, KeySet};
use crate::clients::Clients;
use crate::config::Config;
use crate::domain::{Id, MinorUnits, Timestamp};
use crate::platform::Platform;
use crate::rate_limit::RateLimits;

/// Auth settings for tests: the template's issuer and audience, no per-instance user cache
/// (a test that disables a user sees it at once).
pub fn auth_settings() -> AuthSettings {
    AuthSettings {
        keys_parameter: "/unused-in-tests".into(),
        issuer: "collectpro".into(),
        audience: "collectpro-api".into(),
        cache_ttl: std::time::Duration::ZERO,
    }
}

/// An active USD account owing `balance` (all of it still outstanding), created and last
/// updated at `now`: Dana Debtor in New York, due 2026-10-01, current, version 1,
/// unassigned, reference `REF-<id>`. Tests set the fields they care about with
/// `Account { status, ..account(balance, now) }`.
pub fn account(balance: i64, now: Timestamp) -> Account {
    let id = Id::generate();
    Account {
        id,
        reference: format!("REF-{id}"),
        debtor_name: "Dana Debtor".into(),
        debtor_email: "dana@example.com".into(),
        debtor_phone: "+14155550123".into(),
        debtor_timezone: "America/New_York".into(),
        // Test support only: "USD" is in ISO 4217, so the parse cannot fail.
        currency: "USD".parse().expect("USD is a currency"),
        original_balance: MinorUnits(balance),
        balance: MinorUnits(balance),
        status: AccountStatus::Active,
        assigned_agent_id: None,
        due_date: time::macros::date!(2026 - 10 - 01),
        days_past_due: 0,
        dpd_bucket: DpdBucket::Current,
        tags: vec![],
        version: 1,
        created_at: now,
        updated_at: now,
        deleted_at: None,
        applied_bulk_jobs: Default::default(),
    }
}

/// A [`Platform`] on a fresh, isolated copy of the template's tables and queues (DynamoDB
/// Local and moto, from `infra/stack.sh`), with a generated key set.
pub async fn platform(limits: RateLimits) -> Platform {
    let provisioned = local_gateway::provision_for_test()
        .await
        .unwrap_or_else(|err| {
            panic!("provisioning test tables (run under infra/stack.sh): {err:#}")
        });
    let env = provisioned.env;
    let config = Config::from_lookup(&|name| env.get(name).cloned())
        .unwrap_or_else(|err| panic!("the provisioned environment is complete: {err}"));
    let keys = KeySet::parse(&KeySet::generate_json())
        .unwrap_or_else(|err| panic!("a generated key set parses: {err}"));
    let sdk = crate::clients::sdk_config().await;
    Platform::new(config, Clients::new(&sdk), &keys, &auth_settings(), limits)
}

/// A builder of an API Gateway v2 event, turned into a `lambda_http::Request`.
#[derive(Debug, Clone)]
pub struct TestRequest {
    route_key: String,
    path: String,
    query: String,
    headers: Map<String, Value>,
    path_parameters: Map<String, Value>,
    body: Option<String>,
    source_ip: String,
}

impl TestRequest {
    /// `route_key` as the template names it (`PATCH /users/{id}`), `path` the concrete path.
    pub fn new(route_key: &str, path: &str) -> Self {
        Self {
            route_key: route_key.to_owned(),
            path: path.to_owned(),
            query: String::new(),
            headers: Map::new(),
            path_parameters: Map::new(),
            body: None,
            source_ip: "203.0.113.10".to_owned(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .insert(name.to_ascii_lowercase(), Value::String(value.to_owned()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// A JSON body (and `content-type: application/json`).
    pub fn json(self, value: &Value) -> Self {
        self.raw_body(&value.to_string())
    }

    /// A body sent as is, with `content-type: application/json`.
    pub fn raw_body(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self.header("content-type", "application/json")
    }

    /// The raw query string (`limit=5&cursor=...`).
    pub fn query(mut self, query: &str) -> Self {
        self.query = query.to_owned();
        self
    }

    pub fn path_param(mut self, name: &str, value: &str) -> Self {
        self.path_parameters
            .insert(name.to_owned(), Value::String(value.to_owned()));
        self
    }

    pub fn source_ip(mut self, ip: &str) -> Self {
        self.source_ip = ip.to_owned();
        self
    }

    /// The event as JSON.
    pub fn event(&self) -> Value {
        let method = self.route_key.split(' ').next().unwrap_or("GET");
        let mut query_parameters = Map::new();
        for (k, v) in form_urlencoded::parse(self.query.as_bytes()) {
            query_parameters.insert(k.into_owned(), Value::String(v.into_owned()));
        }
        let mut event = json!({
            "version": "2.0",
            "routeKey": self.route_key,
            "rawPath": self.path,
            "rawQueryString": self.query,
            "headers": self.headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "domainName": "localhost",
                "domainPrefix": "localhost",
                "http": {"method": method, "path": self.path, "protocol": "HTTP/1.1",
                         "sourceIp": self.source_ip, "userAgent": "test"},
                "requestId": ulid::Ulid::new().to_string(),
                "routeKey": self.route_key,
                "stage": "$default",
                "time": "25/Nov/2026:19:17:21 +0000",
                "timeEpoch": 1795634241000_u64
            },
            "isBase64Encoded": false
        });
        if !query_parameters.is_empty() {
            event["queryStringParameters"] = Value::Object(query_parameters);
        }
        if !self.path_parameters.is_empty() {
            event["pathParameters"] = Value::Object(self.path_parameters.clone());
        }
        if let Some(body) = &self.body {
            event["body"] = Value::String(body.clone());
        }
        event
    }

    /// The request. Panics only if `lambda_http` cannot read its own event format (a
    /// test-support bug).
    pub fn build(&self) -> lambda_http::Request {
        lambda_http::request::from_str(&self.event().to_string())
            .expect("lambda_http reads an API Gateway v2 event")
    }
}

/// A response body as JSON (`Value::Null` when empty or not JSON).
pub fn body_json(response: &lambda_http::Response<lambda_http::Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null)
}
