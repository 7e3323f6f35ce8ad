//! The foundation through the local gateway, as `make run` serves it: liveness, readiness,
//! the OpenAPI document and its viewer, CORS, and API Gateway's 404 for an unknown route.

use e2e::{Stack, StackOptions};
use reqwest::StatusCode;

#[tokio::test]
async fn health_docs_cors_and_unknown_routes() {
    let stack = Stack::start(StackOptions::default()).await;

    let (status, body) = stack.send("GET", "/health", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");

    let (status, body) = stack.send("GET", "/health/ready", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["status"] == "up"));

    let (status, document) = stack.send("GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(document["paths"]["/health/ready"]["get"].is_object());

    let page = stack
        .request("GET", "/docs", None, None)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("swagger-ui-bundle.js"));

    let unknown = stack
        .request("GET", "/no/such/route", None, None)
        .send()
        .await
        .unwrap();
    // API Gateway's own answer to a path no route matches (as on AWS).
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.headers()["content-type"], "application/json");
    assert_eq!(
        unknown.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"message": "Not Found"})
    );

    // CORS preflight from an allowed origin (template default) and from another.
    let allowed = stack
        .request("OPTIONS", "/health", None, None)
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let foreign = stack
        .request("OPTIONS", "/health", None, None)
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}
