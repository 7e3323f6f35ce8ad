//! What an item contributes to the dashboard aggregates, as a pure function of its image.
//!
//! Every aggregate is a sum over items, so the change a stream record makes is
//! `contribution(new image) − contribution(old image)`: inserts, updates, soft deletes,
//! reassignments and refunds all follow from one rule per table, and the reconciliation
//! recomputes the same sums from the tables ([`super::reconcile`]).
//!
//! Aggregate items live in the Aggregates table under `pk` = period, `sk` = scope:
//!
//! | period (`pk`) | counters |
//! | --- | --- |
//! | `STATE` | `accounts`, `status:<status>`, `bucket:<dpd bucket>`, `outstanding:<currency>` |
//! | `STATE` (plans) | `plans_active` |
//! | `DAY#<YYYY-MM-DD>`, `MONTH#<YYYY-MM>` | `collected:<currency>`, `payments:<method>`, `payments:<method>:<currency>`, `activities:<type>`, `promises_due`, `promises_kept`, `promises_broken`, `plans_kept`, `plans_broken`, `plans_cancelled`, `installments_missed` |
//!
//! Scopes (`sk`): `ALL`, and `AGENT#<id>` for the agent an item is attributed to:
//!
//! - an account, to its `assigned_agent_id`;
//! - a payment, to the agent the account was assigned to when it was recorded (the
//!   payment item's `agent_id`, written by the ledger): reassigning an account later does
//!   not move past collections;
//! - an activity, to its actor.
//!
//! Rules (UTC dates):
//!
//! - a live account (no `deleted_at`) counts once, in its status, its stored `dpd_bucket` (kept
//!   current by the nightly aging job, whose writes reach the stream) and its outstanding
//!   balance;
//! - a `completed` payment counts on the day and month of its `received_at`: collected, and
//!   by method. A refund or reversal takes it out again (of that day), so "collected" is net;
//! - an activity counts on the day of its `created_at`, by type; a promise to pay also counts
//!   in `promises_due` on its promise date, and once settled by the broken-promise job
//!   (`promise_state` = `kept` | `broken`, `promise_settled_on`) in `promises_kept` /
//!   `promises_broken` on the day it was settled;
//! - a payment plan (attributed to the user who made it) counts in `plans_active` while it
//!   is the account's active plan; once ended, in `plans_kept` (completed), `plans_broken`
//!   or `plans_cancelled` on the day of its `ended_at`; each installment marked missed
//!   counts in `installments_missed` on its due date. A plan that ends moves from its
//!   `ACTIVE` item to one keyed by its id (a REMOVE and an INSERT on the stream): the first
//!   takes its contribution out, the second puts the ended one in.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::Id;
use crate::dynamo::attributes::{number, text};

/// A DynamoDB item (a stream image or a scanned item).
pub type Item = HashMap<String, AttributeValue>;

/// The tables whose items feed the aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tracked {
    Accounts,
    Payments,
    Activities,
    Plans,
}

/// When a counter applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    /// The current state (accounts).
    State,
    Day(time::Date),
    Month {
        year: i32,
        month: u8,
    },
}

impl Period {
    pub fn month_of(date: time::Date) -> Self {
        Period::Month {
            year: date.year(),
            month: u8::from(date.month()),
        }
    }

    /// The `pk` of this period's aggregate items.
    pub fn key(&self) -> String {
        match self {
            Period::State => "STATE".to_owned(),
            Period::Day(date) => format!("DAY#{}", crate::accounts::model::format_date(*date)),
            Period::Month { year, month } => format!("MONTH#{year:04}-{month:02}"),
        }
    }

    pub fn parse(key: &str) -> Option<Self> {
        if key == "STATE" {
            return Some(Period::State);
        }
        if let Some(day) = key.strip_prefix("DAY#") {
            return crate::accounts::model::parse_date(day)
                .ok()
                .map(Period::Day);
        }
        let (year, month) = key.strip_prefix("MONTH#")?.split_once('-')?;
        let month: u8 = month.parse().ok()?;
        (1..=12).contains(&month).then_some(())?;
        Some(Period::Month {
            year: year.parse().ok()?,
            month,
        })
    }
}

/// Whose counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    All,
    Agent(Id),
}

