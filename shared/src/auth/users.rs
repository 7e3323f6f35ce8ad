//! The Users table: user items (`pk = USER#<id>`), email-uniqueness items
//! (`pk = EMAIL#<lowercased email>`), and the enabled-admin counter (`pk = META#ADMINS`).
//!
//! - Email uniqueness is DynamoDB's: the user item and its email item are one
//!   `TransactWriteItems`, each `attribute_not_exists(pk)`. Two registrations of one email
//!   (in any case) race on the same email item; exactly one wins.
//! - The admin list is one `Query` on the sparse GSI `users-by-created` (only user items
//!   carry `list_pk`), newest first.
//! - The last enabled admin cannot be demoted or disabled: every change that adds or
//!   removes an enabled admin updates the counter in the same transaction as the user, and
//!   a removal is conditional on `admins > 1`.
//! - Every change to a user is conditional on its `version`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rbac::Role;
use crate::audit::{Stamp, Stamped};
use crate::config::TableName;
use crate::domain::{Id, Timestamp};
use crate::dynamo::attributes::{n, s};
use crate::dynamo::retry::{backoff, cancellation_codes};
use crate::dynamo::DataError;
use crate::error::ApiError;

/// The partition of the sparse list index.
pub const LIST_PK: &str = "USERS";
/// The counter of enabled admins.
pub const ADMINS_PK: &str = "META#ADMINS";
/// The GSI serving the admin list.
pub const LIST_INDEX: &str = "users-by-created";

pub fn user_pk(id: Id) -> String {
    format!("USER#{id}")
}

pub fn email_pk(email: &str) -> String {
    format!("EMAIL#{}", email.trim().to_lowercase())
}

/// A user as stored. Holds the password hash: never serialise it into a response (use
/// [`User`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserItem {
    pub pk: String,
    pub id: Id,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<Timestamp>,
    #[serde(default)]
    pub failed_logins: u32,
    #[serde(default)]
    pub disabled: bool,
    /// Bumped when the user is disabled or their role or password changes, or all their
    /// sessions are revoked: retires access and refresh tokens.
    #[serde(default)]
    pub token_version: u64,
    pub version: u64,
    pub list_pk: String,
    pub list_sk: String,
}

impl UserItem {
    /// Locked now (the lock's end is in the future)?
    pub fn locked_at(&self, now: Timestamp) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }

    fn enabled_admin(&self) -> bool {
        self.role == Role::Admin && !self.disabled
    }
}

/// The user resource of the API. Never carries the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: Id,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When a lockout after repeated failed logins ends; `null` when not locked.
    pub locked_until: Option<Timestamp>,
    pub disabled: bool,
}

impl From<&UserItem> for User {
    fn from(item: &UserItem) -> Self {
        let now = Timestamp::now();
        Self {
            id: item.id,
            email: item.email.clone(),
            name: item.name.clone(),
            role: item.role,
            created_at: item.created_at,
            updated_at: item.updated_at,
            locked_until: item.locked_until.filter(|until| *until > now),
            disabled: item.disabled,
        }
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
}

/// An admin's change to a user (`PATCH /users/{id}`); `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// Clears a lockout and the failed-login count.
    pub unlock: bool,
}

/// What the authenticator (and the notifier, for WebSocket subscribers) needs to know about
/// a token's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthState {
    pub disabled: bool,
    pub token_version: u64,
    /// The current role (an unreadable one counts as `pending`: allowed nothing).
    pub role: Role,
}

/// Users on DynamoDB.
#[derive(Debug, Clone)]
pub struct UserRepo {
    dynamodb: Client,
    table: TableName,
}

/// Retries a transaction cancelled only because another one held its items
/// (`TransactionConflict`): then its conditions give the real answer.
const CONFLICT_RETRIES: u32 = 4;

impl UserRepo {
    pub fn new(dynamodb: Client, table: TableName) -> Self {
        Self { dynamodb, table }
    }

