//! Refresh tokens: opaque (32 random bytes, base64url), stored only as their SHA-256 in the
//! RefreshTokens table (`pk` = hex hash), grouped in rotation *families* (one per login).
//!
//! Items: a token `{pk, family_id, user_id, status: active|used|revoked, expires_at}` and a
//! family marker `{pk: FAMILY#<id>, revoked_at}` written when a family is revoked.
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
use rand::RngCore;
use sha2::{Digest, Sha256};
use shared::config::TableName;
use shared::domain::Id;
use shared::ApiError;

/// The family GSI of the RefreshTokens table.
const FAMILY_INDEX: &str = "tokens-by-family";

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

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

    fn item(&self, hash: &str, family: &str, user: Id) -> HashMap<String, AttributeValue> {
        let issued = now();
        HashMap::from([
            ("pk".to_owned(), s(hash)),
            ("family_id".to_owned(), s(family)),
            ("user_id".to_owned(), s(user.to_string())),
            ("status".to_owned(), s("active")),
            ("issued_at".to_owned(), n(issued)),
            ("expires_at".to_owned(), n(issued + self.ttl_secs)),
        ])
    }

    /// Starts a family (a login): a new token.
    pub async fn issue(&self, user: Id) -> Result<String, ApiError> {
        let token = generate();
        let family = ulid::Ulid::new().to_string();
        self.dynamodb
            .put_item()
            .table_name(self.table.as_str())
            .set_item(Some(self.item(&token_hash(&token), &family, user)))
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
            }),
            Err(err) => {
                use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
                let codes: Option<Vec<String>> = match err.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(c)) => Some(
                        c.cancellation_reasons()
                            .iter()
                            .map(|r| r.code().unwrap_or("None").to_owned())
                            .collect(),
                    ),
                    _ => None,
                };
                match codes {
                    // Spent concurrently (or conflicting with another spend): a reuse.
                    Some(codes)
                        if codes.first().is_some_and(|c| {
                            c == "ConditionalCheckFailed" || c == "TransactionConflict"
                        }) =>
                    {
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
}