impl Scope {
    /// The `sk` of this scope's aggregate items.
    pub fn key(&self) -> String {
        match self {
            Scope::All => "ALL".to_owned(),
            Scope::Agent(id) => format!("AGENT#{id}"),
        }
    }

    pub fn parse(key: &str) -> Option<Self> {
        if key == "ALL" {
            return Some(Scope::All);
        }
        key.strip_prefix("AGENT#")?.parse().ok().map(Scope::Agent)
    }
}

/// One aggregate item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AggregateKey {
    pub period: Period,
    pub scope: Scope,
}

/// Named counters of one aggregate item.
pub type Counters = BTreeMap<String, i64>;

/// Counters of many aggregate items: a contribution, a change, or a whole table's sums.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally(BTreeMap<AggregateKey, Counters>);

impl Tally {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn items(&self) -> &BTreeMap<AggregateKey, Counters> {
        &self.0
    }

    pub fn into_items(self) -> BTreeMap<AggregateKey, Counters> {
        self.0
    }

    /// The scopes this tally touches.
    pub fn scopes(&self) -> BTreeSet<Scope> {
        self.0.keys().map(|k| k.scope).collect()
    }

    /// Adds `n` to `counter` of one item; counters at 0 disappear.
    ///
    /// Overflow is defined: the sum saturates at `i64::MAX` / `i64::MIN` and an error is
    /// logged. Amounts are bounded (`shared::validation::MAX_AMOUNT`, 10^12), so a real
    /// total reaches the bound only with millions of accounts at the maximum; a saturated
    /// figure is visibly wrong on the dashboard and `make reconcile` reports it, where a
    /// panic would have failed every stream batch that touched the counter (and a release
    /// build would have wrapped to a negative total).
    pub fn add(&mut self, key: AggregateKey, counter: &str, n: i64) {
        if n == 0 {
            return;
        }
        let counters = self.0.entry(key).or_default();
        let value = counters.entry(counter.to_owned()).or_insert(0);
        *value = value.checked_add(n).unwrap_or_else(|| {
            tracing::error!(
                period = %key.period.key(),
                scope = %key.scope.key(),
                counter,
                "dashboard counter overflows i64; saturated"
            );
            value.saturating_add(n)
        });
        if *value == 0 {
            counters.remove(counter);
            if counters.is_empty() {
                self.0.remove(&key);
            }
        }
    }

    /// Adds `n` to `counter` in scope `ALL` and, when attributed, the agent's scope.
    fn add_scoped(&mut self, period: Period, agent: Option<Id>, counter: &str, n: i64) {
        self.add(
            AggregateKey {
                period,
                scope: Scope::All,
            },
            counter,
            n,
        );
        if let Some(agent) = agent {
            self.add(
                AggregateKey {
                    period,
                    scope: Scope::Agent(agent),
                },
                counter,
                n,
            );
        }
    }

    /// Adds `other` times `sign` (1 or −1), saturating like [`Tally::add`].
    pub fn merge(&mut self, other: &Tally, sign: i64) {
        for (key, counters) in &other.0 {
            for (counter, n) in counters {
                self.add(*key, counter, n.saturating_mul(sign));
            }
        }
    }

    /// `new − old`: what a change from `old` to `new` does to the aggregates.
    pub fn change(old: &Tally, new: &Tally) -> Tally {
        let mut delta = new.clone();
        delta.merge(old, -1);
        delta
    }
}

impl FromIterator<(AggregateKey, Counters)> for Tally {
    fn from_iter<I: IntoIterator<Item = (AggregateKey, Counters)>>(iter: I) -> Self {
        let mut tally = Tally::default();
        for (key, counters) in iter {
            for (counter, n) in counters {
                tally.add(key, &counter, n);
            }
        }
        tally
    }
}

fn id(item: &Item, name: &str) -> Option<Id> {
    text(item, name).and_then(|s| s.parse().ok())
}

/// The UTC date of an RFC 3339 attribute.
fn date_of(item: &Item, name: &str) -> Option<time::Date> {
    text(item, name)
        .and_then(|s| s.parse::<crate::domain::Timestamp>().ok())
        .map(|t| t.as_offset_date_time().date())
}

