//! The dashboard: `GET /dashboard/summary`.
//!
//! - Every role reads it; what it shows depends on the role: admins and managers get
//!   everyone's totals plus the per-agent breakdown (users with role agent, named, and ids
//!   no user has; see `shared::dashboard::summary::name_agents`), viewers everyone's totals only, an agent
//!   only its own figures (accounts assigned to it, payments on them, activities it logged).
//! - The figures are the aggregates the `notifier` materialises from the tables' streams
//!   (`shared::dashboard`): one BatchGetItem (one scope) or three Queries (per agent), never
//!   a Scan, so the answer costs the same at 100 or 100,000 accounts. See docs/dashboard.md.
//! - "Today" and "this month" are UTC; the day is a parameter of [`dispatch`] so tests are
//!   deterministic.
//! - The answer carries a strong `ETag` (SHA-256 of the body, base64url) and
//!   `Cache-Control: private, no-cache`: a polling SPA sends `If-None-Match` and gets a
//!   bodyless `304` while nothing moved.
//! - The route takes no query parameters; any parameter is a `400` naming it (like every
//!   other route, which refuses the parameters it does not know).

use lambda_http::Request;
use serde::Deserialize;
use shared::auth::{authorize, Action, BearerSecurity, Caller, Role, Scope, UserRepo};
use shared::dashboard::summary::{
    name_agents, AccountCounts, AgentTotals, MethodTotals, PeriodTotals, PlanCounts, PromiseCounts,
    Totals,
};
use shared::dashboard::{AggregateStore, Summary, View};
use shared::http::{json_or_not_modified, route_key, unknown_route, HttpResult, Validator};
use shared::platform::{InitError, Platform};
use utoipa::OpenApi;

/// The shared platform and the aggregates store, built once per cold start.
pub struct App {
    pub platform: Platform,
    pub store: AggregateStore,
    /// Names the per-agent breakdown (and tells agents from other users).
    pub users: UserRepo,
}

impl App {
    pub fn new(platform: Platform) -> Self {
        let dynamodb = &platform.clients.dynamodb;
        let tables = &platform.config.tables;
        Self {
            store: AggregateStore::new(dynamodb.clone(), tables.aggregates.clone()),
            users: UserRepo::new(dynamodb.clone(), tables.users.clone()),
            platform,
        }
    }

    /// Primes the connection against the Aggregates table, the only one a request reads
    /// besides the user check.
    pub async fn from_env() -> Result<Self, InitError> {
        Ok(Self::new(
            Platform::from_env(|tables| &tables.aggregates).await?,
        ))
    }
}

/// The HTTP API of this function, merged into `/openapi.json` by the docs function.
#[derive(OpenApi)]
#[openapi(
    paths(summary),
    components(schemas(Summary, Totals, AgentTotals, AccountCounts, PeriodTotals, MethodTotals, PromiseCounts, PlanCounts)),
    modifiers(&BearerSecurity),
    tags((name = "dashboard", description = "Totals and KPIs, materialised from the tables' streams"))
)]
pub struct ApiDoc;

/// Authenticates the caller and routes the request.
pub async fn handle(app: &App, req: Request) -> HttpResult {
    let caller = app.platform.authenticator.authenticate(&req).await?;
    dispatch(app, &caller, req, shared::accounts::dpd::today_utc()).await
}

/// Routes a request of an authenticated caller; `today` (UTC) is injectable for tests.
pub async fn dispatch(app: &App, caller: &Caller, req: Request, today: time::Date) -> HttpResult {
    match route_key(&req).as_str() {
        "GET /dashboard/summary" => summary(app, caller, &req, today).await,
        other => Err(unknown_route(other)),
    }
}

/// The route's query: no parameters, and unknown ones are refused (`400` naming them), so
/// a client that expects a filter finds out instead of silently getting everything.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParameters {}

/// Whose figures a caller sees.
pub fn view_for(caller: &Caller, scope: &Scope) -> View {
    match (caller.role, scope) {
        (_, Scope::Assigned(agent)) => View::Agent(*agent),
        (Role::Admin | Role::Manager, _) => View::All { per_agent: true },
        _ => View::All { per_agent: false },
    }
}

/// Totals and KPIs: accounts by status and days-past-due bucket, outstanding balance, and
/// today's and this month's collections, payments by method, activities and promises.
#[utoipa::path(get, path = "/dashboard/summary", tag = "dashboard",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The dashboard of the caller's role: everyone's totals (admins and managers also per agent) or, for an agent, its own. Strong ETag; Cache-Control: private, no-cache", body = Summary),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 400, description = "A query parameter (the route takes none)", body = shared::error::Problem),
        (status = 401, description = "Not signed in", body = shared::error::Problem)))]
async fn summary(app: &App, caller: &Caller, req: &Request, today: time::Date) -> HttpResult {
    let scope = authorize(caller, Action::ReadDashboard)?;
    let NoParameters {} = shared::http::query(req)?;
    let mut summary =
        shared::dashboard::summary(&app.store, view_for(caller, &scope), today).await?;
    name_agents(&mut summary, &app.users).await?;
    // The body is deterministic (`Summary` holds only ordered maps and sorted lists), so
    // equal figures give byte-identical bodies: a strong validator.
    json_or_not_modified(req, &summary, Validator::Strong)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::domain::Id;

    fn caller(role: Role) -> Caller {
        Caller {
            user_id: Id::generate(),
            role,
        }
    }

    #[test]
    fn each_role_gets_its_view() {
        for (role, expected) in [
            (Role::Admin, Some(View::All { per_agent: true })),
            (Role::Manager, Some(View::All { per_agent: true })),
            (Role::Viewer, Some(View::All { per_agent: false })),
            (Role::Agent, None),
        ] {
            let caller = caller(role);
            let scope = authorize(&caller, Action::ReadDashboard).unwrap();
            let view = view_for(&caller, &scope);
            assert_eq!(
                view,
                expected.unwrap_or(View::Agent(caller.user_id)),
                "{role}"
            );
        }
    }
}
