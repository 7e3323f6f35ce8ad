//! Role-based access control: one table, role × action, consulted by every handler.
//!
//! A handler names the [`Action`] it performs and calls [`authorize`]; the answer is either
//! `403` or the [`Scope`] the caller may act in. Agents get [`Scope::Assigned`]: they work
//! only the accounts assigned to them, and handlers enforce that by comparing the account's
//! `assigned_agent_id` with the caller (or by listing only the agent's index partition).
//!
//! # `pending`: self-registered users have no access
//!
//! Debtor data is regulated, so a stranger who registers must read nothing. `POST
//! /auth/register` creates a user with the fifth role, [`Role::Pending`], which this table
//! allows no action at all: every route that authorises answers `403`, and the WebSocket
//! `$connect` (which authorises [`Action::Subscribe`]) refuses it. Only the routes that need
//! no action (`GET /auth/me`, `POST /auth/logout`, `POST /auth/logout-all`, `POST
//! /auth/refresh`) work for it. An admin sees pending users in `GET /users` and grants a
//! role with `PATCH /users/{id}` `{"role": ...}`.
//!
//! We chose a pending role over invitations (admin-issued sign-up links) because it keeps one
//! sign-up path and one user table: no invitation tokens to store, expire and revoke, and the
//! admin's decision is the same `PATCH` that already changes roles (so it retires the user's
//! tokens and keeps the last-admin rule). An agency that wants no strangers at all turns
//! registration off (`SelfRegistration=off`) and creates users with `POST /users`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::Id;
use crate::error::ApiError;

/// The four roles of the design, most powerful first, and `pending`: a self-registered user
/// waiting for an admin to grant one of them (allowed nothing, see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Manager,
    Agent,
    Viewer,
    Pending,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Manager,
        Role::Agent,
        Role::Viewer,
        Role::Pending,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Agent => "agent",
            Role::Viewer => "viewer",
            Role::Pending => "pending",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| "must be one of admin, manager, agent, viewer, pending".to_owned())
    }
}

/// Who is calling, as established from a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Id,
    pub role: Role,
}

/// Everything a caller can ask to do. Each route maps to exactly one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `GET/POST /users`, `PATCH /users/{id}`.
    ManageUsers,
    /// `GET /accounts`, `GET /accounts/{id}`.
    ReadAccounts,
    /// `POST /accounts`.
    CreateAccount,
    /// `PATCH /accounts/{id}`.
    UpdateAccount,
    /// `DELETE /accounts/{id}`.
    DeleteAccount,
    /// `POST /accounts/{id}/payments`.
    RecordPayment,
    /// `GET /accounts/{id}/payments`.
    ReadPayments,
    /// `PATCH /accounts/{id}/payments/{pid}`.
    ChangePaymentStatus,
    /// `POST /accounts/{id}/activities`.
    LogActivity,
    /// `GET /accounts/{id}/activities`, `POST /activities/batch`.
    ReadActivities,
    /// `/bulk/*`.
    ManageBulkJobs,
    /// `/imports/*`: placement imports.
    ManageImports,
    /// `GET /dashboard/summary`.
    ReadDashboard,
    /// WebSocket subscriptions.
    Subscribe,
    /// `POST /auth/password`: change one's own password.
    ChangeOwnPassword,
    /// `GET /audit`, `GET /audit/export` of an account's trail (admins and managers).
    ReadAccountAudit,
    /// `GET /audit`, `GET /audit/export` of anything else: users, jobs, imports, an actor,
    /// a time range (admins).
    ReadAudit,
}

/// What part of the data an allowed caller may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every account (or, for bulk jobs, every job).
    All,
    /// Only the accounts assigned to this agent.
    Assigned(Id),
    /// Only the items this user created (a manager's own bulk jobs in lists).
    Own(Id),
}

/// The role × action table. `None` is forbidden.
fn scope_for(role: Role, action: Action, user: Id) -> Option<Scope> {
    use Action::*;
    use Role::*;
    match (role, action) {
        (Admin, _) => Some(Scope::All),
        (Manager, ManageUsers | ReadAudit) => None,
        (Manager, ManageBulkJobs | ManageImports) => Some(Scope::Own(user)),
        (Manager, _) => Some(Scope::All),
        (
            Agent,
            ReadAccounts | UpdateAccount | RecordPayment | ReadPayments | LogActivity
            | ReadActivities | ReadDashboard | Subscribe,
        ) => Some(Scope::Assigned(user)),
        (Agent, ChangeOwnPassword) => Some(Scope::Own(user)),
        (Agent, _) => None,
        (Viewer, ReadAccounts | ReadPayments | ReadActivities | ReadDashboard | Subscribe) => {
            Some(Scope::All)
        }
        (Viewer, ChangeOwnPassword) => Some(Scope::Own(user)),
        (Viewer, _) => None,
        // A self-registered user until an admin grants a role: nothing.
        (Pending, _) => None,
    }
}

