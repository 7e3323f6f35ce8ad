//! The Lambda service: function instances as processes, each served its own Runtime API
//! endpoint (`/2018-06-01/runtime/...`), scaled out on demand up to a cap, reused when warm,
//! killed on timeout, replaced after a crash.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::model::FunctionSpec;

/// How one invocation ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The function's response payload.
    Success(Bytes),
    /// The function reported an error (`/error`): `{"errorType", "errorMessage"}`.
    FunctionError(Value),
    /// The function ran past its `Timeout` and was stopped.
    Timeout,
    /// The process exited mid-invocation.
    Crashed(String),
    /// The instance failed to initialise (exited before its first `/next`, or `/init/error`).
    InitError(String),
    /// The event was larger than Lambda accepts for a synchronous invocation
    /// ([`MAX_REQUEST_PAYLOAD`]): Invoke's `RequestTooLargeException` (HTTP 413); the
    /// function never ran.
    RequestTooLarge(usize),
    /// No concurrency was left for the invocation (see [`Admission::Bounded`]): Invoke's
    /// `TooManyRequestsException` (HTTP 429); the function never ran.
    Throttled,
}

/// Lambda's payload quota for a synchronous invocation's request: "6 MB each for request and
/// response" (<https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>; "For
/// synchronous invocations, the maximum payload size is 6 MB",
/// <https://docs.aws.amazon.com/lambda/latest/dg/API_Invoke.html>). Lambda counts 6 MiB:
/// a larger event is refused with `RequestTooLargeException` ("Request must be smaller than
/// 6291456 bytes for the InvokeFunction operation") and the function does not run.
pub const MAX_REQUEST_PAYLOAD: usize = 6 * 1024 * 1024;

/// The response side of the same quota: Lambda accepts 100 bytes more (6,291,556), and a
/// larger response posted to the Runtime API's `/response` is refused with 413 and turned
/// into the function error `Function.ResponseSizeTooLarge` ("Response payload size exceeded
/// maximum allowed payload size (6291556 bytes).").
pub const MAX_RESPONSE_PAYLOAD: usize = 6 * 1024 * 1024 + 100;

/// How an invocation waits for concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Waits for an instance however long it takes. Event source mappings and schedules use
    /// this: on AWS their pollers back off and retry a throttled invocation instead of
    /// failing the records, which locally is the same as waiting.
    Wait,
    /// A synchronous invocation (the HTTP API): Lambda throttles it (`TooManyRequestsException`,
    /// 429) instead of queueing it. With `ReservedConcurrentExecutions` in the template the
    /// answer is immediate once that many run, as on AWS. Without it the local cap
    /// (`--max-instances`, a stand-in for the account's far larger concurrency) is a limit of
    /// this machine, not of AWS, so a burst above it may wait briefly: at most
    /// [`RuntimeSettings::max_queued`] invocations wait, each at most
    /// [`RuntimeSettings::queue_wait`]; beyond either the invocation is throttled.
    Bounded,
}

impl Outcome {
    /// The outcome as the JSON Lambda's Invoke API would return (an error object for failures).
    pub fn to_json(&self) -> Value {
        match self {
            Outcome::Success(b) => serde_json::from_slice(b)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned())),
            Outcome::FunctionError(v) => v.clone(),
            Outcome::Timeout => {
                json!({"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out"})
            }
            Outcome::Crashed(m) => json!({"errorType": "Runtime.ExitError", "errorMessage": m}),
            Outcome::InitError(m) => json!({"errorType": "Runtime.InitError", "errorMessage": m}),
            Outcome::RequestTooLarge(size) => json!({
                "errorType": "RequestTooLargeException",
                "errorMessage": format!("{size} byte payload is too large for the RequestResponse invocation type (limit {MAX_REQUEST_PAYLOAD} bytes)"),
            }),
            Outcome::Throttled => json!({
                "errorType": "TooManyRequestsException",
                "errorMessage": "Rate Exceeded.",
                "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
            }),
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success(_))
    }
}

