//! Building and reading single attribute values, the way every store spells them.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// A string attribute.
pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute (DynamoDB sends and takes numbers as their decimal text).
pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The string attribute `name` of `item` (`None` when it is absent or not a string).
pub fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value),
        _ => None,
    }
}

/// The number attribute `name` of `item` as an `i64` (`None` when it is absent, not a
/// number, or not a whole number that fits).
pub fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

/// A key whose attributes are all strings (every key of the tables and their indexes), as
/// a cursor or a stored page carries it.
pub type StringKey = HashMap<String, String>;

/// The string attributes of `item`: a page's `LastEvaluatedKey` as a [`StringKey`].
pub fn string_key(item: &HashMap<String, AttributeValue>) -> StringKey {
    item.iter()
        .filter_map(|(name, value)| value.as_s().ok().map(|v| (name.clone(), v.clone())))
        .collect()
}

/// The item of a [`StringKey`]: a page's `ExclusiveStartKey`.
pub fn key_item(key: StringKey) -> HashMap<String, AttributeValue> {
    key.into_iter()
        .map(|(name, value)| (name, s(value)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_answer_only_the_type_they_read() {
        let item = HashMap::from([
            ("name".to_owned(), s("Ada")),
            ("count".to_owned(), n(42)),
            ("fraction".to_owned(), n(1.5)),
        ]);
        assert_eq!(text(&item, "name"), Some("Ada"));
        assert_eq!(text(&item, "count"), None);
        assert_eq!(text(&item, "missing"), None);
        assert_eq!(number(&item, "count"), Some(42));
        assert_eq!(number(&item, "name"), None);
        assert_eq!(number(&item, "fraction"), None);
    }

    #[test]
    fn string_keys_round_trip() {
        let key = StringKey::from([("pk".to_owned(), "a".to_owned())]);
        let item = key_item(key.clone());
        assert_eq!(item["pk"], s("a"));
        assert_eq!(string_key(&item), key);
    }
}
