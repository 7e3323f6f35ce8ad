//! Who changes an item, and the stamp every writer puts on the item it writes.
//!
//! The audit trail is built from the tables' streams (see [`super`]), so the actor must
//! travel *on the item*: each writer adds the attributes of a [`Stamp`] (`changed_by`,
//! `changed_by_role`, `changed_at`, `request_id`, `source_ip`, `changed_via`) to its Put or
//! Update. The actor itself is ambient: [`crate::http::serve`] opens an [`acting`] scope per
//! request (request id and source IP, the caller `anonymous` until
//! [`crate::auth::Authenticator::authenticate`] [`identify`]s it), and the workers open one
//! per unit of work ([`Actor::system`] for the scheduler's jobs, [`Actor::on_behalf`] for
//! the bulk worker and the importer, who act for the user who started the job). Writers
//! only call [`Actor::current`] — no handler has to thread the actor through every call,
//! and a writer reached from any route stamps the right caller.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::builders::UpdateBuilder;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::auth::Caller;
use crate::domain::{Id, Timestamp};

/// The role stamped for the system's own jobs.
pub const SYSTEM_ROLE: &str = "system";
/// The actor of a request before (or without) authentication: registration, login.
pub const ANONYMOUS: &str = "anonymous";
/// The actor of a write made outside any [`acting`] scope (a writer that forgot one).
pub const UNATTRIBUTED: &str = "unattributed";

/// The stamp's attribute names, on every audited item.
pub mod attribute {
    pub const CHANGED_BY: &str = "changed_by";
    pub const CHANGED_BY_ROLE: &str = "changed_by_role";
    pub const CHANGED_AT: &str = "changed_at";
    pub const REQUEST_ID: &str = "request_id";
    pub const SOURCE_IP: &str = "source_ip";
    pub const CHANGED_VIA: &str = "changed_via";
    /// Every stamp attribute (never part of a change's diff).
    pub const ALL: [&str; 6] = [
        CHANGED_BY,
        CHANGED_BY_ROLE,
        CHANGED_AT,
        REQUEST_ID,
        SOURCE_IP,
        CHANGED_VIA,
    ];
}

/// Who makes a change: a user (id and role) or a system job (`system:scheduler:aging`),
/// the API request it came with, and what it went through when not a direct request
/// (`bulk:{job}`, `import:{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub role: String,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub via: Option<String>,
}

tokio::task_local! {
    static CURRENT: RefCell<Actor>;
}

/// Runs `work` with `actor` as the [`Actor::current`] of every write it makes.
pub async fn acting<F: Future>(actor: Actor, work: F) -> F::Output {
    CURRENT.scope(RefCell::new(actor), work).await
}

/// The stamp of a write made now by the current actor: what every writer adds.
pub fn stamp() -> Stamp {
    Actor::current().stamp(Timestamp::now())
}

/// Names the authenticated caller as the current actor (keeps the request id and source
/// IP). Outside an [`acting`] scope it does nothing.
pub fn identify(caller: &Caller) {
    let _ = CURRENT.try_with(|current| {
        let mut current = current.borrow_mut();
        current.id = caller.user_id.to_string();
        current.role = caller.role.as_str().to_owned();
    });
}

impl Actor {
    /// An API request, not yet authenticated.
    pub fn request(request_id: String, source_ip: Option<String>) -> Self {
        Self {
            id: ANONYMOUS.to_owned(),
            role: ANONYMOUS.to_owned(),
            request_id: Some(request_id),
            source_ip,
            via: None,
        }
    }

    /// A system job, e.g. `system("scheduler:aging")` → `system:scheduler:aging`.
    pub fn system(job: &str) -> Self {
        Self {
            id: format!("system:{job}"),
            role: SYSTEM_ROLE.to_owned(),
            request_id: None,
            source_ip: None,
            via: None,
        }
    }

    /// A worker acting for the user who started the work (`via`: `bulk:{job}`,
    /// `import:{id}`); the role is the user's when the work recorded it.
    pub fn on_behalf(user: Id, role: Option<&str>, via: String) -> Self {
        Self {
            id: user.to_string(),
            role: role.unwrap_or("unknown").to_owned(),
            request_id: None,
            source_ip: None,
            via: Some(via),
        }
    }

    /// No scope: the write is stamped, but as nobody's.
    pub fn unattributed() -> Self {
        Self {
            id: UNATTRIBUTED.to_owned(),
            role: UNATTRIBUTED.to_owned(),
            request_id: None,
            source_ip: None,
            via: None,
        }
    }

    /// The actor of the running [`acting`] scope, else [`Actor::unattributed`].
    pub fn current() -> Self {
        CURRENT
            .try_with(|current| current.borrow().clone())
            .unwrap_or_else(|_| Self::unattributed())
    }

