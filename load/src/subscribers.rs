//! WebSocket subscribers connected throughout the run: managers following `payments`,
//! agents following `account:{id}` of some of their accounts. Each counts every
//! `payment.recorded` it gets by payment id, so the check can tell a missed payment from a
//! duplicate.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// One subscriber's topics and what it received.
#[derive(Debug, Default)]
pub struct Received {
    pub topics: Vec<String>,
    /// Payment id → times received.
    pub payments: BTreeMap<String, u32>,
    pub messages: u64,
    pub closed: bool,
}

pub type Shared = Arc<Mutex<Received>>;

/// Connects with `token`, follows `topics`, and records messages until the connection ends
/// or the task is aborted.
pub async fn subscribe(
    ws_base: &str,
    token: &str,
    topics: Vec<String>,
) -> Result<(Shared, tokio::task::JoinHandle<()>)> {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{ws_base}/?token={token}"))
        .await
        .context("WebSocket connect")?;
    socket
        .send(Message::Text(
            json!({"action": "subscribe", "topics": topics})
                .to_string()
                .into(),
        ))
        .await?;
    // The first answer is the subscription's.
    let answer = tokio::time::timeout(Duration::from_secs(30), socket.next())
        .await
        .context("no answer to subscribe")?;
    let Some(Ok(Message::Text(text))) = answer else {
        bail!("subscribe: {answer:?}");
    };
    let value: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
    if value["type"] != "subscribed" {
        bail!("subscribe refused: {value}");
    }
    let received: Shared = Arc::new(Mutex::new(Received {
        topics,
        ..Default::default()
    }));
    let sink = received.clone();
    let task = tokio::spawn(async move {
        while let Some(Ok(frame)) = socket.next().await {
            let Message::Text(text) = frame else { continue };
            let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            let mut r = sink.lock().unwrap_or_else(|e| e.into_inner());
            r.messages += 1;
            if message["type"] == "payment.recorded" {
                if let Some(id) = message["data"]["id"].as_str() {
                    *r.payments.entry(id.to_owned()).or_default() += 1;
                }
            }
        }
        sink.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
    });
    Ok((received, task))
}

/// What a subscriber should have got against what it did: (missed, duplicated) payment ids,
/// `expected` being the payments of its topics.
pub fn compare(received: &Received, expected: &BTreeSet<String>) -> (usize, usize) {
    let missed = expected
        .iter()
        .filter(|id| !received.payments.contains_key(*id))
        .count();
    let duplicated = received.payments.values().filter(|n| **n > 1).count();
    (missed, duplicated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_and_duplicated_payments() {
        let received = Received {
            payments: BTreeMap::from([("a".into(), 1), ("b".into(), 2), ("x".into(), 1)]),
            ..Default::default()
        };
        let expected: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
        assert_eq!(compare(&received, &expected), (1, 1));
    }
}
