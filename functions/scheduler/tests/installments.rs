//! The missed-installments job against DynamoDB Local (run under `infra/stack.sh`): a
//! 12-installment monthly plan paid on time, paid late within the grace period, missed,
//! paid late after being missed, and broken; every run repeated to show the second changes
//! nothing.

use scheduler::installments::InstallmentReport;
use scheduler::{App, Report};
use serde_json::json;
use shared::accounts::{Account, AccountStatus};
use shared::activities::{status_change, ActivityStore, ActivityType};
use shared::clients::Clients;
use shared::config::Config;
use shared::domain::{Id, MinorUnits, Timestamp};
use shared::payments::plans::schedule::{self, Split};
use shared::payments::plans::{
    Frequency, InstallmentStatus, Plan, PlanStatus, PlanStore, WriteOutcome,
};
use shared::payments::{
    BalanceChange, Ledger, Payment, PaymentMethod, PaymentStatus, PaymentWrite,
};
use time::macros::date;

struct Env {
    app: App,
    ledger: Ledger,
    plans: PlanStore,
    activities: ActivityStore,
}

async fn env() -> Env {
    let provisioned = local_gateway::provision::provision_for_test()
        .await
        .expect("provisioning test tables (run under infra/stack.sh)");
    let vars = provisioned.env.clone();
    let config = Config::from_lookup(&move |name: &str| vars.get(name).cloned()).unwrap();
    let clients = Clients::from_env().await;
    let t = &config.tables;
    let dynamodb = clients.dynamodb.clone();
    Env {
        app: App::new(&config, &clients),
        ledger: Ledger::new(
            dynamodb.clone(),
            t.accounts.clone(),
            t.payments.clone(),
            t.activities.clone(),
            t.plans.clone(),
        ),
        plans: PlanStore::new(
            dynamodb.clone(),
            t.plans.clone(),
            t.accounts.clone(),
            t.activities.clone(),
        ),
        activities: ActivityStore::new(dynamodb, t.accounts.clone(), t.activities.clone()),
    }
}

fn at(date: time::Date) -> Timestamp {
    Timestamp::from(date.with_hms(1, 0, 0).unwrap().assume_utc())
}

impl Env {
    async fn run(&self, now: Timestamp) -> InstallmentReport {
        match scheduler::handle(&self.app, &json!({"job": "missed_installments"}), now)
            .await
            .unwrap()
        {
            Report::MissedInstallments(report) => report,
            other => panic!("{other:?}"),
        }
    }

    /// An account of `balance` in a 12-installment monthly plan from 2027-01-15.
    async fn in_plan(&self, balance: i64) -> (Account, Plan) {
        let created = at(date!(2027 - 01 - 01));
        let account = shared::testing::account(balance, created);
        self.app.accounts.create(&account).await.unwrap().unwrap();
        let plan = Plan {
            id: Id::generate(),
            account_id: account.id,
            status: PlanStatus::Active,
            frequency: Frequency::Monthly,
            currency: account.currency,
            total_amount: MinorUnits(balance),
            installments: schedule::build(
                Frequency::Monthly,
                date!(2027 - 01 - 15),
                MinorUnits(balance),
                Split::Count(12),
            )
            .unwrap(),
            receipts: Vec::new(),
            created_by: Id::generate(),
            version: 1,
            created_at: created,
            updated_at: created,
            ended_at: None,
        };
        let moved = status_change(
            account.id,
            AccountStatus::Active,
            AccountStatus::PaymentPlan,
            plan.created_by,
            created,
        );
        let outcome = self
            .plans
            .create(&plan, &account, Some(&moved))
            .await
            .unwrap();
        assert_eq!(outcome, WriteOutcome::Done);
        (account, plan)
    }

    async fn pay(&self, account: Id, amount: i64, when: Timestamp) {
        let observed = self.app.accounts.get(account).await.unwrap().unwrap();
        let payment = Payment {
            id: Id::generate(),
            account_id: account,
            amount: MinorUnits(amount),
            currency: observed.currency,
            method: PaymentMethod::Ach,
            status: PaymentStatus::Completed,
            reference: None,
            received_at: when,
            created_by: Id::generate(),
            version: 1,
            created_at: when,
            updated_at: when,
        };
        let activity = payment.activity("recorded (completed)", payment.created_by, when);
        self.ledger
            .apply(
                &PaymentWrite::Record(payment),
                BalanceChange::Debit(MinorUnits(amount)),
                observed,
                &activity,
                when,
            )
            .await
            .unwrap()
            .unwrap();
    }

