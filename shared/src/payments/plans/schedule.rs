//! The schedule math of a plan: due dates, installment amounts, which installments the
//! plan's payments cover (oldest first), and which are missed. Pure functions, unit-tested
//! here; the stores only persist what these answer.

use time::{Date, Duration, Month};

use super::model::{Frequency, Installment, InstallmentStatus, Plan, PlanStatus, Receipt};
use crate::domain::{Id, MinorUnits};

/// The most installments a plan may have (ten years of monthly installments).
pub const MAX_INSTALLMENTS: u32 = 120;

/// How the total is cut into installments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// This many installments of equal amounts; the last one takes the remainder of the
    /// division (so it may be up to `count − 1` minor units larger).
    Count(u32),
    /// Installments of this amount; the last one is what remains (at most this amount).
    Amount(MinorUnits),
}

/// Why a schedule cannot be built, with the request field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    pub field: &'static str,
    pub message: String,
}

fn refuse(field: &'static str, message: impl Into<String>) -> ScheduleError {
    ScheduleError {
        field,
        message: message.into(),
    }
}

/// `date` moved by `months` calendar months, on the same day of the month or the month's
/// last day when it is shorter (Jan 31 → Feb 28 → Mar 31: each date is computed from the
/// first, so a short month does not shift the ones after it).
fn add_months(date: Date, months: u32) -> Option<Date> {
    let index = date.year() * 12 + i32::from(u8::from(date.month())) - 1 + months as i32;
    let year = index.div_euclid(12);
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let day = date.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).ok()
}

/// The due date of installment `index` (0-based) of a schedule starting on `first`.
pub fn due_date(frequency: Frequency, first: Date, index: u32) -> Option<Date> {
    match frequency {
        Frequency::Weekly => first.checked_add(Duration::weeks(i64::from(index))),
        Frequency::Biweekly => first.checked_add(Duration::weeks(2 * i64::from(index))),
        Frequency::Monthly => add_months(first, index),
    }
}

/// The installments of `total` from `first` on, cut by `split`.
pub fn build(
    frequency: Frequency,
    first: Date,
    total: MinorUnits,
    split: Split,
) -> Result<Vec<Installment>, ScheduleError> {
    if total.0 < 1 {
        return Err(refuse("total_amount", "must be at least 1 minor unit"));
    }
    let (count, each) = match split {
        Split::Count(count) => {
            if count == 0 || count > MAX_INSTALLMENTS {
                return Err(refuse(
                    "installment_count",
                    format!("must be from 1 to {MAX_INSTALLMENTS}"),
                ));
            }
            let each = total.0 / i64::from(count);
            if each < 1 {
                return Err(refuse(
                    "installment_count",
                    "is more than the total in minor units: each installment must be at least 1",
                ));
            }
            (count, each)
        }
        Split::Amount(amount) => {
            if amount.0 < 1 || amount > total {
                return Err(refuse(
                    "installment_amount",
                    "must be from 1 minor unit to the plan's total",
                ));
            }
            let count = (total.0 + amount.0 - 1) / amount.0;
            if count > i64::from(MAX_INSTALLMENTS) {
                return Err(refuse(
                    "installment_amount",
                    format!("is too small: the plan would have more than {MAX_INSTALLMENTS} installments"),
                ));
            }
            (count as u32, amount.0)
        }
    };
    (0..count)
        .map(|index| {
            let due_date = due_date(frequency, first, index)
                .ok_or_else(|| refuse("first_due_date", "the schedule runs past the calendar"))?;
            let amount = if index + 1 == count {
                total.0 - each * i64::from(count - 1)
            } else {
                each
            };
            Ok(Installment {
                due_date,
                amount: MinorUnits(amount),
                missed: false,
            })
        })
        .collect()
}

/// What `paid` covers of each installment, poured oldest first: every installment is full
/// before the next gets anything, so an overpayment rolls forward and a smaller sum (after
/// a refund) empties the newest ones first.
pub fn allocate(installments: &[Installment], paid: MinorUnits) -> Vec<MinorUnits> {
    let mut left = paid.0.max(0);
    installments
        .iter()
        .map(|installment| {
            let covered = left.min(installment.amount.0);
            left -= covered;
            MinorUnits(covered)
        })
        .collect()
}

/// The status of an installment with `paid` of it covered.
pub fn status_of(installment: &Installment, paid: MinorUnits) -> InstallmentStatus {
    if paid >= installment.amount {
        InstallmentStatus::Paid
    } else if installment.missed {
        InstallmentStatus::Missed
    } else if paid.0 > 0 {
        InstallmentStatus::PartlyPaid
    } else {
        InstallmentStatus::Due
    }
}

