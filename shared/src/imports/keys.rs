//! Where an import lives: its S3 object key, and its items in the Jobs table (listed in
//! [`super`]).

use crate::domain::Id;
use crate::dynamo::attributes::s;
use crate::dynamo::Item;

/// The sort key of the import item itself.
pub const IMPORT_SK: &str = "IMPORT";
/// The sort key prefix of a counted chunk's marker.
pub const CHUNK_PREFIX: &str = "ICHUNK#";
/// The sort key prefix of a row's outcome other than created (failed, duplicate).
pub const ROW_PREFIX: &str = "IROW#";
/// The partition of the all-imports list in the Jobs table's `jobs-by-created` index (bulk
/// jobs are in `JOBS` of the same index).
pub const LIST_PK: &str = "IMPORTS";

/// The partition of a creator's imports in the `jobs-by-creator` index (apart from the same
/// user's bulk jobs).
pub fn creator_pk(user: Id) -> String {
    format!("IMPORTS#USER#{user}")
}

/// The folder of uploaded placement files in the Imports bucket.
pub const OBJECT_PREFIX: &str = "imports/";

/// The object key the file of import `id` is uploaded to.
pub fn object_key(id: Id) -> String {
    format!("{OBJECT_PREFIX}{id}.csv")
}

/// The import an object key belongs to (`None`: not an import's file).
pub fn import_of_key(key: &str) -> Option<Id> {
    key.strip_prefix(OBJECT_PREFIX)?
        .strip_suffix(".csv")?
        .parse()
        .ok()
}

/// An object key as an S3 event notification carries it, decoded. AWS documents the key as
/// URL-encoded with `+` for a space (`a/b+c.csv` for `a/b c.csv`); moto also encodes `/`
/// (`a%2Fb+c.csv`). Both decode the same way: `+` to a space first, then `%XX` escapes.
/// `None` when the escapes do not decode to UTF-8.
pub fn decode_event_key(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|key| key.into_owned())
}

pub fn chunk_sk(chunk: u64) -> String {
    format!("{CHUNK_PREFIX}{chunk:08}")
}

/// Row items sort by line number (zero-padded), so the error list reads in file order.
pub fn row_sk(line: u64) -> String {
    format!("{ROW_PREFIX}{line:012}")
}

/// The table key of one item of import `import`.
pub fn item_key(import: Id, sk: impl Into<String>) -> Item {
    [
        ("pk".to_owned(), s(import.to_string())),
        ("sk".to_owned(), s(sk)),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_decode_as_aws_documents_and_as_moto_sends_them() {
        // AWS: `/` as is, space as `+`, a literal `+` as `%2B`.
        assert_eq!(decode_event_key("a/b+c.csv").as_deref(), Some("a/b c.csv"));
        assert_eq!(
            decode_event_key("a/b%2Bc.csv").as_deref(),
            Some("a/b+c.csv")
        );
        // moto form-encodes `/` too.
        assert_eq!(
            decode_event_key("a%2Fb+c.csv").as_deref(),
            Some("a/b c.csv")
        );
        assert_eq!(
            decode_event_key("caf%C3%A9.csv").as_deref(),
            Some("café.csv")
        );
        assert_eq!(decode_event_key("bad%FF.csv"), None);
    }

    #[test]
    fn object_keys_name_their_import_and_nothing_else_does() {
        let id = Id::generate();
        assert_eq!(import_of_key(&object_key(id)), Some(id));
        let encoded = object_key(id).replace('/', "%2F");
        assert_eq!(
            decode_event_key(&encoded)
                .as_deref()
                .and_then(import_of_key),
            Some(id)
        );
        for other in [
            "imports/x.csv",
            "other/01J0000000000000000000000.csv",
            "imports/",
        ] {
            assert_eq!(import_of_key(other), None, "{other}");
        }
    }

    #[test]
    fn row_keys_sort_in_line_order() {
        assert!(row_sk(9) < row_sk(10));
        assert!(row_sk(99_999) < row_sk(100_000));
    }
}
