//! The OpenAPI document and the template describe the same API: every route that
//! `template.yaml` gives API Gateway is documented, and every documented path is routed.

use std::collections::BTreeSet;

use local_gateway::model::Model;
use local_gateway::provision::{offline, workspace_template_path};
use local_gateway::template::Template;

fn template_routes() -> BTreeSet<String> {
    let template = Template::load(workspace_template_path()).unwrap();
    let names = offline(&template, "docs-test-", "us-east-1").unwrap();
    Model::build(&template, &names)
        .unwrap()
        .http_routes
        .iter()
        .map(|route| route.route_key())
        .collect()
}

fn documented_routes() -> BTreeSet<String> {
    let document = docs::openapi().unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes
}

#[test]
fn every_template_route_is_documented_and_every_documented_route_exists() {
    let routed = template_routes();
    let documented = documented_routes();
    assert!(routed.contains("GET /health/ready"), "{routed:?}");
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented paths with no route in template.yaml: {unrouted:?}"
    );
}

#[test]
fn the_document_is_openapi_3_1_with_problem_schema() {
    let document = docs::openapi().unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(document["info"]["title"], "CollectPro API");
    assert!(document["components"]["schemas"]["Problem"].is_object());
}

/// `OPENAPI_OUT=path cargo test -p docs --test openapi` writes the document there (to read
/// or diff it without a running stack).
#[test]
fn the_document_can_be_written_out() {
    let document = docs::openapi().unwrap();
    let text = serde_json::to_string_pretty(&document).unwrap();
    assert!(text.contains("\"/openapi.json\""));
    if let Ok(path) = std::env::var("OPENAPI_OUT") {
        std::fs::write(path, text).unwrap();
    }
}

/// Every `$ref` names a schema the document holds (query parameters' schema-only types are
/// registered by hand in the docs frame).
#[test]
fn every_reference_resolves() {
    fn refs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let document = docs::openapi().unwrap();
    let mut found = Vec::new();
    refs(&document, &mut found);
    assert!(found.len() > 50);
    for reference in found {
        assert!(
            document
                .pointer(reference.trim_start_matches('#'))
                .is_some(),
            "dangling {reference}"
        );
    }
}

/// Every operation documents its problems as problem+json, and signed-in ones 401 and 403.
#[test]
fn problems_are_problem_json_everywhere() {
    let document = docs::openapi().unwrap();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let content = &response["content"];
                if status.starts_with('4') || status == "500" {
                    assert!(
                        content["application/problem+json"].is_object(),
                        "{method} {path} {status}"
                    );
                }
                assert!(
                    content["application/json"]["schema"]["$ref"] != "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
            if operation["security"].is_array() {
                for status in ["401", "403", "429"] {
                    assert!(
                        operation["responses"][status].is_object(),
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

/// The rules the validation enforces are in the document, from the same constants: every
/// `limit` is 1..=MAX_PAGE_LIMIT, every ULID path parameter has ID_PATTERN.
#[test]
fn limits_and_ids_carry_the_validation_constants() {
    let document = docs::openapi().unwrap();
    let resolve = |schema: &serde_json::Value| -> serde_json::Value {
        match schema["$ref"].as_str() {
            Some(r) => document.pointer(r.trim_start_matches('#')).unwrap().clone(),
            None => schema.clone(),
        }
    };
    let (mut limits, mut ids) = (0, 0);
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let schema = resolve(&parameter["schema"]);
                match (parameter["in"].as_str(), parameter["name"].as_str()) {
                    (Some("query"), Some("limit")) => {
                        limits += 1;
                        assert_eq!(schema["minimum"], 1, "{method} {path}");
                        assert_eq!(
                            schema["maximum"],
                            shared::http::MAX_PAGE_LIMIT,
                            "{method} {path}"
                        );
                    }
                    (Some("path"), Some("id" | "pid")) => {
                        ids += 1;
                        assert_eq!(
                            schema["pattern"],
                            shared::domain::ID_PATTERN,
                            "{method} {path}"
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(limits >= 6 && ids >= 12, "{limits} limits, {ids} ids");
}

/// Free-text rules are written in attributes as literals: each copy in the document is
/// exactly `shared::domain::VISIBLE_TEXT_PATTERN`.
#[test]
fn every_free_text_pattern_is_the_shared_one() {
    fn patterns(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(p)) = map.get("pattern") {
                    out.push(p.clone());
                }
                map.values().for_each(|v| patterns(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| patterns(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    patterns(&docs::openapi().unwrap(), &mut found);
    let text: Vec<_> = found.iter().filter(|p| p.starts_with("^[^\\x00")).collect();
    assert!(text.len() >= 8, "{text:?}");
    for pattern in text {
        assert_eq!(pattern, shared::domain::VISIBLE_TEXT_PATTERN);
    }
}
