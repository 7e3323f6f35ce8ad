//! Placement imports end to end (issue 18): `POST /imports` behind the local gateway, the
//! file PUT straight to moto's S3 with the presigned URL, moto's bucket notification into
//! the imports queue, the gateway's SQS event source driving the real `importer` binary
//! against DynamoDB Local; accounts read back through `/accounts`.
//!
//! Run under `infra/stack.sh` after `cargo build --workspace --bins`.

use std::time::{Duration, Instant};

use e2e::{account_body, Stack, StackOptions};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const HEADER: &str = "Acct No,debtor_name,debtor_email,debtor_phone,debtor_timezone,currency,original_balance,due_date,tags";

/// A good row of [`HEADER`] with reference `reference`.
fn row(reference: &str) -> String {
    format!("{reference},Ann Debtor,ann@example.com,+14155550101,America/New_York,USD,1000,2026-10-01,vip;new")
}

/// Creates an import of `size` bytes as `token` in `mode` (mapping `Acct No` to
/// `reference`); answers the import id and its upload URL.
async fn create(stack: &Stack, token: &str, size: usize, mode: &str) -> (String, String) {
    let (status, body) = stack
        .send(
            "POST",
            "/imports",
            Some(token),
            Some(json!({"size": size, "file_name": "placement.csv", "mode": mode, "column_mapping": {"Acct No": "reference"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["import"]["state"], "awaiting_upload");
    assert_eq!(body["upload"]["method"], "PUT");
    (
        body["import"]["id"].as_str().unwrap().to_owned(),
        body["upload"]["url"].as_str().unwrap().to_owned(),
    )
}

/// PUTs `file` to a presigned URL, as a browser or `curl -T` would.
async fn put(stack: &Stack, url: &str, file: &[u8]) {
    let response = stack
        .http
        .put(url)
        .body(file.to_vec())
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "upload: {}",
        response.status()
    );
}

/// The import once it has ended (60 s at most).
async fn ended(stack: &Stack, id: &str) -> Value {
    ended_within(stack, id, Duration::from_secs(60)).await
}

/// The import once it has ended (`limit` at most).
async fn ended_within(stack: &Stack, id: &str, limit: Duration) -> Value {
    let path = format!("/imports/{id}");
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = stack.send("GET", &path, Some(stack.admin()), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if !matches!(body["state"].as_str(), Some("awaiting_upload" | "running")) {
            return body;
        }
        assert!(Instant::now() < deadline, "the import did not end: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Imports `file` as the admin end to end in `mode`; answers the ended import.
async fn import(stack: &Stack, file: &[u8], mode: &str) -> Value {
    let (id, url) = create(stack, stack.admin(), file.len(), mode).await;
    put(stack, &url, file).await;
    ended(stack, &id).await
}

/// How many live accounts have a reference starting with `prefix`.
async fn accounts_with(stack: &Stack, prefix: &str) -> usize {
    let (status, body) = stack
        .send(
            "GET",
            &format!("/accounts?q={prefix}&limit=100"),
            Some(stack.admin()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().len()
}

/// The rows of the import's errors, each as `<line> <column>: <reason>`.
async fn error_rows(stack: &Stack, id: &str) -> Vec<String> {
    let (status, errors) = stack
        .send(
            "GET",
            &format!("/imports/{id}/errors?limit=100"),
            Some(stack.admin()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{errors}");
    errors["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {}: {}",
                r["line"],
                r["column"].as_str().unwrap(),
                r["reason"].as_str().unwrap()
            )
        })
        .collect()
}

/// A file of more rows than a part (`ImportPartRows` 500 here) is cut into parts that
/// other invocations write from their own byte ranges: every row is read once, errors
/// carry their lines in the whole file, a reference repeated across parts is created once,
/// and the import ends once, when its last rows are counted.
#[tokio::test]
async fn a_file_larger_than_a_part_is_written_in_parts_each_row_once() {
    let mut options = StackOptions::unthrottled().with_event_sources();
    options.params.push(("ImportPartRows".into(), "500".into()));
    let stack = Stack::start(options).await;
    let run = format!("PRT{}", ulid::Ulid::new());
    // Row i is on line i + 1 (the header is line 1); parts begin at rows 501 and 1001.
    let mut lines: Vec<String> = std::iter::once(HEADER.to_owned())
        .chain((1..=1003).map(|i| row(&format!("{run}-{i}"))))
        .collect();
    lines[700] =
        format!("{run}-700,Pat,not-an-email,+14155550103,America/New_York,USD,1000,2026-10-01,");
    lines[1001] =
        format!("{run}-1001,Kim,kim@example.com,+14155550104,America/New_York,USD,-5,2026-10-01,");
    // Row 1003 repeats row 5's reference: the first part created it.
    lines[1003] = row(&format!("{run}-5"));
    let file = lines.join("\n") + "\n";

    // Minutes at most: DynamoDB Local writes an Accounts item with its GSIs in ~10-20 ms
    // on one core, the stream readers share it, and CI runs other suites beside.
    let (id, url) = create(&stack, stack.admin(), file.len(), "create").await;
    put(&stack, &url, file.as_bytes()).await;
    let done = ended_within(&stack, &id, Duration::from_secs(600)).await;
    assert_eq!(done["state"], "completed_with_errors", "{done}");
    assert_eq!(done["total_rows"], 1003, "{done}");
    assert_eq!(done["rows_read"], 1003, "{done}");
    assert_eq!(done["created"], 1000, "{done}");
    assert_eq!(done["failed"], 2, "{done}");
    assert_eq!(done["duplicates"], 1, "{done}");
    assert_eq!(
        error_rows(&stack, &id).await,
        [
            "701 debtor_email: invalid",
            "1002 original_balance: invalid",
            "1004 Acct No: duplicate",
        ]
    );
    // A row of each part is an account with its reference.
    for i in [499, 501, 1002] {
        assert_eq!(
            accounts_with(&stack, &format!("{run}-{i}")).await,
            1,
            "row {i}"
        );
    }
}

#[tokio::test]
async fn a_placement_file_creates_each_account_once_and_reports_every_other_row() {
    let stack = Stack::start(StackOptions::unthrottled().with_event_sources()).await;
    let run = format!("IMP{}", ulid::Ulid::new());
    // An account that exists before the import: its row is a duplicate.
    let mut existing = account_body(&run, 500);
    existing["reference"] = json!(format!("{run}-DUP"));
    stack.create_account(existing).await;

    let file = [
        HEADER.to_owned(),
        row(&format!("{run}-1")),
        format!(
            "{run}-2,\"Bob, Jr.\",bob@example.com,+442071838750,Europe/London,GBP,2000,2026-11-01,"
        ),
        row(&format!("{run}-DUP")),
        format!("{run}-3,Carl,not-an-email,+14155550103,America/New_York,USD,1000,2026-10-01,"),
        format!("{run}-4,Dee,dee@example.com,+14155550104,America/New_York,USD,12.50,2026-10-01,"),
        row(&format!("{run}-1")),
    ]
    .join("\n")
        + "\n";

    // Only admins and managers import.
    for role in ["agent", "viewer"] {
        let (_, token) = stack.user_with_role(role).await;
        let (status, body) = stack
            .send("POST", "/imports", Some(&token), Some(json!({"size": 10})))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role}: {body}");
    }

    let (id, url) = create(&stack, stack.admin(), file.len(), "create").await;
    put(&stack, &url, file.as_bytes()).await;
    let done = ended(&stack, &id).await;
    assert_eq!(done["state"], "completed_with_errors", "{done}");
    assert_eq!(done["total_rows"], 6, "{done}");
    assert_eq!(done["rows_read"], 6, "{done}");
    assert_eq!(done["created"], 2, "{done}");
    assert_eq!(done["duplicates"], 2, "{done}");
    assert_eq!(done["failed"], 2, "{done}");
    assert_eq!(
        accounts_with(&stack, &run).await,
        3,
        "two created + the existing one"
    );

    // Every row not created, with its line, the file's column and why.
    let rows = error_rows(&stack, &id).await;
    assert_eq!(
        rows,
        [
            "4 Acct No: duplicate",
            "5 debtor_email: invalid",
            "6 original_balance: invalid",
            "7 Acct No: duplicate",
        ]
    );
    let csv = stack
        .request(
            "GET",
            &format!("/imports/{id}/errors"),
            Some(stack.admin()),
            None,
        )
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0], "line,column,reason,message");
    assert!(
        lines[2].starts_with("5,debtor_email,invalid,debtor_email: must be an email address"),
        "{text}"
    );

    // The same file again, to the same URL: the import has ended, nothing is created twice.
    put(&stack, &url, file.as_bytes()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, again) = stack
        .send("GET", &format!("/imports/{id}"), Some(stack.admin()), None)
        .await;
    assert_eq!(again["created"], 2, "{again}");
    assert_eq!(again["rows_read"], 6, "{again}");
    // ... and as a new import: every reference is taken.
    let second = import(&stack, file.as_bytes(), "create").await;
    assert_eq!(
        (
            second["created"].as_u64(),
            second["duplicates"].as_u64(),
            second["failed"].as_u64()
        ),
        (Some(0), Some(4), Some(2)),
        "{second}"
    );
    assert_eq!(accounts_with(&stack, &run).await, 3);

    // A manager sees only its own imports.
    let (_, manager) = stack.user_with_role("manager").await;
    let (status, _) = stack
        .send("GET", &format!("/imports/{id}"), Some(&manager), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (own, _) = create(&stack, &manager, 10, "create").await;
    let (status, body) = stack
        .send("GET", &format!("/imports/{own}"), Some(&manager), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// How many `field_change` activities `account` has.
async fn field_changes(stack: &Stack, account: &Value) -> usize {
    let path = format!(
        "/accounts/{}/activities?type=field_change",
        account["id"].as_str().unwrap()
    );
    let (status, activities) = stack.send("GET", &path, Some(stack.admin()), None).await;
    assert_eq!(status, StatusCode::OK, "{activities}");
    activities["items"].as_array().unwrap().len()
}

/// Mode `upsert`: a re-placed account takes the file's debtor details (not its balance),
/// with the same audit entry as a PATCH; new references are created; the same file again
/// changes nothing and creates nothing.
#[tokio::test]
async fn an_upsert_updates_existing_accounts_once_and_creates_the_new_ones() {
    let stack = Stack::start(StackOptions::unthrottled().with_event_sources()).await;
    let run = format!("UPS{}", ulid::Ulid::new());
    let first = [
        HEADER.to_owned(),
        row(&format!("{run}-1")),
        row(&format!("{run}-2")),
    ]
    .join("\n");
    let done = import(&stack, first.as_bytes(), "create").await;
    assert_eq!(done["created"], 2, "{done}");

    let second = [
        HEADER.to_owned(),
        format!("{run}-1,Ann Newname,ann.new@example.com,+14155550101,America/New_York,USD,999999,2026-10-01,vip;new"),
        row(&format!("{run}-3")),
    ]
    .join("\n");
    let done = import(&stack, second.as_bytes(), "upsert").await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(
        (
            &done["created"],
            &done["updated"],
            &done["duplicates"],
            &done["failed"]
        ),
        (&json!(1), &json!(1), &json!(0), &json!(0)),
        "{done}"
    );
    let (status, page) = stack
        .send(
            "GET",
            &format!("/accounts?q={run}-1&limit=10"),
            Some(stack.admin()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let account = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["reference"] == format!("{run}-1").as_str())
        .unwrap()
        .clone();
    assert_eq!(account["debtor_name"], "Ann Newname", "{account}");
    assert_eq!(account["debtor_email"], "ann.new@example.com", "{account}");
    assert_eq!(
        account["balance"],
        json!(1000),
        "balances never move through an import: {account}"
    );
    assert_eq!(field_changes(&stack, &account).await, 1);

    // The same file again: every row already has its values; nothing is written twice.
    let again = import(&stack, second.as_bytes(), "upsert").await;
    assert_eq!(
        (&again["created"], &again["updated"]),
        (&json!(0), &json!(2)),
        "{again}"
    );
    assert_eq!(accounts_with(&stack, &run).await, 3);
    assert_eq!(field_changes(&stack, &account).await, 1);

    // A mode that is neither is refused at POST /imports.
    let (status, problem) = stack
        .send(
            "POST",
            "/imports",
            Some(stack.admin()),
            Some(json!({"size": 10, "mode": "merge"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "mode", "{problem}");
}

/// `import:{id}` over the WebSocket: the follower gets `import.progress` messages (the body
/// of `GET /imports/{id}`) whose counts never go backwards, the last one the final state.
#[tokio::test]
async fn an_import_follower_gets_progress_ending_in_the_final_state() {
    let stack = Stack::start(StackOptions::unthrottled().with_event_sources()).await;
    let run = format!("WSI{}", ulid::Ulid::new());
    let file = [
        HEADER.to_owned(),
        row(&format!("{run}-1")),
        row(&format!("{run}-2")),
    ]
    .join("\n")
    .into_bytes();
    let (id, url) = create(&stack, stack.admin(), file.len(), "create").await;
    let (_sink, mut stream) = stack
        .subscribe(stack.admin(), &[&format!("import:{id}")])
        .await
        .expect("the upgrade is accepted");
    put(&stack, &url, &file).await;

    let mut progress = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, stream.next())
            .await
            .expect("no final import.progress in 60 s")
            .expect("the socket stays open")
            .expect("a frame");
        let Message::Text(text) = frame else { continue };
        let message: Value = serde_json::from_str(text.as_str()).unwrap();
        match message["type"].as_str() {
            Some("subscribed") => continue,
            Some("import.progress") => {
                assert_eq!(message["data"]["id"], id.as_str(), "{message}");
                let done = !matches!(
                    message["data"]["state"].as_str(),
                    Some("awaiting_upload" | "running")
                );
                progress.push(message);
                if done {
                    break;
                }
            }
            _ => panic!("unexpected message: {message}"),
        }
    }
    let last = progress.last().unwrap();
    assert_eq!(last["data"]["state"], "completed", "{last}");
    assert_eq!(last["data"]["rows_read"], 2, "{last}");
    assert_eq!(last["data"]["created"], 2, "{last}");
    let read: Vec<u64> = progress
        .iter()
        .map(|m| m["data"]["rows_read"].as_u64().unwrap())
        .collect();
    assert!(read.windows(2).all(|w| w[0] <= w[1]), "{read:?}");
    // What the follower saw last is what the API answers.
    assert_eq!(ended(&stack, &id).await, last["data"]);
}

#[tokio::test]
async fn bad_files_get_clear_answers_and_create_nothing() {
    let stack = Stack::start(StackOptions::unthrottled().with_event_sources()).await;

    // Refused at POST /imports by the declared size.
    for size in [0u64, 2 * 1024 * 1024 * 1024] {
        let (status, body) = stack
            .send(
                "POST",
                "/imports",
                Some(stack.admin()),
                Some(json!({"size": size})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{size}: {body}");
        assert_eq!(body["errors"][0]["field"], "size", "{body}");
    }
    let (status, body) = stack
        .send(
            "POST",
            "/imports",
            Some(stack.admin()),
            Some(json!({"size": 10, "column_mapping": {"Acct No": "account_number"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let run = format!("BAD{}", ulid::Ulid::new());
    let good = row(&format!("{run}-1"));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not UTF-8",
            [
                HEADER.as_bytes(),
                b"\n",
                good.as_bytes(),
                b"\n",
                format!("{run}-2,J").as_bytes(),
                b"\xe9r\xf4me,x@example.com,+14155550101,UTC,USD,1,2026-10-01,\n",
            ]
            .concat(),
            "line 3, column 2 is not UTF-8",
        ),
        (
            "too many columns",
            format!("{HEADER}\n{good}\n{good},extra\n").into_bytes(),
            "line 3 has 10 columns; the header has 9",
        ),
        (
            "a missing required column",
            format!("{}\n{good}\n", HEADER.replace(",due_date", ",due")).into_bytes(),
            "missing required column(s): due_date",
        ),
        (
            "another delimiter",
            format!("{}\n{}\n", HEADER.replace(',', ";"), good.replace(',', ";")).into_bytes(),
            "the file must be comma-separated",
        ),
        (
            "a header without names",
            b"\xef\xbb\xbf,\n".to_vec(),
            "column 1 has no name",
        ),
    ];
    for (what, file, error) in cases {
        let done = import(&stack, &file, "create").await;
        assert_eq!(done["state"], "failed", "{what}: {done}");
        let message = done["error"].as_str().unwrap_or_default();
        assert!(message.contains(error), "{what}: {message}");
        assert_eq!(done["created"], 0, "{what}: {done}");
    }
    // A 0-byte upload where 10 bytes were declared (S3 refuses it with the signed length;
    // moto does not check, so the importer does).
    let (id, url) = create(&stack, stack.admin(), 10, "create").await;
    put(&stack, &url, b"").await;
    let done = ended(&stack, &id).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(
        done["error"],
        "the uploaded file has 0 bytes, but 10 were declared"
    );
    // The good row before the bad ones was never created.
    assert_eq!(accounts_with(&stack, &run).await, 0);
}

/// The ids of a `GET /imports` page, and its cursor.
async fn list_page(stack: &Stack, token: &str, query: &str) -> (Vec<String>, Option<String>) {
    let (status, page) = stack
        .send("GET", &format!("/imports{query}"), Some(token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|import| import["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, page["next_cursor"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn imports_are_listed_newest_first_to_those_who_may_see_them() {
    let stack = Stack::start(StackOptions::unthrottled()).await;
    let (_, manager) = stack.user_with_role("manager").await;
    let mut admins = Vec::new();
    for _ in 0..3 {
        admins.push(create(&stack, stack.admin(), 10, "create").await.0);
    }
    let (managers, _) = create(&stack, &manager, 10, "upsert").await;

    // The admin sees every import, newest first, page by page.
    let (first, cursor) = list_page(&stack, stack.admin(), "?limit=3").await;
    let cursor = cursor.expect("a second page");
    let (second, last) =
        list_page(&stack, stack.admin(), &format!("?limit=3&cursor={cursor}")).await;
    assert_eq!(last, None);
    let newest_first: Vec<String> = [managers.clone()]
        .into_iter()
        .chain(admins.iter().rev().cloned())
        .collect();
    assert_eq!([first, second].concat(), newest_first);
    let (status, page) = stack
        .send("GET", "/imports", Some(stack.admin()), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"][0]["mode"], "upsert", "{page}");
    assert_eq!(page["items"][0]["state"], "awaiting_upload", "{page}");

    // A manager sees its own only; agents and viewers none; a stranger is not signed in.
    assert_eq!(
        list_page(&stack, &manager, "").await,
        (vec![managers], None)
    );
    for role in ["agent", "viewer"] {
        let (_, token) = stack.user_with_role(role).await;
        let (status, body) = stack.send("GET", "/imports", Some(&token), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role}: {body}");
    }
    let (status, _) = stack.send("GET", "/imports", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Bad paging is named; a cursor of another list (the manager's) is refused.
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=x", "limit"),
        ("?cursor=nope", "cursor"),
        ("?color=red", "color"),
    ] {
        let (status, body) = stack
            .send(
                "GET",
                &format!("/imports{query}"),
                Some(stack.admin()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body.to_string().contains(field), "{query}: {body}");
    }
    create(&stack, &manager, 10, "create").await;
    let (_, foreign) = list_page(&stack, &manager, "?limit=1").await;
    let foreign = foreign.expect("the manager's second page");
    let (status, body) = stack
        .send(
            "GET",
            &format!("/imports?cursor={foreign}"),
            Some(stack.admin()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
