//! Who may see a bulk job over REST (against DynamoDB Local, under `infra/stack.sh`): the
//! rule `shared::bulk::JobStore::visible`, which the WebSocket `job:{id}` subscription uses
//! too (functions/ws/tests: `a_manager_follows_only_its_own_jobs`).

use bulk_api::{dispatch, App};
use http::StatusCode;
use serde_json::json;
use shared::auth::{Caller, Role};
use shared::domain::{Id, Timestamp};
use shared::rate_limit::RateLimits;
use shared::testing::{body_json, TestRequest};

fn caller(role: Role) -> Caller {
    Caller {
        user_id: Id::generate(),
        role,
    }
}

#[tokio::test]
async fn another_managers_job_is_404_on_every_job_route() {
    let app = App::new(shared::testing::platform(RateLimits::off()).await);
    let owner = caller(Role::Manager);
    let spec: shared::bulk::JobSpec =
        serde_json::from_value(json!({"changes": {"add_tags": ["visibility"]}})).unwrap();
    let job = Id::generate();
    app.store
        .create(job, owner.user_id, &spec, 1, 0, Timestamp::now())
        .await
        .unwrap();
    let id = job.to_string();
    let requests = || {
        [
            TestRequest::new("GET /bulk/jobs/{id}", &format!("/bulk/jobs/{id}")),
            TestRequest::new(
                "GET /bulk/jobs/{id}/failures",
                &format!("/bulk/jobs/{id}/failures"),
            ),
            TestRequest::new(
                "POST /bulk/jobs/{id}/cancel",
                &format!("/bulk/jobs/{id}/cancel"),
            ),
        ]
        .map(|req| req.path_param("id", &id))
    };
    let other = caller(Role::Manager);
    for req in requests() {
        let response = shared::http::serve(req.build(), |req| dispatch(&app, &other, req)).await;
        let body = body_json(&response);
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["type"], "https://collectpro.dev/problems/not-found");
    }
    // Still queued: the other manager's cancel changed nothing.
    let stored = app.store.get(job).await.unwrap().unwrap();
    assert_eq!(stored.state.as_str(), "queued");
    for who in [&owner, &caller(Role::Admin)] {
        let get = requests()[0].clone();
        let response = shared::http::serve(get.build(), |req| dispatch(&app, who, req)).await;
        assert_eq!(response.status(), StatusCode::OK, "{:?}", who.role);
        assert_eq!(body_json(&response)["id"], id);
    }
}
