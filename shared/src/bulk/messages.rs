//! The messages of the bulk queue and their sending: planner messages (ids, or one page of
//! a filter's partition) fan out into chunk messages of [`CHUNK_SIZE`] accounts.

use serde::{Deserialize, Serialize};

use crate::domain::Id;

/// Accounts per chunk message: a chunk's keys (accounts, failure markers, the job and the
/// chunk marker) fit one `BatchGetItem` (100 keys).
pub const CHUNK_SIZE: usize = 40;
/// Ids per planner message (about 15 KB; ten fit one `SendMessageBatch`).
pub const PLAN_IDS: usize = 500;

/// A message on the bulk queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BulkMessage {
    /// Up to [`PLAN_IDS`] ids of an id-list job: the worker slices them into chunks.
    PlanIds { job_id: Id, part: u32, ids: Vec<Id> },
    /// Page `seq` of one partition of a filter job's Query.
    PlanFilter {
        job_id: Id,
        partition: u32,
        seq: u32,
    },
    /// Accounts to change, counted together.
    Chunk {
        job_id: Id,
        chunk: String,
        ids: Vec<Id>,
    },
}

impl BulkMessage {
    pub fn job_id(&self) -> Id {
        match self {
            BulkMessage::PlanIds { job_id, .. }
            | BulkMessage::PlanFilter { job_id, .. }
            | BulkMessage::Chunk { job_id, .. } => *job_id,
        }
    }
}

/// The chunk messages of a planner message's ids: deterministic ids `<prefix>.<index>`.
pub fn chunks_of(job_id: Id, prefix: &str, ids: &[Id]) -> Vec<BulkMessage> {
    ids.chunks(CHUNK_SIZE)
        .enumerate()
        .map(|(i, ids)| BulkMessage::Chunk {
            job_id,
            chunk: format!("{prefix}.{i}"),
            ids: ids.to_vec(),
        })
        .collect()
}

/// The planner messages of an id list.
pub fn plan_ids(job_id: Id, ids: &[Id]) -> Vec<BulkMessage> {
    ids.chunks(PLAN_IDS)
        .enumerate()
        .map(|(part, ids)| BulkMessage::PlanIds {
            job_id,
            part: part as u32,
            ids: ids.to_vec(),
        })
        .collect()
}

/// The bulk queue: messages are [`BulkMessage`]s.
pub type JobQueue = crate::queue::QueueSender;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_deterministic_and_small() {
        let job = Id::generate();
        let ids: Vec<Id> = (0..1234).map(|_| Id::generate()).collect();
        let plans = plan_ids(job, &ids);
        assert_eq!(plans.len(), 3);
        let chunks = chunks_of(job, "0", &ids[..PLAN_IDS]);
        assert_eq!(chunks.len(), PLAN_IDS.div_ceil(CHUNK_SIZE));
        assert_eq!(chunks, chunks_of(job, "0", &ids[..PLAN_IDS]));
        let body = serde_json::to_string(&plans[0]).unwrap();
        assert!(body.len() * 10 < 256 * 1024, "{}", body.len());
        let back: BulkMessage = serde_json::from_str(&body).unwrap();
        assert_eq!(back, plans[0]);
    }
}
