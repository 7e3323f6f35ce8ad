//! The responses every operation shares, added to the merged document in one place instead
//! of being copied into each route's annotation.
//!
//! A route's `#[utoipa::path]` lists what is particular to it (its success, its 404 or 409
//! or 422 and why); [`complete`] adds, to every operation that lacks them, the answers that
//! follow from what the operation *is*:
//!
//! | when the operation | it may also answer |
//! | --- | --- |
//! | has a request body | 400 (bad JSON, a field; `errors` names each), 413 (over `shared::http::MAX_BODY_BYTES`), 415 (not JSON) |
//! | has parameters | 400 (a parameter; `errors` names it) |
//! | has a path parameter | 404 |
//! | requires a bearer token | 401 (missing, invalid, expired or revoked token, or a disabled user), 403 (the role may not; a `pending` user may do nothing but `/auth/me` and sign out) |
//! | any | 429 (`Retry-After`), 500, 503 (`Retry-After`) |
//!
//! and gives every PATCH body `minProperties: 1` (a PATCH that changes nothing is a 400).
//!
//! Every error a function writes is RFC 9457 `application/problem+json` with the `Problem`
//! schema (`shared::http::problem_response` is the only writer): a route's annotation says
//! `body = shared::error::Problem` and this module gives it that media type, so no route can
//! document a problem as `application/json`. 413, 429, 500 and 503 can also come from API
//! Gateway itself (its payload limit, stage and route throttling, an integration failure):
//! those are `application/json` `{"message": "..."}` (`GatewayMessage`), documented too.

use serde_json::{json, Map, Value};

const PROBLEM_JSON: &str = "application/problem+json";
const JSON: &str = "application/json";
const PROBLEM_REF: &str = "#/components/schemas/Problem";
const GATEWAY_MESSAGE_REF: &str = "#/components/schemas/GatewayMessage";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Adds the shared responses to every operation of `document` (an OpenAPI 3.1 document as
/// JSON) and moves every problem response to `application/problem+json`.
pub fn complete(document: &mut Value) {
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert(
            "GatewayMessage".to_owned(),
            json!({
                "type": "object",
                "description": "API Gateway's own answer (throttling, payload limit, integration failure), not a function's.",
                "required": ["message"],
                "properties": {"message": {"type": "string"}}
            }),
        );
    }
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let mut patch_bodies = Vec::new();
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        if let Some(Value::String(body)) = item
            .get("patch")
            .and_then(|patch| patch.pointer("/requestBody/content/application~1json/schema/$ref"))
        {
            patch_bodies.push(body.trim_start_matches('#').to_owned());
        }
        let shared_parameters = item.get("parameters").cloned();
        for (method, operation) in item.iter_mut() {
            if METHODS.contains(&method.as_str()) {
                complete_operation(operation, shared_parameters.as_ref());
            }
        }
    }
    // A PATCH that changes nothing is a 400 on every route (`body: ... is required`). Said
    // here for every PATCH body, since utoipa 5.5's `#[schema(min_properties = ..)]` writes
    // `maxProperties` (utoipa-gen features.rs, MinProperties → `.max_properties`).
    for pointer in patch_bodies {
        if let Some(schema) = document
            .pointer_mut(&pointer)
            .and_then(Value::as_object_mut)
        {
            schema.insert("minProperties".to_owned(), json!(1));
        }
    }
}

/// What an operation is, as far as its shared responses go.
struct Shape {
    body: bool,
    parameters: bool,
    path_parameter: bool,
    signed_in: bool,
}

fn shape(operation: &Value, shared_parameters: Option<&Value>) -> Shape {
    let parameters: Vec<&Value> = [operation.get("parameters"), shared_parameters]
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .collect();
    Shape {
        body: operation.get("requestBody").is_some(),
        parameters: !parameters.is_empty(),
        path_parameter: parameters.iter().any(|p| p["in"] == "path"),
        // `security: [{"bearer": []}]`; an absent or empty list (or only `{}`) is public.
        signed_in: operation
            .get("security")
            .and_then(Value::as_array)
            .is_some_and(|reqs| {
                reqs.iter()
                    .any(|r| r.as_object().is_some_and(|r| !r.is_empty()))
            }),
    }
}

