//! Keys of the Accounts table and its indexes.
//!
//! # Items
//!
//! | item | `pk` | other attributes |
//! | --- | --- | --- |
//! | account | `ACCOUNT#<id>` | the [`Account`] fields + the index keys below |
//! | reference uniqueness | `REF#<lower-cased reference>` | `account_id` |
//!
//! # Index keys (written on every account; removed when the account is soft-deleted, so
//! a deleted account leaves every list at once — the indexes are sparse)
//!
//! | attribute | value | why |
//! | --- | --- | --- |
//! | `all_pk` | `ALL#<shard>` | every account; [`SHARDS`] partitions, so no key takes every write |
//! | `status_pk` | `ST#<status>#<shard>` | one status; sharded too (most accounts are `active`) |
//! | `agent_pk` | `AG#<agent id>` | the assigned agent (absent when unassigned); agents spread writes |
//! | `created_sk` | `<created µs, 16 digits>#<id>` | sort by `created_at` |
//! | `updated_sk` | `<updated µs, 16 digits>#<id>` | sort by `updated_at` |
//! | `balance_sk` | `<balance, 19 digits>#<id>` | sort by / range of `balance` |
//! | `due_sk` | `<YYYY-MM-DD>#<id>` | sort by `due_date` / `days_past_due`; a `dpd_bucket` is a due-date range |
//! | `s{ref,name,email,phone}_pk` | `<field letter>#<first 2 chars>` | search partition, by prefix |
//! | `s{ref,name,email,phone}_sk` | `<normalised value>#<id>` | `begins_with` prefix search |
//!
//! Every sort key ends in `#<id>`, so it is unique and keyset paging never skips or
//! repeats ties.
//!
//! # Access patterns → index
//!
//! A list picks its *partition* from the filters (agent scope or `agent_id` → the agent's
//! partition; else `status` → that status's shards; else all shards) and its *sort key*
//! from `sort`; the GSI is `acc-<partition>-<sort>`:
//!
//! | pattern | index | key condition | filter expression |
//! | --- | --- | --- | --- |
//! | all, newest first (default) | `acc-all-created` ×8 shards | — | — |
//! | sorted by `updated_at` | `acc-all-updated` ×8 | — | — |
//! | sorted by balance / balance range | `acc-all-balance` ×8 | `balance_sk BETWEEN` | — |
//! | sorted by due date / days past due, dpd bucket | `acc-all-due` ×8 | `due_sk BETWEEN` | — |
//! | by status (+ any sort) | `acc-status-<sort>` ×8 | `status_pk` (+ range) | — |
//! | by agent / an agent's own list (+ any sort) | `acc-agent-<sort>` | `agent_pk` (+ range) | `status` if given |
//! | balance range with another sort | the sort's index | — | `balance BETWEEN` |
//! | dpd bucket with another sort | the sort's index | — | `due_date BETWEEN` |
//! | search `q` | `acc-search-{ref,name,email,phone}` in parallel | `s*_pk = prefix[..2]`, `begins_with(s*_sk, prefix)` | every other filter |
//!
//! Sharded partitions and the four search indexes are queried in parallel and merged in
//! sort order ([`super::list`]); the cursor carries every stream's position.

use super::model::Account;
use super::search::{partition_of, SearchField};
use crate::domain::Id;

/// Shards of the `ALL#` and `ST#` partitions. Changing it needs a re-index of the table.
pub const SHARDS: u32 = 8;

/// The attribute of the account item holding the bulk jobs applied to it (see
/// [`crate::bulk`]: a job is applied to an account exactly once).
pub const MARKER_ATTRIBUTE: &str = "bulk_jobs";
/// How long a bulk job's marker stays on an account (longer than any redelivery: queue
/// retention 4 days, DLQ 14 days).
pub const MARKER_DAYS: u64 = 30;

/// Table key of an account.
pub fn account_pk(id: Id) -> String {
    format!("ACCOUNT#{id}")
}

/// The whole key of an account's item (`pk` alone), for reads such as `BatchGetItem`.
pub fn account_key(id: Id) -> crate::dynamo::Item {
    crate::dynamo::Item::from([(
        "pk".to_owned(),
        crate::dynamo::attributes::s(account_pk(id)),
    )])
}

/// Table key of a reference's uniqueness item.
pub fn reference_pk(reference: &str) -> String {
    format!("REF#{}", reference.trim().to_lowercase())
}

/// The shard of an account: FNV-1a of its id, stable across processes and versions.
pub fn shard_of(id: Id) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in id.to_string().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % SHARDS
}

/// The id at the end of a sort key (`...#<id>`).
pub fn id_of_sort_key(sort_key: &str) -> Option<Id> {
    sort_key.rsplit('#').next()?.parse().ok()
}

/// What a list is partitioned by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partition {
    All,
    Status(super::model::AccountStatus),
    Agent(Id),
}