/// Process-wide settings of the Lambda stand-in.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Where the function binaries are (`target/debug`).
    pub bin_dir: PathBuf,
    /// Instances per function at most (a function's `ReservedConcurrentExecutions` lowers it).
    pub max_instances: usize,
    /// Synchronous invocations of a function without reserved concurrency that may wait for
    /// an instance beyond `max_instances` running ([`Admission::Bounded`]).
    pub max_queued: usize,
    /// How long such an invocation waits for an instance before it is throttled.
    pub queue_wait: Duration,
    pub region: String,
    /// Extra variables every function gets (`AWS_ENDPOINT_URL_*`, `WEBSOCKET_MANAGEMENT_ENDPOINT`).
    pub extra_env: BTreeMap<String, String>,
    /// Where START/END/REPORT lines and the functions' output go.
    pub logs: LogSink,
    /// Where the functions' EMF records and the Lambda figures (invocations, errors,
    /// throttles, duration, init duration, memory) go.
    pub metrics: Arc<crate::metrics::Registry>,
}

/// Where function logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSink {
    None,
    Stdout,
    Stderr,
    /// Kept in memory, for tests that read the logs back (the e2e suite searches them for
    /// the secrets it used).
    Capture(&'static LogCapture),
}

impl LogSink {
    pub fn line(self, text: &str) {
        match self {
            LogSink::None => {}
            LogSink::Stdout => println!("{text}"),
            LogSink::Stderr => eprintln!("{text}"),
            LogSink::Capture(capture) => capture.push(text),
        }
    }
}

/// Log lines kept in memory (see [`LogSink::Capture`]).
#[derive(Debug, Default)]
pub struct LogCapture(StdMutex<Vec<String>>);

