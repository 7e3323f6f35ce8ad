//! Reading DynamoDB Query and Scan results page by page, from the first page to the last,
//! and BatchGetItem results to the last unprocessed key; the attribute helpers
//! ([`attributes`]), the retry rules of transactions ([`retry`]) and the update from one
//! image of an item to another ([`update`]) every store shares; and the call recorder
//! ([`recorder`]) that every call goes through.

pub mod attributes;
mod error;
pub mod recorder;
pub mod retry;
pub mod update;

pub use error::{condition_held, DataError};

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

/// An item, or a key, as DynamoDB sends it.
pub type Item = HashMap<String, AttributeValue>;

/// The table name in a stream ARN (`arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>`):
/// how a stream consumer with several event source mappings tells its records apart.
pub fn table_of_stream_arn(arn: &str) -> Option<&str> {
    let rest = arn.split_once(":table/")?.1;
    Some(rest.split_once("/stream/").map_or(rest, |(table, _)| table))
}

/// A request read page by page: a Query or a Scan.
pub trait Paged: Clone + Send {
    /// Sends the request from `start` (`None`: the first page); answers the page's items and
    /// the key the next page starts from.
    fn page(
        self,
        start: Option<Item>,
    ) -> impl Future<Output = Result<(Vec<Item>, Option<Item>), DataError>> + Send;
}

impl Paged for QueryFluentBuilder {
    async fn page(self, start: Option<Item>) -> Result<(Vec<Item>, Option<Item>), DataError> {
        let out = self.set_exclusive_start_key(start).send().await?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
    }
}

impl Paged for ScanFluentBuilder {
    async fn page(self, start: Option<Item>) -> Result<(Vec<Item>, Option<Item>), DataError> {
        let out = self.set_exclusive_start_key(start).send().await?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
    }
}

/// Reads `request` page after page from the start, handing each page's items to `page` until
/// it answers `false` or the last page has been read.
pub async fn for_each_page<R: Paged>(
    request: R,
    mut page: impl FnMut(Vec<Item>) -> Result<bool, DataError>,
) -> Result<(), DataError> {
    let mut start = None;
    loop {
        let (items, next) = request.clone().page(start).await?;
        if !page(items)? {
            return Ok(());
        }
        match next {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(()),
        }
    }
}

/// Every item `request` finds, all pages, each made a `T` by `parse`.
pub async fn read_all<R: Paged, T>(
    request: R,
    mut parse: impl FnMut(Item) -> Result<T, DataError>,
) -> Result<Vec<T>, DataError> {
    let mut out = Vec::new();
    for_each_page(request, |items| {
        for item in items {
            out.push(parse(item)?);
        }
        Ok(true)
    })
    .await?;
    Ok(out)
}

/// One page of `request` from `start` (`None`: the first page), each item made a `T` by
/// `parse`; with the key the next page starts after (`None`: the last page). For lists
/// whose cursor carries that key.
pub async fn read_page<R: Paged, T>(
    request: R,
    start: Option<attributes::StringKey>,
    parse: impl FnMut(Item) -> Result<T, DataError>,
) -> Result<(Vec<T>, Option<attributes::StringKey>), DataError> {
    let (items, next) = request.page(start.map(attributes::key_item)).await?;
    let parsed = items.into_iter().map(parse).collect::<Result<_, _>>()?;
    Ok((parsed, next.as_ref().map(attributes::string_key)))
}

/// Segments of a parallel Scan ([`scan_strings`]).
pub const SCAN_SEGMENTS: i32 = 4;

/// The string attribute `attribute` of every item a Scan finds, all pages, its
/// [`SCAN_SEGMENTS`] segments read at once. For the few small tables that are cleaned up
/// by a Scan off the request path; `request` names the table, the filter and its values.
pub async fn scan_strings(
    request: ScanFluentBuilder,
    attribute: &str,
) -> Result<Vec<String>, DataError> {
    let request = request
        .total_segments(SCAN_SEGMENTS)
        .projection_expression("#a")
        .expression_attribute_names("#a", attribute);
    let segments = futures::future::join_all((0..SCAN_SEGMENTS).map(|segment| {
        let request = request.clone().segment(segment);
        async move {
            let mut out = Vec::new();
            for_each_page(request, |items| {
                out.extend(
                    items
                        .iter()
                        .filter_map(|item| attributes::text(item, attribute).map(str::to_owned)),
                );
                Ok(true)
            })
            .await?;
            Ok::<_, DataError>(out)
        }
    }))
    .await;
    let mut out = Vec::new();
    for segment in segments {
        out.extend(segment?);
    }
    Ok(out)
}

/// Every item of `keys` that exists in `table` (BatchGetItem, 100 keys a call; unprocessed
/// keys are asked again after a backoff, as AWS advises).
pub async fn batch_get_all(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: Vec<Item>,
) -> Result<Vec<Item>, DataError> {
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(100) {
        let mut request = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .build()
                .map_err(DataError::failed)?,
        );
        let mut attempt = 0;
        while let Some(keys) = request.take() {
            let out = dynamodb
                .batch_get_item()
                .request_items(table, keys)
                .send()
                .await?;
            found.extend(
                out.responses
                    .and_then(|mut r| r.remove(table))
                    .unwrap_or_default(),
            );
            request = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .filter(|k| !k.keys.is_empty());
            if request.is_some() {
                tokio::time::sleep(retry::backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
    Ok(found)
}

/// Rounds of `BatchGetItem` for unprocessed keys before [`batch_get_consistent`] gives up.
const READ_ROUNDS: u32 = 9;

/// The items of `requests` (table name → keys, 100 keys in all at most) that exist, read
/// strongly consistent in one `BatchGetItem` across the tables, by table. Unprocessed keys
/// are asked again after a backoff; after [`READ_ROUNDS`] rounds the read is `unavailable`.
pub async fn batch_get_consistent(
    dynamodb: &aws_sdk_dynamodb::Client,
    requests: HashMap<String, Vec<Item>>,
) -> Result<HashMap<String, Vec<Item>>, DataError> {
    let mut out: HashMap<String, Vec<Item>> = HashMap::new();
    let mut pending: HashMap<String, KeysAndAttributes> = HashMap::new();
    for (table, keys) in requests {
        if keys.is_empty() {
            continue;
        }
        pending.insert(
            table,
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(DataError::failed)?,
        );
    }
    let mut attempt = 0;
    while !pending.is_empty() {
        let output = dynamodb
            .batch_get_item()
            .set_request_items(Some(pending))
            .send()
            .await?;
        for (table, items) in output.responses.unwrap_or_default() {
            out.entry(table).or_default().extend(items);
        }
        pending = output.unprocessed_keys.unwrap_or_default();
        if !pending.is_empty() {
            if attempt >= READ_ROUNDS {
                return Err(DataError::unavailable("reads are throttled; retry"));
            }
            tokio::time::sleep(retry::backoff(attempt)).await;
            attempt += 1;
        }
    }
    Ok(out)
}
