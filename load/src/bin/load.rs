//! `make load`: the mixed load against a running `make run` stack, stepped, then DynamoDB
//! Local's own ceiling for the same calls, the consistency check, the capacity plan; the
//! figures to `target/load/last-run.json` and `target/load/report.html`.
//!
//! Settings (environment): LOAD_BASE, LOAD_WS (the stack's HTTP and WebSocket URLs),
//! LOAD_STACK_LOG (the file the stack logs to), LOAD_STEPS (requests/s, comma-separated),
//! LOAD_STEP_SECS, LOAD_WARMUP_SECS, LOAD_WARMUP_RATE, LOAD_AGENTS, LOAD_ACCOUNTS_PER_AGENT,
//! LOAD_MANAGERS, LOAD_AGENT_SUBSCRIBERS, LOAD_BULK_ACCOUNTS, LOAD_REPLAY_SECS,
//! LOAD_MAX_IN_FLIGHT, LOAD_OUT; COLLECTPRO_BIN_DIR, DYNAMODB_PORT, SQS_PORT (which processes
//! are whose, for CPU); COLLECTPRO_ADMIN_PASSWORD; the SDK's AWS_ENDPOINT_URL_DYNAMODB.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use load::capacity::{self, TableUnits, Target};
use load::cost::{FunctionUsage, Usage};
use load::driver::{Driver, OPENING_BALANCE};
use load::report::{self, Check, Run, Step};
use load::stacklog::StackFigures;
use load::stats::{self, Samples};
use load::{mix, procstat, replay, subscribers};
use rand::Rng;
use tokio::sync::Semaphore;

const TABLE_PREFIX: &str = "collectpro-local-";

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn text(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The stack's log from byte `from` to its end; answers the text and the new end.
fn read_log(path: &Path, from: u64) -> Result<(String, u64)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let end = from + bytes.len() as u64;
    Ok((String::from_utf8_lossy(&bytes).into_owned(), end))
}

struct Settings {
    log: PathBuf,
    bin_dir: PathBuf,
    ddb_port: u16,
    sqs_port: u16,
    max_in_flight: usize,
}

