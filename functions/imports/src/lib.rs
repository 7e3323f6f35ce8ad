//! Placement imports: `POST /imports`, `GET /imports/{id}`, `GET /imports/{id}/errors`
//! (admin, manager; a manager sees only its own imports).
//!
//! `POST /imports` checks the declared size and the column mapping, writes the import
//! (`awaiting_upload`) and answers `201` with a presigned S3 `PUT` URL: the client uploads
//! the file straight to the Imports bucket, never through API Gateway (its 10 MB payload
//! limit, and its cost per byte). The URL signs `Content-Length`, so S3 refuses any other
//! size, and expires after `shared::imports::UPLOAD_URL_SECONDS`. S3's `ObjectCreated`
//! notification reaches the imports queue, and `importer` creates the accounts (see
//! `shared::imports` for how each row is created exactly once).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use http::header::{ACCEPT, CONTENT_DISPOSITION, CONTENT_TYPE, LOCATION};
use http::{HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use shared::auth::{authorize, Action, Caller, Scope};
use shared::domain::{Id, Timestamp};
use shared::dynamo::attributes::StringKey;
use shared::http::{
    header, json, page_limit, path_param, route_key, unknown_route, HttpResult, Validation,
    MAX_PAGE_LIMIT,
};
use shared::imports::keys::object_key;
use shared::imports::{
    Counts, Field, Import, ImportMode, ImportState, ImportStore, RowError, RowReason,
    MAX_FILE_BYTES, UPLOAD_URL_SECONDS,
};
use shared::platform::{InitError, Platform};
use shared::ApiError;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// The variable naming the Imports bucket.
pub const BUCKET_VARIABLE: &str = "IMPORTS_BUCKET";

/// The shared platform, the import store and the S3 client that signs upload URLs, built
/// once per cold start.
pub struct App {
    pub platform: Platform,
    pub store: ImportStore,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
}

impl App {
    pub fn new(platform: Platform, s3: aws_sdk_s3::Client, bucket: String) -> Self {
        let tables = &platform.config.tables;
        Self {
            store: ImportStore::new(
                platform.clients.dynamodb.clone(),
                tables.jobs.clone(),
                tables.accounts.clone(),
            ),
            s3,
            bucket,
            platform,
        }
    }

    pub async fn from_env() -> Result<Self, InitError> {
        let bucket = shared::config::required(BUCKET_VARIABLE)?;
        let sdk = shared::clients::sdk_config().await;
        let platform = Platform::from_env(|tables| &tables.jobs).await?;
        Ok(Self::new(platform, aws_sdk_s3::Client::new(&sdk), bucket))
    }
}

/// The HTTP API of this function, merged into `/openapi.json` by the docs function.
#[derive(OpenApi)]
#[openapi(
    paths(create_import, list_imports, get_import, list_errors),
    components(schemas(CreateImportBody, Created, Upload, Import, ImportMode, ImportState, Counts, Field, RowError, RowReason, RowPage, ImportPage)),
    tags((name = "imports", description = "Placement imports: CSV files of accounts, uploaded to S3"))
)]
pub struct ApiDoc;

/// Authenticates the caller and routes the request.
pub async fn handle(app: &App, req: Request) -> HttpResult {
    let caller = app.platform.authenticator.authenticate(&req).await?;
    dispatch(app, &caller, req).await
}

/// Routes a request of an authenticated caller.
pub async fn dispatch(app: &App, caller: &Caller, req: Request) -> HttpResult {
    match route_key(&req).as_str() {
        "POST /imports" => create_import(app, caller, &req).await,
        "GET /imports" => list_imports(app, caller, &req).await,
        "GET /imports/{id}" => get_import(app, caller, &req).await,
        "GET /imports/{id}/errors" => list_errors(app, caller, &req).await,
        other => Err(unknown_route(other)),
    }
}

// ------------------------------------------------------------------ create

