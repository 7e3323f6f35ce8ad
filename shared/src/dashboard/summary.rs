//! `GET /dashboard/summary`'s answer, read from the materialised aggregates: at most three
//! Queries (all scopes) or one BatchGetItem (one scope), never a Scan.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use utoipa::ToSchema;

use super::store::AggregateStore;
use super::tally::{AggregateKey, Counters, Period, Scope};
use crate::accounts::{AccountStatus, DpdBucket};
use crate::activities::ActivityType;
use crate::auth::{Role, UserRepo};
use crate::domain::Id;
use crate::error::ApiError;
use crate::payments::PaymentMethod;

const METHODS: [PaymentMethod; 5] = [
    PaymentMethod::Card,
    PaymentMethod::Ach,
    PaymentMethod::Check,
    PaymentMethod::Cash,
    PaymentMethod::Wire,
];

/// Amounts in minor units, by ISO 4217 currency code.
pub type ByCurrency = BTreeMap<String, i64>;

/// Accounts by status and by days-past-due bucket (every status and bucket present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AccountCounts {
    pub total: i64,
    pub by_status: BTreeMap<String, i64>,
    pub by_dpd_bucket: BTreeMap<String, i64>,
}

/// Completed payments of one method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MethodTotals {
    pub count: i64,
    /// Minor units by currency.
    pub amount: ByCurrency,
}

/// Promises to pay: dated in the period, and settled (kept / broken) in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PromiseCounts {
    pub due: i64,
    pub kept: i64,
    pub broken: i64,
}

/// Payment plans ended in the period (kept = completed), and installments due in it that
/// were missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PlanCounts {
    pub kept: i64,
    pub broken: i64,
    pub cancelled: i64,
    pub installments_missed: i64,
}

/// What happened in a day or a month (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PeriodTotals {
    /// Net collections: completed payments received in the period, minor units by currency
    /// (a later refund or reversal takes a payment out again).
    pub collected: ByCurrency,
    /// Completed payments by method (every method present).
    pub payments_by_method: BTreeMap<String, MethodTotals>,
    /// Activities logged, by type (every type present).
    pub activities: BTreeMap<String, i64>,
    pub promises: PromiseCounts,
    pub plans: PlanCounts,
}

/// The totals of one scope (everyone, or one agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Totals {
    pub accounts: AccountCounts,
    /// Outstanding balance, minor units by currency.
    pub outstanding: ByCurrency,
    /// Payment plans active now.
    pub plans_active: i64,
    pub today: PeriodTotals,
    pub month: PeriodTotals,
}

/// One agent's totals (accounts assigned to it, payments on them, activities it logged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AgentTotals {
    #[schema(value_type = String)]
    pub agent_id: Id,
    /// The agent's name; `null` when no user has this id (an id assigned by an import, or a
    /// user since removed).
    pub name: Option<String>,
    #[serde(flatten)]
    pub totals: Totals,
}

/// The dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Summary {
    /// The UTC day `today` refers to (`YYYY-MM-DD`); `month` is its month.
    pub date: String,
    /// `all`, or `agent` when the caller is an agent (its own accounts and work only).
    pub scope: String,
    /// The agent whose figures these are, for scope `agent`.
    #[schema(value_type = Option<String>)]
    pub agent_id: Option<Id>,
    #[serde(flatten)]
    pub totals: Totals,
    /// Per agent, for admins and managers (agents with any figure, by id); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<AgentTotals>>,
}

/// Whose dashboard to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Everyone's totals; `per_agent` adds the per-agent breakdown.
    All { per_agent: bool },
    /// One agent's own figures.
    Agent(Id),
}

fn count(counters: Option<&Counters>, name: &str) -> i64 {
    counters.and_then(|c| c.get(name)).copied().unwrap_or(0)
}

/// `prefix:<currency>` counters as a map (zeros left out).
fn by_currency(counters: Option<&Counters>, prefix: &str) -> ByCurrency {
    counters
        .into_iter()
        .flatten()
        .filter_map(|(name, n)| {
            let code = name.strip_prefix(prefix)?.strip_prefix(':')?;
            (!code.contains(':') && *n != 0).then(|| (code.to_owned(), *n))
        })
        .collect()
}

fn period_totals(counters: Option<&Counters>) -> PeriodTotals {
    PeriodTotals {
        collected: by_currency(counters, "collected"),
        payments_by_method: METHODS
            .iter()
            .map(|m| {
                let prefix = format!("payments:{}", m.as_str());
                let totals = MethodTotals {
                    count: count(counters, &prefix),
                    amount: by_currency(counters, &prefix),
                };
                (m.as_str().to_owned(), totals)
            })
            .collect(),
        activities: ActivityType::ALL
            .iter()
            .map(|t| {
                (
                    t.as_str().to_owned(),
                    count(counters, &format!("activities:{}", t.as_str())),
                )
            })
            .collect(),
        promises: PromiseCounts {
            due: count(counters, "promises_due"),
            kept: count(counters, "promises_kept"),
            broken: count(counters, "promises_broken"),
        },
        plans: PlanCounts {
            kept: count(counters, "plans_kept"),
            broken: count(counters, "plans_broken"),
            cancelled: count(counters, "plans_cancelled"),
            installments_missed: count(counters, "installments_missed"),
        },
    }
}

