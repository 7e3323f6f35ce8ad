//! Account lists: every list is one or more `Query`s (never a `Scan`), merged in sort order.
//!
//! A [`ListRequest`] becomes a [`Plan`]: the *streams* to query (the 8 shards of a sharded
//! partition, the agent's one partition, or the four search indexes), the key condition
//! each gets (a balance or due-date range when the sort key can serve it, a search prefix),
//! and one filter expression for the filters no key can serve. [`AccountRepo::list`] runs a
//! k-way merge over the streams: each stream is fetched lazily (concurrently when several
//! run dry at once), the smallest head (largest when descending) is taken next, until the
//! page has `limit` accounts, every stream is exhausted, or the request has read
//! [`MAX_ITEMS_READ`] items (a selective filter then returns a short page whose cursor
//! carries on).
//!
//! The cursor holds each stream's position (the sort key of the last item consumed from
//! it, or start / done). Sort keys end in the account id, so they are unique: paging visits
//! every account exactly once as long as its sort value does not change while the client
//! pages (accounts added between pages appear if they sort after the position reached;
//! `created_at` and `due_date` sorts are stable under updates). The cursor is signed with
//! the list's *scope* — the caller's RBAC scope, every filter, the sort — so a cursor of
//! another query, or an edited one, is a `400`.
//!
//! Search (`q`) merges the four search indexes by the matched normalised value; an account
//! that matches in several fields is emitted only at its smallest matching key, so it is
//! listed once without any state in the cursor.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::keys::{self, balance_key, list_index, search_index, Partition, SortKey};
use super::model::{format_date, Account, AccountStatus, DpdBucket};
use super::repo::AccountRepo;
use super::search::SearchField;
use crate::cursor::CursorSigner;
use crate::domain::Id;
use crate::error::ApiError;

/// The most items one list request reads (`ScannedCount` summed over its queries).
pub const MAX_ITEMS_READ: i32 = 1000;

/// A list's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

impl Sort {
    /// The values `sort` accepts.
    pub const NAMES: &'static str = "created_at, -created_at, updated_at, -updated_at, balance, -balance, due_date, -due_date, days_past_due, -days_past_due";

    pub fn parse(text: &str) -> Result<Self, String> {
        let (descending, name) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (key, descending) = match name {
            "created_at" => (SortKey::Created, descending),
            "updated_at" => (SortKey::Updated, descending),
            "balance" => (SortKey::Balance, descending),
            "due_date" => (SortKey::Due, descending),
            // More days past due = an earlier due date.
            "days_past_due" => (SortKey::Due, !descending),
            _ => return Err(format!("must be one of {}", Self::NAMES)),
        };
        Ok(Self { key, descending })
    }

    /// Newest first.
    pub const DEFAULT: Sort = Sort {
        key: SortKey::Created,
        descending: true,
    };
}

/// What a caller asked to list, validated.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// An agent's RBAC scope: only its accounts.
    pub scope_agent: Option<Id>,
    pub status: Option<AccountStatus>,
    pub agent_id: Option<Id>,
    pub min_balance: Option<i64>,
    pub max_balance: Option<i64>,
    pub dpd_bucket: Option<DpdBucket>,
    pub q: Option<String>,
    pub sort: Option<Sort>,
    pub limit: usize,
}

impl ListRequest {
    /// The string a cursor is bound to: everything that selects and orders the list
    /// (not `limit`, which a client may change between pages).
    pub fn scope(&self) -> String {
        let sort = self.sort.unwrap_or(Sort::DEFAULT);
        format!(
            "accounts|scope={:?}|status={:?}|agent={:?}|min={:?}|max={:?}|dpd={:?}|q={:?}|sort={}{}",
            self.scope_agent.map(|a| a.to_string()),
            self.status.map(|s| s.as_str()),
            self.agent_id.map(|a| a.to_string()),
            self.min_balance,
            self.max_balance,
            self.dpd_bucket.map(|b| b.as_str()),
            self.q.as_deref().map(crate::accounts::search::fold),
            sort.key.name(),
            if sort.descending { "-" } else { "+" },
        )
    }
}

