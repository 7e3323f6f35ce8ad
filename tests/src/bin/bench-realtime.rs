//! `make bench-realtime`: WebSocket push latency and throughput through the whole local path
//! (POST → Payments stream → stream event source → `notifier` → `@connections` → sockets).
//!
//! `BENCH_SUBSCRIBERS` clients (default 50) follow `payments`; `BENCH_PAYMENTS` payments
//! (default 100) are POSTed by `BENCH_WRITERS` writers at a time (default 4, each on its own
//! account, so they never conflict). Prints p50/p99 from each POST to each subscriber's
//! `payment.recorded`, and the messages per second the notifier delivered. Prints figures;
//! never fails on a timer. Run under `infra/stack.sh` after `cargo build --workspace --bins`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{account_body, Stack, StackOptions};
use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// WebSocket, HTTP and set-up errors alike end the run with their message.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Payment id → arrival times, one per subscriber that got it.
type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Connects, subscribes to `payments`, and records every `payment.recorded` it receives.
async fn subscriber(stack: &Stack, arrivals: Arrivals) -> Result<()> {
    let (sink, mut stream) = stack.subscribe(stack.admin(), &["payments"]).await?;
    let (subscribed, ready) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _sink = sink; // keeps the connection open
        let mut subscribed = Some(subscribed);
        while let Some(Ok(frame)) = stream.next().await {
            let Message::Text(text) = frame else { continue };
            let at = Instant::now();
            let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            match message["type"].as_str() {
                Some("subscribed") => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                }
                Some("payment.recorded") => {
                    if let (Some(id), Ok(mut map)) =
                        (message["data"]["id"].as_str(), arrivals.lock())
                    {
                        map.entry(id.to_owned()).or_default().push(at);
                    }
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), ready).await??;
    Ok(())
}

async fn account(stack: &Stack, balance: i64) -> Result<String> {
    let account = stack
        .try_create_account(account_body("BENCH-RT", balance))
        .await?;
    Ok(account["id"].as_str().unwrap_or_default().to_owned())
}

/// POSTs one payment; answers its id and when the request started.
async fn pay(stack: &Stack, account: &str) -> Result<(String, Instant)> {
    let started = Instant::now();
    let response = stack.pay_request(account, 100).send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match body["id"].as_str() {
        Some(id) if status.is_success() => Ok((id.to_owned(), started)),
        _ => Err(format!("recording a payment: {status} {body}").into()),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// POSTs `count` payments, `writers` at a time on their own accounts.
async fn payments(
    stack: &Stack,
    accounts: &[String],
    count: usize,
) -> Result<Vec<(String, Instant)>> {
    let writers = accounts.len().max(1);
    let per_writer: Vec<usize> = (0..writers)
        .map(|w| count / writers + usize::from(w < count % writers))
        .collect();
    let results = futures::future::join_all(accounts.iter().zip(per_writer).map(
        |(account, n)| async move {
            let mut sent = Vec::with_capacity(n);
            for _ in 0..n {
                sent.push(pay(stack, account).await?);
            }
            Result::Ok(sent)
        },
    ))
    .await;
    let mut all = Vec::with_capacity(count);
    for result in results {
        all.extend(result?);
    }
    Ok(all)
}

/// Waits until every payment reached every subscriber, or `patience` passes with no progress.
async fn settle(arrivals: &Arrivals, expected: usize, patience: Duration) -> usize {
    let mut last = (0, Instant::now());
    loop {
        let delivered: usize = arrivals
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0);
        if delivered >= expected {
            return delivered;
        }
        if delivered != last.0 {
            last = (delivered, Instant::now());
        } else if last.1.elapsed() > patience {
            return delivered;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let subscribers = setting("BENCH_SUBSCRIBERS", 50);
    let count = setting("BENCH_PAYMENTS", 100);
    let writers = setting("BENCH_WRITERS", 4).max(1);
    println!("bench-realtime: starting the stack (event sources on) ...");
    let stack = Stack::start(StackOptions::unthrottled().with_event_sources()).await;
    let arrivals: Arrivals = Arc::default();
    for _ in 0..subscribers {
        subscriber(&stack, arrivals.clone()).await?;
    }
    let mut accounts = Vec::with_capacity(writers);
    for _ in 0..writers {
        accounts.push(account(&stack, 10_000_000).await?);
    }
    println!("bench-realtime: {subscribers} subscribers on `payments`, {writers} writer(s)");

    // Warm-up: starts the payments and notifier instances (cold starts are not the figure).
    let warm = payments(&stack, &accounts, writers * 3).await?;
    settle(&arrivals, warm.len() * subscribers, Duration::from_secs(15)).await;
    if let Ok(mut map) = arrivals.lock() {
        map.clear();
    }

    let started = Instant::now();
    let sent = payments(&stack, &accounts, count).await?;
    let posting = started.elapsed();
    let expected = sent.len() * subscribers;
    let delivered = settle(&arrivals, expected, Duration::from_secs(20)).await;

    let map = arrivals.lock().map(|m| m.clone()).unwrap_or_default();
    let mut latencies: Vec<Duration> = Vec::with_capacity(expected);
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    for (id, posted) in &sent {
        for at in map.get(id).into_iter().flatten() {
            latencies.push(at.saturating_duration_since(*posted));
            first = Some(first.map_or(*at, |f| f.min(*at)));
            last = Some(last.map_or(*at, |l| l.max(*at)));
        }
    }
    latencies.sort();
    let rate = |span: Duration| delivered as f64 / span.as_secs_f64().max(1e-9);
    println!(
        "bench-realtime: {} payments POSTed in {posting:.2?} ({:.1}/s)",
        sent.len(),
        sent.len() as f64 / posting.as_secs_f64().max(1e-9)
    );
    println!("bench-realtime: delivered {delivered}/{expected} messages");
    println!(
        "bench-realtime: POST -> subscriber latency p50 {:.1?}, p99 {:.1?}, max {:.1?} (target 2 s)",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or_default()
    );
    if let (Some(first), Some(last)) = (first, last) {
        println!(
            "bench-realtime: notifier throughput {:.0} messages/s (first POST to last message: {:.2?}; first to last message: {:.0} messages/s)",
            rate(last.duration_since(started)),
            last.duration_since(started),
            rate(last.duration_since(first)),
        );
    }
    stack.gateway.shutdown().await;
    Ok(())
}
