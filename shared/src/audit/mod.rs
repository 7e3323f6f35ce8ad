//! The audit trail (issue 18): who changed what, when, from where — every change to
//! accounts, payments, users, bulk jobs and imports, complete and exactly once.
//!
//! - **Complete**: the trail is built from the tables' DynamoDB Streams
//!   (`NEW_AND_OLD_IMAGES`), which carry every write whoever makes it: the API, the bulk
//!   worker, the importer, the scheduler. No writer has to remember to log.
//! - **Who**: each writer stamps its item with the [`Actor`] of the write ([`actor`]): the
//!   stream then carries the actor with the change.
//! - **Exactly once**: the audit writer (`functions/audit-writer`) keys each entry by the
//!   stream record's `eventID` and writes it with `attribute_not_exists`, so a redelivered
//!   batch writes nothing twice ([`store`]).
//! - **What**: [`entry`] turns a record into an [`AuditEntry`]: the entity, the verb, the
//!   audited fields with their old and new values. Secrets never: [`fields`] is the one
//!   allow/deny list. Records that change only bookkeeping (index keys, counters) are
//!   skipped.
//! - **Immutable**: only the writer may write the Audit table, and only `PutItem`
//!   (template.yaml); entries expire by TTL after `AuditRetentionYears`.

pub mod actor;
pub mod entry;
pub mod fields;
pub mod store;

pub use actor::{acting, identify, stamp, Actor, Stamp, Stamped};
pub use entry::{AuditEntry, EventKind, FieldChange, Source, StreamChange};
pub use store::{AuditQuery, AuditStore, Position, Selector};
