//! The audit trail's API: `GET /audit` (pages of entries, newest first, signed cursors) and
//! `GET /audit/export` (the same entries as CSV). Query-only (see `shared::audit::store`):
//!
//! - `entity=account:{id}` (or `user:`, `job:`, `import:`): one entity's trail; an
//!   account's includes its payments' and plans' changes. Admins; managers for accounts.
//! - `actor={user id}` (or `system:...`): what one actor changed. Admins.
//! - `from`, `to` (RFC 3339, inclusive): a time range; alone (without `entity` or `actor`)
//!   it reads the day partitions from `to` back to `from`, at most [`MAX_RANGE_DAYS`].
//!   Admins.
//!
//! Agents and viewers get `403`; a bad parameter a `400` naming it.

use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use shared::audit::store::Position;
use shared::audit::{AuditEntry, AuditQuery, AuditStore, FieldChange, Selector};
use shared::auth::{authorize, Action, Caller};
use shared::domain::{Id, Timestamp};
use shared::error::FieldError;
use shared::http::{
    json, page_limit, route_key, unknown_route, HttpResult, Validation, MAX_PAGE_LIMIT,
};
use shared::platform::{InitError, Platform};
use shared::ApiError;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// The longest time range a list without `entity` or `actor` may span.
pub const MAX_RANGE_DAYS: i64 = 366;
/// Entries one export answer holds at most; beyond, `next-cursor` says where to go on.
pub const MAX_EXPORT_ROWS: usize = 10_000;
/// The header of a truncated export: the cursor of the rest.
pub const NEXT_CURSOR_HEADER: &str = "next-cursor";

/// The shared platform and the Audit table, built once per cold start.
pub struct App {
    pub platform: Platform,
    pub store: AuditStore,
}

impl App {
    pub async fn from_env() -> Result<Self, InitError> {
        let platform = Platform::from_env(|tables| &tables.users).await?;
        let store = AuditStore::from_lookup(
            platform.clients.dynamodb.clone(),
            &shared::config::env_lookup,
        )?;
        Ok(Self { platform, store })
    }
}

/// The HTTP API of this function, merged into `/openapi.json` by the docs function.
#[derive(OpenApi)]
#[openapi(
    paths(list_audit, export_audit),
    components(schemas(AuditEntry, FieldChange, AuditPage)),
    tags((name = "audit", description = "The audit trail: who changed what, when and from where"))
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
        "GET /audit" => list_audit(app, caller, &req).await,
        "GET /audit/export" => export_audit(app, caller, &req).await,
        other => Err(unknown_route(other)),
    }
}

/// The filters of `GET /audit` and `GET /audit/export`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// `account:{id}`, `user:{id}`, `job:{id}` or `import:{id}` (an account's trail
    /// includes its payments and plans).
    #[param(pattern = "^(account|user|job|import):[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    pub entity: Option<String>,
    /// A user id, or a system actor (`system:scheduler:aging`).
    #[param(pattern = "^[A-Za-z0-9:_-]{1,128}$")]
    pub actor: Option<String>,
    /// RFC 3339; entries at or after it.
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// RFC 3339; entries at or before it (default: now).
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// 1..=100: entries per page (default 25), or rows per export answer (default
    /// every entry up to the export's cap), the `next-cursor` header carrying on.
    #[param(value_type = Option<shared::domain::PageLimit>)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page (or the export's `next-cursor` header).
    pub cursor: Option<String>,
}

/// A page of the audit trail, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// The entity types `entity` may name.
const SUBJECTS: [&str; 4] = ["account", "user", "job", "import"];

fn parse_entity(raw: &str) -> Result<String, String> {
    let message = || "must be account:{id}, user:{id}, job:{id} or import:{id}".to_owned();
    let (kind, id) = raw.trim().split_once(':').ok_or_else(message)?;
    if !SUBJECTS.contains(&kind) {
        return Err(message());
    }
    let id: Id = id
        .parse()
        .map_err(|_| "must name a ULID after the type".to_owned())?;
    Ok(format!("{kind}:{id}"))
}

