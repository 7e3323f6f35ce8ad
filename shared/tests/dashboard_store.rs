//! The dashboard aggregates on DynamoDB Local (run under `infra/stack.sh`): every stream
//! record counts exactly once however often and however concurrently it is delivered, and
//! the reconciliation agrees with the aggregates after a realistic mix of writes (and names
//! a counter that was corrupted).
//!
//! The "stream" here is built by hand: each write puts the new image into its table and
//! records the `Change` (old and new image) the stream would carry, with the items shaped
//! by the real models (`Account::to_item`, `Payment::to_item`, `Activity::to_item`).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use shared::accounts::{Account, AccountStatus, DpdBucket};
use shared::activities::{Activity, ActivityType};
use shared::config::{TableName, Tables};
use shared::dashboard::reconcile::reconcile;
use shared::dashboard::{
    AggregateKey, AggregateStore, Change, Item, Period, Scope, Tally, Tracked,
};
use shared::domain::{Id, MinorUnits, Timestamp};
use shared::payments::{Payment, PaymentMethod, PaymentStatus, AGENT_ATTRIBUTE};

struct Fixture {
    dynamodb: Client,
    tables: Tables,
    store: AggregateStore,
}

async fn fixture() -> Fixture {
    let provisioned = local_gateway::provision_for_test()
        .await
        .unwrap_or_else(|err| {
            panic!("provisioning test tables (run under infra/stack.sh): {err:#}")
        });
    let env = provisioned.env;
    let tables = Tables::from_lookup(&|name| env.get(name).cloned()).unwrap();
    let dynamodb = Client::new(&shared::clients::sdk_config().await);
    Fixture {
        store: AggregateStore::new(dynamodb.clone(), tables.aggregates.clone()),
        dynamodb,
        tables,
    }
}

fn account(agent: Option<Id>, balance: i64) -> Account {
    let now = Timestamp::now();
    let due = time::OffsetDateTime::now_utc().date() - time::Duration::days(12);
    let mut account = Account {
        id: Id::generate(),
        reference: format!("STORE-{}", Id::generate()),
        debtor_name: "Sam Debtor".into(),
        debtor_email: "sam@example.com".into(),
        debtor_phone: "+14155550123".into(),
        debtor_timezone: "America/Chicago".into(),
        currency: "USD".parse().unwrap(),
        original_balance: MinorUnits(balance),
        balance: MinorUnits(balance),
        status: AccountStatus::Active,
        assigned_agent_id: agent,
        due_date: due,
        days_past_due: 0,
        dpd_bucket: DpdBucket::Current,
        tags: vec![],
        version: 1,
        created_at: now,
        updated_at: now,
        deleted_at: None,
        applied_bulk_jobs: Default::default(),
    };
    account.refresh_dpd(time::OffsetDateTime::now_utc().date());
    account
}

fn payment(on: &Account, amount: i64, received_at: Timestamp) -> Payment {
    Payment {
        id: Id::generate(),
        account_id: on.id,
        amount: MinorUnits(amount),
        currency: on.currency,
        method: PaymentMethod::Card,
        status: PaymentStatus::Completed,
        reference: None,
        received_at,
        created_by: Id::generate(),
        version: 1,
        created_at: received_at,
        updated_at: received_at,
    }
}

fn activity(on: &Account, actor: Id, kind: ActivityType) -> Activity {
    Activity {
        id: Id::generate(),
        account_id: on.id,
        activity_type: kind,
        note: String::new(),
        promise_amount: None,
        promise_date: None,
        outcome: None,
        actor_id: actor,
        created_at: Timestamp::now(),
    }
}

fn payment_item(payment: &Payment, agent: Option<Id>) -> Item {
    let mut item = payment.to_item().unwrap();
    if let Some(agent) = agent {
        item.insert(AGENT_ATTRIBUTE.into(), AttributeValue::S(agent.to_string()));
    }
    item
}

fn insert(table: Tracked, item: Item) -> Change {
    Change {
        event_id: Id::generate().to_string(),
        table,
        old: None,
        new: Some(item),
    }
}

/// What a set of changes should add up to, computed without DynamoDB.
fn expected(changes: &[Change]) -> Tally {
    let mut total = Tally::default();
    for change in changes {
        total.merge(&change.delta(), 1);
    }
    total
}

