//! The `UpdateItem` that turns a stored item into another: what a writer that holds the
//! whole item as it was read sends instead of a `PutItem` of the whole new one.
//!
//! The result is the item a Put would leave, but DynamoDB is sent only what differs: fewer
//! bytes on the wire and, on DynamoDB Local, no rewrite of the index entries whose keys and
//! projections stay as they were (the Accounts table has 16 GSIs; a bulk job that tags an
//! account changes a few of them, issue 17).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::Item;

/// An update expression with its placeholders: names `#u<i>`, values `:u<i>` (so that a
/// condition's own placeholders, `#v` or `:expected`, cannot clash with them).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ItemUpdate {
    /// `SET #u0 = :u0, ... REMOVE #u3, ...` (empty when nothing differs).
    pub expression: String,
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
}

impl ItemUpdate {
    /// The update from `stored` (the item as read) to `new`: `SET` of each attribute `new`
    /// holds with a value `stored` does not have, `REMOVE` of each attribute only `stored`
    /// holds; the attributes of the table's `key` are left out (they cannot change).
    /// Attributes come in name order, so the same change is always the same expression.
    pub fn between(stored: &Item, new: &Item, key: &[&str]) -> Self {
        let outside_key = |name: &&String| !key.contains(&name.as_str());
        let mut set: Vec<&String> = new
            .iter()
            .filter(|(name, value)| stored.get(*name) != Some(*value))
            .map(|(name, _)| name)
            .filter(outside_key)
            .collect();
        let mut remove: Vec<&String> = stored
            .keys()
            .filter(|name| !new.contains_key(*name))
            .filter(outside_key)
            .collect();
        set.sort_unstable();
        remove.sort_unstable();

        let mut update = Self::default();
        let mut clauses = Vec::new();
        let mut assignments = Vec::new();
        for name in set {
            let i = update.names.len();
            update.names.insert(format!("#u{i}"), name.clone());
            update.values.insert(format!(":u{i}"), new[name].clone());
            assignments.push(format!("#u{i} = :u{i}"));
        }
        if !assignments.is_empty() {
            clauses.push(format!("SET {}", assignments.join(", ")));
        }
        let mut removals = Vec::new();
        for name in remove {
            let i = update.names.len();
            update.names.insert(format!("#u{i}"), name.clone());
            removals.push(format!("#u{i}"));
        }
        if !removals.is_empty() {
            clauses.push(format!("REMOVE {}", removals.join(", ")));
        }
        update.expression = clauses.join(" ");
        update
    }

    /// Whether `stored` and `new` are the same item (there is nothing to send).
    pub fn is_empty(&self) -> bool {
        self.expression.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamo::attributes::{n, s};

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect()
    }

    #[test]
    fn sets_what_changed_or_appeared_and_removes_what_went() {
        let stored = item(&[
            ("pk", s("ACC#1")),
            ("name", s("Ada")),
            ("version", n(3)),
            ("agent_pk", s("AG#7")),
        ]);
        let new = item(&[
            ("pk", s("ACC#1")),
            ("name", s("Ada")),
            ("version", n(4)),
            ("tags", AttributeValue::Ss(vec!["vip".into()])),
        ]);
        let update = ItemUpdate::between(&stored, &new, &["pk"]);
        assert_eq!(update.expression, "SET #u0 = :u0, #u1 = :u1 REMOVE #u2");
        assert_eq!(update.names["#u0"], "tags");
        assert_eq!(update.names["#u1"], "version");
        assert_eq!(update.names["#u2"], "agent_pk");
        assert_eq!(update.values[":u1"], n(4));
        assert_eq!(update.values.len(), 2, "a removal carries no value");
        assert!(!update
            .names
            .values()
            .any(|name| name == "name" || name == "pk"));
    }

    #[test]
    fn the_key_is_never_written_and_the_same_item_is_no_update() {
        let stored = item(&[("pk", s("ACC#1")), ("sk", s("A")), ("v", n(1))]);
        let moved = item(&[("pk", s("ACC#2")), ("v", n(1))]);
        assert!(ItemUpdate::between(&stored, &moved, &["pk", "sk"]).is_empty());
        assert!(ItemUpdate::between(&stored, &stored, &["pk", "sk"]).is_empty());
    }
}