/// The oldest installment neither paid in full nor already missed: the next one the
/// scheduler may find missed (its due date is the plan's `due_sk`).
pub fn next_open(plan: &Plan) -> Option<&Installment> {
    allocate(&plan.installments, plan.paid_amount())
        .into_iter()
        .zip(&plan.installments)
        .find(|(paid, installment)| *paid < installment.amount && !installment.missed)
        .map(|(_, installment)| installment)
}

/// Whether the plan's payments cover every installment.
pub fn fully_paid(plan: &Plan) -> bool {
    plan.paid_amount() >= plan.total_amount
}

/// Records a completed payment on the plan. `false` when the plan already has it (a
/// replayed write).
pub fn receive(plan: &mut Plan, payment: Id, amount: MinorUnits) -> bool {
    if plan.receipts.iter().any(|r| r.payment_id == payment) {
        return false;
    }
    plan.receipts.push(Receipt {
        payment_id: payment,
        amount,
    });
    true
}

/// Removes a refunded or reversed payment from the plan, re-opening what it paid (newest
/// installments first, see [`allocate`]). `false` when the plan never received it.
pub fn refund(plan: &mut Plan, payment: Id) -> bool {
    let before = plan.receipts.len();
    plan.receipts.retain(|r| r.payment_id != payment);
    plan.receipts.len() != before
}

/// Marks missed every installment due before `cutoff` (today minus the grace period) that
/// is not paid in full; answers how many it marked.
pub fn mark_missed(plan: &mut Plan, cutoff: Date) -> u32 {
    let paid = allocate(&plan.installments, plan.paid_amount());
    let mut marked = 0;
    for (installment, paid) in plan.installments.iter_mut().zip(paid) {
        if installment.due_date < cutoff && !installment.missed && paid < installment.amount {
            installment.missed = true;
            marked += 1;
        }
    }
    marked
}

