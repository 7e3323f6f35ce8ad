//! Who may change which account field through `PATCH /accounts/{id}`, which status moves an
//! agent may make, and which changes are written to the account's timeline (in the same
//! transaction as the change).
//!
//! | field | admin | manager | agent (own accounts) | audited |
//! | --- | --- | --- | --- | --- |
//! | `status` | yes¹ | yes¹ | only between `active` and `promise_to_pay`, and to `disputed`² | `status_change` |
//! | `debtor_phone`, `debtor_email` | yes | yes | yes | `field_change` |
//! | `debtor_timezone` | yes | yes | no³ | `field_change` |
//! | `assigned_agent_id` | yes⁴ | yes⁴ | no | `field_change` |
//! | `tags` | yes | yes | yes | no |
//! | `reference`, `debtor_name`, `due_date` | yes | yes | no | no |
//!
//! 1. Nobody sets `paid` on an account that still owes: `paid` follows from a zero balance
//!    (the ledger sets it when a payment pays the account off, and a refund reopens it), so
//!    `paid` with `balance > 0` is a `422` (`paid-requires-zero-balance`) for every role.
//! 2. An agent may move an account among `active` / `promise_to_pay` and open a dispute;
//!    it never clears a dispute (a disputed debt must be verified first, Regulation F
//!    1006.34 / FDCPA 809(b)), and never closes, settles or puts an account on a plan.
//! 3. The time zone decides the debtor's calling hours (Regulation F 1006.6(b)(1)(i)): an
//!    agent who could move it could call at 06:00 and move it back.
//! 4. Only to a user that exists, is enabled and has role `agent` ([`super::check_assignable`]).
//!
//! The same rules hold wherever a status moves on a caller's behalf: a promise or dispute
//! logged through the activities function ([`status_refusal`]) and a bulk job ([`check_paid`],
//! [`audit`]).
//!
//! A field the caller's role may not change is a `403` problem+json whose `errors` name each
//! such field (`403` rather than `422`: the request is valid, the caller lacks the right;
//! the same status as an agent writing another agent's account). Nothing is written.
//!
//! Audited changes: a status change is the `status_change` activity it always was; every
//! other audited field that changed goes into one `field_change` activity whose note lists
//! `field: old → new` per field. Both are `Put`s in the `TransactWriteItems` of the update,
//! so an update is never stored without its audit entry (and vice versa).

use super::model::{Account, AccountStatus};
use crate::activities::{status_change, Activity, ActivityType};
use crate::auth::Role;
use crate::domain::{Id, Timestamp};
use crate::error::{ApiError, FieldError};

/// Who may change one field, and whether its changes are audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRule {
    pub field: &'static str,
    /// The roles that may change it (an agent only on its own accounts).
    pub roles: &'static [Role],
    /// Whether a change is logged (`status_change` / `field_change`).
    pub audited: bool,
}

const ALL_WRITERS: &[Role] = &[Role::Admin, Role::Manager, Role::Agent];
const SUPERVISORS: &[Role] = &[Role::Admin, Role::Manager];

/// The one table of `PATCH /accounts/{id}` fields (the module documentation says why).
pub const PATCH_FIELDS: [FieldRule; 9] = [
    FieldRule {
        field: "status",
        roles: ALL_WRITERS,
        audited: true,
    },
    FieldRule {
        field: "debtor_phone",
        roles: ALL_WRITERS,
        audited: true,
    },
    FieldRule {
        field: "debtor_email",
        roles: ALL_WRITERS,
        audited: true,
    },
    FieldRule {
        field: "debtor_timezone",
        roles: SUPERVISORS,
        audited: true,
    },
    FieldRule {
        field: "assigned_agent_id",
        roles: SUPERVISORS,
        audited: true,
    },
    FieldRule {
        field: "tags",
        roles: ALL_WRITERS,
        audited: false,
    },
    FieldRule {
        field: "reference",
        roles: SUPERVISORS,
        audited: false,
    },
    FieldRule {
        field: "debtor_name",
        roles: SUPERVISORS,
        audited: false,
    },
    FieldRule {
        field: "due_date",
        roles: SUPERVISORS,
        audited: false,
    },
];

/// The rule of `field` (`None`: not a field a PATCH may send).
pub fn rule(field: &str) -> Option<&'static FieldRule> {
    PATCH_FIELDS.iter().find(|rule| rule.field == field)
}

/// The statuses an agent may move an account between (and from).
const AGENT_STATUSES: [AccountStatus; 2] = [AccountStatus::Active, AccountStatus::PromiseToPay];

/// Why `role` may not move an account from `from` to `to` (`None`: it may).
pub fn status_refusal(role: Role, from: AccountStatus, to: AccountStatus) -> Option<&'static str> {
    if from == to || role != Role::Agent {
        return None;
    }
    if from == AccountStatus::Disputed {
        return Some("an agent may not clear a dispute; a manager reviews it");
    }
    if !AGENT_STATUSES.contains(&from) {
        return Some("an agent may change the status only of an active or promise_to_pay account");
    }
    if AGENT_STATUSES.contains(&to) || to == AccountStatus::Disputed {
        return None;
    }
    Some("an agent may set only active, promise_to_pay or disputed")
}