/// One query stream of a plan.
#[derive(Debug, Clone)]
pub struct Stream {
    pub index: String,
    pub pk_attribute: &'static str,
    pub pk_value: String,
    pub sk_attribute: &'static str,
    pub condition: SkCondition,
    /// The search field this stream matches (search plans only).
    pub field: Option<SearchField>,
}

#[derive(Debug, Clone)]
pub enum SkCondition {
    None,
    Between(String, String),
    BeginsWith(String),
}

/// How a list request is served.
#[derive(Debug, Clone)]
pub struct Plan {
    pub streams: Vec<Stream>,
    pub descending: bool,
    /// `(expression, values)`; names are `#status`, `#agent`, `#balance`, `#due`, `#deleted`.
    pub filter: String,
    pub filter_values: HashMap<String, AttributeValue>,
    /// The normalised prefixes of a search (field → prefix).
    pub search: Vec<(SearchField, String)>,
}

fn range(lo: Option<String>, hi: Option<String>) -> SkCondition {
    match (lo, hi) {
        (None, None) => SkCondition::None,
        (lo, hi) => SkCondition::Between(
            lo.map(|l| format!("{l}#")).unwrap_or_else(|| "0".into()),
            hi.map(|h| format!("{h}#~")).unwrap_or_else(|| "~".into()),
        ),
    }
}

impl Plan {
    /// The plan of a request on `today` (which a `dpd_bucket` is relative to).
    pub fn new(request: &ListRequest, today: time::Date) -> Result<Self, ApiError> {
        let agent = request.scope_agent.or(request.agent_id);
        let mut filters: Vec<String> = vec!["attribute_not_exists(#deleted)".into()];
        let mut values: HashMap<String, AttributeValue> = HashMap::new();
        let due_range = request.dpd_bucket.map(|b| b.due_range(today));
        let balance_filter = |filters: &mut Vec<String>, values: &mut HashMap<_, _>| {
            if let Some(min) = request.min_balance {
                filters.push("#balance >= :min_balance".into());
                values.insert(":min_balance".into(), AttributeValue::N(min.to_string()));
            }
            if let Some(max) = request.max_balance {
                filters.push("#balance <= :max_balance".into());
                values.insert(":max_balance".into(), AttributeValue::N(max.to_string()));
            }
        };
        let due_filter = |filters: &mut Vec<String>, values: &mut HashMap<_, _>| {
            if let Some((lo, hi)) = due_range {
                if let Some(lo) = lo {
                    filters.push("#due >= :due_lo".into());
                    values.insert(":due_lo".into(), AttributeValue::S(format_date(lo)));
                }
                if let Some(hi) = hi {
                    filters.push("#due <= :due_hi".into());
                    values.insert(":due_hi".into(), AttributeValue::S(format_date(hi)));
                }
            }
        };

        if let Some(q) = &request.q {
            if request.sort.is_some() {
                return Err(ApiError::invalid_field(
                    "sort",
                    "cannot be combined with q: search results are ordered by the matched value",
                ));
            }
            let search: Vec<(SearchField, String)> = SearchField::ALL
                .into_iter()
                .filter_map(|field| field.query_prefix(q).map(|prefix| (field, prefix)))
                .collect();
            if search.is_empty() {
                return Err(ApiError::invalid_field(
                    "q",
                    "must have at least 2 letters or digits",
                ));
            }
            if let Some(status) = request.status {
                filters.push("#status = :status".into());
                values.insert(":status".into(), AttributeValue::S(status.to_string()));
            }
            if let Some(agent) = agent {
                filters.push("#agent = :agent".into());
                values.insert(":agent".into(), AttributeValue::S(agent.to_string()));
            }
            balance_filter(&mut filters, &mut values);
            due_filter(&mut filters, &mut values);
            let streams = search
                .iter()
                .filter_map(|(field, prefix)| {
                    let (index, pk, sk, letter) = search_index(*field);
                    let partition = super::search::partition_of(prefix)?;
                    Some(Stream {
                        index: index.to_owned(),
                        pk_attribute: pk,
                        pk_value: format!("{letter}#{partition}"),
                        sk_attribute: sk,
                        condition: SkCondition::BeginsWith(prefix.clone()),
                        field: Some(*field),
                    })
                })
                .collect();
            return Ok(Self {
                streams,
                descending: false,
                filter: filters.join(" AND "),
                filter_values: values,
                search,
            });
        }

        let sort = request.sort.unwrap_or(Sort::DEFAULT);
        let partition = match (agent, request.status) {
            (Some(agent), status) => {
                if let Some(status) = status {
                    filters.push("#status = :status".into());
                    values.insert(":status".into(), AttributeValue::S(status.to_string()));
                }
                Partition::Agent(agent)
            }
            (None, Some(status)) => Partition::Status(status),
            (None, None) => Partition::All,
        };
        let condition = match sort.key {
            SortKey::Balance => {
                due_filter(&mut filters, &mut values);
                range(
                    request.min_balance.map(balance_key),
                    request.max_balance.map(balance_key),
                )
            }
            SortKey::Due => {
                balance_filter(&mut filters, &mut values);
                match due_range {
                    Some((lo, hi)) => range(lo.map(format_date), hi.map(format_date)),
                    None => SkCondition::None,
                }
            }
            SortKey::Created | SortKey::Updated => {
                balance_filter(&mut filters, &mut values);
                due_filter(&mut filters, &mut values);
                SkCondition::None
            }
        };
        let index = list_index(&partition, sort.key);
        let streams = partition
            .pk_values()
            .into_iter()
            .map(|pk_value| Stream {
                index: index.clone(),
                pk_attribute: partition.pk_attribute(),
                pk_value,
                sk_attribute: sort.key.attribute(),
                condition: condition.clone(),
                field: None,
            })
            .collect();
        Ok(Self {
            streams,
            descending: sort.descending,
            filter: filters.join(" AND "),
            filter_values: values,
            search: Vec::new(),
        })
    }

