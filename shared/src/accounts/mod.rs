//! Accounts: the one definition of the Account resource and its item, shared by the
//! accounts function and by payments, activities, bulk updates and the batch jobs.
//!
//! - [`model`]: [`Account`], [`AccountStatus`], [`DpdBucket`], the item mapping.
//! - [`keys`]: table and index keys; the access pattern → index table.
//! - [`dpd`]: days past due, computed fresh on every read.
//! - [`search`]: normalisation of searchable fields and queries.
//! - [`repo`]: [`AccountRepo`]: create (reference claimed in the same transaction), get,
//!   conditional replace (+ activity), soft delete.
//! - [`list`]: Query-only lists: sharded partitions and search indexes merged in sort
//!   order, filters, signed cursors.
//! - [`rules`]: who may change which field of an account, and which changes are logged.
//! - [`check_assignable`]: who accounts may be assigned to (accounts API and bulk jobs).

pub mod aging;
pub mod dpd;
pub mod keys;
pub mod list;
pub mod model;
pub mod repo;
pub mod rules;
pub mod search;

pub use list::{ListRequest, Page, Sort};

/// The live account a caller may read: `404` when it is absent, deleted, or (for an
/// agent) not assigned to the caller, so other agents' account ids reveal nothing.
pub fn readable(
    account: Option<Account>,
    scope: &crate::auth::Scope,
    id: crate::domain::Id,
) -> Result<Account, crate::ApiError> {
    let account = account
        .filter(|account| account.deleted_at.is_none())
        .ok_or_else(|| not_found(id))?;
    match scope {
        crate::auth::Scope::Assigned(agent) if account.assigned_agent_id != Some(*agent) => {
            Err(not_found(id))
        }
        _ => Ok(account),
    }
}

/// The live account a caller may change: `404` when it is absent or deleted, `403` when an
/// agent's scope does not include it (the agent can read that it exists through lists of
/// activities it logged, so the refusal says why).
pub fn writable(
    account: Option<Account>,
    scope: &crate::auth::Scope,
    id: crate::domain::Id,
) -> Result<Account, crate::ApiError> {
    let account = account
        .filter(|account| account.deleted_at.is_none())
        .ok_or_else(|| not_found(id))?;
    match scope {
        crate::auth::Scope::Assigned(agent) if account.assigned_agent_id != Some(*agent) => Err(
            crate::ApiError::forbidden("agents act only on the accounts assigned to them"),
        ),
        _ => Ok(account),
    }
}

/// Whether `agent` is a user that exists, is enabled and has role `agent`: whom accounts
/// may be assigned to.
pub async fn is_assignable(
    users: &crate::auth::users::UserRepo,
    agent: crate::domain::Id,
) -> Result<bool, crate::dynamo::DataError> {
    Ok(users
        .get(agent)
        .await?
        .is_some_and(|user| user.role == crate::auth::Role::Agent && !user.disabled))
}

/// Checks that accounts may be assigned to `agent`: a user that exists, is enabled and has
/// role `agent` (one strongly consistent `GetItem` on Users). A `400` naming `field`
/// otherwise — the same answer for an unknown id, a disabled user and another role, so the
/// check reveals no more than "not an agent". `POST/PATCH /accounts` and `POST
/// /bulk/accounts` all assign through this.
pub async fn check_assignable(
    users: &crate::auth::users::UserRepo,
    agent: crate::domain::Id,
    field: &str,
) -> Result<(), crate::ApiError> {
    if is_assignable(users, agent).await? {
        Ok(())
    } else {
        Err(crate::ApiError::invalid_field(
            field,
            "is not an enabled user with role agent",
        ))
    }
}

/// The 404 for an account that does not exist, is deleted, or is not the caller's to see:
/// the same answer for all three, so ids of other agents' accounts reveal nothing.
pub fn not_found(id: crate::domain::Id) -> crate::ApiError {
    crate::ApiError::not_found(format!("no account {id}"))
}
pub use model::{Account, AccountStatus, DpdBucket};
pub use repo::{AccountRepo, WriteConflict, MAX_CREATE_BATCH};
