//! Cutting a large file into parts that several invocations write at once.
//!
//! The check pass notes where every [`part_rows`](crate::App::part_rows)-th row's record
//! starts (its line and byte). Each part is that many rows, a whole number of chunks, so a
//! part's chunks have the indices the whole file's reading would give them and are counted
//! once whoever writes them. The invocation that checked the file writes the first part
//! itself and sends the others to the imports queue as [`ImporterMessage::Part`]; each is
//! read with a ranged `GetObject` (`bytes=from-to`), never the whole file.

use serde::{Deserialize, Serialize};
use shared::domain::Id;

use crate::csv_stream::Start;

/// Where a data row's record starts in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowStart {
    pub line: u64,
    pub byte: u64,
}

/// Rows of a file written by one invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub import_id: Id,
    pub bucket: String,
    pub key: String,
    /// The index of its first chunk in the file.
    pub first_chunk: u64,
    /// Its first row; `None`: the file's beginning (the header, then the first row).
    pub from: Option<RowStart>,
    /// The byte after its last row; `None`: the file's end.
    pub to: Option<u64>,
    /// The file's header cells (a part that starts at a row has no header of its own).
    pub header: Vec<String>,
}

impl Part {
    /// The `Range` header of its `GetObject` (`None`: the whole object).
    pub fn range(&self) -> Option<String> {
        let from = self.from.map_or(0, |row| row.byte);
        match self.to {
            Some(to) => Some(format!("bytes={from}-{}", to - 1)),
            None if from > 0 => Some(format!("bytes={from}-")),
            None => None,
        }
    }

    /// How the CSV reader begins reading its bytes.
    pub fn start(&self) -> Start {
        match self.from {
            None => Start::Header,
            Some(row) => Start::Row {
                width: self.header.len(),
                line: row.line,
                byte: row.byte,
            },
        }
    }
}

/// A message the importer sends itself on the imports queue (S3's notifications are the
/// others).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImporterMessage {
    Part(Part),
}

/// The parts of a checked file: one from the beginning, then one from each of `starts`
/// (the rows every `chunks_per_part` chunks begin at), each ending where the next begins.
pub fn parts_of(
    import_id: Id,
    bucket: &str,
    key: &str,
    header: &[String],
    starts: &[RowStart],
    chunks_per_part: u64,
) -> Vec<Part> {
    let froms = std::iter::once(None).chain(starts.iter().copied().map(Some));
    let tos = starts.iter().map(|row| Some(row.byte)).chain([None]);
    froms
        .zip(tos)
        .enumerate()
        .map(|(i, (from, to))| Part {
            import_id,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            first_chunk: i as u64 * chunks_per_part,
            from,
            to,
            header: header.to_vec(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_file_end_to_end_in_whole_chunks() {
        let id = Id::generate();
        let header = vec!["a".to_owned(), "b".to_owned()];
        let starts = [
            RowStart {
                line: 1001,
                byte: 9000,
            },
            RowStart {
                line: 2003,
                byte: 18500,
            },
        ];
        let parts = parts_of(id, "bucket", "imports/x.csv", &header, &starts, 2);
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts.iter().map(Part::range).collect::<Vec<_>>(),
            [
                Some("bytes=0-8999".to_owned()),
                Some("bytes=9000-18499".to_owned()),
                Some("bytes=18500-".to_owned()),
            ]
        );
        assert_eq!(
            parts.iter().map(|p| p.first_chunk).collect::<Vec<_>>(),
            [0, 2, 4]
        );
        assert_eq!(parts[0].start(), Start::Header);
        assert_eq!(
            parts[2].start(),
            Start::Row {
                width: 2,
                line: 2003,
                byte: 18500
            }
        );
        // A small file is one part: the whole object, header first.
        let whole = parts_of(id, "bucket", "imports/x.csv", &header, &[], 2);
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].range(), None);
    }

    #[test]
    fn a_part_message_round_trips_and_is_not_an_s3_notification() {
        let id = Id::generate();
        let part = parts_of(
            id,
            "b",
            "k",
            &["a".to_owned()],
            &[RowStart { line: 3, byte: 9 }],
            1,
        )
        .remove(1);
        let body = serde_json::to_string(&ImporterMessage::Part(part.clone())).unwrap();
        assert_eq!(
            serde_json::from_str::<ImporterMessage>(&body).unwrap(),
            ImporterMessage::Part(part)
        );
        assert!(serde_json::from_str::<ImporterMessage>(r#"{"Records":[]}"#).is_err());
    }
}