fn parse_actor(raw: &str) -> Result<String, String> {
    let actor = raw.trim();
    let valid = (1..=128).contains(&actor.len())
        && actor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_'));
    if valid {
        Ok(actor.to_owned())
    } else {
        Err("must be a user id or a system actor such as system:scheduler:aging".to_owned())
    }
}

/// Validates the filters into a query. A malformed parameter is a `400` naming it (every
/// one in one answer); well-formed parameters whose combination selects no trail (entity and
/// actor both, `to` before `from`, no selector, too long a range) are a `422` naming the
/// field to change: the OpenAPI document can describe each parameter, not their combination.
pub fn parse_query(params: &AuditParams, now: Timestamp) -> Result<AuditQuery, ApiError> {
    let mut v = Validation::new();
    let entity = params
        .entity
        .as_deref()
        .and_then(|raw| v.check("entity", parse_entity(raw)));
    let actor = params
        .actor
        .as_deref()
        .and_then(|raw| v.check("actor", parse_actor(raw)));
    let time = |v: &mut Validation, name: &str, raw: Option<&str>| {
        raw.and_then(|raw| v.check(name, raw.trim().parse::<Timestamp>()))
    };
    let from = time(&mut v, "from", params.from.as_deref());
    let to = time(&mut v, "to", params.to.as_deref());
    v.finish()?;

    let mut conflicts = Vec::new();
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            conflicts.push(FieldError::new("to", "must not be before from"));
        }
    }
    if entity.is_some() && actor.is_some() {
        conflicts.push(FieldError::new("actor", "give entity or actor, not both"));
    }
    let selector = match (entity, actor, from) {
        (Some(entity), _, _) => Selector::Subject(entity),
        (None, Some(actor), _) => Selector::Actor(actor),
        (None, None, None) => {
            conflicts.push(FieldError::new(
                "from",
                "give entity, actor, or a time range starting at from",
            ));
            Selector::Time
        }
        (None, None, Some(from)) => {
            let end = to.unwrap_or(now);
            if end.unix_seconds() - from.unix_seconds() > MAX_RANGE_DAYS * 86_400 {
                conflicts.push(FieldError::new(
                    "from",
                    format!("a range without entity or actor spans at most {MAX_RANGE_DAYS} days"),
                ));
            }
            Selector::Time
        }
    };
    if !conflicts.is_empty() {
        return Err(ApiError::unprocessable(
            "audit_filters",
            "the filters together select no audit trail",
        )
        .with_errors(conflicts));
    }
    Ok(AuditQuery { selector, from, to })
}

/// Checks that the caller may read what the query selects: an account's trail needs
/// [`Action::ReadAccountAudit`] (admins, managers), anything else [`Action::ReadAudit`].
fn authorize_query(caller: &Caller, query: &AuditQuery) -> Result<(), ApiError> {
    let account = matches!(&query.selector, Selector::Subject(s) if s.starts_with("account:"));
    let action = if account {
        Action::ReadAccountAudit
    } else {
        Action::ReadAudit
    };
    authorize(caller, action).map(drop).map_err(|_| {
        ApiError::forbidden(format!(
            "the {} role may not read this audit trail",
            caller.role
        ))
    })
}

/// Parses, authorises and resumes a request: the query, its cursor scope and position.
fn prepare(
    app: &App,
    caller: &Caller,
    params: &AuditParams,
) -> Result<(AuditQuery, String, Option<Position>), ApiError> {
    // Agents and viewers are refused before anything about the request is looked at.
    authorize(caller, Action::ReadAccountAudit)?;
    let query = parse_query(params, Timestamp::now())?;
    authorize_query(caller, &query)?;
    let scope = format!("audit:{:?}:{:?}:{:?}", query.selector, query.from, query.to);
    let position = app
        .platform
        .cursors
        .resume(&scope, params.cursor.as_deref())?;
    Ok((query, scope, position))
}

