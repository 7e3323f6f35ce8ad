//! Account lists: every list is one or more `Query`s (never a `Scan`), merged in sort order.
//!
//! A [`ListRequest`] becomes a [`Plan`]: the *streams* to query (the 8 shards of a sharded
//! partition, the agent's one partition, or the four search indexes), the key condition
//! each gets (a balance or due-date range when the sort key can serve it, a search prefix),
//! one filter expression for the filters the index's projection can serve, and a
//! [`Check`] of every filter on the whole account. [`AccountRepo::list`] runs a k-way merge
//! over the streams: each stream is fetched lazily (concurrently when several run dry at
//! once), the smallest head (largest when descending) is taken next, until the page has
//! `limit` candidates, every stream is exhausted, or the request has read [`MAX_ITEMS_READ`]
//! items (a selective filter then returns a short page whose cursor carries on).
//!
//! The indexes project keys and a few rarely changing attributes only (`template.yaml`: a
//! write then costs index units only where it changes a projected attribute), so the page's
//! candidates are read whole from the table in one `BatchGetItem` and kept in merge order.
//! A candidate deleted since the index was read, or that no longer passes the [`Check`]
//! (reassigned, paid, its balance out of range), is left out, and the merge goes on for the
//! places it left; the balance filter is applied there only, because `balance` changes on
//! every payment and is not projected.
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
use crate::dynamo::{batch_get_all, Item};
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
    /// `(expression, values)` on projected attributes only (names `#status`, `#agent`,
    /// `#due`); empty when no filter can be served by the index.
    pub filter: String,
    pub filter_values: HashMap<String, AttributeValue>,
    /// Every filter, checked on the whole accounts read for the page.
    pub check: Check,
    /// The normalised prefixes of a search (field → prefix).
    pub search: Vec<(SearchField, String)>,
}

/// A list's filters as a predicate on a whole account (see the module docs: the index may
/// lag the table, and it does not project `balance`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Check {
    pub status: Option<AccountStatus>,
    pub agent: Option<Id>,
    pub min_balance: Option<i64>,
    pub max_balance: Option<i64>,
    /// Earliest and latest due date (a `dpd_bucket`).
    pub due: Option<(Option<time::Date>, Option<time::Date>)>,
}

impl Check {
    /// Whether a live `account` belongs in the list.
    pub fn accepts(&self, account: &Account) -> bool {
        let balance = account.balance.0;
        let (earliest, latest) = self.due.unwrap_or_default();
        account.deleted_at.is_none()
            && self.status.is_none_or(|status| account.status == status)
            && self
                .agent
                .is_none_or(|agent| account.assigned_agent_id == Some(agent))
            && self.min_balance.is_none_or(|min| balance >= min)
            && self.max_balance.is_none_or(|max| balance <= max)
            && earliest.is_none_or(|lo| account.due_date >= lo)
            && latest.is_none_or(|hi| account.due_date <= hi)
    }
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
        let mut filters: Vec<String> = Vec::new();
        let mut values: HashMap<String, AttributeValue> = HashMap::new();
        let due_range = request.dpd_bucket.map(|b| b.due_range(today));
        let check = Check {
            status: request.status,
            agent,
            min_balance: request.min_balance,
            max_balance: request.max_balance,
            due: due_range,
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
                check,
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
            SortKey::Due => match due_range {
                Some((lo, hi)) => range(lo.map(format_date), hi.map(format_date)),
                None => SkCondition::None,
            },
            SortKey::Created | SortKey::Updated => {
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
            check,
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
    /// Sort keys and ids read from the index, not yet taken.
    buffer: VecDeque<(String, Id)>,
    /// Where the next fetch starts when the buffer is empty (`None`: exhausted).
    next: Option<Position>,
}

struct Fetched {
    items: Vec<(String, Id)>,
    last_key: Option<String>,
    scanned: i32,
}

/// A place of the page the merge chose: the sort key, the stream it came from, the account.
struct Candidate {
    key: String,
    stream: usize,
    id: Id,
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
        let mut merge = Merge {
            read: 0,
            first_round: true,
        };
        let mut items: Vec<Account> = Vec::with_capacity(limit);
        loop {
            let wanted = limit - items.len();
            let candidates = merge.take(self, &plan, &mut states, wanted).await?;
            let ended = candidates.len() < wanted;
            items.extend(self.resolve(&plan, candidates).await?);
            if ended || items.len() >= limit {
                break;
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
            items_read: merge.read,
        })
    }

    /// The accounts of `candidates` in their order, read whole in one `BatchGetItem`: those
    /// still live and passing the plan's [`Check`]; a search emits an account only at its
    /// smallest matching key.
    async fn resolve(
        &self,
        plan: &Plan,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<Account>, ApiError> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        // A search may meet an account in several streams; BatchGetItem refuses repeated keys.
        let mut ids: Vec<Id> = candidates.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        let keys = ids
            .into_iter()
            .map(|id| Item::from([("pk".to_owned(), AttributeValue::S(keys::account_pk(id)))]))
            .collect();
        let found = batch_get_all(&self.dynamodb, self.table.as_str(), keys).await?;
        let mut accounts: HashMap<Id, Account> = HashMap::new();
        for item in found {
            let account = Account::from_item(item)?;
            accounts.insert(account.id, account);
        }
        let mut out = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            let Some(account) = accounts.get(&candidate.id) else {
                continue; // gone since the index was read
            };
            let emit = plan.check.accepts(account)
                && match plan.streams[candidate.stream].field {
                    Some(field) => canonical_match(plan, account) == Some((candidate.key, field)),
                    None => true,
                };
            if emit {
                out.extend(accounts.remove(&candidate.id));
            }
        }
        Ok(out)
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
            .expression_attribute_names("#sk", stream.sk_attribute)
            .expression_attribute_values(":pk", AttributeValue::S(stream.pk_value.clone()))
            .projection_expression("#sk");
        if !plan.filter.is_empty() {
            query = query.filter_expression(&plan.filter);
        }
        let key_condition = match &stream.condition {
            SkCondition::None => "#pk = :pk".to_owned(),
            SkCondition::Between(lo, hi) => {
                query = query
                    .expression_attribute_values(":lo", AttributeValue::S(lo.clone()))
                    .expression_attribute_values(":hi", AttributeValue::S(hi.clone()));
                "#pk = :pk AND #sk BETWEEN :lo AND :hi".to_owned()
            }
            SkCondition::BeginsWith(prefix) => {
                query =
                    query.expression_attribute_values(":prefix", AttributeValue::S(prefix.clone()));
                "#pk = :pk AND begins_with(#sk, :prefix)".to_owned()
            }
        };
        query = query.key_condition_expression(key_condition);
        for (name, attribute) in [
            ("#status", "status"),
            ("#agent", "assigned_agent_id"),
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
        let items = output
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| {
                let sort_key = item.get(stream.sk_attribute)?.as_s().ok()?.clone();
                let id = keys::id_of_sort_key(&sort_key)?;
                Some((sort_key, id))
            })
            .collect();
        Ok(Fetched {
            items,
            last_key,
            scanned: output.scanned_count,
        })
    }
}

