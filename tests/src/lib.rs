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

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use local_gateway::provision::random_prefix;
use local_gateway::runtime::{LogCapture, LogSink};
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
    /// Print the functions' logs when the stack stops (handy when a test fails). They are
    /// captured either way: see [`Stack::assert_no_secrets_in_logs`].
    pub logs: bool,
    /// DynamoDB endpoint instead of the environment's (a fault test's own DynamoDB Local).
    pub dynamodb_endpoint: Option<String>,
    /// A fault-injecting proxy between the functions and DynamoDB (`docs/faults.md`).
    pub dynamodb_faults: Option<local_gateway::fault_proxy::FaultConfig>,
    /// How long an invocation may wait for a busy function's instance before the gateway
    /// throttles it (the gateway's default unless set).
    pub queue_wait: Option<std::time::Duration>,
}

/// How long an invocation of an [`StackOptions::unthrottled`] stack waits for a busy
/// function's instance before the gateway throttles it.
pub const BURST_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            params: Vec::new(),
            event_sources: false,
            logs: std::env::var_os("E2E_LOGS").is_some(),
            dynamodb_endpoint: None,
            dynamodb_faults: None,
            queue_wait: None,
        }
    }
}

impl StackOptions {
    /// The per-user write limit off (for tests and benches that write a lot), and a burst
    /// above this machine's instance cap (8 per function, a stand-in for AWS's regional
    /// 1,000) waits up to [`BURST_WAIT`] for an instance instead of the gateway's 10 s: on
    /// AWS such a burst runs at once, so a 500 from the local cap would fail a test about
    /// something else (50 concurrent payments on a loaded CI machine did). The rest default.
    pub fn unthrottled() -> Self {
        Self {
            params: vec![("WriteLimitPerUser".into(), "off".into())],
            queue_wait: Some(BURST_WAIT),
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
    logs: LogGuard,
}

/// The stack's captured logs and the secrets its client used; when it goes (with the stack,
/// or after `stack.gateway.shutdown()`), it checks that no log line holds one.
struct LogGuard {
    /// Every line the functions and the gateway logged.
    capture: &'static LogCapture,
    print: bool,
    /// Every secret this client sent or received: passwords, access and refresh tokens.
    secrets: Mutex<BTreeSet<String>>,
}

/// Body members that hold secrets, in requests and answers.
const SECRET_FIELDS: [&str; 5] = [
    "password",
    "current_password",
    "new_password",
    "access_token",
    "refresh_token",
];

/// Shorter values are not worth searching for (a bad-input test's "x" is everywhere).
const SHORTEST_SECRET: usize = 8;

/// Rate limits are off unless a test turns them on: tests create many users from one IP.
const TEST_PARAMS: [(&str, &str); 4] = [
    ("LoginLimitPerIp", "off"),
    ("LoginLimitPerEmail", "off"),
    ("RegisterLimitPerIp", "off"),
    ("RegisterLimitPerEmail", "off"),
];

impl Stack {
    pub async fn start(options: StackOptions) -> Stack {
        // One capture per stack, alive as long as the test process (a few kB per test).
        let logs: &'static LogCapture = Box::leak(Box::default());
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
            logs: LogSink::Capture(logs),
            event_sources: options.event_sources,
            dynamodb_endpoint: options.dynamodb_endpoint.clone(),
            dynamodb_faults: options.dynamodb_faults,
            queue_wait: options
                .queue_wait
                .unwrap_or(GatewayOptions::default().queue_wait),
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
            logs: LogGuard {
                capture: logs,
                print: options.logs,
                secrets: Mutex::new([ADMIN_PASSWORD.to_owned(), PASSWORD.to_owned()].into()),
            },
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
        self.remember_secrets(&body);
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
            self.remember_secret(token);
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            self.remember_secrets(&body);
            request = request.json(&body);
        }
        request
    }

    fn remember_secret(&self, secret: &str) {
        if secret.len() >= SHORTEST_SECRET {
            self.logs
                .secrets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(secret.to_owned());
        }
    }

    /// Remembers the secret members of a request or answer body.
    fn remember_secrets(&self, body: &Value) {
        for field in SECRET_FIELDS {
            if let Some(secret) = body.get(field).and_then(Value::as_str) {
                self.remember_secret(secret);
            }
        }
    }

    /// Every line the functions and the gateway logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.capture.lines()
    }

    /// The JSON lines the functions wrote, each with the function's name (the gateway
    /// prefixes every line with `[name] `); other lines are left out.
    pub fn log_records(&self) -> Vec<(String, Value)> {
        self.logs
            .capture
            .lines()
            .iter()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix('[')?.split_once("] ")?;
                let value: Value = serde_json::from_str(rest).ok()?;
                value.is_object().then(|| (name.to_owned(), value))
            })
            .collect()
    }

    /// Panics if any log line holds a secret this client used (a password, an access or
    /// refresh token), a password hash (`$argon2`) or an `Authorization` header's value.
    /// Every stack checks this when it stops, so the whole e2e suite is the test.
    pub fn assert_no_secrets_in_logs(&self) {
        self.logs.check();
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
        self.remember_secret(token);
        let url = format!("ws://{}/?token={token}", self.gateway.ws_addr());
        let (mut socket, _) = connect_async(url).await?;
        let request = json!({"action": "subscribe", "topics": topics});
        socket
            .send(Message::Text(request.to_string().into()))
            .await?;
        Ok(socket.split())
    }
}

impl LogGuard {
    fn check(&self) {
        let secrets = self
            .secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(line) = line_with_secret(&self.capture.lines(), &secrets) {
            panic!("a log line holds a secret: {line}");
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if self.print {
            for line in self.capture.lines() {
                println!("{line}");
            }
        }
        if !std::thread::panicking() {
            self.check();
        }
    }
}

/// The first of `lines` that holds one of `secrets`, a password hash (`$argon2`) or a bearer
/// token, with the secrets in it replaced (a failure report must not leak them again).
fn line_with_secret(lines: &[String], secrets: &BTreeSet<String>) -> Option<String> {
    lines
        .iter()
        .find(|line| {
            let lower = line.to_ascii_lowercase();
            lower.contains("$argon2")
                || lower.contains("bearer ey")
                || secrets.iter().any(|secret| line.contains(secret.as_str()))
        })
        .map(|line| redact(line, secrets))
}

/// `line` with every secret in it replaced.
fn redact(line: &str, secrets: &BTreeSet<String>) -> String {
    secrets.iter().fold(line.to_owned(), |line, secret| {
        line.replace(secret.as_str(), "<secret>")
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_log_lines_are_found_and_redacted() {
        let secrets: BTreeSet<String> = ["a long and unusual passphrase".to_owned()].into();
        let clean = vec![r#"{"message":"request","status":200}"#.to_owned()];
        assert_eq!(line_with_secret(&clean, &secrets), None);

        let leaked = vec![r#"{"body":"a long and unusual passphrase"}"#.to_owned()];
        assert_eq!(
            line_with_secret(&leaked, &secrets).as_deref(),
            Some(r#"{"body":"<secret>"}"#)
        );
        for line in [
            "hash=$argon2id$v=19$m=19456,t=2,p=1$abc",
            "authorization: Bearer eyJhbGciOiJFZERTQSJ9.x.y",
        ] {
            assert!(
                line_with_secret(&[line.to_owned()], &secrets).is_some(),
                "{line}"
            );
        }
    }
}
