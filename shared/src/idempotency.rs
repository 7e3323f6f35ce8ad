//! Idempotency keys (the `Idempotency-Key` header), modelled on Stripe's.
//!
//! A key is scoped to the caller and the route (`pk` = `<user id>#<route key>#<key>`), and
//! stored with a SHA-256 of the request (method, path and body) for 24 hours.
//!
//! 1. **Claim**: a conditional `PutItem` of `{state: in_progress, request_hash, claim_id,
//!    resource_id, locked_until, expires_at}` that succeeds only when no live record exists
//!    (absent, past `expires_at`, or an `in_progress` claim of the same request whose lock ran
//!    out: its request crashed). Exactly one of any number of concurrent requests wins.
//! 2. The winner does the work and **completes** the record with the response (status,
//!    headers, body): in the work's own transaction where the work is one (recording a
//!    payment: [`IdempotencyStore::completion`]), else right after it. Or it **releases**
//!    the record (deletes it) when the request did nothing (any error): the client may then
//!    retry with the same key.
//! 3. A loser reads the record from the failed condition (`ReturnValuesOnConditionCheckFailure
//!    = ALL_OLD`, no second read): a different request hash is a `422`; a completed record is
//!    replayed (same status and body, `Idempotent-Replayed: true`); a claim in progress is a
//!    `409` with `Retry-After: 1`.
//!
//! The `resource_id` (the payment id) is chosen at the first claim and inherited by a
//! request that takes over a crashed claim ([`Claim::Acquired`] with `taken_over`). If the
//! crashed request had in fact committed, the resource exists under that id: the taker
//! looks it up *before* validating anything and answers it as the original response (a
//! re-validation could refuse what was already done — a pay-off leaves a balance of 0 that
//! the same amount no longer fits). The payment's own `attribute_not_exists` condition
//! remains the last guard: nothing is ever recorded twice. TTL deletes records lazily; expiry is checked in the
//! claim's condition, never trusted to TTL.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use sha2::{Digest, Sha256};

use crate::config::TableName;
use crate::domain::{Id, Timestamp};
use crate::dynamo::attributes::{n, number, s, text};
use crate::dynamo::scan_strings;
use crate::dynamo::{condition_held, DataError};
use crate::error::ApiError;

/// The header.
pub const HEADER: &str = "idempotency-key";
/// Records live 24 hours.
pub const TTL: Duration = Duration::from_secs(24 * 3600);
/// A claim whose request has not completed in this long is taken to have crashed (longer
/// than the function timeout, 10 s, so a live request never loses its claim).
pub const LOCK: Duration = Duration::from_secs(15);
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// A response stored for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request owns the key; `resource_id` is the id to create (inherited from a
    /// crashed claim of the same request when there was one).
    Acquired {
        claim_id: String,
        resource_id: String,
        /// Whether this claim took over a crashed one of the same request: its work may
        /// have committed, so look `resource_id` up before doing it again.
        taken_over: bool,
    },
    /// The first request completed: answer its response.
    Replay(StoredResponse),
    /// The first request is still running: `409`.
    InProgress,
    /// The key was used with another request: `422`.
    Mismatch,
}

/// The key of the header, validated: 1..=255 visible ASCII characters; `400` otherwise
/// (and when absent).
pub fn key_from_header(value: Option<&str>) -> Result<String, ApiError> {
    let Some(value) = value else {
        return Err(ApiError::invalid_field(
            "Idempotency-Key",
            "this request needs an Idempotency-Key header (e.g. a UUID): a retry with the same key never records twice",
        ));
    };
    let value = value.trim();
    if value.is_empty() || value.len() > MAX_KEY_LEN || !value.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::invalid_field(
            "Idempotency-Key",
            format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        ));
    }
    Ok(value.to_owned())
}

/// The record's key: the key scoped to the caller and the route.
pub fn record_key(caller: Id, route: &str, key: &str) -> String {
    format!("{caller}#{route}#{key}")
}

