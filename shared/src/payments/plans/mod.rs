//! Payment plans (issue 18): an agreed schedule of installments that pays an account's
//! balance down over weeks or months.
//!
//! - [`model`]: [`Plan`] (header, installments and the payments it received, one item),
//!   its statuses, the API view with each installment's paid amount and status.
//! - [`schedule`]: the schedule math: due dates, amounts, which installments a plan's
//!   payments cover, which are missed.
//! - [`store`]: [`PlanStore`]: the Plans table, the transactions that create and end a
//!   plan together with the account's status move, the due-date Query of the scheduler.
//!
//! # Storage: a Plans table, the whole plan in one item
//!
//! A plan lives in its own table (pk = account id), so the payments history and its
//! stream are unchanged and the audit writer and the notifier can follow plans on their
//! own stream. The account's **active** plan has sort key `ACTIVE`: at most one item can
//! have it, so "one active plan per account" is the `attribute_not_exists` condition of
//! its Put, and the ledger finds it with one GetItem. When the plan ends (completed,
//! cancelled, broken) it moves to sort key = its id in the same transaction (Delete of
//! `ACTIVE` + Put), which frees the slot for the next plan.
//!
//! Header, installments and receipts (payment id → amount applied) are one item (a
//! 12-installment plan with a dozen payments is well under 4 KB), so a payment changes the
//! plan with **one** conditional write on its `version` inside the ledger's
//! `TransactWriteItems`; concurrent payments retry on the version like the ledger already
//! does on the balance. Installment paid amounts are not stored: they are the receipts'
//! sum poured over the installments oldest first ([`schedule::allocate`]), so an
//! overpayment rolls forward and a refund (its receipt removed) re-opens the newest
//! installments first, and nothing can disagree with the receipts.
//!
//! The active plan carries the sparse `plans-by-due` keys: `due_pk = PLANDUE#<shard>`,
//! `due_sk = <due date of its oldest open installment>#<account id>`; the
//! missed-installments job Queries `due_sk < <today − grace>` per shard, never a Scan.

pub mod model;
pub mod schedule;
pub mod store;

pub use model::{
    Frequency, Installment, InstallmentStatus, InstallmentView, Plan, PlanStatus, PlanView, Receipt,
};
pub use schedule::Split;
pub use store::{PlanStore, WriteOutcome};