fn totals(state: Option<&Counters>, day: Option<&Counters>, month: Option<&Counters>) -> Totals {
    Totals {
        accounts: AccountCounts {
            total: count(state, "accounts"),
            by_status: AccountStatus::ALL
                .iter()
                .map(|s| {
                    let n = count(state, &format!("status:{}", s.as_str()));
                    (s.as_str().to_owned(), n)
                })
                .collect(),
            by_dpd_bucket: DpdBucket::ALL
                .iter()
                .map(|b| {
                    let n = count(state, &format!("bucket:{}", b.as_str()));
                    (b.as_str().to_owned(), n)
                })
                .collect(),
        },
        outstanding: by_currency(state, "outstanding"),
        plans_active: count(state, "plans_active"),
        today: period_totals(day),
        month: period_totals(month),
    }
}

/// Builds the dashboard of `view` for the UTC day `today`.
pub async fn summary(
    store: &AggregateStore,
    view: View,
    today: time::Date,
) -> Result<Summary, ApiError> {
    let periods = [Period::State, Period::Day(today), Period::month_of(today)];
    let date = crate::accounts::model::format_date(today);
    match view {
        View::Agent(agent) => {
            let keys = periods.map(|period| AggregateKey {
                period,
                scope: Scope::Agent(agent),
            });
            let found = store.get(&keys).await?;
            let [state, day, month] = keys.map(|k| found.get(&k));
            Ok(Summary {
                date,
                scope: "agent".into(),
                agent_id: Some(agent),
                totals: totals(state, day, month),
                agents: None,
            })
        }
        View::All { per_agent: false } => {
            let keys = periods.map(|period| AggregateKey {
                period,
                scope: Scope::All,
            });
            let found = store.get(&keys).await?;
            let [state, day, month] = keys.map(|k| found.get(&k));
            Ok(Summary {
                date,
                scope: "all".into(),
                agent_id: None,
                totals: totals(state, day, month),
                agents: None,
            })
        }
        View::All { per_agent: true } => {
            let (state, day, month) = futures::try_join!(
                store.period(periods[0]),
                store.period(periods[1]),
                store.period(periods[2]),
            )?;
            let mut agents: Vec<Id> = [&state, &day, &month]
                .iter()
                .flat_map(|p| p.keys())
                .filter_map(|scope| match scope {
                    Scope::Agent(id) => Some(*id),
                    Scope::All => None,
                })
                .collect();
            agents.sort();
            agents.dedup();
            let of = |scope: &Scope| totals(state.get(scope), day.get(scope), month.get(scope));
            Ok(Summary {
                date,
                scope: "all".into(),
                agent_id: None,
                totals: of(&Scope::All),
                agents: Some(
                    agents
                        .into_iter()
                        .map(|agent_id| AgentTotals {
                            agent_id,
                            name: None,
                            totals: of(&Scope::Agent(agent_id)),
                        })
                        .collect(),
                ),
            })
        }
    }
}

/// Names the per-agent entries and keeps only agents: activities count for whoever logged
/// them, so an admin or manager who logs a call or runs a bulk job has figures of its own
/// scope, which do not belong in a per-agent breakdown. An id with no user stays (accounts
/// can be assigned to ids an import brought), unnamed.
pub async fn name_agents(summary: &mut Summary, users: &UserRepo) -> Result<(), ApiError> {
    let Some(agents) = summary.agents.as_mut() else {
        return Ok(());
    };
    let ids: Vec<Id> = agents.iter().map(|a| a.agent_id).collect();
    let known: HashMap<Id, (Role, String)> = users
        .get_many(&ids)
        .await?
        .into_iter()
        .map(|user| (user.id, (user.role, user.name)))
        .collect();
    agents.retain_mut(|entry| match known.get(&entry.agent_id) {
        Some((Role::Agent, name)) => {
            entry.name = Some(name.clone());
            true
        }
        Some(_) => false,
        None => true,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_become_complete_blocks() {
        let state: Counters = [
            ("accounts", 3),
            ("status:active", 2),
            ("status:paid", 1),
            ("bucket:current", 3),
            ("outstanding:USD", 700),
            ("outstanding:EUR", 0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let day: Counters = [
            ("collected:USD", 300),
            ("payments:card", 2),
            ("payments:card:USD", 300),
            ("activities:call", 4),
            ("promises_due", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let t = totals(Some(&state), Some(&day), None);
        assert_eq!(t.accounts.total, 3);
        assert_eq!(t.accounts.by_status.len(), 6);
        assert_eq!(t.accounts.by_status["closed"], 0);
        assert_eq!(t.accounts.by_dpd_bucket.len(), 5);
        assert_eq!(t.outstanding, ByCurrency::from([("USD".to_owned(), 700)]));
        assert_eq!(t.today.collected["USD"], 300);
        assert_eq!(t.today.payments_by_method["card"].count, 2);
        assert_eq!(t.today.payments_by_method["card"].amount["USD"], 300);
        assert_eq!(t.today.payments_by_method["wire"].count, 0);
        assert_eq!(t.today.activities["call"], 4);
        assert_eq!(t.today.activities.len(), ActivityType::ALL.len());
        assert_eq!(t.today.promises.due, 1);
        assert_eq!(t.month.collected, ByCurrency::new());
    }
}
