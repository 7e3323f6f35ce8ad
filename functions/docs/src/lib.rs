//! The API's documentation.
//!
//! - `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' own
//!   `#[utoipa::path]` annotations: each function crate exports an `ApiDoc`, merged here, so
//!   the document cannot drift from the code. A test checks it against `template.yaml`.
//! - `GET /docs` and `GET /docs/{asset}`: Swagger UI. Its JavaScript and CSS are compiled
//!   into the binary from the `swagger-ui-dist` crate (which carries the npm package's files),
//!   so the page loads nothing from any CDN. The page is our own ([`VIEWER_PAGE`]): the
//!   crate's page names its assets with the request's absolute URI, which `lambda_http` builds
//!   as `https://<host>/docs`, so on plain-HTTP `make run` the browser refused every asset
//!   and the page stayed blank. Ours uses relative URLs, which resolve against whatever
//!   origin and stage prefix the browser used (`http://localhost:3000/docs`,
//!   `https://<api>.execute-api.<region>.amazonaws.com/<stage>/docs`).
//!
//! The responses every operation shares (problem+json errors, 401/403 of signed-in routes,
//! 429/500/503, API Gateway's own answers) are added to the merged document in one place:
//! [`common_responses`].

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use shared::http::{route_key, unknown_route, HttpResult};
use shared::ApiError;
use tower::ServiceExt;
use utoipa::OpenApi;

pub mod common_responses;

/// The document's frame: title, version and the tags the functions use.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "CollectPro API",
        description = "Debt-collections platform: accounts, payments, activities, bulk updates, realtime.",
        license(name = "Apache-2.0")
    ),
    paths(openapi_document, viewer_page, viewer_asset),
    // Schema-only types the functions name in `value_type`s of query parameters, which
    // utoipa does not collect by itself.
    components(schemas(shared::domain::Id, shared::domain::PageLimit, shared::domain::Amount, shared::domain::AmountOrZero, accounts::SortName)),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "docs", description = "This document and its viewer")
    )
)]
struct Frame;

/// The OpenAPI document of every function, merged, with the responses every operation
/// shares added ([`common_responses::complete`]).
pub fn openapi() -> Result<serde_json::Value, serde_json::Error> {
    let mut document = Frame::openapi();
    document.merge(health::ApiDoc::openapi());
    document.merge(auth::ApiDoc::openapi());
    document.merge(users::ApiDoc::openapi());
    document.merge(accounts::ApiDoc::openapi());
    document.merge(payments::ApiDoc::openapi());
    document.merge(activities::ApiDoc::openapi());
    document.merge(bulk_api::ApiDoc::openapi());
    document.merge(dashboard::ApiDoc::openapi());
    document.merge(imports::ApiDoc::openapi());
    document.merge(audit::ApiDoc::openapi());
    let mut document = serde_json::to_value(document)?;
    common_responses::complete(&mut document);
    Ok(document)
}

/// The viewer page. Every URL in it is relative (see the module docs): `docs/...` and
/// `openapi.json` resolve next to `/docs`, with any stage prefix kept.
pub const VIEWER_PAGE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>CollectPro API</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>
  window.onload = function () {
    window.ui = SwaggerUIBundle({
      url: new URL("openapi.json", document.baseURI).href,
      dom_id: "#swagger-ui"
    });
  };
</script>
</body>
</html>
"##;

/// The rendered document and the viewer's routes, built once per cold start.
pub struct App {
    openapi_json: String,
    viewer: axum::Router,
}

impl App {
    pub fn new() -> Result<Self, serde_json::Error> {
        let openapi_json = serde_json::to_string(&openapi()?)?;
        let viewer = swagger_ui_dist::generate_routes(swagger_ui_dist::ApiDefinition {
            uri_prefix: "/docs",
            api_definition: swagger_ui_dist::OpenApiSource::Uri("/openapi.json"),
            title: Some("CollectPro API"),
        });
        Ok(Self {
            openapi_json,
            viewer,
        })
    }
}

pub async fn handle(app: &App, req: Request) -> HttpResult {
    match route_key(&req).as_str() {
        "GET /openapi.json" => openapi_document(app),
        "GET /docs" => viewer_page(),
        "GET /docs/{asset}" => viewer_asset(app, &req).await,
        other => Err(unknown_route(other)),
    }
}

/// The OpenAPI 3.1 document of the whole API.
#[utoipa::path(get, path = "/openapi.json", tag = "docs",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
fn openapi_document(app: &App) -> HttpResult {
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "public, max-age=300")
        .body(Body::from(app.openapi_json.clone()))
        .map_err(ApiError::internal)
}

/// Swagger UI, reading `openapi.json`.
#[utoipa::path(get, path = "/docs", tag = "docs",
    responses((status = 200, description = "The viewer page", content_type = "text/html")))]
fn viewer_page() -> HttpResult {
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(http::header::CACHE_CONTROL, "public, max-age=300")
        .body(Body::from(VIEWER_PAGE))
        .map_err(ApiError::internal)
}

/// The viewer's script and style sheet (and their source maps), compiled into the function.
#[utoipa::path(get, path = "/docs/{asset}", tag = "docs",
    params(("asset" = String, Path, description = "e.g. swagger-ui-bundle.js, swagger-ui.css")),
    responses(
        (status = 200, description = "The asset", content(
            ("text/javascript"), ("text/css"), ("application/json"), ("text/html"))),
        (status = 404, description = "No such asset", body = shared::error::Problem)))]
async fn viewer_asset(app: &App, req: &Request) -> HttpResult {
    // The asset is named by the path parameter, not the request path, which carries the
    // stage prefix behind a named API Gateway stage.
    let asset: String = shared::http::path_param(req, "asset")?;
    let request = http::Request::get(format!("/docs/{asset}"))
        .body(axum::body::Body::empty())
        .map_err(|_| ApiError::not_found("no such documentation asset"))?;
    let response = app
        .viewer
        .clone()
        .oneshot(request)
        .await
        .map_err(ApiError::internal)?;
    if response.status() == StatusCode::NOT_FOUND {
        return Err(ApiError::not_found("no such documentation asset"));
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(ApiError::internal)?;
    let body = match String::from_utf8(bytes.to_vec()) {
        Ok(text) => Body::Text(text),
        Err(binary) => Body::Binary(binary.into_bytes()),
    };
    let mut response = Response::from_parts(parts, body);
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(response)
}