    async fn statuses(&self, account: Id, plan: Id) -> (PlanStatus, Vec<InstallmentStatus>) {
        let plan = self
            .plans
            .list(account)
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.id == plan)
            .unwrap();
        let view = plan.view();
        (
            view.status,
            view.installments.iter().map(|i| i.status).collect(),
        )
    }

    async fn status_changes(&self, account: Id) -> Vec<(Id, String)> {
        let (items, _) = self
            .activities
            .timeline(account, None, None, 100)
            .await
            .unwrap();
        items
            .into_iter()
            .filter(|a| a.activity_type == ActivityType::StatusChange)
            .map(|a| (a.actor_id, a.note))
            .collect()
    }
}

#[tokio::test]
async fn installments_are_missed_after_the_grace_period_and_the_plan_breaks_once() {
    let e = env().await;
    use InstallmentStatus::{Due, Missed, Paid};
    let (account, plan) = e.in_plan(120_000).await;
    // A paid-up plan in the same run is left alone throughout.
    let (kept_account, kept) = e.in_plan(24_000).await;
    e.pay(kept_account.id, 24_000, at(date!(2027 - 01 - 10)))
        .await;
    assert_eq!(
        e.statuses(kept_account.id, kept.id).await.0,
        PlanStatus::Completed
    );

    // Due on Jan 15, grace 5 days: nothing is missed before Jan 21.
    assert_eq!(
        e.run(at(date!(2027 - 01 - 20))).await,
        InstallmentReport::default()
    );
    // Paid late but within the grace period: paid, never missed.
    e.pay(account.id, 10_000, at(date!(2027 - 01 - 19))).await;
    assert_eq!(
        e.run(at(date!(2027 - 01 - 25))).await,
        InstallmentReport::default()
    );
    assert_eq!(e.statuses(account.id, plan.id).await.1[..2], [Paid, Due]);

    // February's is partly paid and not made up by the 21st: missed (one of two).
    e.pay(account.id, 4_000, at(date!(2027 - 02 - 14))).await;
    let first = e.run(at(date!(2027 - 02 - 21))).await;
    assert_eq!(
        first,
        InstallmentReport {
            examined: 1,
            missed: 1,
            broken: 0,
            reactivated: 0
        }
    );
    assert_eq!(
        e.run(at(date!(2027 - 02 - 21))).await,
        InstallmentReport::default()
    );
    assert_eq!(
        e.statuses(account.id, plan.id).await.1[..3],
        [Paid, Missed, Due]
    );
    // Paid late after it was missed: paid, still counted as missed.
    e.pay(account.id, 6_000, at(date!(2027 - 03 - 01))).await;
    let now = e.statuses(account.id, plan.id).await;
    assert_eq!(now.1[..3], [Paid, Paid, Due]);
    assert_eq!(
        e.app
            .accounts
            .get(account.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        AccountStatus::PaymentPlan
    );

    // March's is missed too: the second miss breaks the plan and the account is active
    // again, with a status_change by the system, once.
    let broke = e.run(at(date!(2027 - 03 - 21))).await;
    assert_eq!(
        broke,
        InstallmentReport {
            examined: 1,
            missed: 1,
            broken: 1,
            reactivated: 1
        }
    );
    assert_eq!(
        e.run(at(date!(2027 - 03 - 21))).await,
        InstallmentReport::default()
    );
    assert_eq!(
        e.run(at(date!(2027 - 06 - 21))).await,
        InstallmentReport::default()
    );
    let (status, installments) = e.statuses(account.id, plan.id).await;
    assert_eq!(status, PlanStatus::Broken);
    assert_eq!(installments[..4], [Paid, Paid, Missed, Due]);
    assert!(e.plans.active(account.id).await.unwrap().is_none());
    let stored = e.app.accounts.get(account.id).await.unwrap().unwrap();
    assert_eq!(stored.status, AccountStatus::Active);
    assert_eq!(stored.balance, MinorUnits(100_000));
    let changes = e.status_changes(account.id).await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0].0, scheduler::system_actor());
    assert!(changes[0].1.contains("broken"), "{changes:?}");
    // A payment after the plan broke changes no plan.
    e.pay(account.id, 1_000, at(date!(2027 - 03 - 22))).await;
    assert_eq!(e.statuses(account.id, plan.id).await.1[3], Due);
    assert_eq!(
        e.statuses(kept_account.id, kept.id).await.0,
        PlanStatus::Completed
    );
}

#[tokio::test]
async fn the_grace_and_the_misses_that_break_are_configuration() {
    let mut e = env().await;
    e.app.plan_rules = scheduler::installments::PlanRules {
        grace_days: 0,
        missed_to_break: 1,
    };
    let (account, plan) = e.in_plan(12_000).await;
    // Grace 0: the day after the due date the installment is missed, and one miss breaks.
    assert_eq!(
        e.run(at(date!(2027 - 01 - 15))).await,
        InstallmentReport::default()
    );
    let report = e.run(at(date!(2027 - 01 - 16))).await;
    assert_eq!((report.missed, report.broken), (1, 1));
    assert_eq!(e.statuses(account.id, plan.id).await.0, PlanStatus::Broken);
}