/// Sends the mix at `rate` requests/s for `seconds`; answers the step's figures.
async fn step(driver: &Arc<Driver>, s: &Settings, rate: f64, seconds: f64) -> Result<Step> {
    let log_start = std::fs::metadata(&s.log)
        .with_context(|| format!("{}", s.log.display()))?
        .len();
    let cpu_start = procstat::sample(&s.bin_dir, s.ddb_port, s.sqs_port);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(s.max_in_flight));
    let shed = AtomicU64::new(0);
    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * seconds).round() as u64;
    for n in 0..total {
        let due = started + period.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            shed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (driver, tx) = (driver.clone(), tx.clone());
        tokio::spawn(async move {
            let roll: u64 = rand::rng().random();
            let answer = driver
                .act(mix::pick((roll % 1000) as u32), roll / 1000)
                .await;
            let _ = tx.send(answer);
            drop(permit);
        });
    }
    drop(tx);
    let mut samples: BTreeMap<String, Samples> = BTreeMap::new();
    while let Some(a) = rx.recv().await {
        samples
            .entry(a.endpoint.to_owned())
            .or_default()
            .add(a.status, a.latency.as_secs_f64() * 1000.0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The functions' last lines and REPORTs of the step.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = procstat::sample(&s.bin_dir, s.ddb_port, s.sqs_port) - cpu_start;
    let (text, _) = read_log(&s.log, log_start)?;
    let mut stack = StackFigures::default();
    stack.add_text(&text, TABLE_PREFIX);
    let (endpoints, all) = stats::summarise(&samples, elapsed);
    Ok(Step {
        target_per_second: rate,
        seconds: elapsed,
        endpoints,
        all,
        shed: shed.into_inner(),
        stack,
        cpu_ours_seconds: cpu.ours,
        cpu_dynamodb_local_seconds: cpu.dynamodb_local,
        cpu_moto_seconds: cpu.moto,
    })
}

fn print_step(step: &Step) {
    let (ours, ddb) = step.cpu_ms_per_request();
    println!(
        "\nstep {:.0}/s: achieved {:.1}/s over {:.0} s, p50 {:.1} p95 {:.1} p99 {:.1} ms, errors {:?}, shed {}, {}; CPU per request: ours {ours:.2} ms, DynamoDB Local {ddb:.2} ms",
        step.target_per_second,
        step.all.per_second,
        step.seconds,
        step.all.latency.p50,
        step.all.latency.p95,
        step.all.latency.p99,
        step.all.errors,
        step.shed,
        if step.sustained() { "held" } else { "NOT held" }
    );
    println!(
        "  {:<42} {:>7} {:>7} {:>7} {:>7}  statuses",
        "endpoint", "req/s", "p50", "p95", "p99"
    );
    for e in &step.endpoints {
        println!(
            "  {:<42} {:>7.1} {:>7.1} {:>7.1} {:>7.1}  {:?}",
            e.endpoint, e.per_second, e.latency.p50, e.latency.p95, e.latency.p99, e.statuses
        );
    }
    println!(
        "  {:<14} {:>6} {:>8} {:>5} {:>7} {:>7}",
        "function", "invoc.", "mean ms", "cold", "max MB", "size MB"
    );
    for (name, f) in &step.stack.functions {
        if f.invocations > 0 {
            println!(
                "  {:<14} {:>6} {:>8.2} {:>5} {:>7} {:>7}",
                name,
                f.invocations,
                f.duration_ms_sum / f.invocations as f64,
                f.cold_starts,
                f.max_memory_mb,
                f.memory_size_mb
            );
        }
    }
}

/// Adds every step's figures up.
fn whole(steps: &[Step]) -> StackFigures {
    let mut all = StackFigures::default();
    for s in steps {
        for (name, f) in &s.stack.functions {
            let a = all.functions.entry(name.clone()).or_default();
            a.invocations += f.invocations;
            a.duration_ms_sum += f.duration_ms_sum;
            a.billed_ms_sum += f.billed_ms_sum;
            a.cold_starts += f.cold_starts;
            a.init_ms_sum += f.init_ms_sum;
            a.max_memory_mb = a.max_memory_mb.max(f.max_memory_mb);
            a.memory_size_mb = a.memory_size_mb.max(f.memory_size_mb);
            a.log_bytes += f.log_bytes;
            a.log_lines += f.log_lines;
        }
        for (route, r) in &s.stack.routes {
            let a = all.routes.entry(route.clone()).or_default();
            a.requests += r.requests;
            a.dynamodb_calls += r.dynamodb_calls;
            a.read_units += r.read_units;
            a.write_units += r.write_units;
            a.duration_ms_sum += r.duration_ms_sum;
        }
        for (key, c) in &s.stack.calls {
            let a = all.calls.entry(key.clone()).or_default();
            a.calls += c.calls;
            a.read_units += c.read_units;
            a.write_units += c.write_units;
            a.latency_ms_sum += c.latency_ms_sum;
        }
    }
    all
}

/// The consistency check: balances, idempotency, the bulk job, the aggregates, WebSocket.
async fn check(
    driver: &Arc<Driver>,
    bulk: Option<(serde_json::Value, usize)>,
    subscribers: &[(subscribers::Shared, Vec<String>)],
    bin_dir: &Path,
) -> (Vec<Check>, usize) {
    let mut checks = Vec::new();
    let sent = driver.created_payments();
    let accounts = driver.accounts();
    // Every account: balance = opening − completed payments; keys answered once.
    let results: Vec<_> = futures::stream::iter(accounts.iter().map(|id| {
        let driver = driver.clone();
        let id = id.clone();
        async move {
            (
                id.clone(),
                driver.account(&id).await,
                driver.payments_of(&id).await,
            )
        }
    }))
    .buffer_unordered(16)
    .collect()
    .await;
    let (mut bad_balance, mut double_keys, mut errors, mut payments_total) = (Vec::new(), 0, 0, 0);
    let mut listed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, account, payments) in results {
        let (Ok(account), Ok(payments)) = (account, payments) else {
            errors += 1;
            continue;
        };
        let completed: i64 = payments
            .iter()
            .filter(|p| p["status"] == "completed")
            .map(|p| p["amount"].as_i64().unwrap_or(0))
            .sum();
        let balance = account["balance"].as_i64().unwrap_or(i64::MIN);
        if balance != OPENING_BALANCE - completed {
            bad_balance.push(format!(
                "{id}: {balance} != {OPENING_BALANCE} - {completed}"
            ));
        }
        let ids: BTreeSet<String> = payments
            .iter()
            .filter_map(|p| p["id"].as_str().map(str::to_owned))
            .collect();
        payments_total += ids.len();
        for p in sent.get(&id).into_iter().flatten() {
            let answered: BTreeSet<&String> = p.ids.iter().collect();
            if answered.len() > 1 || answered.iter().any(|a| !ids.contains(*a)) {
                double_keys += 1;
            }
        }
        let keys = sent.get(&id).map_or(0, Vec::len);
        if ids.len() > keys {
            double_keys += ids.len() - keys;
        }
        listed.insert(id, ids);
    }
    checks.push(Check {
        name: "balances".into(),
        ok: bad_balance.is_empty() && errors == 0,
        detail: format!(
            "{} accounts, {payments_total} payments; {} off, {errors} unreadable{}",
            accounts.len(),
            bad_balance.len(),
            bad_balance
                .first()
                .map(|b| format!(" (first: {b})"))
                .unwrap_or_default()
        ),
    });
    let retried = sent.values().flatten().filter(|p| p.ids.len() > 1).count();
    checks.push(Check {
        name: "idempotency keys".into(),
        ok: double_keys == 0,
        detail: format!(
            "{} keys sent ({retried} answered more than once, each with its first payment); {double_keys} recorded twice or answered with another payment",
            sent.values().map(Vec::len).sum::<usize>()
        ),
    });
    if let Some((job, wanted)) = bulk {
        let n = |k: &str| job[k].as_u64().unwrap_or(0);
        let ok = job["state"] == "completed"
            && n("total") == wanted as u64
            && n("processed") == n("succeeded") + n("failed") + n("cancelled")
            && n("processed") == n("total");
        checks.push(Check {
            name: "bulk job".into(),
            ok,
            detail: format!(
                "state {}, total {} (sent {wanted}), processed {}, succeeded {}, failed {}, cancelled {}",
                job["state"], n("total"), n("processed"), n("succeeded"), n("failed"), n("cancelled")
            ),
        });
    }
    // The aggregates, once the streams have drained.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reconcile = tokio::process::Command::new(bin_dir.join("collectpro-admin"))
        .args(["reconcile", "--table-prefix", TABLE_PREFIX])
        .output()
        .await;
    checks.push(match reconcile {
        Ok(out) => Check {
            name: "make reconcile".into(),
            ok: out.status.success(),
            detail: String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or_default()
                .to_owned(),
        },
        Err(e) => Check {
            name: "make reconcile".into(),
            ok: false,
            detail: e.to_string(),
        },
    });
    let all: BTreeSet<String> = listed.values().flatten().cloned().collect();
    let (mut missed, mut duplicated, mut closed, mut messages) = (0, 0, 0, 0);
    for (received, topics) in subscribers {
        let expected: BTreeSet<String> = if topics.iter().any(|t| t == "payments") {
            all.clone()
        } else {
            topics
                .iter()
                .filter_map(|t| t.strip_prefix("account:"))
                .flat_map(|a| listed.get(a).cloned().unwrap_or_default())
                .collect()
        };
        let r = received.lock().unwrap_or_else(|e| e.into_inner());
        let (m, d) = subscribers::compare(&r, &expected);
        missed += m;
        duplicated += d;
        closed += usize::from(r.closed);
        messages += r.payments.values().map(|n| *n as usize).sum::<usize>();
    }
    checks.push(Check {
        name: "WebSocket".into(),
        ok: missed == 0 && closed == 0,
        detail: format!(
            "{} subscribers, {messages} payment messages; {missed} payments missed, {duplicated} received more than once (de-duplicated by id), {closed} connections closed early",
            subscribers.len()
        ),
    });
    (checks, messages)
}

