//! Benchmarks the gateway on the workspace's template.yaml (run under infra/stack.sh, after
//! `cargo build --bins`):
//!
//!   infra/stack.sh cargo run -p local-gateway --bin bench-gateway [-- --requests 3000]
//!
//! Prints, from one run:
//! - `GET /health` end to end through the gateway (HTTP client → API Gateway stand-in →
//!   Runtime API → the real `health` process → back), p50/p99 after a warm-up;
//! - the same invocations as the function itself sees them: Lambda's `Duration` (from the
//!   event handed out on `/next` to the `/response` post), p50/p99: the handler plus the
//!   runtime client, without the gateway;
//! - the gateway overhead (difference of the medians);
//! - the cold start (process spawn → first `/next`) and peak RSS (VmHWM) of each function.
//!
//! Figures are printed, never asserted.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result};
use local_gateway::provision::{random_prefix, workspace_template_path};
use local_gateway::runtime::LogSink;
use local_gateway::{Gateway, GatewayOptions};
use serde_json::json;

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

fn options() -> GatewayOptions {
    GatewayOptions {
        template_path: workspace_template_path(),
        http_port: 0,
        ws_port: 0,
        prefix: random_prefix(),
        logs: LogSink::None,
        event_sources: false,
        // The stage throttle is enforced locally (429 past ApiRateLimit, default 2000/s);
        // the concurrent round can exceed that on a fast machine, so the bench runs at
        // the account-level ceiling (10,000/s) and measures the gateway, not the throttle.
        params: [("ApiRateLimit".to_owned(), "10000".to_owned())].into(),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut requests = 3000_usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--requests" {
            requests = args
                .next()
                .context("--requests needs a number")?
                .parse()
                .context("--requests")?;
        }
    }
    if std::env::var_os("AWS_ENDPOINT_URL_DYNAMODB").is_none() {
        anyhow::bail!("run under infra/stack.sh (AWS_ENDPOINT_URL_DYNAMODB is not set)");
    }

    // Cold starts: every function of the template, three fresh gateways (three cold starts).
    let mut cold: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for _ in 0..3 {
        let gw = Gateway::start(options()).await?;
        let functions: Vec<String> = gw.model().functions.keys().cloned().collect();
        for f in functions {
            let route = gw
                .model()
                .http_routes
                .iter()
                .find(|r| r.function == f && !r.path.contains('{'))
                .map(|r| r.path.clone());
            let outcome = match route {
                Some(path) => {
                    let url = format!("http://{}{path}", gw.http_addr());
                    reqwest::get(url)
                        .await
                        .map(|_| ())
                        .map_err(anyhow::Error::from)
                }
                None => {
                    gw.invoke(&f, json!({})).await;
                    Ok(())
                }
            };
            if let Err(err) = outcome {
                eprintln!("{f}: {err:#}");
            }
            if let Some(pool) = gw.pool(&f) {
                let init = pool.stats.last_init_us.load(Ordering::Relaxed);
                let rss = pool.stats.last_rss_kb.load(Ordering::Relaxed);
                cold.entry(f.clone()).or_default().push((init, rss));
            }
        }
        gw.shutdown().await;
    }

    // Warm latency of GET /health.
    let gw = Gateway::start(options()).await?;
    let url = format!("http://{}/health", gw.http_addr());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .build()?;
    for _ in 0..300 {
        let r = client.get(&url).send().await?;
        anyhow::ensure!(
            r.status().is_success(),
            "GET /health answered {}",
            r.status()
        );
        r.bytes().await?;
    }
    let pool = gw
        .pool("HealthFunction")
        .context("no HealthFunction in the template")?;
    if let Ok(mut d) = pool.stats.durations_us.lock() {
        d.clear();
    }
    let mut e2e = Vec::with_capacity(requests);
    let started = Instant::now();
    for _ in 0..requests {
        let t = Instant::now();
        let r = client.get(&url).send().await?;
        r.bytes().await?;
        e2e.push(t.elapsed().as_micros() as u64);
    }
    let wall = started.elapsed();
    let mut inproc: Vec<u64> = pool
        .stats
        .durations_us
        .lock()
        .map(|d| d.iter().copied().collect())
        .unwrap_or_default();
    e2e.sort_unstable();
    inproc.sort_unstable();

    // Concurrency: 8 clients at once.
    let conc_started = Instant::now();
    let per_client = requests / 8;
    let tasks = (0..8).map(|_| {
        let client = client.clone();
        let url = url.clone();
        tokio::spawn(async move {
            for _ in 0..per_client {
                if let Ok(r) = client.get(&url).send().await {
                    let _ = r.bytes().await;
                }
            }
        })
    });
    futures::future::join_all(tasks).await;
    let conc_wall = conc_started.elapsed();
    let instances = pool.stats.started.load(Ordering::Relaxed);
    gw.shutdown().await;

    let (g50, g99) = (percentile(&e2e, 0.50), percentile(&e2e, 0.99));
    let (f50, f99) = (percentile(&inproc, 0.50), percentile(&inproc, 0.99));
    println!(
        "GET /health, {requests} sequential requests after 300 warm-up (debug build of functions):"
    );
    println!("  through the gateway (client-measured)   p50 {g50:.3} ms   p99 {g99:.3} ms   ({:.0} req/s)", requests as f64 / wall.as_secs_f64());
    println!("  the function's own Duration (REPORT)     p50 {f50:.3} ms   p99 {f99:.3} ms   ({} samples)", inproc.len());
    println!(
        "  gateway overhead (difference of medians) {:.3} ms",
        g50 - f50
    );
    println!(
        "  8 concurrent clients: {} requests in {:.2} s ({:.0} req/s) on {} instance(s)",
        per_client * 8,
        conc_wall.as_secs_f64(),
        (per_client * 8) as f64 / conc_wall.as_secs_f64(),
        instances
    );
    println!("  method: the in-process figure is the time between the Runtime API handing the event out on /next and the function posting /response (what Lambda's REPORT calls Duration): the handler plus the lambda_runtime client, without HTTP parsing, routing, event building or response mapping of the gateway.");
    println!();
    println!("Cold starts (process spawn -> first /next), 3 samples each, and peak RSS (VmHWM):");
    for (f, samples) in &cold {
        let mut inits: Vec<u64> = samples.iter().map(|s| s.0).collect();
        inits.sort_unstable();
        let rss = samples.iter().map(|s| s.1).max().unwrap_or(0);
        println!(
            "  {f:<24} init median {:.2} ms (min {:.2}, max {:.2})   peak RSS {:.1} MB",
            percentile(&inits, 0.5),
            percentile(&inits, 0.0),
            percentile(&inits, 1.0),
            rss as f64 / 1024.0
        );
    }
    Ok(())
}
