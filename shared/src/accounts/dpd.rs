//! Days past due: derived from `due_date`, computed fresh on every read (a nightly batch
//! keeps the stored copies current for reports).

/// Today's date in UTC.
pub fn today_utc() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// Whole days from `due` to `today`, 0 when not yet due.
pub fn days_past_due(due: time::Date, today: time::Date) -> i64 {
    (today - due).whole_days().max(0)
}

#[cfg(test)]
mod tests {
    use super::super::model::DpdBucket;
    use super::*;
    use time::macros::date;

    #[test]
    fn buckets_follow_days() {
        let today = date!(2026 - 11 - 25);
        let cases = [
            (date!(2026 - 12 - 01), 0, DpdBucket::Current),
            (date!(2026 - 11 - 25), 0, DpdBucket::Current),
            (date!(2026 - 11 - 24), 1, DpdBucket::D1To30),
            (date!(2026 - 10 - 26), 30, DpdBucket::D1To30),
            (date!(2026 - 10 - 25), 31, DpdBucket::D31To60),
            (date!(2026 - 09 - 26), 60, DpdBucket::D31To60),
            (date!(2026 - 08 - 27), 90, DpdBucket::D61To90),
            (date!(2026 - 08 - 26), 91, DpdBucket::D90Plus),
        ];
        for (due, days, bucket) in cases {
            assert_eq!(days_past_due(due, today), days, "{due}");
            assert_eq!(DpdBucket::for_days(days), bucket, "{due}");
            let (lo, hi) = bucket.due_range(today);
            assert!(lo.is_none_or(|lo| lo <= due) && hi.is_none_or(|hi| due <= hi));
        }
        assert_eq!(
            DpdBucket::D1To30.due_range(today),
            (Some(date!(2026 - 10 - 26)), Some(date!(2026 - 11 - 24)))
        );
        assert_eq!(
            DpdBucket::Current.due_range(today),
            (Some(date!(2026 - 11 - 25)), None)
        );
    }
}
