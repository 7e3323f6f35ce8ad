//! `collectpro-admin seed-demo-users` against DynamoDB Local (run under `infra/stack.sh`,
//! after `cargo build --workspace --bins`): the demo users `make run DEMO=1` signs in as.

use std::process::Output;

use shared::auth::users::UserRepo;
use shared::auth::{PasswordHasher, Role};
use shared::config::TableName;
use shared::domain::Id;

const PASSWORD: &str = "a demo passphrase for tests";

async fn seed_demo_users(prefix: &str) -> Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_collectpro-admin"))
        .args(["seed-demo-users", "--table-prefix", prefix])
        .env("COLLECTPRO_ADMIN_PASSWORD", PASSWORD)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "seed-demo-users failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn agent_ids(output: &Output) -> Vec<Id> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.parse().unwrap())
        .collect()
}

#[tokio::test]
async fn creates_the_demo_users_once_and_prints_the_agents() {
    let provisioned = local_gateway::provision_for_test().await.unwrap();
    let sdk = shared::clients::sdk_config().await;
    let repo = UserRepo::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        TableName::new(provisioned.env["USERS_TABLE"].clone()),
    );

    let first = seed_demo_users(&provisioned.prefix).await;
    let agents = agent_ids(&first);
    assert_eq!(agents.len(), 5);

    let (users, next) = repo.list(100, None).await.unwrap();
    assert!(next.is_none());
    assert_eq!(users.len(), 7);
    let role_of = |email: &str| {
        users
            .iter()
            .find(|u| u.email == email)
            .map(|u| u.role)
            .unwrap_or_else(|| panic!("{email} was not created"))
    };
    assert_eq!(role_of("manager@collectpro.local"), Role::Manager);
    assert_eq!(role_of("viewer@collectpro.local"), Role::Viewer);
    let hasher = PasswordHasher::new().unwrap();
    for (n, id) in agents.iter().enumerate() {
        let email = format!("agent{}@collectpro.local", n + 1);
        let agent = repo.find_by_email(&email).await.unwrap().unwrap();
        assert_eq!(agent.id, *id, "{email} is printed in order");
        assert_eq!(agent.role, Role::Agent);
        assert!(agent.name.starts_with("Agent "), "{}", agent.name);
        assert!(
            hasher.verify(&agent.password_hash, PASSWORD),
            "{email} signs in"
        );
        assert!(!hasher.verify(&agent.password_hash, "another passphrase"));
    }
    // No admin among them: the enabled-admin counter is untouched.
    assert!(users.iter().all(|u| u.role != Role::Admin));

    let second = seed_demo_users(&provisioned.prefix).await;
    assert_eq!(agent_ids(&second), agents);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!stderr.contains("created"), "{stderr}");
    let (again, _) = repo.list(100, None).await.unwrap();
    assert_eq!(again.len(), 7);
}

#[tokio::test]
async fn without_a_password_it_refuses_and_creates_nobody() {
    let provisioned = local_gateway::provision_for_test().await.unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_collectpro-admin"))
        .args(["seed-demo-users", "--table-prefix", &provisioned.prefix])
        .env_remove("COLLECTPRO_ADMIN_PASSWORD")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let sdk = shared::clients::sdk_config().await;
    let repo = UserRepo::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        TableName::new(provisioned.env["USERS_TABLE"].clone()),
    );
    assert!(repo.list(100, None).await.unwrap().0.is_empty());
}
