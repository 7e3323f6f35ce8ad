//! The users handlers against DynamoDB Local (run under `infra/stack.sh`).

use http::StatusCode;
use serde_json::{json, Value};
use shared::auth::refresh::Refreshed;
use shared::auth::users::{NewUser, UserItem, UserRepo};
use shared::auth::Role;
use shared::rate_limit::RateLimits;
use shared::testing::{body_json, TestRequest};
use users::{handle, App};

const PASSWORD: &str = "a long and unusual passphrase";

struct Fixture {
    app: App,
    repo: UserRepo,
}

async fn fixture() -> Fixture {
    let app = App::new(shared::testing::platform(RateLimits::off()).await, 3600).unwrap();
    let repo = UserRepo::new(
        app.platform.clients.dynamodb.clone(),
        app.platform.config.tables.users.clone(),
    );
    Fixture { app, repo }
}

impl Fixture {
    /// A stored user (the hash is a placeholder: these tests never log in).
    async fn user(&self, role: Role) -> UserItem {
        self.repo
            .create(NewUser {
                email: format!(
                    "u-{}@example.com",
                    ulid::Ulid::new().to_string().to_lowercase()
                ),
                name: format!("{role} user"),
                role,
                password_hash: "$argon2id$placeholder".into(),
            })
            .await
            .unwrap()
    }

    fn token(&self, user: &UserItem) -> String {
        self.app
            .platform
            .authenticator
            .tokens()
            .issue(user.id, user.role, user.token_version)
            .unwrap()
            .0
    }

    async fn call(&self, req: TestRequest) -> (StatusCode, Value) {
        let response = shared::http::serve(req.build(), |req| handle(&self.app, req)).await;
        (response.status(), body_json(&response))
    }
}

fn list() -> TestRequest {
    TestRequest::new("GET /users", "/users")
}

fn patch(id: &str, body: Value) -> TestRequest {
    TestRequest::new("PATCH /users/{id}", &format!("/users/{id}"))
        .path_param("id", id)
        .json(&body)
}

#[tokio::test]
async fn rbac_matrix_only_admins_manage_users() {
    let f = fixture().await;
    let target = f.user(Role::Viewer).await;
    let id = target.id.to_string();
    let routes = || {
        vec![
            list(),
            TestRequest::new("POST /users", "/users").json(&json!({
                "email": format!("n-{}@example.com", ulid::Ulid::new().to_string().to_lowercase()),
                "name": "New", "password": PASSWORD, "role": "agent"})),
            patch(&id, json!({"name": "Renamed"})),
        ]
    };
    for req in routes() {
        let (status, _) = f.call(req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "anonymous");
    }
    for role in Role::ALL {
        let caller = f.user(role).await;
        let token = f.token(&caller);
        for req in routes() {
            let (status, body) = f.call(req.bearer(&token)).await;
            if role == Role::Admin {
                assert!(status.is_success(), "{role}: {status} {body}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role}: {body}");
            }
        }
    }
}