fn date(item: &Item, name: &str) -> Option<time::Date> {
    text(item, name).and_then(|s| crate::accounts::model::parse_date(s).ok())
}

/// What one item of `table` contributes (nothing for items the aggregates do not count:
/// reference claims, call logs, deleted accounts, payments not completed).
pub fn contribution(table: Tracked, item: &Item) -> Tally {
    let mut tally = Tally::default();
    match table {
        Tracked::Accounts => account(&mut tally, item),
        Tracked::Payments => payment(&mut tally, item),
        Tracked::Activities => activity(&mut tally, item),
        Tracked::Plans => plan(&mut tally, item),
    }
    tally
}

fn account(tally: &mut Tally, item: &Item) {
    let is_account = text(item, "pk").is_some_and(|pk| pk.starts_with("ACCOUNT#"));
    if !is_account || item.contains_key("deleted_at") {
        return;
    }
    let agent = id(item, "assigned_agent_id");
    let mut add = |counter: &str, n: i64| tally.add_scoped(Period::State, agent, counter, n);
    add("accounts", 1);
    if let Some(status) = text(item, "status") {
        add(&format!("status:{status}"), 1);
    }
    if let Some(bucket) = text(item, "dpd_bucket") {
        add(&format!("bucket:{bucket}"), 1);
    }
    if let (Some(currency), Some(balance)) = (text(item, "currency"), number(item, "balance")) {
        add(&format!("outstanding:{currency}"), balance);
    }
}

fn payment(tally: &mut Tally, item: &Item) {
    if text(item, "status") != Some("completed") {
        return;
    }
    let (Some(day), Some(amount), Some(currency), Some(method)) = (
        date_of(item, "received_at"),
        number(item, "amount"),
        text(item, "currency"),
        text(item, "method"),
    ) else {
        return;
    };
    let agent = id(item, crate::payments::AGENT_ATTRIBUTE);
    for period in [Period::Day(day), Period::month_of(day)] {
        tally.add_scoped(period, agent, &format!("collected:{currency}"), amount);
        tally.add_scoped(period, agent, &format!("payments:{method}"), 1);
        tally.add_scoped(
            period,
            agent,
            &format!("payments:{method}:{currency}"),
            amount,
        );
    }
}

fn activity(tally: &mut Tally, item: &Item) {
    let (Some(kind), Some(day)) = (text(item, "type"), date_of(item, "created_at")) else {
        return;
    };
    let agent = id(item, "actor_id");
    for period in [Period::Day(day), Period::month_of(day)] {
        tally.add_scoped(period, agent, &format!("activities:{kind}"), 1);
    }
    if kind != "promise_to_pay" {
        return;
    }
    if let Some(due) = date(item, "promise_date") {
        for period in [Period::Day(due), Period::month_of(due)] {
            tally.add_scoped(period, agent, "promises_due", 1);
        }
    }
    let settled = match text(item, "promise_state") {
        Some("kept") => "promises_kept",
        Some("broken") => "promises_broken",
        _ => return,
    };
    if let Some(on) = date(item, "promise_settled_on") {
        for period in [Period::Day(on), Period::month_of(on)] {
            tally.add_scoped(period, agent, settled, 1);
        }
    }
}

