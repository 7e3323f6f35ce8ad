//! Samples the levels no event reports: each function's concurrent executions and the open
//! WebSocket connections every second, every queue's depth every 5 seconds (one
//! `GetQueueAttributes` per queue, as cheap as CloudWatch's own sampling).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use tokio::task::JoinHandle;

use crate::gateway::Shared;

/// A queue to sample: its name (the `QueueName` dimension) and URL.
#[derive(Debug, Clone)]
pub struct SampledQueue {
    pub name: String,
    pub url: String,
}

/// Seconds between two queue samples.
const QUEUE_EVERY: u64 = 5;

/// Starts sampling; aborting the handle stops it.
pub fn start(
    shared: Arc<Shared>,
    sqs: aws_sdk_sqs::Client,
    queues: Vec<SampledQueue>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for second in 0u64.. {
            tick.tick().await;
            let metrics = &shared.metrics;
            for (function, pool) in &shared.pools {
                // Functions never invoked stay off the charts.
                if pool
                    .stats
                    .invocations
                    .load(std::sync::atomic::Ordering::Relaxed)
                    > 0
                {
                    metrics.lambda_concurrency(function, pool.concurrent_executions());
                }
            }
            if shared.model.websocket.is_some() {
                metrics.websocket_open(shared.ws.len());
            }
            if second % QUEUE_EVERY == 0 {
                for queue in &queues {
                    if let Some((visible, not_visible)) = depth(&sqs, &queue.url).await {
                        metrics.queue_depth(&queue.name, visible, not_visible);
                    }
                }
            }
        }
    })
}

async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Option<(u64, u64)> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .ok()?;
    let attributes = out.attributes()?;
    let get = |name: QueueAttributeName| -> Option<u64> { attributes.get(&name)?.parse().ok() };
    Some((
        get(QueueAttributeName::ApproximateNumberOfMessages)?,
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible).unwrap_or(0),
    ))
}