    /// Creates a user and claims its email, in one transaction. `409` when the email is
    /// taken (in any case).
    pub async fn create(&self, new: NewUser) -> Result<UserItem, ApiError> {
        let now = Timestamp::now();
        let id = Id::generate();
        let item = UserItem {
            pk: user_pk(id),
            id,
            email: new.email.trim().to_owned(),
            name: new.name,
            role: new.role,
            password_hash: new.password_hash,
            created_at: now,
            updated_at: now,
            locked_until: None,
            failed_logins: 0,
            disabled: false,
            token_version: 0,
            version: 1,
            list_pk: LIST_PK.to_owned(),
            list_sk: id.to_string(),
        };
        let mut user_attrs: HashMap<String, AttributeValue> = serde_dynamo::to_item(&item)?;
        crate::audit::stamp().put_into(&mut user_attrs);
        let email_item = HashMap::from([
            ("pk".to_owned(), s(email_pk(&item.email))),
            ("user_id".to_owned(), s(id.to_string())),
        ]);
        let mut writes = vec![
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(self.table.as_str())
                        .set_item(Some(email_item))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .map_err(ApiError::internal)?,
                )
                .build(),
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(self.table.as_str())
                        .set_item(Some(user_attrs))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .map_err(ApiError::internal)?,
                )
                .build(),
        ];
        if item.enabled_admin() {
            writes.push(self.admin_count_change(1)?);
        }
        for attempt in 0..=CONFLICT_RETRIES {
            let result = self
                .dynamodb
                .transact_write_items()
                .set_transact_items(Some(writes.clone()))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(item),
                Err(err) => match cancellation_codes(&err) {
                    Some(codes) if codes.first().is_some_and(|c| c == "ConditionalCheckFailed") => {
                        return Err(ApiError::conflict(
                            "a user with this email address already exists",
                        ))
                    }
                    Some(codes)
                        if codes.iter().any(|c| c == "TransactionConflict")
                            && attempt < CONFLICT_RETRIES =>
                    {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    Some(codes) if codes.iter().any(|c| c == "TransactionConflict") => {
                        let mut err = ApiError::conflict(
                            "a user with this email address is being created; retry",
                        );
                        err.retry_after = Some(1);
                        return Err(err);
                    }
                    _ => return Err(err.into()),
                },
            }
        }
        Err(ApiError::unavailable("the users table is busy; retry"))
    }

    /// One user by id (strongly consistent).
    pub async fn get(&self, id: Id) -> Result<Option<UserItem>, DataError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(self.table.as_str())
            .key("pk", s(user_pk(id)))
            .consistent_read(true)
            .send()
            .await?;
        match output.item {
            Some(item) => Ok(Some(serde_dynamo::from_item(item)?)),
            None => Ok(None),
        }
    }

    /// The users of `ids` that exist (BatchGetItem, eventually consistent: for display).
    pub async fn get_many(&self, ids: &[Id]) -> Result<Vec<UserItem>, DataError> {
        let keys = ids
            .iter()
            .map(|id| HashMap::from([("pk".to_owned(), s(user_pk(*id)))]))
            .collect();
        crate::dynamo::batch_get_all(&self.dynamodb, self.table.as_str(), keys)
            .await?
            .into_iter()
            .map(|item| Ok(serde_dynamo::from_item(item)?))
            .collect()
    }

    /// One user by email (case-insensitive): the email item, then the user.
    pub async fn find_by_email(&self, email: &str) -> Result<Option<UserItem>, DataError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(self.table.as_str())
            .key("pk", s(email_pk(email)))
            .consistent_read(true)
            .send()
            .await?;
        let Some(id) = output
            .item
            .as_ref()
            .and_then(|item| item.get("user_id"))
            .and_then(|value| value.as_s().ok())
            .and_then(|id| id.parse::<Id>().ok())
        else {
            return Ok(None);
        };
        self.get(id).await
    }

    /// `disabled`, `token_version` and `role` only (the authenticator's cheap read).
    pub async fn auth_state(&self, id: Id) -> Result<Option<AuthState>, DataError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(self.table.as_str())
            .key("pk", s(user_pk(id)))
            .projection_expression("disabled, token_version, #role")
            .expression_attribute_names("#role", "role")
            .send()
            .await?;
        Ok(output.item.map(|item| AuthState {
            role: item
                .get("role")
                .and_then(|v| v.as_s().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(Role::Pending),
            disabled: item
                .get("disabled")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false),
            token_version: item
                .get("token_version")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }))
    }

    /// Retires every access token of the user: `token_version` (and `version`, so an
    /// admin's concurrent change read before this one fails its condition instead of
    /// writing the old version back) go up by one. `404` for an unknown user.
    pub async fn retire_tokens(&self, id: Id) -> Result<UserItem, ApiError> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(self.table.as_str())
            .key("pk", s(user_pk(id)))
            .update_expression(format!(
                "SET {} ADD token_version :one, version :one",
                Stamp::SET
            ))
            .stamped(&crate::audit::stamp())
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":one", n(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => Ok(serde_dynamo::from_item(
                output.attributes.unwrap_or_default(),
            )?),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(ApiError::not_found("no such user"))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Stores a new password hash, conditional on the user's `version`, and retires the
    /// user's access tokens (`token_version` + 1). `409` when the user changed meanwhile.
    pub async fn set_password(
        &self,
        current: &UserItem,
        password_hash: String,
    ) -> Result<UserItem, ApiError> {
        let mut next = current.clone();
        next.password_hash = password_hash;
        next.token_version += 1;
        next.version += 1;
        next.updated_at = Timestamp::now();
        let result = self
            .dynamodb
            .update_item()
            .table_name(self.table.as_str())
            .key("pk", s(user_pk(current.id)))
            .update_expression(format!(
                "SET password_hash = :hash, token_version = :tv, version = :next, updated_at = :updated, {}",
                Stamp::SET
            ))
            .stamped(&crate::audit::stamp())
            .condition_expression("version = :current")
            .expression_attribute_values(":hash", s(next.password_hash.clone()))
            .expression_attribute_values(":tv", n(next.token_version))
            .expression_attribute_values(":next", n(next.version))
            .expression_attribute_values(":current", n(current.version))
            .expression_attribute_values(":updated", s(next.updated_at.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(next),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(ApiError::conflict(
                    "the user changed meanwhile; read it again and retry",
                ))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Counts a failed login; the `max_failures`-th locks the account until `lock_until`
    /// and resets the count. Atomic (`ADD`), so concurrent failures all count.
    pub async fn record_failed_login(
        &self,
        id: Id,
        max_failures: u32,
        lock_until: Timestamp,
    ) -> Result<bool, ApiError> {
        let output = self
            .dynamodb
            .update_item()
            .table_name(self.table.as_str())
            .key("pk", s(user_pk(id)))
            .update_expression("ADD failed_logins :one")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":one", n(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await?;
        let failures: u32 = output
            .attributes
            .as_ref()
            .and_then(|a| a.get("failed_logins"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if failures < max_failures {
            return Ok(false);
        }
        self.dynamodb
            .update_item()
            .table_name(self.table.as_str())
            .key("pk", s(user_pk(id)))
            .update_expression(format!(
                "SET locked_until = :until, failed_logins = :zero, {}",
                Stamp::SET
            ))
            .stamped(&crate::audit::stamp())
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":until", s(lock_until.to_string()))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await?;
        Ok(true)
    }

    /// After a successful login: clears failures and an expired lock, and stores a
    /// rehashed password when the parameters changed. Skipped when nothing changes.
    pub async fn record_successful_login(
        &self,
        user: &UserItem,
        new_hash: Option<String>,
    ) -> Result<(), ApiError> {
        if user.failed_logins == 0 && user.locked_until.is_none() && new_hash.is_none() {
            return Ok(());
        }
        let mut update = self
            .dynamodb
            .update_item()
            .table_name(self.table.as_str())
            .key("pk", s(user_pk(user.id)))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":zero", n(0))
            .stamped(&crate::audit::stamp());
        let mut expression = format!("SET failed_logins = :zero, {}", Stamp::SET);
        if let Some(hash) = new_hash {
            expression.push_str(", password_hash = :hash");
            update = update.expression_attribute_values(":hash", s(hash));
        }
        expression.push_str(" REMOVE locked_until");
        update.update_expression(expression).send().await?;
        Ok(())
    }

    /// A page of users, newest first, after the user with list key `after`.
    pub async fn list(
        &self,
        limit: u16,
        after: Option<&str>,
    ) -> Result<(Vec<UserItem>, Option<String>), ApiError> {
        let mut query = self
            .dynamodb
            .query()
            .table_name(self.table.as_str())
            .index_name(LIST_INDEX)
            .key_condition_expression("list_pk = :list")
            .expression_attribute_values(":list", s(LIST_PK))
            .scan_index_forward(false)
            .limit(i32::from(limit));
        if let Some(after) = after {
            let id: Id = after
                .parse()
                .map_err(|_| ApiError::invalid_field("cursor", "is not valid"))?;
            query = query.set_exclusive_start_key(Some(HashMap::from([
                ("pk".to_owned(), s(user_pk(id))),
                ("list_pk".to_owned(), s(LIST_PK)),
                ("list_sk".to_owned(), s(id.to_string())),
            ])));
        }
        let output = query.send().await?;
        let items: Vec<UserItem> = serde_dynamo::from_items(output.items.unwrap_or_default())?;
        let next = match output.last_evaluated_key {
            Some(_) => items.last().map(|item| item.list_sk.clone()),
            None => None,
        };
        Ok((items, next))
    }

    fn admin_count_change(&self, delta: i64) -> Result<TransactWriteItem, ApiError> {
        let mut update = Update::builder()
            .table_name(self.table.as_str())
            .key("pk", s(ADMINS_PK))
            .expression_attribute_values(":delta", n(delta));
        update = if delta > 0 {
            update.update_expression("ADD admins :delta")
        } else {
            // Never below one enabled admin.
            update
                .update_expression("ADD admins :delta")
                .condition_expression("admins > :one")
                .expression_attribute_values(":one", n(1))
        };
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(ApiError::internal)?)
            .build())
    }

    /// Applies an admin's change to `current`, conditional on its version; keeps the
    /// enabled-admin count in the same transaction. `409` when the user changed meanwhile,
    /// `422 last-admin` when the change would leave no enabled admin.
    pub async fn update(
        &self,
        current: &UserItem,
        changes: &UserChanges,
    ) -> Result<UserItem, ApiError> {
        let mut next = current.clone();
        if let Some(name) = &changes.name {
            next.name = name.clone();
        }
        if let Some(role) = changes.role {
            next.role = role;
        }
        if let Some(disabled) = changes.disabled {
            next.disabled = disabled;
        }
        if changes.unlock {
            next.locked_until = None;
            next.failed_logins = 0;
        }
        if next.role != current.role || next.disabled != current.disabled {
            next.token_version += 1;
        }
        next.version += 1;
        next.updated_at = Timestamp::now();

        let mut set = vec![
            Stamp::SET,
            "#name = :name",
            "#role = :role",
            "disabled = :disabled",
            "failed_logins = :failed",
            "token_version = :tv",
            "version = :next",
            "updated_at = :updated",
        ];
        let mut update = Update::builder()
            .table_name(self.table.as_str())
            .key("pk", s(user_pk(current.id)))
            .condition_expression("version = :current")
            .expression_attribute_names("#name", "name")
            .expression_attribute_names("#role", "role")
            .expression_attribute_values(":name", s(next.name.clone()))
            .expression_attribute_values(":role", s(next.role.as_str()))
            .expression_attribute_values(":disabled", AttributeValue::Bool(next.disabled))
            .expression_attribute_values(":failed", n(next.failed_logins))
            .expression_attribute_values(":tv", n(next.token_version))
            .expression_attribute_values(":next", n(next.version))
            .expression_attribute_values(":current", n(current.version))
            .expression_attribute_values(":updated", s(next.updated_at.to_string()))
            .stamped(&crate::audit::stamp());
        let expression = match next.locked_until {
            Some(until) => {
                set.push("locked_until = :until");
                update = update.expression_attribute_values(":until", s(until.to_string()));
                format!("SET {}", set.join(", "))
            }
            None => format!("SET {} REMOVE locked_until", set.join(", ")),
        };
        update = update.update_expression(expression);
        let mut writes = vec![TransactWriteItem::builder()
            .update(update.build().map_err(ApiError::internal)?)
            .build()];
        match (current.enabled_admin(), next.enabled_admin()) {
            (true, false) => writes.push(self.admin_count_change(-1)?),
            (false, true) => writes.push(self.admin_count_change(1)?),
            _ => {}
        }
        let result = self
            .dynamodb
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        match result {
            Ok(_) => Ok(next),
            Err(err) => match cancellation_codes(&err) {
                Some(codes) if codes.get(1).is_some_and(|c| c == "ConditionalCheckFailed") => {
                    Err(ApiError::unprocessable(
                        "last-admin",
                        "this change would leave no enabled admin",
                    ))
                }
                Some(_) => Err(ApiError::conflict(
                    "the user changed meanwhile; read it again and retry",
                )),
                None => Err(err.into()),
            },
        }
    }
}
