//! The mix of requests: what share of the load each action is. Agents sign in and refresh,
//! list their accounts (filters, a second page), read accounts with `If-None-Match`, record
//! payments with idempotency keys (some retried with the same key), log activities and read
//! timelines; managers read the dashboard.

/// One action of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Login,
    Refresh,
    Me,
    ListAccounts,
    ListAccountsNextPage,
    ReadAccount,
    RecordPayment,
    RetryPayment,
    ListPayments,
    LogActivity,
    ReadTimeline,
    Dashboard,
}

/// Each action's weight, out of 1,000.
pub const MIX: [(Action, u32); 12] = [
    (Action::Login, 10),
    (Action::Refresh, 30),
    (Action::Me, 40),
    (Action::ListAccounts, 120),
    (Action::ListAccountsNextPage, 40),
    (Action::ReadAccount, 250),
    (Action::RecordPayment, 110),
    (Action::RetryPayment, 15),
    (Action::ListPayments, 40),
    (Action::LogActivity, 100),
    (Action::ReadTimeline, 135),
    (Action::Dashboard, 110),
];

/// The action for a uniform draw `roll` in `0..1000`.
pub fn pick(roll: u32) -> Action {
    let mut left = roll % total_weight();
    for (action, weight) in MIX {
        if left < weight {
            return action;
        }
        left -= weight;
    }
    MIX[0].0
}

pub fn total_weight() -> u32 {
    MIX.iter().map(|(_, w)| w).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_add_up_to_a_thousand_and_every_action_is_drawn_in_proportion() {
        assert_eq!(total_weight(), 1000);
        let mut counts = std::collections::BTreeMap::new();
        for roll in 0..1000 {
            *counts.entry(pick(roll)).or_insert(0) += 1;
        }
        for (action, weight) in MIX {
            assert_eq!(counts[&action], weight, "{action:?}");
        }
        assert_eq!(pick(1000), pick(0));
    }
}
