//! Provisioning the workspace's template on DynamoDB Local and moto (run under infra/stack.sh).

use local_gateway::provision::{provision, random_prefix, sdk_config, workspace_template_path};
use local_gateway::{provision_for_test, Template};

#[tokio::test]
async fn provision_for_test_creates_everything_and_resolves_the_environment() {
    let p = provision_for_test().await.unwrap();
    assert_eq!(p.env["STAGE"], "local");
    assert_eq!(p.env["USERS_TABLE"], format!("{}UsersTable", p.prefix));
    assert!(
        p.env["BULK_QUEUE_URL"].starts_with("http://"),
        "{:?}",
        p.env
    );
    assert!(
        p.env["BULK_DLQ_URL"].ends_with("BulkDeadLetterQueue"),
        "{:?}",
        p.env
    );

    let sdk = sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let accounts = ddb
        .describe_table()
        .table_name(&p.env["ACCOUNTS_TABLE"])
        .send()
        .await
        .unwrap();
    let table = accounts.table().unwrap();
    let declared = Template::load(workspace_template_path()).unwrap().resources["AccountsTable"]
        .properties["GlobalSecondaryIndexes"]
        .as_array()
        .unwrap()
        .len();
    assert!(declared > 0);
    assert_eq!(table.global_secondary_indexes().len(), declared);
    assert!(table.latest_stream_arn().is_some());
    assert!(p.tables["AccountsTable"].stream_arn.is_some());

    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&p.env["BULK_QUEUE_URL"])
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let redrive = attrs
        .attributes()
        .unwrap()
        .get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
        .unwrap()
        .clone();
    assert!(
        redrive.contains(&p.queues["BulkDeadLetterQueue"].arn),
        "{redrive}"
    );
}

#[tokio::test]
async fn provisioning_twice_is_idempotent() {
    let template = Template::load(workspace_template_path()).unwrap();
    let sdk = sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let prefix = random_prefix();
    let first = provision(&template, &prefix, &ddb, &sqs).await.unwrap();
    let second = provision(&template, &prefix, &ddb, &sqs).await.unwrap();
    assert_eq!(first.env, second.env);
    assert_eq!(
        first.tables["PaymentsTable"].stream_arn,
        second.tables["PaymentsTable"].stream_arn
    );
}