    fn uses(&self, name: &str) -> bool {
        self.filter.contains(name)
    }
}

/// Where a stream stands between pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    Start,
    After(String),
    Done,
}

#[derive(Debug, Serialize, Deserialize)]
struct CursorState {
    /// One position per stream of the plan.
    p: Vec<Position>,
}

/// A page of accounts.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Account>,
    pub next_cursor: Option<String>,
    /// Items DynamoDB read for this page (for logs and benchmarks).
    pub items_read: i32,
}

struct StreamState {
    position: Position,
    buffer: VecDeque<(String, Account)>,
    /// Where the next fetch starts when the buffer is empty (`None`: exhausted).
    next: Option<Position>,
}

struct Fetched {
    items: Vec<(String, Account)>,
    last_key: Option<String>,
    scanned: i32,
}

impl AccountRepo {
    /// One page of a list (see the module docs).
    pub async fn list(
        &self,
        request: &ListRequest,
        cursor: Option<&str>,
        signer: &CursorSigner,
        today: time::Date,
    ) -> Result<Page, ApiError> {
        let plan = Plan::new(request, today)?;
        let scope = request.scope();
        let positions = match cursor {
            Some(cursor) => {
                let state: CursorState = signer.verify(&scope, cursor)?;
                if state.p.len() != plan.streams.len() {
                    return Err(ApiError::invalid_field(
                        "cursor",
                        "is not a cursor this list issued",
                    ));
                }
                state.p
            }
            None => vec![Position::Start; plan.streams.len()],
        };
        let mut states: Vec<StreamState> = positions
            .into_iter()
            .map(|position| StreamState {
                next: (position != Position::Done).then(|| position.clone()),
                position,
                buffer: VecDeque::new(),
            })
            .collect();
        let limit = request.limit.max(1);
        let streams = plan.streams.len().max(1);
        let mut items: Vec<Account> = Vec::with_capacity(limit);
        let mut read = 0_i32;
        let mut first_round = true;

        'page: while items.len() < limit {
            // Refill every live stream whose buffer ran dry, concurrently.
            let dry: Vec<usize> = states
                .iter()
                .enumerate()
                .filter(|(_, s)| s.buffer.is_empty() && s.next.is_some())
                .map(|(i, _)| i)
                .collect();
            if !dry.is_empty() {
                if read >= MAX_ITEMS_READ {
                    break 'page;
                }
                let wanted = limit - items.len();
                // First round: an even share plus slack; later: what is still missing.
                let fetch_limit = if first_round && streams > 1 {
                    wanted / streams + 3
                } else {
                    wanted + 1
                };
                first_round = false;
                let fetches = dry.iter().map(|&i| {
                    let start = states[i].next.clone().unwrap_or(Position::Start);
                    self.fetch(&plan, &plan.streams[i], start, fetch_limit.min(500) as i32)
                });
                let results = futures::future::join_all(fetches).await;
                for (&i, result) in dry.iter().zip(results) {
                    let fetched = result?;
                    read += fetched.scanned;
                    let state = &mut states[i];
                    state.buffer.extend(fetched.items);
                    state.next = fetched.last_key.map(Position::After);
                    if state.buffer.is_empty() {
                        // Everything read was filtered out: the stream moved on anyway.
                        state.position = state.next.clone().unwrap_or(Position::Done);
                    }
                }
                continue 'page;
            }
            // Every live stream has a head: take the first in sort order.
            let mut best: Option<usize> = None;
            for (i, state) in states.iter().enumerate() {
                let Some((key, _)) = state.buffer.front() else {
                    continue;
                };
                best = match best {
                    None => Some(i),
                    Some(b) => {
                        let current = &states[b].buffer[0].0;
                        let order = key.cmp(current);
                        let better = if plan.descending {
                            order == Ordering::Greater
                        } else {
                            order == Ordering::Less
                        };
                        Some(if better { i } else { b })
                    }
                };
            }
            let Some(best) = best else {
                break 'page; // every stream exhausted
            };
            let state = &mut states[best];
            let Some((key, account)) = state.buffer.pop_front() else {
                break 'page;
            };
            state.position = if state.buffer.is_empty() {
                state.next.clone().unwrap_or(Position::Done)
            } else {
                Position::After(key.clone())
            };
            let emit = match plan.streams[best].field {
                Some(field) => canonical_match(&plan, &account) == Some((key.clone(), field)),
                None => true,
            };
            if emit {
                items.push(account);
            }
        }