/// `count` completed payments spread over `agents` agents and a few days, so grouping has
/// many distinct aggregate items to fit under the 100-item transaction limit.
fn payments(count: usize, agents: usize) -> Vec<Change> {
    let agents: Vec<Id> = (0..agents).map(|_| Id::generate()).collect();
    let on = account(None, 1_000_000);
    (0..count)
        .map(|i| {
            let received = Timestamp::now().plus(time::Duration::days(-((i % 5) as i64 * 9)));
            let agent = agents[i % agents.len()];
            let paid = payment(&on, 100 + i as i64, received);
            insert(Tracked::Payments, payment_item(&paid, Some(agent)))
        })
        .collect()
}

#[tokio::test]
async fn the_same_changes_applied_three_times_count_once() {
    let f = fixture().await;
    let changes = payments(12, 3);
    let first = f.store.apply(&changes).await.unwrap();
    assert_eq!((first.applied, first.duplicates), (12, 0));
    assert!(first.scopes.contains(&Scope::All));
    assert_eq!(first.scopes.len(), 4, "ALL and three agents");
    for _ in 0..2 {
        let again = f.store.apply(&changes).await.unwrap();
        assert_eq!((again.applied, again.duplicates), (0, 12));
    }
    assert_eq!(f.store.scan().await.unwrap(), expected(&changes));
}

#[tokio::test]
async fn a_batch_partly_applied_before_applies_only_the_new_records() {
    let f = fixture().await;
    let changes = payments(20, 2);
    let earlier: Vec<Change> = changes.iter().step_by(3).cloned().collect();
    let before = f.store.apply(&earlier).await.unwrap();
    assert_eq!(before.applied, earlier.len());

    let all = f.store.apply(&changes).await.unwrap();
    assert_eq!(all.applied, changes.len() - earlier.len());
    assert_eq!(all.duplicates, earlier.len());
    assert_eq!(f.store.scan().await.unwrap(), expected(&changes));
}

#[tokio::test]
async fn more_than_a_transaction_of_changes_in_one_call_all_apply() {
    let f = fixture().await;
    // 250 records over 10 agents and 5 days: far beyond 100 transaction items.
    let mut changes = payments(250, 10);
    // Changes that move no counter (a pending payment) write nothing, not even a marker.
    let on = account(None, 500);
    let mut pending = payment(&on, 10, Timestamp::now());
    pending.status = PaymentStatus::Pending;
    changes.push(insert(Tracked::Payments, pending.to_item().unwrap()));

    let applied = f.store.apply(&changes).await.unwrap();
    assert_eq!((applied.applied, applied.duplicates), (250, 0));
    let stored = f.store.scan().await.unwrap();
    assert_eq!(stored, expected(&changes));
    let all_time: i64 = stored
        .items()
        .iter()
        .filter(|(key, _)| matches!(key.period, Period::Day(_)) && key.scope == Scope::All)
        .map(|(_, counters)| counters["payments:card"])
        .sum();
    assert_eq!(all_time, 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_overlapping_batches_count_each_record_once() {
    let f = fixture().await;
    let changes = payments(120, 4);
    let batches = [0..60, 30..90, 60..120, 0..120];
    let delivered: usize = batches.iter().map(|r| r.len()).sum();
    let results = futures::future::join_all(batches.iter().map(|range| {
        let store = f.store.clone();
        let batch = changes[range.clone()].to_vec();
        tokio::spawn(async move { store.apply(&batch).await })
    }))
    .await;
    let (mut applied, mut duplicates) = (0, 0);
    for result in results {
        let result = result.unwrap().unwrap();
        applied += result.applied;
        duplicates += result.duplicates;
    }
    assert_eq!(applied, 120, "each record applied by exactly one delivery");
    assert_eq!(duplicates, delivered - 120);
    assert_eq!(f.store.scan().await.unwrap(), expected(&changes));
}

/// Writes items into the tracked tables and records the stream's view of each write.
struct Writes<'f> {
    f: &'f Fixture,
    changes: Vec<Change>,
}

impl Writes<'_> {
    fn table(&self, table: Tracked) -> &TableName {
        match table {
            Tracked::Accounts => &self.f.tables.accounts,
            Tracked::Payments => &self.f.tables.payments,
            Tracked::Activities => &self.f.tables.activities,
            Tracked::Plans => &self.f.tables.plans,
        }
    }

    async fn put(&mut self, table: Tracked, old: Option<Item>, new: Item) {
        self.f
            .dynamodb
            .put_item()
            .table_name(self.table(table).as_str())
            .set_item(Some(new.clone()))
            .send()
            .await
            .unwrap();
        self.changes.push(Change {
            event_id: Id::generate().to_string(),
            table,
            old,
            new: Some(new),
        });
    }

    async fn account(&mut self, old: Option<&Account>, new: &Account) {
        let old = old.map(|a| a.to_item().unwrap());
        self.put(Tracked::Accounts, old, new.to_item().unwrap())
            .await;
    }
}

