//! The dashboard: aggregates materialised from the tables' streams (by the `notifier`),
//! read by `GET /dashboard/summary` (the `dashboard` function) and checked by the
//! reconciliation (`make reconcile`).
//!
//! - [`tally`]: what an item contributes, as a pure function of its image; a stream record
//!   changes the aggregates by `contribution(new) − contribution(old)`.
//! - [`store`]: applying changes exactly once per stream record; reading counters.
//! - [`summary`]: the answer of `GET /dashboard/summary`.
//! - [`reconcile`]: recompute from the tables and report drift.

pub mod reconcile;
pub mod store;
pub mod summary;
pub mod tally;

pub use store::{AggregateStore, Applied, Change};
pub use summary::{summary, Summary, View};
pub use tally::{AggregateKey, Counters, Item, Period, Scope, Tally, Tracked};