/// Whether the plan is broken: `missed_to_break` installments missed, or none left open
/// while some are still unpaid (nothing more can keep it).
pub fn is_broken(plan: &Plan, missed_to_break: u32) -> bool {
    plan.status == PlanStatus::Active
        && !fully_paid(plan)
        && (plan.missed_count() >= missed_to_break || next_open(plan).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;
    use time::macros::date;

    fn plan(installments: Vec<Installment>) -> Plan {
        let now = Timestamp::now();
        Plan {
            id: Id::generate(),
            account_id: Id::generate(),
            status: PlanStatus::Active,
            frequency: Frequency::Monthly,
            currency: "USD".parse().unwrap(),
            total_amount: MinorUnits(installments.iter().map(|i| i.amount.0).sum()),
            installments,
            receipts: Vec::new(),
            created_by: Id::generate(),
            version: 1,
            created_at: now,
            updated_at: now,
            ended_at: None,
        }
    }

    fn amounts(installments: &[Installment]) -> Vec<i64> {
        installments.iter().map(|i| i.amount.0).collect()
    }

    #[test]
    fn monthly_dates_keep_the_first_day_and_clamp_short_months() {
        let dates: Vec<Date> = (0..5)
            .map(|i| due_date(Frequency::Monthly, date!(2027 - 01 - 31), i).unwrap())
            .collect();
        assert_eq!(
            dates,
            vec![
                date!(2027 - 01 - 31),
                date!(2027 - 02 - 28),
                date!(2027 - 03 - 31),
                date!(2027 - 04 - 30),
                date!(2027 - 05 - 31)
            ]
        );
        assert_eq!(
            due_date(Frequency::Monthly, date!(2027 - 11 - 15), 14),
            Some(date!(2029 - 01 - 15))
        );
        assert_eq!(
            due_date(Frequency::Monthly, date!(2027 - 12 - 29), 2),
            Some(date!(2028 - 02 - 29))
        );
        assert_eq!(
            due_date(Frequency::Weekly, date!(2027 - 12 - 29), 1),
            Some(date!(2028 - 01 - 05))
        );
        assert_eq!(
            due_date(Frequency::Biweekly, date!(2027 - 12 - 29), 2),
            Some(date!(2028 - 01 - 26))
        );
    }

    #[test]
    fn a_count_splits_evenly_and_the_last_takes_the_remainder() {
        let split = build(
            Frequency::Monthly,
            date!(2027 - 01 - 15),
            MinorUnits(120_005),
            Split::Count(12),
        )
        .unwrap();
        assert_eq!(split.len(), 12);
        assert_eq!(amounts(&split)[..11], [10_000; 11]);
        assert_eq!(split[11].amount, MinorUnits(10_005));
        assert_eq!(split[11].due_date, date!(2027 - 12 - 15));
    }

    #[test]
    fn an_amount_makes_as_many_installments_as_needed() {
        let split = build(
            Frequency::Weekly,
            date!(2027 - 01 - 01),
            MinorUnits(1_000),
            Split::Amount(MinorUnits(300)),
        )
        .unwrap();
        assert_eq!(amounts(&split), vec![300, 300, 300, 100]);
        assert_eq!(split[3].due_date, date!(2027 - 01 - 22));
        let exact = build(
            Frequency::Weekly,
            date!(2027 - 01 - 01),
            MinorUnits(900),
            Split::Amount(MinorUnits(300)),
        )
        .unwrap();
        assert_eq!(amounts(&exact), vec![300, 300, 300]);
    }

    #[test]
    fn impossible_splits_name_their_field() {
        let first = date!(2027 - 01 - 01);
        let field = |total, split| {
            build(Frequency::Monthly, first, MinorUnits(total), split)
                .unwrap_err()
                .field
        };
        assert_eq!(field(100, Split::Count(0)), "installment_count");
        assert_eq!(field(100, Split::Count(121)), "installment_count");
        assert_eq!(field(5, Split::Count(6)), "installment_count");
        assert_eq!(
            field(100, Split::Amount(MinorUnits(0))),
            "installment_amount"
        );
        assert_eq!(
            field(100, Split::Amount(MinorUnits(101))),
            "installment_amount"
        );
        assert_eq!(
            field(10_000, Split::Amount(MinorUnits(1))),
            "installment_amount"
        );
        assert_eq!(field(0, Split::Count(1)), "total_amount");
    }

    #[test]
    fn payments_fill_the_oldest_first_and_overpayments_roll_forward() {
        let installments = build(
            Frequency::Monthly,
            date!(2027 - 01 - 15),
            MinorUnits(300),
            Split::Count(3),
        )
        .unwrap();
        let paid = |sum| -> Vec<i64> {
            allocate(&installments, MinorUnits(sum))
                .into_iter()
                .map(|m| m.0)
                .collect()
        };
        assert_eq!(paid(0), vec![0, 0, 0]);
        assert_eq!(paid(50), vec![50, 0, 0]);
        assert_eq!(paid(150), vec![100, 50, 0]);
        assert_eq!(paid(400), vec![100, 100, 100]);
        assert_eq!(
            status_of(&installments[1], MinorUnits(50)),
            InstallmentStatus::PartlyPaid
        );
    }

    #[test]
    fn receipts_refunds_missed_and_broken() {
        let mut p = plan(
            build(
                Frequency::Monthly,
                date!(2027 - 01 - 15),
                MinorUnits(300),
                Split::Count(3),
            )
            .unwrap(),
        );
        let first = Id::generate();
        assert!(receive(&mut p, first, MinorUnits(150)));
        assert!(
            !receive(&mut p, first, MinorUnits(150)),
            "a replay counts once"
        );
        assert_eq!(next_open(&p).unwrap().due_date, date!(2027 - 02 - 15));
        // The cutoff passed the first two due dates: only the partly paid second is missed.
        assert_eq!(mark_missed(&mut p, date!(2027 - 02 - 20)), 1);
        assert_eq!(mark_missed(&mut p, date!(2027 - 02 - 20)), 0, "once only");
        assert_eq!(next_open(&p).unwrap().due_date, date!(2027 - 03 - 15));
        assert!(!is_broken(&p, 2));
        assert!(is_broken(&p, 1));
        // A refund re-opens what the payment paid.
        assert!(refund(&mut p, first));
        assert!(!refund(&mut p, first));
        assert_eq!(p.paid_amount(), MinorUnits(0));
        // A late payment pays the missed installment; it still counts as missed.
        assert!(receive(&mut p, Id::generate(), MinorUnits(200)));
        let view = p.view();
        assert_eq!(view.installments[1].status, InstallmentStatus::Paid);
        assert_eq!(view.missed_count, 1);
        assert_eq!(view.remaining_amount, MinorUnits(100));
        // Every installment missed or paid and some unpaid: nothing can keep it.
        assert_eq!(mark_missed(&mut p, date!(2027 - 04 - 01)), 1);
        assert!(is_broken(&p, 5));
        assert!(receive(&mut p, Id::generate(), MinorUnits(100)));
        assert!(fully_paid(&p));
        assert!(!is_broken(&p, 1));
    }
}
