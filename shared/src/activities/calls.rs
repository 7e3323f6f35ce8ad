//! The call log of an account (one item, `sk = CALLS`) and the call-frequency rules of
//! Regulation F (12 CFR 1006.14(b)) it is kept for. The store checks the rules against the
//! log it read and writes the new log in the same transaction as the call, conditional on
//! the log's version, so the count is exact under any concurrency.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::keys::CALL_LOG_SK;
use super::model::CallOutcome;
use crate::domain::{Id, Timestamp};
use crate::dynamo::attributes::{n, number, s};
use crate::error::ApiError;

/// Call attempts allowed per account in [`CALL_WINDOW_DAYS`].
pub const MAX_CALLS: usize = 7;
/// The window of the call rules, in days.
pub const CALL_WINDOW_DAYS: i64 = 7;

const DAY_MS: i64 = 86_400_000;

/// The call log of an account: attempt times (epoch ms) of the window, the last
/// right-party conversation, and the item's version (0 when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallLog {
    pub attempts: Vec<i64>,
    pub right_party_at: Option<i64>,
    pub version: u64,
}

impl CallLog {
    pub fn from_item(item: &HashMap<String, AttributeValue>) -> Self {
        Self {
            attempts: item
                .get("attempts")
                .and_then(|v| v.as_l().ok())
                .map(|l| {
                    l.iter()
                        .filter_map(|v| v.as_n().ok().and_then(|n| n.parse().ok()))
                        .collect()
                })
                .unwrap_or_default(),
            right_party_at: number(item, "right_party_at"),
            version: number(item, "version")
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(0),
        }
    }

    /// The item of `account`'s log, written at `now`: cleaned up by TTL once the window
    /// has passed with no calls.
    pub fn to_item(&self, account: Id, now: Timestamp) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            ("pk".to_owned(), s(account.to_string())),
            ("sk".to_owned(), s(CALL_LOG_SK)),
            (
                "attempts".to_owned(),
                AttributeValue::L(self.attempts.iter().map(n).collect()),
            ),
            ("version".to_owned(), n(self.version)),
            (
                "expires_at".to_owned(),
                n(now.unix_seconds() + CALL_WINDOW_DAYS * 86_400 + 86_400),
            ),
        ]);
        if let Some(at) = self.right_party_at {
            item.insert("right_party_at".to_owned(), n(at));
        }
        item
    }

    /// Checks the frequency rules for a call at `now_ms`; answers the log with the call
    /// added (attempts outside the window dropped).
    pub fn admit(&self, now_ms: i64, outcome: Option<CallOutcome>) -> Result<CallLog, ApiError> {
        let window_start = now_ms - CALL_WINDOW_DAYS * DAY_MS;
        if let Some(at) = self.right_party_at.filter(|at| *at > window_start) {
            let when = Timestamp::from_unix_seconds(at / 1000)
                .map(|t| t.to_string())
                .unwrap_or_default();
            return Err(ApiError::unprocessable(
                "call-after-conversation",
                format!(
                    "the debtor was reached in a conversation at {when}; no call for 7 days after it (12 CFR 1006.14(b)(2)(ii))"
                ),
            ));
        }
        let mut attempts: Vec<i64> = self
            .attempts
            .iter()
            .copied()
            .filter(|at| *at > window_start)
            .collect();
        if attempts.len() >= MAX_CALLS {
            return Err(ApiError::unprocessable(
                "call-frequency-limit",
                format!(
                    "the account already has {} call attempts in the last 7 days; the limit is {MAX_CALLS} (12 CFR 1006.14(b)(2)(i))",
                    attempts.len()
                ),
            ));
        }
        attempts.push(now_ms);
        Ok(CallLog {
            attempts,
            right_party_at: if outcome == Some(CallOutcome::RightPartyContact) {
                Some(now_ms)
            } else {
                self.right_party_at
            },
            version: self.version + 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_log_counts_the_window_and_conversations() {
        let day = DAY_MS;
        let now = 100 * day;
        let log = CallLog {
            attempts: (0..7).map(|i| now - 8 * day + i).collect(),
            right_party_at: None,
            version: 3,
        };
        // Old attempts fall out of the window.
        let next = log.admit(now, None).unwrap();
        assert_eq!(next.attempts, vec![now]);
        assert_eq!(next.version, 4);
        let full = CallLog {
            attempts: (0..7).map(|i| now - day + i).collect(),
            ..Default::default()
        };
        let err = full.admit(now, None).unwrap_err();
        assert_eq!(err.code, "call-frequency-limit");
        let talked = CallLog {
            right_party_at: Some(now - 6 * day),
            ..Default::default()
        };
        assert_eq!(
            talked.admit(now, None).unwrap_err().code,
            "call-after-conversation"
        );
        let later = CallLog {
            right_party_at: Some(now - 8 * day),
            ..Default::default()
        };
        assert!(
            later
                .admit(now, Some(CallOutcome::RightPartyContact))
                .unwrap()
                .right_party_at
                == Some(now)
        );
    }

    #[test]
    fn the_call_log_round_trips_through_its_item() {
        let log = CallLog {
            attempts: vec![1, 2, 3],
            right_party_at: Some(2),
            version: 5,
        };
        let item = log.to_item(Id::generate(), Timestamp::now());
        assert_eq!(item["sk"].as_s().unwrap(), CALL_LOG_SK);
        assert_eq!(CallLog::from_item(&item), log);
    }
}