impl LogCapture {
    fn push(&self, line: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.to_owned());
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Two captures are the same sink only if they are the same capture.
impl PartialEq for LogCapture {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for LogCapture {}

/// A queued invocation's state: waiting, taken by an instance, or abandoned by its caller
/// (throttled after waiting too long), so that an abandoned event never runs.
const WAITING: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

struct Job {
    request_id: String,
    payload: Bytes,
    reply: oneshot::Sender<Outcome>,
    state: Arc<AtomicU8>,
}

impl Job {
    /// Claims the job for an instance; false when its caller gave up on it.
    fn take(&self) -> bool {
        self.state
            .compare_exchange(WAITING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Counts an admitted invocation until it ends (whatever way it ends).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Current {
    request_id: String,
    reply: oneshot::Sender<Outcome>,
    started: Instant,
    timer: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct PoolState {
    instances: usize,
    idle: usize,
    queued: usize,
}

/// Counters a test or a benchmark can read.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub started: AtomicUsize,
    pub invocations: AtomicUsize,
    /// Init duration (spawn → first `/next`) of the latest instance, microseconds.
    pub last_init_us: AtomicU64,
    /// Peak RSS of the latest instance at its first report, KB.
    pub last_rss_kb: AtomicU64,
    /// Durations (as REPORT prints them) of the latest invocations, microseconds; the
    /// newest 100,000 are kept.
    pub durations_us: StdMutex<VecDeque<u64>>,
}

/// The instances of one function.
pub struct FunctionPool {
    pub spec: FunctionSpec,
    settings: Arc<RuntimeSettings>,
    sender: mpsc::UnboundedSender<Job>,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
    state: StdMutex<PoolState>,
    pub stats: PoolStats,
    next_instance: AtomicUsize,
    pids: StdMutex<BTreeMap<usize, u32>>,
    /// Invocations admitted and not yet answered (running or waiting for an instance).
    in_flight: AtomicUsize,
}

struct Instance {
    pool: Arc<FunctionPool>,
    number: usize,
    pid: u32,
    spawned: Instant,
    first_next: StdMutex<Option<Duration>>,
    current: StdMutex<Option<Current>>,
    reported_init: StdMutex<bool>,
    init_error: StdMutex<Option<String>>,
    output: Arc<StdMutex<VecDeque<String>>>,
    /// Waiting in `/next` (counted in [`PoolState::idle`]); read and written under the pool's
    /// state lock, so that an instance is counted idle exactly while it is parked.
    parked: std::sync::atomic::AtomicBool,
    /// Cancelled when the process has exited, so that a `/next` of a dead instance never takes
    /// an invocation nobody will run (held until the function's timeout), not even one it
    /// received the moment the process died, before its connection was seen to close.
    gone: tokio_util::sync::CancellationToken,
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Kills a process group (the instance and anything it started).
fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals a process group; it has no memory effects.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

impl FunctionPool {
    pub fn new(spec: FunctionSpec, settings: Arc<RuntimeSettings>) -> Arc<Self> {
        let (sender, receiver) = mpsc::unbounded_channel();
        Arc::new(Self {
            spec,
            settings,
            sender,
            receiver: Arc::new(Mutex::new(receiver)),
            state: StdMutex::new(PoolState::default()),
            stats: PoolStats::default(),
            next_instance: AtomicUsize::new(0),
            pids: StdMutex::new(BTreeMap::new()),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn name(&self) -> &str {
        &self.spec.binary
    }

    /// Invokes the function with `payload` and waits for the outcome, however long an
    /// instance takes to become free ([`Admission::Wait`]).
    pub async fn invoke(self: &Arc<Self>, payload: Bytes) -> Outcome {
        self.invoke_with(payload, Admission::Wait).await
    }

    /// Invokes the function with `payload`, admitted as `admission` says, and counts the
    /// outcome as Lambda does (an invocation, an error, a throttle).
    pub async fn invoke_with(self: &Arc<Self>, payload: Bytes, admission: Admission) -> Outcome {
        let outcome = self.dispatch(payload, admission).await;
        self.settings
            .metrics
            .lambda_outcome(&self.spec.logical_id, &outcome);
        outcome
    }

    async fn dispatch(self: &Arc<Self>, payload: Bytes, admission: Admission) -> Outcome {
        if payload.len() > MAX_REQUEST_PAYLOAD {
            return Outcome::RequestTooLarge(payload.len());
        }
        let cap = self.max_instances();
        let (allowance, wait) = match (admission, self.spec.reserved_concurrency) {
            (Admission::Wait, _) => (usize::MAX, None),
            (Admission::Bounded, Some(_)) => (0, None),
            (Admission::Bounded, None) => {
                (self.settings.max_queued, Some(self.settings.queue_wait))
            }
        };
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap.saturating_add(allowance)).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            return Outcome::Throttled;
        }
        let _in_flight = InFlight(&self.in_flight);
        let request_id = uuid_like();
        let (tx, mut rx) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(WAITING));
        let spawn = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.queued += 1;
            if st.queued > st.idle && st.instances < cap {
                st.instances += 1;
                true
            } else {
                false
            }
        };
        self.stats.invocations.fetch_add(1, Ordering::Relaxed);
        if self
            .sender
            .send(Job {
                request_id,
                payload,
                reply: tx,
                state: state.clone(),
            })
            .is_err()
        {
            return Outcome::InitError("the function's queue is closed".into());
        }
        if spawn {
            self.start_counted_instance().await;
        }
        // An invocation that started an instance waits for that instance's init, however
        // long a loaded machine makes it: Lambda throttles only when concurrency runs out,
        // never because a cold start is slow. Only one queued behind busy instances is bounded.
        let wait = wait.filter(|_| !spawn);
        if let Some(wait) = wait {
            tokio::select! {
                outcome = &mut rx => {
                    return outcome
                        .unwrap_or_else(|_| Outcome::Crashed("the invocation was dropped".into()));
                }
                _ = tokio::time::sleep(wait) => {}
            }
            // Still not taken by an instance: give up on it (it will never run), unless an
            // instance claimed it at this very moment.
            if state
                .compare_exchange(WAITING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                st.queued = st.queued.saturating_sub(1);
                return Outcome::Throttled;
            }
        }
        rx.await
            .unwrap_or_else(|_| Outcome::Crashed("the invocation was dropped".into()))
    }

    /// An instance has ended (or never started): one fewer alive, and no longer idle if it
    /// was parked in `/next`. Answers how many are alive now.
    fn instance_gone(&self, parked: Option<&std::sync::atomic::AtomicBool>) -> usize {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.instances = st.instances.saturating_sub(1);
        if parked.is_some_and(|p| p.swap(false, Ordering::AcqRel)) {
            st.idle = st.idle.saturating_sub(1);
        }
        st.instances
    }

    /// After an instance died (killed, crashed, timed out), starts as many replacements as
    /// the queued invocations need, within the cap, as Lambda runs them on new execution
    /// environments. Without this an invocation queued behind instances that all died would
    /// wait for the next invocation to start one, and forever if none comes.
    ///
    /// Boxed as `Send` by hand: it starts instances whose monitors call it again, a cycle
    /// the compiler cannot prove `Send` through.
    fn replenish(
        self: &Arc<Self>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        let pool = self.clone();
        Box::pin(async move { pool.replenish_now().await })
    }

    async fn replenish_now(self: &Arc<Self>) {
        loop {
            let spawn = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let wanted = st.queued > st.idle && st.instances < self.max_instances();
                if wanted {
                    st.instances += 1;
                }
                wanted
            };
            if !spawn || !self.start_counted_instance().await {
                return;
            }
        }
    }

    /// Starts an instance already counted in [`PoolState::instances`]. If it cannot start,
    /// uncounts it and, with no instance left, fails the queue; answers whether it started.
    async fn start_counted_instance(self: &Arc<Self>) -> bool {
        match self.spawn_instance().await {
            Ok(()) => true,
            Err(err) => {
                self.instance_gone(None);
                let msg = format!("{err:#}");
                eprintln!("[{}] cannot start: {msg}", self.name());
                self.fail_queue_if_no_instances(&msg).await;
                false
            }
        }
    }

    /// With no instance left to take them, queued invocations fail with `msg` (init error).
    async fn fail_queue_if_no_instances(&self, msg: &str) {
        let alive = self.state.lock().map(|s| s.instances).unwrap_or_default();
        if alive > 0 {
            return;
        }
        let mut rx = self.receiver.lock().await;
        while let Ok(job) = rx.try_recv() {
            if !job.take() {
                continue; // abandoned: its caller has its answer and has uncounted it
            }
            {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                st.queued = st.queued.saturating_sub(1);
            }
            let _ = job.reply.send(Outcome::InitError(msg.to_owned()));
        }
    }

    /// Kills every instance (shutdown).
    pub fn kill_all(&self) {
        let pids: Vec<u32> = self
            .pids
            .lock()
            .map(|p| p.values().copied().collect())
            .unwrap_or_default();
        for pid in pids {
            kill_group(pid);
        }
    }

    /// The process ids of the live instances.
    pub fn pids(&self) -> Vec<u32> {
        self.pids
            .lock()
            .map(|p| p.values().copied().collect())
            .unwrap_or_default()
    }

    /// The cap on concurrent instances: `--max-instances`, or the function's
    /// `ReservedConcurrentExecutions` when that is lower.
    pub fn max_instances(&self) -> usize {
        match self.spec.reserved_concurrency {
            Some(reserved) => reserved.min(self.settings.max_instances),
            None => self.settings.max_instances,
        }
    }

    /// Invocations admitted and not yet answered (running or waiting for an instance).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Instances busy now, running an invocation or starting (Lambda's
    /// `ConcurrentExecutions`): those alive but not waiting in `/next`.
    pub fn concurrent_executions(&self) -> usize {
        self.state
            .lock()
            .map(|s| s.instances.saturating_sub(s.idle))
            .unwrap_or_default()
    }

    /// Instances alive now.
    pub fn instances(&self) -> usize {
        self.state.lock().map(|s| s.instances).unwrap_or_default()
    }

    async fn spawn_instance(self: &Arc<Self>) -> Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let number = self.next_instance.fetch_add(1, Ordering::Relaxed);
        let exe = self.settings.bin_dir.join(&self.spec.binary);
        if !exe.exists() {
            anyhow::bail!(
                "binary {} not found (build the functions first: cargo build --bins)",
                exe.display()
            );
        }
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.env_clear();
        for key in ["PATH", "HOME", "TZ", "LANG", "RUST_BACKTRACE"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        let spec = &self.spec;
        // The gateway's own variables win over the template's: the template names AWS
        // endpoints (`WEBSOCKET_MANAGEMENT_ENDPOINT` = `https://{api}.execute-api...`), which
        // locally must be the gateway itself.
        cmd.envs(&spec.environment)
            .envs(&self.settings.extra_env)
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", &spec.logical_id)
            .env(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                spec.memory_mb.to_string(),
            )
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", spec.logical_id),
            )
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!("local/[$LATEST]{number:032x}"),
            )
            .env("AWS_REGION", &self.settings.region)
            .env("AWS_DEFAULT_REGION", &self.settings.region)
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_SESSION_TOKEN", "local")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("LAMBDA_TASK_ROOT", self.settings.bin_dir.as_os_str())
            .env("_HANDLER", "bootstrap")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let spawned = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let pid = child.id().unwrap_or_default();
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut p) = self.pids.lock() {
            p.insert(number, pid);
        }
        let output = Arc::new(StdMutex::new(VecDeque::new()));
        let name = self.name().to_owned();
        let echo = self.settings.logs;
        let metrics = &self.settings.metrics;
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let sink = LineSink::new(&name, &output, echo, metrics);
            readers.push(tokio::spawn(pump(out, sink)));
        }
        if let Some(err) = child.stderr.take() {
            let sink = LineSink::new(&name, &output, echo, metrics);
            readers.push(tokio::spawn(pump(err, sink)));
        }
        let instance = Arc::new(Instance {
            pool: self.clone(),
            number,
            pid,
            spawned,
            first_next: StdMutex::new(None),
            current: StdMutex::new(None),
            reported_init: StdMutex::new(false),
            init_error: StdMutex::new(None),
            output,
            parked: std::sync::atomic::AtomicBool::new(false),
            gone: tokio_util::sync::CancellationToken::new(),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            // `/response` enforces Lambda's own limit; axum's default 2 MB must not.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(instance.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        // Monitor: the process's exit ends the instance.
        tokio::spawn(async move {
            let status = child.wait().await;
            server.abort();
            for r in readers {
                let _ = r.await;
            }
            instance
                .exited(
                    status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|e| e.to_string()),
                )
                .await;
        });
        Ok(())
    }
}

/// Where an instance's output lines go: the console, the tail kept for init errors, and the
/// metrics (CloudWatch Logs extracts EMF records from stdout and stderr alike).
struct LineSink {
    name: String,
    buffer: Arc<StdMutex<VecDeque<String>>>,
    echo: LogSink,
    metrics: Arc<crate::metrics::Registry>,
}

impl LineSink {
    fn new(
        name: &str,
        buffer: &Arc<StdMutex<VecDeque<String>>>,
        echo: LogSink,
        metrics: &Arc<crate::metrics::Registry>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            buffer: buffer.clone(),
            echo,
            metrics: metrics.clone(),
        }
    }
}

