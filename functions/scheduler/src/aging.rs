//! Nightly aging: keeps the stored `days_past_due` / `dpd_bucket` of accounts current.
//!
//! The API computes both fresh on every read; the stored copies feed reports and, through
//! the accounts stream, the dashboard's per-bucket aggregates. They only need a write when
//! the *bucket* changes, which happens at 1, 31, 61 and 91 days past due ([`BOUNDARIES`]),
//! so the accounts to touch today are those due on today-1, today-31, today-61 and
//! today-91 — each a key range on the sparse due-date index `acc-all-due` (every live
//! account, 8 `ALL#<shard>` partitions, `due_sk = <YYYY-MM-DD>#<id>`). No Scan, and the
//! work is proportional to the accounts that change, not to the book.
//!
//! Each boundary is queried over [`CATCH_UP_DAYS`] due dates ending at it, so runs missed
//! for up to that many days are caught up; only accounts whose stored bucket differs from
//! today's are written. The write is an `UpdateItem` of the two attributes only,
//! conditional on the version and stored bucket it read and on the account being live. It
//! does not bump `version` or `updated_at`: nothing a user wrote changed (the API already
//! shows the fresh value), and an `If-Match` a client holds must stay valid. A failed
//! condition means someone else wrote the account: it is read again and tried once more,
//! else counted as skipped (the next run or the writer's own fresh values cover it).

use crate::SchedulerError;
use futures::future::join_all;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use shared::accounts::aging::StoredAging;
use shared::accounts::dpd::days_past_due;
use shared::accounts::keys::Partition;
use shared::accounts::DpdBucket;

use crate::App;

/// Days past due at which an account enters a new bucket (`1-30`, `31-60`, `61-90`, `90+`).
pub const BOUNDARIES: [i64; 4] = [1, 31, 61, 91];

/// How many due dates, ending at each boundary date, a run looks at: a run that was missed
/// (an outage, a failed invocation) is caught up by the next one within this many days.
/// Kept well below the 30-day width of a bucket, so every account in a window has the same
/// bucket today.
pub const CATCH_UP_DAYS: i64 = 7;

/// Conditional updates in flight at once.
const WRITE_CONCURRENCY: usize = 16;

/// What an aging run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AgingReport {
    /// Accounts in the boundary windows.
    pub examined: u64,
    /// Accounts whose stored bucket was rewritten.
    pub updated: u64,
    /// Accounts whose stored bucket was already today's.
    pub unchanged: u64,
    /// Accounts written by someone else twice in a row (or deleted) while we tried.
    pub skipped: u64,
}

/// The inclusive due-date windows of `today`: [`CATCH_UP_DAYS`] dates ending at each
/// boundary date.
pub fn windows(today: time::Date) -> Vec<(time::Date, time::Date)> {
    BOUNDARIES
        .iter()
        .map(|days| {
            let latest = today - time::Duration::days(*days);
            (latest - time::Duration::days(CATCH_UP_DAYS - 1), latest)
        })
        .collect()
}

/// Ages the accounts whose bucket changes on `today` (UTC, as the API computes it).
pub async fn run(app: &App, today: time::Date) -> Result<AgingReport, SchedulerError> {
    let windows = windows(today);
    // Every (shard, window) Query at once: 8 × 4 small key ranges.
    let queries = Partition::All.pk_values().into_iter().flat_map(|pk| {
        windows
            .iter()
            .map(move |(earliest, latest)| (pk.clone(), *earliest, *latest))
    });
    let found =
        join_all(queries.map(|(pk, earliest, latest)| app.aging.due_between(pk, earliest, latest)))
            .await;
    let mut candidates = Vec::new();
    for part in found {
        candidates.extend(part?);
    }
    let outcomes: Vec<Result<Outcome, SchedulerError>> = stream::iter(candidates)
        .map(|stored| age(app, stored, today))
        .buffer_unordered(WRITE_CONCURRENCY)
        .collect()
        .await;
    let mut report = AgingReport::default();
    for outcome in outcomes {
        report.examined += 1;
        match outcome? {
            Outcome::Updated => report.updated += 1,
            Outcome::Unchanged => report.unchanged += 1,
            Outcome::Skipped => report.skipped += 1,
        }
    }
    Ok(report)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Updated,
    Unchanged,
    Skipped,
}

/// Stores today's bucket of one account if it differs; one re-read on a lost race.
async fn age(app: &App, stored: StoredAging, today: time::Date) -> Result<Outcome, SchedulerError> {
    let mut current = stored;
    for attempt in 0..2 {
        let days = days_past_due(current.due, today);
        let bucket = DpdBucket::for_days(days);
        if current.bucket.as_deref() == Some(bucket.as_str()) {
            return Ok(Outcome::Unchanged);
        }
        if app.aging.store_bucket(&current, bucket, days).await? {
            return Ok(Outcome::Updated);
        }
        if attempt == 0 {
            match app.aging.get(current.id).await? {
                Some(fresh) => current = fresh,
                None => return Ok(Outcome::Skipped),
            }
        }
    }
    tracing::warn!(account_id = %current.id, "account kept changing during aging; skipped");
    Ok(Outcome::Skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn windows_end_at_the_boundaries_and_share_a_bucket() {
        let today = date!(2026 - 06 - 15);
        let windows = windows(today);
        assert_eq!(windows[0], (date!(2026 - 06 - 08), date!(2026 - 06 - 14)));
        assert_eq!(windows[3].1, date!(2026 - 03 - 16));
        for (earliest, latest) in windows {
            assert_eq!(
                DpdBucket::for_days(days_past_due(earliest, today)),
                DpdBucket::for_days(days_past_due(latest, today))
            );
            assert_ne!(
                DpdBucket::for_days(days_past_due(latest, today)),
                DpdBucket::for_days(days_past_due(latest, today) - 1)
            );
        }
    }
}