/// Allows `action` for `caller` with the scope the table gives, or answers `403`.
pub fn authorize(caller: &Caller, action: Action) -> Result<Scope, ApiError> {
    scope_for(caller.role, action, caller.user_id).ok_or_else(|| {
        ApiError::forbidden(format!(
            "the {} role may not perform this action",
            caller.role
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            user_id: Id::generate(),
            role,
        }
    }

    #[test]
    fn the_table_matches_the_design() {
        use Action::*;
        let allowed = |role, action| authorize(&caller(role), action).is_ok();
        // admin: everything
        for action in [
            ManageUsers,
            CreateAccount,
            DeleteAccount,
            ChangePaymentStatus,
            ManageBulkJobs,
        ] {
            assert!(allowed(Role::Admin, action), "{action:?}");
        }
        // manager: everything but users
        assert!(!allowed(Role::Manager, ManageUsers));
        assert!(allowed(Role::Manager, CreateAccount));
        assert!(allowed(Role::Manager, ChangePaymentStatus));
        // agent: works its own accounts, nothing administrative
        for action in [
            ManageUsers,
            CreateAccount,
            DeleteAccount,
            ChangePaymentStatus,
            ManageBulkJobs,
            ManageImports,
        ] {
            assert!(!allowed(Role::Agent, action), "{action:?}");
        }
        assert!(allowed(Role::Agent, RecordPayment));
        // viewer: reads only
        for action in [
            ManageUsers,
            CreateAccount,
            UpdateAccount,
            RecordPayment,
            LogActivity,
            ManageBulkJobs,
            ManageImports,
        ] {
            assert!(!allowed(Role::Viewer, action), "{action:?}");
        }
        assert!(allowed(Role::Viewer, ReadAccounts));
    }

    #[test]
    fn pending_may_do_nothing_and_every_other_role_may_change_its_password() {
        use Action::*;
        let every = [
            ManageUsers,
            ReadAccounts,
            CreateAccount,
            UpdateAccount,
            DeleteAccount,
            RecordPayment,
            ReadPayments,
            ChangePaymentStatus,
            LogActivity,
            ReadActivities,
            ManageBulkJobs,
            ManageImports,
            ReadDashboard,
            Subscribe,
            ChangeOwnPassword,
        ];
        for action in every {
            let err = authorize(&caller(Role::Pending), action).unwrap_err();
            assert_eq!(err.status, http::StatusCode::FORBIDDEN, "{action:?}");
        }
        for role in [Role::Admin, Role::Manager, Role::Agent, Role::Viewer] {
            assert!(
                authorize(&caller(role), ChangeOwnPassword).is_ok(),
                "{role}"
            );
        }
    }

    #[test]
    fn the_audit_trail_is_for_admins_and_for_managers_of_accounts() {
        let allowed = |role, action| authorize(&caller(role), action).is_ok();
        assert!(allowed(Role::Admin, Action::ReadAudit));
        assert!(allowed(Role::Admin, Action::ReadAccountAudit));
        assert!(allowed(Role::Manager, Action::ReadAccountAudit));
        assert!(!allowed(Role::Manager, Action::ReadAudit));
        for role in [Role::Agent, Role::Viewer, Role::Pending] {
            assert!(!allowed(role, Action::ReadAccountAudit), "{role}");
            assert!(!allowed(role, Action::ReadAudit), "{role}");
        }
    }

    #[test]
    fn agents_are_scoped_to_their_accounts_and_managers_to_their_jobs() {
        let agent = caller(Role::Agent);
        assert_eq!(
            authorize(&agent, Action::UpdateAccount).unwrap(),
            Scope::Assigned(agent.user_id)
        );
        let manager = caller(Role::Manager);
        assert_eq!(
            authorize(&manager, Action::ManageBulkJobs).unwrap(),
            Scope::Own(manager.user_id)
        );
        let err = authorize(&caller(Role::Viewer), Action::CreateAccount).unwrap_err();
        assert_eq!(err.status, http::StatusCode::FORBIDDEN);
    }

    #[test]
    fn roles_parse_from_their_names_only() {
        assert_eq!("agent".parse::<Role>().unwrap(), Role::Agent);
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("Admin".parse::<Role>().is_err());
        assert!("root".parse::<Role>().is_err());
    }
}
