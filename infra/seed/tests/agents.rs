//! `seed::seed` against DynamoDB Local (run under `infra/stack.sh`): the accounts it writes
//! are assigned only to the agents it is given, which is what `seed --demo --agents` relies
//! on for `make run DEMO=1`'s agents to see their accounts.

use std::collections::HashSet;

use shared::accounts::Account;
use shared::domain::Id;

#[tokio::test]
async fn seeded_accounts_are_assigned_only_to_the_given_agents() {
    let provisioned = local_gateway::provision_for_test().await.unwrap();
    let table = provisioned.env["ACCOUNTS_TABLE"].clone();
    let sdk = shared::clients::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let agents = vec![Id::generate(), Id::generate()];

    let stats = seed::seed(&dynamodb, &table, 60, &agents, 4, |_| {})
        .await
        .unwrap();
    assert_eq!(stats.accounts, 60);

    let mut accounts = Vec::new();
    let mut start = None;
    loop {
        let page = dynamodb
            .scan()
            .table_name(&table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for item in page.items.unwrap_or_default() {
            // The reference items (`pk = REF#...`) carry only the account id.
            if item.contains_key("debtor_name") {
                accounts.push(Account::from_item(item).unwrap());
            }
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    assert_eq!(accounts.len(), 60);
    let assigned: HashSet<Id> = accounts
        .iter()
        .filter_map(|a| a.assigned_agent_id)
        .collect();
    assert!(!assigned.is_empty());
    assert!(
        assigned.iter().all(|agent| agents.contains(agent)),
        "accounts assigned to {assigned:?}, expected only {agents:?}"
    );
}
