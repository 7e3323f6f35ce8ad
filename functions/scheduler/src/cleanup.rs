//! Hourly cleanup of what TTL deletes only lazily (on AWS up to days late; DynamoDB Local
//! never): expired WebSocket connections, with their subscriptions, and expired
//! idempotency keys. Readers already ignore expired items (they check `expires_at`
//! themselves); this keeps the notifier's subscriber Queries and the tables small.
//!
//! Both are Scans, on purpose: neither table has (or should pay for) an index on expiry,
//! both are small (connections are live sockets; idempotency keys live 24 hours), neither
//! is read by a request path through a Scan, and this runs once an hour off the request
//! path. The Scans are parallel ([`SEGMENTS`]) and filtered server-side, projecting only the
//! key.

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::join_all;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use shared::domain::Timestamp;
use shared::dynamo::for_each_page;
use shared::error::condition_held;
use shared::realtime::META;
use shared::ApiError;

use shared::dynamo::attributes::{n, s};

use crate::App;

/// Segments of each parallel Scan.
pub const SEGMENTS: i32 = 4;

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
pub async fn run(app: &App, now: Timestamp) -> Result<CleanupReport, ApiError> {
    let (connections, keys) = tokio::join!(connections(app, now), idempotency_keys(app, now));
    let (idempotency_keys_deleted, idempotency_keys_kept) = keys?;
    Ok(CleanupReport {
        connections_removed: connections?,
        idempotency_keys_deleted,
        idempotency_keys_kept,
    })
}

/// One segment of a filtered Scan, all pages, projecting `attribute`.
async fn scan_segment(
    app: &App,
    table: &str,
    segment: i32,
    attribute: &str,
    filter: &str,
    values: &[(&str, AttributeValue)],
) -> Result<Vec<String>, ApiError> {
    let mut request = app
        .dynamodb
        .scan()
        .table_name(table)
        .segment(segment)
        .total_segments(SEGMENTS)
        .filter_expression(filter)
        .projection_expression("#a")
        .expression_attribute_names("#a", attribute)
        .expression_attribute_names("#e", "expires_at");
    for (name, value) in values {
        request = request.expression_attribute_values(*name, value.clone());
    }
    let mut out = Vec::new();
    for_each_page(request, |items| {
        out.extend(
            items
                .iter()
                .filter_map(|item| item.get(attribute).and_then(|v| v.as_s().ok()).cloned()),
        );
        Ok(true)
    })
    .await?;
    Ok(out)
}

/// A parallel Scan: every segment at once.
async fn scan(
    app: &App,
    table: &str,
    attribute: &str,
    filter: &str,
    values: &[(&str, AttributeValue)],
) -> Result<Vec<String>, ApiError> {
    let segments = join_all(
        (0..SEGMENTS).map(|segment| scan_segment(app, table, segment, attribute, filter, values)),
    )
    .await;
    let mut out = Vec::new();
    for segment in segments {
        out.extend(segment?);
    }
    Ok(out)
}

/// Removes expired connection items (`sk = META`) and their subscriptions.
async fn connections(app: &App, now: Timestamp) -> Result<u64, ApiError> {
    let expired = scan(
        app,
        app.tables.connections.as_str(),
        "connection_id",
        "sk = :meta AND #e <= :now",
        &[(":meta", s(META)), (":now", n(now.unix_seconds()))],
    )
    .await?;
    let removed: Vec<Result<(), ApiError>> = stream::iter(expired)
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
async fn idempotency_keys(app: &App, now: Timestamp) -> Result<(u64, u64), ApiError> {
    let now = n(now.unix_seconds());
    let expired = scan(
        app,
        app.tables.idempotency.as_str(),
        "pk",
        "#e <= :now",
        &[(":now", now.clone())],
    )
    .await?;
    let deleted: Vec<Result<bool, ApiError>> = stream::iter(expired)
        .map(|pk| {
            let now = now.clone();
            async move {
                let result = app
                    .dynamodb
                    .delete_item()
                    .table_name(app.tables.idempotency.as_str())
                    .key("pk", s(pk))
                    .condition_expression("expires_at <= :now")
                    .expression_attribute_values(":now", now)
                    .send()
                    .await;
                condition_held(result)
            }
        })
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