/// Checks the fields `role` sends in a PATCH of an account whose status is `from`
/// (`to`: the status the body asks for): the fields the role may not change and a status
/// move it may not make are one `403` naming each field. Run before anything is written;
/// [`check_paid`] then checks the account the PATCH would store.
pub fn check_fields(
    role: Role,
    fields: &[String],
    from: AccountStatus,
    to: Option<AccountStatus>,
) -> Result<(), ApiError> {
    let mut refused: Vec<FieldError> = fields
        .iter()
        .filter(|field| rule(field).is_some_and(|rule| !rule.roles.contains(&role)))
        .map(|field| {
            FieldError::new(
                field.as_str(),
                format!("the {} role may not change this field", role_name(role)),
            )
        })
        .collect();
    if let Some(why) = to.and_then(|to| status_refusal(role, from, to)) {
        refused.push(FieldError::new("status", why));
    }
    if refused.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = refused.iter().map(|e| e.field.as_str()).collect();
    Err(
        ApiError::forbidden(format!("your role may not change {}", names.join(", ")))
            .with_errors(refused),
    )
}

/// `paid` is derived from the balance: an account that still owes cannot be set `paid`.
pub fn check_paid(account: &Account) -> Result<(), ApiError> {
    if account.status == AccountStatus::Paid && account.balance.0 > 0 {
        return Err(ApiError::unprocessable(
            "paid-requires-zero-balance",
            format!(
                "the account still owes {} {}; it becomes paid when payments bring the balance to 0",
                account.balance, account.currency
            ),
        )
        .with_errors(vec![FieldError::new(
            "status",
            "paid is set by payments when the balance reaches 0",
        )]));
    }
    Ok(())
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Manager => "manager",
        Role::Agent => "agent",
        _ => "current",
    }
}

/// The activities an update from `previous` to `next` by `actor` logs: a `status_change`
/// when the status moved, a `field_change` listing every other audited field that changed.
pub fn audit(previous: &Account, next: &Account, actor: Id, at: Timestamp) -> Vec<Activity> {
    let mut activities = Vec::new();
    if previous.status != next.status {
        activities.push(status_change(
            previous.id,
            previous.status,
            next.status,
            actor,
            at,
        ));
    }
    let agent = |a: &Account| {
        a.assigned_agent_id
            .map(|id| id.to_string())
            .unwrap_or_else(|| "none".to_owned())
    };
    let changes: Vec<String> = [
        ("debtor_phone", &previous.debtor_phone, &next.debtor_phone),
        ("debtor_email", &previous.debtor_email, &next.debtor_email),
        (
            "debtor_timezone",
            &previous.debtor_timezone,
            &next.debtor_timezone,
        ),
        ("assigned_agent_id", &agent(previous), &agent(next)),
    ]
    .into_iter()
    .filter(|(_, old, new)| old != new)
    .map(|(field, old, new)| format!("{field}: {old} → {new}"))
    .collect();
    if !changes.is_empty() {
        activities.push(Activity {
            id: Id::generate(),
            account_id: previous.id,
            activity_type: ActivityType::FieldChange,
            note: changes.join("; "),
            promise_amount: None,
            promise_date: None,
            outcome: None,
            actor_id: actor,
            created_at: at,
        });
    }
    activities
}

#[cfg(test)]
mod tests {
    use super::*;
    use AccountStatus::*;

    #[test]
    fn every_audited_field_is_logged_and_the_table_names_each_patch_field_once() {
        let mut names: Vec<&str> = PATCH_FIELDS.iter().map(|r| r.field).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PATCH_FIELDS.len());
        let now = Timestamp::now();
        let before = Account {
            id: Id::generate(),
            reference: "REF-1".into(),
            debtor_name: "Dana Debtor".into(),
            debtor_email: "dana@example.com".into(),
            debtor_phone: "+14155550123".into(),
            debtor_timezone: "America/New_York".into(),
            currency: "USD".parse().unwrap(),
            original_balance: crate::domain::MinorUnits(100),
            balance: crate::domain::MinorUnits(100),
            status: Active,
            assigned_agent_id: None,
            due_date: time::macros::date!(2026 - 01 - 15),
            days_past_due: 0,
            dpd_bucket: super::super::model::DpdBucket::Current,
            tags: vec![],
            version: 1,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            applied_bulk_jobs: Default::default(),
        };
        let mut after = before.clone();
        after.status = Disputed;
        after.debtor_phone = "+14155550999".into();
        after.debtor_email = "new@example.com".into();
        after.debtor_timezone = "Europe/Paris".into();
        after.assigned_agent_id = Some(Id::generate());
        after.tags = vec!["x".into()];
        let logged = audit(&before, &after, Id::generate(), Timestamp::now());
        assert_eq!(logged.len(), 2);
        let note = &logged[1].note;
        for rule in PATCH_FIELDS
            .iter()
            .filter(|r| r.audited && r.field != "status")
        {
            assert!(note.contains(rule.field), "{} in {note}", rule.field);
        }
        assert!(!note.contains("tags"));
        assert!(audit(&before, &before, Id::generate(), Timestamp::now()).is_empty());
    }

    #[test]
    fn agents_move_only_among_active_promise_and_into_dispute() {
        for (from, to, ok) in [
            (Active, PromiseToPay, true),
            (PromiseToPay, Active, true),
            (Active, Disputed, true),
            (Disputed, Disputed, true),
            (Disputed, Active, false),
            (Disputed, PromiseToPay, false),
            (Active, Paid, false),
            (Active, Closed, false),
            (Active, PaymentPlan, false),
            (PaymentPlan, Active, false),
            (Closed, Active, false),
        ] {
            assert_eq!(
                status_refusal(Role::Agent, from, to).is_none(),
                ok,
                "{from} -> {to}"
            );
            assert!(status_refusal(Role::Manager, from, to).is_none());
        }
    }
}
