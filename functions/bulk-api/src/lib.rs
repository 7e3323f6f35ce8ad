//! Bulk account updates: `POST /bulk/accounts`, `GET /bulk/jobs`, `GET /bulk/jobs/{id}`,
//! `GET /bulk/jobs/{id}/failures`, `POST /bulk/jobs/{id}/cancel` (admin, manager; a
//! manager sees and cancels only its own jobs).
//!
//! `POST /bulk/accounts` validates, writes the job (`queued`, `total`) and enqueues planner
//! messages only (500 ids each, or one per partition of a filter's Query), so it answers
//! `202 {job_id}` in a few calls whatever the size; `bulk-worker` fans out the chunks,
//! applies them exactly once and counts progress (see `shared::bulk`).

use http::header::LOCATION;
use http::{HeaderValue, StatusCode};
use lambda_http::Request;
use serde::{Deserialize, Serialize};
use shared::accounts::check_assignable;
use shared::auth::users::UserRepo;
use shared::auth::{authorize, Action, Caller, Scope};
use shared::bulk::{
    clean_tag, plan_ids, AgentChange, BulkMessage, Changes, ChangesBody, Failure, FailureReason,
    Filter, FilterQuery, Job, JobRecord, JobSpec, JobState, JobStore, MAX_IDS, MAX_TAGS,
};
use shared::domain::{Id, Timestamp};
use shared::http::{json, path_param, route_key, unknown_route, HttpResult, Validation};
use shared::platform::{InitError, Platform};
use shared::validation::check_amount;
use shared::ApiError;
use utoipa::{IntoParams, OpenApi, ToSchema};

use shared::dynamo::attributes::StringKey;
use std::collections::HashSet;

/// The shared platform, the job store and the users (agents) repository, built once per
/// cold start.
pub struct App {
    pub platform: Platform,
    pub store: JobStore,
    pub users: UserRepo,
}

impl App {
    pub fn new(platform: Platform) -> Self {
        let clients = &platform.clients;
        let config = &platform.config;
        Self {
            store: JobStore::new(
                clients.dynamodb.clone(),
                clients.sqs.clone(),
                config.tables.jobs.clone(),
                config.queues.bulk.clone(),
            ),
            users: UserRepo::new(clients.dynamodb.clone(), config.tables.users.clone()),
            platform,
        }
    }

    pub async fn from_env() -> Result<Self, InitError> {
        Ok(Self::new(Platform::from_env(|tables| &tables.jobs).await?))
    }
}

/// The HTTP API of this function, merged into `/openapi.json` by the docs function.
#[derive(OpenApi)]
#[openapi(
    paths(create_job, list_jobs, get_job, list_failures, cancel_job),
    components(schemas(CreateJobBody, ChangesBody, Filter, Job, JobState, JobPage, Failure, FailureReason, FailurePage, Accepted)),
    tags((name = "bulk", description = "Bulk account updates"))
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
        "POST /bulk/accounts" => create_job(app, caller, &req).await,
        "GET /bulk/jobs" => list_jobs(app, caller, &req).await,
        "GET /bulk/jobs/{id}" => get_job(app, caller, &req).await,
        "GET /bulk/jobs/{id}/failures" => list_failures(app, caller, &req).await,
        "POST /bulk/jobs/{id}/cancel" => cancel_job(app, caller, &req).await,
        other => Err(unknown_route(other)),
    }
}

// ------------------------------------------------------------------ create

/// A bulk update: `account_ids` (1..=100,000 ULIDs) or `filter`, and `changes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJobBody {
    /// 1 to 100,000 account ids (`shared::bulk::MAX_IDS`).
    #[schema(min_items = 1, max_items = 100_000)]
    pub account_ids: Option<Vec<String>>,
    pub filter: Option<Filter>,
    pub changes: Option<ChangesBody>,
}

/// `202`: the job is queued.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    pub job_id: Id,
}

