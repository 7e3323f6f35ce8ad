//! Real-time (WebSocket) connections and subscriptions: the item shapes in the Connections
//! table, topic parsing, and the repository the `ws` function writes with and the notifier
//! reads with.
//!
//! Keys (see `template.yaml`, `ConnectionsTable`):
//!
//! | item | pk | sk |
//! | --- | --- | --- |
//! | connection | `CONN#<connectionId>` | `META` |
//! | subscription, by topic (the notifier's Query) | `TOPIC#<topic>` | `<connectionId>` |
//! | subscription, by connection (`$disconnect`'s Query) | `CONN#<connectionId>` | `SUB#<topic>` |
//!
//! Every item carries the user, the role (the notifier filters `payments`, `activities` and
//! `dashboard` events per agent with it) and `expires_at` (unix seconds, the access token's
//! `exp`; the table's TTL attribute). TTL deletion is lazy: readers check `expires_at`
//! themselves ([`ConnectionItem::is_expired`], [`Subscription::is_expired`]).
//!
//! # A connection follows the user's current state, not the state at `$connect`
//!
//! Every item also carries the `token_version` of the access token the connection was
//! opened with. Before each push the notifier checks every subscriber's user with
//! [`crate::auth::UserStateCache`] (the REST authenticator's cache, same rule, same
//! `AUTH_CACHE_SECONDS`): a user that is disabled, deleted, or whose token version or role
//! moved since `$connect` (role change, password change, "revoke all sessions") no longer
//! qualifies, nor does a topic the current role may not follow ([`role_may_follow`]). Such a
//! connection is dropped: its items are deleted and it is closed through `@connections`
//! `DELETE`, so the client reconnects with a fresh token and subscribes again under the
//! current rules. An item without a `token_version` (written before it was stored) never
//! qualifies.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, DeleteRequest, Put, TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};

use crate::auth::{authorize, Action, Caller, Role};
use crate::config::TableName;
use crate::domain::Id;
use crate::dynamo::attributes::{n, s};
use crate::dynamo::DataError;
use crate::dynamo::{for_each_page, read_all, scan_strings};
use crate::error::ApiError;

/// The sort key of a connection item.
pub const META: &str = "META";
/// At most this many topics in one `subscribe` / `unsubscribe` message (two items each, in
/// one transaction of at most 100 items).
pub const MAX_TOPICS_PER_MESSAGE: usize = 20;

pub fn connection_pk(connection_id: &str) -> String {
    format!("CONN#{connection_id}")
}

pub fn topic_pk(topic: &Topic) -> String {
    format!("TOPIC#{topic}")
}

pub fn subscription_sk(topic: &Topic) -> String {
    format!("SUB#{topic}")
}

/// What a client can follow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    /// Every payment event (an agent's are filtered to its accounts by the notifier).
    Payments,
    /// Every activity event (filtered per agent likewise).
    Activities,
    /// Dashboard aggregate changes.
    Dashboard,
    /// Events of one account.
    Account(Id),
    /// Progress of one bulk job.
    Job(Id),
    /// Progress of one placement import.
    Import(Id),
}

/// A topic that is not one of the design's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown topic {0:?}: expected payments, activities, dashboard, account:{{id}}, job:{{id}} or import:{{id}}"
)]
pub struct UnknownTopic(pub String);

impl FromStr for Topic {
    type Err = UnknownTopic;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownTopic(s.to_owned());
        match s {
            "payments" => Ok(Topic::Payments),
            "activities" => Ok(Topic::Activities),
            "dashboard" => Ok(Topic::Dashboard),
            _ => match s.split_once(':') {
                Some(("account", id)) => id.parse().map(Topic::Account).map_err(|_| unknown()),
                Some(("job", id)) => id.parse().map(Topic::Job).map_err(|_| unknown()),
                Some(("import", id)) => id.parse().map(Topic::Import).map_err(|_| unknown()),
                _ => Err(unknown()),
            },
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Payments => f.write_str("payments"),
            Topic::Activities => f.write_str("activities"),
            Topic::Dashboard => f.write_str("dashboard"),
            Topic::Account(id) => write!(f, "account:{id}"),
            Topic::Job(id) => write!(f, "job:{id}"),
            Topic::Import(id) => write!(f, "import:{id}"),
        }
    }
}