/// The audit trail, newest first.
#[utoipa::path(get, path = "/audit", tag = "audit", security(("bearer" = [])),
    params(AuditParams),
    responses(
        (status = 200, description = "A page of entries, newest first", body = AuditPage),
        (status = 400, description = "A bad filter, limit or cursor (named in errors)", body = shared::error::Problem),
        (status = 422, description = "Filters that together select no trail: entity and actor both, to before from, no selector, too long a range (named in errors)", body = shared::error::Problem),
        (status = 403, description = "Agents and viewers; managers outside account trails", body = shared::error::Problem)))]
async fn list_audit(app: &App, caller: &Caller, req: &Request) -> HttpResult {
    let params: AuditParams = shared::http::query(req)?;
    let (query, scope, position) = prepare(app, caller, &params)?;
    let mut v = Validation::new();
    let limit = page_limit(&mut v, params.limit.as_deref(), MAX_PAGE_LIMIT);
    v.finish()?;
    let (items, next) = app.store.page(&query, position, limit).await?;
    let next_cursor = app.platform.cursors.next(&scope, next.as_ref())?;
    json(StatusCode::OK, &AuditPage { items, next_cursor })
}

/// The CSV columns of an export.
pub const CSV_HEADER: [&str; 11] = [
    "id",
    "at",
    "entity",
    "subject",
    "action",
    "actor_id",
    "actor_role",
    "request_id",
    "source_ip",
    "via",
    "changes",
];

fn csv_row(entry: &AuditEntry) -> Result<[String; 11], ApiError> {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    Ok([
        entry.id.clone(),
        entry.at.to_string(),
        entry.entity.clone(),
        entry.subject.clone(),
        entry.action.clone(),
        entry.actor_id.clone(),
        entry.actor_role.clone(),
        text(&entry.request_id),
        text(&entry.source_ip),
        text(&entry.via),
        serde_json::to_string(&entry.changes).map_err(ApiError::internal)?,
    ])
}

/// The audit trail as CSV, newest first: read page by page and written row by row, at most
/// [`MAX_EXPORT_ROWS`] per answer (then the `next-cursor` header carries on).
#[utoipa::path(get, path = "/audit/export", tag = "audit", security(("bearer" = [])),
    params(AuditParams),
    responses(
        (status = 200, description = "The entries as CSV (id,at,entity,subject,action,actor_id,actor_role,request_id,source_ip,via,changes; changes as JSON)",
            content((String = "text/csv"))),
        (status = 400, description = "A bad filter or cursor (named in errors)", body = shared::error::Problem),
        (status = 422, description = "Filters that together select no trail: entity and actor both, to before from, no selector, too long a range (named in errors)", body = shared::error::Problem),
        (status = 403, description = "Agents and viewers; managers outside account trails", body = shared::error::Problem)))]
