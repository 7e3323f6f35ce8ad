//! Activities: an account's timeline (Activities table: `pk` = account id, `sk` = activity
//! id), the call log kept for Regulation F, and the activities other writes log in their
//! own transaction.
//!
//! - [`model`]: [`Activity`], [`ActivityType`], [`CallOutcome`], the item mapping,
//!   [`status_change`].
//! - [`keys`]: the call log's sort key, the end of the timeline, the `promises-by-date` keys.
//! - [`calls`]: [`CallLog`] and the call-frequency rules.
//! - [`store`]: [`ActivityStore`], every DynamoDB request of the activities API, and
//!   [`activity_put`], the `Put` other transactions log their activity with.

pub mod calls;
pub mod keys;
pub mod model;
pub mod store;

pub use calls::CallLog;
pub use keys::{promise_keys, CALL_LOG_SK, PROMISE_SHARDS, TIMELINE_SK_END};
pub use model::{status_change, Activity, ActivityType, CallOutcome};
pub use store::{account_live_check, activity_put, ActivityStore};
