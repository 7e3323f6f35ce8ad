//! Refresh tokens: opaque (32 random bytes, base64url), stored only as their SHA-256 in the
//! RefreshTokens table (`pk` = hex hash), grouped in rotation *families* (one per login).
//! The auth function issues and rotates them; the users function revokes them (disable,
//! role change, `POST /users/{id}/sessions/revoke`), so they live in `shared`.
//!
//! Items: a token `{pk, family_id, user_id, token_version, status: active|used|revoked,
//! expires_at}` and a family marker `{pk: FAMILY#<id>, revoked_at}` written when a family is
//! revoked.
//!
//! # Revoking every session of a user
//!
//! Disabling a user, changing their role or password, `POST /auth/logout-all` and `POST
//! /users/{id}/sessions/revoke` all go through [`revoke_all_sessions`]: the user's
//! `token_version` is bumped (which retires their access tokens, see
//! `shared::auth::authenticator`), then every family of the user, found on the GSI
//! `tokens-by-user` (a Query, never a Scan), is revoked. The version is the authoritative
//! part: each token carries the `token_version` its login saw, and [`RefreshStore::refresh`]
//! refuses a token whose version is not the user's current one. So a login that raced the
//! revocation, or a token the eventually consistent GSI did not list yet, is refused all the
//! same; the family revocation makes the refusal visible in the table and is clean-up.
//!
//! Rotation is one `TransactWriteItems`: the presented token goes `active → used`
//! (conditional: spent exactly once, however many requests race), the family marker must
//! not be revoked (`ConditionCheck`), and the new token is put. Presenting a spent token
//! revokes its family: the marker first (so every later rotation of any family member
//! fails its condition, whatever the GSI has indexed yet), then each member found on the
//! `tokens-by-family` GSI (clean-up). Expiry is checked on every read: TTL deletion is lazy.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::stream::{self, StreamExt};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::users::{UserItem, UserRepo};
use crate::config::TableName;
use crate::domain::Id;
use crate::dynamo::attributes::{n, s};
use crate::dynamo::retry::{backoff, failed_conditions, is_conflict, CONFLICT_RETRIES};
use crate::error::ApiError;

/// The family GSI of the RefreshTokens table.
const FAMILY_INDEX: &str = "tokens-by-family";
/// The user GSI of the RefreshTokens table (token items only; projects `family_id`,
/// `status` and `expires_at`).
pub const USER_INDEX: &str = "tokens-by-user";
/// `REFRESH_TOKEN_TTL_SECONDS`, default 30 days: a token's life, and how long a revoked
/// family's marker is kept (it must outlive the family's tokens).
pub fn ttl_from(lookup: crate::config::Lookup<'_>) -> Result<i64, crate::config::ConfigError> {
    crate::config::optional_from(lookup, "REFRESH_TOKEN_TTL_SECONDS", DEFAULT_TTL_SECS)
}

/// The default of `REFRESH_TOKEN_TTL_SECONDS`.
pub const DEFAULT_TTL_SECS: i64 = 30 * 86_400;

/// Families revoked at once by [`RefreshStore::revoke_user`].
const REVOKE_CONCURRENCY: usize = 8;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The stored key of a token.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn family_pk(family: &str) -> String {
    format!("FAMILY#{family}")
}

/// A new random token (returned to the client once, never stored).
pub fn generate() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A stored token, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub hash: String,
    pub family_id: String,
    pub user_id: Id,
    /// The user's `token_version` when the family's login happened (0 for tokens issued
    /// before versions were stored: a user whose version moved since refuses them).
    pub token_version: u64,
    pub status: String,
    pub expires_at: i64,
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum Rotation {
    /// The new token and the user it belongs to.
    Rotated {
        token: String,
        user_id: Id,
        family_id: String,
        token_version: u64,
    },
    /// Unknown, expired, or already revoked.
    Invalid,
    /// A spent token was presented again: its family is now revoked.
    Reused { family_id: String },
}

#[derive(Debug, Clone)]
pub struct RefreshStore {
    dynamodb: Client,
    table: TableName,
    ttl_secs: i64,
}

impl RefreshStore {
    pub fn new(dynamodb: Client, table: TableName, ttl_secs: i64) -> Self {
        Self {
            dynamodb,
            table,
            ttl_secs,
        }
    }

    fn item(
        &self,
        hash: &str,
        family: &str,
        user: Id,
        token_version: u64,
    ) -> HashMap<String, AttributeValue> {
        let issued = now();
        HashMap::from([
            ("pk".to_owned(), s(hash)),
            ("family_id".to_owned(), s(family)),
            ("user_id".to_owned(), s(user.to_string())),
            ("token_version".to_owned(), n(token_version as i64)),
            ("status".to_owned(), s("active")),
            ("issued_at".to_owned(), n(issued)),
            ("expires_at".to_owned(), n(issued + self.ttl_secs)),
        ])
    }

