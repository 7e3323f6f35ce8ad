//! The docs handler serves the document and a viewer whose assets are in the binary.

use http::StatusCode;
use serde_json::Value;

fn request(route_key: &str, raw_path: &str) -> lambda_http::Request {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events/apigw-http-health.json");
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    event["routeKey"] = route_key.into();
    event["requestContext"]["routeKey"] = route_key.into();
    event["rawPath"] = raw_path.into();
    event["requestContext"]["http"]["path"] = raw_path.into();
    if let Some(asset) = raw_path.strip_prefix("/docs/") {
        event["pathParameters"] = serde_json::json!({ "asset": asset });
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fn text(response: &lambda_http::Response<lambda_http::Body>) -> String {
    String::from_utf8(response.body().to_vec()).unwrap()
}

#[tokio::test]
async fn serves_the_document_the_page_and_its_assets() {
    let app = docs::App::new().unwrap();

    let document = docs::handle(&app, request("GET /openapi.json", "/openapi.json"))
        .await
        .unwrap();
    assert_eq!(document.status(), StatusCode::OK);
    let parsed: Value = serde_json::from_str(&text(&document)).unwrap();
    assert!(parsed["paths"]["/health"].is_object());

    let page = docs::handle(&app, request("GET /docs", "/docs"))
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = text(&page);
    // Relative URLs only: the page works on plain-HTTP `make run` and behind a stage prefix
    // (the request event says https://localhost, which once went into absolute URLs).
    assert!(
        html.contains(r#"src="docs/swagger-ui-bundle.js""#),
        "{html}"
    );
    assert!(html.contains(r#"href="docs/swagger-ui.css""#), "{html}");
    assert!(html.contains(r#""openapi.json""#), "{html}");
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "{html}"
    );
    assert!(
        !html.contains("cdn"),
        "the page must load nothing from a CDN"
    );

    let script = docs::handle(
        &app,
        request("GET /docs/{asset}", "/docs/swagger-ui-bundle.js"),
    )
    .await
    .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(text(&script).len() > 100_000, "the bundle is compiled in");
}

#[tokio::test]
async fn an_unknown_asset_is_a_problem_404() {
    let app = docs::App::new().unwrap();
    let err = docs::handle(&app, request("GET /docs/{asset}", "/docs/nope.js"))
        .await
        .unwrap_err();
    assert_eq!(err.status, StatusCode::NOT_FOUND);
}