        let more = states
            .iter()
            .any(|s| !s.buffer.is_empty() || s.position != Position::Done);
        let next_cursor = if more {
            Some(signer.sign(
                &scope,
                &CursorState {
                    p: states.into_iter().map(|s| s.position).collect(),
                },
            )?)
        } else {
            None
        };
        Ok(Page {
            items,
            next_cursor,
            items_read: read,
        })
    }

    async fn fetch(
        &self,
        plan: &Plan,
        stream: &Stream,
        start: Position,
        limit: i32,
    ) -> Result<Fetched, ApiError> {
        let mut query = self
            .dynamodb
            .query()
            .table_name(self.table.as_str())
            .index_name(&stream.index)
            .scan_index_forward(!plan.descending)
            .limit(limit.max(1))
            .expression_attribute_names("#pk", stream.pk_attribute)
            .expression_attribute_values(":pk", AttributeValue::S(stream.pk_value.clone()))
            .expression_attribute_names("#deleted", "deleted_at")
            .filter_expression(&plan.filter);
        let key_condition = match &stream.condition {
            SkCondition::None => "#pk = :pk".to_owned(),
            SkCondition::Between(lo, hi) => {
                query = query
                    .expression_attribute_names("#sk", stream.sk_attribute)
                    .expression_attribute_values(":lo", AttributeValue::S(lo.clone()))
                    .expression_attribute_values(":hi", AttributeValue::S(hi.clone()));
                "#pk = :pk AND #sk BETWEEN :lo AND :hi".to_owned()
            }
            SkCondition::BeginsWith(prefix) => {
                query = query
                    .expression_attribute_names("#sk", stream.sk_attribute)
                    .expression_attribute_values(":prefix", AttributeValue::S(prefix.clone()));
                "#pk = :pk AND begins_with(#sk, :prefix)".to_owned()
            }
        };
        query = query.key_condition_expression(key_condition);
        for (name, attribute) in [
            ("#status", "status"),
            ("#agent", "assigned_agent_id"),
            ("#balance", "balance"),
            ("#due", "due_date"),
        ] {
            if plan.uses(name) {
                query = query.expression_attribute_names(name, attribute);
            }
        }
        for (name, value) in &plan.filter_values {
            query = query.expression_attribute_values(name, value.clone());
        }
        if let Position::After(sort_key) = &start {
            let id = keys::id_of_sort_key(sort_key).ok_or_else(|| {
                ApiError::invalid_field("cursor", "is not a cursor this list issued")
            })?;
            query = query
                .exclusive_start_key("pk", AttributeValue::S(keys::account_pk(id)))
                .exclusive_start_key(
                    stream.pk_attribute,
                    AttributeValue::S(stream.pk_value.clone()),
                )
                .exclusive_start_key(stream.sk_attribute, AttributeValue::S(sort_key.clone()));
        }
        let output = query.send().await?;
        let last_key = output
            .last_evaluated_key()
            .and_then(|key| key.get(stream.sk_attribute))
            .and_then(|value| value.as_s().ok())
            .cloned();
        let mut items = Vec::new();
        for item in output.items.unwrap_or_default() {
            let Some(sort_key) = item
                .get(stream.sk_attribute)
                .and_then(|value| value.as_s().ok())
                .cloned()
            else {
                continue;
            };
            items.push((sort_key, Account::from_item(item)?));
        }
        Ok(Fetched {
            items,
            last_key,
            scanned: output.scanned_count,
        })
    }
}

