//! Reading a placement file from S3 as CSV, streamed: never the whole file in memory.
//!
//! We use the `csv` crate (the reference implementation, RFC 4180 quoting, record
//! positions with line numbers) over a synchronous reader fed by the S3 body stream
//! (`SyncIoBridge`), on a blocking thread, handing rows to the async side in batches
//! through a bounded channel. Memory is one batch in flight plus one being written,
//! whatever the file's size; the channel's bound is the back-pressure. (`csv-async` would
//! avoid the thread, but its record positions and error types trail `csv`'s, and a
//! blocking thread per import costs nothing next to the DynamoDB writes.)

use aws_sdk_s3::primitives::ByteStream;
use shared::imports::Columns;
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

/// One data row: its line in the file (the header is line 1), the byte its record starts
/// at (where a part of the file may begin), and its cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub line: u64,
    pub byte: u64,
    pub cells: Vec<String>,
}

/// Where the bytes read begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the file's beginning: the first record is the header.
    Header,
    /// At a data row of the file (a part's first row): `width` columns per row (the
    /// header's), the first record is line `line` and starts at byte `byte` of the file.
    Row { width: usize, line: u64, byte: u64 },
}

/// What the reader hands over, in file order.
#[derive(Debug)]
pub enum Read {
    /// The header row's cells (a UTF-8 byte-order mark removed).
    Header(Vec<String>),
    /// Up to `batch` rows (only the last batch is shorter).
    Rows(Vec<Row>),
    /// The file is not a CSV this import can read; nothing after it is sent.
    Bad(String),
    /// The stream broke (S3, the network): worth another try.
    Failed(String),
}

/// Batches of rows in flight between the reader thread and the writer.
const BATCHES_IN_FLIGHT: usize = 2;

/// Starts reading `body` on a blocking thread; rows come in batches of `batch`, each row
/// checked to be UTF-8 and to have as many cells as the header (else [`Read::Bad`]).
pub fn read(body: ByteStream, start: Start, batch: usize) -> mpsc::Receiver<Read> {
    let (tx, rx) = mpsc::channel(BATCHES_IN_FLIGHT);
    let reader = SyncIoBridge::new(body.into_async_read());
    tokio::task::spawn_blocking(move || parse(reader, start, batch, &tx));
    rx
}

/// Reads CSV from `reader` into `tx` (see [`read`]); stops when the receiver is gone.
pub fn parse(reader: impl std::io::Read, start: Start, batch: usize, tx: &mpsc::Sender<Read>) {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut record = csv::ByteRecord::new();
    let (mut width, first_line, first_byte) = match start {
        Start::Header => (None, 1, 0),
        Start::Row { width, line, byte } => (Some(width), line, byte),
    };
    let mut rows = Vec::with_capacity(batch);
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(err) => {
                let message = match err.kind() {
                    csv::ErrorKind::Io(_) => Read::Failed(format!("reading the file: {err}")),
                    _ => Read::Bad(format!("the file is not valid CSV: {err}")),
                };
                let _ = tx.blocking_send(message);
                return;
            }
        }
        // Positions count from the bytes read (line 1, byte 0): made the file's.
        let (line, byte) = record.position().map_or((0, 0), |at| {
            (at.line() + first_line - 1, at.byte() + first_byte)
        });
        let cells = match cells(&record, line) {
            Ok(cells) => cells,
            Err(message) => {
                let _ = tx.blocking_send(Read::Bad(message));
                return;
            }
        };
        let Some(width) = width else {
            let mut header = cells;
            if let Some(first) = header.first_mut() {
                if let Some(rest) = first.strip_prefix('\u{feff}') {
                    *first = rest.to_owned();
                }
            }
            width = Some(header.len());
            if tx.blocking_send(Read::Header(header)).is_err() {
                return;
            }
            continue;
        };
        if cells.len() != width {
            let _ = tx.blocking_send(Read::Bad(format!(
                "line {line} has {} columns; the header has {width}",
                cells.len()
            )));
            return;
        }
        rows.push(Row { line, byte, cells });
        if rows.len() == batch
            && tx
                .blocking_send(Read::Rows(std::mem::replace(
                    &mut rows,
                    Vec::with_capacity(batch),
                )))
                .is_err()
        {
            return;
        }
    }
    if width.is_none() {
        // Only a read from the header has no width.
        let _ = tx.blocking_send(Read::Bad("the file is empty: no header row".to_owned()));
    } else if !rows.is_empty() {
        let _ = tx.blocking_send(Read::Rows(rows));
    }
}