/// A placement file to upload.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateImportBody {
    /// The file's exact size in bytes, 1 to 268,435,456 (256 MiB): the upload URL accepts
    /// that size only.
    #[schema(minimum = 1, maximum = 268_435_456)]
    pub size: u64,
    /// The file's name, for people (at most 200 characters).
    #[serde(default)]
    pub file_name: Option<String>,
    /// File column name → field, for files whose columns are not named after the fields
    /// (`{"Acct No": "reference"}`). Other columns must be named after a field.
    #[serde(default)]
    pub column_mapping: BTreeMap<String, String>,
    /// `create` (default): a row whose reference another account has is reported as
    /// `duplicate`. `upsert`: that account takes the row's debtor details, due date, tags and
    /// agent (never its balance, currency or status).
    #[serde(default)]
    #[schema(value_type = Option<ImportMode>)]
    pub mode: Option<String>,
}

/// Where and how to upload the file.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Upload {
    /// `PUT` the file's bytes here, with exactly these headers.
    pub url: String,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    pub expires_at: Timestamp,
}

/// `201`: the import, waiting for its file.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Created {
    pub import: Import,
    pub upload: Upload,
}

/// Validates a create body into the new import of `created_by` (`awaiting_upload`).
pub fn new_import(
    body: CreateImportBody,
    created_by: Id,
    now: Timestamp,
) -> Result<Import, ApiError> {
    let mut v = Validation::new();
    let mode = match body.mode.as_deref() {
        None => Some(ImportMode::default()),
        Some(mode) => v.check("mode", mode.parse::<ImportMode>()),
    };
    if body.size == 0 {
        v.add("size", "the file is empty: nothing to import");
    } else if body.size > MAX_FILE_BYTES {
        v.add(
            "size",
            format!("at most {MAX_FILE_BYTES} bytes (256 MiB); split the file"),
        );
    }
    let file_name = body.file_name.unwrap_or_default().trim().to_owned();
    if file_name.chars().count() > 200 || file_name.chars().any(char::is_control) {
        v.add("file_name", "at most 200 characters, no control characters");
    }
    let mut mapping = BTreeMap::new();
    for (column, field) in body.column_mapping {
        let name = format!("column_mapping.{column}");
        if column.is_empty() || column.chars().count() > 200 {
            v.add(name, "a column name is 1 to 200 characters");
            continue;
        }
        if let Some(field) = v.check(&name, field.parse::<Field>()) {
            if mapping.values().any(|mapped| *mapped == field) {
                v.add(name, format!("{field} is mapped from two columns"));
            }
            mapping.insert(column, field);
        }
    }
    v.finish()?;
    Ok(Import {
        id: Id::generate(),
        state: ImportState::AwaitingUpload,
        size: body.size,
        file_name,
        column_mapping: mapping,
        mode: mode.unwrap_or_default(),
        total_rows: None,
        counts: Counts::default(),
        error: None,
        created_by,
        created_at: now,
        finished_at: None,
    })
}

/// Signs a `PUT` of exactly `size` bytes to `key`, valid for `expires_in`.
pub async fn presign_put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    size: u64,
    expires_in: Duration,
) -> Result<Upload, ApiError> {
    let length = i64::try_from(size).map_err(ApiError::internal)?;
    let config = PresigningConfig::expires_in(expires_in).map_err(ApiError::internal)?;
    let request = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_length(length)
        .presigned(config)
        .await
        .map_err(ApiError::internal)?;
    let expires_at = Timestamp::from_unix_seconds(
        Timestamp::now().unix_seconds() + i64::try_from(expires_in.as_secs()).unwrap_or(0),
    )
    .ok_or_else(|| ApiError::internal("upload expiry out of range"))?;
    Ok(Upload {
        url: request.uri().to_owned(),
        method: request.method().to_owned(),
        headers: request
            .headers()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
            .chain([("content-length".to_owned(), size.to_string())])
            .collect(),
        expires_at,
    })
}

/// Create an import and get its upload URL (admin, manager).
#[utoipa::path(post, path = "/imports", tag = "imports", security(("bearer" = [])), request_body = CreateImportBody,
    responses(
        (status = 201, description = "Created; PUT the file to upload.url with upload.headers", body = Created),
        (status = 400, description = "size 0 or over 256 MiB; an unknown field in column_mapping; a mode other than create or upsert", body = shared::error::Problem),
        (status = 403, description = "Role may not import", body = shared::error::Problem)))]
