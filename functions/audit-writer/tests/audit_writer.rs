//! The audit writer on DynamoDB Local (run under `infra/stack.sh`): stream records become
//! entries once, however often the batch is delivered, with the actor the writer stamped
//! and no secret; the sample stream event of `events/` is a valid input.

use std::collections::HashMap;

use audit_writer::{handle, App, AuditedTables};
use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_sdk_dynamodb::types::AttributeValue;
use shared::audit::{acting, Actor, AuditQuery, AuditStore, Selector};
use shared::config::{Config, TableName};
use shared::domain::{Id, Timestamp};

struct Fixture {
    app: App,
    dynamodb: aws_sdk_dynamodb::Client,
    audit: TableName,
}

async fn fixture() -> Fixture {
    let provisioned = local_gateway::provision_for_test()
        .await
        .unwrap_or_else(|err| {
            panic!("provisioning test tables (run under infra/stack.sh): {err:#}")
        });
    let env = provisioned.env;
    let config = Config::from_lookup(&|name| env.get(name).cloned()).unwrap();
    let audit = TableName::new(provisioned.tables["AuditTable"].name.clone());
    let dynamodb = aws_sdk_dynamodb::Client::new(&shared::clients::sdk_config().await);
    Fixture {
        app: App {
            tables: AuditedTables::new(&config),
            store: AuditStore::new(dynamodb.clone(), audit.clone(), 7),
        },
        dynamodb,
        audit,
    }
}

fn arn(table: &TableName) -> String {
    format!(
        "arn:aws:dynamodb:ddblocal:000000000000:table/{}/stream/2026-12-01T00:00:00.000",
        table.as_str()
    )
}

fn record(
    table: &TableName,
    event_id: &str,
    name: &str,
    old: Option<HashMap<String, AttributeValue>>,
    new: Option<HashMap<String, AttributeValue>>,
) -> EventRecord {
    let mut record = EventRecord::default();
    record.event_id = event_id.to_owned();
    record.event_name = name.to_owned();
    record.event_source_arn = Some(arn(table));
    record.change.sequence_number = Some(format!("seq-{event_id}"));
    record.change.old_image = old.unwrap_or_default().into();
    record.change.new_image = new.unwrap_or_default().into();
    record
}

/// An account item written by `actor` (the stamp `Account::to_stamped_item` puts on it).
async fn account_item(
    account: &shared::accounts::Account,
    actor: Actor,
) -> HashMap<String, AttributeValue> {
    acting(actor, async { account.to_stamped_item().unwrap() }).await
}

async fn entries(fixture: &Fixture, subject: &str) -> Vec<shared::audit::AuditEntry> {
    let query = AuditQuery {
        selector: Selector::Subject(subject.to_owned()),
        from: None,
        to: None,
    };
    fixture.app.store.page(&query, None, 100).await.unwrap().0
}

#[tokio::test]
async fn a_batch_is_written_once_however_often_it_is_delivered() {
    let fixture = fixture().await;
    let tables = fixture.app.tables.clone();
    let manager = Actor {
        id: Id::generate().to_string(),
        role: "manager".into(),
        request_id: Some("req-1".into()),
        source_ip: Some("203.0.113.7".into()),
        via: None,
    };
    let before = shared::testing::account(10_000, Timestamp::now());
    let mut after = before.clone();
    after.debtor_name = "Dana Renamed".into();
    after.version += 1;
    let old = account_item(&before, Actor::system("import")).await;
    let new = account_item(&after, manager.clone()).await;
    let user_id = Id::generate();
    let user = |hash: &str| -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            (
                "pk".to_owned(),
                AttributeValue::S(format!("USER#{user_id}")),
            ),
            (
                "password_hash".to_owned(),
                AttributeValue::S(hash.to_owned()),
            ),
            ("name".to_owned(), AttributeValue::S("Uma".into())),
        ]);
        Actor::system("test")
            .stamp(Timestamp::now())
            .put_into(&mut item);
        item
    };
    let mut event = Event::default();
    event.records = vec![
        record(
            &tables.accounts,
            &format!("e1-{}", before.id),
            "MODIFY",
            Some(old.clone()),
            Some(new),
        ),
        // A key refresh only: no entry.
        record(
            &tables.accounts,
            &format!("e2-{}", before.id),
            "MODIFY",
            Some(old.clone()),
            Some({
                let mut refreshed = old.clone();
                refreshed.insert("balance_sk".into(), AttributeValue::S("x".into()));
                refreshed
            }),
        ),
        record(
            &tables.users,
            &format!("e3-{user_id}"),
            "MODIFY",
            Some(user("$argon2id$v=19$old-secret-hash")),
            Some(user("$argon2id$v=19$new-secret-hash")),
        ),
    ];
    let first = handle(&fixture.app, event.clone()).await;
    assert!(first.batch_item_failures.is_empty());
    let second = handle(&fixture.app, event).await;
    assert!(second.batch_item_failures.is_empty());

    let trail = entries(&fixture, &format!("account:{}", before.id)).await;
    assert_eq!(trail.len(), 1, "{trail:#?}");
    let entry = &trail[0];
    assert_eq!(entry.action, "update");
    assert_eq!(entry.actor_id, manager.id);
    assert_eq!(entry.actor_role, "manager");
    assert_eq!(entry.request_id.as_deref(), Some("req-1"));
    assert_eq!(entry.source_ip.as_deref(), Some("203.0.113.7"));
    let fields: Vec<&str> = entry.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["debtor_name"]);
    assert_eq!(entry.changes[0].old, "Dana Debtor");
    assert_eq!(entry.changes[0].new, "Dana Renamed");

    let users = entries(&fixture, &format!("user:{user_id}")).await;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].action, "password_change");
    // No secret anywhere in the table.
    let scan = fixture
        .dynamodb
        .scan()
        .table_name(fixture.audit.as_str())
        .send()
        .await
        .unwrap();
    let dump = format!("{:?}", scan.items.unwrap_or_default());
    assert!(
        !dump.contains("secret-hash") && !dump.contains("argon2"),
        "{dump}"
    );
}

#[tokio::test]
async fn the_sample_stream_event_is_a_payment_record_entry() {
    let fixture = fixture().await;
    let raw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/dynamodb-stream-payment.json"
    ))
    .unwrap();
    let mut event: Event = serde_json::from_str(&raw).unwrap();
    let payments = fixture.app.tables.payments.as_str().to_owned();
    for record in &mut event.records {
        record.event_id = format!("{}-{}", record.event_id, Id::generate());
        record.event_source_arn = Some(arn(&TableName::new(payments.clone())));
    }
    let response = handle(&fixture.app, event).await;
    assert!(response.batch_item_failures.is_empty());
    let trail = entries(&fixture, "account:01JD3Q2W60000000000000000A").await;
    let entry = trail
        .iter()
        .find(|e| e.entity == "payment:01JD3Q2W70000000000000000B")
        .unwrap();
    assert_eq!(entry.action, "record");
    // The sample carries no stamp: the change is recorded, attributed to nobody.
    assert_eq!(entry.actor_id, "unattributed");
}
