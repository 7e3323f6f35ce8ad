//! Auth and users end to end: the real `auth` and `users` binaries behind the local gateway
//! (run under `infra/stack.sh`, after `cargo build --workspace --bins`).
//!
//! Prints the login p50 through the gateway (argon2id m=19 MiB, t=2, p=1 included).

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use e2e::{unique_email, Stack, StackOptions, ADMIN_PASSWORD, PASSWORD};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The seeded admin exists once: `seed-admin` never prints the password it was given, and a
/// second run leaves the admin alone.
async fn stack() -> Stack {
    let stack = Stack::start(StackOptions::default()).await;
    assert!(
        !stack.seed_output.contains(ADMIN_PASSWORD),
        "the given password is never printed"
    );
    let again = stack.seed_admin_again().await;
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("exists"));
    stack
}

#[tokio::test]
async fn auth_and_users_end_to_end() {
    let s = stack().await;
    let admin = s.token("ADMIN@collectpro.local", ADMIN_PASSWORD).await;

    // Login p50 through the gateway (warm instance first).
    let mut times = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        let (status, _) = s.login("admin@collectpro.local", ADMIN_PASSWORD).await;
        times.push(started.elapsed());
        assert_eq!(status, StatusCode::OK);
    }
    times.sort();
    println!(
        "FIGURE login through the gateway: p50 {:.1} ms, min {:.1} ms, max {:.1} ms (n={}, argon2id m=19456 KiB t=2 p=1)",
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times[0].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0,
        times.len()
    );

    // Register, then the admin promotes the user to each role in turn: the RBAC matrix
    // over every auth and users route.
    let user_email = unique_email();
    let (status, user) = s
        .send(
            "POST",
            "/auth/register",
            None,
            Some(json!({"email": user_email, "name": "E2E", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_str().unwrap().to_owned();
    for role in ["viewer", "agent", "manager", "admin"] {
        let (status, body) = s
            .send(
                "PATCH",
                &format!("/users/{id}"),
                Some(&admin),
                Some(json!({"role": role})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, pair) = s.login(&user_email, PASSWORD).await;
        let token = pair["access_token"].as_str().unwrap().to_owned();
        let refresh = pair["refresh_token"].as_str().unwrap().to_owned();
        let admin_only = [
            s.send("GET", "/users", Some(&token), None).await.0,
            s.send(
                "POST",
                "/users",
                Some(&token),
                Some(
                    json!({"email": unique_email(), "name": "N", "password": PASSWORD, "role": "viewer"}),
                ),
            )
            .await
            .0,
            s.send(
                "PATCH",
                &format!("/users/{id}"),
                Some(&token),
                Some(json!({"name": "E2E"})),
            )
            .await
            .0,
        ];
        for status in admin_only {
            if role == "admin" {
                assert!(status.is_success(), "{role}: {status}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role}");
            }
        }
        let (status, me) = s.send("GET", "/auth/me", Some(&token), None).await;
        assert_eq!((status, me["role"].as_str()), (StatusCode::OK, Some(role)));
        let (status, _) = s
            .send(
                "POST",
                "/auth/logout",
                Some(&token),
                Some(json!({"refresh_token": refresh})),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{role}");
    }
    // Anonymous: signed-in routes are 401.
    for (method, path) in [
        ("GET", "/auth/me"),
        ("GET", "/users"),
        ("POST", "/auth/logout"),
    ] {
        let (status, body) = s.send(method, path, None, Some(json!({}))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
    }

    // Tokens: tampered, alg none, wrong key, garbage.
    let parts: Vec<&str> = admin.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["role"] = json!("admin");
    payload["sub"] = json!(id);
    let forged_payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let wrong_sig = URL_SAFE_NO_PAD.encode([7_u8; 32]);
    for token in [
        format!("{}.{forged_payload}.{}", parts[0], parts[2]),
        format!("{none_header}.{forged_payload}."),
        format!("{}.{}.{wrong_sig}", parts[0], parts[1]),
        "garbage".to_owned(),
    ] {
        let (status, body) = s.send("GET", "/auth/me", Some(&token), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["type"], "https://collectpro.dev/problems/unauthorized");
    }

    // Disable the user: their token stops working at once on a fresh read (the cache of a
    // warm instance holds at most AUTH_CACHE_SECONDS), and their refresh fails.
    let (_, pair) = s.login(&user_email, PASSWORD).await;
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    let (status, _) = s
        .send(
            "PATCH",
            &format!("/users/{id}"),
            Some(&admin),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .send(
            "POST",
            "/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (status, _) = s
        .send(
            "GET",
            "/auth/me",
            Some(pair["access_token"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Unknown email vs wrong password: identical.
    let a = s.login(&unique_email(), "some wrong password").await;
    let b = s
        .login("admin@collectpro.local", "some wrong password")
        .await;
    assert_eq!(a, b);
    assert_eq!(a.0, StatusCode::UNAUTHORIZED);

    // A body over API Gateway's limit and garbage JSON.
    let big = s
        .http
        .post(format!("{}/auth/register", s.base))
        .header("content-type", "application/json")
        .body(vec![b' '; 10 * 1024 * 1024 + 16])
        .send()
        .await
        .unwrap();
    assert!(big.status().is_client_error(), "{}", big.status());
    let (status, _) = s
        .send("POST", "/auth/login", None, Some(json!("not an object")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    s.gateway.shutdown().await;
}

async fn refresh(s: &Stack, token: &str) -> StatusCode {
    let body = json!({"refresh_token": token});
    s.send("POST", "/auth/refresh", None, Some(body)).await.0
}

/// The access holes of issue 13 through the gateway and the real binaries: a registered user
/// is `pending` and reads nothing anywhere (other functions answer 403, the WebSocket refuses
/// it) until an admin grants a role; disable then re-enable leaves the old refresh token
/// dead; logout-all, an admin's sessions/revoke and a password change end every session.
#[tokio::test]
async fn pending_users_and_ending_sessions_end_to_end() {
    let s = Stack::start(StackOptions::default()).await;
    let admin = s.admin().to_owned();
    let email = unique_email();
    let (status, user) = s
        .send(
            "POST",
            "/auth/register",
            None,
            Some(json!({"email": email, "name": "Stranger", "password": PASSWORD})),
        )
        .await;
    assert_eq!(
        (status, user["role"].as_str()),
        (StatusCode::CREATED, Some("pending"))
    );
    let id = user["id"].as_str().unwrap().to_owned();
    let pending = s.token(&email, PASSWORD).await;
    for (method, path) in [
        ("GET", "/accounts"),
        ("GET", "/dashboard/summary"),
        ("GET", "/bulk/jobs"),
        ("POST", "/activities/batch"),
    ] {
        let body = (method == "POST").then(|| json!({"account_ids": []}));
        let (status, problem) = s.send(method, path, Some(&pending), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {problem}");
    }
    let (status, me) = s.send("GET", "/auth/me", Some(&pending), None).await;
    assert_eq!(
        (status, me["role"].as_str()),
        (StatusCode::OK, Some("pending"))
    );
    match s.subscribe(&pending, &["payments"]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403)
        }
        Err(other) => panic!("expected an HTTP refusal, got {other:?}"),
        Ok(_) => panic!("a pending user's upgrade was accepted"),
    }

    // The admin grants a role: the pending session ends with it.
    let (_, pending_pair) = s.login(&email, PASSWORD).await;
    let (status, body) = s
        .send(
            "PATCH",
            &format!("/users/{id}"),
            Some(&admin),
            Some(json!({"role": "agent"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        refresh(&s, pending_pair["refresh_token"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, accounts) = s
        .send(
            "GET",
            "/accounts",
            Some(&s.token(&email, PASSWORD).await),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{accounts}");

    // Disable, re-enable: the session from before stays dead.
    let (_, before) = s.login(&email, PASSWORD).await;
    for disabled in [true, false] {
        let (status, body) = s
            .send(
                "PATCH",
                &format!("/users/{id}"),
                Some(&admin),
                Some(json!({"disabled": disabled})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(
        refresh(&s, before["refresh_token"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED
    );

    // logout-all, then an admin's revoke: each ends every session.
    let (_, one) = s.login(&email, PASSWORD).await;
    let (_, two) = s.login(&email, PASSWORD).await;
    let access = one["access_token"].as_str().unwrap();
    let (status, _) = s.send("POST", "/auth/logout-all", Some(access), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for pair in [&one, &two] {
        assert_eq!(
            refresh(&s, pair["refresh_token"].as_str().unwrap()).await,
            StatusCode::UNAUTHORIZED
        );
    }
    let (_, three) = s.login(&email, PASSWORD).await;
    let path = format!("/users/{id}/sessions/revoke");
    let agent = three["access_token"].as_str().unwrap();
    assert_eq!(
        s.send("POST", &path, Some(agent), None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.send("POST", &path, Some(&admin), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        refresh(&s, three["refresh_token"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED
    );

    // A password change ends every session and only the new password signs in.
    let (_, four) = s.login(&email, PASSWORD).await;
    let new_password = "a different and unusual passphrase";
    let (status, body) = s
        .send(
            "POST",
            "/auth/password",
            Some(four["access_token"].as_str().unwrap()),
            Some(json!({"current_password": PASSWORD, "new_password": new_password})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        refresh(&s, four["refresh_token"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(s.login(&email, PASSWORD).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.login(&email, new_password).await.0, StatusCode::OK);
    s.gateway.shutdown().await;
}