    /// The stamp of a write made now by this actor.
    pub fn stamp(&self, at: Timestamp) -> Stamp {
        let optional = |value: &Option<String>| match value {
            Some(value) => AttributeValue::S(value.clone()),
            None => AttributeValue::Null(true),
        };
        Stamp(vec![
            (attribute::CHANGED_BY, AttributeValue::S(self.id.clone())),
            (
                attribute::CHANGED_BY_ROLE,
                AttributeValue::S(self.role.clone()),
            ),
            (attribute::CHANGED_AT, AttributeValue::S(at.to_string())),
            (attribute::REQUEST_ID, optional(&self.request_id)),
            (attribute::SOURCE_IP, optional(&self.source_ip)),
            (attribute::CHANGED_VIA, optional(&self.via)),
        ])
    }

    /// The actor a stamped item names (`None`: the item carries no stamp).
    pub fn from_item(item: &HashMap<String, AttributeValue>) -> Option<Self> {
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(value)) => Some(value.clone()),
            _ => None,
        };
        Some(Self {
            id: text(attribute::CHANGED_BY)?,
            role: text(attribute::CHANGED_BY_ROLE).unwrap_or_default(),
            request_id: text(attribute::REQUEST_ID),
            source_ip: text(attribute::SOURCE_IP),
            via: text(attribute::CHANGED_VIA),
        })
    }
}

/// The stamp of one write: the attributes a writer adds to its item.
#[derive(Debug, Clone)]
pub struct Stamp(Vec<(&'static str, AttributeValue)>);

impl Stamp {
    /// The `SET` clauses of an update (join them to the update's own with `, `); the values
    /// come with [`Stamped::stamped`].
    pub const SET: &'static str = "changed_by = :audit_by, changed_by_role = :audit_role, \
        changed_at = :audit_at, request_id = :audit_request, source_ip = :audit_ip, \
        changed_via = :audit_via";

    const PLACEHOLDERS: [&'static str; 6] = [
        ":audit_by",
        ":audit_role",
        ":audit_at",
        ":audit_request",
        ":audit_ip",
        ":audit_via",
    ];

    /// Adds the stamp to an item about to be Put.
    pub fn put_into(&self, item: &mut HashMap<String, AttributeValue>) {
        for (name, value) in &self.0 {
            item.insert((*name).to_owned(), value.clone());
        }
    }

    /// The stamp's expression values, by placeholder of [`Stamp::SET`].
    pub fn values(&self) -> impl Iterator<Item = (String, AttributeValue)> + '_ {
        Self::PLACEHOLDERS
            .iter()
            .zip(&self.0)
            .map(|(placeholder, (_, value))| ((*placeholder).to_owned(), value.clone()))
    }
}

/// An update request that can carry a stamp's values (its expression includes
/// [`Stamp::SET`]).
pub trait Stamped: Sized {
    fn stamped(self, stamp: &Stamp) -> Self;
}

impl Stamped for UpdateBuilder {
    fn stamped(self, stamp: &Stamp) -> Self {
        stamp.values().fold(self, |update, (k, v)| {
            update.expression_attribute_values(k, v)
        })
    }
}

impl Stamped for UpdateItemFluentBuilder {
    fn stamped(self, stamp: &Stamp) -> Self {
        stamp.values().fold(self, |update, (k, v)| {
            update.expression_attribute_values(k, v)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[tokio::test]
    async fn the_scope_names_the_request_then_the_caller() {
        assert_eq!(Actor::current().id, UNATTRIBUTED);
        let caller = Caller {
            user_id: Id::generate(),
            role: Role::Manager,
        };
        let seen = acting(
            Actor::request("r-1".into(), Some("10.0.0.1".into())),
            async {
                let before = Actor::current();
                identify(&caller);
                (before, Actor::current())
            },
        )
        .await;
        assert_eq!(seen.0.id, ANONYMOUS);
        assert_eq!(seen.1.id, caller.user_id.to_string());
        assert_eq!(seen.1.role, "manager");
        assert_eq!(seen.1.request_id.as_deref(), Some("r-1"));
        assert_eq!(seen.1.source_ip.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn a_stamp_round_trips_through_an_item_and_covers_every_placeholder() {
        let actor = Actor::system("scheduler:aging");
        let mut item = HashMap::new();
        actor.stamp(Timestamp::now()).put_into(&mut item);
        assert_eq!(Actor::from_item(&item), Some(actor.clone()));
        assert_eq!(item.len(), attribute::ALL.len());
        let values: Vec<String> = actor
            .stamp(Timestamp::now())
            .values()
            .map(|v| v.0)
            .collect();
        for placeholder in &values {
            assert!(Stamp::SET.contains(placeholder.as_str()), "{placeholder}");
        }
        for name in attribute::ALL {
            assert!(Stamp::SET.contains(&format!("{name} = ")), "{name}");
        }
    }
}