/// Which accounts a job changes, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Ids(Vec<Id>),
    Filter(Filter),
}

fn clean_tags(v: &mut Validation, field: &str, tags: Vec<String>) -> Vec<String> {
    if tags.len() > MAX_TAGS {
        v.add(field, format!("at most {MAX_TAGS} tags"));
        return Vec::new();
    }
    let mut out = std::collections::BTreeSet::new();
    for (i, tag) in tags.iter().enumerate() {
        if let Some(tag) = v.check(&format!("{field}[{i}]"), clean_tag(tag)) {
            out.insert(tag);
        }
    }
    out.into_iter().collect()
}

/// Validates a request body (everything but whether the agent exists).
pub fn validate(body: CreateJobBody) -> Result<(Target, Changes), ApiError> {
    let mut v = Validation::new();
    let target = match (body.account_ids, body.filter) {
        (Some(_), Some(_)) => {
            v.add("filter", "send either account_ids or filter, not both");
            None
        }
        (None, None) => {
            v.add("account_ids", "send account_ids or filter");
            None
        }
        (Some(ids), None) => {
            if ids.is_empty() {
                v.add("account_ids", "must not be empty");
                None
            } else if ids.len() > MAX_IDS {
                v.add(
                    "account_ids",
                    format!("at most {MAX_IDS} ids per job ({} sent)", ids.len()),
                );
                None
            } else {
                let mut seen = HashSet::with_capacity(ids.len());
                let mut out = Vec::with_capacity(ids.len());
                let mut bad = 0;
                for (i, raw) in ids.iter().enumerate() {
                    match raw.parse::<Id>() {
                        Ok(id) => {
                            if seen.insert(id) {
                                out.push(id);
                            }
                        }
                        Err(err) => {
                            bad += 1;
                            if bad <= 10 {
                                v.add(format!("account_ids[{i}]"), err);
                            }
                        }
                    }
                }
                if bad > 10 {
                    v.add("account_ids", format!("{bad} ids are not ULIDs"));
                }
                Some(Target::Ids(out))
            }
        }
        (None, Some(mut filter)) => {
            for (field, value) in [
                ("filter.min_balance", filter.min_balance),
                ("filter.max_balance", filter.max_balance),
            ] {
                if let Some(value) = value {
                    check_amount(&mut v, field, value, 0);
                }
            }
            if let (Some(min), Some(max)) = (filter.min_balance, filter.max_balance) {
                if min.0 > max.0 {
                    v.add("filter.max_balance", "must not be less than min_balance");
                }
            }
            if let Some(tags) = filter.tags.take() {
                let tags = clean_tags(&mut v, "filter.tags", tags);
                filter.tags = (!tags.is_empty()).then_some(tags);
            }
            Some(Target::Filter(filter))
        }
    };
    let changes = match body.changes {
        None => {
            v.add(
                "changes",
                "is required: status, assigned_agent_id, add_tags or remove_tags",
            );
            None
        }
        Some(changes) => {
            let add_tags = clean_tags(
                &mut v,
                "changes.add_tags",
                changes.add_tags.unwrap_or_default(),
            );
            let remove_tags = clean_tags(
                &mut v,
                "changes.remove_tags",
                changes.remove_tags.unwrap_or_default(),
            );
            if let Some(tag) = add_tags.iter().find(|t| remove_tags.contains(t)) {
                v.add("changes.remove_tags", format!("{tag} is also in add_tags"));
            }
            let changes = Changes {
                status: changes.status,
                assigned_agent: changes.assigned_agent_id,
                add_tags,
                remove_tags,
            };
            if changes == Changes::default() {
                v.add(
                    "changes",
                    "must change at least one of status, assigned_agent_id, add_tags, remove_tags",
                );
            }
            Some(changes)
        }
    };
    v.finish()?;
    match (target, changes) {
        (Some(target), Some(changes)) => Ok((target, changes)),
        _ => Err(ApiError::internal("validated fields missing")),
    }
}