/// SHA-256 (hex) of what makes two requests the same request.
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0]);
    hasher.update(path.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The Idempotency table.
#[derive(Debug, Clone)]
pub struct IdempotencyStore {
    dynamodb: Client,
    table: TableName,
}

fn stored(item: &HashMap<String, AttributeValue>) -> Option<StoredResponse> {
    let status = u16::try_from(number(item, "response_status")?).ok()?;
    let body = text(item, "response_body").unwrap_or_default().to_owned();
    let headers = text(item, "response_headers")
        .and_then(|h| serde_json::from_str::<Vec<(String, String)>>(h).ok())
        .unwrap_or_default();
    Some(StoredResponse {
        status,
        body,
        headers,
    })
}

impl IdempotencyStore {
    pub fn new(dynamodb: Client, table: TableName) -> Self {
        Self { dynamodb, table }
    }

    /// Claims `record` for the request hashed `hash`; `resource_id` is the id this request
    /// would create.
    pub async fn claim(
        &self,
        record: &str,
        hash: &str,
        resource_id: &str,
        now: Timestamp,
    ) -> Result<Claim, ApiError> {
        let claim_id = Id::generate().to_string();
        let now_s = now.unix_seconds();
        let result = self
            .dynamodb
            .put_item()
            .table_name(self.table.as_str())
            .item("pk", s(record))
            .item("state", s("in_progress"))
            .item("request_hash", s(hash))
            .item("claim_id", s(claim_id.clone()))
            .item("resource_id", s(resource_id))
            .item("locked_until", n(now_s + LOCK.as_secs() as i64))
            .item("expires_at", n(now_s + TTL.as_secs() as i64))
            .item("created_at", s(now.to_string()))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at <= :now \
                 OR (#state = :in_progress AND locked_until <= :now AND request_hash = :hash)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now", n(now_s))
            .expression_attribute_values(":in_progress", s("in_progress"))
            .expression_attribute_values(":hash", s(hash))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => {
                // Taking over a crashed claim of the same request: keep its resource id.
                let inherited = output.attributes.as_ref().and_then(|old| {
                    let live = number(old, "expires_at").is_some_and(|e| e > now_s);
                    let same = text(old, "request_hash") == Some(hash);
                    (live && same)
                        .then(|| text(old, "resource_id").map(str::to_owned))
                        .flatten()
                });
                match inherited {
                    Some(previous) if previous != resource_id => {
                        self.dynamodb
                            .update_item()
                            .table_name(self.table.as_str())
                            .key("pk", s(record))
                            .update_expression("SET resource_id = :r")
                            .condition_expression("claim_id = :c")
                            .expression_attribute_values(":r", s(previous.clone()))
                            .expression_attribute_values(":c", s(claim_id.clone()))
                            .send()
                            .await?;
                        tracing::info!(record, "took over a crashed idempotency claim");
                        Ok(Claim::Acquired {
                            claim_id,
                            resource_id: previous,
                            taken_over: true,
                        })
                    }
                    Some(_) => Ok(Claim::Acquired {
                        claim_id,
                        resource_id: resource_id.to_owned(),
                        taken_over: true,
                    }),
                    None => Ok(Claim::Acquired {
                        claim_id,
                        resource_id: resource_id.to_owned(),
                        taken_over: false,
                    }),
                }
            }
            Err(err) => {
                let Some(service) = err.as_service_error() else {
                    return Err(err.into());
                };
                if !service.is_conditional_check_failed_exception() {
                    return Err(err.into());
                }
                let old = match service {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(e) => {
                        e.item.clone()
                    }
                    _ => None,
                };
                let old = match old {
                    Some(old) => old,
                    // Older engines do not return the item: read it.
                    None => match self.read(record).await? {
                        Some(old) => old,
                        None => return Ok(Claim::InProgress),
                    },
                };
                if text(&old, "request_hash") != Some(hash) {
                    return Ok(Claim::Mismatch);
                }
                if text(&old, "state") == Some("completed") {
                    if let Some(response) = stored(&old) {
                        crate::metrics::count(&crate::metrics::names::IDEMPOTENT_REPLAYS);
                        return Ok(Claim::Replay(response));
                    }
                }
                Ok(Claim::InProgress)
            }
        }
    }

    async fn read(
        &self,
        record: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, ApiError> {
        Ok(self
            .dynamodb
            .get_item()
            .table_name(self.table.as_str())
            .key("pk", s(record))
            .consistent_read(true)
            .send()
            .await?
            .item)
    }

    /// Stores the response of the claim's request: [`IdempotencyStore::completion`]'s
    /// update, sent alone.
    pub async fn complete(
        &self,
        record: &str,
        claim_id: &str,
        response: &StoredResponse,
    ) -> Result<(), ApiError> {
        let update = self.completion_update(record, claim_id, response)?;
        let result = self
            .dynamodb
            .update_item()
            .table_name(update.table_name)
            .set_key(Some(update.key))
            .update_expression(update.update_expression)
            .set_condition_expression(update.condition_expression)
            .set_expression_attribute_names(update.expression_attribute_names)
            .set_expression_attribute_values(update.expression_attribute_values)
            .send()
            .await;
        if !condition_held(result)? {
            tracing::warn!(record, "idempotency claim was taken over before completion");
        }
        Ok(())
    }

    /// [`IdempotencyStore::complete`] as an item of the request's own transaction, so its
    /// write and the stored response commit together: no crash can leave the write done
    /// and the key in progress. The transaction fails on this item when the claim is no
    /// longer ours.
    pub fn completion(
        &self,
        record: &str,
        claim_id: &str,
        response: &StoredResponse,
    ) -> Result<TransactWriteItem, ApiError> {
        let update = self.completion_update(record, claim_id, response)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Completing a claim: the response stored and the lock removed, on condition that the
    /// claim is still this request's.
    fn completion_update(
        &self,
        record: &str,
        claim_id: &str,
        response: &StoredResponse,
    ) -> Result<Update, ApiError> {
        let headers = serde_json::to_string(&response.headers).map_err(ApiError::internal)?;
        Update::builder()
            .table_name(self.table.as_str())
            .key("pk", s(record))
            .update_expression(
                "SET #state = :completed, response_status = :status, response_body = :body, \
                 response_headers = :headers REMOVE locked_until",
            )
            .condition_expression("claim_id = :c")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":completed", s("completed"))
            .expression_attribute_values(":status", n(response.status))
            .expression_attribute_values(":body", s(response.body.clone()))
            .expression_attribute_values(":headers", s(headers))
            .expression_attribute_values(":c", s(claim_id))
            .build()
            .map_err(ApiError::internal)
    }

    /// The records expired at or before `now`, TTL not having deleted them yet (a parallel
    /// Scan, filtered server-side: records live a day, the table is small).
    pub async fn expired(&self, now: Timestamp) -> Result<Vec<String>, DataError> {
        let request = self
            .dynamodb
            .scan()
            .table_name(self.table.as_str())
            .filter_expression("#e <= :now")
            .expression_attribute_names("#e", "expires_at")
            .expression_attribute_values(":now", n(now.unix_seconds()));
        scan_strings(request, "pk").await
    }

    /// Deletes a record if it is still expired at `now` (a request may claim an expired key
    /// again between the Scan and the delete); `false` when it was claimed again.
    pub async fn delete_expired(&self, record: &str, now: Timestamp) -> Result<bool, DataError> {
        let result = self
            .dynamodb
            .delete_item()
            .table_name(self.table.as_str())
            .key("pk", s(record))
            .condition_expression("expires_at <= :now")
            .expression_attribute_values(":now", n(now.unix_seconds()))
            .send()
            .await;
        condition_held(result)
    }

    /// Gives the key back (the request did nothing): deletes the claim if still ours.
    pub async fn release(&self, record: &str, claim_id: &str) -> Result<(), DataError> {
        let result = self
            .dynamodb
            .delete_item()
            .table_name(self.table.as_str())
            .key("pk", s(record))
            .condition_expression("claim_id = :c")
            .expression_attribute_values(":c", s(claim_id))
            .send()
            .await;
        condition_held(result).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated_and_scoped() {
        assert!(key_from_header(None).is_err());
        assert!(key_from_header(Some("  ")).is_err());
        assert!(key_from_header(Some("a b")).is_err());
        assert!(key_from_header(Some(&"k".repeat(256))).is_err());
        assert_eq!(key_from_header(Some(" abc-123 ")).unwrap(), "abc-123");
        let caller = Id::generate();
        assert_ne!(
            record_key(caller, "POST /a", "k"),
            record_key(Id::generate(), "POST /a", "k")
        );
        assert_ne!(
            request_hash("POST", "/a", b"{}"),
            request_hash("POST", "/b", b"{}")
        );
        assert_eq!(request_hash("POST", "/a", b"{}").len(), 64);
    }
}