/// The cells of a record as text, or which column of which line is not UTF-8.
fn cells(record: &csv::ByteRecord, line: u64) -> Result<Vec<String>, String> {
    record
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            std::str::from_utf8(cell).map(str::to_owned).map_err(|_| {
                format!(
                    "line {line}, column {} is not UTF-8: save the file as UTF-8 and upload it again",
                    i + 1
                )
            })
        })
        .collect()
}

/// The header's columns, or why the file as a whole cannot be imported.
pub fn columns(
    header: &[String],
    mapping: &std::collections::BTreeMap<String, shared::imports::Field>,
) -> Result<Columns, String> {
    Columns::resolve(header, mapping).map_err(|problem| format!("line 1 (header): {problem}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the reader sends for `bytes`, rows in batches of 2.
    fn read_all(bytes: &'static [u8]) -> Vec<String> {
        read_from(bytes, Start::Header)
    }

    fn read_from(bytes: &'static [u8], start: Start) -> Vec<String> {
        let (tx, mut rx) = mpsc::channel(100);
        std::thread::spawn(move || parse(bytes, start, 2, &tx))
            .join()
            .unwrap();
        let mut out = Vec::new();
        while let Ok(read) = rx.try_recv() {
            out.push(match read {
                Read::Header(h) => format!("header {}", h.join("|")),
                Read::Rows(rows) => rows
                    .iter()
                    .map(|r| format!("{}@{}:{}", r.line, r.byte, r.cells.join("|")))
                    .collect::<Vec<_>>()
                    .join(" "),
                Read::Bad(m) => format!("bad {m}"),
                Read::Failed(m) => format!("failed {m}"),
            });
        }
        out
    }

    #[test]
    fn rows_come_in_batches_with_their_line_numbers_quoted_newlines_included() {
        let out = read_all(b"\xef\xbb\xbfa,b\n1,2\n\"x\ny\",3\n4,5\n");
        assert_eq!(out, ["header a|b", "2@7:1|2 3@11:x\ny|3", "5@19:4|5"]);
    }

    #[test]
    fn a_part_read_from_a_rows_byte_numbers_lines_and_bytes_as_the_whole_file_does() {
        let file: &'static [u8] = b"\xef\xbb\xbfa,b\n1,2\n\"x\ny\",3\n4,5\n6,7\n";
        let whole = read_all(file);
        assert_eq!(
            whole,
            ["header a|b", "2@7:1|2 3@11:x\ny|3", "5@19:4|5 6@23:6|7"]
        );
        // The part from row 3 (line 3, byte 11) on, as a ranged GET hands it over.
        let part = read_from(
            &file[11..],
            Start::Row {
                width: 2,
                line: 3,
                byte: 11,
            },
        );
        assert_eq!(part, ["3@11:x\ny|3 5@19:4|5", "6@23:6|7"]);
        // A part's row of the wrong width is refused with the file's line.
        let bad = read_from(
            &file[19..],
            Start::Row {
                width: 3,
                line: 5,
                byte: 19,
            },
        );
        assert_eq!(bad, ["bad line 5 has 2 columns; the header has 3"]);
    }

    #[test]
    fn bad_files_stop_at_the_first_problem_with_its_line() {
        assert_eq!(read_all(b""), ["bad the file is empty: no header row"]);
        assert_eq!(
            read_all(b"a,b\n1,2\n1,2,3\n"),
            ["header a|b", "bad line 3 has 3 columns; the header has 2"]
        );
        assert_eq!(
            read_all(b"a,b\n1,\xff\n"),
            [
                "header a|b",
                "bad line 2, column 2 is not UTF-8: save the file as UTF-8 and upload it again"
            ]
        );
    }

    #[test]
    fn a_header_only_file_has_no_rows() {
        assert_eq!(read_all(b"a,b\n"), ["header a|b"]);
    }
}
