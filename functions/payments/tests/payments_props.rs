//! Property: over any sequence of payments (completed or pending), completions, failures,
//! refunds and reversals — valid or not — the account's balance is always
//! `original_balance − Σ completed payments`, never negative, and the account is `paid`
//! exactly when the balance is 0. Against DynamoDB Local through the handlers (run under
//! `infra/stack.sh`); a small number of cases, since each step is real I/O.

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use shared::accounts::AccountStatus;
use support::*;

const ORIGINAL: i64 = 1_000;

#[derive(Debug, Clone)]
enum Op {
    Pay { amount: i64, pending: bool },
    Move { payment: usize, to: &'static str },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1_i64..450, any::<bool>()).prop_map(|(amount, pending)| Op::Pay { amount, pending }),
        3 => (0_usize..8, prop::sample::select(vec!["completed", "failed", "refunded", "reversed"]))
            .prop_map(|(payment, to)| Op::Move { payment, to }),
    ]
}

async fn check(f: &Fixture, account: shared::domain::Id, step: usize) -> Result<(), String> {
    let stored = f.stored(account).await;
    let payments = f.history(account, "limit=100").await;
    let completed: i64 = payments
        .iter()
        .filter(|p| p["status"] == "completed")
        .map(|p| p["amount"].as_i64().unwrap_or(0))
        .sum();
    if stored.balance.0 != ORIGINAL - completed {
        return Err(format!(
            "step {step}: balance {} != {ORIGINAL} - {completed}",
            stored.balance
        ));
    }
    if stored.balance.0 < 0 {
        return Err(format!("step {step}: negative balance {}", stored.balance));
    }
    if (stored.status == AccountStatus::Paid) != (stored.balance.0 == 0) {
        return Err(format!(
            "step {step}: status {} with balance {}",
            stored.status, stored.balance
        ));
    }
    Ok(())
}

async fn run_case(f: &Fixture, ops: Vec<Op>) -> Result<(), String> {
    let account = f.account(ORIGINAL, "USD", None).await.id;
    let mut ids: Vec<String> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        let status = match op {
            Op::Pay { amount, pending } => {
                let body: Value = json!({
                    "amount": amount,
                    "currency": "USD",
                    "method": "card",
                    "status": if pending { "pending" } else { "completed" },
                });
                let answer = f.pay(&f.admin, account, &body, &key()).await;
                if let Some(id) = answer.body["id"].as_str() {
                    ids.push(id.to_owned());
                }
                answer.status
            }
            Op::Move { payment, to } => {
                if ids.is_empty() {
                    continue;
                }
                let id = ids[payment % ids.len()].clone();
                f.set_status(account, &id, to).await.status
            }
        };
        if status.is_server_error() {
            return Err(format!("step {step}: {status}"));
        }
        check(f, account, step).await?;
    }
    Ok(())
}

#[test]
fn balance_is_always_original_minus_completed() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let f = runtime.block_on(fixture());
    let mut runner = TestRunner::new(Config {
        cases: 10,
        failure_persistence: None,
        max_shrink_iters: 20,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(op(), 1..14), |ops| {
            runtime
                .block_on(run_case(&f, ops))
                .map_err(TestCaseError::fail)
        })
        .unwrap();
}