/// The smallest `(search key, field)` at which `account` matches the search: the one
/// place it is emitted.
fn canonical_match(plan: &Plan, account: &Account) -> Option<(String, SearchField)> {
    plan.search
        .iter()
        .filter_map(|(field, prefix)| {
            let value = keys::search_value(account, *field);
            value
                .starts_with(prefix.as_str())
                .then(|| (format!("{value}#{}", account.id), *field))
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_parse_and_dpd_reverses_due() {
        assert_eq!(Sort::parse("-balance").unwrap().key, SortKey::Balance);
        assert!(Sort::parse("-balance").unwrap().descending);
        let dpd = Sort::parse("-days_past_due").unwrap();
        assert_eq!((dpd.key, dpd.descending), (SortKey::Due, false));
        assert!(Sort::parse("name").is_err());
    }

    #[test]
    fn plans_pick_partition_and_key_conditions() {
        let today = time::macros::date!(2026 - 11 - 25);
        let plan = Plan::new(&ListRequest::default(), today).unwrap();
        assert_eq!(plan.streams.len(), keys::SHARDS as usize);
        assert_eq!(plan.streams[0].index, "acc-all-created");
        let agent = Id::generate();
        let plan = Plan::new(
            &ListRequest {
                scope_agent: Some(agent),
                status: Some(AccountStatus::Disputed),
                min_balance: Some(100),
                sort: Some(Sort::parse("balance").unwrap()),
                ..Default::default()
            },
            today,
        )
        .unwrap();
        assert_eq!(plan.streams.len(), 1);
        assert_eq!(plan.streams[0].index, "acc-agent-balance");
        assert!(plan.filter.contains("#status = :status"));
        assert!(matches!(
            plan.streams[0].condition,
            SkCondition::Between(_, _)
        ));
        let err = Plan::new(
            &ListRequest {
                q: Some("a".into()),
                ..Default::default()
            },
            today,
        )
        .unwrap_err();
        assert_eq!(err.errors[0].field, "q");
    }
}
