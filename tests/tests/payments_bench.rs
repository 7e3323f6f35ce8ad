//! `make bench-payments`: recording a payment through the local gateway against the raw
//! `TransactWriteItems` it issues, measured in the same run on the same DynamoDB Local, and
//! accepted payments per second on one account under 16-way contention.
//!
//! `#[ignore]`d, so `make test` does not run it; it prints figures and never fails on a
//! timer (only on a wrong answer). DynamoDB Local runs transactions one at a time (about
//! 250–300/s on 2 cores) and its JIT warms up over minutes: the warm-up here is short, so
//! treat the absolute numbers as an upper bound and the ratio as the signal.

use std::time::{Duration, Instant};

use e2e::{account_body, Stack, StackOptions};
use futures::future::join_all;
use reqwest::StatusCode;
use shared::config::TableName;
use shared::domain::{Id, MinorUnits, Timestamp};
use shared::idempotency::{Claim, IdempotencyStore, StoredResponse};
use shared::payments::{
    BalanceChange, Ledger, Payment, PaymentMethod, PaymentStatus, PaymentWrite,
};

const WARM_UP: usize = 150;
const SAMPLES: usize = 300;
const CONTENTION_WORKERS: usize = 16;
const CONTENTION_SECONDS: u64 = 10;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

async fn account(s: &Stack, balance: i64) -> String {
    s.create_account(account_body("BENCH", balance)).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn pay(s: &Stack, account: &str) -> StatusCode {
    pay_traced(s, account).await.0
}

/// A payment's status and the request id it was answered with (`apigw-requestid`), which
/// finds its log line.
async fn pay_traced(s: &Stack, account: &str) -> (StatusCode, Option<String>) {
    match s.pay_request(account, 1).send().await {
        Ok(response) => (
            response.status(),
            response
                .headers()
                .get("apigw-requestid")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ),
        Err(_) => (StatusCode::BAD_GATEWAY, None),
    }
}

/// A completed payment of 1 on `account`.
fn payment_on(account: &shared::accounts::Account, now: Timestamp) -> Payment {
    Payment {
        id: Id::generate(),
        account_id: account.id,
        amount: MinorUnits(1),
        currency: account.currency,
        method: PaymentMethod::Card,
        status: PaymentStatus::Completed,
        reference: None,
        received_at: now,
        created_by: Id::generate(),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

/// The transaction one completed payment issues (payment put, conditional balance update,
/// payment activity), sent once by the same ledger code the handler uses.
async fn raw_transaction(ledger: &Ledger, observed: &shared::accounts::Account) -> bool {
    let now = Timestamp::now();
    let payment = payment_on(observed, now);
    let activity = payment.activity("recorded (completed)", payment.created_by, now);
    ledger
        .send_record_once(&payment, observed, &activity, now)
        .await
        .unwrap()
}

/// The DynamoDB calls the handler makes for one payment, made straight by the same shared
/// code with no gateway and no function: the claim beside the account and its plan (one BatchGetItem), then
/// the transaction with the completion in it (the rate limit is off in this stack).
async fn handler_calls(ledger: &Ledger, idempotency: &IdempotencyStore, account: Id) {
    let now = Timestamp::now();
    let record = format!("bench#{}", Id::generate());
    let change = BalanceChange::Debit(MinorUnits(1));
    let candidate = Id::generate().to_string();
    let (claim, observed) = tokio::join!(
        idempotency.claim(&record, "bench", &candidate, now),
        ledger.observe(account, change)
    );
    let (observed, plan) = observed.unwrap();
    let Claim::Acquired { claim_id, .. } = claim.unwrap() else {
        panic!("a fresh key is claimed")
    };
    let observed = observed.unwrap();
    let payment = payment_on(&observed, now);
    let activity = payment.activity("recorded (completed)", payment.created_by, now);
    let stored = StoredResponse {
        status: 201,
        body: serde_json::to_string(&payment).unwrap(),
        headers: vec![],
    };
    let completion = idempotency.completion(&record, &claim_id, &stored).unwrap();
    let written = ledger
        .apply_observed(
            &PaymentWrite::Record(payment),
            change,
            observed,
            plan,
            &activity,
            Some(completion),
            now,
        )
        .await
        .unwrap();
    assert!(written.is_ok(), "{written:?}");
}

/// Each sampled payment's time split by its log line: its DynamoDB calls' latencies added
/// up, and ours (gateway and function) = the client's latency minus them.
fn split_payment_time(s: &Stack, traced: &[(Duration, Option<String>)]) {
    let split = local_gateway::request_log::TimeSplit::of(traced, &s.log_lines());
    assert!(!split.is_empty(), "no sampled payment's log line found");
    let (p50, p99) = (split.quantile(0.5), split.quantile(0.99));
    println!(
        "FIGURE a payment's time in DynamoDB (its calls' latencies added up): p50 {:.2} ms, p99 {:.2} ms; ours (gateway + function, the rest): p50 {:.2} ms, p99 {:.2} ms; {:.1} DynamoDB calls per payment ({} of {} lines found)",
        p50.dynamodb,
        p99.dynamodb,
        p50.ours,
        p99.ours,
        split.calls_per_request,
        split.len(),
        traced.len()
    );
    println!(
        "FIGURE of ours: outside the handler (gateway hops, runtime, log line) p50 {:.2} ms, p99 {:.2} ms; the handler less its DynamoDB calls p50 {:.2} ms, p99 {:.2} ms (calls made at once count in full, so this is a floor)",
        p50.outside_handler, p99.outside_handler, p50.handler, p99.handler
    );
}

#[tokio::test]
#[ignore = "benchmark: make bench-payments"]
async fn bench_payments() {
    let s = Stack::start(StackOptions::unthrottled()).await;
    let env = s.gateway.env().clone();
    let table = |name: &str| TableName::new(env.get(name).cloned().unwrap());
    let sdk = shared::clients::sdk_config().await;
    let dynamodb = shared::clients::Clients::new(&sdk).dynamodb;
    let ledger = Ledger::new(
        dynamodb.clone(),
        table("ACCOUNTS_TABLE"),
        table("PAYMENTS_TABLE"),
        table("ACTIVITIES_TABLE"),
        table("PLANS_TABLE"),
    );
    let idempotency = IdempotencyStore::new(dynamodb.clone(), table("IDEMPOTENCY_TABLE"));
    let repo = shared::accounts::AccountRepo::new(
        dynamodb,
        table("ACCOUNTS_TABLE"),
        table("ACTIVITIES_TABLE"),
    );

    let gateway_account = account(&s, 1_000_000_000_000).await;
    let raw_account = account(&s, 1_000_000_000_000).await;
    let observed = repo
        .get(raw_account.parse().unwrap())
        .await
        .unwrap()
        .unwrap();

    // Warm up both paths (instances, connections, DynamoDB Local's JIT), interleaved.
    for _ in 0..WARM_UP {
        assert_eq!(pay(&s, &gateway_account).await, StatusCode::CREATED);
        assert!(raw_transaction(&ledger, &observed).await);
    }

    // Sequential latencies, interleaved so both see the same engine state.
    let mut through_gateway = Vec::with_capacity(SAMPLES);
    let mut traced = Vec::with_capacity(SAMPLES);
    let mut raw = Vec::with_capacity(SAMPLES);
    let mut unavoidable = Vec::with_capacity(SAMPLES);
    let mut handlers = Vec::with_capacity(SAMPLES);
    let handler_account = account(&s, 1_000_000_000_000).await.parse().unwrap();
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let (status, request_id) = pay_traced(&s, &gateway_account).await;
        assert_eq!(status, StatusCode::CREATED);
        through_gateway.push(started.elapsed());
        traced.push((started.elapsed(), request_id));
        let started = Instant::now();
        assert!(raw_transaction(&ledger, &observed).await);
        raw.push(started.elapsed());
        // What no payment can do without: read the account (scope, currency, balance),
        // then write the transaction.
        let started = Instant::now();
        let read = repo.get(observed.id).await.unwrap().unwrap();
        assert!(raw_transaction(&ledger, &read).await);
        unavoidable.push(started.elapsed());
        let started = Instant::now();
        handler_calls(&ledger, &idempotency, handler_account).await;
        handlers.push(started.elapsed());
    }
    through_gateway.sort();
    raw.sort();
    unavoidable.sort();
    handlers.sort();
    let (g50, g99) = (
        percentile(&through_gateway, 0.5),
        percentile(&through_gateway, 0.99),
    );
    let (r50, r99) = (percentile(&raw, 0.5), percentile(&raw, 0.99));
    println!(
        "FIGURE record a payment through the gateway: p50 {g50:.2} ms, p99 {g99:.2} ms (n={SAMPLES}, sequential, warm)"
    );
    println!(
        "FIGURE raw TransactWriteItems (payment put + conditional balance update + activity put): p50 {r50:.2} ms, p99 {r99:.2} ms"
    );
    let (u50, u99) = (
        percentile(&unavoidable, 0.5),
        percentile(&unavoidable, 0.99),
    );
    println!(
        "FIGURE raw account GetItem then the TransactWriteItems (the calls a payment cannot avoid): p50 {u50:.2} ms, p99 {u99:.2} ms"
    );
    let (h50, h99) = (percentile(&handlers, 0.5), percentile(&handlers, 0.99));
    println!(
        "FIGURE the handler's own DynamoDB calls made raw (claim || account and plan BatchGetItem, then the transaction with the completion): p50 {h50:.2} ms, p99 {h99:.2} ms; gateway/those calls: p50 {:.2}x, p99 {:.2}x; those calls/unavoidable: p50 {:.2}x, p99 {:.2}x",
        g50 / h50,
        g99 / h99,
        h50 / u50,
        h99 / u99
    );
    println!(
        "FIGURE ratio gateway/raw transaction: p50 {:.2}x, p99 {:.2}x; gateway/unavoidable calls: p50 {:.2}x, p99 {:.2}x (the handler: token check (cached), rate limit || idempotency claim || account and plan BatchGetItem, then the transaction with the idempotency completion in it, plus the gateway hop)",
        g50 / r50,
        g99 / r99,
        g50 / u50,
        g99 / u99
    );
    split_payment_time(&s, &traced);

    // 16-way contention on one account.
    let contended = account(&s, 1_000_000_000_000).await;
    let deadline = Instant::now() + Duration::from_secs(CONTENTION_SECONDS);
    let started = Instant::now();
    let workers = (0..CONTENTION_WORKERS).map(|_| {
        let s = &s;
        let contended = &contended;
        async move {
            let (mut accepted, mut conflicts, mut other) = (0_u64, 0_u64, 0_u64);
            while Instant::now() < deadline {
                match pay(s, contended).await {
                    StatusCode::CREATED => accepted += 1,
                    StatusCode::CONFLICT => conflicts += 1,
                    _ => other += 1,
                }
            }
            (accepted, conflicts, other)
        }
    });
    let results = join_all(workers).await;
    let elapsed = started.elapsed().as_secs_f64();
    let accepted: u64 = results.iter().map(|r| r.0).sum();
    let conflicts: u64 = results.iter().map(|r| r.1).sum();
    let other: u64 = results.iter().map(|r| r.2).sum();
    let (_, stored) = s
        .send(
            "GET",
            &format!("/accounts/{contended}"),
            Some(s.admin()),
            None,
        )
        .await;
    let balance = stored["balance"].as_i64().unwrap();
    assert_eq!(
        balance,
        1_000_000_000_000 - accepted as i64,
        "every accepted payment debited once"
    );
    assert_eq!(other, 0, "no 5xx or other answers under contention");
    let instances = s
        .gateway
        .pool("PaymentsFunction")
        .map(|p| p.instances())
        .unwrap_or(0);
    println!(
        "FIGURE contention: {CONTENTION_WORKERS} concurrent clients on one account for {elapsed:.1} s: {:.1} accepted payments/s, {conflicts} × 409 after retries, {instances} function instances; balance exact",
        accepted as f64 / elapsed
    );
}
