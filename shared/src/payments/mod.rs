//! Payments: the Payment resource, its item in the Payments table (`pk` = account id,
//! `sk` = payment id), and the [`Ledger`], the one place a payment and the balance it
//! changes are written — always in one `TransactWriteItems`.
//!
//! - [`model`]: [`Payment`], [`PaymentMethod`], [`PaymentStatus`] (the status machine),
//!   the item mapping.
//! - [`keys`]: the key of a payment item.
//! - [`balance`]: [`BalanceChange`] and the conditional account update that applies it.
//! - [`ledger`]: [`Ledger`]: the transactions, their retries, the payment reads.
//! - [`plans`]: payment plans; the ledger applies every completed payment, refund and
//!   reversal to the account's active plan in the same transaction (one more item,
//!   conditional on the plan's version: see `docs/plans.md`).
//!
//! # No read-modify-write of the balance
//!
//! The ledger reads the account only to *choose* the shape of the write, never to compute
//! the stored balance:
//!
//! - a debit of `a` on an observed balance `b > a` is `SET balance = balance - :a` under
//!   `balance > :a` (the account stays open);
//! - a debit with `b == a` is the pay-off: `SET balance = 0, status = paid` under
//!   `balance = :a` (so `paid` is set exactly when the balance reaches 0);
//! - a credit (refund, reversal) is `SET balance = balance + :a` under `status <> paid`,
//!   or, on a paid account, the same plus `status = active` under `status = paid`.
//!
//! Every variant also requires `attribute_not_exists(deleted_at)` and adds 1 to `version`.
//! When the observation was stale the condition fails, the ledger reads again and picks
//! again (in practice at most once more per state change that crossed it). So N concurrent
//! debits on one account each apply exactly once or are refused — never a lost update.
//!
//! The balance sort key of the accounts indexes (`balance_sk`) is derived data the update
//! expression cannot compute from a relative change. So the ledger's first try is
//! **pinned**: it also requires `version` to be the observed one, which makes the balance it
//! leaves known, and sets `balance_sk` in the same write (one agent works an account, so
//! this is the common case: no call after the transaction). When that observation was
//! stale, the retries are relative as above, and after a successful non-pay-off relative
//! write the ledger refreshes the key with a conditional update on the version it reads
//! ([`Ledger::refresh_balance_key`]): the writer of the last version always succeeds, so the
//! key converges to the balance.
//!
//! `TransactionCanceledException` with `TransactionConflict` (another transaction on the
//! same item in flight) is retried with jittered exponential backoff
//! ([`crate::dynamo::retry`]), [`CONFLICT_RETRIES`](crate::dynamo::retry::CONFLICT_RETRIES)
//! times, before the caller gets a `409`.

pub mod balance;
pub mod keys;
pub mod ledger;
pub mod model;
pub mod plans;

pub use balance::BalanceChange;
pub use ledger::{Ledger, LedgerRefusal, PaymentWrite};
pub use model::{Payment, PaymentMethod, PaymentStatus, AGENT_ATTRIBUTE};
