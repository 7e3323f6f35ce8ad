//! Sending messages to a queue ([`QueueSender`]), and bringing a failed SQS message back
//! soon instead of after the queue's visibility timeout.
//!
//! A consumer that reports a message in `batchItemFailures` leaves it invisible for the rest
//! of the queue's `VisibilityTimeout`, which AWS asks to be six times the consumer's timeout
//! (the bulk queue's is 360 s). One throttled write would hold a bulk job's progress still
//! for six minutes. So before reporting a failure, a consumer shortens the message's
//! visibility to [`redelivery_delay`]: seconds for a first failure, doubling with each
//! receive, so a passing fault costs seconds and a lasting one still reaches the
//! dead-letter queue after `maxReceiveCount` receives (about 2.5 min of retrying instead
//! of 30). If shortening fails, the message simply comes back after the full timeout.

use std::time::Duration;

use aws_lambda_events::sqs::SqsMessage;

use crate::dynamo::DataError;

/// The delay after a message's first failed receive; each further receive doubles it.
pub const FIRST_REDELIVERY: Duration = Duration::from_secs(10);
/// The longest delay: a bound below every queue's visibility timeout.
pub const LONGEST_REDELIVERY: Duration = Duration::from_secs(300);

/// How long a message that failed on its `receive_count`-th receive (SQS's
/// `ApproximateReceiveCount`, 1 on the first) stays hidden: 10 s, 20 s, 40 s, ... ≤ 300 s.
pub fn redelivery_delay(receive_count: u32) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(16);
    FIRST_REDELIVERY
        .saturating_mul(1 << doublings)
        .min(LONGEST_REDELIVERY)
}

/// The message's `ApproximateReceiveCount` (1 when absent or unreadable).
pub fn receive_count(message: &SqsMessage) -> u32 {
    message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
}

/// Shortens a failed message's visibility to its [`redelivery_delay`] on `queue_url`. A
/// failure is logged, not returned: the message still comes back, only later.
pub async fn redeliver_soon(sqs: &aws_sdk_sqs::Client, queue_url: &str, message: &SqsMessage) {
    let Some(handle) = message.receipt_handle.as_deref() else {
        return;
    };
    let delay = redelivery_delay(receive_count(message));
    let result = sqs
        .change_message_visibility()
        .queue_url(queue_url)
        .receipt_handle(handle)
        .visibility_timeout(i32::try_from(delay.as_secs()).unwrap_or(i32::MAX))
        .send()
        .await;
    if let Err(err) = result {
        tracing::warn!(
            message_id = ?message.message_id,
            error = %aws_sdk_sqs::error::DisplayErrorContext(&err),
            "could not shorten a failed message's visibility; it returns after the queue's timeout"
        );
    }
}

/// Sends messages (JSON bodies) to one queue.
#[derive(Debug, Clone)]
pub struct QueueSender {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl QueueSender {
    pub fn new(sqs: aws_sdk_sqs::Client, url: String) -> Self {
        Self { sqs, url }
    }

    /// [`redeliver_soon`] for a message received from this queue.
    pub async fn redeliver_soon(&self, message: &SqsMessage) {
        redeliver_soon(&self.sqs, &self.url, message).await;
    }

    /// Sends messages with `SendMessageBatch` (ten per call, calls concurrently); entries
    /// that fail on their own are sent again, with backoff.
    pub async fn send<T: serde::Serialize>(&self, messages: &[T]) -> Result<(), DataError> {
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
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
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
            tokio::time::sleep(crate::dynamo::retry::backoff(attempt)).await;
        }
        Err(DataError::unavailable(
            "the queue is not accepting messages; retry",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_per_receive_up_to_the_bound() {
        let secs: Vec<u64> = (0..=8).map(|n| redelivery_delay(n).as_secs()).collect();
        assert_eq!(secs, [10, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(redelivery_delay(u32::MAX), LONGEST_REDELIVERY);
    }

    #[test]
    fn the_receive_count_comes_from_the_attributes() {
        let mut message = SqsMessage::default();
        assert_eq!(receive_count(&message), 1);
        message
            .attributes
            .insert("ApproximateReceiveCount".into(), "3".into());
        assert_eq!(receive_count(&message), 3);
        message
            .attributes
            .insert("ApproximateReceiveCount".into(), "x".into());
        assert_eq!(receive_count(&message), 1);
    }
}
