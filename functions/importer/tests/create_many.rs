//! The import's write path on DynamoDB Local (run under `infra/stack.sh`):
//! `AccountRepo::create_many` creates many accounts in one transaction and stays exactly
//! once per account and per reference — a taken reference, a taken id and two rows with
//! one reference are answered per account, and nothing of a refused account is written.

use shared::accounts::keys::reference_pk;
use shared::accounts::{Account, AccountRepo, WriteConflict, MAX_CREATE_BATCH};
use shared::domain::Timestamp;
use shared::rate_limit::RateLimits;

async fn repo() -> AccountRepo {
    let platform = shared::testing::platform(RateLimits::default()).await;
    let tables = &platform.config.tables;
    AccountRepo::new(
        platform.clients.dynamodb.clone(),
        tables.accounts.clone(),
        tables.activities.clone(),
    )
}

fn accounts(n: usize) -> Vec<Account> {
    (0..n)
        .map(|_| shared::testing::account(10_000, Timestamp::now()))
        .collect()
}

/// The id of the account that holds `reference`'s claim, if any.
async fn claim_of(repo: &AccountRepo, reference: &str) -> Option<String> {
    let item = repo
        .client()
        .get_item()
        .table_name(repo.table().as_str())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(reference_pk(reference)),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item?;
    item.get("account_id")?.as_s().ok().cloned()
}

#[tokio::test]
async fn more_than_one_transaction_of_accounts_are_all_created_with_their_claims() {
    let repo = repo().await;
    let accounts = accounts(2 * MAX_CREATE_BATCH + 7);
    let outcomes = repo.create_many(&accounts).await.unwrap();
    assert_eq!(outcomes, vec![Ok(()); accounts.len()]);
    for account in &accounts {
        let stored = repo.get(account.id).await.unwrap().expect("created");
        assert_eq!(stored.reference, account.reference);
        assert_eq!(
            claim_of(&repo, &account.reference).await,
            Some(account.id.to_string())
        );
    }
}

#[tokio::test]
async fn conflicts_are_answered_per_account_and_the_rest_is_created() {
    let repo = repo().await;
    let earlier = accounts(2);
    assert_eq!(repo.create_many(&earlier).await.unwrap(), vec![Ok(()); 2]);

    let mut batch = accounts(8);
    // 1: the reference of an earlier account; 2: the id of an earlier account (new
    // reference); 4 and 6: one reference in two rows (the first one wins).
    batch[1].reference = earlier[0].reference.clone();
    batch[2].id = earlier[1].id;
    batch[6].reference = batch[4].reference.clone();
    let outcomes = repo.create_many(&batch).await.unwrap();
    assert_eq!(
        outcomes,
        vec![
            Ok(()),
            Err(WriteConflict::Reference),
            Err(WriteConflict::Version),
            Ok(()),
            Ok(()),
            Ok(()),
            Err(WriteConflict::Reference),
            Ok(()),
        ]
    );
    // Nothing of a refused account was written: the earlier accounts are untouched, the
    // refused references are not claimed by the refused rows.
    assert_eq!(repo.get(batch[1].id).await.unwrap(), None);
    assert_eq!(repo.get(batch[6].id).await.unwrap(), None);
    let kept = repo.get(earlier[1].id).await.unwrap().expect("still there");
    assert_eq!(kept.reference, earlier[1].reference);
    assert_eq!(claim_of(&repo, &batch[2].reference).await, None);
    assert_eq!(
        claim_of(&repo, &batch[4].reference).await,
        Some(batch[4].id.to_string())
    );
    assert_eq!(
        claim_of(&repo, &earlier[0].reference).await,
        Some(earlier[0].id.to_string())
    );
}

#[tokio::test]
async fn sending_the_same_accounts_again_writes_nothing() {
    let repo = repo().await;
    let accounts = accounts(MAX_CREATE_BATCH);
    repo.create_many(&accounts).await.unwrap();
    let before: Vec<_> = futures::future::join_all(accounts.iter().map(|a| repo.get(a.id))).await;
    let again = repo.create_many(&accounts).await.unwrap();
    assert_eq!(again, vec![Err(WriteConflict::Reference); accounts.len()]);
    let after: Vec<_> = futures::future::join_all(accounts.iter().map(|a| repo.get(a.id))).await;
    assert_eq!(
        before.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        after.into_iter().map(Result::unwrap).collect::<Vec<_>>()
    );
}
