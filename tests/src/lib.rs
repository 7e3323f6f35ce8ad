//! End-to-end test support: the whole template behind the local gateway, on its own tables,
//! with the admin seeded by `collectpro-admin seed-admin` (the command `make run` uses), and
//! an HTTP client that signs in as any role.
//!
//! Run under `infra/stack.sh` after `cargo build --workspace --bins` (`make test` does both).
//!
//! ```ignore
//! let stack = e2e::Stack::start(e2e::StackOptions::default()).await;
//! let (agent_id, agent) = stack.user_with_role("agent").await;
//! let (status, body) = stack.send("GET", "/accounts", Some(&agent), None).await;
//! ```

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use local_gateway::provision::random_prefix;
use local_gateway::runtime::LogSink;
use local_gateway::{Gateway, GatewayOptions, RunningGateway};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

/// A WebSocket client connection to the stack.
pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The seeded admin's password in every test stack.
pub const ADMIN_PASSWORD: &str = "an admin passphrase for tests";
/// The password of every user a test creates.
pub const PASSWORD: &str = "a long and unusual passphrase";
pub const ADMIN_EMAIL: &str = "admin@collectpro.local";

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

pub fn bin_dir() -> PathBuf {
    local_gateway::gateway::default_bin_dir(&workspace())
}

/// How to start a stack.
pub struct StackOptions {
    /// Template parameters on top of the test defaults (rate limits off).
    pub params: Vec<(String, String)>,
    /// Run SQS, stream and schedule event sources (off unless a test needs them).
    pub event_sources: bool,
    /// Print the functions' logs (handy when a test fails).
    pub logs: bool,
    /// DynamoDB endpoint instead of the environment's (a fault test's own DynamoDB Local).
    pub dynamodb_endpoint: Option<String>,
    /// A fault-injecting proxy between the functions and DynamoDB (`docs/faults.md`).
    pub dynamodb_faults: Option<local_gateway::fault_proxy::FaultConfig>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            params: Vec::new(),
            event_sources: false,
            logs: std::env::var_os("E2E_LOGS").is_some(),
            dynamodb_endpoint: None,
            dynamodb_faults: None,
        }
    }
}

impl StackOptions {
    /// The per-user write limit off (for tests and benches that write a lot), the rest default.
    pub fn unthrottled() -> Self {
        Self {
            params: vec![("WriteLimitPerUser".into(), "off".into())],
            ..Default::default()
        }
    }

    /// The same options with the event sources running.
    pub fn with_event_sources(self) -> Self {
        Self {
            event_sources: true,
            ..self
        }
    }
}

/// A running gateway with a seeded admin, and an HTTP client for it.
pub struct Stack {
    pub gateway: RunningGateway,
    pub base: String,
    pub http: reqwest::Client,
    pub prefix: String,
    /// What `collectpro-admin seed-admin` printed when the stack started.
    pub seed_output: String,
    admin_token: String,
}

/// Rate limits are off unless a test turns them on: tests create many users from one IP.
const TEST_PARAMS: [(&str, &str); 4] = [
    ("LoginLimitPerIp", "off"),
    ("LoginLimitPerEmail", "off"),
    ("RegisterLimitPerIp", "off"),
    ("RegisterLimitPerEmail", "off"),
];