fn complete_operation(operation: &mut Value, shared_parameters: Option<&Value>) {
    let shape = shape(operation, shared_parameters);
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for response in responses.values_mut() {
        problem_media_type(response);
    }
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| problem(description));
    };
    if shape.body || shape.parameters {
        add(
            "400",
            "Invalid request: malformed JSON, or a field or parameter that breaks its rule (`errors` names each)",
        );
    }
    if shape.path_parameter {
        add("404", "No such resource (or not one the caller may see)");
    }
    if shape.signed_in {
        add(
            "401",
            "No valid access token: missing, malformed, expired, revoked, or its user disabled",
        );
        add(
            "403",
            "The caller's role may not do this (a `pending` user may only use /auth/me and sign out)",
        );
    }
    if shape.body {
        add("413", "The body is larger than the function accepts");
        add(
            "415",
            "The body is not JSON (`Content-Type` must be application/json)",
        );
    }
    add(
        "429",
        "Too many requests (a rate limit of the API or of the caller); retry after `Retry-After` seconds",
    );
    add(
        "500",
        "An unexpected error; it has been logged with the request id",
    );
    add(
        "503",
        "A dependency is unavailable or throttling; retry after `Retry-After` seconds",
    );
    for (status, response) in responses.iter_mut() {
        if matches!(status.as_str(), "413" | "429" | "500" | "503") {
            gateway_alternative(response);
        }
        if matches!(status.as_str(), "423" | "429" | "503") {
            retry_after(response);
        }
    }
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}
    })
}

/// A `Problem` body documented as `application/json` (utoipa's default) is moved to
/// `application/problem+json`, the media type it is served with.
fn problem_media_type(response: &mut Value) {
    let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) else {
        return;
    };
    let is_problem = |media: &Value| media.pointer("/schema/$ref") == Some(&json!(PROBLEM_REF));
    if content.get(JSON).is_some_and(is_problem) {
        if let Some(media) = content.remove(JSON) {
            content.insert(PROBLEM_JSON.to_owned(), media);
        }
    }
}

/// API Gateway's `{"message": ...}` next to the function's problem, unless the route
/// already documents an `application/json` body for the status (`/health/ready`'s 503).
fn gateway_alternative(response: &mut Value) {
    let Some(content) = response
        .as_object_mut()
        .map(|r| r.entry("content").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if content.contains_key(PROBLEM_JSON) && !content.contains_key(JSON) {
        content.insert(
            JSON.to_owned(),
            json!({"schema": {"$ref": GATEWAY_MESSAGE_REF}}),
        );
    }
}

fn retry_after(response: &mut Value) {
    let Some(response) = response.as_object_mut() else {
        return;
    };
    let headers = response
        .entry("headers")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(headers) = headers.as_object_mut() {
        headers.entry("Retry-After").or_insert_with(|| {
            json!({
                "description": "Seconds to wait before retrying (absent on API Gateway's own throttling answer)",
                "schema": {"type": "integer", "minimum": 1}
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> Value {
        json!({
            "openapi": "3.1.0",
            "components": {"schemas": {"Problem": {}}},
            "paths": {
                "/things/{id}": {
                    "patch": {
                        "parameters": [{"name": "id", "in": "path"}],
                        "requestBody": {"content": {}},
                        "security": [{"bearer": []}],
                        "responses": {
                            "200": {"description": "ok"},
                            "409": {"description": "taken", "content": {"application/json": {"schema": {"$ref": PROBLEM_REF}}}}
                        }
                    }
                },
                "/health": {"get": {"responses": {"200": {"description": "ok"}}}}
            }
        })
    }

    #[test]
    fn problems_are_problem_json_and_shared_answers_follow_the_shape() {
        let mut doc = document();
        complete(&mut doc);
        let patch = &doc["paths"]["/things/{id}"]["patch"]["responses"];
        assert!(patch["409"]["content"][PROBLEM_JSON].is_object());
        assert!(patch["409"]["content"][JSON].is_null(), "{patch}");
        for status in [
            "400", "401", "403", "404", "413", "415", "429", "500", "503",
        ] {
            assert_eq!(
                patch[status]["content"][PROBLEM_JSON]["schema"]["$ref"], PROBLEM_REF,
                "{status}"
            );
        }
        assert!(patch["429"]["headers"]["Retry-After"].is_object());
        assert_eq!(
            patch["429"]["content"][JSON]["schema"]["$ref"],
            GATEWAY_MESSAGE_REF
        );
        let health = &doc["paths"]["/health"]["get"]["responses"];
        for status in ["400", "401", "403", "404", "413"] {
            assert!(health[status].is_null(), "{status}: {health}");
        }
        assert!(health["503"].is_object());
        assert!(doc["components"]["schemas"]["GatewayMessage"].is_object());
    }
}