async fn pump(stream: impl tokio::io::AsyncRead + Unpin, sink: LineSink) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        sink.echo.line(&format!("[{}] {line}", sink.name));
        sink.metrics.record_log_line(&line);
        if let Ok(mut b) = sink.buffer.lock() {
            if b.len() >= 50 {
                b.pop_front();
            }
            b.push_back(line);
        }
    }
}

impl Instance {
    fn output_tail(&self) -> String {
        self.output
            .lock()
            .map(|b| b.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    async fn exited(self: Arc<Self>, status: String) {
        let pool = &self.pool;
        self.gone.cancel();
        if let Ok(mut p) = pool.pids.lock() {
            p.remove(&self.number);
        }
        let current = self.current.lock().ok().and_then(|mut c| c.take());
        let initialised = self.first_next.lock().map(|f| f.is_some()).unwrap_or(false);
        let init_error = self.init_error.lock().ok().and_then(|mut e| e.take());
        let alive = pool.instance_gone(Some(&self.parked));
        let failed_init = current.is_none() && (!initialised || init_error.is_some());
        if let Some(cur) = current {
            cur.timer.abort();
            let msg = format!(
                "RequestId: {} Error: Runtime exited ({status})",
                cur.request_id
            );
            eprintln!("[{}] {msg}", pool.name());
            let _ = cur.reply.send(Outcome::Crashed(msg));
        } else if !initialised || init_error.is_some() {
            let msg = init_error
                .unwrap_or_else(|| format!("the process exited before its first /next ({status})"));
            eprintln!(
                "[{}] INIT ERROR: {msg}; its output:\n{}",
                pool.name(),
                self.output_tail()
            );
            if alive == 0 {
                pool.fail_queue_if_no_instances(&msg).await;
            }
        }
        // A function that cannot initialise is not started again for its queue (that fails
        // above once no instance is left); any other death leaves work for a replacement.
        if !failed_init {
            pool.replenish().await;
        }
    }

    fn finish(&self, request_id: &str, outcome: Outcome) -> bool {
        let cur = {
            let Ok(mut guard) = self.current.lock() else {
                return false;
            };
            match guard.as_ref() {
                Some(c) if c.request_id == request_id => guard.take(),
                _ => None,
            }
        };
        let Some(cur) = cur else { return false };
        cur.timer.abort();
        let elapsed = cur.started.elapsed();
        let pool = &self.pool;
        if let Ok(mut d) = pool.stats.durations_us.lock() {
            if d.len() >= 100_000 {
                d.pop_front();
            }
            d.push_back(elapsed.as_micros() as u64);
        }
        let rss_kb = peak_rss_kb(self.pid);
        pool.stats.last_rss_kb.store(rss_kb, Ordering::Relaxed);
        // The instance's first REPORT carries its init duration (a cold start).
        let init_ms = {
            let mut reported = self.reported_init.lock().unwrap_or_else(|e| e.into_inner());
            if *reported {
                None
            } else {
                *reported = true;
                self.first_next
                    .lock()
                    .ok()
                    .and_then(|f| *f)
                    .map(|d| d.as_secs_f64() * 1000.0)
            }
        };
        let ms = elapsed.as_secs_f64() * 1000.0;
        let max_memory_mb = rss_kb.div_ceil(1024);
        pool.settings
            .metrics
            .lambda_report(&pool.spec.logical_id, ms, init_ms, max_memory_mb);
        let logs = pool.settings.logs;
        if logs != LogSink::None {
            let init = init_ms
                .map(|ms| format!(" Init Duration: {ms:.2} ms"))
                .unwrap_or_default();
            logs.line(&format!("[{}] END RequestId: {request_id}", pool.name()));
            logs.line(&format!(
                "[{}] REPORT RequestId: {request_id} Duration: {ms:.2} ms Billed Duration: {} ms Memory Size: {} MB Max Memory Used: {max_memory_mb} MB{init}",
                pool.name(),
                ms.ceil().max(1.0) as u64,
                pool.spec.memory_mb,
            ));
        }
        let _ = cur.reply.send(outcome);
        true
    }
}

/// Peak resident set size of a process (VmHWM), KB.
pub fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn uuid_like() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

async fn next(State(inst): State<Arc<Instance>>) -> Response {
    let pool = inst.pool.clone();
    {
        let mut first = inst.first_next.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            let d = inst.spawned.elapsed();
            *first = Some(d);
            pool.stats
                .last_init_us
                .store(d.as_micros() as u64, Ordering::Relaxed);
        }
    }
    {
        let mut st = pool.state.lock().unwrap_or_else(|e| e.into_inner());
        if inst.gone.is_cancelled() {
            return StatusCode::GONE.into_response();
        }
        st.idle += 1;
        inst.parked.store(true, Ordering::Release);
    }
    let job = {
        let mut rx = tokio::select! {
            rx = pool.receiver.lock() => rx,
            () = inst.gone.cancelled() => return StatusCode::GONE.into_response(),
        };
        loop {
            let job = tokio::select! {
                job = rx.recv() => job,
                () = inst.gone.cancelled() => return StatusCode::GONE.into_response(),
            };
            match job {
                Some(job) if inst.gone.is_cancelled() => {
                    // Received as the process died: still unclaimed, so back in the queue
                    // (at its end) for a live instance. Only a live pool can be sending.
                    let _ = pool.sender.send(job);
                    return StatusCode::GONE.into_response();
                }
                Some(job) if !job.take() => continue, // abandoned by its caller
                other => break other,
            }
        }
    };
    {
        let mut st = pool.state.lock().unwrap_or_else(|e| e.into_inner());
        if inst.parked.swap(false, Ordering::AcqRel) {
            st.idle = st.idle.saturating_sub(1);
        }
        if job.is_some() {
            st.queued = st.queued.saturating_sub(1);
        }
    }
    let Some(job) = job else {
        return StatusCode::GONE.into_response();
    };
    let timeout = pool.spec.timeout;
    let deadline = now_ms() + timeout.as_millis();
    let timer = {
        let inst = inst.clone();
        let id = job.request_id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let name = inst.pool.name().to_owned();
            if inst.finish(&id, Outcome::Timeout) {
                eprintln!(
                    "[{name}] RequestId: {id} Task timed out after {:.2} seconds",
                    timeout.as_secs_f64()
                );
                kill_group(inst.pid);
            }
        })
    };
    pool.settings.logs.line(&format!(
        "[{}] START RequestId: {} Version: $LATEST",
        pool.name(),
        job.request_id
    ));
    if let Ok(mut cur) = inst.current.lock() {
        *cur = Some(Current {
            request_id: job.request_id.clone(),
            reply: job.reply,
            started: Instant::now(),
            timer,
        });
    }
    // Died between taking the job and recording it: `exited` found nothing to answer, so
    // answer here, as a crash (whichever of the two takes `current` answers, once).
    if inst.gone.is_cancelled() {
        inst.finish(
            &job.request_id,
            Outcome::Crashed("the instance exited as it took the invocation".into()),
        );
        return StatusCode::GONE.into_response();
    }
    let mut headers = HeaderMap::new();
    let put = |h: &mut HeaderMap, k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    put(
        &mut headers,
        "lambda-runtime-aws-request-id",
        job.request_id.clone(),
    );
    put(
        &mut headers,
        "lambda-runtime-deadline-ms",
        deadline.to_string(),
    );
    put(
        &mut headers,
        "lambda-runtime-invoked-function-arn",
        pool.spec.arn.clone(),
    );
    put(
        &mut headers,
        "lambda-runtime-trace-id",
        format!(
            "Root=1-{:08x}-{};Parent={};Sampled=0",
            now_ms() / 1000,
            &uuid_like().replace('-', "")[..24],
            &uuid_like().replace('-', "")[..16]
        ),
    );
    put(&mut headers, "content-type", "application/json".into());
    (StatusCode::OK, headers, job.payload).into_response()
}