    /// Starts a family (a login of `user` as read, with its current `token_version`): a new
    /// token.
    pub async fn issue(&self, user: &UserItem) -> Result<String, ApiError> {
        let token = generate();
        let family = ulid::Ulid::new().to_string();
        self.dynamodb
            .put_item()
            .table_name(self.table.as_str())
            .set_item(Some(self.item(
                &token_hash(&token),
                &family,
                user.id,
                user.token_version,
            )))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await?;
        Ok(token)
    }

    /// The stored token for `token`, if any (expired or not).
    pub async fn find(&self, token: &str) -> Result<Option<StoredToken>, ApiError> {
        let hash = token_hash(token);
        let output = self
            .dynamodb
            .get_item()
            .table_name(self.table.as_str())
            .key("pk", s(hash.clone()))
            .consistent_read(true)
            .send()
            .await?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let text = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let Ok(user_id) = text("user_id").parse::<Id>() else {
            return Ok(None);
        };
        Ok(Some(StoredToken {
            hash,
            family_id: text("family_id"),
            user_id,
            token_version: item
                .get("token_version")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            status: text("status"),
            expires_at: item
                .get("expires_at")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }))
    }

    /// Spends `token` and issues its successor in the same family.
    pub async fn rotate(&self, token: &str) -> Result<Rotation, ApiError> {
        self.rotate_attempt(token, 0).await
    }