#[tokio::test]
async fn the_list_pages_with_signed_cursors() {
    let f = fixture().await;
    let admin = f.user(Role::Admin).await;
    for _ in 0..4 {
        f.user(Role::Agent).await;
    }
    let token = f.token(&admin);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".to_owned(),
        };
        let (status, page) = f.call(list().query(&query).bearer(&token)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for item in page["items"].as_array().unwrap() {
            assert!(item.get("password_hash").is_none());
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");

    for query in [
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=forged.cursor",
        "sort=name",
    ] {
        let (status, body) = f.call(list().query(query).bearer(&token)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
    }
}

#[tokio::test]
async fn disabling_a_user_retires_their_tokens_and_the_last_admin_stays() {
    let f = fixture().await;
    let admin = f.user(Role::Admin).await;
    let token = f.token(&admin);
    let agent = f.user(Role::Agent).await;
    let agent_token = f.token(&agent);
    // The agent's token works for authentication until the agent is disabled.
    let req = TestRequest::new("GET /users", "/users")
        .bearer(&agent_token)
        .build();
    assert!(f
        .app
        .platform
        .authenticator
        .authenticate(&req)
        .await
        .is_ok());
    let (status, body) = f
        .call(patch(&agent.id.to_string(), json!({"disabled": true})).bearer(&token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], true);
    let req = TestRequest::new("GET /users", "/users")
        .bearer(&agent_token)
        .build();
    assert_eq!(
        f.app
            .platform
            .authenticator
            .authenticate(&req)
            .await
            .unwrap_err()
            .status,
        StatusCode::UNAUTHORIZED
    );

    // The only admin cannot demote or disable itself.
    for change in [
        json!({"role": "manager"}),
        json!({"role": "pending"}),
        json!({"disabled": true}),
    ] {
        let (status, body) = f
            .call(patch(&admin.id.to_string(), change).bearer(&token))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["type"], "https://collectpro.dev/problems/last-admin");
    }
    // With a second admin, one may go.
    let (status, _) = f
        .call(
            patch(
                &agent.id.to_string(),
                json!({"role": "admin", "disabled": false}),
            )
            .bearer(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = f
        .call(patch(&admin.id.to_string(), json!({"role": "manager"})).bearer(&token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn concurrent_demotions_of_two_admins_leave_one() {
    let f = fixture().await;
    let a = f.user(Role::Admin).await;
    let b = f.user(Role::Admin).await;
    let (ta, tb) = (f.token(&a), f.token(&b));
    let (ra, rb) = tokio::join!(
        f.call(patch(&b.id.to_string(), json!({"role": "viewer"})).bearer(&ta)),
        f.call(patch(&a.id.to_string(), json!({"role": "viewer"})).bearer(&tb)),
    );
    let ok = [ra.0, rb.0].iter().filter(|s| s.is_success()).count();
    assert!(ok <= 1, "{ra:?} {rb:?}");
    let remaining = futures::future::join_all([f.repo.get(a.id), f.repo.get(b.id)]).await;
    let admins = remaining
        .into_iter()
        .filter(|u| u.as_ref().unwrap().as_ref().unwrap().role == Role::Admin)
        .count();
    assert!(admins >= 1);
}

#[tokio::test]
async fn unlock_if_match_and_bad_patches() {
    let f = fixture().await;
    let admin = f.user(Role::Admin).await;
    let token = f.token(&admin);
    let user = f.user(Role::Viewer).await;
    let lock_until = shared::domain::Timestamp::now().plus(time::Duration::minutes(15));
    for _ in 0..5 {
        f.repo
            .record_failed_login(user.id, 5, lock_until)
            .await
            .unwrap();
    }
    let locked = f.repo.get(user.id).await.unwrap().unwrap();
    assert!(locked.locked_until.is_some());
    let id = user.id.to_string();
    let (status, _) = f
        .call(
            patch(&id, json!({"unlock": true}))
                .header("if-match", "\"999\"")
                .bearer(&token),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (status, body) = f
        .call(
            patch(&id, json!({"unlock": true}))
                .header("if-match", &format!("\"{}\"", locked.version))
                .bearer(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["locked_until"].is_null());

    for (body, status) in [
        (json!({}), 400),
        (json!({"role": "root"}), 400),
        (json!({"name": "x", "password": "y"}), 400),
        (json!({"name": "a\nb"}), 400),
    ] {
        let (s, b) = f.call(patch(&id, body).bearer(&token)).await;
        assert_eq!(s.as_u16(), status, "{b}");
    }
    let (status, _) = f
        .call(patch(&ulid::Ulid::new().to_string(), json!({"name": "x"})).bearer(&token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = f
        .call(patch("not-an-id", json!({"name": "x"})).bearer(&token))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

fn revoke(id: &str) -> TestRequest {
    TestRequest::new(
        "POST /users/{id}/sessions/revoke",
        &format!("/users/{id}/sessions/revoke"),
    )
    .path_param("id", id)
}

/// Disable then re-enable: the refresh token of the session before is dead for good (it
/// used to come back to life with the user), and its family shows as revoked.
#[tokio::test]
async fn disable_then_enable_leaves_the_old_refresh_token_refused() {
    let f = fixture().await;
    let admin = f.token(&f.user(Role::Admin).await);
    let agent = f.user(Role::Agent).await;
    let before = f.app.refresh.issue(&agent).await.unwrap();
    let id = agent.id.to_string();
    for disabled in [true, false] {
        let (status, body) = f
            .call(patch(&id, json!({"disabled": disabled})).bearer(&admin))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert!(matches!(
        f.app.refresh.refresh(&f.repo, &before).await.unwrap(),
        Refreshed::Invalid
    ));
    let stored = f.app.refresh.find(&before).await.unwrap().unwrap();
    assert_eq!(stored.status, "revoked");
    // A session started after the re-enable works.
    let agent = f.repo.get(agent.id).await.unwrap().unwrap();
    let after = f.app.refresh.issue(&agent).await.unwrap();
    assert!(matches!(
        f.app.refresh.refresh(&f.repo, &after).await.unwrap(),
        Refreshed::Rotated { .. }
    ));
}

/// A role change ends the sessions too (a demoted manager keeps no manager session); a
/// pending user gets its role the same way.
#[tokio::test]
async fn a_role_change_revokes_sessions_and_grants_a_pending_user_its_role() {
    let f = fixture().await;
    let admin = f.token(&f.user(Role::Admin).await);
    let pending = f.user(Role::Pending).await;
    let session = f.app.refresh.issue(&pending).await.unwrap();
    let old_access = f.token(&pending);
    let (status, listed) = f.call(list().query("limit=100").bearer(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["id"] == pending.id.to_string() && u["role"] == "pending"));
    let (status, body) = f
        .call(patch(&pending.id.to_string(), json!({"role": "agent"})).bearer(&admin))
        .await;
    assert_eq!(
        (status, body["role"].as_str()),
        (StatusCode::OK, Some("agent"))
    );
    assert!(matches!(
        f.app.refresh.refresh(&f.repo, &session).await.unwrap(),
        Refreshed::Invalid
    ));
    let req = list().bearer(&old_access).build();
    assert_eq!(
        f.app
            .platform
            .authenticator
            .authenticate(&req)
            .await
            .unwrap_err()
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_admin_revokes_every_session_of_a_user() {
    let f = fixture().await;
    let admin = f.user(Role::Admin).await;
    let admin_token = f.token(&admin);
    let viewer = f.user(Role::Viewer).await;
    let sessions = [
        f.app.refresh.issue(&viewer).await.unwrap(),
        f.app.refresh.issue(&viewer).await.unwrap(),
    ];
    let access = f.token(&viewer);
    let id = viewer.id.to_string();

    // Only admins; a bad or unknown id changes nothing.
    let (status, body) = f.call(revoke(&id).bearer(&access)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = f.call(revoke(&id)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = f.call(revoke("not-an-id").bearer(&admin_token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = f
        .call(revoke(&ulid::Ulid::new().to_string()).bearer(&admin_token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let unchanged = f.repo.get(viewer.id).await.unwrap().unwrap();
    assert_eq!(unchanged.token_version, viewer.token_version);

    let response = shared::http::serve(revoke(&id).bearer(&admin_token).build(), |req| {
        handle(&f.app, req)
    })
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for session in &sessions {
        assert!(matches!(
            f.app.refresh.refresh(&f.repo, session).await.unwrap(),
            Refreshed::Invalid
        ));
    }
    let req = list().bearer(&access).build();
    assert!(f
        .app
        .platform
        .authenticator
        .authenticate(&req)
        .await
        .is_err());
    // The user is otherwise unchanged; its ETag moved (a PATCH read before must re-read).
    let after = f.repo.get(viewer.id).await.unwrap().unwrap();
    assert_eq!((after.role, after.disabled), (viewer.role, viewer.disabled));
    assert_eq!(after.token_version, viewer.token_version + 1);
    assert_eq!(after.version, viewer.version + 1);
}
