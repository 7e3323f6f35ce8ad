//! Realtime end to end: a payment POSTed through the HTTP API reaches WebSocket subscribers
//! through the whole path (Payments stream → the local gateway's stream event source → the
//! real `notifier` binary → `@connections` → the socket). Run under `infra/stack.sh` after
//! `cargo build --workspace --bins`.
//!
//! Latencies are printed, not asserted tightly: the design's 2 s target is reported, and only
//! a generous bound fails the test (a loaded 2-core machine must not make it flaky).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{account_body, wait_until, Socket, Stack, StackOptions};
use futures::stream::SplitSink;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::auth::{Caller, Role};
use shared::config::TableName;
use shared::domain::Id;
use shared::realtime::{ConnectionItem, ConnectionRepo, Topic};
use tokio_tungstenite::tungstenite::Message;

/// The failure bound for anything that should take about a second.
const BOUND: Duration = Duration::from_secs(10);
/// The design's target from POST to message.
const TARGET: Duration = Duration::from_secs(2);

/// A subscribed client whose messages are collected (with their arrival time) as they come.
struct Inbox {
    received: Arc<Mutex<Vec<(Instant, Value)>>>,
    _sink: SplitSink<Socket, Message>,
}

impl Inbox {
    async fn subscribe(stack: &Stack, token: &str, topics: &[&str]) -> Inbox {
        let (sink, mut stream) = stack
            .subscribe(token, topics)
            .await
            .expect("the upgrade is accepted");
        let received: Arc<Mutex<Vec<(Instant, Value)>>> = Arc::default();
        let collected = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                if let Message::Text(text) = frame {
                    if let Ok(value) = serde_json::from_str::<Value>(text.as_str()) {
                        collected.lock().unwrap().push((Instant::now(), value));
                    }
                }
            }
        });
        let inbox = Inbox {
            received,
            _sink: sink,
        };
        let answer = inbox
            .wait_for(|m| m["type"] == "subscribed" || m["type"] == "error")
            .await
            .expect("an answer to subscribe");
        assert_eq!(answer.1["type"], "subscribed", "{}", answer.1);
        inbox
    }

    fn find(&self, matches: impl Fn(&Value) -> bool) -> Option<(Instant, Value)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .find(|(_, m)| matches(m))
            .cloned()
    }

    /// The first message that matches, waiting up to [`BOUND`].
    async fn wait_for(&self, matches: impl Fn(&Value) -> bool) -> Option<(Instant, Value)> {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(found) = self.find(&matches) {
                return Some(found);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn account(stack: &Stack, agent: &str) -> String {
    let mut body = account_body("RT", 100_000);
    body["assigned_agent_id"] = json!(agent);
    stack.create_account(body).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// POSTs a payment; answers its id and when the request was sent.
async fn pay(stack: &Stack, account: &str, amount: i64) -> (String, Instant) {
    let started = Instant::now();
    let response = stack.pay_request(account, amount).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (body["id"].as_str().unwrap().to_owned(), started)
}

fn recorded(payment: &str) -> impl Fn(&Value) -> bool + '_ {
    move |m| m["type"] == "payment.recorded" && m["data"]["id"] == payment
}

#[tokio::test]
async fn payments_reach_subscribers_agents_see_only_their_accounts_gone_connections_go() {
    let stack = Stack::start(StackOptions::unthrottled().with_event_sources()).await;
    let (a_id, a_token) = stack.user_with_role("agent").await;
    let (b_id, b_token) = stack.user_with_role("agent").await;
    let (_, manager) = stack.user_with_role("manager").await;
    let mine = account(&stack, &a_id).await;
    let theirs = account(&stack, &b_id).await;

    let admin = Inbox::subscribe(&stack, stack.admin(), &["payments", "dashboard"]).await;
    let follower = Inbox::subscribe(&stack, &manager, &[&format!("account:{mine}")]).await;
    let agent_a = Inbox::subscribe(&stack, &a_token, &["payments"]).await;
    let agent_b = Inbox::subscribe(&stack, &b_token, &["payments"]).await;

    // A connection whose client went away without a $disconnect (on AWS, $disconnect is
    // best effort): only the notifier's 410 can clean it up.
    let env = stack.gateway.env().clone();
    let sdk = shared::clients::sdk_config().await;
    let repo = ConnectionRepo::new(
        shared::clients::Clients::new(&sdk).dynamodb,
        TableName::new(env["CONNECTIONS_TABLE"].clone()),
    );
    let stale = format!("gone{}=", Id::generate());
    // Of a real, enabled viewer: a connection of anyone else would be dropped by the
    // notifier's check of the user before any post.
    let (viewer, _) = stack.user_with_role("viewer").await;
    let caller = Caller {
        user_id: viewer.parse().unwrap(),
        role: Role::Viewer,
    };
    let expires = time::OffsetDateTime::now_utc().unix_timestamp() + 900;
    let connection = ConnectionItem::new(&stale, &caller, 0, expires).with_token_version(0);
    repo.put_connection(&connection).await.unwrap();
    assert!(repo
        .subscribe(&connection, &[Topic::Payments])
        .await
        .unwrap());

    // A payment on agent A's account.
    let (payment, sent) = pay(&stack, &mine, 2_500).await;
    for (who, inbox) in [
        ("admin on payments", &admin),
        ("manager on account:{id}", &follower),
        ("agent A on payments", &agent_a),
    ] {
        let (at, message) = inbox
            .wait_for(recorded(&payment))
            .await
            .unwrap_or_else(|| panic!("{who}: no payment.recorded within {BOUND:?}"));
        let latency = at.duration_since(sent);
        println!(
            "realtime: {who}: payment.recorded {latency:?} after the POST (target {TARGET:?}){}",
            if latency > TARGET {
                " - OVER TARGET"
            } else {
                ""
            }
        );
        assert_eq!(message["data"]["account_id"], mine.as_str());
        assert!(
            message["id"].as_str().is_some_and(|id| !id.is_empty()),
            "{message}"
        );
    }
    let dashboard = admin
        .wait_for(|m| m["type"] == "dashboard.changed")
        .await
        .expect("the admin hears the dashboard moved");
    assert!(
        dashboard.1["data"]["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("all")),
        "{}",
        dashboard.1
    );

    // A payment on agent B's account: B hears of it, A does not.
    let (other, _) = pay(&stack, &theirs, 1_000).await;
    agent_b
        .wait_for(recorded(&other))
        .await
        .expect("agent B gets its own account's payment");
    // Both payments have reached everyone they will reach (B's came after A's on the same
    // path); give any stray message a moment more.
    admin
        .wait_for(recorded(&other))
        .await
        .expect("the admin gets it too");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        agent_b.find(recorded(&payment)).is_none(),
        "agent B received agent A's account's payment"
    );
    assert!(
        agent_a.find(recorded(&other)).is_none(),
        "agent A received agent B's account's payment"
    );

    // The notifier got 410 for the stale connection and removed it with its subscription.
    let (repo, stale) = (&repo, &stale);
    wait_until(
        BOUND,
        "the stale connection is still in the Connections table",
        || async move {
            repo.connection(stale).await.unwrap().is_none()
                && repo
                    .subscribers(&Topic::Payments)
                    .await
                    .unwrap()
                    .iter()
                    .all(|s| s.connection_id != *stale)
        },
    )
    .await;
}

#[tokio::test]
async fn a_job_follower_gets_ordered_progress_ending_in_the_final_state() {
    let stack = Stack::start(StackOptions::unthrottled().with_event_sources()).await;
    const ACCOUNTS: usize = 300;
    let ids: Vec<String> = futures::stream::iter(0..ACCOUNTS)
        .map(|_| async {
            stack.create_account(account_body("JOB", 10_000)).await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let body = json!({"account_ids": ids, "changes": {"add_tags": ["rt-job"]}});
    let (status, accepted) = stack
        .send("POST", "/bulk/accounts", Some(stack.admin()), Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();
    // Subscribed right after the 202: the planner message has yet to go through SQS.
    let follower = Inbox::subscribe(&stack, stack.admin(), &[&format!("job:{job_id}")]).await;

    let finished = |m: &Value| m["type"] == "job.progress" && m["data"]["finished_at"].is_string();
    // A liveness bound, not a speed check: 24 s on an idle machine, over 120 s once under
    // CI's parallel suites (the job's account updates now also feed the audit writer).
    let deadline = Instant::now() + Duration::from_secs(360);
    let last = loop {
        if let Some((_, message)) = follower.find(finished) {
            break message;
        }
        assert!(Instant::now() < deadline, "no final job.progress in 360 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(last["data"]["id"], job_id.as_str(), "{last}");
    assert_eq!(last["data"]["state"], "completed", "{last}");
    assert_eq!(last["data"]["total"], ACCOUNTS);
    assert_eq!(last["data"]["processed"], ACCOUNTS);
    assert_eq!(last["data"]["succeeded"], ACCOUNTS);

    // Every message is this job's, in order: progress never goes backwards, and the
    // final state is the last word.
    let progress: Vec<Value> = follower
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, m)| m.clone())
        .filter(|m| m["type"] == "job.progress")
        .collect();
    assert!(progress.iter().all(|m| m["data"]["id"] == job_id.as_str()));
    let processed: Vec<u64> = progress
        .iter()
        .map(|m| m["data"]["processed"].as_u64().unwrap())
        .collect();
    assert!(
        processed.windows(2).all(|w| w[0] <= w[1]),
        "progress went backwards: {processed:?}"
    );
    assert_eq!(progress.last(), Some(&last));
    println!(
        "FIGURE job.progress messages for a {ACCOUNTS}-account job: {} ({processed:?})",
        progress.len()
    );
}