#[tokio::main]
async fn main() -> Result<()> {
    let base = text("LOAD_BASE", "http://127.0.0.1:3400");
    let ws = text("LOAD_WS", "ws://127.0.0.1:3401");
    let out = PathBuf::from(text("LOAD_OUT", "target/load"));
    let steps: Vec<f64> = text("LOAD_STEPS", "100,200,400,833")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let step_secs: f64 = setting("LOAD_STEP_SECS", 60.0);
    let settings = Settings {
        log: PathBuf::from(text("LOAD_STACK_LOG", "target/load/stack.log")),
        bin_dir: PathBuf::from(text("COLLECTPRO_BIN_DIR", "target/bench-fast"))
            .canonicalize()
            .context("COLLECTPRO_BIN_DIR")?,
        ddb_port: setting("DYNAMODB_PORT", 8400),
        sqs_port: setting("SQS_PORT", 9440),
        max_in_flight: setting("LOAD_MAX_IN_FLIGHT", 1000),
    };
    std::fs::create_dir_all(&out)?;
    let started_at = String::from_utf8_lossy(
        &std::process::Command::new("date")
            .arg("-u")
            .arg("+%Y-%m-%dT%H:%M:%SZ")
            .output()?
            .stdout,
    )
    .trim()
    .to_owned();

    println!("load: setting up users and accounts on {base}");
    let t = Instant::now();
    let driver = Arc::new(
        Driver::set_up(
            &base,
            &text("COLLECTPRO_ADMIN_PASSWORD", "collectpro-local-admin"),
            setting("LOAD_AGENTS", 20),
            setting("LOAD_ACCOUNTS_PER_AGENT", 100),
            setting("LOAD_MANAGERS", 2),
            16,
        )
        .await?,
    );
    println!(
        "load: {} agents, {} accounts, {} managers in {:.0} s",
        driver.agents.len(),
        driver.accounts().len(),
        driver.managers.len(),
        t.elapsed().as_secs_f64()
    );

    // Subscribers: each manager follows `payments`; agents follow five of their accounts.
    let mut subs = Vec::new();
    let mut tasks = Vec::new();
    for m in &driver.managers {
        let token = m.access.lock().map(|t| t.clone()).unwrap_or_default();
        let topics = vec!["payments".to_owned()];
        let (r, task) = subscribers::subscribe(&ws, &token, topics.clone()).await?;
        subs.push((r, topics));
        tasks.push(task);
    }
    for a in driver
        .agents
        .iter()
        .take(setting("LOAD_AGENT_SUBSCRIBERS", 20))
    {
        let token = a.access.lock().map(|t| t.clone()).unwrap_or_default();
        let topics: Vec<String> = a
            .accounts
            .iter()
            .take(5)
            .map(|id| format!("account:{id}"))
            .collect();
        let (r, task) = subscribers::subscribe(&ws, &token, topics.clone()).await?;
        subs.push((r, topics));
        tasks.push(task);
    }
    println!("load: {} WebSocket subscribers connected", subs.len());

    let warmup: f64 = setting("LOAD_WARMUP_SECS", 60.0);
    if warmup > 0.0 {
        println!("load: warm-up {warmup:.0} s");
        step(
            &driver,
            &settings,
            setting("LOAD_WARMUP_RATE", 50.0),
            warmup,
        )
        .await?;
    }
    let bulk_accounts: Vec<String> = driver
        .accounts()
        .into_iter()
        .take(setting("LOAD_BULK_ACCOUNTS", 2000))
        .collect();
    let bulk_step = steps.len() / 2;
    let mut bulk_id = None;
    let mut done = Vec::new();
    let ws_started = Instant::now();
    for (i, rate) in steps.iter().enumerate() {
        if i == bulk_step && !bulk_accounts.is_empty() {
            bulk_id = Some(driver.start_bulk_job(&bulk_accounts).await?);
            println!("load: bulk job of {} accounts started", bulk_accounts.len());
        }
        let s = step(&driver, &settings, *rate, step_secs).await?;
        print_step(&s);
        done.push(s);
    }
    let ws_minutes = ws_started.elapsed().as_secs_f64() / 60.0 * subs.len() as f64;
    let bulk = match &bulk_id {
        Some(id) => Some((
            driver.bulk_job(id, Duration::from_secs(300)).await?,
            bulk_accounts.len(),
        )),
        None => None,
    };
    println!("\nload: consistency check");
    let (checks, ws_messages) = check(&driver, bulk, &subs, &settings.bin_dir).await;
    for c in &checks {
        println!(
            "  {} {}: {}",
            if c.ok { "ok " } else { "BAD" },
            c.name,
            c.detail
        );
    }
    for t in tasks {
        t.abort();
    }

    let figures = whole(&done);
    let api_requests = figures.requests() as f64;
    let calls_per_request = figures.dynamodb_calls() / api_requests.max(1.0);
    println!("\nload: DynamoDB Local alone, the same calls ({calls_per_request:.2} per API request, every function)");
    let mix = replay::mix_of(&figures.calls);
    for c in &mix {
        println!(
            "  {:<20} {:>5.1}%  {} item(s) a call",
            c.operation,
            c.share * 100.0,
            c.items
        );
    }
    let client = aws_sdk_dynamodb::Client::new(
        &aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
    );
    let table = format!(
        "load-replay-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    replay::prepare(&client, &table).await?;
    let replay_secs: f64 = setting("LOAD_REPLAY_SECS", 20.0);
    let mut levels = Vec::new();
    for concurrency in [4, 16, 64] {
        let l = replay::level(&client, &table, &mix, concurrency, replay_secs).await;
        println!(
            "  {concurrency:>3} at a time: {:.0} calls/s, p50 {:.1} p99 {:.1} ms, {} errors",
            l.calls_per_second, l.latency.p50, l.latency.p99, l.errors
        );
        levels.push(l);
    }
    let _ = client.delete_table().table_name(&table).send().await;
    let ddb_calls =
        replay::ceiling(&levels, report::P99_BOUND_MS).map_or(0.0, |l| l.calls_per_second);
    let ddb_requests = ddb_calls / calls_per_request.max(f64::EPSILON);
    let sustained = done
        .iter()
        .filter(|s| s.sustained())
        .map(|s| s.all.per_second)
        .fold(0.0, f64::max);
    let ratio = sustained / ddb_requests.max(f64::EPSILON);
    // Without the latency bound: the most either side served (the API with under 1% errors),
    // which tells where the CPU went when no step holds p99 on a busy machine.
    let peak = done
        .iter()
        .filter(|s| s.error_share() < report::ERROR_BOUND)
        .map(|s| s.all.per_second)
        .fold(0.0, f64::max);
    let ddb_peak_requests = levels
        .iter()
        .map(|l| l.calls_per_second)
        .fold(0.0, f64::max)
        / calls_per_request.max(f64::EPSILON);
    let peak_ratio = peak / ddb_peak_requests.max(f64::EPSILON);

    let usage = Usage {
        api_requests,
        functions: figures
            .functions
            .iter()
            .filter(|(_, f)| f.invocations > 0)
            .map(|(name, f)| FunctionUsage {
                name: name.clone(),
                invocations: f.invocations as f64,
                billed_ms: f.billed_ms_sum,
                duration_ms: f.duration_ms_sum,
                memory_size_mb: f.memory_size_mb as f64,
                max_memory_mb: f.max_memory_mb as f64,
            })
            .collect(),
        read_units: figures.calls.values().map(|c| c.read_units).sum(),
        write_units: figures.calls.values().map(|c| c.write_units).sum(),
        stream_records: figures
            .functions
            .get("notifier")
            .map_or(0.0, |f| f.invocations as f64),
        // The bulk job's queue: a send, a receive and a delete per message the worker handles.
        sqs_requests: figures
            .functions
            .get("bulk-worker")
            .map_or(0.0, |f| f.invocations as f64 * 3.0),
        websocket_messages: ws_messages as f64,
        websocket_connection_minutes: ws_minutes,
        log_bytes: figures.functions.values().map(|f| f.log_bytes as f64).sum(),
    };
    let mut tables = TableUnits::new();
    for (key, c) in &figures.calls {
        // A transaction over several tables: its units shared evenly (the recorder does not
        // split them per table).
        let names: Vec<&str> = key.split(' ').next().unwrap_or(key).split(',').collect();
        for table in &names {
            let e = tables.entry((*table).to_owned()).or_default();
            e.0 += c.read_units / names.len() as f64;
            e.1 += c.write_units / names.len() as f64;
        }
    }
    let payments = figures
        .routes
        .iter()
        .filter(|(r, _)| r.starts_with("POST /accounts/{id}/payments"))
        .map(|(_, r)| r.requests)
        .sum::<u64>() as f64;
    let payments_per_request = payments / api_requests.max(1.0);
    let mpps = ws_messages as f64 / (payments.max(1.0) * subs.len().max(1) as f64);
    let plan = capacity::plan(Target::SEED, &usage, &tables, payments_per_request, mpps);
    let run = Run {
        started_at,
        steps: done,
        sustained_per_second: sustained,
        replay_levels: levels,
        calls_per_request,
        dynamodb_local_calls_per_second: ddb_calls,
        dynamodb_local_requests_per_second: ddb_requests,
        ratio,
        peak_per_second: peak,
        dynamodb_local_peak_requests_per_second: ddb_peak_requests,
        peak_ratio,
        usage,
        tables,
        payments_per_request,
        messages_per_payment_per_subscriber: mpps,
        plan,
        checks,
    };
    println!(
        "\nload: sustained {sustained:.0} API requests/s (p99 < {} ms); DynamoDB Local alone {ddb_calls:.0} calls/s = {ddb_requests:.0} requests/s; ratio {:.0}% (target 70%)",
        report::P99_BOUND_MS,
        ratio * 100.0
    );
    println!(
        "load: without the p99 bound: API {peak:.1} requests/s at most (under 1% errors), DynamoDB Local {ddb_peak_requests:.1} requests/s at most; ratio {:.0}%",
        peak_ratio * 100.0
    );
    println!("\ncapacity plan for 50,000 requests/min and 100,000 connected users:");
    for f in &run.plan.functions {
        println!(
            "  Lambda {:<14} {:>7.1} invocations/s x {:>7.2} ms = {:>6.1} concurrent",
            f.function, f.invocations_per_second, f.mean_duration_ms, f.concurrency
        );
    }
    for t in &run.plan.tables {
        println!(
            "  DynamoDB {:<14} {:>8.0} RCU/s {:>8.0} WCU/s; hottest partition {:>6.0} RCU/s {:>6.0} WCU/s",
            t.table, t.rcu_per_second, t.wcu_per_second, t.hottest_partition_rcu, t.hottest_partition_wcu
        );
    }
    for f in &run.plan.findings {
        println!("  - {f}");
    }
    std::fs::write(
        out.join("last-run.json"),
        serde_json::to_string_pretty(&run)?,
    )?;
    let stamp = run.started_at.replace(':', "");
    std::fs::write(
        out.join(format!("run-{stamp}.json")),
        serde_json::to_string_pretty(&run)?,
    )?;
    std::fs::write(out.join("report.html"), report::html(&run))?;
    println!(
        "\nload: figures in {0}/last-run.json, report in {0}/report.html",
        out.display()
    );
    if run.checks.iter().any(|c| !c.ok) {
        eprintln!("load: the consistency check failed (above)");
        std::process::exit(1);
    }
    Ok(())
}
