//! The gateway end to end on the fixture template (run under infra/stack.sh). Each test
//! starts its own gateway on ephemeral ports with its own table and queue prefix.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use local_gateway::provision::{random_prefix, sdk_config};
use local_gateway::{Gateway, GatewayOptions, Outcome, RunningGateway};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

struct Fixture {
    gw: RunningGateway,
    out: PathBuf,
    http: reqwest::Client,
    base: String,
}

fn fixture_options(out: &Path) -> GatewayOptions {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_gateway-fixture"))
        .parent()
        .unwrap()
        .to_path_buf();
    GatewayOptions {
        template_path: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/template.yaml"),
        http_port: 0,
        ws_port: 0,
        bin_dir: Some(bin_dir),
        prefix: random_prefix(),
        params: [("OutDir".to_owned(), out.display().to_string())].into(),
        ..Default::default()
    }
}

async fn start_with(speedup: f64, max_instances: usize) -> Fixture {
    start_with_options(|o| {
        o.schedule_speedup = speedup;
        o.max_instances = max_instances;
    })
    .await
}

async fn start_with_options(change: impl FnOnce(&mut GatewayOptions)) -> Fixture {
    let out = std::env::temp_dir().join(format!("lg-{}", random_prefix()));
    std::fs::create_dir_all(&out).unwrap();
    let mut options = fixture_options(&out);
    change(&mut options);
    let gw = Gateway::start(options).await.unwrap();
    let base = format!("http://{}", gw.http_addr());
    Fixture {
        gw,
        out,
        http: reqwest::Client::new(),
        base,
    }
}