async fn export_audit(app: &App, caller: &Caller, req: &Request) -> HttpResult {
    let params: AuditParams = shared::http::query(req)?;
    let rows_per_answer = match params.limit.as_deref() {
        None => MAX_EXPORT_ROWS,
        Some(raw) => {
            let mut v = Validation::new();
            let limit = page_limit(&mut v, Some(raw), MAX_PAGE_LIMIT);
            v.finish()?;
            limit
        }
    };
    let (query, scope, mut position) = prepare(app, caller, &params)?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(CSV_HEADER)
        .map_err(ApiError::internal)?;
    let mut rows = 0;
    let next = loop {
        let (entries, next) = app
            .store
            .page(
                &query,
                position.take(),
                MAX_PAGE_LIMIT.min(rows_per_answer - rows),
            )
            .await?;
        for entry in &entries {
            writer
                .write_record(csv_row(entry)?)
                .map_err(ApiError::internal)?;
        }
        rows += entries.len();
        match next {
            Some(next) if rows >= rows_per_answer => break Some(next),
            Some(next) => position = Some(next),
            None => break None,
        }
    };
    let bytes = writer.into_inner().map_err(ApiError::internal)?;
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "text/csv; charset=utf-8")
        .header(CONTENT_DISPOSITION, "attachment; filename=\"audit.csv\"")
        .body(Body::from(bytes))
        .map_err(ApiError::internal)?;
    if let Some(cursor) = app.platform.cursors.next(&scope, next.as_ref())? {
        response.headers_mut().insert(
            NEXT_CURSOR_HEADER,
            HeaderValue::from_str(&cursor).map_err(ApiError::internal)?,
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> AuditParams {
        let query: String = pairs.iter().map(|(k, v)| format!("{k}={v}&")).collect();
        serde_urlencoded::from_str(&query).unwrap()
    }

    fn fields(err: ApiError) -> Vec<String> {
        err.errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn filters_become_one_selector_and_bad_ones_are_named() {
        let now = Timestamp::now();
        let id = Id::generate();
        let query = parse_query(&params(&[("entity", &format!("account:{id}"))]), now).unwrap();
        assert_eq!(query.selector, Selector::Subject(format!("account:{id}")));
        let query = parse_query(&params(&[("actor", "system:scheduler:aging")]), now).unwrap();
        assert_eq!(
            query.selector,
            Selector::Actor("system:scheduler:aging".into())
        );
        let query = parse_query(&params(&[("from", "2026-11-01T00:00:00Z")]), now).unwrap();
        assert_eq!(query.selector, Selector::Time);

        let bad = |pairs: &[(&str, &str)]| fields(parse_query(&params(pairs), now).unwrap_err());
        assert_eq!(bad(&[("entity", "payment:01")]), ["entity"]);
        assert_eq!(bad(&[("entity", "account:nope")]), ["entity"]);
        assert_eq!(bad(&[("actor", "a b")]), ["actor"]);
        assert_eq!(bad(&[("from", "yesterday")]), ["from"]);
        assert_eq!(
            bad(&[
                ("from", "2026-11-02T00:00:00Z"),
                ("to", "2026-11-01T00:00:00Z")
            ]),
            ["to"]
        );
        assert_eq!(bad(&[]), ["from"]);
        assert_eq!(bad(&[("from", "2020-01-01T00:00:00Z")]), ["from"]);
        let status = |pairs: &[(&str, &str)]| parse_query(&params(pairs), now).unwrap_err().status;
        assert_eq!(status(&[("actor", "a b")]), StatusCode::BAD_REQUEST);
        let both = [
            ("entity", format!("account:{id}")),
            ("actor", id.to_string()),
        ];
        let both: Vec<(&str, &str)> = both.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            fields(parse_query(&params(&both), now).unwrap_err()),
            ["actor"]
        );
        assert_eq!(status(&both), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status(&[]), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn managers_read_account_trails_only() {
        let caller = |role| Caller {
            user_id: Id::generate(),
            role,
        };
        let account = AuditQuery {
            selector: Selector::Subject(format!("account:{}", Id::generate())),
            from: None,
            to: None,
        };
        let user = AuditQuery {
            selector: Selector::Subject(format!("user:{}", Id::generate())),
            ..account.clone()
        };
        let manager = caller(shared::auth::Role::Manager);
        assert!(authorize_query(&manager, &account).is_ok());
        assert!(authorize_query(&manager, &user).is_err());
        assert!(authorize_query(&caller(shared::auth::Role::Admin), &user).is_ok());
        assert!(authorize(&caller(shared::auth::Role::Agent), Action::ReadAccountAudit).is_err());
        assert!(authorize(
            &caller(shared::auth::Role::Viewer),
            Action::ReadAccountAudit
        )
        .is_err());
    }
}