/// Start a bulk update (admin, manager).
#[utoipa::path(post, path = "/bulk/accounts", tag = "bulk", security(("bearer" = [])), request_body = CreateJobBody,
    responses(
        (status = 202, description = "Queued; Location is the job", body = Accepted),
        (status = 400, description = "Bad ids, filter or changes; unknown agent", body = shared::error::Problem),
        (status = 403, description = "Role may not run bulk jobs", body = shared::error::Problem),
        (status = 503, description = "The queue did not take the job; nothing will run", body = shared::error::Problem)))]
async fn create_job(app: &App, caller: &Caller, req: &Request) -> HttpResult {
    authorize(caller, Action::ManageBulkJobs)?;
    app.platform
        .limiter
        .check_user_write(caller, app.platform.limits.write_per_user)
        .await?;
    let body: CreateJobBody = shared::http::json_body(req)?;
    let (target, changes) = validate(body)?;
    if let Some(AgentChange::Assign(agent)) = changes.assigned_agent {
        check_assignable(&app.users, agent, "changes.assigned_agent_id").await?;
    }
    let now = Timestamp::now();
    let id = Id::generate();
    let (spec, total, messages, partitions) = match target {
        Target::Ids(ids) => (
            JobSpec {
                changes,
                filter: None,
            },
            ids.len() as u64,
            plan_ids(id, &ids),
            0,
        ),
        Target::Filter(filter) => {
            let partitions =
                FilterQuery::new(&filter, now.as_offset_date_time().date()).partitions();
            let messages = (0..partitions)
                .map(|partition| BulkMessage::PlanFilter {
                    job_id: id,
                    partition,
                    seq: 0,
                })
                .collect();
            (
                JobSpec {
                    changes,
                    filter: Some(filter),
                },
                0,
                messages,
                partitions,
            )
        }
    };
    app.store
        .create(id, caller.user_id, &spec, total, partitions, now)
        .await?;
    if let Err(err) = app.store.send(&messages).await {
        tracing::error!(job_id = %id, error = %err, "enqueueing the job failed; it is marked failed");
        app.store.end(id, JobState::Failed).await?;
        return Err(err.into());
    }
    tracing::info!(job_id = %id, total, partitions, "bulk job queued");
    let mut response = json(StatusCode::ACCEPTED, &Accepted { job_id: id })?;
    if let Ok(location) = HeaderValue::from_str(&format!("/bulk/jobs/{id}")) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

// ------------------------------------------------------------------ read

/// `limit` (1..=100, default 25) and `cursor`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[param(value_type = Option<shared::domain::PageLimit>)]
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

fn limit_of(query: &PageQuery) -> Result<i32, ApiError> {
    match query.limit.as_deref() {
        None => Ok(25),
        Some(raw) => match raw.parse::<i32>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid_field(
                "limit",
                "must be an integer from 1 to 100",
            )),
        },
    }
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    pub items: Vec<Job>,
    pub next_cursor: Option<String>,
}

/// A page of failures.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FailurePage {
    pub items: Vec<Failure>,
    pub next_cursor: Option<String>,
}

/// Recent jobs, newest first (a manager's own).
#[utoipa::path(get, path = "/bulk/jobs", tag = "bulk", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 400, description = "Bad limit or cursor", body = shared::error::Problem),
        (status = 403, description = "Role may not run bulk jobs", body = shared::error::Problem)))]
async fn list_jobs(app: &App, caller: &Caller, req: &Request) -> HttpResult {
    let scope = authorize(caller, Action::ManageBulkJobs)?;
    let query: PageQuery = shared::http::query(req)?;
    let limit = limit_of(&query)?;
    let cursor_scope = match scope {
        Scope::Own(user) => format!("bulk-jobs:{user}"),
        _ => "bulk-jobs:all".to_owned(),
    };
    let start: Option<StringKey> = app
        .platform
        .cursors
        .resume(&cursor_scope, query.cursor.as_deref())?;
    let (jobs, last) = app.store.list(&scope, limit, start).await?;
    let items = jobs
        .iter()
        .map(JobRecord::to_job)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = app.platform.cursors.next(&cursor_scope, last.as_ref())?;
    json(StatusCode::OK, &JobPage { items, next_cursor })
}

