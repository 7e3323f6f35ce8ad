//! `/_local/...` on the HTTP API's port (loopback only): the metrics for a scraper, as JSON
//! for the page, and the dashboard page with its vendored chart library (uPlot, MIT,
//! `assets/uplot/`), all compiled in: nothing is fetched at run time.
//!
//! API Gateway never routes `/_local`, so these paths cannot shadow an API route; they are
//! matched before the API's routing.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::Registry;

/// What the pages read.
pub struct LocalPages {
    pub registry: Arc<Registry>,
    /// The queues failures end up in (redrive targets, `OnFailure` destinations), for the
    /// dead-letter widget.
    pub dead_letter_queues: Vec<String>,
    /// The prefix of every table and queue name, which the page leaves out of its labels.
    pub name_prefix: String,
}

const DASHBOARD: &str = include_str!("../../assets/dashboard.html");
const UPLOT_JS: &str = include_str!("../../assets/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/uplot/uPlot.min.css");

/// The `/_local/` routes, for any router state.
pub fn router<S: Clone + Send + Sync + 'static>(pages: Arc<LocalPages>) -> Router<S> {
    Router::new()
        .route("/_local/metrics", get(prometheus))
        .route("/_local/metrics.json", get(series))
        .route(
            "/_local/dashboard",
            get(|| page("text/html; charset=utf-8", DASHBOARD)),
        )
        .route(
            "/_local/uPlot.iife.min.js",
            get(|| page("text/javascript; charset=utf-8", UPLOT_JS)),
        )
        .route(
            "/_local/uPlot.min.css",
            get(|| page("text/css; charset=utf-8", UPLOT_CSS)),
        )
        .with_state(pages)
}

async fn page(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([("content-type", content_type)], body)
}

async fn prometheus(State(pages): State<Arc<LocalPages>>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        super::prometheus::render(&pages.registry),
    )
}

/// `?minutes=N` (default 15): [`super::json`], with `dead_letter_queues` and `name_prefix`.
async fn series(
    State(pages): State<Arc<LocalPages>>,
    RawQuery(query): RawQuery,
) -> impl IntoResponse {
    let minutes = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("minutes="))
        .and_then(|m| m.parse().ok())
        .unwrap_or(15);
    let mut doc = super::json::render(&pages.registry, minutes);
    doc["dead_letter_queues"] = serde_json::json!(pages.dead_letter_queues);
    doc["name_prefix"] = serde_json::json!(pages.name_prefix);
    axum::Json(doc)
}
