//! Bulk account updates: the job resource ([`model`]), its items in the Jobs table
//! ([`keys`], [`store`]), the SQS messages ([`messages`]), the accounts a filter job pages
//! ([`filter`]) and what a chunk reads and writes ([`chunks`]). `bulk-api` writes jobs and
//! plans, `bulk-worker` applies chunks and counts them.
//!
//! # Items (Jobs table, `pk` = job id)
//!
//! | `sk` | what | written by |
//! | --- | --- | --- |
//! | `JOB` | the job: state, `total`, counters, spec (changes + filter), list keys | api; counters by the worker (atomic `ADD`) |
//! | `CHUNK#<chunk>` | a chunk was counted (condition `attribute_not_exists`) | worker, in the same transaction as the counters' `ADD` |
//! | `FAIL#<account>` | `{account_id, reason, message}` (first writer wins) | worker |
//! | `PAGE#<partition>#<seq>` | one page of a filter's Query, frozen: ids + next cursor | planner |
//!
//! # Exactly once
//!
//! - Per (job, account): the account item carries the set `bulk_jobs` of the jobs applied
//!   to it; the write is conditional on the version read (and on not being deleted), and a
//!   job already in the set is never applied again. So a change is one conditional write
//!   (a transaction only when a status change logs its activity) and never applies twice,
//!   whatever SQS redelivers. Entries older than
//!   [`MARKER_DAYS`](crate::accounts::keys::MARKER_DAYS) are pruned on each write.
//! - Per chunk: chunks have deterministic ids and contents (id lists are sliced by
//!   position; a filter's pages are frozen in `PAGE#` items before they are enqueued), and
//!   a chunk is counted by one transaction `Put CHUNK#<chunk>` (condition not exists) +
//!   `ADD processed, succeeded, failed, cancelled` on the job. A redelivered or duplicated
//!   chunk re-derives each account's outcome from the markers (already applied →
//!   succeeded, `FAIL#` present → failed) and its commit is refused: counted once.
//! - `finished_at` and the final state are set by one conditional update when
//!   `processed >= total` and every filter partition is planned.

pub mod chunks;
pub mod filter;
pub mod keys;
pub mod messages;
pub mod model;
pub mod store;

pub use chunks::{ChunkRead, ChunkStore, StoredAccount};
pub use filter::{FilterQuery, PAGE_SIZE};
pub use keys::{creator_pk, INDEX_BY_CREATED, INDEX_BY_CREATOR, JOB_SK, LIST_PK};
pub use messages::{chunks_of, plan_ids, BulkMessage, JobQueue, CHUNK_SIZE, PLAN_IDS};
pub use model::{
    clean_tag, job_visible_to, AgentChange, Changes, ChangesBody, Counts, Failure, FailureReason,
    Filter, Job, JobRecord, JobSpec, JobState, MAX_IDS, MAX_TAGS,
};
pub use store::{FrozenPage, JobStore, JOB_TTL_DAYS};