/// The job `id` if the caller may see it (a manager: its own), else `404`: the rule shared
/// with the WebSocket `job:{id}` subscription (`shared::bulk::job_visible_to`).
async fn visible(app: &App, scope: &Scope, id: Id) -> Result<JobRecord, ApiError> {
    app.store.visible(scope, id).await
}

/// One job's progress.
#[utoipa::path(get, path = "/bulk/jobs/{id}", tag = "bulk", security(("bearer" = [])),
    params(("id" = shared::domain::Id, Path, description = "Job id (ULID)")),
    responses(
        (status = 200, description = "The job: state, total, processed, succeeded, failed", body = Job),
        (status = 404, description = "No such job (or not the manager's)", body = shared::error::Problem)))]
async fn get_job(app: &App, caller: &Caller, req: &Request) -> HttpResult {
    let scope = authorize(caller, Action::ManageBulkJobs)?;
    let id: Id = path_param(req, "id")?;
    let job = visible(app, &scope, id).await?;
    json(StatusCode::OK, &job.to_job()?)
}

/// Each account the job could not change, with its reason.
#[utoipa::path(get, path = "/bulk/jobs/{id}/failures", tag = "bulk", security(("bearer" = [])),
    params(("id" = shared::domain::Id, Path, description = "Job id (ULID)"), PageQuery),
    responses(
        (status = 200, description = "A page of failures, by account id", body = FailurePage),
        (status = 400, description = "Bad limit or cursor", body = shared::error::Problem),
        (status = 404, description = "No such job (or not the manager's)", body = shared::error::Problem)))]
async fn list_failures(app: &App, caller: &Caller, req: &Request) -> HttpResult {
    let scope = authorize(caller, Action::ManageBulkJobs)?;
    let id: Id = path_param(req, "id")?;
    let query: PageQuery = shared::http::query(req)?;
    let limit = limit_of(&query)?;
    visible(app, &scope, id).await?;
    let cursor_scope = format!("bulk-failures:{id}");
    let start: Option<StringKey> = app
        .platform
        .cursors
        .resume(&cursor_scope, query.cursor.as_deref())?;
    let (items, last) = app.store.failures(id, limit, start).await?;
    let next_cursor = app.platform.cursors.next(&cursor_scope, last.as_ref())?;
    json(StatusCode::OK, &FailurePage { items, next_cursor })
}

/// Cancel a job: accounts not yet changed are counted as cancelled.
#[utoipa::path(post, path = "/bulk/jobs/{id}/cancel", tag = "bulk", security(("bearer" = [])),
    params(("id" = shared::domain::Id, Path, description = "Job id (ULID)")),
    responses(
        (status = 200, description = "Cancelled; the remaining accounts are skipped", body = Job),
        (status = 404, description = "No such job (or not the manager's)", body = shared::error::Problem),
        (status = 409, description = "The job already finished", body = shared::error::Problem)))]
async fn cancel_job(app: &App, caller: &Caller, req: &Request) -> HttpResult {
    let scope = authorize(caller, Action::ManageBulkJobs)?;
    let id: Id = path_param(req, "id")?;
    app.platform
        .limiter
        .check_user_write(caller, app.platform.limits.write_per_user)
        .await?;
    let job = visible(app, &scope, id).await?;
    if !app.store.end(id, JobState::Cancelled).await? {
        return Err(ApiError::conflict(format!(
            "the job already finished ({})",
            job.state
        )));
    }
    let job = visible(app, &scope, id).await?;
    json(StatusCode::OK, &job.to_job()?)
}