#[tokio::test]
async fn reconciliation_agrees_after_a_mix_and_names_a_corrupted_counter() {
    let f = fixture().await;
    let mut w = Writes {
        f: &f,
        changes: Vec::new(),
    };
    let (agent_x, agent_y) = (Id::generate(), Id::generate());

    // Accounts created (with the reference claim, which counts nothing).
    let a1 = account(Some(agent_x), 10_000);
    let a2 = account(Some(agent_x), 4_000);
    let a3 = account(Some(agent_y), 7_500);
    for a in [&a1, &a2, &a3] {
        w.account(None, a).await;
        let claim: Item = HashMap::from([
            (
                "pk".into(),
                AttributeValue::S(format!("REF#{}", a.reference)),
            ),
            ("account_id".into(), AttributeValue::S(a.id.to_string())),
        ]);
        w.put(Tracked::Accounts, None, claim).await;
    }

    // A payment completed on a1 (payment, balance, activity), then refunded.
    let paid = payment(&a1, 2_500, Timestamp::now());
    w.put(Tracked::Payments, None, payment_item(&paid, Some(agent_x)))
        .await;
    let mut a1_paid = a1.clone();
    a1_paid.balance = MinorUnits(7_500);
    a1_paid.version = 2;
    w.account(Some(&a1), &a1_paid).await;
    let logged = activity(&a1, agent_x, ActivityType::Payment);
    w.put(Tracked::Activities, None, logged.to_item().unwrap())
        .await;

    let mut refunded = paid.clone();
    refunded.status = PaymentStatus::Refunded;
    refunded.version = 2;
    w.put(
        Tracked::Payments,
        Some(payment_item(&paid, Some(agent_x))),
        payment_item(&refunded, Some(agent_x)),
    )
    .await;
    let mut a1_refunded = a1_paid.clone();
    a1_refunded.balance = MinorUnits(10_000);
    a1_refunded.version = 3;
    w.account(Some(&a1_paid), &a1_refunded).await;

    // A second payment that stays completed, so some collection survives.
    let kept = payment(&a3, 500, Timestamp::now());
    w.put(Tracked::Payments, None, payment_item(&kept, Some(agent_y)))
        .await;
    let mut a3_paid = a3.clone();
    a3_paid.balance = MinorUnits(7_000);
    a3_paid.version = 2;
    w.account(Some(&a3), &a3_paid).await;

    // a2 soft-deleted; a3 reassigned from y to x (its past payment stays y's).
    let mut a2_deleted = a2.clone();
    a2_deleted.deleted_at = Some(Timestamp::now());
    a2_deleted.version = 2;
    w.account(Some(&a2), &a2_deleted).await;
    let mut a3_moved = a3_paid.clone();
    a3_moved.assigned_agent_id = Some(agent_x);
    a3_moved.version = 3;
    w.account(Some(&a3_paid), &a3_moved).await;
    w.put(
        Tracked::Activities,
        None,
        activity(&a3, agent_x, ActivityType::Call)
            .to_item()
            .unwrap(),
    )
    .await;

    // Delivered in two batches, the second overlapping the first (a retried batch).
    let changes = w.changes;
    let half = changes.len() / 2;
    f.store.apply(&changes[..half + 2]).await.unwrap();
    let second = f.store.apply(&changes[half..]).await.unwrap();
    let overlap = changes[half..half + 2]
        .iter()
        .filter(|c| !c.delta().is_empty())
        .count();
    assert_eq!(second.duplicates, overlap);

    let started = std::time::Instant::now();
    let drift = reconcile(&f.dynamodb, &f.tables, &f.store).await.unwrap();
    assert!(drift.is_empty(), "no drift expected: {drift:#?}");
    eprintln!("reconciled in {:?}", started.elapsed());

    // The aggregates say what the mix means.
    let stored = f.store.scan().await.unwrap();
    let state = |scope| {
        stored
            .items()
            .get(&AggregateKey {
                period: Period::State,
                scope,
            })
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(state(Scope::All)["accounts"], 2, "a2 is deleted");
    assert_eq!(state(Scope::All)["outstanding:USD"], 17_000);
    assert_eq!(state(Scope::Agent(agent_x))["accounts"], 2, "a1 and a3");
    assert_eq!(state(Scope::Agent(agent_y)).get("accounts"), None);
    let today = Period::Day(time::OffsetDateTime::now_utc().date());
    let day = |scope| {
        stored
            .items()
            .get(&AggregateKey {
                period: today,
                scope,
            })
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        day(Scope::All)["collected:USD"],
        500,
        "the refund is netted"
    );
    assert_eq!(
        day(Scope::Agent(agent_y))["collected:USD"],
        500,
        "y keeps the collection it made before the reassignment"
    );
    assert_eq!(day(Scope::Agent(agent_x)).get("collected:USD"), None);

    // Corrupt one counter: the reconciliation names exactly it, with both values.
    f.dynamodb
        .update_item()
        .table_name(f.tables.aggregates.as_str())
        .key("pk", AttributeValue::S(Period::State.key()))
        .key("sk", AttributeValue::S(Scope::Agent(agent_x).key()))
        .update_expression("ADD #c :n")
        .expression_attribute_names("#c", "status:active")
        .expression_attribute_values(":n", AttributeValue::N("3".into()))
        .send()
        .await
        .unwrap();
    let drift = reconcile(&f.dynamodb, &f.tables, &f.store).await.unwrap();
    assert_eq!(drift.len(), 1, "{drift:#?}");
    let d = &drift[0];
    assert_eq!(d.key.period, Period::State);
    assert_eq!(d.key.scope, Scope::Agent(agent_x));
    assert_eq!(d.counter, "status:active");
    assert_eq!((d.expected, d.stored), (2, 5));
    assert!(d.to_string().contains("off by 3"), "{d}");
}

/// Hole 8 (issue 13): a stored total beyond what an `i64` holds (DynamoDB numbers have 38
/// digits) used to vanish on read — neither the dashboard nor the reconciliation saw it.
/// Now the read saturates (and logs) and the reconciliation reports it as impossible.
#[tokio::test]
async fn a_stored_total_beyond_i64_is_reported_not_dropped() {
    let f = fixture().await;
    let agent = Id::generate();
    let huge = "99999999999999999999";
    f.dynamodb
        .update_item()
        .table_name(f.tables.aggregates.as_str())
        .key("pk", AttributeValue::S(Period::State.key()))
        .key("sk", AttributeValue::S(Scope::Agent(agent).key()))
        .update_expression("ADD #c :n")
        .expression_attribute_names("#c", "outstanding:USD")
        .expression_attribute_values(":n", AttributeValue::N(huge.into()))
        .send()
        .await
        .unwrap();
    let key = AggregateKey {
        period: Period::State,
        scope: Scope::Agent(agent),
    };
    let read = f.store.get(&[key]).await.unwrap();
    assert_eq!(
        read.get(&key)
            .and_then(|c| c.get("outstanding:USD"))
            .copied(),
        Some(i64::MAX),
        "saturated, not dropped: {read:?}"
    );
    let drift = reconcile(&f.dynamodb, &f.tables, &f.store).await.unwrap();
    let found = drift
        .iter()
        .find(|d| d.key == key && d.counter == "outstanding:USD")
        .unwrap_or_else(|| panic!("the impossible total is reported: {drift:#?}"));
    assert!(found.to_string().contains(huge), "{found}");
}
