//! Hourly cleanup of what TTL deletes only lazily (on AWS up to days late; DynamoDB Local
//! never): expired WebSocket connections, with their subscriptions, and expired
//! idempotency keys. Readers already ignore expired items (they check `expires_at`
//! themselves); this keeps the notifier's subscriber Queries and the tables small.
//!
//! Both are Scans, on purpose: neither table has (or should pay for) an index on expiry,
//! both are small (connections are live sockets; idempotency keys live 24 hours), neither
//! is read by a request path through a Scan, and this runs once an hour off the request
//! path. The Scans are parallel (`shared::dynamo::scan_strings`) and filtered server-side,
//! projecting only the key.

use crate::SchedulerError;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use shared::domain::Timestamp;
use shared::dynamo::DataError;

use crate::App;

/// Deletions in flight at once.
const DELETE_CONCURRENCY: usize = 8;

/// What a cleanup run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    /// Expired connections removed, each with both items of every subscription.
    pub connections_removed: u64,
    /// Expired idempotency records deleted.
    pub idempotency_keys_deleted: u64,
    /// Idempotency records claimed again between the Scan and the delete (kept).
    pub idempotency_keys_kept: u64,
}

/// Removes what expired at or before `now` (readers treat `expires_at <= now` as expired).
pub async fn run(app: &App, now: Timestamp) -> Result<CleanupReport, SchedulerError> {
    let (connections, keys) = tokio::join!(connections(app, now), idempotency_keys(app, now));
    let (idempotency_keys_deleted, idempotency_keys_kept) = keys?;
    Ok(CleanupReport {
        connections_removed: connections?,
        idempotency_keys_deleted,
        idempotency_keys_kept,
    })
}

/// Removes expired connection items (`sk = META`) and their subscriptions.
async fn connections(app: &App, now: Timestamp) -> Result<u64, SchedulerError> {
    let expired = app.connections.expired(now).await?;
    let removed: Vec<Result<(), DataError>> = stream::iter(expired)
        .map(|connection| async move { app.connections.remove_connection(&connection).await })
        .buffer_unordered(DELETE_CONCURRENCY)
        .collect()
        .await;
    let mut count = 0;
    for result in removed {
        result?;
        count += 1;
    }
    Ok(count)
}

/// Deletes expired idempotency records, each on condition that it is still expired (a
/// request may claim an expired key again between the Scan and the delete).
async fn idempotency_keys(app: &App, now: Timestamp) -> Result<(u64, u64), SchedulerError> {
    let expired = app.idempotency.expired(now).await?;
    let deleted: Vec<Result<bool, DataError>> = stream::iter(expired)
        .map(|record| async move { app.idempotency.delete_expired(&record, now).await })
        .buffer_unordered(DELETE_CONCURRENCY)
        .collect()
        .await;
    let (mut gone, mut kept) = (0, 0);
    for result in deleted {
        if result? {
            gone += 1;
        } else {
            kept += 1;
        }
    }
    Ok((gone, kept))
}
