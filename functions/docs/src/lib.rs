//! The API's documentation.
//!
//! - `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers' own
//!   `#[utoipa::path]` annotations: each function crate exports an `ApiDoc`, merged here, so
//!   the document cannot drift from the code. A test checks it against `template.yaml`.
//! - `GET /docs` and `GET /docs/{asset}`: Swagger UI. Its JavaScript and CSS are compiled
//!   into the binary from the `swagger-ui-dist` crate (which carries the npm package's files),
//!   so the page loads nothing from any CDN.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use shared::http::{route_key, unknown_route, HttpResult};
use shared::ApiError;
use tower::ServiceExt;
use utoipa::openapi::OpenApi as OpenApiDocument;
use utoipa::OpenApi;

/// The document's frame: title, version and the tags the functions use.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "CollectPro API",
        description = "Debt-collections platform: accounts, payments, activities, bulk updates, realtime.",
        license(name = "Apache-2.0")
    ),
    paths(openapi_document, viewer_page, viewer_asset),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "docs", description = "This document and its viewer")
    )
)]
struct Frame;

/// The OpenAPI document of every function, merged.
pub fn openapi() -> OpenApiDocument {
    let mut document = Frame::openapi();
    document.merge(health::ApiDoc::openapi());
    document.merge(auth::ApiDoc::openapi());
    document.merge(users::ApiDoc::openapi());
    document.merge(accounts::ApiDoc::openapi());
    document.merge(payments::ApiDoc::openapi());
    document.merge(activities::ApiDoc::openapi());
    document.merge(bulk_api::ApiDoc::openapi());
    document.merge(dashboard::ApiDoc::openapi());
    document
}

/// The rendered document and the viewer's routes, built once per cold start.
pub struct App {
    openapi_json: String,
    viewer: axum::Router,
}

impl App {
    pub fn new() -> Result<Self, serde_json::Error> {
        let openapi_json = openapi().to_json()?;
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
        "GET /docs" => viewer_page(app, req).await,
        "GET /docs/{asset}" => viewer_asset(app, req).await,
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

/// Swagger UI, reading `/openapi.json`.
#[utoipa::path(get, path = "/docs", tag = "docs",
    responses((status = 200, description = "The viewer page", content_type = "text/html")))]
async fn viewer_page(app: &App, req: Request) -> HttpResult {
    viewer(app, req).await
}

/// The viewer's script and style sheet, compiled into the function.
#[utoipa::path(get, path = "/docs/{asset}", tag = "docs",
    params(("asset" = String, Path, description = "e.g. swagger-ui-bundle.js, swagger-ui.css")),
    responses(
        (status = 200, description = "The asset"),
        (status = 404, description = "No such asset", body = shared::error::Problem, content_type = "application/problem+json")))]
async fn viewer_asset(app: &App, req: Request) -> HttpResult {
    viewer(app, req).await
}

/// Serves a viewer page or asset through the `swagger-ui-dist` router, in-process.
async fn viewer(app: &App, req: Request) -> HttpResult {
    let (parts, body) = req.into_parts();
    let request = http::Request::from_parts(parts, axum::body::Body::from(body.to_vec()));
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
