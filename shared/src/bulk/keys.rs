//! Keys of the Jobs table and its list indexes (the items are listed in [`super`]).

use crate::domain::Id;
use crate::dynamo::attributes::s;
use crate::dynamo::Item;

/// The sort key of the job item itself.
pub const JOB_SK: &str = "JOB";
/// The sort key prefix of a counted chunk's marker.
pub const CHUNK_PREFIX: &str = "CHUNK#";
/// The sort key prefix of a failure.
pub const FAIL_PREFIX: &str = "FAIL#";
/// The partition of the all-jobs list index.
pub const LIST_PK: &str = "JOBS";
pub const INDEX_BY_CREATED: &str = "jobs-by-created";
pub const INDEX_BY_CREATOR: &str = "jobs-by-creator";

/// The partition of a creator's jobs in [`INDEX_BY_CREATOR`].
pub fn creator_pk(user: Id) -> String {
    format!("USER#{user}")
}

pub fn chunk_sk(chunk: &str) -> String {
    format!("{CHUNK_PREFIX}{chunk}")
}

pub fn fail_sk(account: Id) -> String {
    format!("{FAIL_PREFIX}{account}")
}

pub fn page_sk(partition: u32, seq: u32) -> String {
    format!("PAGE#{partition}#{seq}")
}

/// The job attribute holding the sequence number of a filter partition's next page.
pub fn plan_attribute(partition: u32) -> String {
    format!("plan_{partition}")
}

/// The table key of one item of job `job` (`sk`: [`JOB_SK`], a chunk, a failure or a page).
pub fn item_key(job: Id, sk: impl Into<String>) -> Item {
    [
        ("pk".to_owned(), s(job.to_string())),
        ("sk".to_owned(), s(sk)),
    ]
    .into()
}