impl Serialize for Topic {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The part of topic RBAC that depends on the role alone, shared by `subscribe` (ws) and
/// the notifier's re-check before each push: a role that may not subscribe (`pending`)
/// follows nothing, `job:{id}` is for those who manage bulk jobs and `import:{id}` for those
/// who manage imports (admin, manager). What depends on the data (an agent's own accounts, a
/// manager's own jobs and imports) is checked on top: at subscribe, and for accounts again
/// per message by the notifier.
pub fn role_may_follow(caller: &Caller, topic: &Topic) -> Result<(), ApiError> {
    authorize(caller, Action::Subscribe)?;
    let managed = match topic {
        Topic::Job(_) => Some(Action::ManageBulkJobs),
        Topic::Import(_) => Some(Action::ManageImports),
        _ => None,
    };
    if let Some(action) = managed {
        authorize(caller, action).map_err(|_| {
            ApiError::forbidden(format!("the {} role may not follow {topic}", caller.role))
        })?;
    }
    Ok(())
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A connection (`CONN#<id>` / `META`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionItem {
    pub pk: String,
    pub sk: String,
    pub connection_id: String,
    pub user_id: Id,
    pub role: Role,
    /// Unix milliseconds, as API Gateway reports `connectedAt`.
    pub connected_at: i64,
    /// Unix seconds: the access token's `exp`.
    pub expires_at: i64,
    /// The user's token version at `$connect` (the token's `ver`); `None` never qualifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_version: Option<u64>,
}

impl ConnectionItem {
    /// A connection of `caller`; `$connect` adds the token's version with
    /// [`Self::with_token_version`] (without one the notifier drops it).
    pub fn new(connection_id: &str, caller: &Caller, connected_at: i64, expires_at: i64) -> Self {
        Self {
            pk: connection_pk(connection_id),
            sk: META.to_owned(),
            connection_id: connection_id.to_owned(),
            user_id: caller.user_id,
            role: caller.role,
            connected_at,
            expires_at,
            token_version: None,
        }
    }

    /// The connection as opened with an access token of version `token_version`.
    pub fn with_token_version(self, token_version: u64) -> Self {
        Self {
            token_version: Some(token_version),
            ..self
        }
    }

    pub fn caller(&self) -> Caller {
        Caller {
            user_id: self.user_id,
            role: self.role,
        }
    }

    pub fn is_expired(&self) -> bool {
        self.expires_at <= now_unix()
    }
}

/// A subscription, as both of its items store it (only the keys differ).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub pk: String,
    pub sk: String,
    pub connection_id: String,
    pub topic: Topic,
    pub user_id: Id,
    pub role: Role,
    /// Unix seconds: the connection's token `exp`.
    pub expires_at: i64,
    /// The connection's token version at `$connect` (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_version: Option<u64>,
}

impl Subscription {
    /// The item the notifier Queries (`TOPIC#<topic>` / `<connectionId>`).
    pub fn by_topic(connection: &ConnectionItem, topic: &Topic) -> Self {
        Self {
            pk: topic_pk(topic),
            sk: connection.connection_id.clone(),
            ..Self::by_connection(connection, topic)
        }
    }

    /// The item `$disconnect` Queries (`CONN#<id>` / `SUB#<topic>`).
    pub fn by_connection(connection: &ConnectionItem, topic: &Topic) -> Self {
        Self {
            pk: connection.pk.clone(),
            sk: subscription_sk(topic),
            connection_id: connection.connection_id.clone(),
            topic: topic.clone(),
            user_id: connection.user_id,
            role: connection.role,
            expires_at: connection.expires_at,
            token_version: connection.token_version,
        }
    }

    /// The subscriber as the connection authenticated it.
    pub fn caller(&self) -> Caller {
        Caller {
            user_id: self.user_id,
            role: self.role,
        }
    }

    pub fn is_expired(&self) -> bool {
        self.expires_at <= now_unix()
    }
}

fn key(pk: String, sk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk)),
        ("sk".to_owned(), AttributeValue::S(sk)),
    ])
}

/// The Connections table.
#[derive(Debug, Clone)]
pub struct ConnectionRepo {
    dynamodb: Client,
    table: TableName,
}

impl ConnectionRepo {
    pub fn new(dynamodb: Client, table: TableName) -> Self {
        Self { dynamodb, table }
    }

    pub async fn put_connection(&self, item: &ConnectionItem) -> Result<(), DataError> {
        self.dynamodb
            .put_item()
            .table_name(self.table.as_str())
            .set_item(Some(serde_dynamo::to_item(item)?))
            .send()
            .await?;
        Ok(())
    }