impl Stack {
    pub async fn start(options: StackOptions) -> Stack {
        let prefix = random_prefix();
        let key_parameter = format!("/collectpro/test/{prefix}jwt-keys"); // = key_parameter()
        let mut params: Vec<(String, String)> = TEST_PARAMS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        params.push(("JwtKeysParameterName".into(), key_parameter.clone()));
        params.extend(options.params);
        let gateway = Gateway::start(GatewayOptions {
            template_path: workspace().join("template.yaml"),
            http_port: 0,
            ws_port: 0,
            bin_dir: Some(bin_dir()),
            prefix: prefix.clone(),
            params: params.into_iter().collect(),
            logs: if options.logs {
                LogSink::Stdout
            } else {
                LogSink::None
            },
            event_sources: options.event_sources,
            dynamodb_endpoint: options.dynamodb_endpoint.clone(),
            dynamodb_faults: options.dynamodb_faults,
            ..Default::default()
        })
        .await
        .expect("the gateway starts");
        let mut seed = tokio::process::Command::new(bin_dir().join("collectpro-admin"));
        if let Some(endpoint) = &options.dynamodb_endpoint {
            seed.env("AWS_ENDPOINT_URL_DYNAMODB", endpoint);
        }
        let output = seed
            .args(["seed-admin", "--table-prefix", &prefix])
            .env("JWT_KEYS_PARAMETER", &key_parameter)
            .env("COLLECTPRO_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .output()
            .await
            .expect("collectpro-admin is built (cargo build --workspace --bins)");
        assert!(
            output.status.success(),
            "seed-admin failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut stack = Stack {
            base: format!("http://{}", gateway.http_addr()),
            gateway,
            http: reqwest::Client::new(),
            prefix,
            seed_output: String::from_utf8_lossy(&output.stdout).into_owned(),
            admin_token: String::new(),
        };
        stack.admin_token = stack.token(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        stack
    }

    /// Runs `collectpro-admin seed-admin` against this stack again (without a password).
    pub async fn seed_admin_again(&self) -> std::process::Output {
        tokio::process::Command::new(bin_dir().join("collectpro-admin"))
            .args(["seed-admin", "--table-prefix", &self.prefix])
            .env("JWT_KEYS_PARAMETER", self.key_parameter())
            .env_remove("COLLECTPRO_ADMIN_PASSWORD")
            .output()
            .await
            .expect("collectpro-admin is built")
    }

    fn key_parameter(&self) -> String {
        format!("/collectpro/test/{}jwt-keys", self.prefix)
    }

    /// The seeded admin's access token.
    pub fn admin(&self) -> &str {
        &self.admin_token
    }

    /// Sends a JSON request; answers the status and the JSON body (`Null` when empty).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let response = self
            .request(method, path, token, body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// A request builder for tests that need headers (If-Match, Idempotency-Key).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request
    }

    pub async fn login(&self, email: &str, password: &str) -> (StatusCode, Value) {
        self.send(
            "POST",
            "/auth/login",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await
    }

    /// Signs in and answers the access token.
    pub async fn token(&self, email: &str, password: &str) -> String {
        let (status, body) = self.login(email, password).await;
        assert_eq!(status, StatusCode::OK, "login of {email}: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Creates a user with `role` (as the admin) and signs it in: (user id, access token).
    pub async fn user_with_role(&self, role: &str) -> (String, String) {
        let email = unique_email();
        let (status, user) = self
            .send(
                "POST",
                "/users",
                Some(self.admin()),
                Some(json!({"email": email, "name": format!("E2E {role}"), "password": PASSWORD, "role": role})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "creating a {role}: {user}");
        let id = user["id"].as_str().unwrap().to_owned();
        (id, self.token(&email, PASSWORD).await)
    }

    /// Creates an account through the API as the admin; answers the created account, or
    /// the status and body of the refusal.
    pub async fn try_create_account(&self, body: Value) -> Result<Value, String> {
        let (status, body) = self
            .send("POST", "/accounts", Some(self.admin()), Some(body))
            .await;
        if status == StatusCode::CREATED && body["id"].is_string() {
            Ok(body)
        } else {
            Err(format!("creating an account: {status} {body}"))
        }
    }

    /// Creates an account through the API as the admin (it must be created); answers it.
    pub async fn create_account(&self, body: Value) -> Value {
        self.try_create_account(body)
            .await
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// The POST of a payment of `amount` USD by card on `account` as the admin, with a fresh
    /// Idempotency-Key.
    pub fn pay_request(&self, account: &str, amount: i64) -> reqwest::RequestBuilder {
        self.request(
            "POST",
            &format!("/accounts/{account}/payments"),
            Some(self.admin()),
            Some(json!({"amount": amount, "currency": "USD", "method": "card"})),
        )
        .header("idempotency-key", ulid::Ulid::new().to_string())
    }

    /// Connects a WebSocket with `token` and asks to follow `topics` (the answer comes on
    /// the stream); answers the connection's two halves.
    pub async fn subscribe(
        &self,
        token: &str,
        topics: &[&str],
    ) -> Result<
        (SplitSink<Socket, Message>, SplitStream<Socket>),
        tokio_tungstenite::tungstenite::Error,
    > {
        let url = format!("ws://{}/?token={token}", self.gateway.ws_addr());
        let (mut socket, _) = connect_async(url).await?;
        let request = json!({"action": "subscribe", "topics": topics});
        socket
            .send(Message::Text(request.to_string().into()))
            .await?;
        Ok(socket.split())
    }
}

/// The body of a new account: a USD debtor in New York owing `balance`, due 2026-10-01, with
/// a reference no other test uses (`<prefix>-<ULID>`). Tests set the fields they care about.
pub fn account_body(prefix: &str, balance: i64) -> Value {
    json!({
        "reference": format!("{prefix}-{}", ulid::Ulid::new()),
        "debtor_name": "Dana Debtor",
        "debtor_email": "dana@example.com",
        "debtor_phone": "+14155550123",
        "debtor_timezone": "America/New_York",
        "currency": "USD",
        "original_balance": balance,
        "due_date": "2026-10-01",
    })
}

/// Checks `done` every 100 ms until it holds; panics with `what` once `bound` has passed.
pub async fn wait_until<F, Fut>(bound: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    loop {
        if done().await {
            return;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An email no other test uses.
pub fn unique_email() -> String {
    format!(
        "e2e-{}@example.com",
        ulid::Ulid::new().to_string().to_lowercase()
    )
}
