//! The messages of the bulk queue and their sending: planner messages (ids, or one page of
//! a filter's partition) fan out into chunk messages of [`CHUNK_SIZE`] accounts.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::{Deserialize, Serialize};

use crate::domain::Id;
use crate::dynamo::retry::backoff;
use crate::dynamo::DataError;

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

/// The bulk queue.
#[derive(Debug, Clone)]
pub struct JobQueue {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl JobQueue {
    pub fn new(sqs: aws_sdk_sqs::Client, url: String) -> Self {
        Self { sqs, url }
    }

    /// Sends messages with `SendMessageBatch` (ten per call, calls concurrently); entries
    /// that fail on their own are sent again, with backoff.
    pub async fn send(&self, messages: &[BulkMessage]) -> Result<(), DataError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let bodies: Vec<String> = messages
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()
            .map_err(DataError::corrupt)?;
        let batches: Vec<Vec<String>> = bodies.chunks(10).map(<[String]>::to_vec).collect();
        let sends: Vec<_> = batches
            .into_iter()
            .map(|batch| self.send_batch(batch))
            .collect();
        stream::iter(sends)
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn send_batch(&self, bodies: Vec<String>) -> Result<(), DataError> {
        let mut pending: Vec<(usize, String)> = bodies.into_iter().enumerate().collect();
        for attempt in 0..6 {
            let entries = pending
                .iter()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body.clone())
                        .build()
                        .map_err(DataError::failed)
                })
                .collect::<Result<Vec<_>, _>>()?;
            match self
                .sqs
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => {
                    let failed: Vec<&str> = output.failed().iter().map(|f| f.id()).collect();
                    if failed.is_empty() {
                        return Ok(());
                    }
                    tracing::warn!(
                        failed = failed.len(),
                        attempt,
                        "SendMessageBatch entries failed; retrying them"
                    );
                    pending.retain(|(i, _)| failed.contains(&i.to_string().as_str()));
                }
                Err(err) => {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&err), attempt, "SendMessageBatch failed; retrying");
                }
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(DataError::unavailable(
            "the bulk queue is not accepting messages; retry",
        ))
    }
}

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