    /// The connection item, expired or not (the caller decides).
    pub async fn connection(
        &self,
        connection_id: &str,
    ) -> Result<Option<ConnectionItem>, DataError> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(self.table.as_str())
            .set_key(Some(key(connection_pk(connection_id), META.to_owned())))
            .consistent_read(true)
            .send()
            .await?;
        Ok(match out.item {
            Some(item) => Some(serde_dynamo::from_item(item)?),
            None => None,
        })
    }

    /// Writes both items of each subscription in one transaction, on condition that the
    /// connection still exists (a concurrent `$disconnect` leaves no orphans).
    pub async fn subscribe(
        &self,
        connection: &ConnectionItem,
        topics: &[Topic],
    ) -> Result<bool, DataError> {
        let table = self.table.as_str();
        let mut items = vec![TransactWriteItem::builder()
            .condition_check(
                ConditionCheck::builder()
                    .table_name(table)
                    .set_key(Some(key(connection.pk.clone(), META.to_owned())))
                    .condition_expression("attribute_exists(pk)")
                    .build()
                    .map_err(DataError::failed)?,
            )
            .build()];
        for topic in topics {
            for sub in [
                Subscription::by_topic(connection, topic),
                Subscription::by_connection(connection, topic),
            ] {
                items.push(
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(table)
                                .set_item(Some(serde_dynamo::to_item(&sub)?))
                                .build()
                                .map_err(DataError::failed)?,
                        )
                        .build(),
                );
            }
        }
        match self
            .dynamodb
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) => {
                let cancelled = err
                    .as_service_error()
                    .is_some_and(|e| e.is_transaction_canceled_exception());
                if cancelled {
                    Ok(false)
                } else {
                    Err(err.into())
                }
            }
        }
    }

    /// Deletes both items of each subscription, in one transaction.
    pub async fn unsubscribe(
        &self,
        connection_id: &str,
        topics: &[Topic],
    ) -> Result<(), DataError> {
        if topics.is_empty() {
            return Ok(());
        }
        let table = self.table.as_str();
        let mut items = Vec::with_capacity(topics.len() * 2);
        for topic in topics {
            for (pk, sk) in [
                (topic_pk(topic), connection_id.to_owned()),
                (connection_pk(connection_id), subscription_sk(topic)),
            ] {
                items.push(
                    TransactWriteItem::builder()
                        .delete(
                            Delete::builder()
                                .table_name(table)
                                .set_key(Some(key(pk, sk)))
                                .build()
                                .map_err(DataError::failed)?,
                        )
                        .build(),
                );
            }
        }
        self.dynamodb
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await?;
        Ok(())
    }

    /// The topics a connection follows (Query `CONN#<id>`, `SUB#` prefix).
    pub async fn topics_of(&self, connection_id: &str) -> Result<Vec<Topic>, DataError> {
        let query = self
            .dynamodb
            .query()
            .table_name(self.table.as_str())
            .key_condition_expression("pk = :pk AND begins_with(sk, :sub)")
            .expression_attribute_values(":pk", AttributeValue::S(connection_pk(connection_id)))
            .expression_attribute_values(":sub", AttributeValue::S("SUB#".into()))
            .consistent_read(true);
        read_all(query, |item| {
            let sub: Subscription = serde_dynamo::from_item(item)?;
            Ok(sub.topic)
        })
        .await
    }

    /// The live (unexpired) subscriptions of a topic: whom the notifier posts to.
    pub async fn subscribers(&self, topic: &Topic) -> Result<Vec<Subscription>, DataError> {
        let query = self
            .dynamodb
            .query()
            .table_name(self.table.as_str())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(topic_pk(topic)));
        let mut subs = Vec::new();
        for_each_page(query, |items| {
            for item in items {
                let sub: Subscription = serde_dynamo::from_item(item)?;
                if !sub.is_expired() {
                    subs.push(sub);
                }
            }
            Ok(true)
        })
        .await?;
        Ok(subs)
    }

    /// The ids of the connections expired at or before `now` (a parallel Scan, filtered
    /// server-side: the table is small and has no index on expiry).
    pub async fn expired(&self, now: crate::domain::Timestamp) -> Result<Vec<String>, DataError> {
        let request = self
            .dynamodb
            .scan()
            .table_name(self.table.as_str())
            .filter_expression("sk = :meta AND #e <= :now")
            .expression_attribute_names("#e", "expires_at")
            .expression_attribute_values(":meta", s(META))
            .expression_attribute_values(":now", n(now.unix_seconds()));
        scan_strings(request, "connection_id").await
    }

    /// Removes a connection and both items of every subscription it has (Query `CONN#<id>`,
    /// then BatchWriteItem deletes, retrying unprocessed ones).
    pub async fn remove_connection(&self, connection_id: &str) -> Result<(), DataError> {
        let topics = self.topics_of(connection_id).await?;
        let mut keys = vec![key(connection_pk(connection_id), META.to_owned())];
        for topic in &topics {
            keys.push(key(topic_pk(topic), connection_id.to_owned()));
            keys.push(key(connection_pk(connection_id), subscription_sk(topic)));
        }
        for chunk in keys.chunks(25) {
            let mut requests = chunk
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(DataError::failed)
                })
                .collect::<Result<Vec<_>, _>>()?;
            for attempt in 0..8u32 {
                let out = self
                    .dynamodb
                    .batch_write_item()
                    .request_items(self.table.as_str(), requests)
                    .send()
                    .await?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(self.table.as_str()))
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if attempt == 7 {
                    return Err(DataError::unavailable(
                        "the connection's subscriptions could not all be removed",
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_and_print_canonically() {
        let id = Id::generate();
        for text in ["payments", "activities", "dashboard"] {
            assert_eq!(text.parse::<Topic>().unwrap().to_string(), text);
        }
        assert_eq!(
            format!("account:{id}").parse::<Topic>().unwrap(),
            Topic::Account(id)
        );
        assert_eq!(
            format!("job:{}", id.to_string().to_lowercase())
                .parse::<Topic>()
                .unwrap()
                .to_string(),
            format!("job:{id}")
        );
        assert_eq!(
            format!("import:{id}").parse::<Topic>().unwrap(),
            Topic::Import(id)
        );
        for bad in [
            "",
            "payment",
            "account:",
            "account:nope",
            "job:1",
            "import:",
            "import:1",
            "user:x",
            "Payments",
        ] {
            assert!(bad.parse::<Topic>().is_err(), "{bad}");
        }
    }

    #[test]
    fn topics_by_role() {
        let caller = |role| Caller {
            user_id: Id::generate(),
            role,
        };
        let job = Topic::Job(Id::generate());
        let import = Topic::Import(Id::generate());
        let account = Topic::Account(Id::generate());
        for role in [Role::Admin, Role::Manager] {
            assert!(role_may_follow(&caller(role), &job).is_ok(), "{role}");
            assert!(role_may_follow(&caller(role), &import).is_ok(), "{role}");
        }
        for role in [Role::Agent, Role::Viewer, Role::Pending] {
            for topic in [&job, &import] {
                let err = role_may_follow(&caller(role), topic).unwrap_err();
                assert_eq!(err.status, http::StatusCode::FORBIDDEN, "{role} {topic}");
            }
        }
        for role in [Role::Admin, Role::Manager, Role::Agent, Role::Viewer] {
            for topic in [&Topic::Payments, &Topic::Dashboard, &account] {
                assert!(
                    role_may_follow(&caller(role), topic).is_ok(),
                    "{role} {topic}"
                );
            }
        }
        for topic in [
            &Topic::Payments,
            &Topic::Activities,
            &Topic::Dashboard,
            &account,
        ] {
            assert!(role_may_follow(&caller(Role::Pending), topic).is_err());
        }
    }

    #[test]
    fn both_subscription_items_share_everything_but_the_keys() {
        let caller = Caller {
            user_id: Id::generate(),
            role: Role::Agent,
        };
        let conn = ConnectionItem::new("abc=", &caller, 1, 2).with_token_version(7);
        let topic = Topic::Payments;
        let a = Subscription::by_topic(&conn, &topic);
        let b = Subscription::by_connection(&conn, &topic);
        assert_eq!((a.pk.as_str(), a.sk.as_str()), ("TOPIC#payments", "abc="));
        assert_eq!(
            (b.pk.as_str(), b.sk.as_str()),
            ("CONN#abc=", "SUB#payments")
        );
        assert_eq!(
            (a.role, a.expires_at, a.user_id, a.token_version),
            (b.role, b.expires_at, b.user_id, Some(7))
        );
    }
}
