//! Placement imports (issue 18): a creditor's CSV file of accounts, uploaded straight to S3
//! and created row by row by `importer` through the same validation and repository as
//! `POST /accounts`. `imports` (the API) writes the import and signs the upload URL.
//!
//! - [`model`]: the import, its counters, the file's columns and the rows it reports.
//! - [`keys`]: the S3 object key (and decoding it from an event), the table keys.
//! - [`store`]: [`ImportStore`], the import's items in the Jobs table.
//!
//! # Items (Jobs table, `pk` = import id)
//!
//! | `sk` | what | written by |
//! | --- | --- | --- |
//! | `IMPORT` | the import: state, size, mapping, `total_rows`, counters | api; state and counters by the importer |
//! | `ICHUNK#<chunk>` | a chunk of rows was counted (condition `attribute_not_exists`) | importer, in the same transaction as the counters' `ADD` |
//! | `IROW#<line>` | a row that was not created: `{line, column, reason, message}` | importer |
//!
//! Import items carry no list keys, so they never show in the bulk jobs' lists.
//!
//! # Exactly once per row
//!
//! - An account's reference is its key: a row is created with its reference claimed in the
//!   same transaction (`AccountRepo::create_many`, 25 accounts to a transaction, each
//!   account and claim conditional), so no reference is ever created twice, whatever S3,
//!   SQS or a client sends again.
//! - A row's account id is derived from (import, line), so when a redelivered chunk finds
//!   its reference taken, the claim's `account_id` tells "created by this row before"
//!   (counted as created) from "another account's" (`duplicate`).
//! - Rows are read in fixed chunks of the file; a chunk is counted by one transaction (its
//!   marker, condition not exists, + `ADD` of its counts), so counters never count a row
//!   twice, and a resumed import skips the chunks already counted. A large file's parts
//!   (whole numbers of chunks, written by other invocations) count their chunks under the
//!   same indices, so a part sent or written twice counts nothing twice; whoever counts
//!   the last rows (`rows_read` = `total_rows`) ends the import.
//! - A re-uploaded file finds its import ended (or, under a new import, every reference
//!   taken: `duplicate`, or in mode `upsert` each account updated again to the same values,
//!   which writes nothing).
//! - Mode `upsert` updates an existing account through `AccountRepo::replace` (conditional
//!   on the version read, with the same audit activities as `PATCH /accounts/{id}`); a
//!   redelivered row finds the account already up to date and writes nothing.

pub mod keys;
pub mod model;
pub mod store;

pub use model::{
    import_visible_to, Columns, Counts, Field, Import, ImportMode, ImportState, RowError,
    RowReason, MAX_FILE_BYTES, UPLOAD_URL_SECONDS,
};
pub use store::{ImportStore, IMPORT_TTL_DAYS};
