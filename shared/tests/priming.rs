//! `Clients::prime` on DynamoDB Local (run under `infra/stack.sh`): the priming read must be
//! a valid request on every table, or a function would log a warning at every cold start
//! and open no connection. `Tables::has_sort_key` is checked against the tables the local
//! gateway creates from `template.yaml`.

use shared::clients::Clients;
use shared::config::Config;

#[tokio::test]
async fn every_table_answers_the_priming_read() {
    let provisioned = local_gateway::provision_for_test()
        .await
        .expect("provisioning test tables (run under infra/stack.sh)");
    let config = Config::from_lookup(&|name| provisioned.env.get(name).cloned()).unwrap();
    let clients = Clients::new(&shared::clients::sdk_config().await);
    for table in config.tables.all() {
        let primed = clients.try_prime(&config.tables, table).await;
        assert!(
            primed.is_ok(),
            "priming {table} failed: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(primed.unwrap_err())
        );
    }
}