async fn create_import(app: &App, caller: &Caller, req: &Request) -> HttpResult {
    authorize(caller, Action::ManageImports)?;
    app.platform
        .limiter
        .check_user_write(caller, app.platform.limits.write_per_user)
        .await?;
    let body: CreateImportBody = shared::http::json_body(req)?;
    let import = new_import(body, caller.user_id, Timestamp::now())?;
    let upload = presign_put(
        &app.s3,
        &app.bucket,
        &object_key(import.id),
        import.size,
        Duration::from_secs(UPLOAD_URL_SECONDS),
    )
    .await?;
    app.store.create(&import).await?;
    let location = format!("/imports/{}", import.id);
    let mut response = json(StatusCode::CREATED, &Created { import, upload })?;
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

// ------------------------------------------------------------------ read

/// A page of imports, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportPage {
    pub items: Vec<Import>,
    pub next_cursor: Option<String>,
}

/// Recent imports, newest first (a manager's own), so that an import can be found again
/// after its page was left. Imports are kept as long as their rows (`expires_at`).
#[utoipa::path(get, path = "/imports", tag = "imports", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of imports", body = ImportPage),
        (status = 400, description = "Bad limit or cursor", body = shared::error::Problem),
        (status = 403, description = "Role may not import", body = shared::error::Problem)))]
async fn list_imports(app: &App, caller: &Caller, req: &Request) -> HttpResult {
    let scope = authorize(caller, Action::ManageImports)?;
    let query: PageQuery = shared::http::query(req)?;
    let cursor_scope = match scope {
        Scope::Own(user) => format!("imports:{user}"),
        _ => "imports:all".to_owned(),
    };
    let (limit, start) = page_of(app, &query, &cursor_scope)?;
    let (items, last) = app.store.list(&scope, limit, start).await?;
    let next_cursor = app.platform.cursors.next(&cursor_scope, last.as_ref())?;
    json(StatusCode::OK, &ImportPage { items, next_cursor })
}

/// The page a `PageQuery` asks for in the cursor scope `cursor_scope`: its limit (`400` for
/// a bad one) and the key it starts after (`400` for a cursor of another list).
fn page_of(
    app: &App,
    query: &PageQuery,
    cursor_scope: &str,
) -> Result<(i32, Option<StringKey>), ApiError> {
    let mut v = Validation::new();
    let limit = page_limit(&mut v, query.limit.as_deref(), MAX_PAGE_LIMIT);
    v.finish()?;
    let start = app
        .platform
        .cursors
        .resume(cursor_scope, query.cursor.as_deref())?;
    Ok((i32::try_from(limit).map_err(ApiError::internal)?, start))
}

/// One import's progress.
#[utoipa::path(get, path = "/imports/{id}", tag = "imports", security(("bearer" = [])),
    params(("id" = shared::domain::Id, Path, description = "Import id (ULID)")),
    responses(
        (status = 200, description = "The import: state, total_rows, rows_read, created, duplicates, failed", body = Import),
        (status = 404, description = "No such import (or not the manager's)", body = shared::error::Problem)))]
async fn get_import(app: &App, caller: &Caller, req: &Request) -> HttpResult {
    let scope = authorize(caller, Action::ManageImports)?;
    let id: Id = path_param(req, "id")?;
    json(StatusCode::OK, &app.store.visible(&scope, id).await?)
}

/// Query parameters of `GET /imports` and `GET /imports/{id}/errors` (JSON only; the CSV has
/// every row).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1..=100, default 25.
    #[param(value_type = Option<shared::domain::PageLimit>)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of the rows that were not created, in line order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RowPage {
    pub items: Vec<RowError>,
    pub next_cursor: Option<String>,
}

/// Whether the client asked for CSV (`Accept: text/csv`).
fn wants_csv(req: &Request) -> bool {
    header(req, ACCEPT.as_str()).is_some_and(|accept| {
        accept
            .split(',')
            .any(|kind| kind.split(';').next().unwrap_or("").trim() == "text/csv")
    })
}

/// The rows of an import that were not created: line, column, reason, message. JSON pages,
/// or (`Accept: text/csv`) every row as a CSV download.
#[utoipa::path(get, path = "/imports/{id}/errors", tag = "imports", security(("bearer" = [])),
    params(("id" = shared::domain::Id, Path, description = "Import id (ULID)"), PageQuery),
    responses(
        (status = 200, description = "A page of rows (JSON), or all of them as text/csv (line,column,reason,message)",
            content((RowPage = "application/json"), (String = "text/csv"))),
        (status = 404, description = "No such import (or not the manager's)", body = shared::error::Problem)))]
