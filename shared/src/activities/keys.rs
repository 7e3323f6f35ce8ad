//! The keys of the Activities table beside the activities themselves: the call-log item's
//! sort key, the end of the timeline's key range, and the sparse `promises-by-date` index.

use super::model::Activity;
use crate::accounts::keys::shard_of;
use crate::accounts::model::format_date;

/// Sort key of an account's call-log item in the Activities table: the times of its call
/// attempts in the last 7 days and of its last right-party conversation (Regulation F).
/// Not a ULID, so timeline queries (`sk < TIMELINE_SK_END`) never see it.
pub const CALL_LOG_SK: &str = "CALLS";

/// Every activity id (a ULID) sorts below this (ULIDs start with 0..7).
pub const TIMELINE_SK_END: &str = "8";

/// Shards of the `promises-by-date` index partition.
pub const PROMISE_SHARDS: u32 = 8;

/// The `promises-by-date` keys of a promise to pay: `promise_pk = PROMISE#<shard>`,
/// `promise_sk = <promise date>#<account id>#<activity id>`. The broken-promise batch
/// queries every shard for `promise_sk < <today>` and removes the keys of the promises it
/// settles (the index is sparse).
pub fn promise_keys(activity: &Activity) -> Option<(String, String)> {
    let date = activity.promise_date?;
    let shard = shard_of(activity.account_id) % PROMISE_SHARDS;
    Some((
        format!("PROMISE#{shard}"),
        format!(
            "{}#{}#{}",
            format_date(date),
            activity.account_id,
            activity.id
        ),
    ))
}
