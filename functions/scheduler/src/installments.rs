//! Finds missed payment-plan installments and breaks plans that missed too many.
//!
//! An active plan carries the sparse `plans-by-due` keys (`due_pk = PLANDUE#<0..7>`,
//! `due_sk = <due date of its oldest open installment>#<account id>`,
//! `shared::payments::plans`), so the plans with an installment past due by more than the
//! grace period are one Query per shard (`due_sk < <today − grace>`), never a Scan.
//!
//! For each, the plan is read (strongly consistent) and every installment due before
//! `today − grace` that is not paid in full is marked `missed` (once: the flag stays when it
//! is paid late, and counts toward breaking). The plan is **broken** when
//! [`PlanRules::missed_to_break`] installments are missed, or when none is left open while
//! some are unpaid. Then, in one `TransactWriteItems` conditional on the plan's version and
//! the account's, the plan ends as `broken` and an account in `payment_plan` returns to
//! `active` with a `status_change` activity by [`crate::SYSTEM_ACTOR`] noted "(payment plan
//! … broken)". Otherwise the marks are one conditional Put on the plan's version. Either
//! write moves or removes the plan's `due_sk`, so a second run finds nothing and changes
//! nothing; a lost race (a payment in between) re-reads the plan and decides again.
//!
//! Configuration (template parameters → the scheduler's environment):
//! `PLAN_GRACE_DAYS` (default 5) and `PLAN_MISSED_TO_BREAK` (default 2).

use std::collections::BTreeSet;

use futures::future::join_all;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use shared::accounts::AccountStatus;
use shared::activities::status_change;
use shared::config::{optional, ConfigError};
use shared::domain::{Id, Timestamp};
use shared::dynamo::retry::{backoff, CONFLICT_RETRIES};
use shared::dynamo::DataError;
use shared::payments::plans::model::DUE_SHARDS;
use shared::payments::plans::{schedule, PlanStatus, WriteOutcome};

use crate::{system_actor, App, SchedulerError};

/// Plans settled at once.
const PLAN_CONCURRENCY: usize = 8;

/// When an installment is missed and a plan broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanRules {
    /// Days after its due date an installment may still be paid before it is missed.
    pub grace_days: u32,
    /// Missed installments that break a plan.
    pub missed_to_break: u32,
}

impl Default for PlanRules {
    fn default() -> Self {
        Self {
            grace_days: 5,
            missed_to_break: 2,
        }
    }
}

impl PlanRules {
    /// `PLAN_GRACE_DAYS` and `PLAN_MISSED_TO_BREAK`, each defaulting to [`Default`]'s.
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let rules = Self {
            grace_days: optional("PLAN_GRACE_DAYS", defaults.grace_days)?,
            missed_to_break: optional("PLAN_MISSED_TO_BREAK", defaults.missed_to_break)?,
        };
        if rules.missed_to_break == 0 {
            return Err(ConfigError::Invalid {
                name: "PLAN_MISSED_TO_BREAK",
                reason: "must be at least 1".into(),
            });
        }
        Ok(rules)
    }
}

/// What a missed-installments run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InstallmentReport {
    /// Active plans found on the index with an installment past the grace period.
    pub examined: u64,
    /// Installments marked missed.
    pub missed: u64,
    /// Plans broken.
    pub broken: u64,
    /// Accounts returned from `payment_plan` to `active` by a broken plan.
    pub reactivated: u64,
}

impl InstallmentReport {
    fn add(&mut self, other: InstallmentReport) {
        self.examined += other.examined;
        self.missed += other.missed;
        self.broken += other.broken;
        self.reactivated += other.reactivated;
    }
}

/// Marks the installments missed as of `now` and breaks the plans that missed too many.
pub async fn run(app: &App, now: Timestamp) -> Result<InstallmentReport, SchedulerError> {
    let cutoff = now.as_offset_date_time().date()
        - time::Duration::days(i64::from(app.plan_rules.grace_days));
    let shards = join_all((0..DUE_SHARDS).map(|shard| app.plans.due(shard, cutoff))).await;
    let mut accounts = BTreeSet::new();
    for shard in shards {
        accounts.extend(shard?);
    }
    let results: Vec<Result<InstallmentReport, SchedulerError>> = stream::iter(accounts)
        .map(|account| settle(app, account, cutoff, now))
        .buffer_unordered(PLAN_CONCURRENCY)
        .collect()
        .await;
    let mut report = InstallmentReport::default();
    for result in results {
        report.add(result?);
    }
    Ok(report)
}

/// Marks and, when it is broken, ends the account's active plan; re-reads and decides
/// again when a payment or another run changed it in between.
async fn settle(
    app: &App,
    account_id: Id,
    cutoff: time::Date,
    now: Timestamp,
) -> Result<InstallmentReport, SchedulerError> {
    for attempt in 0..=CONFLICT_RETRIES {
        let Some(plan) = app.plans.active(account_id).await? else {
            return Ok(InstallmentReport::default());
        };
        let mut next = plan.clone();
        let missed = u64::from(schedule::mark_missed(&mut next, cutoff));
        let broken = schedule::is_broken(&next, app.plan_rules.missed_to_break);
        if missed == 0 && !broken {
            // Another run (or a payment) got there first: the index entry was stale.
            return Ok(InstallmentReport::default());
        }
        next.version += 1;
        next.updated_at = now;
        if !broken {
            if app.plans.save(&next, plan.version).await? {
                return Ok(InstallmentReport {
                    examined: 1,
                    missed,
                    ..Default::default()
                });
            }
            continue;
        }
        next.status = PlanStatus::Broken;
        next.ended_at = Some(now);
        let account = app
            .accounts
            .get(account_id)
            .await?
            .filter(|a| a.deleted_at.is_none() && a.status == AccountStatus::PaymentPlan);
        let moved = account.as_ref().map(|a| {
            let mut moved = status_change(
                a.id,
                AccountStatus::PaymentPlan,
                AccountStatus::Active,
                system_actor(),
                now,
            );
            moved
                .note
                .push_str(&format!(" (payment plan {} broken)", plan.id));
            moved
        });
        match app
            .plans
            .end(&next, plan.version, account.as_ref(), moved.as_ref())
            .await?
        {
            WriteOutcome::Done => {
                return Ok(InstallmentReport {
                    examined: 1,
                    missed,
                    broken: 1,
                    reactivated: u64::from(account.is_some()),
                })
            }
            WriteOutcome::PlanChanged | WriteOutcome::AccountChanged => {}
            WriteOutcome::Conflict => tokio::time::sleep(backoff(attempt)).await,
        }
    }
    Err(DataError::unavailable(format!(
        "the plan of account {account_id} kept changing while its missed installments were marked; the next run retries"
    ))
    .into())
}