/// The k-way merge of a page's streams, across the rounds of one page.
struct Merge {
    /// Items the index Queries read so far ([`MAX_ITEMS_READ`] bounds it).
    read: i32,
    first_round: bool,
}

impl Merge {
    /// The next `wanted` candidates in sort order, fewer when every stream is exhausted or
    /// the page has read [`MAX_ITEMS_READ`] items; moves each stream's position past what it
    /// took.
    async fn take(
        &mut self,
        repo: &AccountRepo,
        plan: &Plan,
        states: &mut [StreamState],
        wanted: usize,
    ) -> Result<Vec<Candidate>, ApiError> {
        let streams = plan.streams.len().max(1);
        let mut candidates = Vec::with_capacity(wanted);
        while candidates.len() < wanted {
            // Refill every live stream whose buffer ran dry, concurrently.
            let dry: Vec<usize> = states
                .iter()
                .enumerate()
                .filter(|(_, s)| s.buffer.is_empty() && s.next.is_some())
                .map(|(i, _)| i)
                .collect();
            if !dry.is_empty() {
                if self.read >= MAX_ITEMS_READ {
                    break;
                }
                let missing = wanted - candidates.len();
                // First round: an even share plus slack; later: what is still missing.
                let fetch_limit = if self.first_round && streams > 1 {
                    missing / streams + 3
                } else {
                    missing + 1
                };
                self.first_round = false;
                let fetches = dry.iter().map(|&i| {
                    let start = states[i].next.clone().unwrap_or(Position::Start);
                    repo.fetch(plan, &plan.streams[i], start, fetch_limit.min(500) as i32)
                });
                let results = futures::future::join_all(fetches).await;
                for (&i, result) in dry.iter().zip(results) {
                    let fetched = result?;
                    self.read += fetched.scanned;
                    let state = &mut states[i];
                    state.buffer.extend(fetched.items);
                    state.next = fetched.last_key.map(Position::After);
                    if state.buffer.is_empty() {
                        // Everything read was filtered out: the stream moved on anyway.
                        state.position = state.next.clone().unwrap_or(Position::Done);
                    }
                }
                continue;
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
                break; // every stream exhausted
            };
            let state = &mut states[best];
            let Some((key, id)) = state.buffer.pop_front() else {
                break;
            };
            state.position = if state.buffer.is_empty() {
                state.next.clone().unwrap_or(Position::Done)
            } else {
                Position::After(key.clone())
            };
            candidates.push(Candidate {
                key,
                stream: best,
                id,
            });
        }
        Ok(candidates)
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
        // `balance` is not projected: only the check on the whole account reads it.
        assert!(!plan.filter.contains("balance"));
        assert_eq!(plan.check.min_balance, Some(100));
        assert_eq!(plan.check.agent, Some(agent));
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