impl Partition {
    pub fn name(&self) -> &'static str {
        match self {
            Partition::All => "all",
            Partition::Status(_) => "status",
            Partition::Agent(_) => "agent",
        }
    }

    pub fn pk_attribute(&self) -> &'static str {
        match self {
            Partition::All => "all_pk",
            Partition::Status(_) => "status_pk",
            Partition::Agent(_) => "agent_pk",
        }
    }

    /// Every partition key value a list of this partition queries.
    pub fn pk_values(&self) -> Vec<String> {
        match self {
            Partition::All => (0..SHARDS).map(|s| format!("ALL#{s}")).collect(),
            Partition::Status(status) => (0..SHARDS).map(|s| format!("ST#{status}#{s}")).collect(),
            Partition::Agent(agent) => vec![format!("AG#{agent}")],
        }
    }
}

/// What a list is sorted by (the index's sort key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Created,
    Updated,
    Balance,
    Due,
}

impl SortKey {
    pub fn name(&self) -> &'static str {
        match self {
            SortKey::Created => "created",
            SortKey::Updated => "updated",
            SortKey::Balance => "balance",
            SortKey::Due => "due",
        }
    }

    pub fn attribute(&self) -> &'static str {
        match self {
            SortKey::Created => "created_sk",
            SortKey::Updated => "updated_sk",
            SortKey::Balance => "balance_sk",
            SortKey::Due => "due_sk",
        }
    }
}

/// The GSI serving a partition sorted by a key.
pub fn list_index(partition: &Partition, sort: SortKey) -> String {
    format!("acc-{}-{}", partition.name(), sort.name())
}

/// The GSI of a search field and its key attributes.
pub fn search_index(
    field: SearchField,
) -> (&'static str, &'static str, &'static str, &'static str) {
    match field {
        SearchField::Reference => ("acc-search-ref", "sref_pk", "sref_sk", "R"),
        SearchField::Name => ("acc-search-name", "sname_pk", "sname_sk", "N"),
        SearchField::Email => ("acc-search-email", "semail_pk", "semail_sk", "E"),
        SearchField::Phone => ("acc-search-phone", "sphone_pk", "sphone_sk", "P"),
    }
}

/// The search value of an account for a field.
pub fn search_value(account: &Account, field: SearchField) -> String {
    let raw = match field {
        SearchField::Reference => &account.reference,
        SearchField::Name => &account.debtor_name,
        SearchField::Email => &account.debtor_email,
        SearchField::Phone => &account.debtor_phone,
    };
    field.normalise(raw)
}

fn micros(ts: crate::domain::Timestamp) -> i128 {
    ts.as_offset_date_time().unix_timestamp_nanos() / 1000
}

/// Encodes a balance for a sort key (balances are never negative; clamp defensively).
pub fn balance_key(balance: i64) -> String {
    format!("{:019}", balance.max(0))
}

/// The index key `name` of `account` (as [`index_keys`] computes it).
pub fn index_key(account: &Account, name: &str) -> Option<String> {
    index_keys(account)
        .into_iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Every index key attribute of a live account.
pub fn index_keys(account: &Account) -> Vec<(&'static str, String)> {
    let id = account.id;
    let shard = shard_of(id);
    let mut keys = vec![
        ("all_pk", format!("ALL#{shard}")),
        ("status_pk", format!("ST#{}#{shard}", account.status)),
        (
            "created_sk",
            format!("{:016}#{id}", micros(account.created_at)),
        ),
        (
            "updated_sk",
            format!("{:016}#{id}", micros(account.updated_at)),
        ),
        (
            "balance_sk",
            format!("{}#{id}", balance_key(account.balance.0)),
        ),
        (
            "due_sk",
            format!("{}#{id}", super::model::format_date(account.due_date)),
        ),
    ];
    if let Some(agent) = account.assigned_agent_id {
        keys.push(("agent_pk", format!("AG#{agent}")));
    }
    for field in SearchField::ALL {
        let value = search_value(account, field);
        let (_, pk, sk, letter) = search_index(field);
        if let Some(partition) = partition_of(&value) {
            keys.push((pk, format!("{letter}#{partition}")));
            keys.push((sk, format!("{value}#{id}")));
        }
    }
    keys
}

/// Every index key attribute name (removed on soft delete).
pub const INDEX_ATTRIBUTES: [&str; 15] = [
    "all_pk",
    "status_pk",
    "agent_pk",
    "created_sk",
    "updated_sk",
    "balance_sk",
    "due_sk",
    "sref_pk",
    "sref_sk",
    "sname_pk",
    "sname_sk",
    "semail_pk",
    "semail_sk",
    "sphone_pk",
    "sphone_sk",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_spread_and_sort_keys_end_in_the_id() {
        let mut counts = [0_u32; SHARDS as usize];
        for _ in 0..4000 {
            counts[shard_of(Id::generate()) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 300), "{counts:?}");
        let id = Id::generate();
        assert_eq!(id_of_sort_key(&format!("0001#{id}")), Some(id));
        assert!(balance_key(5) < balance_key(40));
    }
}
