//! `shared::auth::UserStateCache` on DynamoDB Local (run under `infra/stack.sh`): the one
//! rule the REST authenticator and the notifier share. A fresh entry is served only while
//! it agrees with what the caller holds; anything newer or different reads again.

use std::time::Duration;

use shared::auth::users::{NewUser, UserChanges, UserRepo};
use shared::auth::{Role, UserStateCache};
use shared::config::Config;

async fn repo() -> UserRepo {
    let provisioned = local_gateway::provision_for_test()
        .await
        .expect("provisioning test tables (run under infra/stack.sh)");
    let config = Config::from_lookup(&|name| provisioned.env.get(name).cloned()).unwrap();
    let sdk = shared::clients::sdk_config().await;
    UserRepo::new(aws_sdk_dynamodb::Client::new(&sdk), config.tables.users)
}

#[tokio::test]
async fn the_cache_serves_only_agreeing_entries_and_reads_again_otherwise() {
    let users = repo().await;
    // An hour: nothing in this test expires, so every answer is the rule's, not a timer's.
    let cache = UserStateCache::new(users.clone(), Duration::from_secs(3600));
    let user = users
        .create(NewUser {
            email: format!("{}@cache.test", shared::domain::Id::generate()).to_lowercase(),
            name: "Cached".into(),
            role: Role::Agent,
            password_hash: "unused".into(),
        })
        .await
        .unwrap();
    let state = cache
        .current(user.id, 0, Role::Agent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (state.disabled, state.token_version, state.role),
        (false, 0, Role::Agent)
    );
    // A role or version the user does not have: refused.
    assert!(cache
        .current(user.id, 0, Role::Admin)
        .await
        .unwrap()
        .is_none());
    assert!(cache
        .current(user.id, 3, Role::Agent)
        .await
        .unwrap()
        .is_none());

    // The role changes (version 1). A token of the new version is read again, never refused
    // from the stale entry; the old one is refused from then on (the entry now disagrees).
    let changes = UserChanges {
        role: Some(Role::Viewer),
        ..Default::default()
    };
    let changed = users.update(&user, &changes).await.unwrap();
    assert_eq!(changed.token_version, 1);
    let state = cache
        .current(user.id, 1, Role::Viewer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.role, Role::Viewer);
    assert!(cache
        .current(user.id, 0, Role::Agent)
        .await
        .unwrap()
        .is_none());

    // Disabled elsewhere: an agreeing fresh entry is served for up to the cache time (the
    // documented bound), and forgetting it (the instance that made the change) reads again.
    let disable = UserChanges {
        disabled: Some(true),
        ..Default::default()
    };
    users.update(&changed, &disable).await.unwrap();
    assert!(cache
        .current(user.id, 1, Role::Viewer)
        .await
        .unwrap()
        .is_some());
    cache.forget(user.id);
    assert!(cache
        .current(user.id, 1, Role::Viewer)
        .await
        .unwrap()
        .is_none());
    assert!(cache
        .current(user.id, 2, Role::Viewer)
        .await
        .unwrap()
        .is_none());

    // With the cache off every answer is a read.
    let uncached = UserStateCache::new(users.clone(), Duration::ZERO);
    assert!(uncached
        .current(user.id, 2, Role::Viewer)
        .await
        .unwrap()
        .is_none());
    assert!(uncached
        .current(shared::domain::Id::generate(), 0, Role::Viewer)
        .await
        .unwrap()
        .is_none());
}