async fn list_errors(app: &App, caller: &Caller, req: &Request) -> HttpResult {
    let scope = authorize(caller, Action::ManageImports)?;
    let id: Id = path_param(req, "id")?;
    let query: PageQuery = shared::http::query(req)?;
    app.store.visible(&scope, id).await?;
    if wants_csv(req) {
        return errors_csv(app, id).await;
    }
    let cursor_scope = format!("import-errors:{id}");
    let (limit, start) = page_of(app, &query, &cursor_scope)?;
    let (items, last) = app.store.rows(id, limit, start).await?;
    let next_cursor = app.platform.cursors.next(&cursor_scope, last.as_ref())?;
    json(StatusCode::OK, &RowPage { items, next_cursor })
}

/// Every row that was not created, as CSV with a header (`line,column,reason,message`).
async fn errors_csv(app: &App, id: Id) -> HttpResult {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(["line", "column", "reason", "message"])
        .map_err(ApiError::internal)?;
    app.store
        .each_row(id, |row| {
            writer
                .write_record([
                    row.line.to_string().as_str(),
                    &row.column,
                    row.reason.as_str(),
                    &row.message,
                ])
                .map_err(ApiError::internal)
        })
        .await?;
    let bytes = writer.into_inner().map_err(ApiError::internal)?;
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "text/csv; charset=utf-8")
        .header(
            CONTENT_DISPOSITION,
            format!("attachment; filename=\"import-{id}-errors.csv\""),
        )
        .body(Body::from(bytes))
        .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: serde_json::Value) -> CreateImportBody {
        serde_json::from_value(value).unwrap()
    }

    fn validate(body: CreateImportBody) -> Result<Import, ApiError> {
        new_import(body, Id::generate(), Timestamp::now())
    }

    #[test]
    fn the_mode_is_create_or_upsert() {
        let upsert = validate(body(serde_json::json!({"size": 10, "mode": "upsert"}))).unwrap();
        assert_eq!(upsert.mode, ImportMode::Upsert);
        let err = validate(body(serde_json::json!({"size": 10, "mode": "merge"}))).unwrap_err();
        assert_eq!(err.errors[0].field, "mode");
        assert_eq!(err.errors[0].message, "must be create or upsert");
    }

    #[test]
    fn sizes_outside_one_byte_to_256_mib_are_refused() {
        for size in [0, MAX_FILE_BYTES + 1, 2 * 1024 * 1024 * 1024] {
            let err = validate(body(serde_json::json!({"size": size}))).unwrap_err();
            assert_eq!(err.errors[0].field, "size", "{size}");
        }
        assert!(validate(body(serde_json::json!({"size": MAX_FILE_BYTES}))).is_ok());
    }

    #[test]
    fn a_mapping_names_known_fields_once() {
        let import = validate(body(serde_json::json!({
            "size": 10, "column_mapping": {"Acct No": "reference"}
        })))
        .unwrap();
        assert_eq!(import.column_mapping["Acct No"], Field::Reference);
        assert_eq!(import.mode, ImportMode::Create);
        let err = validate(body(serde_json::json!({
            "size": 10, "column_mapping": {"A": "reference", "B": "reference", "C": "balance"}
        })))
        .unwrap_err();
        let fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["column_mapping.B", "column_mapping.C"]);
    }

    /// moto checks neither signatures nor expiry, so what S3 enforces is checked here: the
    /// URL signs `content-length` (S3 refuses another size) and expires.
    #[tokio::test]
    async fn the_upload_url_signs_the_content_length_and_expires() {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(config);
        let upload = presign_put(
            &s3,
            "imports-bucket",
            "imports/x.csv",
            1234,
            Duration::from_secs(900),
        )
        .await
        .unwrap();
        assert_eq!(upload.method, "PUT");
        let url = &upload.url;
        assert!(
            url.starts_with("https://imports-bucket.s3.eu-west-1.amazonaws.com/imports/x.csv?"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Expires=900"), "{url}");
        let signed = url
            .split('&')
            .find_map(|pair| pair.strip_prefix("X-Amz-SignedHeaders="))
            .unwrap();
        assert!(
            signed.split("%3B").any(|h| h == "content-length"),
            "{signed}"
        );
        assert_eq!(upload.headers["content-length"], "1234");
    }
}