    /// One attempt of [`Self::rotate`]. A `TransactionConflict` (another transaction held one
    /// of the items at that moment: on AWS a concurrent spend of the same token, a revoke of
    /// the family, or anything else touching them) is no verdict on reuse: the attempt is
    /// repeated from a fresh read, which sees a concurrent spend as `used` (a reuse), and
    /// after `CONFLICT_RETRIES` the answer is a 503. Only a failed condition on the spend
    /// itself is a reuse (found by the fault run, `tests/tests/chaos_e2e.rs`).
    async fn rotate_attempt(&self, token: &str, attempt: u32) -> Result<Rotation, ApiError> {
        let Some(stored) = self.find(token).await? else {
            return Ok(Rotation::Invalid);
        };
        let at = now();
        if stored.expires_at <= at || stored.status == "revoked" {
            return Ok(Rotation::Invalid);
        }
        if stored.status == "used" {
            self.revoke_family(&stored.family_id).await?;
            return Ok(Rotation::Reused {
                family_id: stored.family_id,
            });
        }
        let next = generate();
        let spend = Update::builder()
            .table_name(self.table.as_str())
            .key("pk", s(stored.hash.clone()))
            .update_expression("SET #status = :used, used_at = :now")
            .condition_expression("#status = :active AND expires_at > :now")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":used", s("used"))
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":now", n(at))
            .build()
            .map_err(ApiError::internal)?;
        let family_alive = ConditionCheck::builder()
            .table_name(self.table.as_str())
            .key("pk", s(family_pk(&stored.family_id)))
            .condition_expression("attribute_not_exists(revoked_at)")
            .build()
            .map_err(ApiError::internal)?;
        let put = Put::builder()
            .table_name(self.table.as_str())
            .set_item(Some(self.item(
                &token_hash(&next),
                &stored.family_id,
                stored.user_id,
                stored.token_version,
            )))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(ApiError::internal)?;
        let result = self
            .dynamodb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(spend).build())
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(family_alive)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Rotation::Rotated {
                token: next,
                user_id: stored.user_id,
                family_id: stored.family_id,
                token_version: stored.token_version,
            }),
            Err(err) if is_conflict(&err) => {
                if attempt >= CONFLICT_RETRIES {
                    return Err(ApiError::unavailable(
                        "the refresh token is in use by a concurrent request; retry shortly",
                    ));
                }
                tokio::time::sleep(backoff(attempt + 1)).await;
                Box::pin(self.rotate_attempt(token, attempt + 1)).await
            }
            Err(err) => {
                match failed_conditions(&err) {
                    // Spent concurrently: a reuse.
                    Some(failed) if failed.first() == Some(&true) => {
                        self.revoke_family(&stored.family_id).await?;
                        Ok(Rotation::Reused {
                            family_id: stored.family_id,
                        })
                    }
                    Some(_) => Ok(Rotation::Invalid),
                    None => Err(err.into()),
                }
            }
        }
    }

    /// Revokes a family: the marker (authoritative), then each member (clean-up).
    pub async fn revoke_family(&self, family: &str) -> Result<(), ApiError> {
        let at = now();
        self.dynamodb
            .update_item()
            .table_name(self.table.as_str())
            .key("pk", s(family_pk(family)))
            .update_expression(
                "SET revoked_at = if_not_exists(revoked_at, :now), expires_at = :exp",
            )
            .expression_attribute_values(":now", n(at))
            .expression_attribute_values(":exp", n(at + self.ttl_secs))
            .send()
            .await?;
        let members = self
            .dynamodb
            .query()
            .table_name(self.table.as_str())
            .index_name(FAMILY_INDEX)
            .key_condition_expression("family_id = :f")
            .expression_attribute_values(":f", s(family))
            .limit(200)
            .send()
            .await?;
        for member in members.items.unwrap_or_default() {
            let Some(pk) = member.get("pk").cloned() else {
                continue;
            };
            let result = self
                .dynamodb
                .update_item()
                .table_name(self.table.as_str())
                .key("pk", pk)
                .update_expression("SET #status = :revoked")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":revoked", s("revoked"))
                .send()
                .await;
            if let Err(err) = result {
                // The marker already revoked the family; a member left behind is harmless.
                tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&err), "revoking a family member failed");
            }
        }
        tracing::info!(family, "refresh token family revoked");
        Ok(())
    }

    /// `POST /auth/refresh`: rotates `token` and answers the new token with its user, if the
    /// user is still enabled and its `token_version` is the one the family's login saw
    /// (disable, role or password change and "revoke all sessions" move it). Otherwise the
    /// family is revoked and the answer is [`Refreshed::Invalid`].
    pub async fn refresh(&self, users: &UserRepo, token: &str) -> Result<Refreshed, ApiError> {
        match self.rotate(token).await? {
            Rotation::Invalid => Ok(Refreshed::Invalid),
            Rotation::Reused { family_id } => {
                tracing::warn!(family = %family_id, "refresh token reuse: family revoked");
                Ok(Refreshed::Invalid)
            }
            Rotation::Rotated {
                token,
                user_id,
                family_id,
                token_version,
            } => match users.get(user_id).await? {
                Some(user) if !user.disabled && user.token_version == token_version => {
                    Ok(Refreshed::Rotated {
                        user: Box::new(user),
                        token,
                    })
                }
                _ => {
                    tracing::info!(user = %user_id, family = %family_id, "refresh of a disabled, changed or revoked user refused");
                    self.revoke_family(&family_id).await?;
                    Ok(Refreshed::Invalid)
                }
            },
        }
    }

    /// The families of `user` that still have a live token (Query on `tokens-by-user`).
    pub async fn families_of(&self, user: Id) -> Result<Vec<String>, ApiError> {
        let query = self
            .dynamodb
            .query()
            .table_name(self.table.as_str())
            .index_name(USER_INDEX)
            .key_condition_expression("user_id = :u")
            .expression_attribute_values(":u", s(user.to_string()));
        let at = now();
        let mut families = std::collections::BTreeSet::new();
        crate::dynamo::for_each_page(query, |items| {
            for item in items {
                let live = item.get("status").and_then(|v| v.as_s().ok())
                    != Some(&"revoked".to_owned())
                    && item
                        .get("expires_at")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|v| v.parse::<i64>().ok())
                        .is_some_and(|exp| exp > at);
                if let (true, Some(family)) =
                    (live, item.get("family_id").and_then(|v| v.as_s().ok()))
                {
                    families.insert(family.clone());
                }
            }
            Ok(true)
        })
        .await?;
        Ok(families.into_iter().collect())
    }

    /// Revokes every family of `user` (clean-up after its `token_version` moved, see the
    /// module docs).
    pub async fn revoke_user(&self, user: Id) -> Result<usize, ApiError> {
        let families = self.families_of(user).await?;
        let count = families.len();
        let results: Vec<Result<(), ApiError>> = stream::iter(families)
            .map(|family| async move { self.revoke_family(&family).await })
            .buffer_unordered(REVOKE_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, ApiError>>()?;
        tracing::info!(user = %user, families = count, "every session of the user revoked");
        Ok(count)
    }
}

/// What [`RefreshStore::refresh`] led to.
#[derive(Debug)]
pub enum Refreshed {
    /// The successor token, and the user (as read now) to issue an access token for.
    Rotated { user: Box<UserItem>, token: String },
    /// Unknown, expired, revoked, reused, or its user disabled or changed since the login.
    Invalid,
}

/// Ends every session of `user`: bumps its `token_version` (its access tokens die within
/// the authenticator's cache time, its refresh tokens at once) and revokes its families.
/// For changes that bump the version themselves (`UserRepo::update`, `set_password`), call
/// [`RefreshStore::revoke_user`] after them instead.
pub async fn revoke_all_sessions(
    users: &UserRepo,
    refresh: &RefreshStore,
    user: Id,
) -> Result<UserItem, ApiError> {
    let updated = users.retire_tokens(user).await?;
    refresh.revoke_user(user).await?;
    Ok(updated)
}