fn plan(tally: &mut Tally, item: &Item) {
    let Ok(plan) = crate::payments::plans::Plan::from_item(item.clone()) else {
        return;
    };
    let agent = Some(plan.created_by);
    for installment in plan.installments.iter().filter(|i| i.missed) {
        let due = installment.due_date;
        for period in [Period::Day(due), Period::month_of(due)] {
            tally.add_scoped(period, agent, "installments_missed", 1);
        }
    }
    use crate::payments::plans::PlanStatus;
    let ended = match plan.status {
        PlanStatus::Active => {
            tally.add_scoped(Period::State, agent, "plans_active", 1);
            return;
        }
        PlanStatus::Completed => "plans_kept",
        PlanStatus::Broken => "plans_broken",
        PlanStatus::Cancelled => "plans_cancelled",
    };
    if let Some(on) = plan.ended_at.map(|at| at.as_offset_date_time().date()) {
        for period in [Period::Day(on), Period::month_of(on)] {
            tally.add_scoped(period, agent, ended, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamo::attributes::{n, s};
    use time::macros::date;

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn key(period: Period, scope: Scope) -> AggregateKey {
        AggregateKey { period, scope }
    }

    fn account_item(agent: Id, status: &str, balance: i64) -> Item {
        item(&[
            ("pk", s("ACCOUNT#01JD3Q2W60000000000000000A")),
            ("status", s(status)),
            ("dpd_bucket", s("1-30")),
            ("currency", s("USD")),
            ("balance", n(balance)),
            ("assigned_agent_id", s(agent.to_string())),
        ])
    }

    #[test]
    fn an_account_counts_in_both_scopes_and_a_change_is_the_difference() {
        let agent = Id::generate();
        let before = contribution(Tracked::Accounts, &account_item(agent, "active", 10_000));
        let state = key(Period::State, Scope::All);
        assert_eq!(before.items()[&state]["accounts"], 1);
        assert_eq!(before.items()[&state]["outstanding:USD"], 10_000);
        assert_eq!(
            before.items()[&key(Period::State, Scope::Agent(agent))]["status:active"],
            1
        );

        let after = contribution(Tracked::Accounts, &account_item(agent, "paid", 0));
        let delta = Tally::change(&before, &after);
        let all = &delta.items()[&state];
        assert_eq!(all.get("accounts"), None, "the count is unchanged");
        assert_eq!(all["status:active"], -1);
        assert_eq!(all["status:paid"], 1);
        assert_eq!(all["outstanding:USD"], -10_000);
        assert_eq!(all.get("bucket:1-30"), None);
    }

    #[test]
    fn deleted_accounts_and_reference_claims_count_nothing() {
        let mut deleted = account_item(Id::generate(), "active", 5);
        deleted.insert("deleted_at".into(), s("2026-11-25T00:00:00Z"));
        assert!(contribution(Tracked::Accounts, &deleted).is_empty());
        let claim = item(&[("pk", s("REF#abc")), ("account_id", s("x"))]);
        assert!(contribution(Tracked::Accounts, &claim).is_empty());
    }

    #[test]
    fn a_completed_payment_counts_on_its_day_and_month_and_a_refund_takes_it_back() {
        let agent = Id::generate();
        let completed = item(&[
            ("status", s("completed")),
            ("amount", n(2_500)),
            ("currency", s("USD")),
            ("method", s("card")),
            ("received_at", s("2026-11-25T23:59:00Z")),
            ("agent_id", s(agent.to_string())),
        ]);
        let paid = contribution(Tracked::Payments, &completed);
        let day = key(Period::Day(date!(2026 - 11 - 25)), Scope::All);
        let month = key(
            Period::Month {
                year: 2026,
                month: 11,
            },
            Scope::Agent(agent),
        );
        assert_eq!(paid.items()[&day]["collected:USD"], 2_500);
        assert_eq!(paid.items()[&day]["payments:card"], 1);
        assert_eq!(paid.items()[&month]["payments:card:USD"], 2_500);

        let mut refunded = completed.clone();
        refunded.insert("status".into(), s("refunded"));
        let refund = Tally::change(&paid, &contribution(Tracked::Payments, &refunded));
        assert_eq!(refund.items()[&day]["collected:USD"], -2_500);
        let mut net = paid.clone();
        net.merge(&refund, 1);
        assert!(net.is_empty());

        let mut pending = completed;
        pending.insert("status".into(), s("pending"));
        assert!(contribution(Tracked::Payments, &pending).is_empty());
    }

    #[test]
    fn promises_count_when_due_and_when_settled() {
        let actor = Id::generate();
        let mut promise = item(&[
            ("type", s("promise_to_pay")),
            ("created_at", s("2026-11-20T10:00:00Z")),
            ("promise_date", s("2026-11-24")),
            ("actor_id", s(actor.to_string())),
        ]);
        let open = contribution(Tracked::Activities, &promise);
        let created = key(Period::Day(date!(2026 - 11 - 20)), Scope::All);
        let due = key(Period::Day(date!(2026 - 11 - 24)), Scope::Agent(actor));
        assert_eq!(open.items()[&created]["activities:promise_to_pay"], 1);
        assert_eq!(open.items()[&due]["promises_due"], 1);

        promise.insert("promise_state".into(), s("broken"));
        promise.insert("promise_settled_on".into(), s("2026-11-25"));
        let settle = Tally::change(&open, &contribution(Tracked::Activities, &promise));
        let settled_day = key(Period::Day(date!(2026 - 11 - 25)), Scope::All);
        assert_eq!(
            settle.items().len(),
            4,
            "day and month, both scopes: {settle:?}"
        );
        assert_eq!(settle.items()[&settled_day]["promises_broken"], 1);

        let call_log = item(&[("sk", s("CALLS"))]);
        assert!(contribution(Tracked::Activities, &call_log).is_empty());
    }

    /// Hole 8 (issue 13): two accounts at `i64::MAX` used to overflow the sum (a panic in
    /// a debug build, a wrap in release); the sum saturates instead.
    #[test]
    fn sums_beyond_i64_saturate_instead_of_overflowing() {
        let agent = Id::generate();
        let mut total = Tally::default();
        for _ in 0..2 {
            total.merge(
                &contribution(Tracked::Accounts, &account_item(agent, "active", i64::MAX)),
                1,
            );
        }
        let state = key(Period::State, Scope::All);
        assert_eq!(total.items()[&state]["outstanding:USD"], i64::MAX);
        assert_eq!(total.items()[&state]["accounts"], 2);
        let mut negative = Tally::default();
        negative.merge(&total, -1);
        negative.merge(&total, -1);
        assert_eq!(negative.items()[&state]["outstanding:USD"], i64::MIN);
    }

    #[test]
    fn keys_round_trip() {
        for period in [
            Period::State,
            Period::Day(date!(2026 - 01 - 05)),
            Period::Month {
                year: 2026,
                month: 1,
            },
        ] {
            assert_eq!(Period::parse(&period.key()), Some(period));
        }
        let agent = Id::generate();
        for scope in [Scope::All, Scope::Agent(agent)] {
            assert_eq!(Scope::parse(&scope.key()), Some(scope));
        }
        assert_eq!(Period::parse("MONTH#2026-13"), None);
        assert_eq!(Scope::parse("MARK#x"), None);
    }

    #[test]
    fn plans_count_while_active_and_once_ended_with_their_missed_installments() {
        use crate::domain::{MinorUnits, Timestamp};
        use crate::payments::plans::schedule::{build, Split};
        use crate::payments::plans::{Frequency, Plan, PlanStatus};
        let agent = Id::generate();
        let made = Timestamp::from(time::macros::datetime!(2027-01-01 9:00 UTC));
        let mut plan = Plan {
            id: Id::generate(),
            account_id: Id::generate(),
            status: PlanStatus::Active,
            frequency: Frequency::Monthly,
            currency: "USD".parse().unwrap(),
            total_amount: MinorUnits(300),
            installments: build(
                Frequency::Monthly,
                date!(2027 - 01 - 15),
                MinorUnits(300),
                Split::Count(3),
            )
            .unwrap(),
            receipts: Vec::new(),
            created_by: agent,
            version: 1,
            created_at: made,
            updated_at: made,
            ended_at: None,
        };
        let active = contribution(Tracked::Plans, &plan.to_item().unwrap());
        assert_eq!(
            active.items()[&key(Period::State, Scope::Agent(agent))]["plans_active"],
            1
        );
        plan.installments[0].missed = true;
        plan.status = PlanStatus::Broken;
        plan.ended_at = Some(Timestamp::from(
            time::macros::datetime!(2027-02-21 1:00 UTC),
        ));
        let ended = contribution(Tracked::Plans, &plan.to_item().unwrap());
        let broken_day = key(Period::Day(date!(2027 - 02 - 21)), Scope::All);
        assert_eq!(ended.items()[&broken_day]["plans_broken"], 1);
        let missed_day = key(Period::Day(date!(2027 - 01 - 15)), Scope::All);
        assert_eq!(ended.items()[&missed_day]["installments_missed"], 1);
        assert!(!ended.items().contains_key(&key(Period::State, Scope::All)));
        // The move from ACTIVE to the ended item, as two stream records.
        let mut net = Tally::change(&active, &Tally::default());
        net.merge(&ended, 1);
        assert_eq!(net, Tally::change(&active, &ended));
        assert!(contribution(Tracked::Plans, &item(&[("pk", s("x"))])).is_empty());
    }
}
