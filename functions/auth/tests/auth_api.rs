//! The auth handlers against DynamoDB Local (run under `infra/stack.sh`).

use std::time::Duration;

use auth::{handle, App, Settings};
use http::StatusCode;
use serde_json::{json, Value};
use shared::auth::{authorize, Action};
use shared::rate_limit::{Limit, RateLimits};
use shared::testing::{body_json, TestRequest};

const PASSWORD: &str = "a long and unusual passphrase";

fn settings() -> Settings {
    Settings {
        max_failed_logins: 5,
        lockout: Duration::from_secs(900),
        refresh_ttl_secs: 3600,
        self_registration: true,
    }
}

async fn app_with(limits: RateLimits) -> App {
    App::new(shared::testing::platform(limits).await, settings()).unwrap()
}

async fn app() -> App {
    app_with(RateLimits::off()).await
}

async fn call(app: &App, req: TestRequest) -> (StatusCode, Value, http::HeaderMap) {
    let response = shared::http::serve(req.build(), |req| handle(app, req)).await;
    (
        response.status(),
        body_json(&response),
        response.headers().clone(),
    )
}

fn post(path: &str, body: Value) -> TestRequest {
    TestRequest::new(&format!("POST {path}"), path).json(&body)
}

async fn register(app: &App, email: &str) -> Value {
    let (status, body, _) = call(
        app,
        post(
            "/auth/register",
            json!({"email": email, "name": "Ann", "password": PASSWORD}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn login(app: &App, email: &str, password: &str) -> (StatusCode, Value) {
    let (status, body, _) = call(
        app,
        post("/auth/login", json!({"email": email, "password": password})),
    )
    .await;
    (status, body)
}

fn unique_email() -> String {
    format!(
        "user-{}@example.com",
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

#[tokio::test]
async fn register_login_me_refresh_logout() {
    let app = app().await;
    let email = unique_email();
    let user = register(&app, &email).await;
    assert_eq!(user["role"], "pending");
    assert_eq!(user["email"], email);
    assert!(user["locked_until"].is_null());
    assert_eq!(user["disabled"], false);
    assert!(user.get("password_hash").is_none());
    for field in ["id", "name", "created_at", "updated_at"] {
        assert!(user.get(field).is_some(), "{field}");
    }

    let (status, tokens) = login(&app, &email.to_uppercase(), PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();

    let (status, me, _) = call(
        &app,
        TestRequest::new("GET /auth/me", "/auth/me").bearer(access),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], user["id"]);
    assert_eq!(me["role"], "pending");

    let (status, rotated, _) = call(
        &app,
        post("/auth/refresh", json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let refresh2 = rotated["refresh_token"].as_str().unwrap();
    assert_ne!(refresh2, refresh);

    // Logout revokes the family: the new refresh token is dead.
    let (status, _, _) = call(
        &app,
        post("/auth/logout", json!({"refresh_token": refresh2})).bearer(access),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = call(
        &app,
        post("/auth/refresh", json!({"refresh_token": refresh2})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Logout needs a signed-in caller.
    let (status, body, _) = call(
        &app,
        post("/auth/logout", json!({"refresh_token": refresh2})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["type"], "https://collectpro.dev/problems/unauthorized");
}

/// A stranger who registers gets a user with no access: every action of the RBAC table is
/// refused for its token (the routes of other functions authorise through the same table,
/// see `shared::auth::rbac`); `/auth/me` works and says `pending`.
#[tokio::test]
async fn a_registered_user_is_pending_and_may_do_nothing() {
    let app = app().await;
    let email = unique_email();
    let user = register(&app, &email).await;
    assert_eq!(user["role"], "pending");
    let (status, tokens) = login(&app, &email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let req = TestRequest::new("GET /accounts", "/accounts")
        .bearer(tokens["access_token"].as_str().unwrap())
        .build();
    let caller = app.platform.authenticator.authenticate(&req).await.unwrap();
    assert_eq!(caller.role, shared::auth::Role::Pending);
    for action in [
        Action::ReadAccounts,
        Action::ReadPayments,
        Action::ReadActivities,
        Action::ReadDashboard,
        Action::Subscribe,
        Action::ManageUsers,
    ] {
        let err = authorize(&caller, action).unwrap_err();
        assert_eq!(err.status, StatusCode::FORBIDDEN, "{action:?}");
    }
}

#[tokio::test]
async fn registration_can_be_turned_off() {
    let platform = shared::testing::platform(RateLimits::off()).await;
    let app = App::new(
        platform,
        Settings {
            self_registration: false,
            ..settings()
        },
    )
    .unwrap();
    let email = unique_email();
    let (status, body, _) = call(
        &app,
        post(
            "/auth/register",
            json!({"email": email, "name": "Ann", "password": PASSWORD}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        body["type"],
        "https://collectpro.dev/problems/registration-disabled"
    );
    // Nothing was written: the email is free and unknown.
    assert!(app.users.find_by_email(&email).await.unwrap().is_none());
    // The variable: open, off, or an init error naming it.
    let lookup = |value: &'static str| {
        move |name: &str| (name == "SELF_REGISTRATION").then(|| value.to_owned())
    };
    assert!(auth::self_registration(&lookup("open")).unwrap());
    assert!(!auth::self_registration(&lookup("off")).unwrap());
    assert!(auth::self_registration(&|_: &str| None).unwrap());
    assert!(auth::self_registration(&lookup("closed")).is_err());
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_its_family() {
    let app = app().await;
    let email = unique_email();
    register(&app, &email).await;
    let (_, tokens) = login(&app, &email, PASSWORD).await;
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (status, second, _) =
        call(&app, post("/auth/refresh", json!({"refresh_token": first}))).await;
    assert_eq!(status, StatusCode::OK);
    let second = second["refresh_token"].as_str().unwrap().to_owned();
    // The spent one again: refused, and the family (so `second` too) is revoked.
    let (status, body, _) =
        call(&app, post("/auth/refresh", json!({"refresh_token": first}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, _) = call(
        &app,
        post("/auth/refresh", json!({"refresh_token": second})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // An unknown token.
    let (status, _, _) = call(
        &app,
        post("/auth/refresh", json!({"refresh_token": "nope"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn concurrent_refreshes_spend_a_token_once() {
    let app = app().await;
    let email = unique_email();
    register(&app, &email).await;
    let (_, tokens) = login(&app, &email, PASSWORD).await;
    let token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let calls = (0..5).map(|_| call(&app, post("/auth/refresh", json!({"refresh_token": token}))));
    let results = futures::future::join_all(calls).await;
    let ok = results
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::OK)
        .count();
    assert!(ok <= 1, "a token was spent {ok} times");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_identical_answers() {
    let app = app().await;
    let email = unique_email();
    register(&app, &email).await;
    let (s1, b1) = login(&app, &email, "wrong password entirely").await;
    let (s2, b2) = login(&app, &unique_email(), "wrong password entirely").await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!((s1, &b1), (s2, &b2));
}

/// During a lock every attempt gets the same `423` and `Retry-After`, whatever the
/// password: before, a wrong password got `401` and the right one `423`, an oracle that let
/// guessing go on through the lock.
#[tokio::test]
async fn a_locked_account_answers_423_to_any_password_until_time_or_an_admin_unlocks_it() {
    let app = app().await;
    let email = unique_email();
    register(&app, &email).await;
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(login(&app, &email, "wrong password entirely").await);
    }
    assert!(answers
        .iter()
        .all(|(s, b)| *s == StatusCode::UNAUTHORIZED && *b == answers[0].1));
    let attempt = |password: &'static str| {
        call(
            &app,
            post("/auth/login", json!({"email": email, "password": password})),
        )
    };
    let (wrong_status, wrong_body, wrong_headers) = attempt("wrong password entirely").await;
    let (right_status, right_body, right_headers) = attempt(PASSWORD).await;
    assert_eq!(wrong_status, StatusCode::LOCKED, "{wrong_body}");
    assert_eq!((wrong_status, &wrong_body), (right_status, &right_body));
    assert_eq!(wrong_body["type"], "https://collectpro.dev/problems/locked");
    for headers in [&wrong_headers, &right_headers] {
        let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry > 800 && retry <= 900, "{retry}");
    }
    // Attempts during the lock are not counted (nothing was checked).
    let user = app.users.find_by_email(&email).await.unwrap().unwrap();
    assert_eq!(user.failed_logins, 0);

    // The lock ends by time: its end moved into the past stands for 15 minutes passing.
    let past = shared::domain::Timestamp::now().plus(time::Duration::seconds(-1));
    app.platform
        .clients
        .dynamodb
        .update_item()
        .table_name(app.platform.config.tables.users.as_str())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("USER#{}", user.id)),
        )
        .update_expression("SET locked_until = :past")
        .expression_attribute_values(
            ":past",
            aws_sdk_dynamodb::types::AttributeValue::S(past.to_string()),
        )
        .send()
        .await
        .unwrap();
    let (status, body) = login(&app, &email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Locked again, then an admin unlocks it.
    for _ in 0..5 {
        login(&app, &email, "wrong password entirely").await;
    }
    assert_eq!(login(&app, &email, PASSWORD).await.0, StatusCode::LOCKED);
    let user = app.users.find_by_email(&email).await.unwrap().unwrap();
    let changes = shared::auth::users::UserChanges {
        unlock: true,
        ..Default::default()
    };
    app.users.update(&user, &changes).await.unwrap();
    let (status, body) = login(&app, &email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_writes_nothing() {
    let app = app().await;
    let email = unique_email();
    let cases: Vec<(TestRequest, u16, &str)> = vec![
        (
            TestRequest::new("POST /auth/register", "/auth/register").raw_body("{\"email\":"),
            400,
            "bad-request",
        ),
        (
            post(
                "/auth/register",
                json!({"email": email, "password": PASSWORD}),
            ),
            400,
            "validation",
        ),
        (
            post(
                "/auth/register",
                json!({"email": email, "name": "A", "password": PASSWORD, "role": "admin"}),
            ),
            400,
            "validation",
        ),
        (
            post(
                "/auth/register",
                json!({"email": email, "name": "A", "password": "short"}),
            ),
            400,
            "validation",
        ),
        (
            post(
                "/auth/register",
                json!({"email": email, "name": "A", "password": "password1234"}),
            ),
            400,
            "validation",
        ),
        (
            post(
                "/auth/register",
                json!({"email": email, "name": "A", "password": email}),
            ),
            400,
            "validation",
        ),
        (
            post(
                "/auth/register",
                json!({"email": "not-an-email", "name": "A", "password": PASSWORD}),
            ),
            400,
            "validation",
        ),
        (
            post(
                "/auth/register",
                json!({"email": email, "name": "A\u{0}B", "password": PASSWORD}),
            ),
            400,
            "validation",
        ),
        (
            post(
                "/auth/register",
                json!({"email": email, "name": "x".repeat(101), "password": PASSWORD}),
            ),
            400,
            "validation",
        ),
        (
            TestRequest::new("POST /auth/register", "/auth/register").raw_body(&format!(
                "{{\"name\":\"{}\"}}",
                "x".repeat(10 * 1024 * 1024)
            )),
            413,
            "payload-too-large",
        ),
        (
            post("/auth/login", json!({"email": email})),
            400,
            "validation",
        ),
        (
            post("/auth/refresh", json!({"refresh_token": "x", "extra": 1})),
            400,
            "validation",
        ),
    ];
    for (req, status, code) in cases {
        let (s, body, headers) = call(&app, req).await;
        assert_eq!(s.as_u16(), status, "{body}");
        assert_eq!(
            body["type"],
            format!("https://collectpro.dev/problems/{code}"),
            "{body}"
        );
        assert_eq!(headers["content-type"], "application/problem+json");
    }
    // Nothing was written: the email is still free.
    register(&app, &email).await;
    // Field errors name the field.
    let (_, body, _) = call(
        &app,
        post(
            "/auth/register",
            json!({"email": "x", "name": "", "password": "short"}),
        ),
    )
    .await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"email") && fields.contains(&"name"),
        "{body}"
    );
}

#[tokio::test]
async fn duplicate_email_in_another_case_is_refused_and_concurrent_registration_has_one_winner() {
    let app = app().await;
    let email = unique_email();
    register(&app, &email).await;
    let (status, body, _) = call(
        &app,
        post(
            "/auth/register",
            json!({"email": email.to_uppercase(), "name": "B", "password": PASSWORD}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let contested = unique_email();
    let attempts = (0..6).map(|i| {
        let email = if i % 2 == 0 {
            contested.clone()
        } else {
            contested.to_uppercase()
        };
        call(
            &app,
            post(
                "/auth/register",
                json!({"email": email, "name": "C", "password": PASSWORD}),
            ),
        )
    });
    let results = futures::future::join_all(attempts).await;
    let created = results
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::CREATED)
        .count();
    let conflicts = results
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::CONFLICT)
        .count();
    assert_eq!(
        (created, conflicts),
        (1, 5),
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn bad_tokens_are_refused_on_me() {
    let app = app().await;
    let (status, _, _) = call(&app, TestRequest::new("GET /auth/me", "/auth/me")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for token in ["garbage", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."] {
        let (status, body, _) = call(
            &app,
            TestRequest::new("GET /auth/me", "/auth/me").bearer(token),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
}

#[tokio::test]
async fn login_and_register_limits_answer_429_with_retry_after() {
    let limits = RateLimits {
        login_per_email: Limit::new(2, 60),
        ..RateLimits::off()
    };
    let app = app_with(limits).await;
    let email = unique_email();
    login(&app, &email, "whatever password").await;
    login(&app, &email, "whatever password").await;
    let (_, body, headers) = call(
        &app,
        post(
            "/auth/login",
            json!({"email": email, "password": "whatever password"}),
        ),
    )
    .await;
    assert_eq!(body["status"], 429, "{body}");
    assert!(headers.contains_key("retry-after"));
}

fn bearer_post(path: &str, token: &str, body: Value) -> TestRequest {
    post(path, body).bearer(token)
}

async fn refresh_status(app: &App, token: &str) -> StatusCode {
    call(app, post("/auth/refresh", json!({"refresh_token": token})))
        .await
        .0
}

/// `POST /auth/logout-all` ends every session of the caller (a pending user's too): every
/// refresh token of every login is refused, and the access token is retired.
#[tokio::test]
async fn logout_all_revokes_every_session() {
    let app = app().await;
    let email = unique_email();
    register(&app, &email).await;
    let (_, first) = login(&app, &email, PASSWORD).await;
    let (_, second) = login(&app, &email, PASSWORD).await;
    let access = first["access_token"].as_str().unwrap();

    let (status, _, _) = call(&app, post("/auth/logout-all", json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body, _) = call(&app, bearer_post("/auth/logout-all", access, json!({}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for pair in [&first, &second] {
        let token = pair["refresh_token"].as_str().unwrap();
        assert_eq!(refresh_status(&app, token).await, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = call(
        &app,
        TestRequest::new("GET /auth/me", "/auth/me").bearer(access),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Signing in again starts a new, working session.
    let (status, fresh) = login(&app, &email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    let token = fresh["refresh_token"].as_str().unwrap();
    assert_eq!(refresh_status(&app, token).await, StatusCode::OK);
}

#[tokio::test]
async fn changing_the_password_checks_both_and_ends_every_session() {
    let app = app().await;
    let email = unique_email();
    let user = register(&app, &email).await;
    let (_, pending) = login(&app, &email, PASSWORD).await;
    let new_password = "another quite unusual passphrase";
    let body = json!({"current_password": PASSWORD, "new_password": new_password});
    // A pending user may not (it may only sign in, read /auth/me and sign out).
    let (status, problem, _) = call(
        &app,
        bearer_post(
            "/auth/password",
            pending["access_token"].as_str().unwrap(),
            body.clone(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    let id: shared::domain::Id = user["id"].as_str().unwrap().parse().unwrap();
    let stored = app.users.get(id).await.unwrap().unwrap();
    let changes = shared::auth::users::UserChanges {
        role: Some(shared::auth::Role::Viewer),
        ..Default::default()
    };
    app.users.update(&stored, &changes).await.unwrap();
    let (_, pair) = login(&app, &email, PASSWORD).await;
    let access = pair["access_token"].as_str().unwrap();
    let refresh = pair["refresh_token"].as_str().unwrap();

    // Bad input changes nothing.
    for (bad, status, field) in [
        (
            json!({"current_password": "wrong password entirely", "new_password": new_password}),
            401,
            "current_password",
        ),
        (
            json!({"current_password": PASSWORD, "new_password": "short"}),
            400,
            "new_password",
        ),
        (
            json!({"current_password": PASSWORD, "new_password": email}),
            400,
            "new_password",
        ),
        (json!({"current_password": PASSWORD}), 400, "new_password"),
        (
            json!({"current_password": PASSWORD, "new_password": new_password, "x": 1}),
            400,
            "x",
        ),
    ] {
        let (s, problem, _) = call(&app, bearer_post("/auth/password", access, bad.clone())).await;
        assert_eq!(s.as_u16(), status, "{bad}: {problem}");
        assert!(problem.to_string().contains(field), "{bad}: {problem}");
    }
    let (status, _, _) = call(&app, post("/auth/password", body.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh_status(&app, refresh).await, StatusCode::OK);
    let (_, pair) = login(&app, &email, PASSWORD).await;
    let access = pair["access_token"].as_str().unwrap();
    let refresh = pair["refresh_token"].as_str().unwrap();

    // Wrong current passwords count like failed sign-ins; during the lock that follows the
    // answer is 423 whatever is given, the right password included.
    let wrong =
        json!({"current_password": "wrong password entirely", "new_password": new_password});
    for _ in 0..5 {
        call(&app, bearer_post("/auth/password", access, wrong.clone())).await;
    }
    for attempt in [&wrong, &body] {
        let (s, problem, headers) =
            call(&app, bearer_post("/auth/password", access, attempt.clone())).await;
        assert_eq!(s, StatusCode::LOCKED, "{problem}");
        assert!(headers.contains_key("retry-after"));
    }
    let locked = app.users.get(id).await.unwrap().unwrap();
    let unlock = shared::auth::users::UserChanges {
        unlock: true,
        ..Default::default()
    };
    app.users.update(&locked, &unlock).await.unwrap();

    let (status, problem, _) = call(&app, bearer_post("/auth/password", access, body)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{problem}");
    assert_eq!(
        refresh_status(&app, refresh).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, _) = call(
        &app,
        TestRequest::new("GET /auth/me", "/auth/me").bearer(access),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login(&app, &email, PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(login(&app, &email, new_password).await.0, StatusCode::OK);
}