async fn start() -> Fixture {
    start_with(1.0, 8).await
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A well-formed SigV4 `Authorization` header: the local `@connections` API checks that a
/// request is signed (its shape), as AWS requires, not the signature itself.
const SIGV4: &str = "AWS4-HMAC-SHA256 Credential=local/20261201/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn signed(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request
        .header("authorization", SIGV4)
        .header("x-amz-date", "20261201T052600Z")
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn routes_path_parameters_and_environment() {
    let f = start().await;
    assert_eq!(f.gw.env()["STAGE"], "local");
    assert_eq!(f.gw.env()["PROTECTED"], "no");
    assert!(f.gw.env()["ITEMS_TABLE"].ends_with("ItemsTable"));
    let echo_env = &f.gw.model().functions["EchoFunction"].environment;
    assert!(
        echo_env["QUEUE_ARN"].starts_with("arn:aws:sqs:"),
        "{echo_env:?}"
    );
    assert_eq!(
        echo_env["SUBBED"],
        format!("{}@us-east-1", f.gw.env()["ITEMS_TABLE"])
    );

    let r = f
        .http
        .get(format!("{}/items/abc?x=1&y=two", f.base))
        .header("cookie", "a=1; b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-fixture"], "yes");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["routeKey"], "GET /items/{id}");
    assert_eq!(v["pathParameters"]["id"], "abc");
    assert_eq!(v["rawQueryString"], "x=1&y=two");
    assert_eq!(v["queryStringParameters"]["y"], "two");
    assert_eq!(v["cookies"], json!(["a=1", "b=2"]));
    assert_eq!(v["function"], "EchoFunction");

    let v: Value = f
        .http
        .get(format!("{}/items/special", f.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["routeKey"], "GET /items/special");

    let v: Value = f
        .http
        .post(format!("{}/items", f.base))
        .header("content-type", "application/json")
        .body(r#"{"name":"x"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["routeKey"], "POST /items");
    assert_eq!(v["body"], r#"{"name":"x"}"#);
    assert_eq!(v["isBase64Encoded"], false);

    let v: Value = f
        .http
        .put(format!("{}/files/a/b/c.png", f.base))
        .header("content-type", "image/png")
        .body(vec![0x89_u8, 0x50, 0xff])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["routeKey"], "ANY /files/{proxy+}");
    assert_eq!(v["pathParameters"]["proxy"], "a/b/c.png");
    assert_eq!(v["isBase64Encoded"], true);
    assert_eq!(v["body"], "iVD/");

    // A response that is not the payload-2.0 shape is a 200 JSON body.
    let r = f.http.get(format!("{}/raw", f.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"hello": "world"}));

    // An unknown path, and a method a known path does not declare, get API Gateway's own
    // answer (HTTP APIs have no 405), and no function runs.
    for (method, path) in [
        ("GET", "/nope"),
        ("DELETE", "/items/abc"),
        ("PATCH", "/items"),
        ("GET", "/items"),
    ] {
        let r = f
            .http
            .request(method.parse().unwrap(), format!("{}{path}", f.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v, json!({"message": "Not Found"}), "{method} {path}");
    }

    let r = f
        .http
        .post(format!("{}/items", f.base))
        .body(vec![b'a'; 10 * 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn cors_preflight_and_response_headers() {
    let f = start().await;
    let r = f
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/items/1", f.base))
        .header("origin", "http://allowed.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://allowed.example"
    );
    assert_eq!(r.headers()["access-control-max-age"], "600");
    assert!(r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));

    let r = f
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/items/1", f.base))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let r = f
        .http
        .get(format!("{}/items/1", f.base))
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert_eq!(r.headers()["access-control-expose-headers"], "etag");
}

#[tokio::test]
async fn errors_timeouts_crashes_and_init_errors() {
    let f = start().await;
    let r = f
        .http
        .get(format!("{}/error", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Internal Server Error"})
    );

    let started = Instant::now();
    let r = f
        .http
        .get(format!("{}/timeout", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Service Unavailable"})
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2900),
        "{took:?}"
    );

    for _ in 0..2 {
        let r = f
            .http
            .get(format!("{}/crash", f.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
    }
    // A crashed instance is replaced: the second crash needed a new process.
    assert_eq!(
        f.gw.pool("CrashFunction")
            .unwrap()
            .stats
            .started
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    let r = f
        .http
        .get(format!("{}/initfail", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);

    // The gateway keeps serving, and the timed-out function runs again.
    let r = f
        .http
        .get(format!("{}/items/still", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = f
        .http
        .get(format!("{}/timeout", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);

    // A direct invocation reports the function error like Lambda's Invoke.
    match f.gw.invoke("ErrorFunction", json!({})).await {
        Outcome::FunctionError(v) => {
            assert!(
                v["errorMessage"].as_str().unwrap().contains("on purpose"),
                "{v}"
            )
        }
        other => panic!("expected a function error, got {other:?}"),
    }
}

#[tokio::test]
async fn concurrent_requests_scale_out_up_to_the_cap_and_reuse_warm_instances() {
    let f = start_with(1.0, 8).await;
    let round = || async {
        let started = Instant::now();
        let requests = (0..20).map(|_| f.http.get(format!("{}/slow", f.base)).send());
        let responses = futures::future::join_all(requests).await;
        for r in responses {
            assert_eq!(r.unwrap().status(), 200);
        }
        started.elapsed()
    };
    let first = round().await;
    let pool = f.gw.pool("SlowFunction").unwrap();
    let started = pool
        .stats
        .started
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(started <= 8, "started {started} instances, cap is 8");
    assert!(
        started >= 2,
        "requests did not run concurrently: {started} instance"
    );
    // 20 requests of 500 ms on at most 8 instances: three waves, not twenty.
    assert!(first < Duration::from_secs(3), "took {first:?}");
    let second = round().await;
    assert!(second < Duration::from_secs(3), "took {second:?}");
    let after = pool
        .stats
        .started
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        after <= 8,
        "warm instances were not reused: {after} started"
    );
}

#[tokio::test]
async fn websocket_connect_messages_and_connections_api() {
    let f = start().await;
    let ws = format!("ws://{}", f.gw.ws_addr());
    match tokio_tungstenite::connect_async(format!("{ws}/local")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 401)
        }
        other => panic!(
            "connect without a token must be refused: {:?}",
            other.map(|_| ())
        ),
    }
    let (mut a, _) = tokio_tungstenite::connect_async(format!("{ws}/local?token=ok"))
        .await
        .unwrap();
    a.send(Message::text(r#"{"action":"hello","n":1}"#))
        .await
        .unwrap();
    let reply: Value =
        serde_json::from_str(a.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(reply["route"], "$default");
    assert_eq!(reply["echo"]["n"], 1);
    let id_a = reply["connectionId"].as_str().unwrap().to_owned();

    // A message route posts to a connection through @connections.
    a.send(Message::text(
        json!({"action": "post", "to": id_a, "data": {"hi": "there"}}).to_string(),
    ))
    .await
    .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(Duration::from_secs(5), a.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push(serde_json::from_str::<Value>(m.to_text().unwrap()).unwrap());
    }
    assert!(got.contains(&json!({"hi": "there"})), "{got:?}");
    assert!(got.contains(&json!({"posted": 200})), "{got:?}");

    let conn_url = format!("http://{}/@connections/{id_a}", f.gw.ws_addr());
    let r = signed(f.http.get(&conn_url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.unwrap()["connectedAt"].is_string());

    // A closed connection is gone.
    let (mut b, _) = tokio_tungstenite::connect_async(format!("{ws}/?token=ok"))
        .await
        .unwrap();
    b.send(Message::text("not json")).await.unwrap();
    let reply: Value =
        serde_json::from_str(b.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    let id_b = reply["connectionId"].as_str().unwrap().to_owned();
    b.close(None).await.unwrap();
    let disconnected = f.out.join("ws.jsonl");
    wait_for("the $disconnect event", Duration::from_secs(5), || {
        lines(&disconnected)
            .iter()
            .any(|l| l["disconnected"] == id_b.as_str())
    })
    .await;
    let r = signed(f.http.post(format!(
        "http://{}/local/@connections/{id_b}",
        f.gw.ws_addr()
    )))
    .body("x")
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 410);
    let r = signed(
        f.http
            .post(format!("http://{}/@connections/unknown", f.gw.ws_addr())),
    )
    .body("x")
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 410);

    // DELETE closes the connection.
    let r = signed(f.http.delete(&conn_url)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match a.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the client was not disconnected");
    assert_eq!(
        signed(f.http.get(&conn_url)).send().await.unwrap().status(),
        410
    );
    assert_eq!(
        signed(f.http.delete(&conn_url))
            .send()
            .await
            .unwrap()
            .status(),
        410,
        "deleting a closed connection is gone"
    );
}

#[tokio::test]
async fn connections_api_refuses_unsigned_requests_as_aws_does() {
    let f = start().await;
    let ws = format!("ws://{}", f.gw.ws_addr());
    let (mut a, _) = tokio_tungstenite::connect_async(format!("{ws}/local?token=ok"))
        .await
        .unwrap();
    a.send(Message::text(r#"{"action":"hello"}"#))
        .await
        .unwrap();
    let reply: Value =
        serde_json::from_str(a.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    let id = reply["connectionId"].as_str().unwrap().to_owned();
    let url = format!("http://{}/local/@connections/{id}", f.gw.ws_addr());

    // Unsigned: PostToConnection, GetConnection and DeleteConnection are all refused, and
    // the connection is left alone.
    for method in ["POST", "GET", "DELETE"] {
        let r = f
            .http
            .request(method.parse().unwrap(), &url)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{method}");
        assert_eq!(
            r.headers()["x-amzn-errortype"],
            "MissingAuthenticationTokenException"
        );
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"message": "Missing Authentication Token"})
        );
    }
    // A header that is not SigV4 (a bearer token, say) is refused too.
    let r = f
        .http
        .post(&url)
        .header("authorization", "Bearer something")
        .header("x-amz-date", "20261201T052600Z")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["x-amzn-errortype"],
        "IncompleteSignatureException"
    );

    // The connection is still open: a signed post reaches it.
    let r = signed(f.http.post(&url))
        .body("still here")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = tokio::time::timeout(Duration::from_secs(5), a.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.to_text().unwrap(), "still here");
}

#[tokio::test]
async fn sqs_partial_batch_failure_is_retried_then_dead_lettered() {
    let f = start().await;
    let sdk = sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = f.gw.env()["WORK_QUEUE_URL"].clone();
    for body in ["ok-1", "fail-1", "ok-2"] {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let dlq =
        f.gw.provisioned()
            .queue_url("WorkDeadLetterQueue")
            .unwrap()
            .to_owned();
    let started = Instant::now();
    let mut dead = Vec::new();
    while dead.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing reached the DLQ"
        );
        let out = sqs
            .receive_message()
            .queue_url(&dlq)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        dead.extend(
            out.messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_owned)),
        );
    }
    assert_eq!(dead, vec!["fail-1".to_owned()]);
    let seen = lines(&f.out.join("sqs.jsonl"));
    let count = |b: &str| seen.iter().filter(|l| l["body"] == b).count();
    assert_eq!(count("ok-1"), 1, "{seen:?}");
    assert_eq!(count("ok-2"), 1, "{seen:?}");
    assert_eq!(count("fail-1"), 2, "maxReceiveCount is 2: {seen:?}");
    assert!(seen.iter().all(|l| l["eventSource"] == "aws:sqs"));
    let counts: Vec<&Value> = seen
        .iter()
        .filter(|l| l["body"] == "fail-1")
        .map(|l| &l["receiveCount"])
        .collect();
    assert_eq!(counts, vec![&json!("1"), &json!("2")]);
    // The failed message came back only when the queue's visibility timeout (3 s) expired,
    // as on AWS: the gateway neither deleted it nor made it visible again at once.
    let retry = seen
        .iter()
        .find(|l| l["body"] == "fail-1" && l["receiveCount"] == "2")
        .unwrap();
    let first_received: u64 = retry["firstReceivedAt"]
        .as_str()
        .expect("SQS reports ApproximateFirstReceiveTimestamp")
        .parse()
        .unwrap();
    let retried_at = retry["invokedAt"].as_u64().unwrap();
    assert!(
        retried_at >= first_received + 3000,
        "retried {} ms after the first receive, before the visibility timeout",
        retried_at.saturating_sub(first_received)
    );
}

#[tokio::test]
async fn stream_records_are_delivered_once_per_change() {
    let f = start().await;
    let sdk = sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = f.gw.env()["ITEMS_TABLE"].clone();
    use aws_sdk_dynamodb::types::AttributeValue as A;
    ddb.put_item()
        .table_name(&table)
        .item("pk", A::S("a".into()))
        .item("n", A::N("1".into()))
        .send()
        .await
        .unwrap();
    ddb.update_item()
        .table_name(&table)
        .key("pk", A::S("a".into()))
        .update_expression("SET n = :n")
        .expression_attribute_values(":n", A::N("2".into()))
        .send()
        .await
        .unwrap();
    ddb.delete_item()
        .table_name(&table)
        .key("pk", A::S("a".into()))
        .send()
        .await
        .unwrap();
    let path = f.out.join("stream.jsonl");
    wait_for("three stream records", Duration::from_secs(20), || {
        lines(&path).len() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let records = lines(&path);
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["eventName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["INSERT", "MODIFY", "REMOVE"], "{records:?}");
    assert_eq!(records[0]["eventSource"], "aws:dynamodb");
    assert_eq!(records[0]["dynamodb"]["Keys"]["pk"]["S"], "a");
    assert_eq!(records[1]["dynamodb"]["NewImage"]["n"]["N"], "2");
    assert_eq!(records[1]["dynamodb"]["OldImage"]["n"]["N"], "1");
    assert_eq!(
        records[2]["dynamodb"]["StreamViewType"],
        "NEW_AND_OLD_IMAGES"
    );
    assert!(records[0]["eventSourceARN"]
        .as_str()
        .unwrap()
        .contains("stream"));
}

#[tokio::test]
async fn a_disabled_stream_mapping_holds_its_records_until_enabled() {
    let f = start().await;
    let sdk = sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = f.gw.env()["ITEMS_TABLE"].clone();
    let put = |pk: &'static str| {
        ddb.put_item()
            .table_name(&table)
            .item("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk.into()))
            .send()
    };
    let path = f.out.join("stream.jsonl");
    put("before").await.unwrap();
    wait_for("the first record", Duration::from_secs(20), || {
        lines(&path).len() == 1
    })
    .await;
    f.gw.enable_stream_mappings(false);
    put("while-disabled").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lines(&path).len(), 1, "a disabled mapping delivered");
    f.gw.enable_stream_mappings(true);
    wait_for("the held record", Duration::from_secs(20), || {
        lines(&path).len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let keys: Vec<String> = lines(&path)
        .iter()
        .map(|r| {
            r["dynamodb"]["Keys"]["pk"]["S"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(keys, ["before", "while-disabled"]);
}

#[tokio::test]
async fn schedules_fire_with_the_eventbridge_payload() {
    // rate(1 minute) sped up 60 times: every second.
    let f = start_with(60.0, 2).await;
    let path = f.out.join("schedule.jsonl");
    wait_for("two scheduled events", Duration::from_secs(10), || {
        lines(&path).len() >= 2
    })
    .await;
    let e = &lines(&path)[0];
    assert_eq!(e["detail-type"], "Scheduled Event");
    assert_eq!(e["source"], "aws.events");
    assert_eq!(e["detail"], json!({}));
    assert!(e["time"].as_str().unwrap().ends_with('Z'));
    assert!(e["resources"][0]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:events:"));
    // The nightly cron can be fired on demand.
    let before = lines(&path).len();
    let outcome =
        f.gw.trigger_schedule("ScheduleFunction.Nightly")
            .await
            .unwrap();
    assert!(outcome.is_success(), "{outcome:?}");
    assert!(lines(&path).len() > before);
}

#[tokio::test]
async fn invoke_subcommand_prints_the_response_and_fails_on_function_error() {
    let dir = std::env::temp_dir().join(format!("lg-{}", random_prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let event = dir.join("event.json");
    std::fs::write(&event, "{}").unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_gateway-fixture"))
        .parent()
        .unwrap();
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/template.yaml");
    let run = |function: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_local-gateway"))
            .arg("invoke")
            .arg("--template")
            .arg(&template)
            .arg("--bin-dir")
            .arg(bin_dir)
            .arg("--prefix")
            .arg(random_prefix())
            .arg("--function")
            .arg(function)
            .arg("--event")
            .arg(&event)
            .output()
            .unwrap()
    };
    let ok = run("RawFunction");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let printed: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(printed, json!({"hello": "world"}));
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(
        stderr.contains("REPORT RequestId:") && stderr.contains("Init Duration:"),
        "{stderr}"
    );

    let failed = run("ErrorFunction");
    assert!(!failed.status.success());
    let printed: Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert!(printed["errorMessage"]
        .as_str()
        .unwrap()
        .contains("on purpose"));
}

#[tokio::test]
async fn lambda_payload_quotas_are_enforced_as_on_aws() {
    let f = start().await;
    const MIB: usize = 1024 * 1024;
    // A 5 MB body fits Lambda's 6 MB request quota (and the echo's answer its response quota).
    let r = f
        .http
        .post(format!("{}/items", f.base))
        .header("content-type", "text/plain")
        .body("b".repeat(5 * MIB))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["body"]
            .as_str()
            .unwrap()
            .len(),
        5 * MIB
    );
    // 6.5 MB is under API Gateway's 10 MB but over Lambda's 6 MB: refused, nothing runs.
    let invocations = || {
        f.gw.pool("EchoFunction")
            .unwrap()
            .stats
            .invocations
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = invocations();
    let r = f
        .http
        .post(format!("{}/items", f.base))
        .header("content-type", "text/plain")
        .body("b".repeat(6 * MIB + MIB / 2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Request Entity Too Large"})
    );
    assert_eq!(invocations(), before, "the function must not run");
    // A direct invocation gets Invoke's RequestTooLargeException.
    let outcome =
        f.gw.invoke("EchoFunction", json!({"body": "b".repeat(6 * MIB)}))
            .await;
    assert!(
        matches!(outcome, Outcome::RequestTooLarge(_)),
        "{outcome:?}"
    );

    // Responses: 5 MB (over axum's default body limit, under Lambda's) comes back whole;
    // over 6,291,556 bytes is the function error Function.ResponseSizeTooLarge, which the
    // HTTP API answers as a failed integration.
    let r = f
        .http
        .get(format!("{}/big?size={}", f.base, 5 * MIB))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 5 * MIB);
    let r = f
        .http
        .get(format!("{}/big?size={}", f.base, 6 * MIB + 100))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Internal Server Error"})
    );
    match f
        .gw
        .invoke(
            "BigFunction",
            json!({"queryStringParameters": {"size": (7 * MIB).to_string()}}),
        )
        .await
    {
        Outcome::FunctionError(v) => assert_eq!(v["errorType"], "Function.ResponseSizeTooLarge"),
        other => panic!("expected Function.ResponseSizeTooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn the_stage_throttle_answers_429_per_route() {
    let f = start().await;
    let get = |path: &'static str| {
        let url = format!("{}{path}", f.base);
        let http = f.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    // GET /limited: burst 2, refilled at 0.001/s.
    assert_eq!(get("/limited").await.status(), 200);
    assert_eq!(get("/limited").await.status(), 200);
    let r = get("/limited").await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Too Many Requests"})
    );
    // Another route of the same function has its own (here: no) throttle.
    assert_eq!(get("/raw").await.status(), 200);
    assert_eq!(get("/raw").await.status(), 200);
    assert_eq!(get("/raw").await.status(), 200);
}

#[tokio::test]
async fn reserved_concurrency_throttles_synchronous_invocations_instead_of_queueing() {
    let f = start().await;
    let pool = f.gw.pool("HoldFunction").unwrap().clone();
    assert_eq!(pool.max_instances(), 1, "ReservedConcurrentExecutions: 1");
    let first = tokio::spawn(f.http.get(format!("{}/hold", f.base)).send());
    wait_for(
        "the first invocation to be admitted",
        Duration::from_secs(5),
        || pool.in_flight() == 1,
    )
    .await;
    // The first holds the only instance for 4 s: Lambda throttles the second at once, and
    // the HTTP API answers that as an integration failure.
    let r = f.http.get(format!("{}/hold", f.base)).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Internal Server Error"})
    );
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(
        pool.stats
            .invocations
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the throttled request never reached the function"
    );
    // Free again: the next one runs.
    assert_eq!(
        f.http
            .get(format!("{}/hold", f.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn http_invocations_wait_boundedly_for_an_instance_then_are_throttled() {
    // One instance, one waiting invocation at most, waiting at most 10 s.
    let f = start_with_options(|o| {
        o.max_instances = 1;
        o.max_queued = 1;
    })
    .await;
    let pool = f.gw.pool("LongFunction").unwrap().clone();
    let running = tokio::spawn(f.http.get(format!("{}/long", f.base)).send());
    wait_for("the first invocation", Duration::from_secs(5), || {
        pool.in_flight() == 1
    })
    .await;
    let waiting = tokio::spawn(f.http.get(format!("{}/long", f.base)).send());
    wait_for("the second invocation", Duration::from_secs(5), || {
        pool.in_flight() == 2
    })
    .await;
    // The third finds the instance busy and the queue full: throttled.
    let r = f.http.get(format!("{}/long", f.base)).send().await.unwrap();
    assert_eq!(r.status(), 500);
    // The one that waited ran once the instance was free.
    assert_eq!(running.await.unwrap().unwrap().status(), 200);
    assert_eq!(waiting.await.unwrap().unwrap().status(), 200);
    assert_eq!(
        pool.stats
            .invocations
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

/// SIGKILL to every live instance of a pool (as the chaos runs do).
fn kill_nine(pool: &local_gateway::runtime::FunctionPool) -> usize {
    let pids = pool.pids();
    for pid in &pids {
        // SAFETY: kill(2) on a child process of this test's gateway; no memory effects.
        unsafe {
            libc::kill(*pid as i32, libc::SIGKILL);
        }
    }
    pids.len()
}

#[tokio::test]
async fn an_invocation_queued_behind_an_instance_that_dies_runs_on_a_replacement() {
    // One instance, one invocation waiting for it (up to a minute), then the instance is
    // killed mid-invocation and no other request comes: the waiting one must still run.
    let f = start_with_options(|o| {
        o.max_instances = 1;
        o.max_queued = 1;
        o.queue_wait = Duration::from_secs(60);
    })
    .await;
    let pool = f.gw.pool("LongFunction").unwrap().clone();
    let running = tokio::spawn(f.http.get(format!("{}/long", f.base)).send());
    wait_for("the first invocation", Duration::from_secs(10), || {
        pool.in_flight() == 1 && pool.concurrent_executions() == 1 && !pool.pids().is_empty()
    })
    .await;
    let waiting = tokio::spawn(f.http.get(format!("{}/long", f.base)).send());
    wait_for("the second invocation", Duration::from_secs(5), || {
        pool.in_flight() == 2
    })
    .await;
    assert_eq!(kill_nine(&pool), 1);
    // The killed one is answered as a crash; the waiting one runs on a new instance.
    assert_eq!(running.await.unwrap().unwrap().status(), 500);
    let waited = waiting.await.unwrap().unwrap();
    assert_eq!(waited.status(), 200);
    assert_eq!(
        pool.stats
            .started
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

/// A regression guard for the instance bookkeeping: a killed idle instance is neither
/// counted idle (which would stop a new one from starting) nor handed work.
#[tokio::test]
async fn a_warm_instance_killed_while_idle_takes_no_more_invocations() {
    let f = start().await;
    let get = || f.http.get(format!("{}/items/warm", f.base)).send();
    assert_eq!(get().await.unwrap().status(), 200);
    let pool = f.gw.pool("EchoFunction").unwrap().clone();
    wait_for(
        "the instance parked in /next",
        Duration::from_secs(5),
        || pool.concurrent_executions() == 0,
    )
    .await;
    assert_eq!(kill_nine(&pool), 1);
    wait_for("the instance gone", Duration::from_secs(5), || {
        pool.instances() == 0
    })
    .await;
    // The dead instance's `/next` must not take the next invocation (it would hold it until
    // the function's 5 s timeout and answer 503): a new instance serves it.
    let started = Instant::now();
    let r = get().await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(
        pool.stats
            .started
            .load(std::sync::atomic::Ordering::Relaxed),
        2,
        "a replacement served it"
    );
    println!("served by a replacement in {:?}", started.elapsed());
}

#[tokio::test]
async fn a_slow_cold_start_is_waited_for_not_throttled() {
    // One instance; a queued invocation waits at most 1 s; the instance takes 3 s to start.
    let f = start_with_options(|o| {
        o.max_instances = 1;
        o.max_queued = 1;
        o.queue_wait = Duration::from_secs(1);
    })
    .await;
    let pool = f.gw.pool("SlowInitFunction").unwrap().clone();
    let started = std::time::Instant::now();
    let first = tokio::spawn(f.http.get(format!("{}/slow-init", f.base)).send());
    wait_for("the first invocation", Duration::from_secs(5), || {
        pool.in_flight() == 1
    })
    .await;
    // The second starts no instance (the one allowed is starting): it is bounded by the
    // queue wait, which ends before the init does.
    let second = f
        .http
        .get(format!("{}/slow-init", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 500);
    // The first started the instance: Lambda throttles when concurrency runs out, not
    // because a cold start is slow, so it waits for the init and is served.
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), 200);
    assert!(started.elapsed() >= Duration::from_secs(3));
}

fn key_of(record: &Value) -> &str {
    record["dynamodb"]["Keys"]["pk"]["S"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_poison_stream_record_goes_to_the_on_failure_queue_and_the_shard_moves_on() {
    let f = start().await;
    let sdk = sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let table = f.gw.env()["ITEMS_TABLE"].clone();
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let put = |pk: &'static str, poison: bool| {
        let mut request = ddb
            .put_item()
            .table_name(&table)
            .item("pk", A::S(pk.into()));
        if poison {
            request = request.item("poison", A::Bool(true));
        }
        request.send()
    };
    put("before", false).await.unwrap();
    put("poison", true).await.unwrap();

    // The function always fails on the poison record: after MaximumRetryAttempts (2) retries
    // its metadata goes to the OnFailure queue, in Lambda's invocation record shape.
    let queue =
        f.gw.provisioned()
            .queue_url("StreamFailureQueue")
            .unwrap()
            .to_owned();
    let started = Instant::now();
    let message = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing reached the OnFailure queue"
        );
        let out = sqs
            .receive_message()
            .queue_url(&queue)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if let Some(m) = out.messages().first() {
            break serde_json::from_str::<Value>(m.body().unwrap()).unwrap();
        }
    };
    let seen = lines(&f.out.join("stream.jsonl"));
    let poison = seen.iter().find(|r| key_of(r) == "poison").unwrap();
    let poison_seq = poison["dynamodb"]["SequenceNumber"].clone();
    assert_eq!(
        message["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    assert_eq!(message["requestContext"]["approximateInvokeCount"], 3);
    assert!(message["requestContext"]["functionArn"]
        .as_str()
        .unwrap()
        .ends_with(":function:StreamFunction"));
    assert_eq!(message["responseContext"]["functionError"], "Unhandled");
    let info = &message["DDBStreamBatchInfo"];
    assert_eq!(
        info["batchSize"], 1,
        "bisection isolated the poison: {message}"
    );
    assert_eq!(info["startSequenceNumber"], poison_seq);
    assert_eq!(info["endSequenceNumber"], poison_seq);
    assert_eq!(info["streamArn"], poison["eventSourceARN"]);
    assert!(info["shardId"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(seen.iter().any(|r| key_of(r) == "before"));

    // The shard is not blocked: a record written now is delivered, once.
    put("after", false).await.unwrap();
    let path = f.out.join("stream.jsonl");
    wait_for(
        "the record after the poison",
        Duration::from_secs(20),
        || lines(&path).iter().any(|r| key_of(r) == "after"),
    )
    .await;
    assert_eq!(
        lines(&path).iter().filter(|r| key_of(r) == "after").count(),
        1
    );
}

#[tokio::test]
async fn stream_checkpoints_survive_a_gateway_restart() {
    let out = std::env::temp_dir().join(format!("lg-{}", random_prefix()));
    std::fs::create_dir_all(&out).unwrap();
    let prefix = random_prefix();
    let options = || GatewayOptions {
        prefix: prefix.clone(),
        ..fixture_options(&out)
    };
    let sdk = sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let path = out.join("stream.jsonl");
    let count = |pk: &str| lines(&path).iter().filter(|r| key_of(r) == pk).count();

    let gw = Gateway::start(options()).await.unwrap();
    let table = gw.env()["ITEMS_TABLE"].clone();
    let mapping = gw.model().streams[0].clone();
    ddb.put_item()
        .table_name(&table)
        .item("pk", A::S("one".into()))
        .send()
        .await
        .unwrap();
    wait_for("the first record", Duration::from_secs(20), || {
        count("one") == 1
    })
    .await;
    let one_seq = lines(&path)[0]["dynamodb"]["SequenceNumber"]
        .as_str()
        .unwrap()
        .to_owned();
    // The checkpoint is stored (in the gateway's table, next to the data) after delivery.
    let checkpoints = local_gateway::stream_source::Checkpoints::ensure(ddb.clone(), &prefix)
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let (shards, ran) = checkpoints.load(&mapping).await.unwrap();
        assert!(ran);
        if shards.values().any(|seq| *seq == one_seq) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no checkpoint: {shards:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.shutdown().await;

    // Written while the gateway is down.
    ddb.put_item()
        .table_name(&table)
        .item("pk", A::S("two".into()))
        .send()
        .await
        .unwrap();
    let gw = Gateway::start(options()).await.unwrap();
    wait_for(
        "the record written while down",
        Duration::from_secs(20),
        || count("two") == 1,
    )
    .await;
    // Records arrive in order, so "one" would have come again before "two" had the restart
    // lost the position (the fixture reads from TRIM_HORIZON).
    assert_eq!(count("one"), 1, "{:?}", lines(&path));
    gw.shutdown().await;
}

/// The figures of `/_local/metrics` as `line → value` (comments left out).
async fn scrape(f: &Fixture) -> std::collections::BTreeMap<String, f64> {
    let r = f
        .http
        .get(format!("{}/_local/metrics", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    r.text()
        .await
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn local_metrics_and_dashboard_show_emf_records_and_lambda_figures() {
    let f = start().await;
    for _ in 0..2 {
        let r = f
            .http
            .get(format!("{}/items/a?emf=12", f.base))
            .send()
            .await;
        assert_eq!(r.unwrap().status(), 200);
    }
    assert_eq!(
        f.http
            .get(format!("{}/error", f.base))
            .send()
            .await
            .unwrap()
            .status(),
        500
    );
    // Reserved concurrency 1: a second request while the first holds the instance is a
    // Lambda throttle.
    let hold = tokio::spawn(f.http.get(format!("{}/hold", f.base)).send());
    let pool = f.gw.pool("HoldFunction").unwrap().clone();
    wait_for("the hold", Duration::from_secs(5), || pool.in_flight() == 1).await;
    let r = f.http.get(format!("{}/hold", f.base)).send().await.unwrap();
    assert_eq!(r.status(), 500);

    // The EMF records arrive on the functions' stdout, read concurrently: wait for them.
    let route = r#"function="fixture",route="GET /items/{id}""#;
    let latency_count = format!("collectpro_api_latency_milliseconds_count{{{route}}}");
    let started = Instant::now();
    let figures = loop {
        let figures = scrape(&f).await;
        if figures.get(&latency_count) == Some(&4.0) {
            break figures;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no EMF figures: {figures:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let expect = |series: &str, value: f64| {
        assert_eq!(
            figures.get(series),
            Some(&value),
            "{series} in {figures:#?}"
        );
    };
    // Every dimension set of the record is a series; two values per request.
    expect(
        &format!("collectpro_api_latency_milliseconds_sum{{{route}}}"),
        72.0,
    );
    let p99 = figures[r#"collectpro_api_latency_milliseconds{quantile="0.99"}"#];
    assert!((p99 - 24.0).abs() < 0.25, "p99 {p99}");
    expect(r#"collectpro_api_requests_total{function="fixture"}"#, 2.0);
    expect("collectpro_api_requests_total", 2.0);
    // What Lambda reports, from the gateway's own knowledge.
    let echo = r#"{function_name="EchoFunction"}"#;
    expect(&format!("aws_lambda_invocations_total{echo}"), 2.0);
    expect(
        &format!("aws_lambda_duration_milliseconds_count{echo}"),
        2.0,
    );
    expect(
        &format!("lambdainsights_init_duration_milliseconds_count{echo}"),
        1.0,
    );
    assert!(figures[&format!("lambdainsights_used_memory_max_megabytes{echo}")] > 0.0);
    expect(
        r#"aws_lambda_errors_total{function_name="ErrorFunction"}"#,
        1.0,
    );
    expect(
        r#"aws_lambda_throttles_total{function_name="HoldFunction"}"#,
        1.0,
    );
    assert_eq!(hold.await.unwrap().unwrap().status(), 200);
    // Queue depth is sampled from the start; the dead-letter queue is empty.
    let dlq = &f.gw.provisioned().queues["WorkDeadLetterQueue"].name;
    let depth = format!("aws_sqs_approximate_number_of_messages_visible{{queue_name=\"{dlq}\"}}");
    expect(&depth, 0.0);

    // The page's series, and the page itself with its chart library.
    let doc: Value = f
        .http
        .get(format!("{}/_local/metrics.json?minutes=5", f.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dead: Vec<&str> = doc["dead_letter_queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(dead.contains(&dlq.as_str()), "{dead:?}");
    assert!(!dead.iter().any(|q| q.ends_with("-WorkQueue")), "{dead:?}");
    let latency = doc["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "ApiLatency" && s["dimensions"] == json!({}))
        .expect("the service-wide latency series");
    let values: u64 = latency["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_u64().unwrap())
        .sum();
    assert_eq!(values, 4, "{latency}");
    for (path, content_type) in [
        ("dashboard", "text/html; charset=utf-8"),
        ("uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("uPlot.min.css", "text/css; charset=utf-8"),
    ] {
        let r = f
            .http
            .get(format!("{}/_local/{path}", f.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], content_type, "{path}");
    }
    // Anything else is still the API's: no route, API Gateway's 404.
    let r = f.http.get(format!("{}/_local/other", f.base)).send().await;
    assert_eq!(r.unwrap().status(), 404);
}