/// `/response`: the invocation's result, up to [`MAX_RESPONSE_PAYLOAD`]. A larger one is
/// refused with 413 and the invocation ends in the function error Lambda reports for it.
async fn response(
    State(inst): State<Arc<Instance>>,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Response {
    let body = match axum::body::to_bytes(body, MAX_RESPONSE_PAYLOAD).await {
        Ok(body) => body,
        Err(_) => {
            let error = json!({
                "errorType": "Function.ResponseSizeTooLarge",
                "errorMessage": format!("Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_PAYLOAD} bytes)."),
            });
            eprintln!(
                "[{}] RequestId: {id} function error: {error}",
                inst.pool.name()
            );
            inst.finish(&id, Outcome::FunctionError(error.clone()));
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                [("content-type", "application/json")],
                error.to_string(),
            )
                .into_response();
        }
    };
    if inst.finish(&id, Outcome::Success(body)) {
        StatusCode::ACCEPTED.into_response()
    } else {
        StatusCode::BAD_REQUEST.into_response()
    }
}

async fn error(
    State(inst): State<Arc<Instance>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut value: Value = serde_json::from_slice(&body).unwrap_or_else(
        |_| json!({"errorType": "Unhandled", "errorMessage": String::from_utf8_lossy(&body)}),
    );
    if value.get("errorType").is_none() {
        if let Some(t) = headers
            .get("lambda-runtime-function-error-type")
            .and_then(|v| v.to_str().ok())
        {
            value["errorType"] = Value::String(t.to_owned());
        }
    }
    eprintln!(
        "[{}] RequestId: {id} function error: {value}",
        inst.pool.name()
    );
    if inst.finish(&id, Outcome::FunctionError(value)) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::BAD_REQUEST
    }
}

async fn init_error(State(inst): State<Arc<Instance>>, body: Bytes) -> StatusCode {
    let msg = String::from_utf8_lossy(&body).into_owned();
    if let Ok(mut e) = inst.init_error.lock() {
        *e = Some(msg);
    }
    // Lambda stops an instance that reported an init error.
    let pid = inst.pid;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        kill_group(pid);
    });
    StatusCode::ACCEPTED
}
